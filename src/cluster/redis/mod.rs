//! Cluster mode's link to Redis (`CLUSTER_REDIS_URL`): one pipelined client for commands and
//! one subscriber, on a thread of their own (`wsgate-cluster`) whose loops deliver what
//! arrives to [`crate::cluster::Local`] and keep this node subscribed to exactly the channels
//! of the rooms and users it hosts ([`interest`]).
//!
//! - [`names`]: keys and channels, one hash tag per stream;
//! - [`envelope`]: an event as it crosses Redis, encoded once;
//! - [`scripts`]: the Lua that appends, reads and acks atomically per stream;
//! - [`presence`]: presence and the directory cluster-wide, nodes' beats and cleanup;
//! - [`rooms`]: room definitions (made over REST or by `create`) shared by every node;
//! - [`keys`]: idempotency keys' first answers, shared by every node;
//! - [`sockets`]: Socket.IO sockets kept for recovery, for a client reconnecting to any node;
//! - [`addresses`]: the nodes' HTTP addresses, for forwarding Engine.IO requests.
//!
//! Everything toward Redis is bounded: at most `CLUSTER_BUFFER` commands in flight and each
//! waits at most `CLUSTER_TIMEOUT`; past either, what needed Redis is refused
//! ([`BackplaneError`]), never accepted and then dropped.

pub(crate) mod addresses;
pub(crate) mod envelope;
mod interest;
pub(crate) mod keys;
pub(crate) mod names;
pub(crate) mod presence;
pub(crate) mod rooms;
mod scripts;
mod sockets;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::{Builder, Config as RedisConfig, ReconnectPolicy};
use fred::types::scripts::Script;
use fred::types::Value;
use tokio::sync::Notify;

pub(crate) use self::envelope::Header;
use self::interest::Interest;
pub(crate) use self::names::{Channel, Kind, Names};
use super::Local;
use crate::config::Config;
use crate::hub::{BackplaneError, Position, Report};
use crate::transport::engineio::NodeTag;

/// How long after a delivery to a user that does not ack the delivery is written to Redis as
/// its ack (in a batch with the others meanwhile).
const DELIVERED_ACK_DELAY: Duration = Duration::from_secs(1);

/// A stream's head and messages as Redis answered.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) position: Position,
    /// A user's stream: acknowledged up to here, and whether the user acks.
    pub(crate) acked: u64,
    pub(crate) manual: bool,
    /// Messages (offset, as the store encodes them), oldest first.
    pub(crate) messages: Vec<(u64, Bytes)>,
}

/// What the sending node keeps of a publish until its event comes back from Redis: what the
/// envelope does not carry because only this node needs it.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The sending connection, when it gets no echo.
    pub(crate) exclude: Option<u64>,
    pub(crate) report: Option<Arc<Report>>,
    /// The user's place among a push's users.
    pub(crate) index: usize,
    /// Parts the report awaits from this publish (one per hub of this node).
    parts: usize,
    since: Instant,
}

impl Pending {
    /// Its event will not come back: the report gets its parts, counting nothing.
    pub(crate) fn abandon(self) {
        if let Some(report) = self.report {
            for _ in 0..self.parts {
                report.add(0, []);
            }
        }
    }
}

/// Counters of the link, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ClusterStats {
    /// Envelopes published (one per event, whatever the number of nodes).
    pub(crate) published: AtomicU64,
    /// Envelopes received from Redis, and their bytes.
    pub(crate) received: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    /// Publishes and reads refused because Redis did not answer or the buffer was full.
    pub(crate) refused: AtomicU64,
    /// Offsets missing from what arrived, fetched from the stream (or, if Redis could not
    /// answer, skipped: counted in `lost`).
    pub(crate) gaps: AtomicU64,
    pub(crate) lost: AtomicU64,
    /// Channels subscribed now.
    pub(crate) channels: AtomicU64,
    /// Socket.IO sockets written to Redis for recovery, and recovered from a record there.
    pub(crate) socketio_kept: AtomicU64,
    pub(crate) socketio_recovered: AtomicU64,
    /// Engine.IO requests forwarded to the node holding their session: long-polling ones,
    /// and WebSocket upgrades.
    pub(crate) forwarded_polling: AtomicU64,
    pub(crate) forwarded_websocket: AtomicU64,
    /// Requests for another node's session that could not be forwarded (its node unknown or
    /// unreachable, a loop, or forwarding off), answered `Session ID unknown`.
    pub(crate) forward_failures: AtomicU64,
}

