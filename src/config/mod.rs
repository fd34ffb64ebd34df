//! Every configuration knob, in one place: each is a CLI flag and an environment variable,
//! and may be set in the configuration file ([`file`]) by its flag's name; the file also holds
//! the Socket.IO event map ([`socketio`]).

mod file;
pub mod socketio;

pub use file::{parse, try_parse_from, FileError};
pub use socketio::{EventMapping, MappedCommand, SocketIoFile};

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// wsgate: a per-core sharded real-time WebSocket gateway.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// A subcommand; without one, the server runs.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// Server settings.
    #[command(flatten)]
    pub config: Config,
}

/// wsgate's subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Mint an HS256 token signed with JWT_SECRET, for development and tests.
    Token(TokenArgs),
}

/// Arguments of `wsgate token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// Lifetime, e.g. `30s`, `15m`, `1h`, `7d`. Default: 1h.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub exp: Duration,
    /// Optional session id (`sid` claim).
    #[arg(long)]
    pub sid: Option<String>,
    /// Optional audience (`aud` claim).
    #[arg(long)]
    pub aud: Option<String>,
    /// Optional issuer (`iss` claim).
    #[arg(long)]
    pub iss: Option<String>,
    /// Optional room patterns (`rooms` claim), comma-separated, e.g. `team:42:*,lobby`: the
    /// only rooms the user may join.
    #[arg(long)]
    pub rooms: Option<String>,
}

/// JWT signature algorithms wsgate accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (`JWT_SECRET`).
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 SHA-256 with a public key (`JWT_PUBLIC_KEY_FILE`).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 SHA-256 with a public key (`JWT_PUBLIC_KEY_FILE`).
    #[value(name = "ES256")]
    Es256,
}

/// A configured secret (the JWT secret, the API keys). Its `Debug` never shows the value, so
/// nothing that prints a [`Config`] (a log line, a panic message) can leak it.
#[derive(Clone)]
pub struct Secret(String);

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the server writes its log (to standard output; the level is `RUST_LOG`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when standard output is a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log shippers.
    Json,
}

/// Where chat state is kept (`STORE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The embedded store under `DATA_DIR`.
    Disk,
    /// Nothing on disk; nothing survives a restart.
    Memory,
}

/// When the store fsyncs (`STORE_FSYNC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before acknowledging: a reply waits for its message's fsync (group-committed).
    Always,
    /// At most this long after a write.
    Every(Duration),
    /// Never explicitly: the operating system writes back when it likes.
    Never,
}

/// Parses `always`, `never`, or a duration (see [`parse_duration`]).
pub fn parse_fsync(s: &str) -> Result<Fsync, String> {
    match s.trim() {
        "always" => Ok(Fsync::Always),
        "never" => Ok(Fsync::Never),
        other => match parse_duration(other)? {
            d if d.is_zero() => Ok(Fsync::Always),
            d => Ok(Fsync::Every(d)),
        },
    }
}

