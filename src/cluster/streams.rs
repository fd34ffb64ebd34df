//! Every room's stream on this node, shared by its shards: a fixed set of buckets, each a
//! mutex over its streams. Whoever appends to a stream holds its bucket's lock while it takes
//! the next offset and hands the message to every hub, so each hub sees a stream's messages in
//! offset order. A lock is held for a few map operations and queue pushes, never across an
//! await and never for I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ahash::RandomState;

use crate::hub::{Stream, StreamLimits};

/// Buckets: enough that shards publishing to different rooms rarely meet on one lock.
const BUCKETS: usize = 64;

type Bucket = HashMap<Arc<str>, Stream, RandomState>;

/// The streams, their limits, and how many a bucket may hold.
pub(crate) struct Streams {
    buckets: Box<[Mutex<Bucket>]>,
    /// Hashes a room to its bucket (fixed for the process's life).
    hasher: RandomState,
    limits: StreamLimits,
    /// `MAX_ROOMS` spread over the buckets: past it, the stream idle longest is forgotten.
    per_bucket: usize,
}

impl Streams {
    /// No streams yet; at most about `max_streams` at once.
    pub(crate) fn new(limits: StreamLimits, max_streams: usize) -> Streams {
        Streams {
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            limits,
            per_bucket: max_streams.div_ceil(BUCKETS).max(1),
        }
    }

    /// The limits every stream keeps to.
    pub(crate) fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    fn bucket(&self, room: &str) -> MutexGuard<'_, Bucket> {
        let i = self.hasher.hash_one(room) as usize % BUCKETS;
        lock(&self.buckets[i])
    }

    /// Runs `f` on `room`'s stream under its bucket's lock, making the stream (a new epoch)
    /// if it has none. `f` must be short: it holds the lock.
    pub(crate) fn with<R>(&self, room: &Arc<str>, f: impl FnOnce(&mut Stream) -> R) -> R {
        let mut bucket = self.bucket(room);
        if !bucket.contains_key(&**room) && bucket.len() >= self.per_bucket {
            forget_idlest(&mut bucket);
        }
        let stream = bucket
            .entry(room.clone())
            .or_insert_with(|| Stream::new(rand::random(), unix_ms()));
        f(stream)
    }

    /// Drops messages past their age in every `parts`-th bucket from `part`, and forgets
    /// streams that kept nothing for a whole `ROOM_HISTORY_TTL` (their next use starts a new
    /// epoch). Each shard's sweep takes its own part.
    pub(crate) fn expire(&self, part: usize, parts: usize) {
        let now = unix_ms();
        for bucket in self.buckets.iter().skip(part).step_by(parts.max(1)) {
            let mut bucket = lock(bucket);
            bucket.retain(|_, stream| {
                stream.trim(now, &self.limits);
                !stream.is_idle(now, &self.limits)
            });
        }
    }
}

/// Forgets the stream used longest ago.
fn forget_idlest(bucket: &mut Bucket) {
    let idlest = bucket
        .iter()
        .min_by_key(|(_, s)| s.touched())
        .map(|(room, _)| room.clone());
    if let Some(room) = idlest {
        bucket.remove(&room);
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the stream stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_forgets_its_idlest_stream() {
        let limits = StreamLimits {
            size: 10,
            bytes: 1 << 20,
            ttl_ms: 60_000,
        };
        // One stream per bucket.
        let streams = Streams::new(limits, 1);
        let a: Arc<str> = "a".into();
        let epoch = streams.with(&a, |s| s.position().epoch);
        assert_eq!(streams.with(&a, |s| s.position().epoch), epoch, "kept");
        // Find another room in the same bucket, which must push `a` out.
        let same = (0..10_000)
            .map(|i| Arc::<str>::from(format!("r{i}")))
            .find(|r| {
                streams.hasher.hash_one(&**r) as usize % BUCKETS
                    == streams.hasher.hash_one("a") as usize % BUCKETS
            });
        let Some(b) = same else {
            panic!("no room shares a bucket with `a` among 10,000")
        };
        streams.with(&b, |_| ());
        let again = streams.with(&a, |s| s.position().epoch);
        assert_ne!(again, epoch, "forgotten: a new epoch");
    }
}
