//! Every stream on this node (rooms' or users', one [`Streams`] for each kind), shared by its
//! shards: a fixed set of buckets, each a mutex over its streams. Whoever appends to a stream
//! holds its bucket's lock while it takes the next offset, hands the message to every hub and
//! queues its write to the store, so hubs and the disk see a stream's messages in offset
//! order. A lock is held for a few map operations and queue pushes, never across an await and
//! never for I/O: the store's writes go through reserved slots of its queue.
//!
//! A stream keeps to its kind's limits unless it has its own (a room created with history
//! options), which it carries itself: an append looks nothing up. They are asked for (`own`)
//! only when a stream is made, restored or its room created or closed, under its bucket's
//! lock; whoever answers (the directory) may take its own lock then, so no lock of the
//! directory is ever held while a bucket's is taken.
//!
//! User streams spill with the disk store: while its user has no connection on this node, a
//! user's stream keeps its messages only in the store ([`Streams::spill`]); the user's next
//! connection wakes it and loads them through the store's queue ([`Streams::load_round`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::RandomState;
use tokio::sync::oneshot;

pub(crate) use crate::clock::unix_ms;
use crate::hub::{Entry, OutEvent, Position, Stream, StreamLimits, Waiting};
use crate::store::{Kind, Message, Op, RecoveredStream, Slot, Store, StreamKey};

/// Buckets: enough that shards publishing to different rooms rarely meet on one lock.
const BUCKETS: usize = 64;

type Bucket = HashMap<Arc<str>, Stream, RandomState>;

/// The streams of one kind, their limits, how many a bucket may hold, and the store.
pub(crate) struct Streams {
    buckets: Box<[Mutex<Bucket>]>,
    /// Hashes a name to its bucket (fixed for the process's life).
    hasher: RandomState,
    /// The kind's limits, for every stream without its own.
    limits: StreamLimits,
    /// `MAX_ROOMS` spread over the buckets: past it, the stream idle longest is forgotten.
    per_bucket: usize,
    kind: Kind,
    /// Whether a stream without a connection of its user keeps its messages only in the
    /// store (user streams, with the disk store): see [`Streams::spill`].
    spills: bool,
    store: Arc<Store>,
}

/// One round of reading a user's waiting messages (see [`Streams::load_round`]).
pub(crate) enum Round {
    /// All of them were in memory: the rest of the mailbox, and where the stream is.
    Done {
        position: Position,
        manual: bool,
        held: Vec<Arc<OutEvent>>,
    },
    /// Some must come from the store first: offsets up to `last` are loading on `wait`.
    Load {
        last: u64,
        wait: oneshot::Receiver<Vec<(u64, Message)>>,
    },
}

/// The store slots one write to a stream may need: its own, and the new head's should the
/// stream be made by it. Unused slots go back when this is dropped.
pub(crate) struct Writes<'a> {
    head: Slot<'a>,
    write: Slot<'a>,
}

/// A message appended: its event (with its offset), and the wait for its fsync when replies
/// wait for one (`STORE_FSYNC=always`).
pub(crate) struct Appended {
    pub(crate) event: Arc<OutEvent>,
    pub(crate) durable: Option<oneshot::Receiver<()>>,
}

impl Streams {
    /// No streams yet; at most about `max_streams` at once; writes go to `store`.
    pub(crate) fn new(
        kind: Kind,
        limits: StreamLimits,
        max_streams: usize,
        store: Arc<Store>,
    ) -> Streams {
        Streams {
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            limits,
            per_bucket: max_streams.div_ceil(BUCKETS).max(1),
            kind,
            spills: kind == Kind::User && store.is_disk(),
            store,
        }
    }

    /// The limits of every stream without its own (`ROOM_HISTORY_*`, `USER_STREAM_*`).
    pub(crate) fn defaults(&self) -> &StreamLimits {
        &self.limits
    }