/// The link to Redis.
pub(crate) struct Redis {
    client: Client,
    subscriber: SubscriberClient,
    pub(crate) names: Names,
    /// This node, random at its start: its own events come back to it marked so.
    pub(crate) node: u64,
    /// The node as its Engine.IO session ids name it.
    pub(crate) tag: NodeTag,
    /// This node's address and the others', for forwarding.
    pub(crate) addresses: addresses::Addresses,
    nonce: AtomicU64,
    publish: Script,
    head: Script,
    read: Script,
    ack: Script,
    claim: Script,
    settle: Script,
    in_flight: AtomicUsize,
    buffer: usize,
    interest: Interest,
    /// Publishes whose events have not come back yet, by nonce (bounded by `CLUSTER_BUFFER`
    /// commands in flight; what never comes back is let go after twice `CLUSTER_TIMEOUT`).
    pending: Mutex<HashMap<u64, Pending>>,
    /// Deliveries to users that do not ack, to acknowledge in Redis (latest offset per
    /// user), flushed by the link's loop.
    delivered: Mutex<HashMap<Arc<str>, u64>>,
    flush: Notify,
    timeout: Duration,
    pub(crate) stats: ClusterStats,
    /// Keys' time to live: rooms', users'.
    room_ttl_ms: u64,
    user_ttl_ms: u64,
    /// This node's presence changes on their way to Redis.
    pub(crate) presence: presence::Presence,
    /// Socket.IO sockets kept for recovery, on their way to and from Redis.
    kept: sockets::Kept,
}

