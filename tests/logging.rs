//! The binary's log: plain text without terminal colours when written to a pipe, or one JSON
//! object per line with `LOG_FORMAT=json`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The real binary on 127.0.0.1:0, its log on a pipe.
struct Server(Child);

impl Server {
    fn start(log_format: &str) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--jwt-secret",
                "s",
                "--store",
                "memory",
            ])
            .env("LOG_FORMAT", log_format)
            .env("RUST_LOG", "info")
            .env_remove("API_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server(child)
    }

    /// The first log line (the server logs its address once it listens).
    fn first_line(&mut self) -> String {
        let mut line = String::new();
        let out = self.0.stdout.as_mut().unwrap();
        BufReader::new(out).read_line(&mut line).unwrap();
        line
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let line = Server::start("text").first_line();
    assert!(line.contains("wsgate listening"), "{line:?}");
    assert!(line.contains("addr=127.0.0.1:"), "{line:?}");
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escape in a piped log: {line:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let line = Server::start("json").first_line();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["target"], "wsgate::server", "{v}");
    assert_eq!(v["fields"]["message"], "wsgate listening", "{v}");
    let addr = v["fields"]["addr"].as_str().unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["--port", "0", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format"));
}
