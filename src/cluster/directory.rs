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
//! announcements of one room or user are made in the order of the changes. The users' half
//! (connections, watchers, the grace) is in `users.rs`.

mod users;

use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::hub::{Change, HistoryOptions, RoomRefused};
use crate::store::{Op, RoomDef, Slot};
use users::Users;

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
    /// Created by a client's `create` (its user is `created_by`), and counted against that
    /// user's `MAX_ROOMS_CREATED_PER_USER` until closed.
    pub(crate) by_client: bool,
    /// What its stream keeps (`historySize`, `historyTtl` at creation), as asked: unset
    /// options follow the server's defaults, even after a restart with other ones.
    pub(crate) history: HistoryOptions,
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
    /// `None`: the server's default (`ROOM_PRESENCE`).
    pub(crate) presence: Option<bool>,
    /// What its stream keeps; unset: the server's defaults (`ROOM_HISTORY_*`).
    pub(crate) history: HistoryOptions,
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
    /// Rooms each user created with `create` and the backend has not closed. Taken after
    /// `rooms` when both are held.
    created: Mutex<BTreeMap<Arc<str>, u32>>,
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
            created: Mutex::default(),
            max_per_user,
            max_rooms,
            rules,
        }
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
            btree_map::Entry::Vacant(entry) => entry.insert(Room::new(self.made_by_join())),
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

    /// The entry of a room made by a join, with no member counted yet.
    pub(crate) fn made_by_join(&self) -> RoomInfo {
        RoomInfo {
            members: 0,
            created_by: None,
            created_at: None,
            explicit: false,
            private: false,
            max_members: None,
            presence: self.rules.rooms_default,
            by_client: false,
            history: HistoryOptions::default(),
        }
    }

    /// `user`'s member connections of `room`.
    pub(crate) fn member_count(&self, room: &str, user: &str) -> u32 {
        lock(&self.rooms)
            .get(room)
            .and_then(|entry| entry.users.get(user).copied())
            .unwrap_or(0)
    }

    /// Every (room, member user) now: what cluster mode resyncs.
    pub(crate) fn memberships(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let rooms = lock(&self.rooms);
        let pairs = rooms.iter().flat_map(|(room, entry)| {
            entry
                .users
                .keys()
                .map(move |user| (room.clone(), user.clone()))
        });
        pairs.collect()
    }

    /// Creates a room (over REST, or by a client's `create`): it outlives its members until
    /// closed.
    pub(crate) fn create_room(
        &self,
        room: &Arc<str>,
        creator: Creator,
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
            presence: options.presence.unwrap_or(self.rules.rooms_default),
            by_client,
            history: options.history,
        };
        slot.push(Op::Room {
            room: room.clone(),
            def: Some(RoomDef {
                private: info.private,
                max_members: info.max_members,
                presence: info.presence,
                by_client: info.by_client,
                created_by: info.created_by.clone(),
                created_at: crate::clock::unix_ms(),
                history_size: info.history.size,
                history_ttl: info.history.ttl_secs,
            }),
        });
        rooms.insert(room.clone(), Room::new(info.clone()));
        Ok(info)
    }

    /// Puts back the rooms the store kept, and who was let into them (at start).
    pub(crate) fn restore(&self, rooms: Vec<(String, RoomDef)>, allowed: Vec<(String, String)>) {
        let mut map = lock(&self.rooms);
        for (room, def) in rooms {
            map.insert(room.into(), Room::new(info_of(def)));
        }
        // What each user created, counted again against `MAX_ROOMS_CREATED_PER_USER`.
        let mut created = lock(&self.created);
        for entry in map.values() {
            if let (true, Some(user)) = (entry.info.by_client, entry.info.created_by.as_deref()) {
                *created.entry(Arc::from(user)).or_default() += 1;
            }
        }
        let mut users = lock(&self.allowed);
        for (room, user) in allowed {
            if let Some((name, _)) = map.get_key_value(room.as_str()) {
                users.entry(name.clone()).or_default().insert(user.into());
            }
        }
    }

    /// Cluster mode: a room another node created (or this one at its start), known here
    /// from now on; a room of that name made here by a join keeps its members.
    pub(crate) fn define(&self, room: &Arc<str>, def: RoomDef) {
        let mut rooms = lock(&self.rooms);
        let info = info_of(def);
        match rooms.get_mut(&**room) {
            Some(entry) => {
                entry.info = RoomInfo {
                    members: entry.info.members,
                    ..info
                }
            }
            None => {
                rooms.insert(room.clone(), Room::new(info));
            }
        }
    }

    /// Removes a room whatever its members (they are removed by the shards), and its
    /// definition from the store in `slot`; returns whether it existed.
    pub(crate) fn close_room(&self, room: &str, slot: Slot<'_>) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some((name, entry)) = rooms.remove_entry(room) else {
            return false;
        };
        let info = entry.info;
        if info.explicit {
            slot.push(Op::Room {
                room: name,
                def: None,
            });
        }
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

    /// Lets `user` into private room `room` (a no-op for a public one), written to the store
    /// in `slot`; `false` when the room already lets [`MAX_ALLOWED`] users in.
    pub(crate) fn allow(&self, room: &str, user: &Arc<str>, slot: Slot<'_>) -> bool {
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

    /// Every room defined (not made by a join), with the users let into it: what cluster
    /// mode gives Redis back should Redis lose it.
    pub(crate) fn definitions(&self) -> Vec<(Arc<str>, RoomInfo, Vec<Arc<str>>)> {
        let rooms = lock(&self.rooms);
        let allowed = lock(&self.allowed);
        rooms
            .iter()
            .filter(|(_, entry)| entry.info.explicit)
            .map(|(name, entry)| {
                let users = allowed
                    .get(name)
                    .map(|users| users.iter().cloned().collect())
                    .unwrap_or_default();
                (name.clone(), entry.info.clone(), users)
            })
            .collect()
    }

    /// What a room's stream keeps, as the room asked (`None`: no such room).
    pub(crate) fn history(&self, room: &str) -> Option<HistoryOptions> {
        lock(&self.rooms).get(room).map(|entry| entry.info.history)
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

/// The entry of a room as its definition says.
fn info_of(def: RoomDef) -> RoomInfo {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(def.created_at);
    RoomInfo {
        members: 0,
        created_by: def.created_by,
        created_at: Some(at),
        explicit: true,
        private: def.private,
        max_members: def.max_members,
        presence: def.presence,
        by_client: def.by_client,
        history: HistoryOptions {
            size: def.history_size,
            ttl_secs: def.history_ttl,
        },
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

    /// A slot of a memory store (writes go nowhere).
    fn slot() -> Slot<'static> {
        static STORE: std::sync::OnceLock<crate::store::Store> = std::sync::OnceLock::new();
        let store = STORE.get_or_init(crate::store::Store::memory);
        store.try_reserve().expect("a memory store always has room")
    }

    pub(super) fn rules(grace_ms: u64) -> PresenceRules {
        PresenceRules {
            grace: Duration::from_millis(grace_ms),
            rooms_default: true,
            max_leaving: 2,
        }
    }

    pub(super) fn directory(max_per_user: u32, max_rooms: usize) -> Directory {
        Directory::new(max_per_user, max_rooms, rules(0))
    }

    pub(super) fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// What the calls in `f` announced, as text.
    pub(super) fn announced(f: impl FnOnce(&mut dyn FnMut(Change<'_>))) -> Vec<String> {
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
        d.create_room(&r, Creator::Backend(None), options, slot())
            .unwrap();
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
        d.create_room(&r, Creator::Backend(None), quiet, slot())
            .unwrap();
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
    fn private_rooms_let_in_their_creator_and_the_users_allowed() {
        let d = directory(2, 10);
        let (p, q) = (name("p"), name("q"));
        let private = RoomOptions {
            private: true,
            ..RoomOptions::default()
        };
        d.create_room(&p, Creator::Backend(Some("ann".into())), private, slot())
            .unwrap();
        d.create_room(&q, Creator::Backend(None), RoomOptions::default(), slot())
            .unwrap();
        assert_eq!(d.access("p", "ann"), Access::Private { allowed: true });
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert!(d.allow("p", &name("bob"), slot()));
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: true });
        d.disallow("p", "bob", slot());
        assert_eq!(d.access("p", "bob"), Access::Private { allowed: false });
        assert_eq!(d.access("q", "bob"), Access::Public);
        assert_eq!(d.access("none", "bob"), Access::Missing);
        assert!(
            d.allow("q", &name("bob"), slot()),
            "a public room needs no permission"
        );
        assert!(d.close_room("p", slot()));
        assert_eq!(d.access("p", "ann"), Access::Missing);
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
        d.create_room(
            &r,
            Creator::Backend(Some("dhoni".into())),
            RoomOptions::default(),
            slot(),
        )
        .unwrap();
        assert_eq!(
            d.create_room(&r, Creator::Backend(None), RoomOptions::default(), slot()),
            Err(RoomRefused::Exists)
        );
        d.add_member(&r, &u, |_| {}).unwrap();
        d.remove_member("r", "u", |_| {});
        assert_eq!(d.room("r").unwrap().created_by.as_deref(), Some("dhoni"));
        assert!(d.close_room("r", slot()));
        assert!(d.room("r").is_none());
        assert!(!d.close_room("r", slot()));
    }

    #[test]
    fn a_user_creates_at_most_its_rooms_until_the_backend_closes_one() {
        let d = directory(2, 10);
        let ann: Arc<str> = "ann".into();
        let client = || Creator::Client {
            user: ann.clone(),
            max_rooms: 2,
        };
        let opts = RoomOptions::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        assert!(d.create_room(&a, client(), opts, slot()).unwrap().by_client);
        d.create_room(&b, client(), opts, slot()).unwrap();
        assert_eq!(
            d.create_room(&c, client(), opts, slot()),
            Err(RoomRefused::CreatorLimit)
        );
        let other = Creator::Client {
            user: "ben".into(),
            max_rooms: 2,
        };
        assert!(
            d.create_room(&c, other, opts, slot()).is_ok(),
            "each user its own"
        );
        assert!(d.close_room("a", slot()));
        assert!(
            d.create_room(&a, client(), opts, slot()).is_ok(),
            "a place came free"
        );
        assert_eq!(d.room("a").unwrap().created_by.as_deref(), Some("ann"));
    }
}
