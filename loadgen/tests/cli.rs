//! The `wsgate-loadgen` binary as a user runs it: a child process against the real `wsgate` on a
//! free loopback port, checked through its JSON summary, its reports and its exit status, for
//! every scenario, worker processes and source addresses included.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wsgate_loadgen::coordinator::WORKER_ARG;

mod common;

use common::{start_server, Server, SECRET};

const LOADGEN: &str = env!("CARGO_BIN_EXE_wsgate-loadgen");
/// Longest one loadgen run may take (each asks for 1–2 s) before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// The server's REST API key in the `push` tests (at least 8 characters).
const API_KEY: &str = "loadgen-cli-key";

/// A loadgen process, its output collected as it runs.
struct Running {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

/// A finished loadgen run.
struct Run {
    /// The exit code (`None`: killed by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Running {
    /// Waits for the exit (at most [`RUN_LIMIT`]); the table on stderr is echoed so a failing
    /// test shows it.
    fn finish(mut self) -> Run {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the loadgen") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the loadgen ran longer than {RUN_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            code: status.code(),
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr.join().expect("stderr reader"),
        };
        eprint!("{}", run.stderr);
        run
    }
}

impl Run {
    /// The summary `--json` prints: stdout must hold that document and nothing else.
    fn summary(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON summary ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Starts `wsgate-loadgen <args>`.
fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(LOADGEN)
        .args(args)
        .env_remove("JWT_SECRET")
        .env_remove("API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wsgate-loadgen");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped stderr")));
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Starts `wsgate-loadgen` against `server`, without the progress line: `command` is the
/// scenario and its flags, split at spaces; `extra` arguments follow as they are (paths).
fn spawn_against(server: &Server, command: &str, extra: &[&str]) -> Running {
    let mut words = command.split_whitespace();
    let scenario = words.next().expect("a scenario");
    let url = server.url();
    let mut args = vec![scenario, "--url", &url, "--jwt-secret", SECRET, "--quiet"];
    args.extend(words);
    args.extend_from_slice(extra);
    spawn(&args)
}

/// Runs `wsgate-loadgen <command>` against `server` to the end.
fn loadgen(server: &Server, command: &str) -> Run {
    spawn_against(server, command, &[]).finish()
}

/// Runs `wsgate-loadgen <command>` against `server`, requires exit status 0, and returns the
/// JSON summary (`command` has `--json`).
fn passing(server: &Server, command: &str) -> Value {
    let run = loadgen(server, command);
    assert_eq!(run.code, Some(0), "wsgate-loadgen {command}");
    run.summary()
}

/// Fails, showing all of `text`, unless it contains `part`.
#[track_caller]
fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "`{part}` not in:\n{text}");
}

/// A count in the summary.
fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a count: {}", v[key]))
}

#[test]
fn closed_loop_fanout_loses_nothing_in_json_and_msgpack() {
    // No rate limit in the way: a refused publish would not be delivered.
    let server = start_server(&["--rate-per-sec", "1000000", "--rate-burst", "1000000"]);
    for format in ["json", "msgpack"] {
        let s = passing(
            &server,
            &format!(
                "fanout --format {format} -n 11 --publishers 1 --rooms 1 --mode closed \
                 --window 1 --duration 1s --workers 1 --json"
            ),
        );
        assert_eq!(s["scenario"], "fanout");
        assert_eq!(s["format"], format);
        assert_eq!(count(&s, "established"), 11, "{}", s["failures"]);
        assert_eq!(count(&s, "failed"), 0);
        assert_eq!(s["error_codes"], json!({}));
        let acked = count(&s, "acked");
        assert!(acked > 0, "{format}: no publish acknowledged");
        assert_eq!(
            count(&s, "published"),
            acked,
            "{format}: unanswered publishes"
        );
        // One publisher and ten subscribers in one room: each publish reaches the ten.
        assert_eq!(count(&s, "received"), acked * 10, "{format}");
        assert_eq!(s["expected"], s["received"]);
        assert_eq!(s["lost"], 0);
        assert_eq!(s["loss_ratio"], 0.0);
        assert_eq!(count(&s, "decode_mismatches"), 0);
        assert_eq!(count(&s["latency"], "count"), acked * 10, "{format}");
    }
}

