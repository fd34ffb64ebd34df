//! The result of a run: figures computed from the workers' merged reports, printed as a table
//! or as JSON (`report.rs` draws them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plan::{RunPlan, Scenario};
use crate::stats::{Counters, OffsetStats, PushStats};

/// One point of the throughput time series (every 0.5 s of the run).
#[derive(Clone, Debug, Serialize)]
pub struct TimePoint {
    /// Seconds since the run started.
    pub t: f64,
    /// Connections open.
    pub open: u64,
    /// Connections established per second over the last interval.
    pub connects_per_sec: f64,
    /// Events received per second over the last interval.
    pub deliveries_per_sec: f64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// The distribution: `(percentile, microseconds)` for the report.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
    /// The histogram: `(bucket upper bound in microseconds, samples)`, 40 equal buckets.
    #[serde(skip)]
    pub bins: Vec<(f64, u64)>,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |v: u64| v as f64 / 1000.0;
        let curve = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
        ]
        .iter()
        .map(|q| (*q, us(h.value_at_quantile(q / 100.0))))
        .collect();
        let step = (h.max() / 40).max(1);
        let bins = h
            .iter_linear(step)
            .map(|v| (us(v.value_iterated_to()), v.count_since_last_iteration()))
            .take(41)
            .collect();
        Percentiles {
            bins,
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            curve,
        }
    }
}

/// What [`Summary::new`] is computed from.
pub struct Inputs {
    /// The plan that ran.
    pub plan: RunPlan,
    /// Final counters, all workers.
    pub counters: Counters,
    /// Failures by cause.
    pub failures: BTreeMap<String, u64>,
    /// Error replies by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Handshake latency (ns).
    pub handshake: Histogram<u64>,
    /// Delivery latency (ns).
    pub latency: Histogram<u64>,
    /// Deliveries expected (when the scenario defines it).
    pub expected: Option<u64>,
    /// Publishes sent.
    pub published: u64,
    /// Publishes acknowledged.
    pub acked: u64,
    /// First connect to last setup connection established.
    pub connect_secs: f64,
    /// Coordinator start to every worker ready.
    pub setup_secs: f64,
    /// Measured phase length.
    pub run_secs: f64,
    /// Server RSS before, once connected, at the end.
    pub rss: [Option<u64>; 3],
    /// Delivery rate of each burst.
    pub burst_rates: Vec<f64>,
    /// Time series.
    pub series: Vec<TimePoint>,
    /// Fast/full decode disagreements.
    pub decode_mismatches: u64,
    /// Stream offsets checked, gaps, duplicates and resumes (chat).
    pub offsets: Option<OffsetStats>,
    /// Loadgen RSS summed over workers at the end, and connections open then.
    pub loadgen_rss: (u64, u64),
    /// The REST senders' account (push).
    pub push: Option<PushStats>,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// `native` or `socketio`.
    pub protocol: String,
    /// `json` or `msgpack` (with Socket.IO, the parser).
    pub format: String,
    /// `websocket`, or Socket.IO's `polling`.
    pub transport: String,
    /// Connections asked for.
    pub connections: u64,
    /// Worker count.
    pub workers: u32,
    /// Connections established during the run (including reconnects).
    pub established: u64,
    /// Failed connections (by cause in `failures`).
    pub failed: u64,
    /// Failures by cause.
    pub failures: BTreeMap<String, u64>,
    /// Error replies by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Connections established per second during the ramp (first connect to last established).
    pub connect_rate: f64,
    /// Connect start to `welcome`.
    pub handshake: Percentiles,
    /// Server RSS before connecting (bytes).
    pub server_rss_before: Option<u64>,
    /// Server RSS once every connection was established.
    pub server_rss_connected: Option<u64>,
    /// Server RSS at the end of the run (before disconnecting).
    pub server_rss_end: Option<u64>,
    /// (RSS at the end − RSS before) / open connections.
    pub server_bytes_per_connection: Option<f64>,
    /// The loadgen's own RSS at the end (all workers; the baseline of each process included).
    pub loadgen_rss: u64,
    /// `loadgen_rss` / open connections: an upper bound of the client memory per connection.
    pub loadgen_bytes_per_connection: Option<f64>,
    /// Publishes sent.
    pub published: u64,
    /// Publishes acknowledged by the server.
    pub acked: u64,
    /// Events received.
    pub received: u64,
    /// Events expected (acknowledged publishes × receivers), when defined.
    pub expected: Option<u64>,
    /// expected − received, when defined (negative: more than expected).
    pub lost: Option<i64>,
    /// Loss as a fraction of expected.
    pub loss_ratio: Option<f64>,
    /// Events received per second of the measured phase.
    pub deliveries_per_sec: f64,
    /// Burst delivery rates (deliveries / (last receive − first send)), per burst.
    pub burst_deliveries_per_sec: Option<BurstRates>,
    /// Send-to-receive latency.
    pub latency: Percentiles,
    /// REST request latency (push).
    pub http_latency: Option<Percentiles>,
    /// Users a push found offline (push).
    pub push_offline: Option<u64>,
    /// REST failures by cause (push).
    pub push_errors: BTreeMap<String, u64>,
    /// Reconnections (chat churn).
    pub reconnects: u64,
    /// Fast/full decode disagreements (must be 0).
    pub decode_mismatches: u64,
    /// Stream offsets each connection checked against the last one it saw in its room, across
    /// reconnects: gaps and duplicates (must be 0), and the resumes (chat).
    pub offsets: Option<OffsetStats>,
    /// Length of the measured phase (s).
    pub run_secs: f64,
    /// Throughput over time.
    pub series: Vec<TimePoint>,
}

