//! `GET /metrics`: the counters and gauges in Prometheus text format (version 0.0.4).

use std::fmt::Write;

use crate::http::rest::query::collect_stats;
use crate::node::Ctx;
use crate::stats::{StatsSnapshot, LATENCY_BUCKETS_US};

/// One metric: name, type, help, and how to read it from a shard's snapshot.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&StatsSnapshot) -> u64,
}

const PER_SHARD: &[Metric] = &[
    Metric {
        name: "wsgate_connections",
        kind: "gauge",
        help: "Open WebSocket connections.",
        read: |s| s.connections,
    },
    Metric {
        name: "wsgate_connections_total",
        kind: "counter",
        help: "WebSocket connections accepted.",
        read: |s| s.connections_total,
    },
    Metric {
        name: "wsgate_messages_in_total",
        kind: "counter",
        help: "Client messages received.",
        read: |s| s.messages_in,
    },
    Metric {
        name: "wsgate_messages_out_total",
        kind: "counter",
        help: "Frames queued to clients.",
        read: |s| s.messages_out,
    },
    Metric {
        name: "wsgate_deliveries_total",
        kind: "counter",
        help: "Events delivered to a connection.",
        read: |s| s.deliveries,
    },
    Metric {
        name: "wsgate_slow_consumers_total",
        kind: "counter",
        help: "Connections closed as slow consumers.",
        read: |s| s.slow_consumers,
    },
    Metric {
        name: "wsgate_rate_limited_total",
        kind: "counter",
        help: "Commands refused by the rate limiter.",
        read: |s| s.rate_limited,
    },
    Metric {
        name: "wsgate_auth_failures_total",
        kind: "counter",
        help: "Tokens refused.",
        read: |s| s.auth_failures,
    },
    Metric {
        name: "wsgate_heartbeat_timeouts_total",
        kind: "counter",
        help: "Connections closed for a heartbeat timeout.",
        read: |s| s.heartbeat_timeouts,
    },
    Metric {
        name: "wsgate_panics_total",
        kind: "counter",
        help: "Panics caught: a connection closed with 1011, or a shard task skipped.",
        read: |s| s.panics,
    },
    Metric {
        name: "wsgate_commands_waited_total",
        kind: "counter",
        help: "WebSocket commands that waited for room in another shard's full inbox.",
        read: |s| s.commands_waited,
    },
    Metric {
        name: "wsgate_tokens_expired_total",
        kind: "counter",
        help: "Connections closed because their token expired (4004).",
        read: |s| s.tokens_expired,
    },
    Metric {
        name: "wsgate_ephemeral_dropped_total",
        kind: "counter",
        help: "Ephemeral events dropped for a recipient whose outbound queue was filling.",
        read: |s| s.ephemeral_dropped,
    },
    Metric {
        name: "wsgate_socketio_unknown_acks_total",
        kind: "counter",
        help: "Socket.IO acks ignored: for no private message the socket was asked to ack, or one it no longer remembers.",
        read: |s| s.socketio_unknown_acks,
    },
];

/// The whole exposition.
pub(crate) fn render(ctx: &Ctx) -> String {
    let stats = collect_stats(ctx);
    let mut out = String::with_capacity(4096);
    for m in PER_SHARD {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            m.name, m.help, m.name, m.kind
        );
        for s in &stats.shards {
            let _ = writeln!(
                out,
                "{}{{shard=\"{}\"}} {}",
                m.name,
                s.shard,
                (m.read)(&s.stats)
            );
        }
    }
    let name = "wsgate_rest_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to answer REST API requests.\n# TYPE {name} histogram"
    );
    for (i, s) in ctx.shared.stats.iter().enumerate() {
        let (counts, sum_us) = s.rest_latency.cumulative();
        for (le, count) in LATENCY_BUCKETS_US.iter().zip(&counts) {
            let le = *le as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{shard=\"{i}\",le=\"{le}\"}} {count}");
        }
        let total = counts.last().copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{shard=\"{i}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{shard=\"{i}\"}} {}", sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {total}");
    }
    let _ = writeln!(
        out,
        "# HELP wsgate_users Connected users.\n# TYPE wsgate_users gauge\nwsgate_users {}",
        stats.users
    );
    let _ = writeln!(
        out,
        "# HELP wsgate_rooms Rooms.\n# TYPE wsgate_rooms gauge\nwsgate_rooms {}",
        stats.rooms
    );
    let store = ctx.shared.store().backlog();
    gauges(
        &mut out,
        &[
        (
            "wsgate_store_queued",
            "gauge",
            "Store writes queued, not yet committed (STORE=disk).",
            store.queued as u64,
        ),
        (
            "wsgate_store_unsynced",
            "gauge",
            "Store writes committed to the OS, not yet fsynced.",
            store.unsynced,
        ),
        (
            "wsgate_store_fsyncs_total",
            "counter",
            "Store fsyncs.",
            store.fsyncs,
        ),
        (
            "wsgate_store_failed_writes_total",
            "counter",
            "Store writes that failed (logged).",
            store.failed,
        ),
        (
            "wsgate_store_mailbox_loads_total",
            "counter",
            "Reads of offline users' mailboxes from the store (one per connect that finds messages only on disk).",
            store.loads,
        ),
        (
            "wsgate_store_write_buffer_bytes",
            "gauge",
            "Bytes in the store's write buffers (memtables), not yet flushed to its files (STORE_IDLE_FLUSH).",
            store.buffered,
        ),
        (
            "wsgate_store_cached_streams",
            "gauge",
            "Streams whose epoch and lowest offset the store's writer holds in memory (dropped after STORE_IDLE_FLUSH without writes).",
            store.cached,
        ),
        ],
    );
    if let Some(redis) = ctx.shared.backplane.redis() {
        cluster(&mut out, redis);
    }
    out
}

