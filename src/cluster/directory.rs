//! The process-wide directory of users and rooms: who holds how many connections, which rooms
//! exist, how many members they have and who made them. It is touched on connect, disconnect,
//! join, leave and by REST queries, never per message: messages travel through the shards'
//! inboxes (`local.rs`). It is the local backplane's answer to cluster-wide questions.
//!
//! Both maps are ordered, so listings page with a cursor (the last key returned) and stay
//! consistent while users come and go: every entry present throughout appears exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::hub::RoomRefused;

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
    /// Created by a client's `create` (its user is `created_by`), and counted against that
    /// user's `MAX_ROOMS_CREATED_PER_USER` until closed.
    pub(crate) by_client: bool,
}

/// Who creates a room, by the one path both take ([`Directory::create_room`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Creator {
    /// The backend (`POST /api/v1/rooms`), naming the creator it wants recorded, if any.
    Backend(Option<String>),
    /// A client's `create`: its user, who may hold at most `max_rooms` rooms it created.
    Client { user: Arc<str>, max_rooms: u32 },
}

/// What the backend may set on a room it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoomOptions {
    pub(crate) private: bool,
    pub(crate) max_members: Option<u32>,
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
    users: Mutex<BTreeMap<Arc<str>, u32>>,
    rooms: Mutex<BTreeMap<Arc<str>, RoomInfo>>,
    /// The users let into each private room (by `POST /api/v1/rooms/{roomId}/members`), at
    /// most [`MAX_ALLOWED`] per room. Taken after `rooms` when both are held.
    allowed: Mutex<BTreeMap<Arc<str>, BTreeSet<Arc<str>>>>,
    /// Rooms each user created with `create` and the backend has not closed. Taken after
    /// `rooms` when both are held.
    created: Mutex<BTreeMap<Arc<str>, u32>>,
    max_per_user: u32,
    max_rooms: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain counters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Directory {
    pub(crate) fn new(max_per_user: u32, max_rooms: usize) -> Self {
        Directory {
            users: Mutex::default(),
            rooms: Mutex::default(),
            allowed: Mutex::default(),
            created: Mutex::default(),
            max_per_user,
            max_rooms,
        }
    }

    /// Counts one more connection for `user`, unless it already holds the maximum.
    pub(crate) fn add_connection(&self, user: &Arc<str>) -> bool {
        let mut users = lock(&self.users);
        match users.get_mut(&**user) {
            Some(n) if *n >= self.max_per_user => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if self.max_per_user == 0 => false,
            None => {
                users.insert(user.clone(), 1);
                true
            }
        }
    }

    /// Counts one connection fewer for `user`.
    pub(crate) fn remove_connection(&self, user: &str) {
        let mut users = lock(&self.users);
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    /// Connections `user` holds now.
    pub(crate) fn connections_of(&self, user: &str) -> u32 {
        lock(&self.users).get(user).copied().unwrap_or(0)
    }

    /// Connected users now.
    pub(crate) fn user_count(&self) -> usize {
        lock(&self.users).len()
    }

    /// Up to `limit` connected users after `cursor`, in order, and whether more follow.
    pub(crate) fn users_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(Arc<str>, u32)>, bool) {
        page(&lock(&self.users), cursor, limit, |n| *n)
    }

    /// Counts one more member of `room`, creating the room unless the server is at `max_rooms`.
    pub(crate) fn add_member(&self, room: &Arc<str>) -> Result<(), RoomRefused> {
        let mut rooms = lock(&self.rooms);
        if let Some(info) = rooms.get_mut(&**room) {
            if info.max_members.is_some_and(|max| info.members >= max) {
                return Err(RoomRefused::Full);
            }
            info.members += 1;
            return Ok(());
        }
        if rooms.len() >= self.max_rooms {
            return Err(RoomRefused::TooManyRooms);
        }
        let info = RoomInfo {
            members: 1,
            created_by: None,
            created_at: None,
            explicit: false,
            private: false,
            max_members: None,
            by_client: false,
        };
        rooms.insert(room.clone(), info);
        Ok(())
    }

    /// Counts one member fewer; a room made by `join` disappears with its last member.
    pub(crate) fn remove_member(&self, room: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(info) = rooms.get_mut(room) {
            info.members = info.members.saturating_sub(1);
            if info.members == 0 && !info.explicit {
                rooms.remove(room);
            }
        }
    }

    /// Creates a room (over REST, or by a client's `create`): it outlives its members until
    /// closed.
    pub(crate) fn create_room(
        &self,
        room: &Arc<str>,
        creator: Creator,
        options: RoomOptions,
    ) -> Result<RoomInfo, RoomRefused> {
        let mut rooms = lock(&self.rooms);
        if rooms.contains_key(&**room) {
            return Err(RoomRefused::Exists);
        }
        if rooms.len() >= self.max_rooms {
            return Err(RoomRefused::TooManyRooms);
        }
        let (created_by, by_client) = match creator {
            Creator::Backend(created_by) => (created_by, false),
            Creator::Client { user, max_rooms } => {
                let mut created = lock(&self.created);
                let count = created.entry(user.clone()).or_default();
                if *count >= max_rooms {
                    if *count == 0 {
                        created.remove(&user);
                    }
                    return Err(RoomRefused::CreatorLimit);
                }
                *count += 1;
                (Some(user.to_string()), true)
            }
        };
        let info = RoomInfo {
            members: 0,
            created_by,
            created_at: Some(SystemTime::now()),
            explicit: true,
            private: options.private,
            max_members: options.max_members,
            by_client,
        };
        rooms.insert(room.clone(), info.clone());
        Ok(info)
    }

    /// Removes a room whatever its members (they are removed by the shards); returns whether
    /// it existed.
    pub(crate) fn close_room(&self, room: &str) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some(info) = rooms.remove(room) else {
            return false;
        };
        if let (true, Some(user)) = (info.by_client, info.created_by.as_deref()) {
            let mut created = lock(&self.created);
            if let Some(count) = created.get_mut(user) {
                *count -= 1;
                if *count == 0 {
                    created.remove(user);
                }
            }
        }
        drop(rooms);
        lock(&self.allowed).remove(room);
        true
    }

    /// Whether `user` may join `room` (without looking at the token: see the caller).
    pub(crate) fn access(&self, room: &str, user: &str) -> Access {
        let rooms = lock(&self.rooms);
        let Some(info) = rooms.get(room) else {
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
        let Some((name, info)) = rooms.get_key_value(room) else {
            return true;
        };
        if !info.private {
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

    /// A room's entry.
    pub(crate) fn room(&self, room: &str) -> Option<RoomInfo> {
        lock(&self.rooms).get(room).cloned()
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
        page(&lock(&self.rooms), cursor, limit, RoomInfo::clone)
    }
}

/// Entries strictly after `cursor`, at most `limit`, and whether more follow.
fn page<V, T>(
    map: &BTreeMap<Arc<str>, V>,
    cursor: Option<&str>,
    limit: usize,
    view: impl Fn(&V) -> T,
) -> (Vec<(Arc<str>, T)>, bool) {
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

    #[test]
    fn a_room_with_max_members_refuses_one_more() {
        let d = Directory::new(2, 10);
        let r: Arc<str> = "small".into();
        let options = RoomOptions {
            private: false,
            max_members: Some(2),
        };
        d.create_room(&r, Creator::Backend(None), options).unwrap();
        assert_eq!(d.add_member(&r), Ok(()));
        assert_eq!(d.add_member(&r), Ok(()));
        assert_eq!(d.add_member(&r), Err(RoomRefused::Full));
        d.remove_member("small");
        assert_eq!(d.add_member(&r), Ok(()), "a place came free");
    }

    #[test]
    fn private_rooms_let_in_their_creator_and_the_users_allowed() {
        let d = Directory::new(2, 10);
        let (p, q): (Arc<str>, Arc<str>) = ("p".into(), "q".into());
        let private = RoomOptions {
            private: true,
            max_members: None,
        };
        d.create_room(&p, Creator::Backend(Some("ann".into())), private)
            .unwrap();
        d.create_room(&q, Creator::Backend(None), RoomOptions::default())
            .unwrap();
        assert_eq!(d.access("p", "ann"), Access::Private { allowed: true });
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert!(d.allow("p", &Arc::from("bob")));
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: true });
        d.disallow("p", "bob");
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert_eq!(d.access("q", "bob"), Access::Public);
        assert_eq!(d.access("none", "bob"), Access::Missing);
        assert!(
            d.allow("q", &Arc::from("bob")),
            "a public room needs no permission"
        );
        assert!(d.close_room("p"));
        assert_eq!(d.access("p", "ann"), Access::Missing);
    }

    #[test]
    fn per_user_limit() {
        let d = Directory::new(2, 10);
        let u: Arc<str> = "u".into();
        assert!(d.add_connection(&u));
        assert!(d.add_connection(&u));
        assert!(!d.add_connection(&u));
        d.remove_connection("u");
        assert_eq!(d.connections_of("u"), 1);
        assert!(d.add_connection(&u));
    }

    #[test]
    fn rooms_come_and_go_within_the_bound() {
        let d = Directory::new(2, 2);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        assert_eq!(d.add_member(&a), Ok(()));
        assert_eq!(d.add_member(&a), Ok(()));
        assert_eq!(d.add_member(&b), Ok(()));
        assert_eq!(d.add_member(&c), Err(RoomRefused::TooManyRooms));
        d.remove_member("a");
        assert_eq!(d.room_count(), 2);
        d.remove_member("a");
        assert_eq!(d.room_count(), 1);
        assert_eq!(d.add_member(&c), Ok(()));
    }

    #[test]
    fn explicit_rooms_outlive_their_members_until_closed() {
        let d = Directory::new(2, 10);
        let r: Arc<str> = "r".into();
        d.create_room(
            &r,
            Creator::Backend(Some("dhoni".into())),
            RoomOptions::default(),
        )
        .unwrap();
        assert_eq!(
            d.create_room(&r, Creator::Backend(None), RoomOptions::default()),
            Err(RoomRefused::Exists)
        );
        d.add_member(&r).unwrap();
        d.remove_member("r");
        assert_eq!(d.room("r").unwrap().created_by.as_deref(), Some("dhoni"));
        assert!(d.close_room("r"));
        assert!(d.room("r").is_none());
        assert!(!d.close_room("r"));
    }

    #[test]
    fn a_user_creates_at_most_its_rooms_until_the_backend_closes_one() {
        let d = Directory::new(2, 10);
        let ann: Arc<str> = "ann".into();
        let client = || Creator::Client {
            user: ann.clone(),
            max_rooms: 2,
        };
        let opts = RoomOptions::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        assert!(d.create_room(&a, client(), opts).unwrap().by_client);
        d.create_room(&b, client(), opts).unwrap();
        assert_eq!(
            d.create_room(&c, client(), opts),
            Err(RoomRefused::CreatorLimit)
        );
        let other = Creator::Client {
            user: "ben".into(),
            max_rooms: 2,
        };
        assert!(d.create_room(&c, other, opts).is_ok(), "each user its own");
        assert!(d.close_room("a"));
        assert!(
            d.create_room(&a, client(), opts).is_ok(),
            "a place came free"
        );
        assert_eq!(d.room("a").unwrap().created_by.as_deref(), Some("ann"));
    }

    #[test]
    fn pages_follow_the_cursor() {
        let d = Directory::new(5, 10);
        for u in ["c", "a", "e", "b", "d"] {
            d.add_connection(&Arc::from(u));
        }
        let (p1, more) = d.users_page(None, 2);
        assert_eq!(p1.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), ["a", "b"]);
        assert!(more);
        d.remove_connection("c");
        d.add_connection(&Arc::from("a2"));
        let (p2, more) = d.users_page(Some("b"), 2);
        assert_eq!(p2.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), ["d", "e"]);
        assert!(!more);
    }
}