/// Burst delivery rates.
#[derive(Clone, Debug, Serialize)]
pub struct BurstRates {
    /// Bursts measured.
    pub bursts: usize,
    /// Median burst rate.
    pub median: f64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
}

impl Summary {
    /// Computes the figures.
    pub fn new(i: Inputs) -> Self {
        let scenario = match i.plan.scenario {
            Scenario::Connect { .. } => "connect",
            Scenario::Push { .. } => "push",
            Scenario::Fanout { .. } => "fanout",
            Scenario::Chat { .. } => "chat",
        };
        let open = i.counters.open;
        let server_bytes_per_connection = match i.rss {
            [Some(before), _, Some(end)] if open > 0 => {
                Some((end as f64 - before as f64) / open as f64)
            }
            _ => None,
        };
        let lost = i.expected.map(|e| e as i64 - i.counters.received as i64);
        let loss_ratio = i
            .expected
            .zip(lost)
            .map(|(e, l)| if e == 0 { 0.0 } else { l as f64 / e as f64 });
        let mut rates = i.burst_rates.clone();
        rates.sort_by(f64::total_cmp);
        let burst_deliveries_per_sec = (!rates.is_empty()).then(|| BurstRates {
            bursts: rates.len(),
            median: rates[rates.len() / 2],
            min: rates[0],
            max: rates[rates.len() - 1],
        });
        Summary {
            scenario: scenario.to_string(),
            protocol: i.plan.common.protocol.as_str().to_string(),
            format: i.plan.common.format.as_str().to_string(),
            transport: i.plan.common.transport.as_str().to_string(),
            connections: i.plan.connections,
            workers: i.plan.workers,
            established: i.counters.established,
            failed: i.counters.failed,
            failures: i.failures,
            error_codes: i.error_codes,
            connect_rate: if i.connect_secs > 0.0 {
                i.counters.established.min(i.plan.connections) as f64 / i.connect_secs
            } else {
                0.0
            },
            handshake: Percentiles::of(&i.handshake),
            server_rss_before: i.rss[0],
            server_rss_connected: i.rss[1],
            server_rss_end: i.rss[2],
            server_bytes_per_connection,
            loadgen_rss: i.loadgen_rss.0,
            loadgen_bytes_per_connection: (i.loadgen_rss.1 > 0)
                .then(|| i.loadgen_rss.0 as f64 / i.loadgen_rss.1 as f64),
            published: i.published,
            acked: i.acked,
            received: i.counters.received,
            expected: i.expected,
            lost,
            loss_ratio,
            deliveries_per_sec: if i.run_secs > 0.0 {
                i.counters.received as f64 / i.run_secs
            } else {
                0.0
            },
            burst_deliveries_per_sec,
            latency: Percentiles::of(&i.latency),
            http_latency: i.push.as_ref().map(|p| Percentiles::of(&p.http)),
            push_offline: i.push.as_ref().map(|p| p.offline),
            push_errors: i.push.map(|p| p.errors).unwrap_or_default(),
            reconnects: i.counters.reconnects,
            decode_mismatches: i.decode_mismatches,
            offsets: i.offsets,
            run_secs: i.run_secs,
            series: i.series,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<28} {v}");
        };
        row(
            "scenario",
            format!(
                "{} ({} {} {}), {} connections, {} worker(s)",
                self.scenario,
                self.protocol,
                self.format,
                self.transport,
                self.connections,
                self.workers
            ),
        );
        row(
            "connections",
            format!("{} established, {} failed", self.established, self.failed),
        );
        for (k, v) in &self.failures {
            row(&format!("  failed: {k}"), v.to_string());
        }
        row("connect rate", format!("{:.0} /s", self.connect_rate));
        let h = &self.handshake;
        row(
            "handshake latency",
            format!(
                "p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs  ({} samples)",
                h.p50_us, h.p99_us, h.max_us, h.count
            ),
        );
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        if let (Some(b), Some(e)) = (self.server_rss_before, self.server_rss_end) {
            row(
                "server RSS",
                format!("{:.1} MiB before, {:.1} MiB at the end", mib(b), mib(e)),
            );
        }
        if let Some(b) = self.server_bytes_per_connection {
            row("server RSS / connection", format!("{b:.0} bytes"));
        }
        if let Some(b) = self.loadgen_bytes_per_connection {
            row(
                "loadgen RSS / connection",
                format!(
                    "{b:.0} bytes (upper bound: {:.1} MiB in all, process baselines included)",
                    mib(self.loadgen_rss)
                ),
            );
        }
        if self.scenario != "connect" {
            if self.scenario == "push" {
                row(
                    "REST pushes",
                    format!("{} sent, {} answered 200", self.published, self.acked),
                );
            } else {
                row(
                    "publishes",
                    format!("{} sent, {} acknowledged", self.published, self.acked),
                );
            }
            row("deliveries", format!("{}", self.received));
            match (self.expected, self.lost, self.loss_ratio) {
                (Some(e), Some(l), Some(r)) => {
                    row("expected / lost", format!("{e} / {l} ({:.4} %)", r * 100.0))
                }
                _ => row("expected / lost", "n/a (churn changes membership)".into()),
            }
            row(
                "deliveries / s",
                format!("{:.0} (over the measured phase)", self.deliveries_per_sec),
            );
            if let Some(b) = &self.burst_deliveries_per_sec {
                row(
                    "burst deliveries / s",
                    format!(
                        "median {:.0}, min {:.0}, max {:.0} ({} bursts)",
                        b.median, b.min, b.max, b.bursts
                    ),
                );
            }
            let l = &self.latency;
            row(
                "end-to-end latency",
                format!(
                    "p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs",
                    l.p50_us, l.p99_us, l.p999_us, l.max_us
                ),
            );
        }
        if let Some(h) = &self.http_latency {
            row(
                "REST push latency",
                format!(
                    "p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs",
                    h.p50_us, h.p99_us, h.p999_us, h.max_us
                ),
            );
            row(
                "REST pushes / s",
                format!("{:.0}", self.acked as f64 / self.run_secs.max(1e-9)),
            );
        }
        if let Some(o) = self.push_offline {
            row("users offline", o.to_string());
        }
        for (k, v) in &self.push_errors {
            row(&format!("REST failures: {k}"), v.to_string());
        }
        if self.reconnects > 0 {
            row("reconnects", self.reconnects.to_string());
        }
        if let Some(o) = &self.offsets {
            row("offsets checked", o.checked.to_string());
            row(
                "offset gaps / duplicates",
                format!("{} / {}", o.gaps, o.duplicates),
            );
            row(
                "resumes",
                format!(
                    "{} recovered, {} not recovered",
                    o.recovered, o.not_recovered
                ),
            );
        }
        for (k, v) in &self.error_codes {
            row(&format!("error replies: {k}"), v.to_string());
        }
        if self.decode_mismatches > 0 {
            row("DECODE MISMATCHES", self.decode_mismatches.to_string());
        }
        s
    }
}
