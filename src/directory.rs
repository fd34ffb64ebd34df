//! The server-wide directory of users and rooms: who holds how many connections, which rooms
//! exist. It is touched on connect, disconnect, join and leave, never per message: messages
//! travel through the shards' inboxes (see `router.rs`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::RandomState;

/// Stripes of the directory's maps: a connect on one user rarely waits for another's.
const STRIPES: usize = 64;

/// A map split into independently locked stripes. A std `Mutex` and not tokio's: the critical
/// sections are a few map operations and never await.
struct Striped<V> {
    hasher: RandomState,
    stripes: Vec<Mutex<HashMap<Arc<str>, V, RandomState>>>,
}

impl<V> Striped<V> {
    fn new() -> Self {
        Striped {
            hasher: RandomState::new(),
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    fn stripe(&self, key: &str) -> MutexGuard<'_, HashMap<Arc<str>, V, RandomState>> {
        let i = self.hasher.hash_one(key) as usize % STRIPES;
        // A poisoned stripe only means a panic elsewhere mid-update of plain counters.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Users and rooms across all shards.
pub(crate) struct Directory {
    /// Connections per authenticated user.
    users: Striped<u32>,
    /// Members (connections) per room.
    rooms: Striped<u32>,
    room_count: AtomicUsize,
    max_per_user: u32,
    max_rooms: usize,
}

/// Why a join could not add a membership.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// The server already has `max_rooms` rooms.
    TooManyRooms,
}

impl Directory {
    pub(crate) fn new(max_per_user: u32, max_rooms: usize) -> Self {
        Directory {
            users: Striped::new(),
            rooms: Striped::new(),
            room_count: AtomicUsize::new(0),
            max_per_user,
            max_rooms,
        }
    }

    /// Counts one more connection for `user`, unless it already holds the maximum.
    pub(crate) fn add_connection(&self, user: &Arc<str>) -> bool {
        let mut map = self.users.stripe(user);
        let n = map.entry(user.clone()).or_insert(0);
        if *n >= self.max_per_user {
            if *n == 0 {
                map.remove(&**user);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// Counts one connection fewer for `user`.
    pub(crate) fn remove_connection(&self, user: &str) {
        decrement(&mut self.users.stripe(user), user);
    }

    /// Connections `user` holds now.
    #[cfg(test)]
    pub(crate) fn connections_of(&self, user: &str) -> u32 {
        self.users.stripe(user).get(user).copied().unwrap_or(0)
    }

    /// Counts one more member of `room`, creating the room unless the server is at `max_rooms`.
    pub(crate) fn add_member(&self, room: &Arc<str>) -> Result<(), JoinRefused> {
        let mut map = self.rooms.stripe(room);
        if let Some(n) = map.get_mut(&**room) {
            *n += 1;
            return Ok(());
        }
        let reserved = self
            .room_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max_rooms).then_some(c + 1)
            });
        if reserved.is_err() {
            return Err(JoinRefused::TooManyRooms);
        }
        map.insert(room.clone(), 1);
        Ok(())
    }

    /// Counts one member fewer; the room disappears with its last member.
    pub(crate) fn remove_member(&self, room: &str) {
        if decrement(&mut self.rooms.stripe(room), room) {
            self.room_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Rooms on the server now.
    pub(crate) fn room_count(&self) -> usize {
        self.room_count.load(Ordering::Acquire)
    }
}

/// Decrements a count, removing the entry at zero; returns whether it was removed.
fn decrement<K: Hash + Eq + std::borrow::Borrow<str>>(
    map: &mut HashMap<K, u32, RandomState>,
    key: &str,
) -> bool {
    match map.get_mut(key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            map.remove(key);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(d.add_member(&c), Err(JoinRefused::TooManyRooms));
        d.remove_member("a");
        assert_eq!(d.room_count(), 2);
        d.remove_member("a");
        assert_eq!(d.room_count(), 1);
        assert_eq!(d.add_member(&c), Ok(()));
    }
}
