//! Socket.IO in cluster mode, with the real `socket.io-client` (tests/js/cluster.mjs) against
//! several real nodes sharing a real `redis-server`: connection state recovery across nodes
//! (a socket detached on one node is recovered on another: same id, nothing missed, nothing
//! twice, in order; on a Redis Cluster too), recovery refused when the stream was trimmed
//! past the client's point, the record expired or the node cannot reach Redis (a new socket
//! within `CLUSTER_TIMEOUT`), a record kept again when its connection left before the answer
//! or another user asked for it, and clients spread over three nodes chatting, with a REST
//! push on one node reaching a user's Socket.IO socket and native WebSocket on the two others.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::cluster::{metric, node_on, node_with, three_nodes};
use common::proxy::Proxy;
use common::redis::{RedisCluster, RedisServer};
use common::*;
use serde_json::{json, Value};

/// The verdict of `node tests/js/cluster.mjs <scenario> <args>` over `nodes`.
async fn client(nodes: &[&TestServer], scenario: &str, mut args: Value) -> Value {
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    args["urls"] = json!(urls);
    let run = node::run("cluster.mjs", &[scenario, &args.to_string()]).await;
    let verdict = run.verdict();
    assert!(run.success, "{verdict}\n{}", run.stderr);
    assert_eq!(verdict["ok"], true, "{verdict}");
    verdict
}

/// Every pair of transports and parsers the client may use (long-polling too: a reconnect
/// makes a new Engine.IO session, whose requests all go to the node it was made on).
const WAYS: [(&[&str], &str, &str); 4] = [
    (&["polling", "websocket"], "json", "/socket.io/"),
    (&["websocket"], "json", "/socket.io/"),
    (&["polling"], "msgpack", "/socket.io-msgpack/"),
    (&["websocket"], "msgpack", "/socket.io-msgpack/"),
];

/// Tokens of `alice` and `bob`, named `<name>-<round>`.
fn tokens(round: usize) -> Value {
    json!({"alice": token(&format!("alice-{round}")), "bob": token(&format!("bob-{round}"))})
}

#[tokio::test]
async fn a_socket_io_client_recovers_its_socket_on_other_nodes_missing_nothing() {
    let redis = RedisServer::start();
    let quiet = |c: &mut wsgate::Config| c.room_presence = false;
    let (a, b, c) = three_nodes(&redis, quiet).await;
    for (i, (transports, parser, path)) in WAYS.into_iter().enumerate() {
        let ways = format!("{transports:?} {parser}");
        let args = json!({"tokens": tokens(i), "transports": transports, "parser": parser,
            "path": path, "count": 150, "room": format!("rec-{i}")});
        let v = client(&[&a, &b, &c], "recoverAcross", args).await;
        // Cut on A, back on B; cut on B, back on C: recovered both times, the same socket.
        assert_eq!(v["recoveredFlags"], json!([true, true]), "{ways}: {v}");
        let ids = v["ids"].as_array().unwrap();
        assert_eq!(ids.len(), 3, "{ways}: {v}");
        assert!(ids.iter().all(|id| *id == ids[0]), "{ways}: {v}");
        assert_eq!(
            v["landedOn"],
            format!("127.0.0.1:{}", c.addr.port()),
            "{ways}: {v}"
        );
        assert_eq!(v["missing"], json!([]), "{ways}: {v}");
        assert_eq!(v["duplicates"], 0, "{ways}: {v}");
        assert_eq!(v["inOrder"], true, "{ways}: {v}");
        assert_eq!(v["received"], 150, "{ways}: {v}");
    }
    let rounds = WAYS.len() as u64;
    assert_eq!(
        metric(&a, "wsgate_cluster_socketio_kept_total").await,
        rounds
    );
    assert_eq!(
        metric(&b, "wsgate_cluster_socketio_recovered_total").await,
        rounds
    );
    assert_eq!(
        metric(&c, "wsgate_cluster_socketio_recovered_total").await,
        rounds
    );
    // Taken, and so gone from Redis: no record is left to recover twice.
    let left = redis.cli(&["--scan", "--pattern", "wsgate:{s:*}"]).unwrap();
    assert_eq!(left.trim(), "", "{left}");
}

#[tokio::test]
async fn on_a_redis_cluster_a_socket_recovers_on_other_nodes() {
    let cluster = RedisCluster::start();
    let tweak = |c: &mut wsgate::Config| {
        c.room_presence = false;
        c.cluster_timeout = Duration::from_secs(2);
    };
    let a = node_on(cluster.url(), tweak).await;
    let b = node_on(cluster.url(), tweak).await;
    let c = node_on(cluster.url(), tweak).await;
    // Each round's pid, random, lands in some master's slots.
    for i in 0..3 {
        let args = json!({"tokens": tokens(i), "count": 120, "room": format!("rc-{i}")});
        let v = client(&[&a, &b, &c], "recoverAcross", args).await;
        assert_eq!(v["recoveredFlags"], json!([true, true]), "{v}");
        assert_eq!(v["missing"], json!([]), "{v}");
        assert_eq!(v["duplicates"], 0, "{v}");
    }
    assert_eq!(
        metric(&b, "wsgate_cluster_socketio_recovered_total").await,
        3
    );
    for m in &cluster.masters {
        let left = m.cli(&["--scan", "--pattern", "wsgate:{s:*}"]).unwrap();
        assert_eq!(left.trim(), "", "master {}: {left}", m.port);
    }
}

