//! `--protocol socketio` against the Node socket.io reference server (`benches/socketio-node`,
//! pinned by its lockfile and installed here with `npm ci` on first use; node and npm from
//! PATH, and a missing one is a failure, never a skip) and against wsgate's Socket.IO layer:
//! both parsers, both transports (WebSocket and long-polling), REST pushes to users, pings
//! answered, the token refused, zero loss.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use wsgate_loadgen::cli::Cli;
use wsgate_loadgen::{run, RunOptions, Summary};

mod common;

use common::{start_server, SECRET};

/// The servers' REST API key in the `push` runs.
const API_KEY: &str = "loadgen-socketio-key";

/// Both parsers, at their paths on both servers.
const PARSERS: [(&str, &str); 2] = [("json", "/socket.io/"), ("msgpack", "/socket.io-msgpack/")];

/// Both Engine.IO transports.
const TRANSPORTS: [&str; 2] = ["websocket", "polling"];

/// The Node server process; killed on drop.
struct NodeServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/socketio-node")
}

/// `npm ci` in `benches/socketio-node` when its `node_modules` is missing, under a lock
/// directory (test binaries run in parallel).
fn ensure_installed() {
    let dir = node_dir();
    let marker = dir.join("node_modules/.package-lock.json");
    let lock = dir.join(".npm-ci.lock");
    for _ in 0..3000 {
        if marker.exists() && !lock.exists() {
            return;
        }
        if std::fs::create_dir(&lock).is_ok() {
            let result = if marker.exists() {
                Ok(())
            } else {
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&dir)
                    .output()
                    .map_err(|e| format!("cannot run npm ({e}): these tests need Node.js"))
                    .and_then(|o| {
                        if o.status.success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "npm ci failed: {}",
                                String::from_utf8_lossy(&o.stderr)
                            ))
                        }
                    })
            };
            let _ = std::fs::remove_dir(&lock);
            result.unwrap_or_else(|e| panic!("{e}"));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("waited 10 minutes for another test's npm ci");
}

/// Starts `node server.js 0` with a 300 ms heartbeat (a client that does not answer pings is
/// closed 400 ms later, well within a run) and its REST push on ([`API_KEY`]).
fn start_node() -> NodeServer {
    ensure_installed();
    let mut child = Command::new("node")
        .arg("server.js")
        .arg("0")
        .current_dir(node_dir())
        .env("JWT_SECRET", SECRET)
        .env("PING_INTERVAL_MS", "300")
        .env("PING_TIMEOUT_MS", "400")
        .env("API_KEYS", API_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node from PATH: these tests need Node.js");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .strip_prefix("socketio-node listening port=")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                let _ = tx.send(SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the Node server prints its port");
    NodeServer { child, addr }
}

fn run_cli(args: &[&str]) -> Summary {
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    let plan = cli.scenario.plan().expect("a plan");
    run(&plan, &RunOptions::default()).expect("the run completes")
}

/// How a run's connections speak Socket.IO: the parser, at its path, over a transport.
#[derive(Clone, Copy)]
struct Wire {
    parser: &'static str,
    path: &'static str,
    transport: &'static str,
}

/// Every parser over every transport.
fn wires() -> impl Iterator<Item = Wire> {
    TRANSPORTS.into_iter().flat_map(|transport| {
        PARSERS.into_iter().map(move |(parser, path)| Wire {
            parser,
            path,
            transport,
        })
    })
}