#[test]
fn a_refused_publish_does_not_stall_the_closed_loop() {
    // A burst of 20 commands, then one a second: after the join and 19 publishes, the next
    // publish is refused with `rate.limited`. It will never be delivered, so the publisher must
    // go on at once rather than wait out the 5 s closed-loop timeout (longer than the run).
    let server = start_server(&["--rate-per-sec", "1", "--rate-burst", "20"]);
    // Refusals are the point here, so they must not fail the run (`--max-loss 1`).
    let s = passing(
        &server,
        "fanout -n 3 --mode closed --window 1 --duration 1s --workers 1 --json --max-loss 1",
    );
    let acked = count(&s, "acked");
    let refused = count(&s["error_codes"], "rate.limited");
    assert!(acked >= 19, "the burst is acknowledged: {acked}");
    assert!(
        refused > 1,
        "the publisher stopped after its first refused publish"
    );
    assert_eq!(count(&s, "published"), acked + refused);
    assert_eq!(count(&s, "received"), acked * 2);
    assert_eq!(s["lost"], 0);
}

#[test]
fn push_delivers_every_acknowledged_push() {
    let server = start_server(&["--api-keys", API_KEY]);
    for format in ["json", "msgpack"] {
        let s = passing(
            &server,
            &format!(
                "push --format {format} -n 10 --rate 200 --senders 2 --api-key {API_KEY} \
                 --duration 1s --workers 1 --json"
            ),
        );
        assert_eq!(s["scenario"], "push");
        assert_eq!(count(&s, "established"), 10, "{}", s["failures"]);
        assert_eq!(count(&s, "failed"), 0);
        let acked = count(&s, "acked");
        assert!(acked > 0, "{format}: no push answered 200");
        assert_eq!(count(&s, "published"), acked, "{}", s["push_errors"]);
        assert_eq!(s["push_errors"], json!({}));
        assert_eq!(s["push_offline"], 0);
        // Each push goes to one user, who holds one connection.
        assert_eq!(count(&s, "expected"), acked, "{format}: REST `delivered`");
        assert_eq!(count(&s, "received"), acked, "{format}");
        assert_eq!(s["lost"], 0);
        assert_eq!(count(&s["http_latency"], "count"), acked);
        assert_eq!(count(&s["latency"], "count"), acked);
    }
}

#[test]
fn push_with_a_wrong_api_key_reports_every_refusal() {
    let server = start_server(&["--api-keys", API_KEY]);
    let run = loadgen(
        &server,
        "push -n 5 --rate 50 --senders 1 --api-key not-the-key --duration 1s --workers 1 --json",
    );
    let s = run.summary();
    let sent = count(&s, "published");
    assert!(sent > 0);
    assert_eq!(count(&s, "acked"), 0);
    assert_eq!(s["push_errors"], json!({ "http_403": sent }));
    assert_eq!(count(&s, "received"), 0);
    // Every push refused: past any --max-loss below 1, the run fails.
    assert_eq!(run.code, Some(1));
    assert_contains(&run.stderr, "refused 100.0000 %");
}

#[test]
fn chat_reconnects_under_churn_and_loses_nothing_without() {
    let server = start_server(&[]);
    let s = passing(
        &server,
        "chat -n 20 --rooms 2 --rate-per-user 5 --churn 5 --duration 2s --workers 1 --json",
    );
    assert_eq!(s["scenario"], "chat");
    assert_eq!(count(&s, "failed"), 0, "{}", s["failures"]);
    let reconnects = count(&s, "reconnects");
    assert!(reconnects > 0, "no reconnection at 5 churns/s for 2 s");
    assert_eq!(count(&s, "established"), 20 + reconnects);
    let published = count(&s, "published");
    let acked = count(&s, "acked");
    assert!(published > 0);
    // A publish in flight when its connection is churned is never answered.
    assert!(acked > 0 && acked <= published, "{acked} of {published}");
    assert!(count(&s, "received") > 0);
    // Churn changes the rooms' membership: no expectation, no loss figure.
    assert_eq!(s["expected"], Value::Null);
    assert_eq!(s["lost"], Value::Null);
    assert_eq!(s["error_codes"], json!({}));
    // But every user's offsets run on across its reconnects.
    let o = &s["offsets"];
    assert!(count(o, "checked") > 0, "{o}");
    assert_eq!((count(o, "gaps"), count(o, "duplicates")), (0, 0), "{o}");
    assert!(count(o, "recovered") > 0, "{o}");

    let s = passing(
        &server,
        "chat -n 20 --rooms 2 --rate-per-user 5 --churn 0 --duration 1s --workers 1 --json",
    );
    assert_eq!(count(&s, "established"), 20, "{}", s["failures"]);
    assert_eq!(count(&s, "reconnects"), 0);
    let acked = count(&s, "acked");
    assert!(acked > 0);
    assert_eq!(count(&s, "published"), acked);
    // Ten users a room: every publish reaches all ten (chat publishes with echo).
    assert_eq!(count(&s, "received"), acked * 10);
    assert_eq!(s["expected"], s["received"]);
    assert_eq!(s["lost"], 0);
    let o = &s["offsets"];
    assert_eq!(count(o, "checked"), acked * 10, "{o}");
    assert_eq!(count(o, "recovered") + count(o, "not_recovered"), 0, "{o}");
}

