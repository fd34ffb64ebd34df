//! One wsgate process (a node, in cluster terms): what its shards share ([`Shared`]), the
//! context a shard gives its commands and HTTP handlers ([`Ctx`]), the slots that bound
//! connections ([`permit`]), the hand-off of upgraded sockets to a shard's reactor
//! ([`Handoff`]), Engine.IO long-polling requests sent to their session's shard
//! ([`polling`]), and shutdown.

pub(crate) mod detached;
pub(crate) mod namespaces;
pub(crate) mod permit;
pub(crate) mod polling;
pub(crate) mod shutdown;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use wsgate_protocol::{Format, ServerMessage};

use crate::clock::Clock;
use crate::cluster::local::Parts;
use crate::cluster::reads::Reads;
use crate::cluster::redis::Redis;
use crate::cluster::{
    Directory, Idempotency, IdempotencyLimits, Local, LocalHub, PresenceRules, Streams,
};
use crate::config::{Config, StoreKind};
use crate::hub::{Limits, StreamLimits};
use crate::session::auth::{Identity, Verifier};
use crate::session::{self, Session};
use crate::stats::ShardStats;
use crate::store::{Kind, Recovered, Store, StoreError};
use crate::transport::engineio::{Handshake, Sid};
use crate::transport::socket::Socket;
use permit::{ConnPermit, UserSlot};
use polling::PollRequest;
use shutdown::Shutdown;

/// What every shard shares. Nothing here is touched per message except the backplane's
/// inboxes and the relaxed counters in `stats`.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The other shards, and the directory.
    pub(crate) backplane: Arc<Local>,
    /// One per shard, written by its shard only.
    pub(crate) stats: Box<[Arc<ShardStats>]>,
    pub(crate) verifier: Verifier,
    /// Keys accepted by the REST API (never logged).
    pub(crate) api_keys: Vec<String>,
    /// Open connections, bounded by `max_connections` (see [`ConnPermit`]).
    pub(crate) connections: AtomicUsize,
    pub(crate) shutdown: Shutdown,
    /// The first answers of keyed requests, for their retries.
    pub(crate) idempotency: Keys,
    /// The Socket.IO namespaces served, and their frame-cache slots.
    pub(crate) namespaces: namespaces::Namespaces,
    /// Socket.IO sockets whose connection went away, kept for recovery.
    pub(crate) detached: detached::DetachedSockets,
    /// Each shard's queue of upgraded sockets to adopt. Unbounded in type, bounded in fact:
    /// every entry holds one of `max_connections` [`ConnPermit`]s.
    handoffs: Box<[mpsc::UnboundedSender<Handoff>]>,
    /// Each shard's queue of Engine.IO long-polling requests. Bounded in fact: an entry is an
    /// HTTP request in flight, at most one per open HTTP connection.
    polls: Box<[mpsc::UnboundedSender<PollRequest>]>,
}

/// The idempotency stores: one for clients' commands (scoped by user), one for REST (scoped
/// by route), so that neither can crowd the other's keys out.
pub(crate) struct Keys {
    /// A `publish`'s or `send`'s answer: the event's offset, if it has one.
    pub(crate) commands: Arc<Idempotency<Option<u64>>>,
    /// A REST answer: status and body.
    pub(crate) rest: Arc<Idempotency<(u16, Bytes)>>,
}

/// The receiving ends of [`Shared`]'s queues, one of each per shard: upgraded sockets, and
/// Engine.IO long-polling requests.
pub(crate) type Handoffs = Vec<(
    mpsc::UnboundedReceiver<Handoff>,
    mpsc::UnboundedReceiver<PollRequest>,
)>;