/// A socketio run against `url` over `wire`, then `extra` arguments.
fn sio(scenario: &str, url: &str, wire: Wire, extra: &[&str]) -> Summary {
    let mut args = vec![
        "wsgate-loadgen",
        scenario,
        "--protocol",
        "socketio",
        "--url",
        url,
        "--sio-parser",
        wire.parser,
        "--sio-path",
        wire.path,
        "--sio-transport",
        wire.transport,
        "--jwt-secret",
        SECRET,
        "--workers",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let s = run_cli(&args);
    eprint!("{}", s.table());
    assert_eq!(
        (s.protocol.as_str(), s.format.as_str(), s.transport.as_str()),
        ("socketio", wire.parser, wire.transport)
    );
    s
}

/// 30 connections in 3 rooms held for `hold`, then a closed-loop fanout to 20 subscribers:
/// everyone in, every publish acked and delivered to every subscriber.
fn connect_and_closed_fanout(url: &str, wire: Wire, hold: &str) {
    let s = sio(
        "connect",
        url,
        wire,
        &["-n", "30", "--rooms", "3", "--duration", hold],
    );
    assert_eq!((s.established, s.failed), (30, 0), "{:?}", s.failures);
    assert_eq!(s.handshake.count, 30);

    let s = sio(
        "fanout",
        url,
        wire,
        &[
            "-n",
            "21",
            "--mode",
            "closed",
            "--window",
            "4",
            "--duration",
            "2s",
        ],
    );
    assert_eq!((s.established, s.failed), (21, 0), "{:?}", s.failures);
    assert!(s.published > 0);
    assert_eq!(s.acked, s.published);
    assert_eq!(s.expected, Some(s.published * 20));
    assert_eq!(s.lost, Some(0));
    assert_eq!(s.decode_mismatches, 0);
    assert!(s.error_codes.is_empty(), "{:?}", s.error_codes);
}

/// REST pushes at 200/s for 1 s to 10 users' sockets: every push answered 200, every
/// delivery the answers count received.
fn push(url: &str, wire: Wire) {
    let s = sio(
        "push",
        url,
        wire,
        &[
            "-n",
            "10",
            "--rate",
            "200",
            "--senders",
            "2",
            "--duration",
            "1s",
            "--api-key",
            API_KEY,
        ],
    );
    assert_eq!((s.established, s.failed), (10, 0), "{:?}", s.failures);
    assert!(s.acked > 0, "no push answered 200: {:?}", s.push_errors);
    assert_eq!(s.acked, s.published, "{:?}", s.push_errors);
    assert_eq!(s.expected, Some(s.acked), "one socket per user");
    assert_eq!(s.lost, Some(0));
    assert_eq!(s.latency.count, s.acked);
}

#[test]
fn connect_and_fanout_against_node_socket_io_without_loss() {
    let node = start_node();
    let url = format!("ws://{}", node.addr);
    for wire in wires() {
        // Held past several heartbeats: a connection that did not answer a ping is closed.
        connect_and_closed_fanout(&url, wire, "2s");

        // Every event decoded fully, and echoed to the publisher too.
        let s = sio(
            "fanout",
            &url,
            wire,
            &[
                "-n",
                "11",
                "--mode",
                "burst",
                "--burst",
                "50",
                "--interval",
                "60s",
                "--duration",
                "1s",
                "--decode",
                "full",
                "--echo",
            ],
        );
        assert_eq!(s.published, 50);
        assert_eq!(s.expected, Some(50 * 11));
        assert_eq!(s.lost, Some(0));
    }
}

#[test]
fn push_against_node_socket_io_without_loss() {
    let node = start_node();
    let url = format!("ws://{}", node.addr);
    for wire in wires() {
        push(&url, wire);
    }
}

/// wsgate with its rate limit lifted, its REST API on and a 300 ms heartbeat (a session that
/// does not answer pings is closed 400 ms later).
fn start_wsgate() -> common::Server {
    start_server(&[
        "--rate-per-sec",
        "1000000",
        "--rate-burst",
        "1000000",
        "--shards",
        "2",
        "--api-keys",
        API_KEY,
        "--engineio-ping-interval",
        "300ms",
        "--engineio-ping-timeout",
        "400ms",
    ])
}

#[test]
fn connect_fanout_and_push_against_wsgate_socket_io_without_loss() {
    for wire in wires() {
        // A server per wire: a long-polling session whose connections the last run dropped
        // lives on in wsgate until its heartbeat times out, and would count in a push's
        // `delivered`.
        let server = start_wsgate();
        // The URL's path (`/ws`) is not used: the Engine.IO path is `--sio-path`.
        let url = server.url();
        // REST pushes to the users of Socket.IO sockets.
        push(&url, wire);
        connect_and_closed_fanout(&url, wire, "2s");
    }
}

#[test]
fn a_refused_token_is_a_connect_error_with_its_code() {
    let node = start_node();
    let url = format!("ws://{}", node.addr);
    let cli = Cli::try_parse_from([
        "wsgate-loadgen",
        "connect",
        "--protocol",
        "socketio",
        "--url",
        &url,
        "--jwt-secret",
        "not-the-secret",
        "-n",
        "5",
        "--duration",
        "1s",
        "--workers",
        "1",
        "--quiet",
    ])
    .expect("valid arguments");
    let s = run(
        &cli.scenario.plan().expect("a plan"),
        &RunOptions::default(),
    )
    .expect("runs");
    assert_eq!(s.established, 0);
    assert_eq!(
        s.failures.get("connect_error_auth.invalid"),
        Some(&5),
        "{:?}",
        s.failures
    );
}

#[test]
fn socketio_refuses_what_the_contract_lacks() {
    for args in [
        &["chat"][..],
        &["connect", "--rooms", "1", "--presence"],
        &["connect", "--mailbox"],
    ] {
        let mut all = vec!["wsgate-loadgen"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--protocol", "socketio", "--jwt-secret", "s"]);
        let cli = Cli::try_parse_from(&all).expect("valid arguments");
        assert!(cli.scenario.plan().is_err(), "{args:?}");
    }
    // Long-polling is Engine.IO's: native connections are WebSockets.
    let cli = Cli::try_parse_from([
        "wsgate-loadgen",
        "connect",
        "--sio-transport",
        "polling",
        "--jwt-secret",
        "s",
    ])
    .expect("valid arguments");
    let e = cli
        .scenario
        .plan()
        .expect_err("polling is refused natively");
    assert!(e.to_string().contains("--protocol socketio"), "{e}");
}