/// `recoverImpossible` with `missed` events published while the client was away (and a
/// REST push to its user, which must come after the CONNECT answer) and `wait_ms` before it
/// reconnects: `(recovered, same pid, same id)`, with the verdict.
async fn reconnect_after(
    nodes: &[&TestServer; 3],
    round: usize,
    missed: u64,
    wait_ms: u64,
) -> (Value, bool, bool, Value) {
    let v = client(
        nodes,
        "recoverImpossible",
        away(round, missed, wait_ms, true),
    )
    .await;
    assert_eq!(
        v["notes"],
        json!([{"while": "away"}]),
        "the mailbox after the answer: {v}"
    );
    let same_pid = v["before"]["pid"] == v["after"]["pid"];
    let same_id = v["before"]["id"] == v["after"]["id"];
    (v["after"]["recovered"].clone(), same_pid, same_id, v)
}

/// The arguments of `recoverImpossible`.
fn away(round: usize, missed: u64, wait_ms: u64, push: bool) -> Value {
    json!({"tokens": tokens(round), "names": {"bob": format!("bob-{round}")},
        "room": format!("gone-{round}"), "missed": missed, "waitMs": wait_ms, "push": push,
        "apiKey": API_KEY})
}

#[tokio::test]
async fn recovery_on_another_node_is_refused_once_the_stream_was_trimmed_past_the_client() {
    let redis = RedisServer::start();
    let tiny = |c: &mut wsgate::Config| {
        c.room_presence = false;
        c.room_history_size = 4;
    };
    let (a, b, c) = three_nodes(&redis, tiny).await;
    let nodes = [&a, &b, &c];
    // Within the history: recovered on C, with the two it missed.
    let (recovered, same_pid, same_id, v) = reconnect_after(&nodes, 0, 2, 100).await;
    assert_eq!(
        (recovered, same_pid, same_id),
        (json!(true), true, true),
        "{v}"
    );
    assert_eq!(v["got"], json!([1, 2, 3, 4, 5, 100]), "{v}");
    // Ten missed, four kept: the stream no longer holds what came after the client's point.
    // (A new socket's id may equal the old one by chance: ids are per node.)
    let (recovered, same_pid, _, v) = reconnect_after(&nodes, 1, 10, 100).await;
    assert_eq!((recovered, same_pid), (json!(false), false), "{v}");
    assert_eq!(v["got"], json!([1, 2, 3]), "a new socket, in no room: {v}");
}

#[tokio::test]
async fn recovery_on_another_node_is_refused_once_the_record_expired() {
    let redis = RedisServer::start();
    let brief = |c: &mut wsgate::Config| {
        c.room_presence = false;
        c.socketio_recovery = Duration::from_millis(300);
    };
    let (a, b, c) = three_nodes(&redis, brief).await;
    let nodes = [&a, &b, &c];
    // Back within the window: recovered.
    let (recovered, same_pid, _, v) = reconnect_after(&nodes, 0, 1, 50).await;
    assert_eq!((recovered, same_pid), (json!(true), true), "{v}");
    // Past it, Redis let the record go: a new socket.
    // (A new socket's id may equal the old one by chance: ids are per node.)
    let (recovered, same_pid, _, v) = reconnect_after(&nodes, 1, 1, 900).await;
    assert_eq!((recovered, same_pid), (json!(false), false), "{v}");
    let left = redis.cli(&["--scan", "--pattern", "wsgate:{s:*}"]).unwrap();
    assert_eq!(left.trim(), "", "expired: {left}");
}

#[tokio::test]
async fn socket_io_clients_on_three_nodes_chat_and_a_push_reaches_both_devices() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis, |_| {}).await;
    for (i, (transports, parser, path)) in WAYS.into_iter().enumerate() {
        let ways = format!("{transports:?} {parser}");
        let names: Vec<String> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|n| format!("{n}-s{i}"))
            .collect();
        // dave's native WebSocket on B; his Socket.IO socket will be on A.
        let mut dave = b.client(&names[3], Fmt::Json).await;
        let args = json!({
            "tokens": {"alice": token(&names[0]), "bob": token(&names[1]),
                "carol": token(&names[2]), "dave": token(&names[3])},
            "names": {"carol": names[2], "dave": names[3]},
            "transports": transports, "parser": parser, "path": path, "apiKey": API_KEY});
        let v = client(&[&a, &b, &c], "spread", args).await;
        assert_eq!(v["atBob"], json!({"from": "A"}), "{ways}: {v}");
        assert_eq!(v["atCarol"], json!({"from": "A"}), "{ways}: {v}");
        assert_eq!(v["atAlice"], json!({"from": "B"}), "{ways}: {v}");
        assert_eq!(v["atCarol2"], json!({"from": "B"}), "{ways}: {v}");
        assert_eq!(v["sent"]["type"], "reply", "{ways}: {v}");
        assert_eq!(v["dmData"], "A to C", "{ways}: {v}");
        assert_eq!(v["pushData"], json!({"via": "C"}), "{ways}: {v}");
        // Socket ids name their node: unique in the cluster, as the apps keying on them expect.
        let ids: std::collections::HashSet<&str> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 4, "{ways}: {v}");
        assert_eq!(
            v["rest"]["offline"],
            json!([]),
            "online on other nodes: {ways}: {v}"
        );
        assert_eq!(
            v["transport"],
            transports[transports.len() - 1],
            "{ways}: {v}"
        );
        let ev = dave.recv().await;
        assert_eq!(
            (&ev["event"], &ev["data"]),
            (&json!("notification"), &json!({"via": "C"})),
            "{ways}: {ev}"
        );
        dave.close().await;
    }
}

