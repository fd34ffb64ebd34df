//! The durable store: what survives a restart (room definitions, room and user streams, acks,
//! read markers), in an embedded fjall database under `DATA_DIR`. Shards never touch the disk:
//! they reserve a slot in one bounded write queue, push an [`Op`] (under the lock that orders
//! it, like a stream's bucket lock), and one writer thread drains the queue, commits each
//! drain as one batch and fsyncs per `STORE_FSYNC` ([`writer`]). Everything is read once, at
//! start ([`recover`]); afterwards the server answers from memory, except for the messages of
//! spilled user streams (offline users' mailboxes, kept only here): those are loaded through
//! the same queue ([`Slot::load`]), so a load sees every write queued before it.
//!
//! What a crash (`kill -9`, power loss) can lose: with `STORE_FSYNC=<interval>` (default
//! 5 ms), the writes accepted in the last interval before it (at most the queue's capacity
//! plus one interval's batch); with `always`, nothing that was acknowledged (a publish's reply
//! and a REST push's answer wait for the fsync); with `never`, whatever the operating system
//! had not written back. After an unclean stop every stream gets a new epoch (a client that
//! resumes learns that history may have a hole) and its offsets jump past any offset that may
//! have been handed out and lost, so no offset is ever given twice.

pub(crate) mod codec;
mod recover;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub(crate) use codec::{decode_message, encode_message, Kind, Message, RoomDef, StreamKey};
pub(crate) use recover::{Recovered, RecoveredStream};

use crate::config::Fsync;
use crate::queue::Bounded;

/// One write for the writer thread.
pub(crate) enum Op {
    /// A stream made with a new epoch: whatever the store kept of the stream's earlier
    /// epoch goes.
    Head {
        stream: StreamKey,
        epoch: u64,
        last: u64,
    },
    /// A message kept at `offset`, in the value format of [`encode_message`], and the
    /// stream's messages below `trim_below` no longer kept (the append pushed them out);
    /// `durable` fires once it is on disk (only with `STORE_FSYNC=always`).
    Append {
        stream: StreamKey,
        offset: u64,
        value: Vec<u8>,
        trim_below: Option<u64>,
        durable: Option<oneshot::Sender<()>>,
    },
    /// Messages below `below` are no longer kept (bounds, age, acks).
    Trim { stream: StreamKey, below: u64 },
    /// The stream is forgotten: all of it goes.
    Forget { stream: StreamKey },
    /// A room's definition, or its removal.
    Room {
        room: Arc<str>,
        def: Option<RoomDef>,
    },
    /// A user let into (or out of) a private room.
    Allowed {
        room: Arc<str>,
        user: Arc<str>,
        allowed: bool,
    },
    /// A user acked its stream up to `offset`.
    Ack { user: Arc<str>, offset: u64 },
    /// Messages `from..=to` of `stream`, read once every write queued before this is
    /// committed, sent to `reply` (what the store still has of them, oldest first).
    Load {
        stream: StreamKey,
        from: u64,
        to: u64,
        reply: oneshot::Sender<Vec<(u64, Message)>>,
    },
    /// A user read a room up to `offset`.
    Read {
        user: Arc<str>,
        room: Arc<str>,
        offset: u64,
    },
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or read.
    #[error("store at {dir}: {source}")]
    Open {
        /// `DATA_DIR`.
        dir: String,
        /// fjall's error.
        source: fjall::Error,
    },
    /// The writer thread could not be spawned.
    #[error("store writer thread: {0}")]
    Spawn(std::io::Error),
}

/// The store as the shards see it: a write queue, or nothing (`STORE=memory`).
pub(crate) struct Store {
    disk: Option<Disk>,
}

struct Disk {
    queue: Arc<Bounded<Op>>,
    writer: writer::Handle,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    fsync: Fsync,
}

/// A slot reserved in the write queue: [`Slot::push`] uses it, dropping it gives it back.
#[must_use = "a slot is for a write"]
pub(crate) struct Slot<'a> {
    disk: Option<&'a Disk>,
}

