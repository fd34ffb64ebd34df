//! Idempotency keys: the first answer of each keyed request, remembered for a window, so that a
//! retry gets that answer again instead of running twice. Process-wide (every shard's clients
//! and REST requests meet here), so it is a set of buckets, each a mutex over its keys, like the
//! streams; a lock is held for a few map operations, never across an await.
//!
//! The contract:
//! - A key lives in a *scope* (a user, a REST route): the same key in two scopes is two keys.
//! - [`Idempotency::begin`] answers [`Begin::Fresh`] to the first request, which runs and then
//!   hands its answer to [`Claim::finish`]; a request that comes while the first still runs
//!   waits for that answer; one that comes later gets it at once ([`Begin::Done`]).
//! - A first request that ends without finishing (it failed, or was given up) leaves nothing
//!   behind: the next one with the key runs afresh.
//! - Answers are kept for the window after they were given, and within the bounds (keys and
//!   bytes, spread over the buckets): past a bound the oldest key of its bucket is forgotten,
//!   so its retry would run again.
//! - In cluster mode a key is claimed in Redis too ([`crate::cluster::redis::keys`]): a retry
//!   that reaches another node gets the first answer there, or waits while the first runs
//!   (at most the running mark's time to live). With Redis unreachable a node answers on its
//!   own word (what needs Redis is refused anyway).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ahash::RandomState;
use bytes::Bytes;
use tokio::sync::watch;

use super::redis::keys::{Held, RUNNING_TTL};
use super::redis::Redis;

/// Most buckets (fewer when the store may hold fewer keys, so that each holds one at least).
const BUCKETS: usize = 64;
/// Bookkeeping bytes counted per remembered key, on top of its key and answer.
const KEY_OVERHEAD: usize = 96;

/// The bounds of a store (`IDEMPOTENCY_WINDOW`, `IDEMPOTENCY_MAX_KEYS`,
/// `IDEMPOTENCY_MAX_BYTES`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdempotencyLimits {
    /// How long an answer is remembered, in milliseconds.
    pub(crate) window_ms: u64,
    /// Most keys remembered (in flight or answered).
    pub(crate) max_keys: usize,
    /// Most bytes the remembered keys and answers may hold.
    pub(crate) max_bytes: usize,
}

/// How often a request polls Redis while another node runs its key.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// An answer as nodes share it in Redis.
pub(crate) trait Shareable: Clone + Send + Sync + 'static {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// A command's answer: the event's offset, or none (`-`).
impl Shareable for Option<u64> {
    fn encode(&self) -> Vec<u8> {
        self.map_or_else(|| b"-".to_vec(), |o| o.to_string().into_bytes())
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            b"-" => Some(None),
            digits => std::str::from_utf8(digits).ok()?.parse().ok().map(Some),
        }
    }
}

/// A REST answer: the status (two bytes, big-endian), then the body.
impl Shareable for (u16, Bytes) {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + self.1.len());
        v.extend_from_slice(&self.0.to_be_bytes());
        v.extend_from_slice(&self.1);
        v
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (status, body) = bytes.split_first_chunk::<2>()?;
        Some((u16::from_be_bytes(*status), Bytes::copy_from_slice(body)))
    }
}

/// A key's state.
enum Slot<V> {
    /// The first request runs; later ones wait on this.
    Running {
        generation: u64,
        answer: watch::Receiver<Option<V>>,
    },
    /// The first answer.
    Done {
        generation: u64,
        value: V,
        cost: usize,
    },
}

impl<V> Slot<V> {
    fn generation(&self) -> u64 {
        match self {
            Slot::Running { generation, .. } | Slot::Done { generation, .. } => *generation,
        }
    }
}

/// One bucket: its keys, and the order they were written in (for the window and the bounds).
struct Bucket<V> {
    slots: HashMap<Arc<str>, Slot<V>, RandomState>,
    /// (key, generation, ms) in writing order; an entry whose generation is no longer the
    /// key's is stale and skipped.
    order: VecDeque<(Arc<str>, u64, u64)>,
    bytes: usize,
}

