//! The worker protocol: the messages between the coordinator and its workers (JSON lines on a
//! worker process's stdin and stdout, or values on a channel to a thread worker), and the
//! [`Sink`] a worker sends its messages through.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::Sender;

use serde::{Deserialize, Serialize};

use crate::stats::{BurstStat, Counters, OffsetStats};

/// A worker's final account.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Final counters.
    pub counters: Counters,
    /// Failures by cause (`refused`, `http_401`, `closed_4002`, `timeout_upgrade`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Error replies by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Connect start to `welcome` (ns), V2-serialized.
    pub handshake: Vec<u8>,
    /// Send to receive of events (ns), V2-serialized.
    pub latency: Vec<u8>,
    /// When the first connect started (ns, monotonic clock).
    pub first_connect_ns: u64,
    /// When the last connection of the setup ramp was established.
    pub last_established_ns: u64,
    /// Publishes answered with a reply, per room.
    pub acked: Vec<u64>,
    /// Publishes sent, per room.
    pub published: Vec<u64>,
    /// Members joined per room, by this worker.
    pub joined: Vec<u64>,
    /// Per-burst deliveries (burst mode).
    pub bursts: Vec<BurstStat>,
    /// Events whose fast decode disagreed with the full decode (must be 0).
    pub decode_mismatches: u64,
    /// Stream offsets checked, gaps, duplicates and resumes (chat).
    pub offsets: OffsetStats,
    /// This worker's process RSS at the end of the measured phase (bytes; a thread worker
    /// reports the whole coordinator process).
    pub rss: u64,
    /// Connections open at that moment.
    pub open_at_rss: u64,
}

/// A message from a worker to the coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
pub enum WorkerMsg {
    /// Periodic counters.
    Progress {
        /// Cumulative counters.
        counters: Counters,
    },
    /// Every connection is established (or failed): the worker waits for `Go`.
    Ready {
        /// Counters at that point.
        counters: Counters,
    },
    /// The worker has finished.
    Final(Box<WorkerReport>),
    /// The worker could not run.
    Fatal {
        /// Why.
        error: String,
    },
}

/// A message from the coordinator to a worker.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
pub enum Control {
    /// Start the measured phase at `start_ns` (monotonic clock).
    Go {
        /// When the measured phase starts.
        start_ns: u64,
    },
    /// Stop now and report.
    Stop,
}

/// Where a worker's messages go: a channel (thread workers) or stdout (process workers).
pub trait Sink {
    /// Delivers one message to the coordinator.
    fn send(&mut self, msg: WorkerMsg);
}

/// Sends a thread worker's messages on the coordinator's channel, tagged with its number.
pub(crate) struct ChannelSink {
    /// The worker's number.
    pub(crate) worker: u32,
    /// The coordinator's channel, shared by every worker.
    pub(crate) tx: Sender<(u32, WorkerMsg)>,
}

impl Sink for ChannelSink {
    fn send(&mut self, msg: WorkerMsg) {
        let _ = self.tx.send((self.worker, msg));
    }
}

/// Writes a worker's messages as JSON lines on stdout (worker processes).
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn send(&mut self, msg: WorkerMsg) {
        if let Ok(line) = serde_json::to_string(&msg) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