impl Shared {
    /// The state `config.shard_count()` shards share, and each shard's hand-off receiver;
    /// with `STORE=disk`, what the store kept is put back first.
    pub(crate) fn new(
        config: Config,
        verifier: Verifier,
        api_keys: Vec<String>,
        shutdown: Shutdown,
    ) -> Result<(Shared, Handoffs), StoreError> {
        let shards = config.shard_count();
        let (store, recovered) = match config.store {
            StoreKind::Memory => (Store::memory(), Recovered::default()),
            StoreKind::Disk => Store::open(
                &config.data_dir,
                config.store_fsync,
                config.store_queue_capacity,
                config.store_idle_flush,
            )?,
        };
        let store = Arc::new(store);
        let rules = PresenceRules {
            grace: config.presence_grace,
            rooms_default: config.room_presence,
            max_leaving: config.max_connections,
        };
        let directory = Directory::new(config.max_connections_per_user, config.max_rooms, rules);
        directory.restore(recovered.rooms, recovered.allowed);
        let limits = StreamLimits {
            size: config.room_history_size,
            bytes: config.room_history_bytes,
            ttl_ms: config.room_history_ttl.as_millis() as u64,
        };
        let redis = Redis::new(&config).map(Arc::new);
        // Cluster mode: a stream's home is Redis; this node's copies write nothing here.
        let streams_store = match redis {
            Some(_) => Arc::new(Store::memory()),
            None => store.clone(),
        };
        let streams = Streams::new(Kind::Room, limits, config.max_rooms, streams_store.clone());
        let user_limits = StreamLimits {
            size: config.user_stream_size,
            bytes: config.user_stream_bytes,
            ttl_ms: config.user_stream_ttl.as_millis() as u64,
        };
        let users = Streams::new(
            Kind::User,
            user_limits,
            config.max_user_streams,
            streams_store,
        );
        let (rooms, mailboxes): (Vec<_>, Vec<_>) = recovered
            .streams
            .into_iter()
            .partition(|s| s.stream.kind == Kind::Room);
        // A room's stream keeps to the room's own history options, asked of the directory
        // already restored.
        if redis.is_none() {
            streams.restore(rooms, Vec::new(), |room| {
                directory.history(room)?.own(streams.defaults())
            });
            users.restore(mailboxes, recovered.acks, |_| None);
        }
        let reads = Reads::new(config.max_user_streams);
        reads.restore(recovered.reads);
        if config.store == StoreKind::Disk {
            tracing::info!(
                dir = %config.data_dir.display(),
                clean = recovered.clean,
                rooms = directory.room_count(),
                "store opened"
            );
        }
        let keys = IdempotencyLimits {
            window_ms: config.idempotency_window.as_millis() as u64,
            max_keys: config.idempotency_max_keys,
            max_bytes: config.idempotency_max_bytes,
        };
        let idempotency = Keys {
            commands: Idempotency::new(keys, redis.clone()),
            rest: Idempotency::new(keys, redis.clone()),
        };
        let (senders, handoff_rx): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let (polls, poll_rx): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let receivers = handoff_rx.into_iter().zip(poll_rx).collect();
        let shared = Shared {
            backplane: Arc::new(Local::new(
                shards,
                config.shard_inbox_capacity,
                Parts {
                    directory,
                    streams,
                    users,
                    reads,
                    store,
                    redis: redis.clone(),
                },
            )),
            stats: (0..shards).map(|_| Arc::default()).collect(),
            verifier,
            api_keys,
            connections: AtomicUsize::new(0),
            shutdown,
            idempotency,
            namespaces: namespaces::Namespaces::new(&config.socketio_namespace_list()),
            detached: detached::DetachedSockets::new(
                config.socketio_recovery,
                config.max_connections,
            ),
            handoffs: senders.into_boxed_slice(),
            polls: polls.into_boxed_slice(),
            config,
        };
        if let Some(redis) = redis {
            if let Err(e) = redis.start(Arc::downgrade(&shared.backplane)) {
                tracing::error!(error = %e, "cluster: the link's thread could not start");
            }
        }
        Ok((shared, receivers))
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        self.backplane.store()
    }

    /// Writes every stream's position and marks the run clean; once the shards are stopped.
    pub(crate) fn close_store(&self) {
        let mut heads = self.backplane.streams().heads();
        heads.extend(self.backplane.user_streams().heads());
        self.store().close(heads);
    }