impl<V> Default for Bucket<V> {
    fn default() -> Self {
        Bucket {
            slots: HashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// What [`Idempotency::begin`] found.
pub(crate) enum Begin<V: Clone> {
    /// The first with this key: run, then [`Claim::finish`].
    Fresh(Claim<V>),
    /// The first answer.
    Done(V),
}

/// The right, and the duty, to give a key its first answer. Dropped without
/// [`Claim::finish`], it lets the key go (a waiting retry then runs).
pub(crate) struct Claim<V: Clone> {
    store: Arc<Idempotency<V>>,
    key: Arc<str>,
    generation: u64,
    answer: Option<watch::Sender<Option<V>>>,
    /// Claimed in Redis too (cluster mode): the link, and the claim's mark.
    shared: Option<(Arc<Redis>, u64)>,
}

/// The store: buckets of keys, their bounds, and the clock they are timed by.
pub(crate) struct Idempotency<V> {
    buckets: Box<[Mutex<Bucket<V>>]>,
    hasher: RandomState,
    window_ms: u64,
    keys_per_bucket: usize,
    bytes_per_bucket: usize,
    started: Instant,
    next_generation: std::sync::atomic::AtomicU64,
    /// Cluster mode's link: keys are claimed and answered in Redis too.
    cluster: Option<Arc<Redis>>,
}

impl<V> Idempotency<V> {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn bucket(&self, key: &str) -> MutexGuard<'_, Bucket<V>> {
        let i = self.hasher.hash_one(key) as usize % self.buckets.len();
        lock(&self.buckets[i])
    }
}

impl<V: Shareable> Idempotency<V> {
    /// An empty store within `limits`, sharing its keys through `cluster` if given.
    pub(crate) fn new(limits: IdempotencyLimits, cluster: Option<Arc<Redis>>) -> Arc<Self> {
        let buckets = limits.max_keys.clamp(1, BUCKETS);
        Arc::new(Idempotency {
            buckets: (0..buckets).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            window_ms: limits.window_ms,
            keys_per_bucket: limits.max_keys.div_ceil(buckets).max(1),
            bytes_per_bucket: limits.max_bytes.div_ceil(buckets).max(1),
            started: Instant::now(),
            next_generation: std::sync::atomic::AtomicU64::new(1),
            cluster,
        })
    }

    /// Looks `key` up in `scope`: the first answer, or a claim to give it. A request that comes
    /// while the first runs waits for its answer (or, if the first gives up, claims the key).
    pub(crate) async fn begin(self: &Arc<Self>, scope: &str, key: &str) -> Begin<V> {
        // The scope's length first, so no scope and key can spell another pair.
        let key: Arc<str> = Arc::from(format!("{}:{scope}{key}", scope.len()));
        loop {
            let mut running = match self.look_up(&key) {
                Ok(Begin::Fresh(claim)) => return self.claim_shared(claim).await,
                Ok(found) => return found,
                Err(running) => running,
            };
            let answer = running
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|answer| answer.clone());
            if let Some(value) = answer {
                return Begin::Done(value);
            }
            // The first request gave up without an answer: try again.
        }
    }

    /// In cluster mode, `claim` claimed in Redis too, or the answer another node gave the key
    /// (waiting while that node runs it). Requests on this node with the key wait meanwhile
    /// on `claim`, and get what it ends with.
    async fn claim_shared(self: &Arc<Self>, mut claim: Claim<V>) -> Begin<V> {
        let Some(redis) = &self.cluster else {
            return Begin::Fresh(claim);
        };
        let token = rand::random();
        let deadline = tokio::time::Instant::now() + RUNNING_TTL + redis.timeout();
        loop {
            match redis.claim_key(&claim.key, token).await {
                Ok(Held::Claimed) => {
                    claim.shared = Some((redis.clone(), token));
                    return Begin::Fresh(claim);
                }
                Ok(Held::Answer(bytes)) => {
                    let Some(value) = V::decode(&bytes) else {
                        return Begin::Fresh(claim);
                    };
                    claim.finish(value.clone(), bytes.len());
                    return Begin::Done(value);
                }
                Ok(Held::Running) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                // Redis did not answer (what the request needs of it is refused anyway), or
                // a mark outlived its time to live: this node's word alone.
                Ok(Held::Running) | Err(_) => return Begin::Fresh(claim),
            }
        }
    }

    /// The key's answer or a new claim; `Err` with the first request's answer-to-be while it
    /// runs.
    fn look_up(self: &Arc<Self>, key: &Arc<str>) -> Result<Begin<V>, watch::Receiver<Option<V>>> {
        let now = self.now_ms();
        let mut bucket = self.bucket(key);
        self.expire(&mut bucket, now);
        match bucket.slots.get(&**key) {
            Some(Slot::Done { value, .. }) => return Ok(Begin::Done(value.clone())),
            Some(Slot::Running { answer, .. }) => return Err(answer.clone()),
            None => {}
        }
        while bucket.slots.len() >= self.keys_per_bucket && forget_oldest(&mut bucket) {}
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, answer) = watch::channel(None);
        bucket
            .slots
            .insert(key.clone(), Slot::Running { generation, answer });
        bucket.order.push_back((key.clone(), generation, now));
        bucket.bytes += key.len() + KEY_OVERHEAD;
        Ok(Begin::Fresh(Claim {
            store: self.clone(),
            key: key.clone(),
            generation,
            answer: Some(sender),
            shared: None,
        }))
    }

