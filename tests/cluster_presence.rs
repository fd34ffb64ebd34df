//! Cluster-wide presence over a real `redis-server` and several real nodes: a user's tabs on
//! two nodes join a room once and leave it with the last; watchers on one node hear of a
//! user on another, online once, offline only after the grace (a reconnect to another node
//! within it does not flap); a node killed with SIGKILL has its users taken offline by the
//! others after `CLUSTER_NODE_TIMEOUT`; the REST listings answer for every node.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// A node of the cluster on `redis`, connected to it.
async fn node(redis: &RedisServer, grace: Duration) -> TestServer {
    let server = start_node(redis, grace);
    ready(&server).await;
    server
}

fn start_node(redis: &RedisServer, grace: Duration) -> TestServer {
    let url = redis.url();
    start_api_server(move |c| {
        c.cluster_redis_url = Some(url);
        c.cluster_timeout = Duration::from_millis(500);
        c.cluster_node_timeout = Duration::from_millis(800);
        c.presence_grace = grace;
    })
}

/// Waits until `server` is connected to Redis.
async fn ready(server: &Remote) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.get("/readyz").await.1.contains("degraded") {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `api` until `user` holds `n` connections on every node together.
async fn wait_user(api: &Api, user: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get(&format!("/api/v1/users/{user}")).await.1["connections"] != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} never had {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The event `presence.<kind>` of `user` in `room`, as it goes over the wire.
fn presence(kind: &str, room: &str, user: &str) -> Value {
    json!({"type": "event", "event": format!("presence.{kind}"), "room": room, "data": {"user": user}})
}

fn status(kind: &str, user: &str) -> Value {
    json!({"type": "event", "event": format!("user.{kind}"), "data": {"user": user}})
}

async fn join(c: &mut Client, room: &str, id: u64, presence: bool) {
    let r = c
        .call(
            json!({"cmd": "join", "room": room, "presence": presence}),
            id,
        )
        .await;
    assert_eq!(r["type"], "reply", "{r}");
}

/// Asserts that nothing arrives on `c` within `window`.
async fn nothing_within(c: &mut Client, window: Duration) {
    use futures_util::StreamExt;
    if let Ok(Some(Ok(m))) = tokio::time::timeout(window, c.ws.next()).await {
        panic!("expected nothing, got {m:?}");
    }
}

#[tokio::test]
async fn three_tabs_on_two_nodes_join_once_and_leave_with_the_last() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(&redis, Duration::ZERO).await,
        node(&redis, Duration::ZERO).await,
    );
    let api_b = Api::new(&b);
    // Followers on both nodes.
    let mut wa = a.client("wendy", Fmt::Json).await;
    let mut wb = b.client("walt", Fmt::MsgPack).await;
    join(&mut wa, "lobby", 1, true).await;
    // Known in Redis before walt joins: walt hears nothing of it.
    api_b.wait_connections("lobby", "wendy", 1).await;
    join(&mut wb, "lobby", 1, true).await;
    // Each hears the other join (they are users of their own).
    assert_eq!(wa.recv().await, presence("join", "lobby", "walt"));

    let mut tab1 = a.client("bob", Fmt::Json).await;
    let mut tab2 = b.client("bob", Fmt::Json).await;
    let mut tab3 = a.client("bob", Fmt::Json).await;
    join(&mut tab1, "lobby", 1, false).await;
    assert_eq!(wa.recv().await, presence("join", "lobby", "bob"));
    assert_eq!(wb.recv().await, presence("join", "lobby", "bob"));
    join(&mut tab2, "lobby", 1, false).await;
    join(&mut tab3, "lobby", 1, false).await;
    api_b.wait_connections("lobby", "bob", 3).await;
    let (_, page) = api_b.get("/api/v1/rooms/lobby/members").await;
    let users: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob", "walt", "wendy"], "{page}");
    let (_, room) = api_b.get("/api/v1/rooms/lobby").await;
    assert_eq!(room["members"], 5, "{room}");
    // The `members` command on a node answers for both.
    let r = wb.call(json!({"cmd": "members", "room": "lobby"}), 9).await;
    assert_eq!(r["members"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["members"][0]["connections"], 3, "{r}");

    tab1.close().await;
    tab2.close().await;
    api_b.wait_connections("lobby", "bob", 1).await;
    tab3.close().await;
    assert_eq!(wa.recv().await, presence("leave", "lobby", "bob"));
    assert_eq!(wb.recv().await, presence("leave", "lobby", "bob"));
    // Nothing else came for bob: the next change is the sentinel's.
    let mut carl = b.client("carl", Fmt::Json).await;
    join(&mut carl, "lobby", 1, false).await;
    assert_eq!(wa.recv().await, presence("join", "lobby", "carl"));
    assert_eq!(wb.recv().await, presence("join", "lobby", "carl"));
}

#[tokio::test]
async fn a_user_on_another_node_is_online_once_and_offline_after_the_grace() {
    let redis = RedisServer::start();
    let grace = Duration::from_millis(600);
    let (a, b, c) = (
        node(&redis, grace).await,
        node(&redis, grace).await,
        node(&redis, grace).await,
    );
    let phone = b.client("bob", Fmt::Json).await;
    let api = Api::new(&a);
    wait_user(&api, "bob", 1).await;
    let mut watcher = a.client("wendy", Fmt::MsgPack).await;
    let r = watcher
        .call(json!({"cmd": "watch", "users": ["bob", "carl"]}), 1)
        .await;
    assert_eq!(
        r,
        json!({"type": "reply", "id": 1, "users": [
            {"user": "bob", "online": true},
            {"user": "carl", "online": false},
        ]})
    );
    // A second device on a third node: still online once, nothing said.
    let laptop = c.client("bob", Fmt::Json).await;
    let api = Api::new(&a);
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get("/api/v1/users/bob").await.1["connections"] != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never counted twice"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, p) = api.get("/api/v1/users/bob/presence").await;
    assert_eq!(
        p,
        json!({"userId": "bob", "online": true, "connections": 2})
    );
    phone.close().await;
    laptop.close().await;
    // Back on the first node within the grace: no flap.
    let phone = a.client("bob", Fmt::Json).await;
    nothing_within(&mut watcher, grace + Duration::from_millis(300)).await;
    phone.close().await;
    let t = tokio::time::Instant::now();
    assert_eq!(watcher.recv().await, status("offline", "bob"));
    assert!(t.elapsed() >= grace / 2, "offline only after the grace");
    let (_, p) = api.get("/api/v1/users/bob/presence").await;
    assert_eq!(
        p,
        json!({"userId": "bob", "online": false, "connections": 0})
    );
    // A user that comes online on another node is announced.
    let _carl = c.client("carl", Fmt::Json).await;
    assert_eq!(watcher.recv().await, status("online", "carl"));
}

/// The real binary as a node of the cluster, in a child process.
struct ChildNode {
    child: Child,
    addr: std::net::SocketAddr,
}

impl ChildNode {
    fn start(redis: &RedisServer) -> ChildNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["--host", "127.0.0.1", "--port", "0", "--store", "memory"])
            .env("JWT_SECRET", SECRET)
            .env("CLUSTER_REDIS_URL", redis.url())
            .env("CLUSTER_NODE_TIMEOUT", "800ms")
            .env("PRESENCE_GRACE", "0s")
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env_remove("API_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        ChildNode { child, addr }
    }

    /// `kill -9`: nothing is cleaned up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_killed_node_has_its_users_leave_and_go_offline_after_the_timeout() {
    let redis = RedisServer::start();
    let a = node(&redis, Duration::ZERO).await;
    let api = Api::new(&a);
    let mut doomed = ChildNode::start(&redis);
    let remote = Remote { addr: doomed.addr };
    ready(&remote).await;
    let mut kate = remote.client("kate", Fmt::Json).await;
    join(&mut kate, "lobby", 1, false).await;
    wait_user(&api, "kate", 1).await;

    let mut watcher = a.client("wendy", Fmt::Json).await;
    join(&mut watcher, "lobby", 1, true).await;
    let r = watcher
        .call(json!({"cmd": "watch", "users": ["kate"]}), 2)
        .await;
    assert_eq!(r["users"], json!([{"user": "kate", "online": true}]), "{r}");
    api.wait_connections("lobby", "kate", 1).await;
    let (_, users) = api.get("/api/v1/users").await;
    assert_eq!(
        users["users"],
        json!([{"userId": "kate", "connections": 1}, {"userId": "wendy", "connections": 1}]),
        "{users}"
    );

    doomed.kill();
    let t = tokio::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(watcher.recv().await);
    }
    assert!(
        got.contains(&presence("leave", "lobby", "kate"))
            && got.contains(&status("offline", "kate")),
        "{got:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "not before the timeout"
    );
    let (_, users) = api.get("/api/v1/users").await;
    assert_eq!(
        users["users"],
        json!([{"userId": "wendy", "connections": 1}])
    );
    let (_, p) = api.get("/api/v1/users/kate/presence").await;
    assert_eq!(p["online"], false);
    // Its record is gone with it.
    let beats = redis.cli(&["ZCARD", "wsgate:{n}:beats"]).unwrap();
    assert_eq!(beats.trim(), "1", "only the living node beats");
}