/// The server's configuration. Each field's doc ends with its default.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to listen on. Default: 0.0.0.0.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// TCP port for WebSocket and HTTP; 0 picks a free port. Default: 3000.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Log format: `text`, or `json` (one object per line). Default: text.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Number of shards (threads, each with its own connections); 0 means one per core. Default: 0.
    #[arg(long, env = "SHARDS", default_value_t = 0)]
    pub shards: usize,

    /// Shared secret for HS256 tokens. Without it (and without a public key) the server runs in
    /// development mode with a random secret. Default: none.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// PEM public key file for RS256/ES256 tokens. Default: none.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Token algorithm: HS256 with JWT_SECRET; RS256 or ES256 with JWT_PUBLIC_KEY_FILE.
    /// Default: HS256, or RS256 when only a public key file is given.
    #[arg(long, env = "JWT_ALGORITHM")]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// Required `aud` claim, if set. Default: not checked.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim, if set. Default: not checked.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds. Default: 30.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// API keys for the REST API, comma-separated (several, so keys can be rotated). Without
    /// any, the server makes a development key and prints it. Default: none.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,
    /// Largest REST request body, in bytes; larger bodies get 413. Default: 4194304.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Origin allowed to call the REST API from a browser (CORS), e.g. `https://app.example` or
    /// `*`. Default: none (CORS off).
    #[arg(long, env = "CORS_ORIGIN")]
    pub cors_origin: Option<String>,
    /// Require an API key for `GET /metrics`. Default: false.
    #[arg(long, env = "METRICS_REQUIRE_API_KEY", default_value_t = false)]
    pub metrics_require_api_key: bool,
    /// Serve `GET /echo`: a WebSocket with no auth and no commands that sends every message
    /// back unchanged, through the same reader, queue and limits as `/ws`. For conformance
    /// testing (the Autobahn test suite); leave it off in production. Default: false.
    #[arg(long, env = "ECHO", default_value_t = false)]
    pub echo: bool,
    /// Path of the Engine.IO endpoint (long-polling and WebSocket, `?EIO=4&transport=…`),
    /// matched exactly, with its trailing slash (one is added if missing). Served with the
    /// Engine.IO echo while ECHO=true. Default: /socket.io/.
    #[arg(long, env = "ENGINEIO_PATH", default_value = "/socket.io/")]
    pub engineio_path: String,
    /// Interval between the server's Engine.IO pings (`2`), sent whatever the traffic, as the
    /// open packet's `pingInterval` says. Default: 25s.
    #[arg(long, env = "ENGINEIO_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub engineio_ping_interval: Duration,
    /// Time after an Engine.IO ping within which the client's pong (`3`) must arrive, or the
    /// session is closed (`pingTimeout`). Default: 20s.
    #[arg(long, env = "ENGINEIO_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub engineio_ping_timeout: Duration,
    /// Largest Engine.IO long-polling `POST` body and WebSocket message, in bytes (past it: 413
    /// or close 1009, and the session is closed); also the most bytes of packets in one
    /// long-poll response (`maxPayload`). Default: 1000000.
    #[arg(long, env = "ENGINEIO_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub engineio_max_payload: usize,
    /// Serve Socket.IO v4 clients (`socket.io-client`): Socket.IO v5 over Engine.IO at
    /// ENGINEIO_PATH with the default parser, and at SOCKETIO_MSGPACK_PATH with
    /// socket.io-msgpack-parser. Off, ENGINEIO_PATH serves the Engine.IO echo when ECHO=true.
    /// Default: true.
    #[arg(long, env = "SOCKETIO", default_value_t = true, action = clap::ArgAction::Set)]
    pub socketio: bool,
    /// Path of the Socket.IO endpoint for clients that use socket.io-msgpack-parser (a client
    /// does not announce its parser: it is given this path, `io(url, { path, parser })`).
    /// Default: /socket.io-msgpack/.
    #[arg(
        long,
        env = "SOCKETIO_MSGPACK_PATH",
        default_value = "/socket.io-msgpack/"
    )]
    pub socketio_msgpack_path: String,
    /// The Socket.IO namespaces clients may connect to, comma-separated: names (`/chat`), or
    /// prefixes ending in `*` (`/team-*`); a `CONNECT` to any other is refused with
    /// `Invalid namespace`. Default: /.
    #[arg(long, env = "SOCKETIO_NAMESPACES", default_value = "/")]
    pub socketio_namespaces: String,
    /// The event a Socket.IO socket is sent an error on when no ack callback waits for it
    /// (seed 001 listens on `error`, seed 004 on `system:error`), with wsgate's error
    /// (`{"type":"error","code","message"}`) as its data. Default: error.
    #[arg(long, env = "SOCKETIO_ERROR_EVENT", default_value = "error")]
    pub socketio_error_event: String,
    /// Time an Engine.IO session serving Socket.IO has to connect its first namespace
    /// (socket.io's `connectTimeout`); past it the session is closed (4001 `connect timeout`
    /// on WebSocket, `1` to a long-poll). `0s` waits forever. Default: 45s.
    #[arg(long, env = "SOCKETIO_CONNECT_TIMEOUT", default_value = "45s", value_parser = parse_duration)]
    pub socketio_connect_timeout: Duration,
    /// Socket.IO connection state recovery (socket.io's `maxDisconnectionDuration`): a socket
    /// whose connection goes away is kept this long; its client reconnecting with the socket's
    /// `pid` and last offset gets it back (`socket.recovered`), with the room events it missed
    /// replayed first. Room events carry their offset as a last argument (`"<offset>.<tag>"`).
    /// `0s` turns it off. Default: 2m.
    #[arg(long, env = "SOCKETIO_RECOVERY", default_value = "2m", value_parser = parse_duration)]
    pub socketio_recovery: Duration,
    /// Every private message (a user stream's: `send`, a REST push to users) sent to a
    /// Socket.IO socket asks the client for an ack (`socket.on(event, (data, ack) => …)`); the
    /// client calling `ack()` acks its user's stream up to that message, as a native `ack`
    /// does, and a message not acked comes again on the user's next connection
    /// (at-least-once). Delivery to such a socket no longer counts as the ack. A socket
    /// remembers its last USER_STREAM_SIZE asks. Default: false (at most once, unless the
    /// client sends `wsgate:ack`).
    #[arg(long, env = "SOCKETIO_PRIVATE_ACKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub socketio_private_acks: bool,
    /// Serve, at ENGINEIO_PATH (and SOCKETIO_MSGPACK_PATH), the reference server that the
    /// Socket.IO protocol's own test suite expects instead of Socket.IO: namespaces `/` and
    /// `/custom` with no auth, an `auth` event sent back with the `CONNECT` payload, `message`
    /// answered with `message-back`, `message-with-ack` acked with its arguments, and a session
    /// that sends no `CONNECT` within 1 s closed (see conformance/socketio/run.sh). Refused
    /// with SOCKETIO=false and ECHO=true (the Engine.IO echo at the same path); never in
    /// production. Default: false.
    #[arg(long, env = "SOCKETIO_CONFORMANCE", default_value_t = false)]
    pub socketio_conformance: bool,
    /// A TOML configuration file: any setting by its flag's name (`port = 3000`,
    /// `socketio-namespaces = ["/", "/chat"]`), overridden by flags and environment variables;
    /// and the Socket.IO event map (`[socketio]`, see `examples/`). Default: none.
    #[arg(long, env = "CONFIG")]
    pub config: Option<PathBuf>,
    /// The configuration file's `[socketio]` table (empty without a file).
    #[arg(skip)]
    pub socketio_file: SocketIoFile,
    /// Refuse handshakes that carry no token (HTTP 401 `auth.required`) instead of waiting for
    /// an `auth` command. Default: false.
    #[arg(long, env = "REQUIRE_HANDSHAKE_TOKEN", default_value_t = false)]
    pub require_handshake_token: bool,
    /// Close a connection (4004) once its token expires (`exp` plus JWT_LEEWAY_SECS) unless the
    /// client sent a fresher token for the same user with `auth`; `false` keeps connections
    /// open past `exp` (the token is then only checked when the connection authenticates).
    /// Default: true.
    #[arg(long, env = "CLOSE_ON_TOKEN_EXPIRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub close_on_token_expiry: bool,
    /// Time a connection without a handshake token has to send `auth`. Default: 10s.
    #[arg(long, env = "AUTH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub auth_timeout: Duration,

    /// Interval between server pings. Default: 25s.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Time after a ping within which a pong (or any frame) must arrive. Default: 20s.
    #[arg(long, env = "HEARTBEAT_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,

    /// Largest message accepted (one frame, or fragments added up), in bytes. Default: 1048576.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Bound on one connection's queued outbound bytes; past it the connection is closed as a
    /// slow consumer (4002). Each queued frame also counts 64 bytes of bookkeeping. Default: 4194304.
    #[arg(long, env = "MAX_OUTBOUND_BYTES", default_value_t = 4 << 20)]
    pub max_outbound_bytes: usize,
    /// Sustained commands per second per connection (token bucket). Default: 100.
    #[arg(long, env = "RATE_PER_SEC", default_value_t = 100)]
    pub rate_per_sec: u32,
    /// Commands allowed in a burst above the sustained rate. Default: 200.
    #[arg(long, env = "RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,
    /// Sustained ephemeral publishes (`"ephemeral": true`: typing and other transient state)
    /// per second per connection: a token bucket of their own, taken on top of the command
    /// rate. Over it the publish is refused with `rate.limited` and nothing is delivered.
    /// Default: 10.
    #[arg(long, env = "EPHEMERAL_RATE_PER_SEC", default_value_t = 10)]
    pub ephemeral_rate_per_sec: u32,
    /// Ephemeral publishes allowed in a burst above their sustained rate. Default: 20.
    #[arg(long, env = "EPHEMERAL_RATE_BURST", default_value_t = 20)]
    pub ephemeral_rate_burst: u32,
    /// Most rooms one connection may be in. Default: 100.
    #[arg(long, env = "MAX_ROOMS_PER_CONNECTION", default_value_t = 100)]
    pub max_rooms_per_connection: u32,
    /// Most rooms on the server (rooms exist while they have members). Default: 100000.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 100_000)]
    pub max_rooms: usize,
    /// Refuse a `join` of a room that does not exist (`room.not_found`) instead of making it:
    /// rooms then come only from `create` and `POST /api/v1/rooms`. Default: false.
    #[arg(long, env = "ROOMS_REQUIRE_CREATE", default_value_t = false)]
    pub rooms_require_create: bool,
    /// Most rooms one user may have created with `create` and not yet seen closed (by
    /// `DELETE /api/v1/rooms/{roomId}`); past it `create` is refused with `room.limit`; 0:
    /// clients create no rooms. Default: 100.
    #[arg(long, env = "MAX_ROOMS_CREATED_PER_USER", default_value_t = 100)]
    pub max_rooms_created_per_user: u32,
    /// Messages each room's stream keeps for `history` and resume; 0 keeps none (events still
    /// carry offsets). Default: 100.
    #[arg(long, env = "ROOM_HISTORY_SIZE", default_value_t = 100)]
    pub room_history_size: usize,
    /// Bytes each room's stream keeps at most (payload and encoded frames); the oldest go
    /// first. Default: 65536.
    #[arg(long, env = "ROOM_HISTORY_BYTES", default_value_t = 64 * 1024)]
    pub room_history_bytes: usize,
    /// Age past which a room's messages are dropped from its stream; a stream that keeps
    /// nothing for this long is forgotten (its next use starts a new epoch). Default: 1h.
    #[arg(long, env = "ROOM_HISTORY_TTL", default_value = "1h", value_parser = parse_duration)]
    pub room_history_ttl: Duration,
    /// Where chat state is kept: `disk` (an embedded store under DATA_DIR: room definitions,
    /// room and user streams, acks and read markers survive a restart) or `memory` (nothing
    /// survives). Default: disk.
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Disk)]
    pub store: StoreKind,
    /// The store's directory, created on first start. Default: wsgate-data (in the working
    /// directory).
    #[arg(long, env = "DATA_DIR", default_value = "wsgate-data")]
    pub data_dir: PathBuf,
    /// When the store fsyncs what it wrote: a duration (every so often, group-committed; a
    /// crash loses at most that much of accepted messages), `always` (before a message is
    /// acknowledged: replies wait for it) or `never` (the OS decides). Default: 5ms.
    #[arg(long, env = "STORE_FSYNC", default_value = "5ms", value_parser = parse_fsync)]
    pub store_fsync: Fsync,
    /// Capacity of the store's write queue, in writes; a full queue makes writers wait
    /// (nothing is dropped). Default: 65536.
    #[arg(long, env = "STORE_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub store_queue_capacity: usize,
    /// How long the store's writer goes without a write before it flushes the store's write
    /// buffers (fjall's memtables, which hold a copy of everything written since their last
    /// flush) to disk, when they hold at least 1 MiB: an idle server keeps none of what it
    /// wrote in memory; it also drops what it knows of the streams it wrote (read back from
    /// the store when next written). 0 never does (a keyspace's buffer is flushed at 64 MiB;
    /// the writer keeps every stream it wrote). Default: 2s.
    #[arg(long, env = "STORE_IDLE_FLUSH", default_value = "2s", value_parser = parse_duration)]
    pub store_idle_flush: Duration,
    /// Private messages (`send`, REST pushes to users) each user's stream keeps until they
    /// are acknowledged: its mailbox for when the user is offline; 0 keeps none (offsets still
    /// count). Past it the oldest go (counted). Default: 100.
    #[arg(long, env = "USER_STREAM_SIZE", default_value_t = 100)]
    pub user_stream_size: usize,
    /// Bytes each user's stream keeps at most; the oldest go first. Default: 65536.
    #[arg(long, env = "USER_STREAM_BYTES", default_value_t = 64 * 1024)]
    pub user_stream_bytes: usize,
    /// Age past which an unacknowledged private message is dropped; a user stream that keeps
    /// nothing this long is forgotten (its next message starts a new epoch). Default: 7d.
    #[arg(long, env = "USER_STREAM_TTL", default_value = "7d", value_parser = parse_duration)]
    pub user_stream_ttl: Duration,
    /// Most user streams kept (users with messages waiting, or recently sent to); past it the
    /// one idle longest is forgotten. Default: 100000.
    #[arg(long, env = "MAX_USER_STREAMS", default_value_t = 100_000)]
    pub max_user_streams: usize,
    /// Cluster mode: the Redis every node shares, as a URL (`redis://host:port`, or
    /// `redis-cluster://host:port?node=host2:port2&node=…` for a Redis Cluster's seeds). Rooms'
    /// and users' streams then live in Redis, and events reach the nodes hosting their
    /// recipients (see docs/cluster.md). Default: none (one node, alone).
    #[arg(long, env = "CLUSTER_REDIS_URL")]
    pub cluster_redis_url: Option<String>,
    /// Prefix of every Redis key and channel of this deployment (several deployments may
    /// share one Redis). Default: wsgate.
    #[arg(long, env = "CLUSTER_PREFIX", default_value = "wsgate")]
    pub cluster_prefix: String,
    /// Commands toward Redis in flight at once, on this node; a publish or push past it is
    /// refused (`cluster.unavailable`, HTTP 503) instead of queued. Default: 10000.
    #[arg(long, env = "CLUSTER_BUFFER", default_value_t = 10_000)]
    pub cluster_buffer: usize,
    /// How long a command waits for Redis (while it reconnects, say) before what needed it
    /// is refused (`cluster.unavailable`, HTTP 503). Default: 2s.
    #[arg(long, env = "CLUSTER_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub cluster_timeout: Duration,
    /// Cluster mode: a node that has not beaten in Redis for this long counts as dead, and
    /// another node takes its presence out (its members leave, its users go offline). Each
    /// node beats every quarter of it. Default: 10s.
    #[arg(long, env = "CLUSTER_NODE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub cluster_node_timeout: Duration,
    /// Cluster mode: the `host:port` at which the other nodes reach this node's HTTP port, to
    /// forward the Engine.IO long-polling requests (and upgrades) of the sessions this node
    /// holds; published in Redis with the node's beat. Default: the listener's address, unless
    /// it is unspecified (`0.0.0.0`, `::`): then none, and no other node can forward to this
    /// one (its sessions need sticky sessions).
    #[arg(long, env = "CLUSTER_ADVERTISE_ADDR")]
    pub cluster_advertise_addr: Option<String>,
    /// Cluster mode: Engine.IO requests this node forwards to the nodes that hold their
    /// sessions at once (a held long-poll or an upgraded WebSocket counts until it ends); past
    /// it, answered 503 `{"code":4,"message":"Forbidden"}`. 0 forwards nothing (a request for
    /// another node's session gets `Session ID unknown`). Default: 10000.
    #[arg(long, env = "CLUSTER_FORWARD_MAX", default_value_t = 10_000)]
    pub cluster_forward_max: usize,
    /// Tell a room's members when a user marks it read (`read`): a `read` event with the
    /// user and the offset, not stored in the stream. Default: false.
    #[arg(long, env = "READ_RECEIPTS", default_value_t = false)]
    pub read_receipts: bool,
    /// Whether rooms announce `presence.join` / `presence.leave` to the members that ask for
    /// them (`join` with `presence: true`); a room created with `presence` over REST says for
    /// itself. Default: true.
    #[arg(long, env = "ROOM_PRESENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub room_presence: bool,
    /// How long a user whose last connection closed still counts as online: watchers get
    /// `user.offline` only if no connection came back within it (a reconnect within it is not
    /// announced); 0 announces at once. Default: 5s.
    #[arg(long, env = "PRESENCE_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub presence_grace: Duration,
    /// Most users one connection may watch (`watch`); a watch past it is refused with
    /// `watch.limit`. Default: 100.
    #[arg(long, env = "MAX_WATCHED_USERS", default_value_t = 100)]
    pub max_watched_users: u32,
    /// How long the first answer to a request with an idempotency key (a command's `idem`, a
    /// REST push's `Idempotency-Key` or batch item's `idempotencyKey`) is remembered: a retry
    /// within it gets that answer and does nothing again. Default: 5m.
    #[arg(long, env = "IDEMPOTENCY_WINDOW", default_value = "5m", value_parser = parse_duration)]
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered at once (clients' and REST's, each); past it the
    /// oldest is forgotten, so its retry would run again. Default: 100000.
    #[arg(long, env = "IDEMPOTENCY_MAX_KEYS", default_value_t = 100_000)]
    pub idempotency_max_keys: usize,
    /// Most bytes the remembered keys and their answers hold (clients' and REST's, each); past
    /// it the oldest are forgotten. Default: 67108864.
    #[arg(long, env = "IDEMPOTENCY_MAX_BYTES", default_value_t = 64 << 20)]
    pub idempotency_max_bytes: usize,
    /// Most connections one user may hold at once. Default: 16.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub max_connections_per_user: u32,
    /// Most WebSocket connections on the server (long-polling sessions count too); at most
    /// 1073741824. Default: 1000000.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1_000_000)]
    pub max_connections: usize,
    /// Largest HTTP request head (request line and headers), in bytes. Default: 16384.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Most HTTP request headers. Default: 64.
    #[arg(long, env = "MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,
    /// Time a client has to send its complete HTTP request head, and that a keep-alive HTTP
    /// connection may wait idle for its next request. Default: 10s.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a REST request's complete body, from the end of its head
    /// (then 408 `body.timeout` and the connection is closed). Default: 10s.
    #[arg(long, env = "BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Capacity of each shard's inbox of cross-shard deliveries, in messages; a full inbox makes
    /// senders wait (nothing is dropped). Default: 65536.
    #[arg(long, env = "SHARD_INBOX_CAPACITY", default_value_t = 65_536)]
    pub shard_inbox_capacity: usize,
    /// Deadline for a graceful shutdown (flush and close everyone with 1001). Default: 10s.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Fault injection for the panic-containment tests; no flag or variable sets it, and it
    /// exists only with the `testing` feature (never in a release binary).
    #[cfg(feature = "testing")]
    #[arg(skip)]
    pub faults: crate::panic::Faults,
}