    /// Forgets the answers older than the window. A first request still running keeps its
    /// key (it is told apart from a stale entry by its generation) until it ends.
    fn expire(&self, bucket: &mut Bucket<V>, now: u64) {
        while bucket
            .order
            .front()
            .is_some_and(|(_, _, at)| now.saturating_sub(*at) > self.window_ms)
        {
            if let Some((key, generation, _)) = bucket.order.pop_front() {
                forget(bucket, &key, generation, false);
            }
        }
    }

    /// Keys remembered now (answered or running).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.iter().map(|b| lock(b).slots.len()).sum()
    }
}

impl<V: Shareable> Claim<V> {
    /// Remembers `value` as the key's answer (`cost`: the bytes it holds) and hands it to the
    /// requests waiting for it (in cluster mode, on every node).
    pub(crate) fn finish(mut self, value: V, cost: usize) {
        if let Some(sender) = self.answer.take() {
            sender.send_replace(Some(value.clone()));
        }
        if let Some((redis, token)) = self.shared.take() {
            let window = std::time::Duration::from_millis(self.store.window_ms);
            settle(redis, self.key.clone(), token, Some(value.encode()), window);
        }
        let store = self.store.clone();
        let now = store.now_ms();
        let mut bucket = store.bucket(&self.key);
        let ours = bucket
            .slots
            .get(&*self.key)
            .is_some_and(|slot| slot.generation() == self.generation);
        if !ours {
            return; // forgotten meanwhile (a bound): nothing to keep
        }
        let generation = store
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = Slot::Done {
            generation,
            value,
            cost,
        };
        bucket.slots.insert(self.key.clone(), slot);
        bucket.order.push_back((self.key.clone(), generation, now));
        bucket.bytes += cost;
        while bucket.bytes > store.bytes_per_bucket && forget_oldest(&mut bucket) {}
    }
}

impl<V: Clone> Drop for Claim<V> {
    fn drop(&mut self) {
        if self.answer.is_none() {
            return; // finished
        }
        if let Some((redis, token)) = self.shared.take() {
            settle(
                redis,
                self.key.clone(),
                token,
                None,
                std::time::Duration::ZERO,
            );
        }
        let mut bucket = self.store.bucket(&self.key);
        let ours = bucket
            .slots
            .get(&*self.key)
            .is_some_and(|slot| slot.generation() == self.generation);
        if ours {
            bucket.slots.remove(&*self.key);
            bucket.bytes = bucket.bytes.saturating_sub(self.key.len() + KEY_OVERHEAD);
        }
        // The sender goes now: a waiting retry wakes up and claims the key.
    }
}

/// Answers (or, with no answer, lets go) a key claimed in Redis, off the request's path: a
/// retry on another node meanwhile finds it running and waits.
fn settle(
    redis: Arc<Redis>,
    key: Arc<str>,
    token: u64,
    answer: Option<Vec<u8>>,
    window: std::time::Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return; // shutting down: the running mark expires on its own
    };
    runtime.spawn(async move {
        // Unanswered in Redis, the mark expires and a retry elsewhere would run again.
        let _ = redis
            .settle_key(&key, token, answer.as_deref(), window)
            .await;
    });
}

/// Forgets the key written longest ago (skipping stale order entries); whether any was.
fn forget_oldest<V>(bucket: &mut Bucket<V>) -> bool {
    while let Some((key, generation, _)) = bucket.order.pop_front() {
        if forget(bucket, &key, generation, true) {
            return true;
        }
    }
    false
}