#[tokio::test]
async fn rooms_users_and_stats_answer_for_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(&redis, Duration::ZERO).await,
        node(&redis, Duration::ZERO).await,
    );
    let mut ann = a.client("ann", Fmt::Json).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    let mut ben2 = a.client("ben", Fmt::Json).await;
    join(&mut ann, "r1", 1, false).await;
    join(&mut ben, "r2", 1, false).await;
    join(&mut ben2, "r2", 1, false).await;
    let api = Api::new(&a);
    api.wait_connections("r2", "ben", 2).await;
    let (_, rooms) = api.get("/api/v1/rooms").await;
    let listed: Vec<(&str, u64)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["roomId"].as_str().unwrap(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("r1", 1), ("r2", 2)], "{rooms}");
    let (_, page) = api.get("/api/v1/users?limit=1").await;
    assert_eq!(page["users"], json!([{"userId": "ann", "connections": 1}]));
    assert_eq!(page["nextCursor"], "ann");
    let (_, page) = api.get("/api/v1/users?cursor=ann").await;
    assert_eq!(page["users"], json!([{"userId": "ben", "connections": 2}]));
    let (_, stats) = Api::new(&b).get("/api/v1/stats").await;
    assert_eq!(
        (stats["users"].as_u64(), stats["rooms"].as_u64()),
        (Some(2), Some(2)),
        "{stats}"
    );
    let (_, user) = Api::new(&b).get("/api/v1/users/ben").await;
    assert_eq!(
        (user["online"].as_bool(), user["connections"].as_u64()),
        (Some(true), Some(2))
    );
}

