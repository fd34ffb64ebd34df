//! The writer thread: drains the write queue, commits each drain as one fjall batch (group
//! commit), and fsyncs per `STORE_FSYNC`. It is the only thread that writes the database
//! while the server runs, so the order of the queue is the order on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::oneshot;

use super::codec::{self, meta, StreamKey};
use super::Op;
use crate::config::Fsync;
use crate::queue::Bounded;

/// The open database: message keys in one keyspace, everything else in another.
pub(crate) struct Db {
    pub(super) db: Database,
    pub(super) messages: Keyspace,
    pub(super) meta: Keyspace,
}

impl Db {
    pub(crate) fn open(dir: &Path) -> fjall::Result<Db> {
        let db = Database::builder(dir).open()?;
        let messages = db.keyspace("messages", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        Ok(Db { db, messages, meta })
    }

    /// Every key starting with `prefix` in `keyspace`.
    fn keys_with(&self, keyspace: &Keyspace, prefix: &[u8]) -> Vec<fjall::UserKey> {
        keyspace
            .prefix(prefix)
            .filter_map(|guard| guard.key().ok())
            .collect()
    }
}

/// Writes not yet on disk, and writes that failed, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Queued, not yet committed.
    pub(crate) queued: usize,
    /// Committed to the OS, not yet fsynced.
    pub(crate) unsynced: u64,
    /// Failed since start (logged; see the log for why).
    pub(crate) failed: u64,
    /// Fsyncs since start.
    pub(crate) fsyncs: u64,
    /// Loads of spilled mailboxes since start.
    pub(crate) loads: u64,
    /// Bytes in the database's write buffers (memtables), not yet flushed to its files.
    pub(crate) buffered: u64,
    /// Streams whose epoch and lowest offset the writer holds in memory (dropped when idle).
    pub(crate) cached: u64,
}

/// What the shards tell the writer.
#[derive(Default)]
enum Control {
    #[default]
    Run,
    /// Write everything queued, then these heads, mark the run clean and stop.
    Close(Vec<(StreamKey, u64, u64)>),
    /// Stop without marking the run clean.
    Abandon,
}

/// The shards' side of the writer: wake-ups, the stop request, counters.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

struct Shared {
    /// The database, for its write buffers' size (fjall's own count).
    db: Database,
    thread: OnceLock<Thread>,
    control: Mutex<Control>,
    fsync: Fsync,
    unsynced: AtomicU64,
    failed: AtomicU64,
    fsyncs: AtomicU64,
    loads: AtomicU64,
    cached: AtomicU64,
}

impl Handle {
    /// Wakes the writer.
    pub(crate) fn wake(&self) {
        if let Some(t) = self.shared.thread.get() {
            t.unpark();
        }
    }

    /// Wakes the writer when a write should not wait for its next round: always with
    /// `STORE_FSYNC=always` (a reply waits), otherwise once the queue is half full.
    pub(crate) fn wake_if_due(&self, queued: usize, capacity: usize) {
        if matches!(self.shared.fsync, Fsync::Always) || queued >= capacity / 2 {
            self.wake();
        }
    }

