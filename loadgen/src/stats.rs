//! What workers tell the coordinator: live counters, the final report, and the histograms they
//! carry (serialized with hdrhistogram's V2 format so they merge exactly).

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Cumulative counters of one worker (or, summed, of the run).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Connections authenticated (and joined, where the scenario joins) since the start.
    pub established: u64,
    /// Connections open right now.
    pub open: u64,
    /// Connections that failed (any cause).
    pub failed: u64,
    /// Commands sent (publishes).
    pub sent: u64,
    /// Events received.
    pub received: u64,
    /// Error messages received.
    pub errors: u64,
    /// Reconnections (chat churn).
    pub reconnects: u64,
}

impl Counters {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &Counters) {
        self.established += o.established;
        self.open += o.open;
        self.failed += o.failed;
        self.sent += o.sent;
        self.received += o.received;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
    }
}

/// Deliveries of one burst, as one worker saw them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct BurstStat {
    /// Events of this burst received.
    pub received: u64,
    /// Earliest send time carried by an event of this burst (ns, monotonic clock).
    pub first_sent_ns: u64,
    /// Latest receive time of an event of this burst.
    pub last_received_ns: u64,
}

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

/// A histogram of nanoseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("constant, valid bounds")
}

/// Serializes a histogram (empty bytes on failure, which only an impossible I/O error causes).
pub fn encode_histogram(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    if V2Serializer::new().serialize(h, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Adds a serialized histogram to `into`.
pub fn merge_histogram(into: &mut Histogram<u64>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let decoded: Result<Histogram<u64>, _> = Deserializer::new().deserialize(&mut &bytes[..]);
    if let Ok(h) = decoded {
        // Both come from new_histogram(): same bounds, so add cannot fail.
        let _ = into.add(&h);
    }
}