#[tokio::test]
async fn another_users_connect_with_a_pid_neither_recovers_nor_spends_it() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis, |c| c.room_presence = false).await;
    let args = json!({"tokens": tokens(0), "room": "foreign"});
    let v = client(&[&a, &b, &c], "foreignPid", args).await;
    assert_eq!(v["stolen"]["recovered"], false, "{v}");
    assert_ne!(v["stolen"]["pid"], v["before"]["pid"], "{v}");
    assert_eq!(
        v["after"]["recovered"], true,
        "its own client still recovers: {v}"
    );
    assert_eq!(v["after"]["pid"], v["before"]["pid"], "{v}");
    assert_eq!(v["got"], json!([1, 2]), "{v}");
}

/// Nodes A and B on `redis`, and C on it through `proxy` with `CLUSTER_TIMEOUT` `timeout`.
async fn c_behind(redis: &RedisServer, proxy: &Proxy, timeout: Duration) -> [TestServer; 3] {
    let quiet = |c: &mut wsgate::Config| c.room_presence = false;
    let (a, b) = (node_with(redis, quiet).await, node_with(redis, quiet).await);
    let c = node_on(format!("redis://127.0.0.1:{}", proxy.port), |c| {
        quiet(c);
        c.cluster_timeout = timeout;
    })
    .await;
    [a, b, c]
}

/// Starts `scenario` over `nodes`, and stalls `proxy` once A kept the client's socket.
async fn stall_after_the_cut(
    nodes: &[TestServer; 3],
    proxy: &Proxy,
    scenario: &'static str,
    mut args: Value,
) -> tokio::task::JoinHandle<node::NodeRun> {
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    args["urls"] = json!(urls);
    let script =
        tokio::spawn(async move { node::run("cluster.mjs", &[scenario, &args.to_string()]).await });
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&nodes[0], "wsgate_cluster_socketio_kept_total").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never kept the socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.stall();
    script
}

/// The verdict of a script that ran to its end.
async fn verdict(script: tokio::task::JoinHandle<node::NodeRun>) -> Value {
    let run = script.await.unwrap();
    let v = run.verdict();
    assert!(run.success, "{v}\n{}", run.stderr);
    v
}

#[tokio::test]
async fn a_connect_whose_node_cannot_reach_redis_gets_a_new_socket_within_the_timeout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let nodes = c_behind(&redis, &proxy, Duration::from_millis(500)).await;
    let args = away(0, 1, 1500, false);
    let v = verdict(stall_after_the_cut(&nodes, &proxy, "recoverImpossible", args).await).await;
    assert_eq!(v["after"]["recovered"], false, "{v}");
    assert_ne!(v["after"]["pid"], v["before"]["pid"], "{v}");
    // CLUSTER_TIMEOUT is 500 ms: connected a little after it, not stuck.
    let ms = v["connectMs"].as_u64().unwrap();
    assert!((400..3000).contains(&ms), "the CONNECT took {ms} ms: {v}");
    proxy.heal();
}

#[tokio::test]
async fn a_record_taken_for_a_connection_that_left_before_its_answer_is_kept_again() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let nodes = c_behind(&redis, &proxy, Duration::from_millis(1500)).await;
    let args = json!({"tokens": tokens(0), "room": "left", "waitMs": 1000, "againMs": 1200});
    let script = stall_after_the_cut(&nodes, &proxy, "leaveWhileAsking", args).await;
    // The client is at C from ~1 s and gone ~50 ms later; Redis answers C's take at ~1.4 s,
    // within its timeout, after the connection left.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    proxy.heal();
    let v = verdict(script).await;
    assert_eq!(v["answeredOnC"], false, "{v}");
    assert_eq!(v["after"]["recovered"], true, "recovered on B: {v}");
    assert_eq!(v["after"]["pid"], v["before"]["pid"], "{v}");
    assert_eq!(v["got"], json!([1, 2]), "{v}");
    let kept = metric(&nodes[2], "wsgate_cluster_socketio_kept_total").await;
    assert_eq!(kept, 1, "kept again by C");
}