/// Waits until `server` knows room `room` (`GET /api/v1/rooms/{room}` answers 200).
async fn knows_room(api: &Api, room: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = api.get(&format!("/api/v1/rooms/{room}")).await;
        if status == 200 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never known: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_room_created_on_one_node_is_known_pushed_to_and_closed_on_every_node() {
    let redis = RedisServer::start();
    let a = node(&redis, Duration::ZERO).await;
    let (api_a, b) = (Api::new(&a), node(&redis, Duration::ZERO).await);
    let api_b = Api::new(&b);
    let (s, _) = api_a
        .post(
            "/api/v1/rooms",
            json!({"roomId": "vip", "private": true, "createdBy": "ann", "maxMembers": 5}),
        )
        .await;
    assert_eq!(s, 201);
    let room = knows_room(&api_b, "vip").await;
    assert_eq!(
        (&room["private"], &room["createdBy"], &room["maxMembers"]),
        (&json!(true), &json!("ann"), &json!(5)),
        "{room}"
    );
    // Taken everywhere: a create of that name on the other node conflicts.
    let (s, r) = api_b.post("/api/v1/rooms", json!({"roomId": "vip"})).await;
    assert_eq!(s, 409, "{r}");
    let mut ben = b.client("ben", Fmt::Json).await;
    let r = ben.call(json!({"cmd": "create", "room": "vip"}), 1).await;
    assert_eq!(r["code"], "room.conflict", "{r}");
    // Private on the other node too: ben is let in on node A, then may join on node B.
    let r = ben.call(json!({"cmd": "join", "room": "vip"}), 2).await;
    assert_eq!(r["code"], "room.forbidden", "{r}");
    let (s, _) = api_a
        .post("/api/v1/rooms/vip/members", json!({"userId": "ben"}))
        .await;
    assert_eq!(s, 200);
    // Its connections on node B were added to the room.
    api_a.wait_connections("vip", "ben", 1).await;
    let mut ann = a.client("ann", Fmt::Json).await;
    join(&mut ann, "vip", 1, false).await;
    // A push on node B, to the room created on node A, reaches both.
    let (s, r) = api_b
        .post("/api/v1/push/rooms/vip", json!({"event": "hi", "data": 1}))
        .await;
    assert_eq!(s, 200, "{r}");
    for c in [&mut ann, &mut ben] {
        let ev = c.recv().await;
        assert_eq!(
            (&ev["event"], &ev["room"]),
            (&json!("hi"), &json!("vip")),
            "{ev}"
        );
    }
    // Closed on node A: its member on node B gets room.closed.
    let (s, _) = api_a.delete("/api/v1/rooms/vip").await;
    assert_eq!(s, 200);
    for c in [&mut ann, &mut ben] {
        let ev = c.recv().await;
        assert_eq!(ev["event"], "room.closed", "{ev}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while api_b.get("/api/v1/rooms/vip").await.0 != 404 {
        assert!(tokio::time::Instant::now() < deadline, "still known on B");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A room another node defined before this one started is known at its start.
    let (s, _) = api_a
        .post("/api/v1/rooms", json!({"roomId": "later"}))
        .await;
    assert_eq!(s, 201);
    let c = node(&redis, Duration::ZERO).await;
    knows_room(&Api::new(&c), "later").await;
}
