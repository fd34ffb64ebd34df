//! The loadgen against several wsgate nodes in cluster mode: a real `redis-server` on a free
//! loopback port and real `wsgate` nodes sharing it (`--cluster-redis-url`), the loadgen's
//! connections dealt over them with `--url` given several times, its publishers and pushes
//! sent to one node with `--publish-url`. Checked through the loadgen's JSON summary and each
//! node's `/metrics`. Without `redis-server` these tests fail, saying so (`.ci/run` installs
//! it): they never pass by skipping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{start_server, Server, SECRET};

const LOADGEN: &str = env!("CARGO_BIN_EXE_wsgate-loadgen");
/// The nodes' REST API key.
const API_KEY: &str = "loadgen-cluster-key";
/// Longest one loadgen run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A `redis-server` on a free loopback port, without persistence, in a directory of its own;
/// killed on drop.
struct Redis {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    /// Starts one answering PING (another free port if the first was taken meanwhile).
    fn start() -> Redis {
        for attempt in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = std::env::temp_dir().join(format!(
                "wsgate-loadgen-redis-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("redis directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run redis-server ({e}): install it (Debian: apt-get install redis-server); .ci/run does")
                });
            let mut redis = Redis { port, child, dir };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if redis.cli(&["PING"]).trim() == "PONG" {
                    return redis;
                }
                if let Ok(Some(_)) = redis.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// `redis-cli` against it: its output (empty when it failed).
    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` wsgate nodes sharing `redis`, without rate limits in the way, each linked to Redis
/// (`wsgate_cluster_redis_up` 1) before it is returned.
fn nodes(redis: &Redis, n: usize) -> Vec<Server> {
    let url = redis.url();
    let nodes: Vec<Server> = (0..n)
        .map(|_| {
            start_server(&[
                "--cluster-redis-url",
                &url,
                "--api-keys",
                API_KEY,
                "--rate-per-sec",
                "1000000",
                "--rate-burst",
                "1000000",
                // The tests count room events received from Redis: no presence events.
                "--room-presence",
                "false",
            ])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in &nodes {
        while metric(node.addr, "wsgate_cluster_redis_up") != 1 {
            assert!(Instant::now() < deadline, "a node never linked to Redis");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    nodes
}

/// The value of metric `name` on the node at `addr`, summed over its series (shards).
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connecting for /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("GET /metrics");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("reading /metrics");
    let values: Vec<u64> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name value`, or `name{labels} value` (one series per shard).
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => &labelled[labelled.find('}')? + 1..],
                None => rest,
            };
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "no metric {name} in {body}");
    values.iter().sum()
}

/// Runs `wsgate-loadgen <command> --jwt-secret … --quiet --json` (`command` split at
/// spaces), requires exit status 0 and returns the summary.
fn passing(command: &str) -> Value {
    let args: Vec<&str> = command.split_whitespace().collect();
    let mut child = Command::new(LOADGEN)
        .args(&args)
        .args(["--jwt-secret", SECRET, "--quiet", "--json"])
        .env_remove("JWT_SECRET")
        .env_remove("API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wsgate-loadgen");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the loadgen") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the loadgen ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .stdout
        .take()
        .map(|mut p| p.read_to_string(&mut stdout));
    let _ = child
        .stderr
        .take()
        .map(|mut p| p.read_to_string(&mut stderr));
    eprint!("{stderr}");
    assert_eq!(status.code(), Some(0), "wsgate-loadgen {args:?}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a summary ({e}): {stdout}"))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a count: {}", v[key]))
}

/// The `--url` list of `nodes`.
fn urls(nodes: &[Server]) -> String {
    nodes.iter().map(Server::url).collect::<Vec<_>>().join(",")
}

