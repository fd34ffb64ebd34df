//! Read markers: for each user, the last offset it marked read in each room (the `read`
//! command), from which unread counts follow (`offset - read`). Process-wide, in buckets like
//! the streams; written to the store so they survive a restart. Bounded: at most
//! [`MAX_MARKERS_PER_USER`] rooms per user, and at most `MAX_USER_STREAMS` users.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::RandomState;

use crate::store::{Op, Slot};

/// Most rooms one user keeps a read marker in.
pub(crate) const MAX_MARKERS_PER_USER: usize = 256;

const BUCKETS: usize = 64;

type Markers = BTreeMap<Arc<str>, u64>;
type Bucket = HashMap<Arc<str>, Markers, RandomState>;

/// Why a marker was not kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MarkRefused {
    /// The user has markers in [`MAX_MARKERS_PER_USER`] rooms, or the server holds markers
    /// for its most users.
    Limit,
}

/// Every user's read markers.
pub(crate) struct Reads {
    buckets: Box<[Mutex<Bucket>]>,
    hasher: RandomState,
    per_bucket: usize,
}

impl Reads {
    /// No markers; at most about `max_users` users with markers.
    pub(crate) fn new(max_users: usize) -> Reads {
        Reads {
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_bucket: max_users.div_ceil(BUCKETS).max(1),
        }
    }

    fn bucket(&self, user: &str) -> MutexGuard<'_, Bucket> {
        let i = self.hasher.hash_one(user) as usize % BUCKETS;
        self.buckets[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves `user`'s marker in `room` to `offset` (never back), written to the store in
    /// `slot`; returns the marker now.
    pub(crate) fn mark(
        &self,
        user: &Arc<str>,
        room: &Arc<str>,
        offset: u64,
        slot: Slot<'_>,
    ) -> Result<u64, MarkRefused> {
        let mut bucket = self.bucket(user);
        if !bucket.contains_key(&**user) && bucket.len() >= self.per_bucket {
            return Err(MarkRefused::Limit);
        }
        let markers = bucket.entry(user.clone()).or_default();
        if !markers.contains_key(&**room) && markers.len() >= MAX_MARKERS_PER_USER {
            return Err(MarkRefused::Limit);
        }
        let marker = markers.entry(room.clone()).or_insert(0);
        if offset > *marker {
            *marker = offset;
            slot.push(Op::Read {
                user: user.clone(),
                room: room.clone(),
                offset,
            });
        }
        Ok(*marker)
    }

    /// `user`'s marker in `room`, if it has one.
    pub(crate) fn marker(&self, user: &str, room: &str) -> Option<u64> {
        self.bucket(user).get(user)?.get(room).copied()
    }

    /// Every marker of `user`, by room.
    pub(crate) fn markers(&self, user: &str) -> Vec<(Arc<str>, u64)> {
        self.bucket(user)
            .get(user)
            .map(|m| m.iter().map(|(r, o)| (r.clone(), *o)).collect())
            .unwrap_or_default()
    }

    /// Puts back the markers the store kept (at start).
    pub(crate) fn restore(&self, markers: Vec<(String, String, u64)>) {
        for (user, room, offset) in markers {
            let user: Arc<str> = user.into();
            self.bucket(&user)
                .entry(user.clone())
                .or_default()
                .insert(room.into(), offset);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use crate::store::Store;

    #[test]
    fn markers_only_move_forward_and_are_bounded() {
        let store = Store::memory();
        let slot = || store.try_reserve().expect("memory has room");
        let reads = Reads::new(10);
        let (u, r): (Arc<str>, Arc<str>) = ("ann".into(), "lobby".into());
        assert_eq!(reads.mark(&u, &r, 5, slot()), Ok(5));
        assert_eq!(reads.mark(&u, &r, 3, slot()), Ok(5), "never back");
        assert_eq!(reads.marker("ann", "lobby"), Some(5));
        for i in 1..MAX_MARKERS_PER_USER {
            let room: Arc<str> = format!("r{i}").into();
            assert!(reads.mark(&u, &room, 1, slot()).is_ok());
        }
        let one_more: Arc<str> = "one-more".into();
        assert_eq!(
            reads.mark(&u, &one_more, 1, slot()),
            Err(MarkRefused::Limit)
        );
        assert_eq!(reads.markers("ann").len(), MAX_MARKERS_PER_USER);
    }
}
