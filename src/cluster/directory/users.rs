//! The directory's users: how many connections each holds (bounded per user), who watches
//! whom, and who is within the grace after its last connection closed. A user's first
//! connection and the end of its grace are the changes watchers are told, under this lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::{lock, page, Directory, Page};
use crate::hub::Change;

/// Users: their connections, who watches them, and who is within the grace.
#[derive(Default)]
pub(super) struct Users {
    /// Connections per connected user.
    conns: BTreeMap<Arc<str>, u32>,
    /// Connections watching each user (`watch`), connected or not; a user nobody watches has
    /// no entry, and its changes are announced to nobody.
    watched: HashMap<Arc<str>, u32>,
    /// Users whose last connection closed less than the grace ago: when the grace ends.
    leaving: HashMap<Arc<str>, Instant>,
    /// The same, in the order their grace ends (what the sweep reads).
    deadlines: BTreeSet<(Instant, Arc<str>)>,
}

impl Users {
    /// Ends `user`'s grace (it came back, or its grace is over); whether it was in one.
    fn end_grace(&mut self, user: &str) -> bool {
        match self.leaving.remove_entry(user) {
            Some((user, at)) => {
                self.deadlines.remove(&(at, user));
                true
            }
            None => false,
        }
    }

    /// Online as watchers are told: connected, or within the grace.
    fn online(&self, user: &str) -> bool {
        self.conns.contains_key(user) || self.leaving.contains_key(user)
    }
}