    /// Whether `name` has a stream now.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.bucket(name).contains_key(name)
    }

    /// The store the streams write to.
    #[cfg(feature = "testing")]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn bucket(&self, name: &str) -> MutexGuard<'_, Bucket> {
        let i = self.hasher.hash_one(name) as usize % BUCKETS;
        lock(&self.buckets[i])
    }

    fn key(&self, name: &Arc<str>) -> StreamKey {
        StreamKey {
            kind: self.kind,
            name: name.clone(),
        }
    }

    /// Reserves the store slots for one write (nothing to wait for with `STORE=memory`);
    /// returns them and whether the store's queue was full.
    pub(crate) async fn reserve(&self) -> (Writes<'_>, bool) {
        let (head, a) = self.store.reserve().await;
        let (write, b) = self.store.reserve().await;
        (Writes { head, write }, a || b)
    }

    /// Reserves the store slots for one write if they are free (never waits).
    #[cfg(feature = "testing")]
    pub(crate) fn try_reserve(&self) -> Option<Writes<'_>> {
        let head = self.store.try_reserve()?;
        let write = self.store.try_reserve()?;
        Some(Writes { head, write })
    }

    /// The bucket of `name`, with room for its stream should it be made.
    fn bucket_for(&self, name: &str) -> MutexGuard<'_, Bucket> {
        let mut bucket = self.bucket(name);
        if !bucket.contains_key(name) && bucket.len() >= self.per_bucket {
            self.forget_idlest(&mut bucket);
        }
        bucket
    }

    /// A new stream (a new epoch) for `name` with its `own` limits, its head written in
    /// `head`.
    fn make(&self, name: &Arc<str>, head: Slot<'_>, own: Option<StreamLimits>) -> Stream {
        let mut stream = Stream::new(rand::random(), unix_ms());
        stream.set_limits(own);
        if self.spills {
            // Made by a message to its user, connected or not: a connection wakes it.
            stream.spill();
        }
        let position = stream.position();
        head.push(Op::Head {
            stream: self.key(name),
            epoch: position.epoch,
            last: position.offset,
        });
        stream
    }

    /// Runs `f` on `name`'s stream under its bucket's lock, making the stream (a new epoch,
    /// with the limits `own` answers) if it has none, its head written in `head`. `f` must be
    /// short: it holds the lock.
    pub(crate) fn with<R>(
        &self,
        name: &Arc<str>,
        head: Slot<'_>,
        own: impl FnOnce() -> Option<StreamLimits>,
        f: impl FnOnce(&mut Stream) -> R,
    ) -> R {
        let mut bucket = self.bucket_for(name);
        let stream = bucket
            .entry(name.clone())
            .or_insert_with(|| self.make(name, head, own()));
        f(stream)
    }

    /// `name`'s stream, if it has one, keeps to the limits `own` answers from now on (its
    /// room was created or closed); nothing is made.
    pub(crate) fn set_limits(&self, name: &str, own: impl FnOnce() -> Option<StreamLimits>) {
        if let Some(stream) = self.bucket(name).get_mut(name) {
            stream.set_limits(own());
        }
    }

    /// Appends `event` to `name`'s stream as accepted at `now` (Unix ms): it takes the next
    /// offset, is kept, written to the store, and handed to `deliver` before the lock is let
    /// go, so every reader of the stream sees it in offset order. A stream it makes keeps to
    /// the limits `own` answers.
    pub(crate) fn append(
        &self,
        name: &Arc<str>,
        writes: Writes<'_>,
        event: &OutEvent,
        now: u64,
        own: impl FnOnce() -> Option<StreamLimits>,
        deliver: impl FnOnce(&Arc<OutEvent>),
    ) -> Appended {
        let Writes { head, write } = writes;
        // Encoded before the lock: the value does not depend on the offset.
        let value = write.is_disk().then(|| event.stored(now));
        let mut bucket = self.bucket_for(name);
        let stream = bucket
            .entry(name.clone())
            .or_insert_with(|| self.make(name, head, own()));
        let event = event.sequenced(stream.next_offset());
        let low = stream.low();
        stream.append(event.clone(), now, &self.limits);
        let mut durable = None;
        if let Some(value) = value {
            // A channel only when the reply waits for the fsync (`STORE_FSYNC=always`).
            let done = self.store.acks_after_fsync().then(|| {
                let (done, wait) = oneshot::channel();
                durable = Some(wait);
                done
            });
            let trimmed = stream.low();
            write.push(Op::Append {
                stream: self.key(name),
                offset: stream.position().offset,
                value,
                trim_below: (trimmed > low).then_some(trimmed),
                durable: done,
            });
        }
        deliver(&event);
        Appended { event, durable }
    }

    /// Cluster mode: runs `f` on this node's copy of `name`'s stream, made at `head` (where
    /// Redis has it) if there is none, and moved there if Redis has it in another epoch.
    /// Nothing is written to the store: the stream's home is Redis.
    pub(crate) fn with_head<R>(
        &self,
        name: &Arc<str>,
        head: Position,
        own: impl FnOnce() -> Option<StreamLimits>,
        f: impl FnOnce(&mut Stream) -> R,
    ) -> R {
        let mut bucket = self.bucket_for(name);
        let stream = bucket.entry(name.clone()).or_insert_with(|| {
            let mut stream = Stream::new(head.epoch, unix_ms());
            stream.set_limits(own());
            stream.jump(head);
            stream
        });
        if stream.position().epoch != head.epoch {
            stream.jump(head);
        }
        f(stream)
    }

    /// Cluster mode: keeps `event`, which Redis sequenced at `offset` of `epoch` and
    /// accepted at `at`, in this node's copy of `name`'s stream and hands it (with its
    /// offset) to `deliver` under the stream's lock, so that hubs see the stream in offset
    /// order. An offset the copy has already is not delivered again (`false`); the first of
    /// another epoch, or one past a gap (the caller fetched what it could), moves the copy on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mirror(
        &self,
        name: &Arc<str>,
        epoch: u64,
        offset: u64,
        event: &OutEvent,
        at: u64,
        own: impl FnOnce() -> Option<StreamLimits>,
        deliver: impl FnOnce(&Arc<OutEvent>),
    ) -> bool {
        let before = Position {
            epoch,
            offset: offset.saturating_sub(1),
        };
        let mut bucket = self.bucket_for(name);
        let stream = bucket.entry(name.clone()).or_insert_with(|| {
            let mut stream = Stream::new(epoch, at);
            stream.set_limits(own());
            stream.jump(before);
            stream
        });
        let position = stream.position();
        if position.epoch == epoch && offset <= position.offset {
            return false;
        }
        if position.epoch != epoch || offset > position.offset + 1 {
            stream.jump(before);
        }
        let event = event.sequenced(offset);
        stream.append(event.clone(), at, &self.limits);
        deliver(&event);
        true
    }

    /// Cluster mode: lets go of this node's copy of `name`'s stream (its user has no
    /// connection here any more: the next one reads it from Redis).
    pub(crate) fn drop_copy(&self, name: &str) {
        self.bucket(name).remove(name);
    }

    /// Where `name`'s stream is, if this node has it.
    pub(crate) fn position_of(&self, name: &str) -> Option<Position> {
        self.peek(name, Stream::position)
    }

    /// Runs `f` on `name`'s stream if it has one (nothing is made).
    pub(crate) fn peek<R>(&self, name: &str, f: impl FnOnce(&Stream) -> R) -> Option<R> {
        self.bucket(name).get(name).map(f)
    }

    /// `name`'s user has no connection left on this node: with the disk store its stream
    /// lets go of the messages it holds (they are in the store) and keeps none it is sent
    /// until a connection wakes it ([`Streams::mailbox`]).
    pub(crate) fn spill(&self, name: &str) {
        if !self.spills {
            return;
        }
        if let Some(stream) = self.bucket(name).get_mut(name) {
            stream.spill();
        }
    }

    /// A connection of `name`'s user asks for its mailbox: the stream is woken (it holds
    /// what it is sent from now on), and answers its position, whether the user acks, and
    /// the messages waiting (those only in the store are to load, with
    /// [`Streams::load_round`]). `None` if the user has no stream.
    pub(crate) fn mailbox(&self, name: &str) -> Option<(Position, bool, Waiting)> {
        let mut bucket = self.bucket(name);
        let stream = bucket.get_mut(name)?;
        stream.wake();
        Some((stream.position(), stream.acked().1, stream.waiting_after(0)))
    }

    /// One round of reading `name`'s waiting messages after `after`, the stream woken: all
    /// of them if they are in memory, else a load of those only in the store, queued in
    /// `slot` behind every write to the stream so far. `None` if the user has no stream.
    pub(crate) fn load_round(&self, name: &Arc<str>, after: u64, slot: Slot<'_>) -> Option<Round> {
        let mut bucket = self.bucket(name);
        let stream = bucket.get_mut(&**name)?;
        stream.wake();
        let (position, manual) = (stream.position(), stream.acked().1);
        let waiting = stream.waiting_after(after);
        // Only the disk store spills, and only it answers a load.
        let load = waiting
            .spilled
            .and_then(|(first, last)| Some((last, slot.load(self.key(name), first, last)?)));
        Some(match load {
            Some((last, wait)) => Round::Load { last, wait },
            None => Round::Done {
                position,
                manual,
                held: waiting.held,
            },
        })
    }

    /// The user acknowledged `name`'s messages up to `offset` (an `ack` command; see
    /// [`Stream::ack`]): from now on its messages wait for acks. The stream is made if it has
    /// none (so that the user's first ack, before any message, counts), and the ack is
    /// written to the store. Returns the stream's position.
    pub(crate) fn ack(&self, name: &Arc<str>, offset: u64, writes: Writes<'_>) -> Position {
        let Writes { head, write } = writes;
        let mut bucket = self.bucket_for(name);
        let stream = bucket
            .entry(name.clone())
            .or_insert_with(|| self.make(name, head, None));
        if stream.ack(offset, true, unix_ms(), &self.limits) {
            write.push(Op::Ack {
                user: name.clone(),
                offset: stream.acked().0,
            });
        }
        stream.position()
    }

    /// `name`'s message at `offset` reached a client: for a user that does not ack, that
    /// acknowledges it and what came before (trimmed on disk too, if the store's queue has
    /// room; otherwise a restart may deliver them once more).
    pub(crate) fn delivered(&self, name: &Arc<str>, offset: u64) {
        let mut bucket = self.bucket(name);
        let Some(stream) = bucket.get_mut(&**name) else {
            return;
        };
        if stream.acked().1 {
            return;
        }
        let low = stream.low();
        stream.ack(offset, false, unix_ms(), &self.limits);
        if stream.low() > low {
            if let Some(slot) = self.store.try_reserve() {
                slot.push(Op::Trim {
                    stream: self.key(name),
                    below: stream.low(),
                });
            }
        }
    }

    /// Drops messages past their age in every `parts`-th bucket from `part`, and forgets
    /// streams that kept nothing for a whole TTL (their next use starts a new epoch). Each
    /// shard's sweep takes its own part. Writes that find the store's queue full are left for
    /// a later sweep.
    pub(crate) fn expire(&self, part: usize, parts: usize) {
        let now = unix_ms();
        for bucket in self.buckets.iter().skip(part).step_by(parts.max(1)) {
            let mut bucket = lock(bucket);
            bucket.retain(|name, stream| {
                let low = stream.low();
                stream.trim(now, &self.limits);
                if stream.is_idle(now, &self.limits) {
                    return match self.store.try_reserve() {
                        Some(slot) => {
                            slot.push(Op::Forget {
                                stream: self.key(name),
                            });
                            false
                        }
                        None => true,
                    };
                }
                if stream.low() > low {
                    if let Some(slot) = self.store.try_reserve() {
                        slot.push(Op::Trim {
                            stream: self.key(name),
                            below: stream.low(),
                        });
                    }
                }
                true
            });
        }
    }

    /// Every stream's head (name, epoch, last offset), written by a clean shutdown.
    pub(crate) fn heads(&self) -> Vec<(StreamKey, u64, u64)> {
        let mut out = Vec::new();
        for bucket in self.buckets.iter() {
            for (name, stream) in lock(bucket).iter() {
                let p = stream.position();
                out.push((self.key(name), p.epoch, p.offset));
            }
        }
        out
    }

    /// Puts back the streams the store kept, with the acks of user streams, each with the
    /// limits `own` answers for its name (at start, before anyone is served).
    pub(crate) fn restore(
        &self,
        recovered: Vec<RecoveredStream>,
        acks: Vec<(String, u64)>,
        own: impl Fn(&str) -> Option<StreamLimits>,
    ) {
        let now = unix_ms();
        let acks: HashMap<String, u64> = acks.into_iter().collect();
        for r in recovered {
            let acked = acks.get(&*r.stream.name).copied();
            let name = r.stream.name.clone();
            let entries = r.messages.into_iter().map(|(offset, m)| Entry {
                offset,
                at: m.at,
                event: stored_event(offset, m),
            });
            let limits = own(&name);
            let mut stream =
                Stream::restore(r.epoch, r.last, acked, entries, now, limits, &self.limits);
            if self.spills {
                // No user has a connection yet.
                stream.spill();
            }
            let mut bucket = self.bucket(&name);
            if bucket.len() >= self.per_bucket {
                self.forget_idlest(&mut bucket);
            }
            bucket.insert(name, stream);
        }
    }

    /// Forgets the stream used longest ago (best effort on disk: with the store's queue
    /// full, its records stay until the name is used again, which wipes them).
    fn forget_idlest(&self, bucket: &mut Bucket) {
        let idlest = bucket
            .iter()
            .min_by_key(|(_, s)| s.touched())
            .map(|(name, _)| name.clone());
        if let Some(name) = idlest {
            bucket.remove(&name);
            if let Some(slot) = self.store.try_reserve() {
                slot.push(Op::Forget {
                    stream: self.key(&name),
                });
            }
        }
    }
}

