//! The sweep: a shard's timers in one periodic pass over its sessions: deadlines (auth, token
//! expiry), pings to idle connections (Engine.IO sessions: to every one, each ping interval),
//! heartbeat timeouts, and idle outbox buffers freed; and the users whose presence grace is
//! over, announced offline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wsgate_protocol::CloseCode;

use crate::node::Ctx;
use crate::session::{Deadline, Session};
use crate::stats::ShardStats;
use crate::transport::outbound::{CloseRequest, PushError, Queued};
use crate::transport::ws::frame::{self, OpCode};

/// How long a connection's empty outbound queue keeps its buffer after the last frame queued:
/// long enough that bursts a few seconds apart reuse it (growing it anew costs copies and page
/// faults), short enough that idle connections hold none (see BENCHMARKS.md, "Bursts").
const QUEUE_RELEASE_AFTER: Duration = Duration::from_secs(5);

/// Runs [`sweep`] at a period fine enough for the configured timeouts, for the shard's life.
pub(crate) async fn run(ctx: Rc<Ctx>) {
    let cfg = ctx.config();
    let mut finest = cfg
        .heartbeat_interval
        .min(cfg.heartbeat_timeout)
        .min(cfg.auth_timeout)
        .min(cfg.engineio_ping_interval)
        .min(cfg.engineio_ping_timeout);
    if !cfg.presence_grace.is_zero() {
        finest = finest.min(cfg.presence_grace);
    }
    let finest = finest / 4;
    let period = finest.clamp(Duration::from_millis(5), Duration::from_secs(1));
    let release_after = (QUEUE_RELEASE_AFTER.as_millis() / period.as_millis()).clamp(1, 255) as u8;
    // The ping frames, encoded once and shared by every connection: a WebSocket ping, and
    // Engine.IO's `2` (a text frame, which long-polling carries as its payload).
    let ping = Pings {
        ws: frame::control(OpCode::Ping, b""),
        engineio: frame::data(OpCode::Text, b"2"),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_collect = Instant::now();
    loop {
        tick.tick().await;
        crate::panic::contain(ctx.stats(), ctx.shard, "the sweep", || {
            sweep(&ctx, &ping, release_after);
            let backplane = &ctx.shared.backplane;
            backplane.streams().expire(ctx.shard, ctx.hub.hubs());
            backplane.user_streams().expire(ctx.shard, ctx.hub.hubs());
            backplane.expire_graces();
        });
        if last_collect.elapsed() >= Duration::from_secs(1) {
            super::alloc::collect();
            last_collect = Instant::now();
        }
    }
}

/// The heartbeat's ping frames.
struct Pings {
    /// A WebSocket ping, for native and `/echo` connections.
    ws: Bytes,
    /// Engine.IO's ping packet, `2`.
    engineio: Bytes,
}

/// One pass: deadlines, pings to idle connections, heartbeat timeouts; and the outbound
/// buffers of connections that queued nothing for `release_after` passes.
fn sweep(ctx: &Ctx, ping: &Pings, release_after: u8) {
    let now = ctx.now_ms();
    let cfg = ctx.config();
    let interval = cfg.heartbeat_interval.as_millis() as u64;
    let timeout = cfg.heartbeat_timeout.as_millis() as u64;
    let eio_interval = cfg.engineio_ping_interval.as_millis() as u64;
    let eio_timeout = cfg.engineio_ping_timeout.as_millis() as u64;
    ctx.hub.for_each_session(|s| {
        s.release_idle_queue(release_after);
        if s.is_closing() {
            return;
        }
        match s.deadline.get() {
            Deadline::Auth { at_ms } => {
                // Awaiting `auth`: only its deadline applies (no ping yet).
                if now >= at_ms {
                    s.close(CloseRequest::new(CloseCode::AuthTimeout), Queued::Flush);
                }
                return;
            }
            Deadline::TokenExpiry { at_ms } if now >= at_ms => {
                ShardStats::inc(&ctx.stats().tokens_expired);
                s.close(CloseRequest::new(CloseCode::TokenExpired), Queued::Flush);
                return;
            }
            Deadline::TokenExpiry { .. } | Deadline::None => {}
        }
        if s.socketio.is_some() {
            // A namespace socket: its carrier's Engine.IO heartbeat proves the connection.
        } else if s.engineio.get() {
            engineio_heartbeat(ctx, s, &ping.engineio, now, eio_interval, eio_timeout);
        } else {
            heartbeat(ctx, s, &ping.ws, now, interval, timeout);
        }
    });
}

/// Pings an idle session, or closes one whose ping went unanswered for `timeout`.
fn heartbeat(ctx: &Ctx, s: &Rc<Session>, ping: &Bytes, now: u64, interval: u64, timeout: u64) {
    let sent = s.ping_sent_ms.get();
    let seen = s.last_seen_ms.get();
    if sent != 0 && seen < sent {
        if now - sent >= timeout {
            ShardStats::inc(&ctx.stats().heartbeat_timeouts);
            s.close(
                CloseRequest::new(CloseCode::HeartbeatTimeout),
                Queued::Discard,
            );
        }
    } else if now.saturating_sub(seen) >= interval {
        // Only idle connections are pinged: any frame received proves liveness.
        s.ping_sent_ms.set(now);
        if s.push(ping.clone(), ctx.config().max_outbound_bytes) == Err(PushError::SlowConsumer) {
            ShardStats::inc(&ctx.stats().slow_consumers);
        }
    }
}

/// Engine.IO's heartbeat: a ping every `interval` after the last pong (traffic does not
/// count: the client expects pings on time), and the session closed (4000, "ping timeout")
/// when the pong is not in within `timeout`. `last_seen_ms` is the last pong here. A ping is
/// dated when it was due (at most a quarter of `timeout` before the sweep that sends it), so
/// the deadline is the client's exactly, whatever the sweep's period.
fn engineio_heartbeat(
    ctx: &Ctx,
    s: &Rc<Session>,
    ping: &Bytes,
    now: u64,
    interval: u64,
    timeout: u64,
) {
    let sent = s.ping_sent_ms.get();
    let pong = s.last_seen_ms.get();
    if sent != 0 && pong < sent {
        if s.ping_overdue(now, timeout) {
            ShardStats::inc(&ctx.stats().heartbeat_timeouts);
            s.close(
                CloseRequest::new(CloseCode::HeartbeatTimeout),
                Queued::Discard,
            );
        }
        return;
    }
    let due = pong.max(sent).saturating_add(interval);
    if now >= due {
        s.ping_sent_ms
            .set(due.max(now.saturating_sub(timeout / 4)).max(1));
        if s.push(ping.clone(), ctx.config().max_outbound_bytes) == Err(PushError::SlowConsumer) {
            ShardStats::inc(&ctx.stats().slow_consumers);
        }
    }
}
