//! What a run does, as plain data: the coordinator splits a [`RunPlan`] into one [`WorkerPlan`]
//! per worker and sends it (as JSON, to a worker process) before the worker starts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the server is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// The resolved server address.
    pub addr: SocketAddr,
    /// The `Host` header (`host:port` as the user wrote it).
    pub host: String,
    /// The path and the query the user gave (without the token and format parameters); with
    /// Socket.IO, the Engine.IO path with `EIO=4&transport=websocket` (or `=polling`).
    pub path: String,
}

/// How connections are dealt over several servers (`--url` given more than once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    /// Connection `i` (global index) goes to server `i % N`.
    #[default]
    Conn,
    /// A connection in room `r` goes to server `r % N`: every member of a room on one server
    /// (scenarios without rooms, `push` and `connect` without `--rooms`, deal by connection).
    Room,
}

/// The wire encoding, as a CLI value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    /// JSON in text frames.
    Json,
    /// MessagePack in binary frames.
    Msgpack,
}

impl WireFormat {
    /// The protocol crate's format.
    pub fn format(self) -> wsgate_protocol::Format {
        match self {
            WireFormat::Json => wsgate_protocol::Format::Json,
            WireFormat::Msgpack => wsgate_protocol::Format::MsgPack,
        }
    }

    /// The `?format=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Msgpack => "msgpack",
        }
    }
}

/// The protocol the connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// wsgate's own protocol: the token and format in the upgrade's query, then requests and
    /// server messages, one per frame.
    Native,
    /// Socket.IO v5 over Engine.IO v4's WebSocket transport: the open packet, pings answered,
    /// a `CONNECT` with the token in its auth, then wsgate's built-in events (`wsgate:join`,
    /// `wsgate:publish`) answered through acks. The wire format is the Socket.IO parser's
    /// (`json`: the default parser; `msgpack`: socket.io-msgpack-parser).
    #[value(name = "socketio")]
    #[serde(rename = "socketio")]
    SocketIo,
}

impl Protocol {
    /// The protocol's name in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::SocketIo => "socketio",
        }
    }
}

/// The Engine.IO transport of Socket.IO connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A WebSocket from the start (`transport=websocket`): one TCP connection, one packet per
    /// frame.
    #[default]
    Websocket,
    /// HTTP long-polling (`transport=polling`), never upgraded: the handshake `GET`, then one
    /// long-poll `GET` outstanding at a time on one keep-alive connection, and the client's
    /// packets (joined by `\x1e`, binary ones as `b<base64>`) in one `POST` at a time on a
    /// second one: two TCP connections per session.
    Polling,
}

impl Transport {
    /// The transport's name in the summary and in the Engine.IO query.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Polling => "polling",
        }
    }

    /// TCP connections (file descriptors) each session holds.
    pub fn sockets(self) -> u64 {
        match self {
            Transport::Websocket => 1,
            Transport::Polling => 2,
        }
    }
}

/// How received events are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Every message goes through `wsgate_protocol::decode_server_message`.
    Full,
    /// Events whose `data` is the loadgen's own fixed layout are read in place (the `data` bytes
    /// end the message); one event in 64, and every other message, is fully decoded and checked.
    Fast,
}

/// How fan-out publishers pace themselves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum PublishMode {
    /// A fixed total rate of publishes per second (over all publishers).
    Rate {
        /// Publishes per second, all publishers together.
        per_sec: f64,
    },
    /// Each publisher keeps `window` publishes in flight; one completes when every member of
    /// the room has received it (all members must be in one worker).
    Closed {
        /// Publishes in flight per publisher.
        window: u32,
    },
    /// Every `interval_ms`, each publisher sends `size` publishes back to back.
    Burst {
        /// Publishes per burst per publisher.
        size: u32,
        /// Time between burst starts.
        interval_ms: u64,
    },
}

/// What the connections do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "scenario")]
pub enum Scenario {
    /// Connect, authenticate (connection `i` joins room `i % rooms` when there are rooms),
    /// hold.
    Connect {
        /// Rooms (0: none).
        rooms: u32,
        /// Join with `presence: true`.
        presence: bool,
        /// Each connection sends its own user one private message once established.
        mailbox: bool,
    },
    /// Connections `0..publishers` publish; the rest subscribe, connection `i` to room
    /// `(i - publishers) % rooms`. Publisher `j` is in room `j % rooms`.
    Fanout {
        /// Publisher connections.
        publishers: u32,
        /// Rooms.
        rooms: u32,
        /// Pacing.
        mode: PublishMode,
        /// Size of the `data` value in bytes.
        payload: usize,
        /// Publish with `echo: true`.
        echo: bool,
    },
    /// Connections are users `u0..uN` that only receive; `senders` HTTP connections post
    /// `POST /api/v1/push/users` to random users at `rate` pushes per second (all together).
    Push {
        /// Pushes per second, all senders together.
        rate: f64,
        /// HTTP keep-alive connections (one thread each).
        senders: u32,
        /// Size of each push's `data` in bytes.
        payload: usize,
        /// The REST API key.
        api_key: String,
    },
    /// Every connection is a user in room `i % rooms` publishing at `rate_per_user`; `churn_per_sec`
    /// connections a second (all workers together) are dropped and reconnected.
    Chat {
        /// Rooms.
        rooms: u32,
        /// Publishes per second per user.
        rate_per_user: f64,
        /// Disconnect/reconnect cycles per second, all workers together.
        churn_per_sec: f64,
        /// Size of the `data` value in bytes.
        payload: usize,
    },
}