    pub(crate) fn backlog(&self, queued: usize) -> Backlog {
        Backlog {
            queued,
            unsynced: self.shared.unsynced.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            loads: self.shared.loads.load(Ordering::Relaxed),
            buffered: self.shared.db.write_buffer_size(),
            cached: self.shared.cached.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn close(&self, heads: Vec<(StreamKey, u64, u64)>) {
        *self
            .shared
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Control::Close(heads);
        self.wake();
    }

    pub(crate) fn abandon(&self) {
        let mut control = self
            .shared
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if matches!(*control, Control::Run) {
            *control = Control::Abandon;
        }
        drop(control);
        self.wake();
    }
}

/// Why the writer did not start.
pub(crate) enum SpawnError {
    Db(fjall::Error),
    Thread(std::io::Error),
}

/// Marks the run unclean on disk (fsynced), then starts the writer thread.
pub(crate) fn spawn(
    db: Db,
    queue: Arc<Bounded<Op>>,
    fsync: Fsync,
    idle_flush: Duration,
    known: HashMap<StreamKey, Known>,
    skip: u64,
) -> Result<(Handle, JoinHandle<()>), SpawnError> {
    db.meta
        .insert(meta::RUN, codec::encode_run(false, skip))
        .map_err(SpawnError::Db)?;
    db.db
        .persist(PersistMode::SyncAll)
        .map_err(SpawnError::Db)?;
    let shared = Arc::new(Shared {
        db: db.db.clone(),
        thread: OnceLock::new(),
        control: Mutex::default(),
        fsync,
        unsynced: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        fsyncs: AtomicU64::new(0),
        loads: AtomicU64::new(0),
        cached: AtomicU64::new(known.len() as u64),
    });
    let mut writer = Writer {
        db,
        queue,
        shared: shared.clone(),
        known,
        pending: Pending::default(),
        durable: Vec::new(),
        skip,
        idle_flush,
    };
    let thread = std::thread::Builder::new()
        .name("wsgate-store".into())
        .spawn(move || writer.run())
        .map_err(SpawnError::Thread)?;
    let _ = shared.thread.set(thread.thread().clone());
    Ok((Handle { shared }, thread))
}

/// What the writer knows of a stream on disk: its epoch and the lowest offset it may keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Known {
    pub(crate) epoch: u64,
    pub(crate) low: u64,
}

/// Trims spanning more offsets than this scan for the keys instead of naming each one.
const TRIM_BY_NAME: u64 = 1024;

/// One key's change in the batch being gathered: the last write to a key wins.
enum Change {
    Put(Vec<u8>),
    Delete,
}

/// The batch being gathered, by keyspace and key, so that a message appended and trimmed in
/// the same drain is never written at all, and two writes of one key are never in one fjall
/// batch (whose items share a sequence number).
#[derive(Default)]
struct Pending {
    messages: std::collections::BTreeMap<Vec<u8>, Change>,
    meta: std::collections::BTreeMap<Vec<u8>, Change>,
    /// Writes gathered (for the counters).
    writes: u64,
}

struct Writer {
    db: Db,
    queue: Arc<Bounded<Op>>,
    shared: Arc<Shared>,
    /// What the writer knows of the streams it wrote since it was last idle: a cache, dropped
    /// after `STORE_IDLE_FLUSH` without writes (so that the streams of idle users cost no
    /// memory here) and read back from the store for a stream it does not hold
    /// ([`Writer::known`]).
    known: HashMap<StreamKey, Known>,
    pending: Pending,
    /// Waiters for the next fsync (`STORE_FSYNC=always`).
    durable: Vec<oneshot::Sender<()>>,
    skip: u64,
    /// `STORE_IDLE_FLUSH`.
    idle_flush: Duration,
}

/// Write buffers smaller than this stay in memory when the writer is idle: flushing them
/// would make many tiny files for little memory.
const IDLE_FLUSH_MIN_BYTES: u64 = 1 << 20;

impl Writer {
    fn run(&mut self) {
        let mut last_sync = Instant::now();
        let mut last_write = Instant::now();
        // Whether something was written since the write buffers were last flushed for idleness.
        let mut dirty = false;
        loop {
            let drained = self.drain();
            if drained > 0 {
                last_write = Instant::now();
                dirty = true;
            } else if dirty && !self.idle_flush.is_zero() && last_write.elapsed() >= self.idle_flush
            {
                dirty = false;
                self.flush_idle();
            }
            let unsynced = self.shared.unsynced.load(Ordering::Relaxed);
            let due = match self.shared.fsync {
                Fsync::Always => unsynced > 0 || !self.durable.is_empty(),
                Fsync::Every(every) => {
                    unsynced > 0
                        && (last_sync.elapsed() >= every
                            || unsynced >= self.queue.capacity() as u64)
                }
                Fsync::Never => false,
            };
            if due {
                self.sync();
                last_sync = Instant::now();
            }
            if matches!(self.shared.fsync, Fsync::Never) {
                // Nothing waits for an fsync that never comes.
                self.durable.clear();
            }
            if self.queue.is_empty() && self.stop_if_asked() {
                return;
            }
            if drained == 0 {
                let nap = match self.shared.fsync {
                    Fsync::Always => Duration::from_millis(50),
                    Fsync::Every(every) if unsynced > 0 => {
                        every.saturating_sub(last_sync.elapsed())
                    }
                    Fsync::Every(every) => every.max(Duration::from_millis(1)),
                    Fsync::Never => Duration::from_millis(10),
                };
                let nap = match self.idle_flush {
                    idle if dirty && !idle.is_zero() => {
                        nap.min(idle.saturating_sub(last_write.elapsed()))
                    }
                    _ => nap,
                };
                std::thread::park_timeout(nap);
            }
        }
    }

