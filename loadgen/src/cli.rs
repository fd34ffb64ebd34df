//! The command line: one subcommand per scenario, the flags they share, and their translation
//! into a [`RunPlan`] (with the loopback-only target check).

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::{
    Common, DecodeMode, Protocol, PublishMode, RunPlan, Scenario, Spread, Target, Transport,
    WireFormat,
};

/// File descriptors a worker keeps free for everything that is not a connection.
const FD_HEADROOM: u64 = 2_000;

/// Connections one worker process may hold: its open-file hard limit less some headroom
/// (18,000 where the hard limit is 20,000).
pub fn max_per_worker() -> u64 {
    crate::sys::fd_limit()
        .saturating_sub(FD_HEADROOM)
        .max(1_000)
}

/// wsgate-loadgen: drive a wsgate server with many WebSocket connections and measure it.
#[derive(Debug, Parser)]
#[command(
    name = "wsgate-loadgen",
    version,
    after_help = "Exit status: 0 the run passed; 1 loss, connection failures, refused requests or \
                  (chat) offset gaps and duplicates above --max-loss (default 0), or a decode \
                  mismatch; 2 the run could not start or failed (bad arguments, a target off \
                  loopback without --allow-host, …)."
)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: ScenarioCmd,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum ScenarioCmd {
    /// Ramp to N authenticated connections at a rate, hold them, report connect rate, handshake
    /// latency, failures by cause and (with --server-pid) server memory per connection.
    Connect {
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
        /// Rooms the connections join, connection i room i % K (0: none).
        #[arg(long, default_value_t = 0)]
        rooms: u32,
        /// Join with `presence: true` (the room's member events; needs --rooms).
        #[arg(long)]
        presence: bool,
        /// Each connection sends its own user one private message once established, so
        /// that every user has a user stream (its mailbox) while the connections hold.
        #[arg(long)]
        mailbox: bool,
    },
    /// N subscribers across K rooms and P publishers; report deliveries/s, end-to-end latency
    /// and loss.
    Fanout {
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
        /// Publisher connections (connection numbers 0..P; subscribers follow).
        #[arg(long, default_value_t = 1)]
        publishers: u32,
        /// Rooms; subscriber i joins room i % K, publisher j room j % K.
        #[arg(long, default_value_t = 1)]
        rooms: u32,
        /// Publisher pacing.
        #[arg(long, value_enum, default_value_t = Mode::Rate)]
        mode: Mode,
        /// `rate` mode: publishes per second, all publishers together.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// `closed` mode: publishes in flight per publisher; one completes when every member of
        /// the room has received it (one worker only, so all arrivals are counted in one place).
        #[arg(long, default_value_t = 1)]
        window: u32,
        /// `burst` mode: publishes per burst per publisher.
        #[arg(long, default_value_t = 100)]
        burst: u32,
        /// `burst` mode: time between bursts, e.g. `1s`, `500ms`.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Size of each event's `data` in bytes (at least 60 for an exact size).
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Publish with `echo: true` (publishers receive their own events too).
        #[arg(long)]
        echo: bool,
    },
    /// Soak mix: users in rooms publishing at a per-user rate, with disconnect/reconnect churn;
    /// checks that each user's room offsets have no gap or duplicate across reconnects.
    ///
    /// Publishes are echoed, so each user receives its room's whole stream. A reconnected user
    /// rejoins with `since` (its epoch and last offset); replayed events come before the join's
    /// reply, live ones after. Reports the offsets checked, gaps (offsets missing), duplicates
    /// (offsets at or below the last one seen) and resumes answered `recovered: true` or
    /// `false` (false starts over from the reply's offset, and is not a gap).
    Chat {
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
        /// Rooms; user i is in room i % K.
        #[arg(long, default_value_t = 100)]
        rooms: u32,
        /// Publishes per second per user.
        #[arg(long, default_value_t = 0.2)]
        rate_per_user: f64,
        /// Disconnect/reconnect cycles per second (all users together).
        #[arg(long, default_value_t = 10.0)]
        churn: f64,
        /// Size of each event's `data` in bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// N receiving users; REST pushes (`POST /api/v1/push/users`) to random users at a fixed
    /// rate; report delivery latency, HTTP latency and loss (pushes answered 200 to users not
    /// named offline − received).
    Push {
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
        /// Pushes per second, all senders together.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// HTTP keep-alive connections sending pushes (a thread each).
        #[arg(long, default_value_t = 4)]
        senders: u32,
        /// Size of each push's `data` in bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// The server's REST API key (one of its API_KEYS).
        #[arg(long, env = "API_KEY", hide_env_values = true)]
        api_key: String,
    },
}

/// Publisher pacing (fanout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A fixed rate (`--rate`).
    Rate,
    /// Closed loop (`--window`).
    Closed,
    /// Bursts (`--burst` every `--interval`).
    Burst,
}