    /// The process-wide directory of users and rooms.
    pub(crate) fn directory(&self) -> &Directory {
        self.backplane.directory()
    }

    /// Hands an upgraded socket to shard `shard`'s reactor; `false` if the shard is gone.
    pub(crate) fn hand_off(&self, shard: usize, handoff: Handoff) -> bool {
        self.handoffs
            .get(shard)
            .is_some_and(|tx| tx.send(handoff).is_ok())
    }

    /// Sends an Engine.IO long-polling request to shard `shard`'s engine; `false` if there is
    /// no such shard (a forged session id) or it is gone.
    pub(crate) fn send_poll(&self, shard: usize, request: PollRequest) -> bool {
        self.polls
            .get(shard)
            .is_some_and(|tx| tx.send(request).is_ok())
    }
}

/// What a connection serves.
pub(crate) enum Role {
    /// The gateway protocol at `/ws`: commands in `format`, from `identity` when the handshake
    /// carried a token (otherwise `auth` must come within `AUTH_TIMEOUT`).
    Gateway {
        format: Format,
        identity: Option<(Identity, UserSlot)>,
    },
    /// `/echo` (`ECHO=true`): every data message is sent back unchanged, with its opcode. No
    /// auth, no commands, no rate limit; the same reader, queue, limits and close handshake.
    Echo,
    /// Engine.IO over WebSocket: a new session (`sid` `None`, the open packet first), or the
    /// upgrade of long-polling session `sid` (owned by the shard this is handed to).
    EngineIo {
        sid: Option<Sid>,
        handshake: Handshake,
    },
}

/// An upgraded socket on its way to a shard's reactor.
pub(crate) struct Handoff {
    pub(crate) socket: Socket,
    /// Bytes read past the handshake.
    pub(crate) already_read: Bytes,
    pub(crate) role: Role,
    pub(crate) permit: ConnPermit,
}

/// One shard's context: its hub, its clock, and what every shard shares.
pub(crate) struct Ctx {
    /// The shard's index.
    pub(crate) shard: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) hub: LocalHub,
    pub(crate) clock: Clock,
    /// `SOCKETIO_ERROR_EVENT`, shared by this shard's namespace sockets (one allocation, not
    /// one per socket).
    pub(crate) socketio_error_event: Arc<str>,
    next_seq: Cell<u64>,
}

impl Ctx {
    /// Shard `shard`'s context.
    pub(crate) fn new(shard: usize, shared: Arc<Shared>) -> Rc<Ctx> {
        let cfg = &shared.config;
        let limits = Limits {
            max_outbound_bytes: cfg.max_outbound_bytes,
            max_rooms_per_connection: cfg.max_rooms_per_connection,
            max_watched_users: cfg.max_watched_users,
            #[cfg(feature = "testing")]
            faults: cfg.faults == crate::panic::Faults::On,
        };
        let hub = LocalHub::new(
            shard,
            shared.backplane.clone(),
            shared.stats[shard].clone(),
            limits,
        );
        Rc::new(Ctx {
            shard,
            hub,
            clock: Clock::start(),
            socketio_error_event: Arc::from(cfg.socketio_error_event.as_str()),
            next_seq: Cell::new(1),
            shared,
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.shard]
    }

    /// The shard clock, in milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A server-wide unique session id: the shard in the top byte.
    pub(crate) fn next_session_id(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        ((self.shard as u64) << 56) | seq
    }

    /// Session `id` as the wire names it ([`session::wire_id`]): unique in the cluster.
    pub(crate) fn wire_id(&self, id: u64) -> String {
        session::wire_id(id, self.shared.backplane.redis().map(|r| r.tag))
    }

    /// Queues a frame for one session, counting it (or the slow consumer it made).
    pub(crate) fn push(&self, session: &Session, frame: Bytes) {
        session.push_counted(frame, self.config().max_outbound_bytes, self.stats());
    }

    /// Encodes and queues a message for one session, counting it.
    pub(crate) fn send(&self, session: &Session, msg: &ServerMessage<'_>) {
        session.send_counted(msg, self.config().max_outbound_bytes, self.stats());
    }
}
