//! Test harness shared by the loadgen's integration tests: the real `wsgate` binary on a free
//! loopback port, killed when the test is done with it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The server's `--jwt-secret`, which the loadgen mints its tokens with.
pub(crate) const SECRET: &str = "loadgen-smoke-secret";

/// The server process; killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// The WebSocket URL to give the loadgen.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
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

/// Starts the server on 127.0.0.1, port 0, with [`SECRET`] and then `flags` (each server flag
/// at most once: `--shards`, `--rate-burst`, `--max-connections` …).
pub(crate) fn start_server(flags: &[&str]) -> Server {
    let mut child = Command::new(server_binary())
        .args(["--host", "127.0.0.1", "--port", "0", "--jwt-secret", SECRET])
        // Tests run servers side by side: none keeps state on disk.
        .args(["--store", "memory"])
        .args(flags)
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