/// The event of a message read back from the store, at its `offset`.
pub(crate) fn stored_event(offset: u64, m: Message) -> Arc<OutEvent> {
    message_event(m).sequenced(offset)
}

/// The event of a message as the store encodes it (no offset yet).
pub(crate) fn message_event(m: Message) -> Arc<OutEvent> {
    OutEvent::new(
        &m.event,
        m.room.map(Arc::from),
        m.from.map(Arc::from),
        m.data.into(),
        m.format,
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the stream stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const LIMITS: StreamLimits = StreamLimits {
        size: 10,
        bytes: 1 << 20,
        ttl_ms: 60_000,
    };

    #[test]
    fn a_stream_keeps_to_the_limits_it_was_made_or_set_with() {
        let limits = LIMITS;
        let store = Arc::new(Store::memory());
        let streams = Streams::new(Kind::Room, limits, 100, store.clone());
        let writes = || Writes {
            head: store.try_reserve().expect("memory has room"),
            write: store.try_reserve().expect("memory has room"),
        };
        let event = crate::hub::test_event(b"1", wsgate_protocol::Format::Json);
        let kept = |name: &Arc<str>| streams.peek(name, |s| s.low()..=s.position().offset);
        let (own, plain): (Arc<str>, Arc<str>) = ("own".into(), "plain".into());
        let two = Some(StreamLimits { size: 2, ..limits });
        for i in 0..5 {
            streams.append(&own, writes(), &event, 1_000 + i, || two, |_| ());
            streams.append(&plain, writes(), &event, 1_000 + i, || None, |_| ());
        }
        assert_eq!(kept(&own), Some(4..=5));
        assert_eq!(kept(&plain), Some(1..=5));
        // Asked only when a stream is made: the next appends need no answer.
        streams.append(&own, writes(), &event, 2_000, || panic!("asked"), |_| ());
        streams.set_limits(&plain, || Some(StreamLimits { size: 1, ..limits }));
        streams.append(&plain, writes(), &event, 2_000, || None, |_| ());
        assert_eq!(kept(&plain), Some(6..=6));
        streams.set_limits(&own, || None);
        streams.append(&own, writes(), &event, 2_001, || None, |_| ());
        assert_eq!(kept(&own), Some(5..=7), "the defaults again");
    }

    #[test]
    fn a_full_bucket_forgets_its_idlest_stream() {
        let limits = LIMITS;
        // One stream per bucket.
        let store = Arc::new(Store::memory());
        let slot = || store.try_reserve().expect("memory has room");
        let streams = Streams::new(Kind::Room, limits, 1, store.clone());
        let a: Arc<str> = "a".into();
        let epoch = streams.with(&a, slot(), || None, |s| s.position().epoch);
        assert_eq!(
            streams.with(&a, slot(), || None, |s| s.position().epoch),
            epoch,
            "kept"
        );
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
        streams.with(&b, slot(), || None, |_| ());
        let again = streams.with(&a, slot(), || None, |s| s.position().epoch);
        assert_ne!(again, epoch, "forgotten: a new epoch");
    }
}