impl Default for Config {
    fn default() -> Self {
        Cli::parse_from(["wsgate"]).config
    }
}

impl Config {
    /// A configuration for tests: all defaults, no environment read, port 0, loopback. With
    /// the `testing` feature only.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests() -> Self {
        Config::for_tests_with(&[])
    }

    /// [`Config::for_tests`] with more flags (`["--config", "examples/seed-004.toml"]`).
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests_with(args: &[&str]) -> Self {
        let base = ["wsgate", "--port", "0", "--host", "127.0.0.1"];
        let mut config = file::try_parse_from(base.iter().chain(args).copied())
            .map(|cli| cli.config)
            .unwrap_or_else(|e| panic!("the test config must parse: {e}"));
        // Tests must not depend on the environment of the machine running them.
        config.jwt_secret = None;
        config.jwt_public_key_file = None;
        config.jwt_algorithm = None;
        config.jwt_audience = None;
        config.jwt_issuer = None;
        config.api_keys = None;
        config.cors_origin = None;
        config.echo = false;
        config.cluster_redis_url = None;
        // Tests keep no state on disk unless they ask for it (with their own DATA_DIR).
        config.store = StoreKind::Memory;
        config
    }

    /// The Engine.IO endpoint's path, with its trailing slash.
    pub fn engineio_path(&self) -> std::borrow::Cow<'_, str> {
        with_trailing_slash(&self.engineio_path)
    }

    /// The Socket.IO namespaces served (`SOCKETIO_NAMESPACES`), names and `*` prefixes.
    pub fn socketio_namespace_list(&self) -> Vec<&str> {
        self.socketio_namespaces
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The Socket.IO msgpack-parser endpoint's path, with its trailing slash.
    pub fn socketio_msgpack_path(&self) -> std::borrow::Cow<'_, str> {
        with_trailing_slash(&self.socketio_msgpack_path)
    }

    /// The number of shards to run: `shards`, or one per core.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The configured API keys (empty entries dropped).
    pub fn api_key_list(&self) -> Vec<String> {
        self.api_keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks the relations between knobs that clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_outbound_bytes < 2 * self.max_message_bytes {
            return Err(ConfigError::OutboundBelowTwoMessages {
                outbound: self.max_outbound_bytes,
                message: self.max_message_bytes,
            });
        }
        if self.rate_per_sec == 0
            || self.rate_burst == 0
            || self.ephemeral_rate_per_sec == 0
            || self.ephemeral_rate_burst == 0
        {
            return Err(ConfigError::ZeroRate);
        }
        if self.heartbeat_interval.is_zero()
            || self.heartbeat_timeout.is_zero()
            || self.engineio_ping_interval.is_zero()
            || self.engineio_ping_timeout.is_zero()
        {
            return Err(ConfigError::ZeroHeartbeat);
        }
        // The Engine.IO echo and the Socket.IO conformance mode send each message back: it
        // must fit the outbox twice.
        let echoes = (self.echo && !self.socketio) || self.socketio_conformance;
        if !self.engineio_path.starts_with('/')
            || self.engineio_max_payload == 0
            || (echoes && self.max_outbound_bytes < 2 * self.engineio_max_payload)
        {
            return Err(ConfigError::EngineIo);
        }
        if let Some(url) = &self.cluster_redis_url {
            if self.cluster_buffer == 0
                || self.cluster_timeout.is_zero()
                || self.cluster_node_timeout.is_zero()
                || self.cluster_prefix.is_empty()
                || !self
                    .cluster_advertise_addr
                    .as_deref()
                    .is_none_or(is_host_port)
                || fred::prelude::Config::from_url(url).is_err()
            {
                return Err(ConfigError::Cluster);
            }
        }
        if !self.socketio_msgpack_path.starts_with('/')
            || self.socketio_msgpack_path() == self.engineio_path()
            || self.socketio_namespace_list().is_empty()
            || !self
                .socketio_namespace_list()
                .iter()
                .all(|n| n.starts_with('/') && !n.contains(char::is_whitespace))
        {
            return Err(ConfigError::SocketIo);
        }
        if self.socketio_conformance && self.echo && !self.socketio {
            return Err(ConfigError::ConformanceWithEcho);
        }
        if self.shard_count() > 64 {
            return Err(ConfigError::TooManyShards);
        }
        if self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::TooManyConnections);
        }
        if self.api_key_list().iter().any(|k| k.len() < 8) {
            return Err(ConfigError::ShortApiKey);
        }
        if self.shard_inbox_capacity == 0 || self.store_queue_capacity == 0 {
            return Err(ConfigError::ZeroInbox);
        }
        if self.idempotency_max_keys == 0 || self.idempotency_max_bytes == 0 {
            return Err(ConfigError::ZeroIdempotency);
        }
        Ok(())
    }
}