impl Slot<'_> {
    /// Queues `op` in the slot.
    pub(crate) fn push(mut self, op: Op) {
        let Some(disk) = self.disk.take() else {
            return;
        };
        if disk.queue.push_reserved(op).is_err() {
            tracing::error!("the store queue was full despite a reserved slot; write dropped");
        }
        disk.writer
            .wake_if_due(disk.queue.len(), disk.queue.capacity());
    }

    /// Queues a load of `stream`'s messages `from..=to` in the slot and wakes the writer:
    /// the answer comes once every write queued before it is committed. `None` with
    /// `STORE=memory`, which keeps nothing to load.
    pub(crate) fn load(
        mut self,
        stream: StreamKey,
        from: u64,
        to: u64,
    ) -> Option<oneshot::Receiver<Vec<(u64, Message)>>> {
        let disk = self.disk.take()?;
        let (reply, answer) = oneshot::channel();
        let op = Op::Load {
            stream,
            from,
            to,
            reply,
        };
        if disk.queue.push_reserved(op).is_err() {
            tracing::error!("the store queue was full despite a reserved slot; load dropped");
            return None;
        }
        // Someone waits for it: no waiting for the writer's next round.
        disk.writer.wake();
        Some(answer)
    }

    /// Whether a write in this slot goes anywhere (`STORE=disk`).
    pub(crate) fn is_disk(&self) -> bool {
        self.disk.is_some()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(disk) = self.disk {
            disk.queue.release();
        }
    }
}

impl Store {
    /// No store: nothing is written, nothing survives.
    pub(crate) fn memory() -> Store {
        Store { disk: None }
    }

    /// Opens (or creates) the store in `dir`, reads what it keeps, and starts the writer
    /// (which flushes the write buffers after `idle_flush` without writes; zero: never).
    pub(crate) fn open(
        dir: &Path,
        fsync: Fsync,
        capacity: usize,
        idle_flush: std::time::Duration,
    ) -> Result<(Store, Recovered), StoreError> {
        let open_err = |source| StoreError::Open {
            dir: dir.display().to_string(),
            source,
        };
        let db = writer::Db::open(dir).map_err(open_err)?;
        // Offsets that may be handed out and not yet durable: the queue, plus what the writer
        // holds unsynced (it syncs at least once per queue's worth).
        let skip = 2 * capacity as u64 + 1;
        let mut recovered = recover::recover(&db, skip).map_err(open_err)?;
        let queue = Arc::new(Bounded::new(capacity));
        let known = std::mem::take(&mut recovered.known);
        let (writer, thread) = writer::spawn(db, queue.clone(), fsync, idle_flush, known, skip)
            .map_err(|e| match e {
                writer::SpawnError::Db(e) => open_err(e),
                writer::SpawnError::Thread(e) => StoreError::Spawn(e),
            })?;
        let store = Store {
            disk: Some(Disk {
                queue,
                writer,
                thread: std::sync::Mutex::new(Some(thread)),
                fsync,
            }),
        };
        Ok((store, recovered))
    }

    /// Whether there is a disk (`STORE=disk`): only then may a stream spill.
    pub(crate) fn is_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Whether replies wait for their writes' fsync (`STORE_FSYNC=always`).
    pub(crate) fn acks_after_fsync(&self) -> bool {
        self.disk
            .as_ref()
            .is_some_and(|d| matches!(d.fsync, Fsync::Always))
    }

    /// Reserves a slot, waiting while the queue is full. Returns the slot and whether it
    /// waited.
    pub(crate) async fn reserve(&self) -> (Slot<'_>, bool) {
        match &self.disk {
            None => (Slot { disk: None }, false),
            Some(disk) => {
                let waited = disk.queue.reserve(|| disk.writer.wake()).await;
                (Slot { disk: Some(disk) }, waited)
            }
        }
    }