    /// Commits up to a queue's worth of writes as one batch; returns how many.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while n < self.queue.capacity() {
            let Some(op) = self.queue.pop() else { break };
            n += 1;
            self.apply(op);
        }
        if n > 0 {
            self.queue.drained();
            self.flush();
        }
        n
    }

    /// Commits what is gathered as one batch (also before a scan, which sees only committed
    /// keys).
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.messages.is_empty() && pending.meta.is_empty() {
            return;
        }
        let mut batch = self.db.db.batch();
        for (keyspace, changes) in [
            (&self.db.messages, pending.messages),
            (&self.db.meta, pending.meta),
        ] {
            for (key, change) in changes {
                match change {
                    Change::Put(value) => batch.insert(keyspace, key, value),
                    Change::Delete => batch.remove(keyspace, key),
                }
            }
        }
        match batch.commit() {
            Ok(()) => {
                self.shared
                    .unsynced
                    .fetch_add(pending.writes.max(1), Ordering::Relaxed);
            }
            Err(e) => {
                self.shared
                    .failed
                    .fetch_add(pending.writes, Ordering::Relaxed);
                tracing::error!(error = %e, writes = pending.writes, "the store could not commit");
            }
        }
    }

    /// The writer has been idle for `STORE_IDLE_FLUSH`: its cache of streams goes, and write
    /// buffers holding at least [`IDLE_FLUSH_MIN_BYTES`] are sealed, and fjall's flush
    /// workers write them to disk and free them. Nothing durable changes: what they hold is
    /// in the journal already.
    fn flush_idle(&mut self) {
        self.known = HashMap::new();
        self.shared.cached.store(0, Ordering::Relaxed);
        // `write_buffer_size` and `rotate_memtable` are fjall's (pinned in Cargo.lock), marked
        // unstable there; tests/store.rs checks that the buffers do empty.
        if self.db.db.write_buffer_size() < IDLE_FLUSH_MIN_BYTES {
            return;
        }
        for keyspace in [&self.db.messages, &self.db.meta] {
            if let Err(e) = keyspace.rotate_memtable() {
                tracing::warn!(error = %e, "the store could not flush an idle write buffer");
            }
        }
    }

    fn sync(&mut self) {
        match self.db.db.persist(PersistMode::SyncAll) {
            Ok(()) => {
                self.shared.unsynced.store(0, Ordering::Relaxed);
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                for waiter in self.durable.drain(..) {
                    let _ = waiter.send(());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the store could not fsync");
                // The waiters learn it: their reply says the write was not kept.
                self.durable.clear();
            }
        }
    }

    fn put_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.meta.insert(key, Change::Put(value));
    }

    fn delete_meta(&mut self, key: Vec<u8>) {
        self.pending.meta.insert(key, Change::Delete);
    }

    /// Deletes a message key: a message gathered in this batch is simply not written.
    fn delete_message(&mut self, key: Vec<u8>) {
        if let Some(Change::Put(_)) = self.pending.messages.get(&key) {
            self.pending.messages.remove(&key);
        } else {
            self.pending.messages.insert(key, Change::Delete);
        }
    }

    fn apply(&mut self, op: Op) {
        let op = match op {
            Op::Load {
                stream,
                from,
                to,
                reply,
            } => {
                let _ = reply.send(self.load(&stream, from, to));
                return;
            }
            op => op,
        };
        self.pending.writes += 1;
        match op {
            Op::Head {
                stream,
                epoch,
                last,
            } => {
                if self.known(&stream).map(|k| k.epoch) != Some(epoch) {
                    self.wipe(&stream);
                }
                self.put_meta(meta::head(&stream), codec::encode_head(epoch, last));
                self.cache(
                    stream,
                    Known {
                        epoch,
                        low: last + 1,
                    },
                );
            }
            Op::Append {
                stream,
                offset,
                value,
                trim_below,
                durable,
            } => {
                self.pending
                    .messages
                    .insert(stream.message(offset), Change::Put(value));
                if let Some(known) = self.known.get_mut(&stream) {
                    known.low = known.low.min(offset);
                }
                self.durable.extend(durable);
                if let Some(below) = trim_below {
                    self.trim(&stream, below);
                }
            }
            Op::Trim { stream, below } => self.trim(&stream, below),
            Op::Forget { stream } => {
                self.wipe(&stream);
                self.delete_meta(meta::head(&stream));
                if stream.kind == super::Kind::User {
                    // Its acks go with it: a later stream of that user starts anew.
                    self.delete_meta(meta::ack(&stream.name));
                }
                if self.known.remove(&stream).is_some() {
                    self.shared.cached.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Op::Room { room, def } => match def {
                Some(def) => self.put_meta(meta::room(&room), codec::encode_room(&def)),
                None => {
                    self.delete_meta(meta::room(&room));
                    self.flush();
                    let meta_ks = self.db.meta.clone();
                    for key in self.db.keys_with(&meta_ks, &meta::allowed_prefix(&room)) {
                        self.delete_meta(key.to_vec());
                    }
                }
            },
            Op::Allowed {
                room,
                user,
                allowed,
            } => {
                let key = meta::allowed(&room, &user);
                if allowed {
                    self.put_meta(key, Vec::new());
                } else {
                    self.delete_meta(key);
                }
            }
            Op::Ack { user, offset } => {
                self.put_meta(meta::ack(&user), codec::encode_offset(offset));
                let stream = StreamKey {
                    kind: super::Kind::User,
                    name: user,
                };
                self.trim(&stream, offset + 1);
            }
            Op::Read { user, room, offset } => {
                self.put_meta(meta::read(&user, &room), codec::encode_offset(offset));
            }
            // Answered above: a load writes nothing.
            Op::Load { .. } => {}
        }
    }

    /// What the writer knows of `stream`: from its cache, else read from the store (what is
    /// gathered committed first): the epoch of its head, and the offset of its first message
    /// (if it holds none, `u64::MAX`: nothing to trim until an append lowers it). `None`: the
    /// store has no head for it.
    fn known(&mut self, stream: &StreamKey) -> Option<Known> {
        if let Some(known) = self.known.get(stream) {
            return Some(*known);
        }
        self.flush();
        let head = match self.db.meta.get(meta::head(stream)) {
            Ok(head) => head?,
            Err(e) => {
                tracing::warn!(stream = %stream.name, error = %e, "a stream's head could not be read");
                return None;
            }
        };
        let (epoch, _) = codec::decode_head(&head)?;
        let first = self
            .db
            .messages
            .prefix(stream.prefix())
            .filter_map(|guard| guard.key().ok())
            .find_map(|key| StreamKey::parse_message(&key).map(|(_, offset)| offset));
        let known = Known {
            epoch,
            low: first.unwrap_or(u64::MAX),
        };
        self.cache(stream.clone(), known);
        Some(known)
    }

    fn cache(&mut self, stream: StreamKey, known: Known) {
        if self.known.insert(stream, known).is_none() {
            self.shared.cached.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `stream`'s messages `from..=to` as committed so far (what is gathered is committed
    /// first), oldest first; unreadable records are skipped and logged.
    fn load(&mut self, stream: &StreamKey, from: u64, to: u64) -> Vec<(u64, codec::Message)> {
        self.flush();
        self.shared.loads.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        for guard in self
            .db
            .messages
            .range(stream.message(from)..=stream.message(to))
        {
            let read = guard.into_inner().ok().and_then(|(key, value)| {
                let (_, offset) = StreamKey::parse_message(&key)?;
                Some((offset, codec::decode_message(&value)?))
            });
            match read {
                Some(message) => out.push(message),
                None => tracing::warn!(stream = %stream.name, "a stored message could not be read"),
            }
        }
        out
    }

    /// Removes every message of `stream`.
    fn wipe(&mut self, stream: &StreamKey) {
        self.flush();
        let messages = self.db.messages.clone();
        for key in self.db.keys_with(&messages, &stream.prefix()) {
            self.delete_message(key.to_vec());
        }
    }

    /// Removes `stream`'s messages below `below`: by name when the span is short, else by scan.
    fn trim(&mut self, stream: &StreamKey, below: u64) {
        let low = self.known(stream).map(|k| k.low);
        match low {
            Some(low) if below <= low => {}
            Some(low) if below - low <= TRIM_BY_NAME => {
                for offset in low..below {
                    self.delete_message(stream.message(offset));
                }
            }
            _ => {
                self.flush();
                let (lo, hi) = (stream.message(0), stream.message(below));
                let keys: Vec<_> = self
                    .db
                    .messages
                    .range(lo..hi)
                    .filter_map(|guard| guard.key().ok())
                    .collect();
                for key in keys {
                    self.delete_message(key.to_vec());
                }
            }
        }
        if let Some(known) = self.known.get_mut(stream) {
            known.low = known.low.max(below);
        }
    }

    /// Stops if the shards asked: after a close, with the heads written and the run marked
    /// clean, all fsynced.
    fn stop_if_asked(&mut self) -> bool {
        let control = std::mem::take(
            &mut *self
                .shared
                .control
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        match control {
            Control::Run => false,
            Control::Abandon => {
                self.sync();
                true
            }
            Control::Close(heads) => {
                for (stream, epoch, last) in &heads {
                    self.put_meta(meta::head(stream), codec::encode_head(*epoch, *last));
                }
                self.put_meta(meta::RUN.to_vec(), codec::encode_run(true, self.skip));
                self.pending.writes += 1;
                self.flush();
                self.sync();
                true
            }
        }
    }
}
