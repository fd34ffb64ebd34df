//! Per-shard counters and gauges: relaxed atomics, written by their shard, read by anyone.

use std::sync::atomic::{AtomicU64, Ordering};

/// One shard's counters. Each is only ever incremented (or, for gauges, moved) by its shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Gauge: open WebSocket connections (authenticated or not).
    pub connections: AtomicU64,
    /// Counter: WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Counter: client messages received.
    pub messages_in: AtomicU64,
    /// Counter: frames queued to clients (events, replies, errors, welcomes).
    pub messages_out: AtomicU64,
    /// Counter: events delivered to a connection (one per recipient).
    pub deliveries: AtomicU64,
    /// Counter: connections closed as slow consumers.
    pub slow_consumers: AtomicU64,
    /// Counter: commands refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Counter: tokens refused (handshake or `auth` command).
    pub auth_failures: AtomicU64,
    /// Counter: connections closed for a heartbeat timeout.
    pub heartbeat_timeouts: AtomicU64,
    /// Counter: panics caught (a connection closed with 1011, or a shard task skipped).
    pub panics: AtomicU64,
    /// Counter: WebSocket commands that waited for room in another shard's full inbox
    /// (backpressure: the connection reads nothing more until the command ends).
    pub commands_waited: AtomicU64,
    /// Counter: connections closed because their token expired (4004).
    pub tokens_expired: AtomicU64,
    /// Counter: ephemeral events dropped for a recipient whose outbound queue was filling
    /// (refused, or dropped from the queue to make room for a durable frame).
    pub ephemeral_dropped: AtomicU64,
    /// Counter: Socket.IO acks ignored: the answer to no private message the socket was asked
    /// to ack, or to one it no longer remembers (`SOCKETIO_PRIVATE_ACKS`).
    pub socketio_unknown_acks: AtomicU64,
    /// Histogram: time to answer REST API requests.
    pub rest_latency: Histogram,
}

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`, in seconds).
pub(crate) const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A fixed-bucket latency histogram of relaxed atomics: recording is a few adds, no lock.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket of [`LATENCY_BUCKETS_US`] (not cumulative), plus one for larger values.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn record(&self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is the total count) and the sum in microseconds.
    pub fn cumulative(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let counts = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (counts, self.sum_us.load(Ordering::Relaxed))
    }
}

impl ShardStats {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one from a gauge.
    pub(crate) fn dec(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// A plain copy of every value.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: get(&self.connections),
            connections_total: get(&self.connections_total),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            deliveries: get(&self.deliveries),
            slow_consumers: get(&self.slow_consumers),
            rate_limited: get(&self.rate_limited),
            auth_failures: get(&self.auth_failures),
            heartbeat_timeouts: get(&self.heartbeat_timeouts),
            panics: get(&self.panics),
            commands_waited: get(&self.commands_waited),
            tokens_expired: get(&self.tokens_expired),
            ephemeral_dropped: get(&self.ephemeral_dropped),
            socketio_unknown_acks: get(&self.socketio_unknown_acks),
        }
    }
}

/// A copy of [`ShardStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// See [`ShardStats::connections`].
    pub connections: u64,
    /// See [`ShardStats::connections_total`].
    pub connections_total: u64,
    /// See [`ShardStats::messages_in`].
    pub messages_in: u64,
    /// See [`ShardStats::messages_out`].
    pub messages_out: u64,
    /// See [`ShardStats::deliveries`].
    pub deliveries: u64,
    /// See [`ShardStats::slow_consumers`].
    pub slow_consumers: u64,
    /// See [`ShardStats::rate_limited`].
    pub rate_limited: u64,
    /// See [`ShardStats::auth_failures`].
    pub auth_failures: u64,
    /// See [`ShardStats::heartbeat_timeouts`].
    pub heartbeat_timeouts: u64,
    /// See [`ShardStats::panics`].
    pub panics: u64,
    /// See [`ShardStats::commands_waited`].
    pub commands_waited: u64,
    /// See [`ShardStats::tokens_expired`].
    pub tokens_expired: u64,
    /// See [`ShardStats::ephemeral_dropped`].
    pub ephemeral_dropped: u64,
    /// See [`ShardStats::socketio_unknown_acks`].
    pub socketio_unknown_acks: u64,
}

impl std::ops::Add for StatsSnapshot {
    type Output = StatsSnapshot;
    fn add(self, o: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections + o.connections,
            connections_total: self.connections_total + o.connections_total,
            messages_in: self.messages_in + o.messages_in,
            messages_out: self.messages_out + o.messages_out,
            deliveries: self.deliveries + o.deliveries,
            slow_consumers: self.slow_consumers + o.slow_consumers,
            rate_limited: self.rate_limited + o.rate_limited,
            auth_failures: self.auth_failures + o.auth_failures,
            heartbeat_timeouts: self.heartbeat_timeouts + o.heartbeat_timeouts,
            panics: self.panics + o.panics,
            commands_waited: self.commands_waited + o.commands_waited,
            tokens_expired: self.tokens_expired + o.tokens_expired,
            ephemeral_dropped: self.ephemeral_dropped + o.ephemeral_dropped,
            socketio_unknown_acks: self.socketio_unknown_acks + o.socketio_unknown_acks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_micros(700));
        h.record(Duration::from_secs(5));
        let (counts, sum) = h.cumulative();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[3], 2);
        assert_eq!(counts[LATENCY_BUCKETS_US.len() - 1], 2);
        assert_eq!(*counts.last().unwrap_or(&0), 3);
        assert_eq!(sum, 5_000_750);
    }
}