/// The largest `MAX_CONNECTIONS`: an Engine.IO session id names its session's slot in 30 bits.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 30;

/// A relation between knobs that does not hold (see [`Config::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `CLUSTER_REDIS_URL` is not a Redis URL, `CLUSTER_BUFFER`, `CLUSTER_TIMEOUT` or
    /// `CLUSTER_PREFIX` is zero or empty, or `CLUSTER_ADVERTISE_ADDR` is not a `host:port`.
    #[error("CLUSTER_REDIS_URL must be a redis:// or redis-cluster:// URL, CLUSTER_BUFFER, CLUSTER_TIMEOUT, CLUSTER_NODE_TIMEOUT and CLUSTER_PREFIX non-zero, and CLUSTER_ADVERTISE_ADDR a host:port")]
    Cluster,
    /// The outbound bound cannot hold two messages of the largest size.
    #[error(
        "MAX_OUTBOUND_BYTES ({outbound}) must be at least twice MAX_MESSAGE_BYTES ({message})"
    )]
    OutboundBelowTwoMessages {
        /// `MAX_OUTBOUND_BYTES`.
        outbound: usize,
        /// `MAX_MESSAGE_BYTES`.
        message: usize,
    },
    /// A rate of zero.
    #[error(
        "RATE_PER_SEC, RATE_BURST, EPHEMERAL_RATE_PER_SEC and EPHEMERAL_RATE_BURST must be positive"
    )]
    ZeroRate,
    /// A heartbeat of zero.
    #[error("HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, ENGINEIO_PING_INTERVAL and ENGINEIO_PING_TIMEOUT must be positive")]
    ZeroHeartbeat,
    /// An Engine.IO path that is not absolute, or a payload bound of zero or above half the
    /// outbound bound.
    #[error(
        "ENGINEIO_PATH must start with /, and ENGINEIO_MAX_PAYLOAD must be positive and, for the Engine.IO echo and SOCKETIO_CONFORMANCE, at most half MAX_OUTBOUND_BYTES"
    )]
    EngineIo,
    /// `SOCKETIO_MSGPACK_PATH` that does not start with `/` or is ENGINEIO_PATH, or a
    /// `SOCKETIO_NAMESPACES` item that does not start with `/`.
    #[error("SOCKETIO_MSGPACK_PATH must start with / and differ from ENGINEIO_PATH; each of SOCKETIO_NAMESPACES must start with /")]
    SocketIo,
    /// `SOCKETIO_CONFORMANCE` and the Engine.IO echo, which would serve the same path.
    #[error("SOCKETIO_CONFORMANCE cannot run with the Engine.IO echo (SOCKETIO=false with ECHO=true): both serve ENGINEIO_PATH")]
    ConformanceWithEcho,
    /// More shards than connection ids can tell apart.
    #[error("at most 64 shards")]
    TooManyShards,
    /// More connections than an Engine.IO session id can name the slot of.
    #[error("MAX_CONNECTIONS: at most 1073741824")]
    TooManyConnections,
    /// An API key too short to be a secret.
    #[error("API_KEYS: every key must be at least 8 characters")]
    ShortApiKey,
    /// An inbox or write queue that can hold nothing.
    #[error("SHARD_INBOX_CAPACITY and STORE_QUEUE_CAPACITY must be positive")]
    ZeroInbox,
    /// An idempotency store that can remember nothing.
    #[error("IDEMPOTENCY_MAX_KEYS and IDEMPOTENCY_MAX_BYTES must be positive")]
    ZeroIdempotency,
}