/// Flags every scenario takes.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// The server's WebSocket URL (ws:// only). With `--protocol socketio` only its host and
    /// port are used (the path is `--sio-path`). Several servers (cluster nodes): repeat the
    /// flag or give a comma list; connections are dealt over them by `--spread`.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws", value_delimiter = ',')]
    pub url: Vec<String>,
    /// With several `--url`s: `conn` deals connection i to URL i mod N; `room` sends every
    /// member of room r to URL r mod N (each room on one server; scenarios without rooms deal
    /// by connection).
    #[arg(long, value_enum, default_value_t = Spread::Conn)]
    pub spread: Spread,
    /// Where fanout's publishers connect and REST pushes (`push`) are sent, e.g. one node of a
    /// cluster while the receivers are on others (it need not be one of the `--url`s).
    /// Default: publishers are dealt like every connection, pushes go to the first `--url`.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Wire encoding (native protocol).
    #[arg(long, value_enum, default_value_t = WireFormat::Json)]
    pub format: WireFormat,
    /// The protocol: wsgate's `native` one, or `socketio` (Socket.IO v5 over Engine.IO v4
    /// WebSocket: pings answered, the token in the `CONNECT`'s auth, `wsgate:join` and
    /// `wsgate:publish` with acks; scenarios `connect`, `fanout` and `push`).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// Socket.IO: the Engine.IO path on the server (`?EIO=4&transport=websocket`, or
    /// `=polling`, is added).
    #[arg(long, default_value = "/socket.io/")]
    pub sio_path: String,
    /// Socket.IO: the Engine.IO transport, `websocket` (one WebSocket per connection from the
    /// start) or `polling` (HTTP long-polling, never upgraded: the handshake `GET`, one
    /// long-poll `GET` outstanding at a time, the client's packets `\x1e`-joined in one `POST`
    /// at a time, pings answered by `POST`; two TCP connections per session, so a worker
    /// holds half as many). Every socketio scenario runs over either.
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    pub sio_transport: Transport,
    /// Socket.IO: the parser, `json` (the default parser: text frames) or `msgpack`
    /// (socket.io-msgpack-parser: binary frames; the server serves it at its own path).
    #[arg(long, value_enum, default_value_t = WireFormat::Json)]
    pub sio_parser: WireFormat,
    /// HS256 secret to mint one token per user (the server's JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Connections in all.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub connections: u64,
    /// New connections per second during the ramp (all workers together).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// Most handshakes in progress at once per worker.
    #[arg(long, default_value_t = 1000)]
    pub max_pending: u32,
    /// A connection not ready after this long has failed (`timeout_*`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Length of the measured phase (the hold, for `connect`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Longest wait for in-flight deliveries after the measured phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Worker processes (0: one per (open-file hard limit − 2,000) connections, i.e. per 18,000
    /// here, half that over `--sio-transport polling`; 1: a thread in this process).
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// Source addresses to spread connections over: a list (`127.0.0.2,127.0.0.3`) or a count
    /// `N` (127.0.0.1 ..= 127.0.0.N). Each address has its own ~28k ephemeral ports.
    #[arg(long)]
    pub source_addrs: Option<String>,
    /// Hosts other than loopback that may be targeted (refused otherwise).
    #[arg(long)]
    pub allow_host: Vec<String>,
    /// Event decoding: `fast` reads the loadgen's own payload in place and fully decodes one
    /// event in 64 to check it; `full` decodes every message with wsgate-protocol.
    #[arg(long, value_enum, default_value_t = DecodeMode::Fast)]
    pub decode: DecodeMode,
    /// The server's pid: report its RSS per connection (from /proc/PID/status).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Exit 1 when loss (lost/expected), connection failures (failed/connections), refused
    /// requests (publishes answered with an error, pushes not answered 200: refused/sent) or,
    /// in chat, offset gaps and duplicates ((gaps + duplicates)/offsets checked) pass this
    /// fraction, or when a decoded event disagrees with its fast read.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Print the summary as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write a report: `.svg` (charts) or `.html` (charts and table).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `250ms`, `10s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("bad duration `{s}`"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `ws://host:port/path?query` and refuses targets off loopback unless allowed.
pub fn parse_target(url: &str, allow: &[String]) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("ws://") else {
        bail!("only ws:// URLs are supported (got `{url}`)");
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().context("bad port")?)
        }
        _ => (authority, 80),
    };
    let host_bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host_bare, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host_bare}"))?
        .next()
        .with_context(|| format!("{host_bare} has no address"))?;
    if !addr.ip().is_loopback() && !allow.iter().any(|a| a == host_bare) {
        bail!(
            "refusing target {host_bare} ({}): only loopback addresses, or hosts named with --allow-host",
            addr.ip()
        );
    }
    Ok(Target {
        addr,
        host: authority.to_string(),
        path: path.to_string(),
    })
}