#[test]
fn chat_resumes_after_churn_without_gaps_or_duplicates_in_worker_processes() {
    // MessagePack, two worker processes (their offset accounts merged by the coordinator), an
    // HTML report. 20 users a room at 2 publishes/s: 40 events/s a room, so the server's
    // history (100 a room) covers any reconnect of under 2 s.
    let server = start_server(&[]);
    let dir = TempDir::new();
    let html_path = dir.path().join("chat.html");
    let run = spawn_against(
        &server,
        "chat -n 40 --rooms 2 --rate-per-user 2 --churn 10 --duration 2s --workers 2 \
         --format msgpack --json --report",
        &[html_path.to_str().expect("UTF-8 path")],
    )
    .finish();
    assert_eq!(run.code, Some(0));
    let s = run.summary();
    assert_eq!(count(&s, "failed"), 0, "{}", s["failures"]);
    let reconnects = count(&s, "reconnects");
    assert!(reconnects > 0);
    let o = &s["offsets"];
    assert!(count(o, "checked") > 0, "{o}");
    assert_eq!(count(o, "gaps"), 0, "{o}");
    assert_eq!(count(o, "duplicates"), 0, "{o}");
    let resumes = count(o, "recovered") + count(o, "not_recovered");
    assert!(count(o, "recovered") > 0, "{o}");
    // A churn at the very end may not have rejoined before the report.
    assert!(
        resumes <= reconnects,
        "{resumes} resumes, {reconnects} reconnects"
    );
    // The counts in the table (stderr with --json) and in the report.
    let html = std::fs::read_to_string(&html_path).expect("the HTML report");
    let rows = [
        ("offsets checked", count(o, "checked").to_string()),
        ("offset gaps / duplicates", "0 / 0".to_string()),
        (
            "resumes",
            format!(
                "{} recovered, {} not recovered",
                count(o, "recovered"),
                count(o, "not_recovered")
            ),
        ),
    ];
    for (name, value) in rows {
        let row = format!("  {name:<28} {value}");
        assert_contains(&run.stderr, &row);
        assert_contains(&html, &row);
    }
    assert_contains(&html, "0 gaps, 0 duplicates; resumes: ");
}

/// Processes whose parent is `pid` and whose first argument makes them loadgen workers.
fn workers_of(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(WORKER_ARG.as_bytes()))
        })
        .count()
}

/// The parent pid, from `/proc/PID/stat` (the field after the state, which follows the name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Established TCP connections to `server`, counted by their local (source) address, from
/// `/proc/net/tcp`.
fn sources_of_connections_to(server: SocketAddr) -> BTreeMap<Ipv4Addr, usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut sources = BTreeMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, local, remote, state, ..] = fields[..] else {
            continue;
        };
        const ESTABLISHED: &str = "01";
        if state != ESTABLISHED {
            continue;
        }
        if let (Some(local), Some(remote)) = (proc_addr(local), proc_addr(remote)) {
            if SocketAddr::V4(remote) == server {
                *sources.entry(*local.ip()).or_default() += 1;
            }
        }
    }
    sources
}

/// `0100007F:1F90`: the IPv4 address as the kernel's `u32` in host byte order, and the port,
/// both in hex.
fn proc_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