impl Directory {
    /// Counts one more connection for `user`, unless it already holds the maximum. Its first
    /// connection is announced ([`Change::Online`]) to its watchers, unless it comes back
    /// within the grace.
    pub(crate) fn add_connection(
        &self,
        user: &Arc<str>,
        announce: impl FnOnce(Change<'_>),
    ) -> bool {
        let mut users = lock(&self.users);
        match users.conns.get_mut(&**user) {
            Some(n) if *n >= self.max_per_user => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if self.max_per_user == 0 => false,
            None => {
                users.conns.insert(user.clone(), 1);
                if !users.end_grace(user) && users.watched.contains_key(&**user) {
                    announce(Change::Online(user));
                }
                true
            }
        }
    }

    /// Counts one connection fewer for `user`. After its last, the user is within the grace
    /// until `now` + `PRESENCE_GRACE` (offline at once without a grace, or when
    /// `max_leaving` users are already within theirs: then the one nearest its end goes).
    /// Returns whether it was the user's last connection.
    pub(crate) fn remove_connection(
        &self,
        user: &str,
        now: Instant,
        mut announce: impl FnMut(Change<'_>),
    ) -> bool {
        let mut users = lock(&self.users);
        let Some((name, n)) = users
            .conns
            .get_key_value(user)
            .map(|(k, n)| (k.clone(), *n))
        else {
            return false;
        };
        if n > 1 {
            users.conns.insert(name, n - 1);
            return false;
        }
        users.conns.remove(user);
        if self.rules.grace.is_zero() {
            offline(&users, &name, &mut announce);
            return true;
        }
        if users.leaving.len() >= self.rules.max_leaving {
            if let Some((_, first)) = users.deadlines.first().cloned() {
                users.end_grace(&first);
                offline(&users, &first, &mut announce);
            }
        }
        let at = now + self.rules.grace;
        users.leaving.insert(name.clone(), at);
        users.deadlines.insert((at, name));
        true
    }

    /// Ends the graces that are over by `now`: each such user is announced offline.
    pub(crate) fn expire_graces(&self, now: Instant, mut announce: impl FnMut(Change<'_>)) {
        let mut users = lock(&self.users);
        while let Some((at, user)) = users.deadlines.first().cloned() {
            if at > now {
                break;
            }
            users.end_grace(&user);
            offline(&users, &user, &mut announce);
        }
    }

    /// One more connection watches `user`; whether it is online now (as watchers are told).
    pub(crate) fn watch(&self, user: &Arc<str>) -> bool {
        let mut users = lock(&self.users);
        *users.watched.entry(user.clone()).or_default() += 1;
        users.online(user)
    }

    /// One connection fewer watches `user`.
    pub(crate) fn unwatch(&self, user: &str) {
        let mut users = lock(&self.users);
        if let Some(n) = users.watched.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.watched.remove(user);
            }
        }
    }

    /// Whether `user` is online (as watchers are told) and how many connections it holds.
    pub(crate) fn presence_of(&self, user: &str) -> (bool, u32) {
        let users = lock(&self.users);
        (
            users.online(user),
            users.conns.get(user).copied().unwrap_or(0),
        )
    }

    /// Whether a connection watches `user`.
    pub(crate) fn is_watched(&self, user: &str) -> bool {
        lock(&self.users).watched.contains_key(user)
    }

    /// Connections `user` holds now.
    pub(crate) fn connections_of(&self, user: &str) -> u32 {
        lock(&self.users).conns.get(user).copied().unwrap_or(0)
    }

    /// Connected users now.
    pub(crate) fn user_count(&self) -> usize {
        lock(&self.users).conns.len()
    }

    /// Up to `limit` connected users after `cursor`, in order, and whether more follow.
    pub(crate) fn users_page(&self, cursor: Option<&str>, limit: usize) -> Page<u32> {
        page(&lock(&self.users).conns, cursor, limit, |n| *n)
    }
}

/// Announces `user` offline, if anyone watches it.
fn offline(users: &Users, user: &Arc<str>, announce: &mut impl FnMut(Change<'_>)) {
    if users.watched.contains_key(&**user) {
        announce(Change::Offline(user));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::super::tests::{announced, directory, name, rules};
    use super::*;

    #[test]
    fn watched_users_go_offline_after_the_grace_unless_they_come_back() {
        let d = Directory::new(5, 10, rules(100));
        let (ann, bob, cat) = (name("ann"), name("bob"), name("cat"));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!d.watch(&ann));
        d.watch(&bob);
        let got = announced(|announce| {
            d.add_connection(&ann, &mut *announce);
            d.add_connection(&ann, &mut *announce);
            d.add_connection(&cat, &mut *announce); // nobody watches cat
            d.remove_connection("ann", ms(0), &mut *announce);
            d.remove_connection("ann", ms(0), &mut *announce);
            assert_eq!(d.presence_of("ann"), (true, 0), "within the grace");
            d.expire_graces(ms(50), &mut *announce);
            d.add_connection(&ann, &mut *announce); // back within the grace: nothing
            d.remove_connection("ann", ms(60), &mut *announce);
            d.expire_graces(ms(159), &mut *announce);
            d.expire_graces(ms(160), &mut *announce);
            d.remove_connection("cat", ms(160), &mut *announce);
            d.expire_graces(ms(1000), &mut *announce);
        });
        assert_eq!(got, ["Online(ann)", "Offline(ann)"]);
        assert_eq!(d.presence_of("ann"), (false, 0));
        assert!(!d.watch(&ann));
    }

    #[test]
    fn past_max_leaving_the_oldest_grace_ends_at_once() {
        let d = Directory::new(5, 10, rules(1000));
        let now = Instant::now();
        let users: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(name).collect();
        let got = announced(|announce| {
            for (i, u) in users.iter().enumerate() {
                d.watch(u);
                d.add_connection(u, &mut *announce);
                d.remove_connection(u, now + Duration::from_millis(i as u64), &mut *announce);
            }
        });
        assert_eq!(got, ["Online(a)", "Online(b)", "Online(c)", "Offline(a)"]);
        assert_eq!(d.presence_of("b"), (true, 0));
    }

    #[test]
    fn per_user_limit() {
        let d = directory(2, 10);
        let u = name("u");
        assert!(d.add_connection(&u, |_| {}));
        assert!(d.add_connection(&u, |_| {}));
        assert!(!d.add_connection(&u, |_| {}));
        d.remove_connection("u", Instant::now(), |_| {});
        assert_eq!(d.connections_of("u"), 1);
        assert!(d.add_connection(&u, |_| {}));
    }

    #[test]
    fn pages_follow_the_cursor() {
        let d = directory(5, 10);
        for u in ["c", "a", "e", "b", "d"] {
            d.add_connection(&name(u), |_| {});
        }
        let (p1, more) = d.users_page(None, 2);
        assert_eq!(p1.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), ["a", "b"]);
        assert!(more);
        d.remove_connection("c", Instant::now(), |_| {});
        d.add_connection(&name("a2"), |_| {});
        let (p2, more) = d.users_page(Some("b"), 2);
        assert_eq!(p2.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), ["d", "e"]);
        assert!(!more);
    }
}