impl Redis {
    /// The link `config` asks for, not yet connected (see [`Redis::start`]); `None` without
    /// `CLUSTER_REDIS_URL`.
    pub(crate) fn new(config: &Config) -> Option<Redis> {
        let url = config.cluster_redis_url.as_deref()?;
        // Validated with the rest of the configuration.
        let mut redis = RedisConfig::from_url(url).ok()?;
        // Start degraded rather than not at all: the link keeps trying.
        redis.fail_fast = false;
        let timeout = config.cluster_timeout;
        // `attempts`: how often a command may be written. The command client's commands are
        // written once: one whose connection closed before its answer may have run, and
        // running it again would publish it twice (two offsets), so it is answered
        // `cluster.unavailable` instead, like any command whose fate Redis did not tell.
        // Commands queued while disconnected are written once connected, as before.
        let builder = |attempts: u32| {
            let mut b = Builder::from_config(redis.clone());
            b.with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // What arrives faster than this node delivers waits here; past it the
                // receiver lags and the missing offsets are fetched from the streams.
                p.broadcast_channel_capacity = 1 << 16;
            })
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_buffer_len = config.cluster_buffer;
                c.max_command_attempts = attempts;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2));
            b
        };
        let client = builder(1).build().ok()?;
        // Subscribing twice does no harm: fred's default.
        let subscriber = builder(3).build_subscriber_client().ok()?;
        let node = rand::random();
        Some(Redis {
            client,
            subscriber,
            names: Names::new(&config.cluster_prefix),
            node,
            tag: NodeTag::of(node),
            addresses: addresses::Addresses::new(config),
            nonce: AtomicU64::new(1),
            publish: Script::from_lua(scripts::PUBLISH),
            head: Script::from_lua(scripts::HEAD),
            read: Script::from_lua(scripts::READ),
            ack: Script::from_lua(scripts::ACK),
            claim: Script::from_lua(keys::CLAIM),
            settle: Script::from_lua(keys::SETTLE),
            in_flight: AtomicUsize::new(0),
            buffer: config.cluster_buffer,
            interest: Interest::default(),
            pending: Mutex::default(),
            delivered: Mutex::default(),
            flush: Notify::new(),
            timeout,
            stats: ClusterStats::default(),
            room_ttl_ms: ttl(config.room_history_ttl),
            user_ttl_ms: ttl(config.user_stream_ttl),
            presence: presence::Presence::new(config),
            kept: sockets::Kept::new(config.cluster_buffer, config.socketio_recovery),
        })
    }

    /// Connects and starts the link's thread: its loops deliver to `local` what arrives,
    /// subscribe and unsubscribe, and acknowledge deliveries.
    pub(crate) fn start(self: &Arc<Self>, local: Weak<Local>) -> std::io::Result<()> {
        let link = self.clone();
        std::thread::Builder::new()
            .name("wsgate-cluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => return tracing::error!(error = %e, "cluster runtime failed"),
                };
                runtime.block_on(link.run(local));
            })
            .map(drop)
    }

    async fn run(self: Arc<Self>, local: Weak<Local>) {
        let _client = self.client.connect();
        let _subscriber = self.subscriber.connect();
        let mut messages = self.subscriber.message_rx();
        tokio::spawn(self.clone().watch_state());
        tokio::spawn(self.clone().subscriptions(local.clone()));
        tokio::spawn(self.clone().acknowledge());
        tokio::spawn(self.clone().presence(local.clone()));
        tokio::spawn(self.clone().resubscribe(local.clone()));
        tokio::spawn(self.clone().keep_sockets());
        // Every node hears broadcasts and room definitions.
        let _ = self.interest.want(self.names.broadcast(), None);
        let _ = self.interest.want(self.names.rooms(), None);
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let Some(local) = local.upgrade() else { return };
                    let Some(bytes) = bytes_of(&message.value) else {
                        continue;
                    };
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let len = bytes.len() as u64;
                    self.stats.received_bytes.fetch_add(len, Ordering::Relaxed);
                    local.receive(&self, &message.channel, bytes).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // The next event of each stream finds the gap and fetches it.
                    tracing::warn!(missed = n, "the cluster link lagged behind Redis");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// After each reconnect: subscribes again to every channel, then catches up every stream
    /// this node keeps a copy of with what Redis ran while it was not subscribed (a gap no
    /// later event would show: the last publish before the subscription came back).
    async fn resubscribe(self: Arc<Self>, local: Weak<Local>) {
        let mut reconnects = self.subscriber.reconnect_rx();
        loop {
            match reconnects.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            // Not fred's `resubscribe_all` (nor `manage_subscriptions`): it sends a SUBSCRIBE
            // with no channel first, which Redis refuses, and stops before the sharded ones.
            let channels = self.subscriber.tracked_shard_channels();
            if let Err(e) = interest::ssubscribe(&self.subscriber, channels).await {
                tracing::warn!(error = %e, "cluster: resubscribing failed");
            }
            let Some(local) = local.upgrade() else { return };
            let streams: Vec<(Kind, String)> = self
                .interest
                .subscribed()
                .iter()
                .filter_map(|channel| match self.names.parse(channel)? {
                    Channel::Room(room) => Some((Kind::Room, room.to_owned())),
                    Channel::User(user) => Some((Kind::User, user.to_owned())),
                    // No stream behind them: presence resyncs on its own heartbeat.
                    Channel::Broadcast | Channel::Rooms | Channel::Watch(_) => None,
                })
                .collect();
            for (kind, name) in streams {
                local.resync(&self, kind, &name).await;
            }
        }
    }

    /// Logs when the link goes down or comes back, and lets go of stale publishes.
    async fn watch_state(self: Arc<Self>) {
        let mut was = false;
        loop {
            let up = self.is_up();
            if up != was {
                if up {
                    tracing::info!("cluster: Redis connected");
                } else {
                    tracing::warn!("cluster: Redis unreachable; reconnecting");
                }
                was = up;
            }
            self.expire_pending();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How long a command to Redis may take (`CLUSTER_TIMEOUT`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether both connections to Redis are up now.
    pub(crate) fn is_up(&self) -> bool {
        self.client.is_connected() && self.subscriber.is_connected()
    }

    /// Runs `command` within the buffer bound, counting a refusal.
    fn bounded<'a, T: 'a>(
        &'a self,
        command: impl std::future::Future<Output = Result<T, fred::error::Error>> + 'a,
    ) -> impl std::future::Future<Output = Result<T, BackplaneError>> + 'a {
        // fred's command futures are ~10 KB: held inline, they would make every future that
        // awaits a Redis call that large, on a node without Redis too (each native command's
        // future was 12.6 KB, allocated per command; BENCHMARKS.md). Boxed, only a call pays.
        let command = Box::pin(command);
        async move {
            if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.buffer {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(BackplaneError::Busy);
            }
            let result = command.await;
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            result.map_err(|e| {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "cluster: a Redis command failed");
                BackplaneError::Unreachable
            })
        }
    }

    /// The next nonce, with `pending` kept under it until the event comes back.
    pub(crate) fn expect(
        &self,
        exclude: Option<u64>,
        report: Option<Arc<Report>>,
        index: usize,
        parts: usize,
    ) -> u64 {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        if exclude.is_some() || report.is_some() {
            let pending = Pending {
                exclude,
                report,
                index,
                parts,
                since: Instant::now(),
            };
            lock(&self.pending).insert(nonce, pending);
        }
        nonce
    }

    /// What this node kept of its publish `nonce`, now that it came back.
    pub(crate) fn take_pending(&self, nonce: u64) -> Option<Pending> {
        lock(&self.pending).remove(&nonce)
    }

    /// Lets go of publishes whose events never came back (unsubscribed meanwhile, or lost
    /// with a connection to Redis): their reports count nothing more here.
    fn expire_pending(&self) {
        let limit = 2 * self.timeout;
        let expired: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let old: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.since.elapsed() > limit)
                .map(|(n, _)| *n)
                .collect();
            old.iter().filter_map(|n| pending.remove(n)).collect()
        };
        for p in expired {
            p.abandon();
        }
    }

    /// Appends a message to `name`'s stream and publishes it (see `scripts::PUBLISH`): the
    /// stream's epoch, the message's offset, and how many nodes host its recipients.
    pub(crate) async fn publish_stream(
        &self,
        kind: Kind,
        name: &str,
        header: &Header<'_>,
        message: &[u8],
        keep: usize,
    ) -> Result<(u64, u64, u64), BackplaneError> {
        let keys = vec![self.names.meta(kind, name), self.names.stream(kind, name)];
        let args: Vec<Value> = vec![
            new_epoch().into(),
            Bytes::from(header.encode(&[])).into(),
            Bytes::copy_from_slice(message).into(),
            (keep as i64).into(),
            (self.ttl(kind) as i64).into(),
            self.names.channel(kind, name).into(),
        ];
        let answer: Value = self
            .bounded(self.publish.evalsha_with_reload(&self.client, keys, args))
            .await?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let mut parts = array(answer).into_iter();
        let epoch = parts.next().and_then(|v| epoch_of(&v));
        let offset = parts.next().and_then(|v| number(&v));
        let nodes = parts.next().and_then(|v| number(&v)).unwrap_or(0);
        match (epoch, offset) {
            (Some(epoch), Some(offset)) => Ok((epoch, offset, nodes)),
            _ => Err(BackplaneError::Unreachable),
        }
    }

    /// Publishes an event outside any stream to `channel`.
    pub(crate) async fn publish_plain(
        &self,
        channel: String,
        header: &Header<'_>,
        message: &[u8],
    ) -> Result<(), BackplaneError> {
        let mut payload = envelope::UNSEQUENCED.to_vec();
        payload.extend(header.encode(message));
        let _: Value = self
            .bounded(self.client.spublish(channel, Bytes::from(payload)))
            .await?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `name`'s head and up to `limit` messages after `after` (`None`: after what its user
    /// acknowledged), making the stream if it has none.
    pub(crate) async fn head(
        &self,
        kind: Kind,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Head, BackplaneError> {
        let keys = vec![self.names.meta(kind, name), self.names.stream(kind, name)];
        let after: Value = match after {
            Some(o) => o.to_string().into(),
            None => "a".into(),
        };
        let args: Vec<Value> = vec![
            new_epoch().into(),
            after,
            (limit as i64).into(),
            (self.ttl(kind) as i64).into(),
        ];
        let answer: Value = self
            .bounded(self.head.evalsha_with_reload(&self.client, keys, args))
            .await?;
        let mut parts = array(answer).into_iter();
        let epoch = parts.next().and_then(|v| epoch_of(&v));
        let last = parts.next().and_then(|v| number(&v));
        let acked = parts.next().and_then(|v| number(&v));
        let manual = parts.next().and_then(|v| number(&v));
        let (Some(epoch), Some(offset), Some(acked), Some(manual)) = (epoch, last, acked, manual)
        else {
            return Err(BackplaneError::Unreachable);
        };
        Ok(Head {
            position: Position { epoch, offset },
            acked,
            manual: manual == 1,
            messages: messages(parts),
        })
    }

    /// A page of `room`'s history: the oldest `limit` after `after`, else the newest `limit`
    /// before `before`. `None` for the position if the room has no stream.
    pub(crate) async fn read(
        &self,
        room: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Option<Position>, Vec<(u64, Bytes)>), BackplaneError> {
        let keys = vec![
            self.names.meta(Kind::Room, room),
            self.names.stream(Kind::Room, room),
        ];
        let (mode, from) = match (after, before) {
            (Some(a), _) => ("after", a.to_string()),
            (None, Some(b)) => ("before", b.to_string()),
            (None, None) => ("before", "+".to_owned()),
        };
        let args: Vec<Value> = vec![mode.into(), from.into(), (limit as i64).into()];
        let answer: Value = self
            .bounded(self.read.evalsha_with_reload(&self.client, keys, args))
            .await?;
        let mut parts = array(answer).into_iter();
        let epoch = parts.next().and_then(|v| epoch_of(&v));
        let last = parts.next().and_then(|v| number(&v)).unwrap_or(0);
        let position = epoch.map(|epoch| Position {
            epoch,
            offset: last,
        });
        Ok((position, messages(parts)))
    }

    /// `user` acknowledged its messages up to `offset` (`manual`: by an `ack`, from now on it
    /// acks); its stream's position.
    pub(crate) async fn ack(
        &self,
        user: &str,
        offset: u64,
        manual: bool,
    ) -> Result<Position, BackplaneError> {
        let keys = vec![
            self.names.meta(Kind::User, user),
            self.names.stream(Kind::User, user),
        ];
        let args: Vec<Value> = vec![
            offset.to_string().into(),
            if manual { "1" } else { "0" }.into(),
            new_epoch().into(),
            (self.user_ttl_ms as i64).into(),
        ];
        let answer: Value = self
            .bounded(self.ack.evalsha_with_reload(&self.client, keys, args))
            .await?;
        let mut parts = array(answer).into_iter();
        let epoch = parts.next().and_then(|v| epoch_of(&v)).unwrap_or(0);
        let offset = parts.next().and_then(|v| number(&v)).unwrap_or(0);
        Ok(Position { epoch, offset })
    }

    /// A client that does not ack got `user`'s messages up to `offset`: acknowledged in Redis
    /// soon, in a batch.
    pub(crate) fn delivered(&self, user: &Arc<str>, offset: u64) {
        let mut delivered = lock(&self.delivered);
        let entry = delivered.entry(user.clone()).or_insert(offset);
        *entry = (*entry).max(offset);
        drop(delivered);
        self.flush.notify_one();
    }

    async fn acknowledge(self: Arc<Self>) {
        loop {
            self.flush.notified().await;
            // Not at once: a device of the same user connecting to another node right now
            // reads its mailbox after the ack; until its node's subscription is confirmed,
            // the mailbox is how it gets what is sent meanwhile.
            tokio::time::sleep(DELIVERED_ACK_DELAY).await;
            let batch: Vec<(Arc<str>, u64)> = lock(&self.delivered).drain().collect();
            for (user, offset) in batch {
                // Best effort: unacknowledged, they are delivered again (at least once).
                let _ = self.ack(&user, offset, false).await;
            }
        }
    }

    /// Subscribes to `name`'s channel soon (a local member or connection appeared).
    pub(crate) fn want(&self, kind: Kind, name: &str) {
        let _ = self.interest.want(self.names.channel(kind, name), None);
    }

    /// Subscribes to `name`'s channel and waits until Redis confirmed it. `first` runs, before
    /// the wait, if this call is the first to want the channel since it was last subscribed
    /// (none subscribed, none waiting): see [`Interest::want`].
    pub(crate) async fn subscribed(
        &self,
        kind: Kind,
        name: &str,
        first: impl FnOnce(),
    ) -> Result<(), BackplaneError> {
        let channel = self.names.channel(kind, name);
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.interest.want(channel, Some(done)) {
            first();
        }
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(true)) => Ok(()),
            _ => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(BackplaneError::Unreachable)
            }
        }
    }

    /// Whether this node is subscribed to `name`'s channel now.
    pub(crate) fn is_subscribed(&self, kind: Kind, name: &str) -> bool {
        self.interest.is_subscribed(&self.names.channel(kind, name))
    }

    /// Subscribes to what is wanted and unsubscribes from what no local member or connection
    /// needs any more, in batches.
    async fn subscriptions(self: Arc<Self>, local: Weak<Local>) {
        self.interest
            .run(&self.subscriber, &self.stats, |channel| {
                let Some(local) = local.upgrade() else {
                    return false;
                };
                match self.names.parse(channel) {
                    Some(Channel::Broadcast | Channel::Rooms) => true,
                    Some(Channel::Watch(user)) => local.watches_user(user),
                    Some(Channel::Room(room)) => local.hosts_room(room),
                    Some(Channel::User(user)) => local.hosts_user(user),
                    None => false,
                }
            })
            .await;
    }

    fn ttl(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Room => self.room_ttl_ms,
            Kind::User => self.user_ttl_ms,
        }
    }
}

/// A new stream's epoch, as Redis keeps it: 16 hex digits.
fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn ttl(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1_000)
}

fn bytes_of(value: &Value) -> Option<Bytes> {
    match value {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(s.inner().clone()),
        _ => None,
    }
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(parts) => parts,
        _ => Vec::new(),
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(&bytes_of(other)?).ok()?.parse().ok(),
    }
}

fn epoch_of(value: &Value) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(&bytes_of(value)?).ok()?, 16).ok()
}

/// `id, message` pairs: ids are `<offset>-0`.
fn messages(parts: impl Iterator<Item = Value>) -> Vec<(u64, Bytes)> {
    let parts: Vec<Value> = parts.collect();
    parts
        .chunks_exact(2)
        .filter_map(|pair| {
            let id = bytes_of(&pair[0])?;
            let offset = std::str::from_utf8(&id)
                .ok()?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            Some((offset, bytes_of(&pair[1])?))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