#[test]
fn fanout_spread_over_three_nodes_reaches_every_subscriber_through_redis() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 3);
    let accepted = |n: &Server| metric(n.addr, "wsgate_connections_total");
    let before: Vec<u64> = nodes.iter().map(accepted).collect();
    // 1 publisher on node 0, 30 subscribers dealt by connection over the three nodes.
    let urls = urls(&nodes);
    let publish = nodes[0].url();
    let s = passing(&format!(
        "fanout --url {urls} --publish-url {publish} -n 31 --publishers 1 --rooms 1 --mode rate \
         --rate 50 --duration 1s --workers 1"
    ));
    assert_eq!(count(&s, "established"), 31, "{}", s["failures"]);
    let acked = count(&s, "acked");
    assert!(acked > 10, "publishes acknowledged: {acked}");
    assert_eq!(count(&s, "expected"), acked * 30);
    assert_eq!(count(&s, "received"), acked * 30);
    assert_eq!(s["lost"], 0);
    // Connections 1..=30 go to node i % 3 (10 each), and the publisher (connection 0) to node 0.
    let dealt: Vec<u64> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| accepted(n) - b)
        .collect();
    assert_eq!(dealt, [11, 10, 10], "connections accepted per node");
    // Every node hosts a member of the room, so each received every event from Redis once.
    for n in &nodes {
        assert_eq!(metric(n.addr, "wsgate_cluster_received_total"), acked);
    }
    assert_eq!(
        metric(nodes[0].addr, "wsgate_cluster_published_total"),
        acked
    );
}

#[test]
fn rooms_kept_on_one_node_each_reach_only_that_node() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 3);
    let urls = urls(&nodes);
    // --spread room: room r (its publisher and its 10 subscribers) on node r % 3 only.
    let s = passing(&format!(
        "fanout --url {urls} --spread room -n 33 --publishers 3 --rooms 3 --mode rate \
         --rate 60 --duration 1s --workers 1"
    ));
    assert_eq!(count(&s, "established"), 33, "{}", s["failures"]);
    let acked = count(&s, "acked");
    assert!(acked > 10, "publishes acknowledged: {acked}");
    assert_eq!(count(&s, "received"), acked * 10);
    assert_eq!(s["lost"], 0);
    let received: Vec<u64> = nodes
        .iter()
        .map(|n| metric(n.addr, "wsgate_cluster_received_total"))
        .collect();
    let published: Vec<u64> = nodes
        .iter()
        .map(|n| metric(n.addr, "wsgate_cluster_published_total"))
        .collect();
    // Each node receives exactly the events of its own room: what it published itself.
    assert_eq!(received, published, "events received from Redis per node");
    assert_eq!(received.iter().sum::<u64>(), acked);

    // The same rooms dealt by connection: 2 rooms over 3 nodes puts members of every room on
    // every node, so every node receives every event.
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| metric(n.addr, "wsgate_cluster_received_total"))
        .collect();
    let s = passing(&format!(
        "fanout --url {urls} -n 32 --publishers 2 --rooms 2 --mode rate --rate 60 \
         --duration 1s --workers 1"
    ));
    let acked = count(&s, "acked");
    assert_eq!(s["lost"], 0);
    for (n, b) in nodes.iter().zip(before) {
        assert_eq!(metric(n.addr, "wsgate_cluster_received_total") - b, acked);
    }
}

#[test]
fn pushes_to_one_node_reach_users_on_another() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let receivers = b.url();
    let rest = a.url();
    let s = passing(&format!(
        "push --url {receivers} --publish-url {rest} --api-key {API_KEY} -n 10 --rate 100 --senders 2 \
         --duration 1s --workers 1"
    ));
    assert_eq!(count(&s, "established"), 10, "{}", s["failures"]);
    let acked = count(&s, "acked");
    assert!(acked > 20, "pushes answered 200: {acked}");
    assert_eq!(s["push_errors"], serde_json::json!({}));
    assert_eq!(s["push_offline"], 0);
    assert_eq!(count(&s, "expected"), acked);
    assert_eq!(count(&s, "received"), acked);
    assert_eq!(s["lost"], 0);
    // The pushes went to node A, which hosts none of the users; node B got them from Redis.
    assert_eq!(metric(a.addr, "wsgate_connections"), 0);
    assert_eq!(metric(a.addr, "wsgate_cluster_received_total"), 0);
    assert_eq!(metric(b.addr, "wsgate_cluster_received_total"), acked);
    // One script call per push: Redis saw them.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(
        stats.contains("cmdstat_evalsha") || stats.contains("cmdstat_eval"),
        "{stats}"
    );
}
