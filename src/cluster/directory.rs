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
use crate::store::{Op, RoomDef, Slot};

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

    /// Creates a room over REST; its definition is written to the store in `slot`.
    pub(crate) fn create_room(
        &self,
        room: &Arc<str>,
        created_by: Option<String>,
        options: RoomOptions,
        slot: Slot<'_>,
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
        };
        slot.push(Op::Room {
            room: room.clone(),
            def: Some(RoomDef {
                private: info.private,
                max_members: info.max_members,
                created_by: info.created_by.clone(),
                created_at: crate::clock::unix_ms(),
            }),
        });
        rooms.insert(room.clone(), info.clone());
        Ok(info)
    }

    /// Puts back the rooms the store kept, and who was let into them (at start).
    pub(crate) fn restore(&self, rooms: Vec<(String, RoomDef)>, allowed: Vec<(String, String)>) {
        let mut map = lock(&self.rooms);
        for (room, def) in rooms {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(def.created_at);
            map.insert(
                room.into(),
                RoomInfo {
                    members: 0,
                    created_by: def.created_by,
                    created_at: Some(at),
                    explicit: true,
                    private: def.private,
                    max_members: def.max_members,
                },
            );
        }
        let mut users = lock(&self.allowed);
        for (room, user) in allowed {
            if let Some((name, _)) = map.get_key_value(room.as_str()) {
                users.entry(name.clone()).or_default().insert(user.into());
            }
        }
    }

    /// Removes a room whatever its members (they are removed by the shards), and its
    /// definition from the store in `slot`; returns whether it existed.
    pub(crate) fn close_room(&self, room: &str, slot: Slot<'_>) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some((name, info)) = rooms.remove_entry(room) else {
            return false;
        };
        if info.explicit {
            slot.push(Op::Room {
                room: name,
                def: None,
            });
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

    /// Lets `user` into private room `room` (a no-op for a public one), written to the store
    /// in `slot`; `false` when the room already lets [`MAX_ALLOWED`] users in.
    pub(crate) fn allow(&self, room: &str, user: &Arc<str>, slot: Slot<'_>) -> bool {
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
        if users.insert(user.clone()) {
            slot.push(Op::Allowed {
                room: name.clone(),
                user: user.clone(),
                allowed: true,
            });
        }
        true
    }

    /// Takes `user`'s permission to join private room `room` back (in the store in `slot`).
    pub(crate) fn disallow(&self, room: &str, user: &str, slot: Slot<'_>) {
        let mut allowed = lock(&self.allowed);
        let Some(name) = allowed.get_key_value(room).map(|(name, _)| name.clone()) else {
            return;
        };
        let taken = allowed.get_mut(room).and_then(|users| users.take(user));
        if let Some(user) = taken {
            slot.push(Op::Allowed {
                room: name,
                user,
                allowed: false,
            });
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

    /// A slot of a memory store (writes go nowhere).
    fn slot() -> Slot<'static> {
        static STORE: std::sync::OnceLock<crate::store::Store> = std::sync::OnceLock::new();
        let store = STORE.get_or_init(crate::store::Store::memory);
        store.try_reserve().expect("a memory store always has room")
    }

    #[test]
    fn a_room_with_max_members_refuses_one_more() {
        let d = Directory::new(2, 10);
        let r: Arc<str> = "small".into();
        let options = RoomOptions {
            private: false,
            max_members: Some(2),
        };
        d.create_room(&r, None, options, slot()).unwrap();
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
        d.create_room(&p, Some("ann".into()), private, slot())
            .unwrap();
        d.create_room(&q, None, RoomOptions::default(), slot())
            .unwrap();
        assert_eq!(d.access("p", "ann"), Access::Private { allowed: true });
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert!(d.allow("p", &Arc::from("bob"), slot()));
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: true });
        d.disallow("p", "bob", slot());
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert_eq!(d.access("q", "bob"), Access::Public);
        assert_eq!(d.access("none", "bob"), Access::Missing);
        assert!(
            d.allow("q", &Arc::from("bob"), slot()),
            "a public room needs no permission"
        );
        assert!(d.close_room("p", slot()));
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
        d.create_room(&r, Some("dhoni".into()), RoomOptions::default(), slot())
            .unwrap();
        assert_eq!(
            d.create_room(&r, None, RoomOptions::default(), slot()),
            Err(RoomRefused::Exists)
        );
        d.add_member(&r).unwrap();
        d.remove_member("r");
        assert_eq!(d.room("r").unwrap().created_by.as_deref(), Some("dhoni"));
        assert!(d.close_room("r", slot()));
        assert!(d.room("r").is_none());
        assert!(!d.close_room("r", slot()));
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
