//! The real `wsgate` binary in a child process (for what only a process can show: `kill -9`),
//! on a free port it logs, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{Remote, API_KEY, SECRET};

pub struct Binary {
    child: Child,
    pub remote: Remote,
}

impl Binary {
    /// `wsgate` on 127.0.0.1:0 with the test secret and API key, the memory store, and
    /// `args`.
    pub fn start(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["--host", "127.0.0.1", "--port", "0", "--shards", "2"])
            .args(["--jwt-secret", SECRET, "--api-keys", API_KEY])
            .args(["--store", "memory"])
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = listening(&mut child);
        Binary {
            child,
            remote: Remote { addr },
        }
    }

    /// `kill -9`: the process ends at once, its sockets closed by the kernel.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The address `child` (a `wsgate` logging JSON to its piped stdout) says it listens on;
/// its log is read on from then on, so the server never blocks on a full pipe.
pub fn listening(child: &mut Child) -> SocketAddr {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["fields"]["message"] == "wsgate listening" {
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

impl std::ops::Deref for Binary {
    type Target = Remote;
    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
