//! What is counted and measured: connection and message counters, stream offsets, burst
//! deliveries, the REST senders' account, and the histograms (serialized with hdrhistogram's V2 format so that
//! workers' histograms merge exactly).

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

/// The offsets a worker's connections received from their rooms' streams (chat): each one is
/// checked against the last one the connection saw in that room, across reconnects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetStats {
    /// Event offsets checked.
    pub checked: u64,
    /// Offsets missing (an event `last + 1 + k` counts `k`; a resume that ended short of the
    /// reply's position counts the difference).
    pub gaps: u64,
    /// Events at or below the last offset seen.
    pub duplicates: u64,
    /// Resumes (`join` with `since`) answered `recovered: true`.
    pub recovered: u64,
    /// Resumes answered `recovered: false`: the position is reset to the reply's, not a gap.
    pub not_recovered: u64,
}

impl OffsetStats {
    /// Adds another worker's account.
    pub fn add(&mut self, o: &OffsetStats) {
        self.checked += o.checked;
        self.gaps += o.gaps;
        self.duplicates += o.duplicates;
        self.recovered += o.recovered;
        self.not_recovered += o.not_recovered;
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

/// What the REST senders of a `push` run saw (one sender's, or, added up, all of them).
pub struct PushStats {
    /// HTTP request written to response read (ns).
    pub http: Histogram<u64>,
    /// Requests sent.
    pub sent: u64,
    /// 200 responses.
    pub ok: u64,
    /// Sum of `delivered` over the responses (connections reached on the answering server:
    /// in cluster mode, that node's only).
    pub delivered: u64,
    /// 200 responses that did not name the user offline: the deliveries to expect, since
    /// every loadgen user holds exactly one connection, on whichever server (cluster-wide in
    /// cluster mode, where `offline` is).
    pub reached: u64,
    /// Sum of `offline` users over the responses.
    pub offline: u64,
    /// Failures by cause (`http_<status>`, `io_*`).
    pub errors: BTreeMap<String, u64>,
}

impl PushStats {
    /// Nothing seen yet.
    pub fn new() -> Self {
        PushStats {
            http: new_histogram(),
            sent: 0,
            ok: 0,
            delivered: 0,
            reached: 0,
            offline: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Adds another sender's account.
    pub fn add(&mut self, o: PushStats) {
        let _ = self.http.add(&o.http);
        self.sent += o.sent;
        self.ok += o.ok;
        self.delivered += o.delivered;
        self.reached += o.reached;
        self.offline += o.offline;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

impl Default for PushStats {
    fn default() -> Self {
        Self::new()
    }
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