    /// Reserves a slot if one is free (for the sweep, which must not wait).
    pub(crate) fn try_reserve(&self) -> Option<Slot<'_>> {
        match &self.disk {
            None => Some(Slot { disk: None }),
            Some(disk) => disk
                .queue
                .try_reserve()
                .then_some(Slot { disk: Some(disk) }),
        }
    }

    /// Writes not yet on disk, and writes that failed since start (for `/metrics`).
    pub(crate) fn backlog(&self) -> writer::Backlog {
        self.disk
            .as_ref()
            .map(|d| d.writer.backlog(d.queue.len()))
            .unwrap_or_default()
    }

    /// Stops the writer after it wrote everything queued and `heads` (every stream's
    /// position), and marks the run clean. Called once the shards are stopped; a second call
    /// does nothing.
    pub(crate) fn close(&self, heads: Vec<(StreamKey, u64, u64)>) {
        let Some(disk) = &self.disk else { return };
        let thread = disk.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else { return };
        disk.writer.close(heads);
        if thread.join().is_err() {
            tracing::error!("the store writer panicked while closing");
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A server dropped without a shutdown still stops its writer (the run stays unclean:
        // the heads were not written).
        if let Some(disk) = &self.disk {
            disk.writer.abandon();
            let thread = disk.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn open(dir: &Path) -> (Store, Recovered) {
        let idle_flush = std::time::Duration::ZERO;
        Store::open(
            dir,
            Fsync::Every(std::time::Duration::from_millis(1)),
            64,
            idle_flush,
        )
        .unwrap()
    }

    /// `stream`'s offsets `1..=100` as the writer reads them now.
    fn stored(store: &Store, stream: &StreamKey) -> Vec<u64> {
        let slot = store.try_reserve().expect("room in the queue");
        slot.load(stream.clone(), 1, 100)
            .expect("a disk store")
            .blocking_recv()
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect()
    }

    /// Waits until the writer holds `n` streams in its cache, with nothing queued.
    fn cached(store: &Store, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let b = store.backlog();
            if b.queued == 0 && b.cached == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{b:?}, not {n} cached"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn an_idle_writer_forgets_its_streams_and_reads_them_back_when_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (StreamKey::room("a".into()), StreamKey::user("b".into()));
        let idle = std::time::Duration::from_millis(200);
        let (store, _) = Store::open(dir.path(), Fsync::Never, 64, idle).unwrap();
        let head = |stream: &StreamKey, epoch| Op::Head {
            stream: stream.clone(),
            epoch,
            last: 0,
        };
        write(&store, head(&a, 1));
        for o in 1..=5 {
            write(&store, append(&a, o, None));
        }
        write(&store, head(&b, 2));
        write(&store, append(&b, 1, None));
        write(&store, append(&b, 2, None));
        write(
            &store,
            Op::Trim {
                stream: b.clone(),
                below: 3,
            },
        );
        assert_eq!(stored(&store, &b), [] as [u64; 0]);
        // Idle: what it knew of both streams is gone.
        cached(&store, 0);

        // The same epoch again (read from the store: not a new one, nothing wiped), a trim
        // (the stream's first message read from the store), and appends after it.
        write(&store, head(&a, 1));
        write(
            &store,
            Op::Trim {
                stream: a.clone(),
                below: 3,
            },
        );
        write(&store, append(&a, 6, None));
        // A stream holding nothing: the next append is its lowest offset.
        write(&store, append(&b, 3, None));
        write(&store, append(&b, 4, None));
        write(
            &store,
            Op::Trim {
                stream: b.clone(),
                below: 4,
            },
        );
        assert_eq!(stored(&store, &a), [3, 4, 5, 6]);
        assert_eq!(stored(&store, &b), [4]);
        assert_eq!(store.backlog().cached, 2);
        cached(&store, 0);

        // A new epoch, not known any more: the old messages are wiped.
        write(&store, head(&a, 9));
        write(&store, append(&a, 1, None));
        write(&store, Op::Forget { stream: b.clone() });
        assert_eq!(stored(&store, &a), [1]);
        assert_eq!(stored(&store, &b), [] as [u64; 0]);
        assert_eq!(store.backlog().cached, 1, "b forgotten");
    }

    fn write(store: &Store, op: Op) {
        store.try_reserve().expect("room in the queue").push(op);
    }

    fn append(stream: &StreamKey, offset: u64, trim_below: Option<u64>) -> Op {
        Op::Append {
            stream: stream.clone(),
            offset,
            value: encode_message(offset, "m", None, None, wsgate_protocol::Format::Json, b"1"),
            trim_below,
            durable: None,
        }
    }

    fn offsets(r: &Recovered, name: &str) -> Vec<u64> {
        r.streams
            .iter()
            .find(|s| &*s.stream.name == name)
            .map(|s| s.messages.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_clean_close_keeps_streams_heads_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let room = StreamKey::room("r".into());
        let user = StreamKey::user("u".into());
        {
            let (store, r) = open(dir.path());
            assert!(r.clean && r.streams.is_empty(), "a new store");
            write(
                &store,
                Op::Head {
                    stream: room.clone(),
                    epoch: 7,
                    last: 0,
                },
            );
            for o in 1..=5 {
                // The ring keeps three: each append pushes out what falls below it.
                write(&store, append(&room, o, (o > 3).then(|| o - 2)));
            }
            write(
                &store,
                Op::Head {
                    stream: user.clone(),
                    epoch: 8,
                    last: 0,
                },
            );
            write(&store, append(&user, 1, None));
            write(&store, append(&user, 2, None));
            write(
                &store,
                Op::Ack {
                    user: "u".into(),
                    offset: 1,
                },
            );
            write(
                &store,
                Op::Read {
                    user: "u".into(),
                    room: "r".into(),
                    offset: 4,
                },
            );
            let def = RoomDef {
                private: true,
                ..RoomDef::default()
            };
            write(
                &store,
                Op::Room {
                    room: "r".into(),
                    def: Some(def),
                },
            );
            write(
                &store,
                Op::Allowed {
                    room: "r".into(),
                    user: "u".into(),
                    allowed: true,
                },
            );
            store.close(vec![(room.clone(), 7, 5), (user.clone(), 8, 2)]);
        }
        let (_store, r) = open(dir.path());
        assert!(r.clean);
        assert_eq!(offsets(&r, "r"), [3, 4, 5]);
        assert_eq!(offsets(&r, "u"), [2], "acked messages are trimmed on disk");
        let room_stream = r.streams.iter().find(|s| s.stream == room).unwrap();
        assert_eq!((room_stream.epoch, room_stream.last), (7, 5));
        assert_eq!(r.acks, [("u".to_owned(), 1)]);
        assert_eq!(r.reads, [("u".to_owned(), "r".to_owned(), 4)]);
        assert_eq!(r.rooms.len(), 1);
        assert!(r.rooms[0].1.private);
        assert_eq!(r.allowed, [("r".to_owned(), "u".to_owned())]);
    }

    #[test]
    fn a_new_epoch_or_a_forget_wipes_the_old_messages() {
        let dir = tempfile::tempdir().unwrap();
        let a = StreamKey::room("a".into());
        let b = StreamKey::user("b".into());
        {
            let (store, _) = open(dir.path());
            write(
                &store,
                Op::Head {
                    stream: a.clone(),
                    epoch: 1,
                    last: 0,
                },
            );
            write(&store, append(&a, 1, None));
            write(&store, append(&a, 2, None));
            // Forgotten and made again: a new epoch starting over.
            write(
                &store,
                Op::Head {
                    stream: a.clone(),
                    epoch: 2,
                    last: 0,
                },
            );
            write(&store, append(&a, 1, None));
            write(
                &store,
                Op::Head {
                    stream: b.clone(),
                    epoch: 3,
                    last: 0,
                },
            );
            write(&store, append(&b, 1, None));
            write(
                &store,
                Op::Ack {
                    user: "b".into(),
                    offset: 0,
                },
            );
            write(&store, Op::Forget { stream: b.clone() });
            store.close(vec![(a.clone(), 2, 1)]);
        }
        let (_store, r) = open(dir.path());
        assert_eq!(offsets(&r, "a"), [1]);
        let s = r.streams.iter().find(|s| s.stream == a).unwrap();
        assert_eq!(s.epoch, 2);
        assert!(r.streams.iter().all(|s| s.stream != b), "forgotten");
        assert!(
            r.acks.is_empty(),
            "a forgotten user stream takes its ack along"
        );
    }

    #[test]
    fn an_unclean_stop_changes_epochs_and_skips_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let a = StreamKey::room("a".into());
        {
            let (store, _) = open(dir.path());
            write(
                &store,
                Op::Head {
                    stream: a.clone(),
                    epoch: 1,
                    last: 0,
                },
            );
            write(&store, append(&a, 1, None));
            // Wait until it is on disk, then stop without a close.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.backlog().fsyncs == 0 || store.backlog().queued > 0 {
                assert!(std::time::Instant::now() < deadline, "never synced");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        let (_store, r) = open(dir.path());
        assert!(!r.clean);
        let s = r.streams.iter().find(|s| s.stream == a).unwrap();
        assert_ne!(s.epoch, 1, "a new epoch");
        assert_eq!(offsets(&r, "a"), [1], "what was synced is there");
        assert_eq!(
            s.last,
            1 + 2 * 64 + 1,
            "past every offset that may have been handed out"
        );
    }
}
