//! The process-wide directory of users and rooms: who holds how many connections, which rooms
//! exist, how many members they have and who made them. It is touched on connect, disconnect,
//! join, leave and by REST queries, never per message: messages travel through the shards'
//! inboxes (`local.rs`). It is the local backplane's answer to cluster-wide questions.
//!
//! Both maps are ordered, so listings page with a cursor (the last key returned) and stay
//! consistent while users come and go: every entry present throughout appears exactly once.
//!
//! It also decides presence: a room's members are counted per user, so a user's first
//! connection in a room and its last one are known exactly, whatever the shards; and a user's
//! first connection and its last one (after a grace period without any) likewise. Each such
//! change is handed, under the lock that decided it, to the caller's `announce`, so that the
//! announcements of one room or user are made in the order of the changes.

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::hub::{Change, RoomRefused};

/// A room's directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoomInfo {
    /// Member connections, on all shards.
    pub(crate) members: u32,
    /// Who created it over REST (`None` for rooms made by a `join`).
    pub(crate) created_by: Option<String>,
    /// When it was created over REST.
    pub(crate) created_at: Option<SystemTime>,
    /// Created over REST: it outlives its last member until closed.
    pub(crate) explicit: bool,
    /// Private: only its creator and the users the backend let in (or whose token's `rooms`
    /// claim matches it) may join.
    pub(crate) private: bool,
    /// Most member connections (`maxMembers` at creation); `None`: only the server's bounds.
    pub(crate) max_members: Option<u32>,
    /// Whether the room announces `presence.join` / `presence.leave` (`ROOM_PRESENCE`, or the
    /// room's `presence` at creation).
    pub(crate) presence: bool,
}

/// What the backend may set on a room it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoomOptions {
    pub(crate) private: bool,
    pub(crate) max_members: Option<u32>,
    /// `None`: the server's default (`ROOM_PRESENCE`).
    pub(crate) presence: Option<bool>,
}

/// How the directory decides presence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PresenceRules {
    /// `PRESENCE_GRACE`: how long a user without connections still counts as online.
    pub(crate) grace: Duration,
    /// `ROOM_PRESENCE`: whether a room announces presence unless created otherwise.
    pub(crate) rooms_default: bool,
    /// Most users within the grace at once (`MAX_CONNECTIONS`): past it, the one nearest its
    /// end is announced offline at once.
    pub(crate) max_leaving: usize,
}

/// A room as the directory keeps it: its entry and its member users.
struct Room {
    info: RoomInfo,
    /// Member connections per user (the sum is `info.members`); ordered, for `members` pages.
    users: BTreeMap<Arc<str>, u32>,
    /// Member connections that follow its presence events, on all shards: with none, its
    /// changes are announced to nobody (opting out costs no delivery).
    followers: u32,
}

impl Room {
    fn new(info: RoomInfo) -> Room {
        Room {
            info,
            users: BTreeMap::new(),
            followers: 0,
        }
    }

    /// Whether its presence changes go to anyone.
    fn announces(&self) -> bool {
        self.info.presence && self.followers > 0
    }
}

/// Users: their connections, who watches them, and who is within the grace.
#[derive(Default)]
struct Users {
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

/// Who may join a room, as far as the directory knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No such room (a join makes it, public, unless `ROOMS_REQUIRE_CREATE`).
    Missing,
    /// Any authenticated user.
    Public,
    /// A private room; whether this user was let in (its creator, or added by the backend).
    Private { allowed: bool },
}

/// Most users the backend may let into one private room.
pub(crate) const MAX_ALLOWED: usize = 100_000;

