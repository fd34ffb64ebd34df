//! wsgate: a per-core sharded real-time WebSocket gateway speaking the native JSON/MessagePack
//! protocol (see `protocol/PROTOCOL.md`), with JWT authentication, private messages and rooms.
//!
//! Start one with [`start`] and a [`Config`]; the `wsgate` binary does that from flags and
//! environment variables.
//!
//! # Layout
//!
//! Layers, lowest first; a module imports only those below it (and the leaves `config`, with
//! the configuration file and its Socket.IO event map, `stats`, `clock`, `panic`, and `queue`,
//! the bounded queue with reserved slots):
//!
//! - `reactor`: a shard's `mio` poll and slab of connection state machines, generic over the
//!   machine; wake-ups. Knows nothing of what it drives.
//! - `transport`: the socket, the outbound frame queue, WebSocket (`ws/`: frames, reader,
//!   wire state with the closing handshake, taking over an upgraded socket), Engine.IO's
//!   wire (`engineio/`: session ids, a long-polling payload from outbox frames), and
//!   Socket.IO packets as outbox frames (`socketio.rs`).
//! - `session`: a client's session (identity, typed deadline, outbox, wake-up), JWT `auth`,
//!   the rate limiter, and what makes a session a Socket.IO namespace socket carried by an
//!   Engine.IO session (`namespace.rs`). A session outlives its socket: transports attach
//!   and detach.
//! - `store`: the durable store (fjall under `DATA_DIR`): a bounded write queue that one
//!   writer thread drains and group-commits, and the read of everything at start.
//! - `hub`: a shard's registry, the one owner of its sessions, users and room membership; the
//!   local fan-out; events encoded once per wire format; what a room stream keeps
//!   (`stream.rs`); the `Backplane` trait it is given.
//! - `cluster`: the backplane implementations (`local.rs`: the shards, through lock-free
//!   inboxes; with `CLUSTER_REDIS_URL`, `local/` holds its cluster-mode half: streams,
//!   presence and room definitions through Redis), the directory they answer from, the room
//!   streams (`streams.rs`), the first answers of requests with idempotency keys
//!   (`idempotency.rs`), and the link to Redis (`redis/`: names, envelope, Lua scripts,
//!   subscriptions, presence, room records, shared idempotency keys, Socket.IO sockets kept
//!   for recovery, nodes' HTTP addresses).
//! - `node`: what a process's shards share, a shard's context, connection slots, hand-off of
//!   upgraded sockets, long-polling requests to their session's shard, the Socket.IO
//!   namespaces served and the sockets kept for recovery (in Redis in cluster mode),
//!   shutdown.
//! - `engineio`: Engine.IO v4 sessions on a shard (long-polling, WebSocket, the upgrade),
//!   generic over the `Handler` above them; it knows nothing of Socket.IO.
//! - `commands`: one file per client command, each an `apply`, dispatched in one place.
//! - `socketio`: Socket.IO v5 as an Engine.IO handler: `CONNECT` and its token, namespace
//!   sockets, events run as commands (built-ins and the event map), recovery, the client's
//!   answers to private messages asking for acks, and the
//!   protocol suite's reference server (`conformance.rs`).
//! - `http`: hyper, one route table, the upgrade handshake, the REST API, metrics, and in
//!   cluster mode the forwarding of Engine.IO requests to their session's node (`forward.rs`).
//! - `runtime`: start and stop, shard threads and loops, the connection machine, the
//!   Engine.IO applications (`engineio.rs`), the sweep.
//! - `testing` (feature `testing` only): fuzz and bench entry points, fault injection.
//!
//! The data path: socket → `transport::ws::wire` → `runtime::connection` (the session's
//! turn) → `commands` → `hub` → `Backplane` (a room event takes its stream's next offset) →
//! every shard's inbox (and the store's write queue) → its hub's local fan-out → each session's outbox → `transport`
//! writes it.

mod clock;
mod cluster;
mod commands;
pub mod config;
mod engineio;
mod http;
mod hub;
mod node;
mod panic;
mod queue;
mod reactor;
mod runtime;
mod session;
mod socketio;
mod stats;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

pub use config::Config;
pub use http::routes::ROUTES;
pub use runtime::{start, ServerHandle, StartError};
pub use session::auth::{mint, mint_with_exp, KeyError, MintOptions};
pub use stats::{ShardStats, StatsSnapshot};
pub use store::StoreError;
