//! The CI smoke run: the real `wsgate` binary on a free port, driven by a tiny `connect` and a
//! tiny `fanout` run through the loadgen's library API, with zero loss required.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use wsgate_loadgen::cli::Cli;
use wsgate_loadgen::{run, RunOptions, Summary};

const SECRET: &str = "loadgen-smoke-secret";

/// The server process; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/wsgate`, beside this test's `deps/` directory. `cargo test --workspace`
/// builds it before any test runs; when this package is tested alone it is built here.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("wsgate");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = profile_dir.ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "wsgate", "--bin", "wsgate"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p wsgate");
        assert!(status.success(), "cargo build -p wsgate failed");
    }
    bin
}

fn start_server() -> Server {
    let mut child = Command::new(server_binary())
        .args(["--host", "127.0.0.1", "--port", "0", "--jwt-secret", SECRET])
        .args(["--rate-burst", "1000", "--shards", "2"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting wsgate");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        // Keep draining so the server never blocks on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server logs its listening address");
    Server { child, addr }
}

/// The address in the server's `wsgate listening addr=…` log line (ANSI colours stripped).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    if !plain.contains("listening") {
        return None;
    }
    let rest = &plain[plain.find("addr=")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

fn run_cli(args: &[&str]) -> Summary {
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    let plan = cli.scenario.plan().expect("a plan");
    let opts = RunOptions {
        server_pid: cli.scenario.common().server_pid,
        ..RunOptions::default()
    };
    run(&plan, &opts).expect("the run completes")
}

#[test]
fn connect_and_fanout_against_the_real_server() {
    let server = start_server();
    let url = format!("ws://{}/ws", server.addr);
    let pid = server.child.id().to_string();

    let s = run_cli(&[
        "wsgate-loadgen",
        "connect",
        "--url",
        &url,
        "--jwt-secret",
        SECRET,
        "-n",
        "50",
        "--connect-rate",
        "500",
        "--duration",
        "2s",
        "--workers",
        "1",
        "--server-pid",
        &pid,
    ]);
    eprint!("{}", s.table());
    assert_eq!(s.established, 50, "failures: {:?}", s.failures);
    assert_eq!(s.failed, 0);
    assert_eq!(s.handshake.count, 50);
    assert!(s.connect_rate > 0.0);
    assert!(s.server_bytes_per_connection.is_some());

    for format in ["json", "msgpack"] {
        let s = run_cli(&[
            "wsgate-loadgen",
            "fanout",
            "--url",
            &url,
            "--jwt-secret",
            SECRET,
            "--format",
            format,
            "-n",
            "21",
            "--publishers",
            "1",
            "--rooms",
            "1",
            "--mode",
            "burst",
            "--burst",
            "200",
            "--interval",
            "60s",
            "--duration",
            "1s",
            "--workers",
            "1",
        ]);
        eprint!("{}", s.table());
        assert_eq!(s.failed, 0, "failures: {:?}", s.failures);
        assert_eq!(s.acked, 200, "errors: {:?}", s.error_codes);
        assert_eq!(s.expected, Some(200 * 20));
        assert_eq!(s.received, 200 * 20);
        assert_eq!(s.lost, Some(0));
        assert_eq!(s.decode_mismatches, 0);
        assert!(s.latency.count > 0);
    }
}

#[test]
fn off_loopback_targets_are_refused() {
    let cli = Cli::try_parse_from([
        "wsgate-loadgen",
        "connect",
        "--url",
        "ws://192.0.2.1:3000/ws",
        "--jwt-secret",
        "x",
    ])
    .expect("parses");
    assert!(cli.scenario.plan().is_err());
}