/// Users and rooms across all shards. A std `Mutex` and not tokio's: every critical section is
/// a few map operations and never awaits.
pub(crate) struct Directory {
    users: Mutex<Users>,
    rooms: Mutex<BTreeMap<Arc<str>, Room>>,
    /// The users let into each private room (by `POST /api/v1/rooms/{roomId}/members`), at
    /// most [`MAX_ALLOWED`] per room. Taken after `rooms` when both are held.
    allowed: Mutex<BTreeMap<Arc<str>, BTreeSet<Arc<str>>>>,
    max_per_user: u32,
    max_rooms: usize,
    rules: PresenceRules,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain counters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Directory {
    pub(crate) fn new(max_per_user: u32, max_rooms: usize, rules: PresenceRules) -> Self {
        Directory {
            users: Mutex::default(),
            rooms: Mutex::default(),
            allowed: Mutex::default(),
            max_per_user,
            max_rooms,
            rules,
        }
    }

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
    pub(crate) fn remove_connection(
        &self,
        user: &str,
        now: Instant,
        mut announce: impl FnMut(Change<'_>),
    ) {
        let mut users = lock(&self.users);
        let Some((name, n)) = users
            .conns
            .get_key_value(user)
            .map(|(k, n)| (k.clone(), *n))
        else {
            return;
        };
        if n > 1 {
            users.conns.insert(name, n - 1);
            return;
        }
        users.conns.remove(user);
        if self.rules.grace.is_zero() {
            return offline(&users, &name, &mut announce);
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

    /// Connections `user` holds now.
    pub(crate) fn connections_of(&self, user: &str) -> u32 {
        lock(&self.users).conns.get(user).copied().unwrap_or(0)
    }

    /// Connected users now.
    pub(crate) fn user_count(&self) -> usize {
        lock(&self.users).conns.len()
    }

    /// Up to `limit` connected users after `cursor`, in order, and whether more follow.
    pub(crate) fn users_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(Arc<str>, u32)>, bool) {
        page(&lock(&self.users).conns, cursor, limit, |n| *n)
    }

    /// Counts one more member connection of `user` in `room`, creating the room unless the
    /// server is at `max_rooms`. The user's first is announced ([`Change::Joined`]) when the
    /// room announces presence.
    pub(crate) fn add_member(
        &self,
        room: &Arc<str>,
        user: &Arc<str>,
        announce: impl FnOnce(Change<'_>),
    ) -> Result<(), RoomRefused> {
        let mut rooms = lock(&self.rooms);
        let count = rooms.len();
        let entry = match rooms.entry(room.clone()) {
            btree_map::Entry::Occupied(entry) => {
                let info = &entry.get().info;
                if info.max_members.is_some_and(|max| info.members >= max) {
                    return Err(RoomRefused::Full);
                }
                entry.into_mut()
            }
            btree_map::Entry::Vacant(_) if count >= self.max_rooms => {
                return Err(RoomRefused::TooManyRooms)
            }
            btree_map::Entry::Vacant(entry) => {
                let info = RoomInfo {
                    members: 0,
                    created_by: None,
                    created_at: None,
                    explicit: false,
                    private: false,
                    max_members: None,
                    presence: self.rules.rooms_default,
                };
                entry.insert(Room::new(info))
            }
        };
        entry.info.members += 1;
        let count = entry.users.entry(user.clone()).or_default();
        *count += 1;
        if *count == 1 && entry.announces() {
            announce(Change::Joined { room, user });
        }
        Ok(())
    }

    /// Counts one member connection of `user` fewer; the user's last is announced
    /// ([`Change::Left`]) when the room announces presence. A room made by `join` disappears
    /// with its last member.
    pub(crate) fn remove_member(&self, room: &str, user: &str, announce: impl FnOnce(Change<'_>)) {
        let mut rooms = lock(&self.rooms);
        let Some(name) = rooms.get_key_value(room).map(|(name, _)| name.clone()) else {
            return;
        };
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        // Not counted here (a member of a room closed since, say): nothing to take back.
        let Some((user, n)) = entry.users.remove_entry(user) else {
            return;
        };
        entry.info.members = entry.info.members.saturating_sub(1);
        if n > 1 {
            entry.users.insert(user, n - 1);
        } else if entry.announces() {
            announce(Change::Left {
                room: &name,
                user: &user,
            });
        }
        if entry.info.members == 0 && !entry.info.explicit {
            rooms.remove(room);
        }
    }

    /// Up to `limit` member users of `room` after `after`, in order, each with its member
    /// connections, and whether more follow; `None` when there is no such room.
    pub(crate) fn members_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Page<u32>> {
        let rooms = lock(&self.rooms);
        let entry = rooms.get(room)?;
        Some(page(&entry.users, after, limit, |n| *n))
    }

    /// Creates a room over REST.
    pub(crate) fn create_room(
        &self,
        room: &Arc<str>,
        created_by: Option<String>,
        options: RoomOptions,
    ) -> Result<RoomInfo, RoomRefused> {
        let mut rooms = lock(&self.rooms);
        if rooms.contains_key(&**room) {
            return Err(RoomRefused::Exists);
        }
        if rooms.len() >= self.max_rooms {
            return Err(RoomRefused::TooManyRooms);
        }
        let info = RoomInfo {
            members: 0,
            created_by,
            created_at: Some(SystemTime::now()),
            explicit: true,
            private: options.private,
            max_members: options.max_members,
            presence: options.presence.unwrap_or(self.rules.rooms_default),
        };
        rooms.insert(room.clone(), Room::new(info.clone()));
        Ok(info)
    }

    /// Removes a room whatever its members (they are removed by the shards); returns whether
    /// it existed.
    pub(crate) fn close_room(&self, room: &str) -> bool {
        let closed = lock(&self.rooms).remove(room).is_some();
        lock(&self.allowed).remove(room);
        closed
    }

    /// Whether `user` may join `room` (without looking at the token: see the caller).
    pub(crate) fn access(&self, room: &str, user: &str) -> Access {
        let rooms = lock(&self.rooms);
        let Some(Room { info, .. }) = rooms.get(room) else {
            return Access::Missing;
        };
        if !info.private {
            return Access::Public;
        }
        let allowed = info.created_by.as_deref() == Some(user)
            || lock(&self.allowed)
                .get(room)
                .is_some_and(|users| users.contains(user));
        Access::Private { allowed }
    }

    /// Lets `user` into private room `room` (a no-op for a public one); `false` when the
    /// room already lets [`MAX_ALLOWED`] users in.
    pub(crate) fn allow(&self, room: &str, user: &Arc<str>) -> bool {
        let rooms = lock(&self.rooms);
        let Some((name, entry)) = rooms.get_key_value(room) else {
            return true;
        };
        if !entry.info.private {
            return true;
        }
        let mut allowed = lock(&self.allowed);
        let users = allowed.entry(name.clone()).or_default();
        if users.len() >= MAX_ALLOWED && !users.contains(&**user) {
            return false;
        }
        users.insert(user.clone());
        true
    }

    /// Takes `user`'s permission to join private room `room` back.
    pub(crate) fn disallow(&self, room: &str, user: &str) {
        if let Some(users) = lock(&self.allowed).get_mut(room) {
            users.remove(user);
        }
    }

    /// One more member connection follows `room`'s presence events, if the room announces
    /// presence (then `true`).
    pub(crate) fn follow(&self, room: &str) -> bool {
        match lock(&self.rooms).get_mut(room) {
            Some(entry) if entry.info.presence => {
                entry.followers += 1;
                true
            }
            _ => false,
        }
    }

    /// One member connection fewer follows `room`'s presence events.
    pub(crate) fn unfollow(&self, room: &str) {
        if let Some(entry) = lock(&self.rooms).get_mut(room) {
            entry.followers = entry.followers.saturating_sub(1);
        }
    }

    /// A room's entry.
    pub(crate) fn room(&self, room: &str) -> Option<RoomInfo> {
        lock(&self.rooms).get(room).map(|entry| entry.info.clone())
    }

    /// Rooms on the server now.
    pub(crate) fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Up to `limit` rooms after `cursor`, in order, and whether more follow.
    pub(crate) fn rooms_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(Arc<str>, RoomInfo)>, bool) {
        page(&lock(&self.rooms), cursor, limit, |entry| {
            entry.info.clone()
        })
    }
}

/// Announces `user` offline, if anyone watches it.
fn offline(users: &Users, user: &Arc<str>, announce: &mut impl FnMut(Change<'_>)) {
    if users.watched.contains_key(&**user) {
        announce(Change::Offline(user));
    }
}

/// A page of a listing: its entries, and whether more follow.
pub(crate) type Page<T> = (Vec<(Arc<str>, T)>, bool);

/// Entries strictly after `cursor`, at most `limit`, and whether more follow.
fn page<V, T>(
    map: &BTreeMap<Arc<str>, V>,
    cursor: Option<&str>,
    limit: usize,
    view: impl Fn(&V) -> T,
) -> Page<T> {
    use std::ops::Bound;
    let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
    let mut iter = map.range::<str, _>((start, Bound::Unbounded));
    let items: Vec<_> = iter
        .by_ref()
        .take(limit)
        .map(|(k, v)| (k.clone(), view(v)))
        .collect();
    let more = iter.next().is_some();
    (items, more)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules(grace_ms: u64) -> PresenceRules {
        PresenceRules {
            grace: Duration::from_millis(grace_ms),
            rooms_default: true,
            max_leaving: 2,
        }
    }

    fn directory(max_per_user: u32, max_rooms: usize) -> Directory {
        Directory::new(max_per_user, max_rooms, rules(0))
    }

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// What the calls in `f` announced, as text.
    fn announced(f: impl FnOnce(&mut dyn FnMut(Change<'_>))) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut |change| out.push(format!("{change:?}").replace('"', "")));
        out
    }

    #[test]
    fn a_room_with_max_members_refuses_one_more() {
        let d = directory(2, 10);
        let r = name("small");
        let options = RoomOptions {
            max_members: Some(2),
            ..RoomOptions::default()
        };
        d.create_room(&r, None, options).unwrap();
        let (a, b) = (name("a"), name("b"));
        assert_eq!(d.add_member(&r, &a, |_| {}), Ok(()));
        assert_eq!(d.add_member(&r, &a, |_| {}), Ok(()));
        assert_eq!(d.add_member(&r, &b, |_| {}), Err(RoomRefused::Full));
        d.remove_member("small", "a", |_| {});
        assert_eq!(d.add_member(&r, &b, |_| {}), Ok(()), "a place came free");
    }

    #[test]
    fn a_user_joins_with_its_first_connection_and_leaves_with_its_last() {
        let d = directory(5, 10);
        let (r, ann, bob) = (name("r"), name("ann"), name("bob"));
        let got = announced(|announce| {
            d.add_member(&r, &name("wendy"), &mut *announce).unwrap();
            assert!(d.follow("r"), "wendy follows");
            for user in [&ann, &ann, &bob, &ann] {
                d.add_member(&r, user, &mut *announce).unwrap();
            }
            for user in ["ann", "bob", "ann", "nobody", "ann"] {
                d.remove_member("r", user, &mut *announce);
            }
            d.unfollow("r");
            d.add_member(&r, &bob, &mut *announce).unwrap();
            d.remove_member("r", "bob", &mut *announce);
            d.remove_member("r", "wendy", &mut *announce);
        });
        assert_eq!(
            got,
            [
                "Joined { room: r, user: ann }",
                "Joined { room: r, user: bob }",
                "Left { room: r, user: bob }",
                "Left { room: r, user: ann }",
            ]
        );
        assert!(
            d.room("r").is_none(),
            "gone with its last member, unannounced: no follower"
        );
        let quiet = RoomOptions {
            presence: Some(false),
            ..RoomOptions::default()
        };
        d.create_room(&r, None, quiet).unwrap();
        assert!(!d.follow("r"), "nothing to follow");
        let got = announced(|announce| {
            d.add_member(&r, &ann, &mut *announce).unwrap();
            d.remove_member("r", "ann", &mut *announce);
        });
        assert!(got.is_empty(), "a room without presence announces nothing");
    }

    #[test]
    fn members_page_by_user_with_their_connections() {
        let d = directory(5, 10);
        let r = name("r");
        for user in ["c", "a", "b", "a"] {
            d.add_member(&r, &name(user), |_| {}).unwrap();
        }
        let (page, more) = d.members_page("r", None, 2).unwrap();
        assert_eq!(page, [(name("a"), 2), (name("b"), 1)]);
        assert!(more);
        let (page, more) = d.members_page("r", Some("b"), 2).unwrap();
        assert_eq!(page, [(name("c"), 1)]);
        assert!(!more);
        assert_eq!(d.room("r").unwrap().members, 4);
        assert!(d.members_page("none", None, 2).is_none());
    }

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
    fn private_rooms_let_in_their_creator_and_the_users_allowed() {
        let d = directory(2, 10);
        let (p, q) = (name("p"), name("q"));
        let private = RoomOptions {
            private: true,
            ..RoomOptions::default()
        };
        d.create_room(&p, Some("ann".into()), private).unwrap();
        d.create_room(&q, None, RoomOptions::default()).unwrap();
        assert_eq!(d.access("p", "ann"), Access::Private { allowed: true });
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert!(d.allow("p", &name("bob")));
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: true });
        d.disallow("p", "bob");
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert_eq!(d.access("q", "bob"), Access::Public);
        assert_eq!(d.access("none", "bob"), Access::Missing);
        assert!(
            d.allow("q", &name("bob")),
            "a public room needs no permission"
        );
        assert!(d.close_room("p"));
        assert_eq!(d.access("p", "ann"), Access::Missing);
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
    fn rooms_come_and_go_within_the_bound() {
        let d = directory(2, 2);
        let (a, b, c, u) = (name("a"), name("b"), name("c"), name("u"));
        assert_eq!(d.add_member(&a, &u, |_| {}), Ok(()));
        assert_eq!(d.add_member(&a, &u, |_| {}), Ok(()));
        assert_eq!(d.add_member(&b, &u, |_| {}), Ok(()));
        assert_eq!(d.add_member(&c, &u, |_| {}), Err(RoomRefused::TooManyRooms));
        d.remove_member("a", "u", |_| {});
        assert_eq!(d.room_count(), 2);
        d.remove_member("a", "u", |_| {});
        assert_eq!(d.room_count(), 1);
        assert_eq!(d.add_member(&c, &u, |_| {}), Ok(()));
    }

    #[test]
    fn explicit_rooms_outlive_their_members_until_closed() {
        let d = directory(2, 10);
        let (r, u) = (name("r"), name("u"));
        d.create_room(&r, Some("dhoni".into()), RoomOptions::default())
            .unwrap();
        assert_eq!(
            d.create_room(&r, None, RoomOptions::default()),
            Err(RoomRefused::Exists)
        );
        d.add_member(&r, &u, |_| {}).unwrap();
        d.remove_member("r", "u", |_| {});
        assert_eq!(d.room("r").unwrap().created_by.as_deref(), Some("dhoni"));
        assert!(d.close_room("r"));
        assert!(d.room("r").is_none());
        assert!(!d.close_room("r"));
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
