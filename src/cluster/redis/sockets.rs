//! Socket.IO sockets kept for connection state recovery in cluster mode: a detached socket's
//! record (`node::detached::Detached::encode`) under `<prefix>:{s:<pid>}`, with the recovery
//! window (`SOCKETIO_RECOVERY`) as its time to live, so that its client gets it back on any
//! node. A node takes it with `GETDEL`: two nodes asked for one pid cannot both get it.
//!
//! A shard never waits to write one: it hands the record to one loop of the link, through a
//! queue of `CLUSTER_BUFFER` (past it the record is dropped and counted as refused: that
//! client reconnects with `recovered: false`). Takes go through the same queue, so a take on
//! this node always runs after this node's writes before it (a client reconnecting to the
//! node it left finds its record).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::KeysInterface;
use fred::types::{Expiration, Value};
use tokio::sync::{mpsc, oneshot};

use super::{lock, Redis};
use crate::hub::BackplaneError;

/// Writes and takes run this many at once (pipelined on the link's connection, sent in the
/// order they were queued).
const BATCH: usize = 16;

/// The queue toward the link's loop.
pub(crate) struct Kept {
    queue: mpsc::Sender<Op>,
    /// Taken by the loop when the link starts.
    ops: Mutex<Option<mpsc::Receiver<Op>>>,
    ttl_ms: u64,
}

/// What the loop does with Redis.
enum Op {
    Keep {
        key: String,
        record: Vec<u8>,
    },
    Take {
        key: String,
        answer: oneshot::Sender<Result<Option<Bytes>, BackplaneError>>,
    },
}

impl Kept {
    /// A queue of `capacity`, records kept for `window`.
    pub(crate) fn new(capacity: usize, window: Duration) -> Kept {
        let (queue, ops) = mpsc::channel(capacity.max(1));
        Kept {
            queue,
            ops: Mutex::new(Some(ops)),
            ttl_ms: (window.as_millis() as u64).max(1),
        }
    }
}

impl Redis {
    /// Keeps `record` under `pid` for the recovery window, soon (never waits).
    pub(crate) fn keep_socket(&self, pid: &str, record: Vec<u8>) {
        let key = self.names.socket(pid);
        if self.kept.queue.try_send(Op::Keep { key, record }).is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the record kept under `pid`: `None` if there is none (never kept, expired, or
    /// taken already, by any node). Waits at most `CLUSTER_TIMEOUT`.
    pub(crate) async fn take_socket(&self, pid: &str) -> Result<Option<Bytes>, BackplaneError> {
        let (answer, wait) = oneshot::channel();
        let key = self.names.socket(pid);
        if self.kept.queue.try_send(Op::Take { key, answer }).is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BackplaneError::Busy);
        }
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(taken)) => taken,
            _ => Err(BackplaneError::Unreachable),
        }
    }

    /// The link's loop of writes and takes, a batch at a time, each batch's commands sent in
    /// the order they were queued.
    pub(super) async fn keep_sockets(self: Arc<Self>) {
        let Some(mut ops) = lock(&self.kept.ops).take() else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        while ops.recv_many(&mut batch, BATCH).await > 0 {
            // `join_all` of so few polls them in order: each sends its command at its first poll.
            let runs = batch.drain(..).map(|op| self.run_op(op));
            futures_util::future::join_all(runs).await;
        }
    }

    async fn run_op(&self, op: Op) {
        match op {
            Op::Keep { key, record } => {
                let ttl = Some(Expiration::PX(self.kept.ttl_ms as i64));
                let set = self
                    .client
                    .set::<Value, _, _>(key, record, ttl, None, false);
                if self.bounded(set).await.is_ok() {
                    self.stats.socketio_kept.fetch_add(1, Ordering::Relaxed);
                }
            }
            Op::Take { key, answer } => {
                let taken = self.bounded(self.client.getdel::<Value, _>(key)).await;
                let _ = answer.send(taken.map(|v| super::bytes_of(&v)));
            }
        }
    }
}