#[test]
fn worker_processes_connect_from_every_source_address() {
    let server = start_server(&[]);
    let mut running = spawn_against(
        &server,
        "connect -n 20 --workers 2 --source-addrs 2 --duration 2s --json",
        &[],
    );
    // Watched during the hold: the coordinator's children, and who the connections come from.
    let pid = running.child.id();
    let (mut workers, mut sources) = (0, BTreeMap::new());
    while running.child.try_wait().expect("loadgen status").is_none() {
        workers = workers.max(workers_of(pid));
        let now = sources_of_connections_to(server.addr);
        if now.values().sum::<usize>() == 20 {
            sources = now;
            if workers == 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = running.finish();
    let s = run.summary();
    assert_eq!(run.code, Some(0));
    assert_eq!(workers, 2, "worker processes seen");
    // Connection i binds source address i % 2.
    let expected = BTreeMap::from([
        (Ipv4Addr::new(127, 0, 0, 1), 10),
        (Ipv4Addr::new(127, 0, 0, 2), 10),
    ]);
    assert_eq!(sources, expected, "established connections by source");
    assert_eq!(count(&s, "workers"), 2);
    assert_eq!(count(&s, "established"), 20, "{}", s["failures"]);
    assert_eq!(count(&s, "failed"), 0);
    assert_eq!(count(&s["handshake"], "count"), 20);
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("wsgate-loadgen-cli-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn reports_are_written_as_html_and_svg() {
    let server = start_server(&["--rate-burst", "1000"]);
    let dir = TempDir::new();
    let html_path = dir.path().join("fanout.html");
    let svg_path = dir.path().join("connect.svg");

    let html_arg = html_path.to_str().expect("UTF-8 path");
    let run = spawn_against(
        &server,
        "fanout -n 6 --mode burst --burst 100 --interval 60s --duration 1s --workers 1 --json \
         --report",
        &[html_arg],
    )
    .finish();
    assert_eq!(run.code, Some(0));
    assert_contains(
        &run.stderr,
        &format!("report written to {}", html_path.display()),
    );
    let html = std::fs::read_to_string(&html_path).expect("the HTML report");
    assert!(html.starts_with("<!doctype html>"), "{html:.80}");
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
    assert!(html.contains("</svg>"));
    assert!(html.contains("end-to-end latency (µs) by percentile"));
    // The table: every row of the one printed on stderr.
    let table: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(table.len() >= 8, "{}", run.stderr);
    for row in table {
        assert!(html.contains(row), "the HTML report lacks the row `{row}`");
    }

    let svg_arg = svg_path.to_str().expect("UTF-8 path");
    let run = spawn_against(
        &server,
        "connect -n 10 --duration 1s --workers 1 --report",
        &[svg_arg],
    )
    .finish();
    assert_eq!(run.code, Some(0));
    // Without --json the table goes to stdout.
    assert_contains(&run.stdout, "10 established, 0 failed");
    let svg = std::fs::read_to_string(&svg_path).expect("the SVG report");
    assert!(
        svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#),
        "{svg:.80}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("handshake latency (µs) by percentile"));
    assert!(svg.contains("open connections over time (s)"));
    assert!(svg.contains("<polyline"));
}

#[test]
fn failures_past_max_loss_exit_with_status_1() {
    // 10 connections against a server that takes 5: half of them fail, refused with 503.
    for (max_loss, code) in [("0", 1), ("0.5", 0)] {
        let server = start_server(&["--max-connections", "5"]);
        let run = loadgen(
            &server,
            &format!("connect -n 10 --duration 1s --workers 1 --json --max-loss {max_loss}"),
        );
        let s = run.summary();
        assert_eq!(count(&s, "established"), 5);
        assert_eq!(count(&s, "failed"), 5);
        assert_eq!(s["failures"], json!({ "http_503": 5 }));
        assert_contains(&run.stderr, "failed: http_503");
        // Past the threshold, not at it: 5 of 10 fails at 0, passes at 0.5.
        assert_eq!(run.code, Some(code), "--max-loss {max_loss}");
        assert_eq!(
            run.stderr
                .contains("FAIL: loss 0.0000 %, failures 50.0000 %, refused 0.0000 %"),
            code == 1
        );
    }
}

#[test]
fn loss_past_max_loss_exits_with_status_1() {
    // Slow consumers made on purpose: an event of ~12 kB and a 32,000-byte outbound queue, so
    // a subscriber with three events queued is closed (4002) and misses the rest of a
    // 300-publish burst. The publisher's queue only holds replies (300 × < 100 bytes): it
    // stays. Loss is then far above 0.7 while failures stay at 2 of 3 connections (0.67), so
    // the exit status comes from the loss.
    let server = start_server(&[
        "--shards",
        "1",
        "--rate-burst",
        "1000",
        "--max-message-bytes",
        "16000",
        "--max-outbound-bytes",
        "32000",
    ]);
    let run = loadgen(
        &server,
        "fanout -n 3 --publishers 1 --mode burst --burst 300 --interval 60s --payload 12000 \
         --duration 1s --drain 1s --workers 1 --json --max-loss 0.7",
    );
    let s = run.summary();
    assert_eq!(s["failures"], json!({ "closed_4002": 2 }));
    assert_eq!(count(&s, "acked"), 300);
    let (expected, received) = (count(&s, "expected"), count(&s, "received"));
    assert_eq!(expected, 600);
    assert_eq!(s["lost"], expected - received);
    let loss = s["loss_ratio"].as_f64().expect("a loss ratio");
    assert!(loss > 0.7, "loss {loss}");
    assert_eq!(run.code, Some(1));
    assert_contains(&run.stderr, "FAIL: loss");
}

#[test]
fn a_run_that_cannot_start_exits_with_status_2() {
    let run = spawn(&[
        "connect",
        "--url",
        "ws://192.0.2.1:3000/ws",
        "--jwt-secret",
        SECRET,
        "--quiet",
    ])
    .finish();
    assert_eq!(run.code, Some(2));
    assert_contains(&run.stderr, "refusing target 192.0.2.1");
    assert!(run.stdout.is_empty());
}