/// Forgets `key` if `generation` is still its own (an answer, or with `running` a request
/// still running too); whether it did.
fn forget<V>(bucket: &mut Bucket<V>, key: &str, generation: u64, running: bool) -> bool {
    let cost = match bucket.slots.get(key) {
        Some(Slot::Done {
            generation: g,
            cost,
            ..
        }) if *g == generation => *cost,
        Some(Slot::Running { generation: g, .. }) if *g == generation && running => 0,
        _ => return false,
    };
    bucket.slots.remove(key);
    bucket.bytes = bucket.bytes.saturating_sub(cost + key.len() + KEY_OVERHEAD);
    true
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the keys stay usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    impl Shareable for u32 {
        fn encode(&self) -> Vec<u8> {
            self.to_be_bytes().to_vec()
        }

        fn decode(bytes: &[u8]) -> Option<Self> {
            Some(u32::from_be_bytes(bytes.try_into().ok()?))
        }
    }

    fn store(max_keys: usize, max_bytes: usize) -> Arc<Idempotency<u32>> {
        let limits = IdempotencyLimits {
            window_ms: 60_000,
            max_keys,
            max_bytes,
        };
        Idempotency::new(limits, None)
    }

    /// A store whose window is over at once.
    fn expiring() -> Arc<Idempotency<u32>> {
        let limits = IdempotencyLimits {
            window_ms: 0,
            max_keys: 10,
            max_bytes: 1 << 20,
        };
        Idempotency::new(limits, None)
    }

    async fn claim(s: &Arc<Idempotency<u32>>, scope: &str, key: &str) -> Claim<u32> {
        match s.begin(scope, key).await {
            Begin::Fresh(claim) => claim,
            Begin::Done(v) => panic!("{scope}/{key} already answered {v}"),
        }
    }

    async fn done(s: &Arc<Idempotency<u32>>, scope: &str, key: &str) -> Option<u32> {
        match s.begin(scope, key).await {
            Begin::Fresh(_) => None,
            Begin::Done(v) => Some(v),
        }
    }

    #[tokio::test]
    async fn the_first_answer_is_remembered_per_scope() {
        let s = store(100, 1 << 20);
        claim(&s, "u:ann", "k").await.finish(7, 0);
        assert_eq!(done(&s, "u:ann", "k").await, Some(7));
        assert_eq!(done(&s, "u:ben", "k").await, None, "another scope");
        assert_eq!(done(&s, "u:an", "nk").await, None, "no spelling collides");
    }

    #[tokio::test]
    async fn a_claim_given_up_lets_the_key_go_and_wakes_a_waiter() {
        let s = store(100, 1 << 20);
        let first = claim(&s, "r", "k").await;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move {
            match s2.begin("r", "k").await {
                Begin::Fresh(c) => {
                    c.finish(2, 0);
                    None
                }
                Begin::Done(v) => Some(v),
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "it waits for the first");
        drop(first);
        assert_eq!(waiter.await.unwrap(), None, "it ran itself");
        assert_eq!(done(&s, "r", "k").await, Some(2));
        // A waiter for a first request that finishes gets its answer.
        let first = claim(&s, "r", "j").await;
        let s3 = s.clone();
        let waiter = tokio::spawn(async move { done(&s3, "r", "j").await });
        tokio::task::yield_now().await;
        first.finish(9, 0);
        assert_eq!(waiter.await.unwrap(), Some(9));
    }

    #[tokio::test]
    async fn at_the_bounds_the_oldest_key_is_forgotten() {
        let s = store(1, 1 << 20);
        claim(&s, "r", "a").await.finish(1, 0);
        claim(&s, "r", "b").await.finish(2, 0);
        assert_eq!(s.len(), 1);
        assert_eq!(done(&s, "r", "b").await, Some(2));
        assert_eq!(done(&s, "r", "a").await, None, "forgotten");
        // Bytes: an answer of 10,000 bytes does not fit in 1,000.
        let s = store(10, 1_000);
        claim(&s, "r", "big").await.finish(1, 10_000);
        assert_eq!(s.len(), 0);
    }

    #[tokio::test]
    async fn the_window_forgets_answers_not_a_request_still_running() {
        let s = expiring();
        let running = claim(&s, "r", "slow").await;
        std::thread::sleep(std::time::Duration::from_millis(2));
        claim(&s, "r", "other").await.finish(1, 0);
        assert_eq!(s.len(), 2, "the running key is kept past the window");
        running.finish(5, 0);
        assert_eq!(s.len(), 2);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(
            done(&s, "r", "slow").await,
            None,
            "its answer expires in turn"
        );
    }

    #[test]
    fn answers_shared_between_nodes_read_back_as_written() {
        for v in [None, Some(0), Some(u64::MAX)] {
            assert_eq!(Option::<u64>::decode(&v.encode()), Some(v));
        }
        let rest = (207, Bytes::from_static(b"{\"delivered\":1}"));
        assert_eq!(<(u16, Bytes)>::decode(&rest.encode()), Some(rest));
        assert_eq!(<(u16, Bytes)>::decode(b"x"), None, "too short");
        assert_eq!(Option::<u64>::decode(b"7x"), None);
    }

    #[tokio::test]
    async fn answers_expire_after_the_window() {
        let s = expiring();
        claim(&s, "r", "a").await.finish(1, 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(done(&s, "r", "a").await, None);
    }
}
