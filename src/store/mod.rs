//! The durable store: what survives a restart (room definitions, room and user streams, acks,
//! read markers), in an embedded fjall database under `DATA_DIR`. Shards never touch the disk:
//! they reserve a slot in one bounded write queue, push an [`Op`] (under the lock that orders
//! it, like a stream's bucket lock), and one writer thread drains the queue, commits each
//! drain as one batch and fsyncs per `STORE_FSYNC` ([`writer`]). Reads happen once, at start
//! ([`recover`]); afterwards the server answers from memory.
//!
//! What a crash (`kill -9`, power loss) can lose: with `STORE_FSYNC=<interval>` (default
//! 5 ms), the writes accepted in the last interval before it (at most the queue's capacity
//! plus one interval's batch); with `always`, nothing that was acknowledged (a publish's reply
//! and a REST push's answer wait for the fsync); with `never`, whatever the operating system
//! had not written back. After an unclean stop every stream gets a new epoch (a client that
//! resumes learns that history may have a hole) and its offsets jump past any offset that may
//! have been handed out and lost, so no offset is ever given twice.

mod codec;
mod recover;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub(crate) use codec::{encode_message, Kind, RoomDef, StreamKey};
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

    /// Opens (or creates) the store in `dir`, reads what it keeps, and starts the writer.
    pub(crate) fn open(
        dir: &Path,
        fsync: Fsync,
        capacity: usize,
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
        let (writer, thread) =
            writer::spawn(db, queue.clone(), fsync, known, skip).map_err(|e| match e {
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