/// Parses `250ms`, `30s`, `15m`, `1h`, `7d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_millis(ms))
}

/// Whether `s` is a `host:port` (a name or an address, a non-zero port; IPv6 in brackets).
fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// `path` ending with one `/` (added if missing).
fn with_trailing_slash(path: &str) -> std::borrow::Cow<'_, str> {
    if path.ends_with('/') {
        path.into()
    } else {
        format!("{path}/").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advertised_address_is_a_host_and_a_port() {
        assert!(is_host_port("10.0.0.11:3000"));
        assert!(is_host_port("node-1.wsgate:3000"));
        assert!(is_host_port("[::1]:3000"));
        for bad in ["10.0.0.11", ":3000", "node:0", "node:port", "node:70000"] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!(parse_fsync("always"), Ok(Fsync::Always));
        assert_eq!(parse_fsync("never"), Ok(Fsync::Never));
        assert_eq!(
            parse_fsync("5ms"),
            Ok(Fsync::Every(Duration::from_millis(5)))
        );
        assert_eq!(parse_fsync("0"), Ok(Fsync::Always));
        assert!(parse_fsync("often").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::for_tests();
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(25));
        assert_eq!(c.store_idle_flush, Duration::from_secs(2));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn connections_past_what_a_session_id_can_name_are_refused() {
        let mut c = Config::for_tests();
        c.max_connections = MAX_CONNECTIONS_LIMIT;
        assert!(c.validate().is_ok());
        c.max_connections = MAX_CONNECTIONS_LIMIT + 1;
        assert_eq!(c.validate(), Err(ConfigError::TooManyConnections));
    }

    #[test]
    fn ephemeral_rates_and_idempotency_stores_must_be_positive() {
        let mut c = Config::for_tests();
        c.ephemeral_rate_burst = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroRate));
        let mut c = Config::for_tests();
        c.idempotency_max_bytes = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroIdempotency));
    }

    #[test]
    fn engineio_knobs_are_checked() {
        let mut c = Config::for_tests();
        c.engineio_path = "socket.io".into();
        assert_eq!(c.validate(), Err(ConfigError::EngineIo));
        let mut c = Config::for_tests();
        c.engineio_max_payload = c.max_outbound_bytes;
        assert_eq!(c.validate(), Ok(()), "Socket.IO sends nothing back");
        (c.echo, c.socketio) = (true, false);
        assert_eq!(c.validate(), Err(ConfigError::EngineIo), "the echo would");
        (c.echo, c.socketio, c.socketio_conformance) = (false, true, true);
        assert_eq!(
            c.validate(),
            Err(ConfigError::EngineIo),
            "message-back would"
        );
        let mut c = Config::for_tests();
        c.socketio_msgpack_path = c.engineio_path.clone();
        assert_eq!(c.validate(), Err(ConfigError::SocketIo));
        let mut c = Config::for_tests();
        c.socketio_namespaces = "chat".into();
        assert_eq!(c.validate(), Err(ConfigError::SocketIo));
        let mut c = Config::for_tests();
        c.engineio_path = "/engine.io".into();
        assert_eq!(c.engineio_path(), "/engine.io/");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn the_socketio_conformance_mode_is_refused_with_the_engineio_echo() {
        let mut c = Config::for_tests();
        c.socketio_conformance = true;
        assert_eq!(c.validate(), Ok(()));
        c.echo = true;
        assert_eq!(
            c.validate(),
            Ok(()),
            "Socket.IO's path: ECHO serves /echo only"
        );
        c.socketio = false;
        assert_eq!(c.validate(), Err(ConfigError::ConformanceWithEcho));
        c.echo = false;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn outbound_bound_must_cover_two_messages() {
        let mut c = Config::for_tests();
        c.max_outbound_bytes = c.max_message_bytes;
        assert!(c.validate().is_err());
        assert_eq!(
            c.validate(),
            Err(ConfigError::OutboundBelowTwoMessages {
                outbound: 1 << 20,
                message: 1 << 20
            })
        );
    }
}