/// Parses `--source-addrs`: a comma list, or a count N meaning 127.0.0.1 ..= 127.0.0.N.
pub fn parse_source_addrs(s: &str, allow_any: bool) -> anyhow::Result<Vec<IpAddr>> {
    if let Ok(n) = s.trim().parse::<u8>() {
        if n == 0 {
            bail!("--source-addrs count must be at least 1");
        }
        return Ok((1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect());
    }
    let addrs = s
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<IpAddr>()
                .with_context(|| format!("bad address `{a}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !allow_any && addrs.iter().any(|a| !a.is_loopback()) {
        bail!("source addresses must be loopback when the target is");
    }
    Ok(addrs)
}

/// Refuses what the Socket.IO contract has no event for: the chat soak (offsets, resumes),
/// presence and the private message of `connect --mailbox`.
fn check_socketio(scenario: &Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::Chat { .. } => {
            bail!("--protocol socketio runs connect, fanout and push, not chat")
        }
        Scenario::Connect { presence: true, .. } | Scenario::Connect { mailbox: true, .. } => {
            bail!("--presence and --mailbox are native only")
        }
        _ => Ok(()),
    }
}

impl CommonArgs {
    /// The shared settings and the run shape for `scenario`.
    pub fn plan(&self, scenario: Scenario) -> anyhow::Result<RunPlan> {
        let mut targets = self
            .url
            .iter()
            .map(|u| parse_target(u, &self.allow_host))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if targets.is_empty() {
            bail!("--url needs at least one URL");
        }
        let mut publish_target = self
            .publish_url
            .as_deref()
            .map(|u| parse_target(u, &self.allow_host))
            .transpose()?;
        let format = match self.protocol {
            Protocol::Native if self.sio_transport != Transport::Websocket => {
                bail!("--sio-transport polling needs --protocol socketio")
            }
            Protocol::Native => self.format,
            Protocol::SocketIo => {
                check_socketio(&scenario)?;
                if !self.sio_path.starts_with('/') || self.sio_path.contains('?') {
                    bail!("--sio-path must start with `/` and hold no query");
                }
                let path = format!(
                    "{}?EIO=4&transport={}",
                    self.sio_path,
                    self.sio_transport.as_str()
                );
                for t in targets.iter_mut().chain(publish_target.iter_mut()) {
                    t.path.clone_from(&path);
                }
                self.sio_parser
            }
        };
        let off_loopback = targets
            .iter()
            .chain(publish_target.iter())
            .any(|t| !t.addr.ip().is_loopback());
        let source_addrs = match &self.source_addrs {
            Some(s) => parse_source_addrs(s, off_loopback)?,
            None => Vec::new(),
        };
        let per_worker = max_per_worker() / self.sio_transport.sockets();
        let needed = self.connections.div_ceil(per_worker).max(1);
        let workers = match u64::from(self.workers) {
            0 => needed,
            w if w < needed => bail!(
                "{} connections need at least {needed} workers (at most {per_worker} each)",
                self.connections
            ),
            w => w,
        };
        Ok(RunPlan {
            common: Common {
                targets,
                publish_target,
                spread: self.spread,
                protocol: self.protocol,
                format,
                transport: self.sio_transport,
                jwt_secret: self.jwt_secret.clone(),
                source_addrs,
                connect_rate: self.connect_rate.max(1.0),
                max_pending: self.max_pending,
                connect_timeout: self.connect_timeout,
                duration: self.duration,
                drain: self.drain,
                decode: self.decode,
            },
            scenario,
            connections: self.connections,
            workers: u32::try_from(workers)?,
        })
    }
}

impl ScenarioCmd {
    /// The shared flags.
    pub fn common(&self) -> &CommonArgs {
        match self {
            ScenarioCmd::Connect { common, .. }
            | ScenarioCmd::Fanout { common, .. }
            | ScenarioCmd::Chat { common, .. }
            | ScenarioCmd::Push { common, .. } => common,
        }
    }

    /// The run plan.
    pub fn plan(&self) -> anyhow::Result<RunPlan> {
        let scenario = match *self {
            ScenarioCmd::Connect {
                rooms,
                presence,
                mailbox,
                ..
            } => {
                if presence && rooms == 0 {
                    anyhow::bail!("--presence needs --rooms");
                }
                Scenario::Connect {
                    rooms,
                    presence,
                    mailbox,
                }
            }
            ScenarioCmd::Fanout {
                publishers,
                rooms,
                mode,
                rate,
                window,
                burst,
                interval,
                payload,
                echo,
                ..
            } => {
                if u64::from(publishers) >= self.common().connections {
                    bail!("--publishers must be fewer than --connections");
                }
                Scenario::Fanout {
                    publishers,
                    rooms: rooms.max(1),
                    mode: match mode {
                        Mode::Rate => PublishMode::Rate { per_sec: rate },
                        Mode::Closed => PublishMode::Closed { window },
                        Mode::Burst => PublishMode::Burst {
                            size: burst,
                            interval_ms: interval.as_millis() as u64,
                        },
                    },
                    payload,
                    echo,
                }
            }
            ScenarioCmd::Chat {
                rooms,
                rate_per_user,
                churn,
                payload,
                ..
            } => Scenario::Chat {
                rooms: rooms.max(1),
                rate_per_user,
                churn_per_sec: churn,
                payload,
            },
            ScenarioCmd::Push {
                rate,
                senders,
                payload,
                ref api_key,
                ..
            } => Scenario::Push {
                rate,
                senders,
                payload,
                api_key: api_key.clone(),
            },
        };
        let plan = self.common().plan(scenario)?;
        if let Scenario::Fanout {
            mode: PublishMode::Closed { .. },
            ..
        } = plan.scenario
        {
            if plan.workers > 1 {
                bail!(
                    "closed-loop fanout counts arrivals in one worker: use --workers 1 and at \
                     most {} connections",
                    max_per_worker() / plan.common.transport.sockets()
                );
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_loopback_unless_allowed() {
        let t = parse_target("ws://127.0.0.1:3000/ws?x=1", &[]).expect("loopback");
        assert_eq!(t.addr.port(), 3000);
        assert_eq!(t.path, "/ws?x=1");
        assert_eq!(t.host, "127.0.0.1:3000");
        assert!(parse_target("ws://[::1]:9/ws", &[]).is_ok());
        assert!(parse_target("ws://192.0.2.1:3000/ws", &[]).is_err());
        assert!(parse_target("ws://192.0.2.1:3000/ws", &["192.0.2.1".into()]).is_ok());
        assert!(parse_target("wss://127.0.0.1/ws", &[]).is_err());
    }

    #[test]
    fn durations_and_source_addrs() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        let a = parse_source_addrs("3", false).expect("count");
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].to_string(), "127.0.0.3");
        assert!(parse_source_addrs("10.0.0.1", false).is_err());
    }

    /// The plan of `args` (after the binary's name, split at spaces).
    fn plan_of(args: &str) -> RunPlan {
        Cli::try_parse_from(std::iter::once("wsgate-loadgen").chain(args.split_whitespace()))
            .expect("arguments")
            .scenario
            .plan()
            .expect("plan")
    }

    #[test]
    fn several_urls_deal_connections_by_connection_or_by_room() {
        let by_conn = plan_of(
            "fanout --jwt-secret s -n 7 --publishers 1 --rooms 2 --url \
             ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws --url ws://127.0.0.1:3/ws",
        );
        let c = &by_conn.common;
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.targets[2].addr.port(), 3);
        let servers: Vec<usize> = (0..7).map(|i| c.server_of(i, Some(0), false)).collect();
        assert_eq!(servers, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(c.rest_target().addr.port(), 1);

        let by_room = plan_of(
            "fanout --jwt-secret s -n 7 --spread room --url \
             ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws --publish-url \
             ws://127.0.0.1:9/ws",
        );
        let c = &by_room.common;
        assert_eq!(
            c.servers().len(),
            3,
            "the publish URL comes after the --urls"
        );
        assert_eq!(c.server_of(5, Some(3), false), 1, "room 3 on server 3 % 2");
        assert_eq!(c.server_of(4, Some(3), false), 1);
        assert_eq!(c.server_of(4, None, false), 0, "no rooms: by connection");
        assert_eq!(
            c.server_of(0, Some(0), true),
            2,
            "publishers on the publish URL"
        );
        assert_eq!(c.rest_target().addr.port(), 9);
    }

    #[test]
    fn every_url_must_be_allowed() {
        let mut all = vec!["wsgate-loadgen", "connect", "--jwt-secret", "s"];
        all.extend(["--url", "ws://127.0.0.1:1/ws,ws://192.0.2.1:2/ws"]);
        let cli = Cli::try_parse_from(all).expect("arguments");
        assert!(cli.scenario.plan().is_err());
        let cli = Cli::try_parse_from([
            "wsgate-loadgen",
            "push",
            "--jwt-secret",
            "s",
            "--api-key",
            "k",
            "--publish-url",
            "ws://192.0.2.1:2/ws",
        ])
        .expect("arguments");
        assert!(cli.scenario.plan().is_err());
    }
}