/// Settings shared by every scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Common {
    /// The servers (one or more): connections are dealt over them by `spread`.
    pub targets: Vec<Target>,
    /// Where publishers (fanout's first `publishers` connections) connect and where REST
    /// pushes are sent. `None`: publishers are dealt like every connection, pushes go to the
    /// first target.
    pub publish_target: Option<Target>,
    /// How connections are dealt over `targets`.
    pub spread: Spread,
    /// The protocol.
    pub protocol: Protocol,
    /// Wire encoding (with Socket.IO, its parser's).
    pub format: WireFormat,
    /// The Engine.IO transport (Socket.IO; native connections are WebSockets).
    pub transport: Transport,
    /// HS256 secret used to mint one token per user.
    pub jwt_secret: String,
    /// Source addresses to bind before connecting (empty: the kernel chooses).
    pub source_addrs: Vec<IpAddr>,
    /// New connections per second, all workers together.
    pub connect_rate: f64,
    /// Most handshakes in progress at once, per worker.
    pub max_pending: u32,
    /// A connection not authenticated (and joined) after this long has failed.
    pub connect_timeout: Duration,
    /// How long the measured phase lasts (the hold, for `connect`).
    pub duration: Duration,
    /// Longest wait for in-flight deliveries after the measured phase.
    pub drain: Duration,
    /// How events are decoded.
    pub decode: DecodeMode,
}

impl Common {
    /// Every server a connection may go to: `targets`, then the publish target if any. A
    /// connection's server is an index into this list ([`Common::server_of`]).
    pub fn servers(&self) -> Vec<Target> {
        let mut all = self.targets.clone();
        all.extend(self.publish_target.iter().cloned());
        all
    }

    /// The index in [`Common::servers`] of connection `global`'s server: the publish target
    /// for a publisher when there is one, else by `spread` (`room` is the connection's room,
    /// `None` in scenarios without rooms).
    pub fn server_of(&self, global: u64, room: Option<u32>, publisher: bool) -> usize {
        let n = self.targets.len().max(1) as u64;
        if publisher && self.publish_target.is_some() {
            return self.targets.len();
        }
        let key = match (self.spread, room) {
            (Spread::Room, Some(r)) => u64::from(r),
            _ => global,
        };
        (key % n) as usize
    }

    /// Where REST pushes go: the publish target, else the first target.
    pub fn rest_target(&self) -> &Target {
        self.publish_target.as_ref().unwrap_or(&self.targets[0])
    }
}

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPlan {
    /// Shared settings.
    pub common: Common,
    /// What the connections do.
    pub scenario: Scenario,
    /// Connections in all.
    pub connections: u64,
    /// Worker count (1: a thread in this process; more: child processes).
    pub workers: u32,
}

/// One worker's share of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Worker number.
    pub worker: u32,
    /// Workers in all.
    pub workers: u32,
    /// Shared settings (rates already divided by the worker count).
    pub common: Common,
    /// What the connections do.
    pub scenario: Scenario,
    /// Global index of this worker's first connection.
    pub first: u64,
    /// Connections this worker opens.
    pub count: u64,
    /// Connections in the whole run.
    pub total: u64,
}

impl RunPlan {
    /// Splits the run into contiguous, near-equal shares.
    pub fn split(&self) -> Vec<WorkerPlan> {
        let workers = u64::from(self.workers.max(1));
        let mut common = self.common.clone();
        common.connect_rate /= workers as f64;
        (0..workers)
            .map(|w| {
                let first = self.connections * w / workers;
                let end = self.connections * (w + 1) / workers;
                WorkerPlan {
                    worker: w as u32,
                    workers: workers as u32,
                    common: common.clone(),
                    scenario: self.scenario.clone(),
                    first,
                    count: end - first,
                    total: self.connections,
                }
            })
            .collect()
    }

    /// Members of each room once everyone has joined: `(subscribers, publishers)` per room.
    pub fn room_members(&self) -> Vec<(u64, u64)> {
        match self.scenario {
            Scenario::Connect { rooms, .. } => {
                // Everyone subscribes; nobody publishes.
                let k = u64::from(rooms);
                (0..k)
                    .map(|r| {
                        let members = self.connections / k + u64::from(r < self.connections % k);
                        (members, 0)
                    })
                    .collect()
            }
            Scenario::Push { .. } => Vec::new(),
            Scenario::Fanout {
                publishers, rooms, ..
            } => {
                let mut m = vec![(0u64, 0u64); rooms as usize];
                let subs = self.connections.saturating_sub(u64::from(publishers));
                for (r, slot) in m.iter_mut().enumerate() {
                    let r = r as u64;
                    let k = u64::from(rooms);
                    slot.0 = subs / k + u64::from(r < subs % k);
                    slot.1 = u64::from(publishers) / k + u64::from(r < u64::from(publishers) % k);
                }
                m
            }
            Scenario::Chat { rooms, .. } => {
                let k = u64::from(rooms);
                (0..k)
                    .map(|r| {
                        (
                            self.connections / k + u64::from(r < self.connections % k),
                            0,
                        )
                    })
                    .collect()
            }
        }
    }
}

/// Nanoseconds on the system-wide monotonic clock: comparable between processes on one host,
/// which is how a send time in a payload is read by another worker.
pub fn now_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}