/// Cluster mode's link to Redis.
fn cluster(out: &mut String, redis: &crate::cluster::redis::Redis) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &redis.stats;
    gauges(
        out,
        &[
        (
            "wsgate_cluster_redis_up",
            "gauge",
            "1 while both connections to Redis are up, else 0 (degraded: what needs Redis is refused).",
            u64::from(redis.is_up()),
        ),
        (
            "wsgate_cluster_published_total",
            "counter",
            "Envelopes this node published to Redis (one per event, whatever the number of nodes).",
            s.published.load(Relaxed),
        ),
        (
            "wsgate_cluster_received_total",
            "counter",
            "Envelopes this node received from Redis (only those of rooms and users it hosts).",
            s.received.load(Relaxed),
        ),
        (
            "wsgate_cluster_received_bytes_total",
            "counter",
            "Bytes of the envelopes this node received from Redis.",
            s.received_bytes.load(Relaxed),
        ),
        (
            "wsgate_cluster_refused_total",
            "counter",
            "Commands toward Redis that failed or found the buffer full: what needed them was refused (cluster.unavailable).",
            s.refused.load(Relaxed),
        ),
        (
            "wsgate_cluster_gaps_total",
            "counter",
            "Stream offsets that did not arrive and were fetched from Redis.",
            s.gaps.load(Relaxed),
        ),
        (
            "wsgate_cluster_lost_total",
            "counter",
            "Stream offsets that did not arrive and could not be fetched (acknowledged or trimmed, or Redis unreachable).",
            s.lost.load(Relaxed),
        ),
        (
            "wsgate_cluster_socketio_kept_total",
            "counter",
            "Socket.IO sockets whose connection went away, written to Redis for recovery on any node.",
            s.socketio_kept.load(Relaxed),
        ),
        (
            "wsgate_cluster_socketio_recovered_total",
            "counter",
            "Socket.IO sockets this node recovered from a record in Redis (kept by this node or another).",
            s.socketio_recovered.load(Relaxed),
        ),
        (
            "wsgate_cluster_channels",
            "gauge",
            "Redis channels this node is subscribed to.",
            s.channels.load(Relaxed),
        ),
        (
            "wsgate_cluster_forward_failures_total",
            "counter",
            "Engine.IO requests for another node's session not forwarded: its node unknown or unreachable, already forwarded once, forwarding off (answered Session ID unknown), or CLUSTER_FORWARD_MAX reached (503).",
            s.forward_failures.load(Relaxed),
        ),
        ],
    );
    let name = "wsgate_cluster_forwarded_total";
    let _ = writeln!(
        out,
        "# HELP {name} Engine.IO requests forwarded to the node holding their session, by kind: long-polling GET/POST, WebSocket upgrade.\n# TYPE {name} counter"
    );
    for (kind, n) in [
        ("polling", &s.forwarded_polling),
        ("websocket", &s.forwarded_websocket),
    ] {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", n.load(Relaxed));
    }
}

/// Writes one unlabelled metric per `(name, type, help, value)`.
fn gauges(out: &mut String, metrics: &[(&str, &str, &str, u64)]) {
    for (name, kind, help, value) in metrics {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}
