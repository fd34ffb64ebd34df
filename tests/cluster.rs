//! Cluster mode over a real `redis-server` (`CLUSTER_REDIS_URL`): several real nodes on
//! loopback share rooms, users and streams. A room event reaches its members on every node
//! in one offset order; a node hosting no member of a room receives nothing for it; private
//! messages reach every device of their user, whichever node it is on, and wait in Redis for
//! an offline user; a client resumes on another node with no gap and no duplicate; history
//! reads the same everywhere; and with Redis gone, what needs it is refused (never accepted
//! and dropped), `/readyz` says degraded, and everything comes back with Redis.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::cluster::{connected, join, metric, node, three_nodes};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// Waits until metric `name` on `server` reads `value`; then checks it stays so a while.
async fn settles(server: &TestServer, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = metric(server, name).await;
        if got == value {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {got}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metric(server, name).await, value, "{name} moved on");
}

/// Reads events of `room` until `n` of them came (and the reply `id`, if given, too): their
/// offsets, and the reply.
async fn read_until(
    c: &mut Client,
    room: &str,
    n: usize,
    id: Option<u64>,
) -> (Vec<u64>, Option<Value>) {
    let mut offsets = Vec::new();
    let mut reply = None;
    while offsets.len() < n || (id.is_some() && reply.is_none()) {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("event") if m["room"] == room => offsets.push(m["offset"].as_u64().unwrap()),
            Some("reply") if Some(m["id"].as_u64().unwrap()) == id => reply = Some(m),
            _ => panic!("unexpected {m}"),
        }
    }
    (offsets, reply)
}

/// `user` on `server` publishes `n` events to `room` (joined first), one every `gap`.
fn publisher(
    server: &TestServer,
    user: &str,
    room: &'static str,
    n: u64,
    gap: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = server.url(&format!("token={}&format=json", token(user)));
    tokio::spawn(async move {
        let mut c = Client::connect(&url, Fmt::Json).await.unwrap();
        c.recv().await;
        join(&mut c, room, 1).await;
        for i in 0..n {
            c.send(
                json!({"cmd": "publish", "id": 10 + i, "room": room, "event": "tick", "data": i}),
            )
            .await;
            // Other publishers' events may come first.
            loop {
                let m = c.recv().await;
                if m["type"] == "event" {
                    continue;
                }
                assert_eq!(
                    (&m["type"], &m["id"]),
                    (&json!("reply"), &json!(10 + i)),
                    "{m}"
                );
                break;
            }
            tokio::time::sleep(gap).await;
        }
    })
}

#[tokio::test]
async fn room_events_reach_members_on_every_node_in_one_offset_order() {
    let redis = RedisServer::start();
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let fmt = if i % 2 == 0 { Fmt::Json } else { Fmt::MsgPack };
        let mut c = n.client(&format!("member{i}"), fmt).await;
        join(&mut c, "lobby", 1).await;
        members.push(c);
    }
    // Two publishers on two nodes at once: one order for everyone, the stream's.
    const N: u64 = 40;
    let a = publisher(&nodes[0], "pa", "lobby", N, Duration::from_millis(1));
    let b = publisher(&nodes[1], "pb", "lobby", N, Duration::from_millis(1));
    for m in &mut members {
        let (offsets, _) = read_until(m, "lobby", 2 * N as usize, None).await;
        assert_eq!(
            offsets,
            (1..=2 * N).collect::<Vec<_>>(),
            "in offset order, none twice"
        );
    }
    a.await.unwrap();
    b.await.unwrap();
}

#[tokio::test]
async fn a_node_hosting_no_member_of_a_room_receives_nothing_for_it() {
    let redis = RedisServer::start();
    // Room events only: no presence announcements to count.
    let quiet = |c: &mut wsgate::Config| c.room_presence = false;
    let (a, b, c) = three_nodes(&redis, quiet).await;
    let mut ann = a.client("ann", Fmt::Json).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    // On the third node, a connected user in no room.
    let _carl = c.client("carl", Fmt::Json).await;
    join(&mut ann, "r1", 1).await;
    join(&mut ben, "r1", 1).await;
    const N: u64 = 25;
    for i in 0..N {
        ann.ok(
            json!({"cmd": "publish", "room": "r1", "event": "e", "data": i}),
            10 + i,
        )
        .await;
    }
    let (offsets, _) = read_until(&mut ben, "r1", N as usize, None).await;
    assert_eq!(offsets.len(), N as usize);
    // One envelope per event, whatever the number of nodes.
    settles(&a, "wsgate_cluster_published_total", N).await;
    // Ann's node gets its own events back (that is how it delivers them in order).
    settles(&a, "wsgate_cluster_received_total", N).await;
    settles(&b, "wsgate_cluster_received_total", N).await;
    // Interest routing: nothing for a room with no member there.
    settles(&c, "wsgate_cluster_received_total", 0).await;
    for n in [&a, &b, &c] {
        assert_eq!(
            metric(n, "wsgate_cluster_redis_up").await,
            1,
            "{:?}",
            n.get("/readyz").await
        );
    }
}

/// A connection's id (`welcome`'s `conn`, which a Socket.IO socket's `socket.id` is too) names
/// its node: two nodes' first connections on the same shard do not share one.
#[tokio::test]
async fn connection_ids_are_unique_across_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let on_a = a.client_on_shard("ann", Fmt::Json, 0).await;
    let on_b = b.client_on_shard("ann", Fmt::Json, 0).await;
    let (ca, cb) = (
        on_a.welcome["conn"].as_str().unwrap(),
        on_b.welcome["conn"].as_str().unwrap(),
    );
    assert_ne!(ca, cb);
    for conn in [ca, cb] {
        let parts: Vec<&str> = conn.split('.').collect();
        assert_eq!(
            (parts.len(), parts[0].len(), parts[1]),
            (3, 8, "0"),
            "{conn}"
        );
    }
    // One node alone keeps its shorter ids.
    let alone = start_server(|_| {});
    let c = alone.client_on_shard("ann", Fmt::Json, 0).await;
    assert_eq!(
        c.welcome["conn"].as_str().unwrap().split('.').count(),
        2,
        "{}",
        c.welcome
    );
}

#[tokio::test]
async fn private_messages_reach_every_device_of_their_user_on_any_node() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut phone = a.client("bob", Fmt::Json).await;
    let mut laptop = b.client("bob", Fmt::MsgPack).await;
    let api = Api::new(&c);
    let (s, body) = api
        .post(
            "/api/v1/push/users",
            json!({"userId": "bob", "event": "notification", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // Online on other nodes: not offline, not queued; connections counted on this node only.
    assert_eq!(body, json!({"delivered": 0, "offline": [], "queued": []}));
    let mut ann = c.client("ann", Fmt::Json).await;
    ann.ok(
        json!({"cmd": "send", "to": "bob", "event": "dm", "data": {"n": 2}}),
        1,
    )
    .await;
    for device in [&mut phone, &mut laptop] {
        for (offset, n) in [(1, 1), (2, 2)] {
            let ev = device.recv().await;
            assert_eq!(
                (ev["offset"].as_u64(), &ev["data"]),
                (Some(offset), &json!({"n": n})),
                "{ev}"
            );
        }
    }
    let (s, body) = api
        .post(
            "/api/v1/push/users",
            json!({"userId": "nobody", "event": "notification", "data": 1}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"delivered": 0, "offline": ["nobody"], "queued": ["nobody"]})
    );
}

#[tokio::test]
async fn an_offline_users_mailbox_waits_in_redis_for_whichever_node_it_comes_back_to() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let api = Api::new(&a);
    let push = |n: u64| json!({"userId": "bob", "event": "notification", "data": {"n": n}});
    let (_, body) = api.post("/api/v1/push/users", push(1)).await;
    assert_eq!(body["queued"], json!(["bob"]), "{body}");
    let mut bob = b.client("bob", Fmt::Json).await;
    let ev = bob.recv().await;
    assert_eq!(
        (ev["offset"].as_u64(), &ev["data"]),
        (Some(1), &json!({"n": 1})),
        "{ev}"
    );
    // It acks: from now on what it does not ack comes again.
    bob.ok(json!({"cmd": "ack", "offset": 1}), 1).await;
    bob.close().await;
    api.post("/api/v1/push/users", push(2)).await;
    api.post("/api/v1/push/users", push(3)).await;
    let mut bob = c.client("bob", Fmt::MsgPack).await;
    for n in [2, 3] {
        let ev = bob.recv().await;
        assert_eq!(
            (ev["offset"].as_u64(), &ev["data"]),
            (Some(n), &json!({"n": n})),
            "{ev}"
        );
    }
    bob.ok(json!({"cmd": "ack", "offset": 2}), 1).await;
    bob.close().await;
    // Unacknowledged, 3 comes again, on yet another node; 1 and 2 do not.
    let mut bob = a.client("bob", Fmt::Json).await;
    let ev = bob.recv().await;
    assert_eq!(ev["offset"], 3, "{ev}");
    let quiet = tokio::time::timeout(Duration::from_millis(300), bob.next_message()).await;
    assert!(quiet.is_err(), "nothing more: {quiet:?}");
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_no_gap_and_no_duplicate() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    const N: u64 = 200;
    let mut sub = a.client("sub", Fmt::MsgPack).await;
    let joined = join(&mut sub, "live", 1).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let feed = publisher(&b, "pub", "live", N, Duration::from_millis(2));
    let (seen, _) = read_until(&mut sub, "live", 20, None).await;
    let last = *seen.last().unwrap();
    sub.close().await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut back = c.client("sub", Fmt::Json).await;
    back.send(
        json!({"cmd": "join", "id": 2, "room": "live", "since": {"epoch": epoch, "offset": last}}),
    )
    .await;
    let (rest, reply) = read_until(&mut back, "live", (N - last) as usize, Some(2)).await;
    feed.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(
        (&reply["recovered"], &reply["epoch"]),
        (&json!(true), &json!(epoch)),
        "{reply}"
    );
    let all: Vec<u64> = seen.iter().chain(&rest).copied().collect();
    assert_eq!(all, (1..=N).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[tokio::test]
async fn history_reads_the_same_on_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut ann = a.client("ann", Fmt::Json).await;
    join(&mut ann, "kept", 1).await;
    for i in 1..=5 {
        ann.ok(
            json!({"cmd": "publish", "room": "kept", "event": "e", "data": i}),
            10 + i,
        )
        .await;
    }
    let (s, body) = Api::new(&b)
        .get("/api/v1/rooms/kept/messages?limit=3")
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        offsets(&body["messages"]),
        vec![3, 4, 5],
        "the newest, oldest first"
    );
    let mut ben = b.client("ben", Fmt::MsgPack).await;
    join(&mut ben, "kept", 1).await;
    let r = ben
        .call(
            json!({"cmd": "history", "room": "kept", "after": 1, "limit": 2}),
            2,
        )
        .await;
    assert_eq!(offsets(&r["messages"]), vec![2, 3], "{r}");
    let (s, _) = Api::new(&b).get("/api/v1/rooms/never/messages").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn without_redis_what_needs_it_is_refused_and_everything_comes_back_with_it() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut ann = a.client("ann", Fmt::Json).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    let epoch = join(&mut ann, "r", 1).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    join(&mut ben, "r", 1).await;
    ann.ok(
        json!({"cmd": "publish", "room": "r", "event": "e", "data": 1}),
        2,
    )
    .await;
    assert_eq!(read_until(&mut ben, "r", 1, None).await.0, vec![1]);

    redis.kill();
    let ready = || async { a.get("/readyz").await };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready().await.1.contains("degraded") {
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&a, "wsgate_cluster_redis_up").await, 0);
    let r = ann
        .call(
            json!({"cmd": "publish", "room": "r", "event": "e", "data": 2}),
            3,
        )
        .await;
    assert_eq!(code(&r), "cluster.unavailable", "{r}");
    let (s, body) = Api::new(&a)
        .post(
            "/api/v1/push/users",
            json!({"userId": "ben", "event": "n", "data": 1}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("cluster.unavailable")),
        "{body}"
    );
    // What needs no Redis is still served.
    ann.ok(json!({"cmd": "ping"}), 4).await;

    // Back, empty (no persistence): a new epoch, and the nodes resubscribe on their own.
    redis.restart();
    connected(&a).await;
    connected(&b).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut id = 10;
    let ev = loop {
        // Until ben's node has its subscription back.
        id += 1;
        ann.ok(
            json!({"cmd": "publish", "room": "r", "event": "e", "data": id}),
            id,
        )
        .await;
        match tokio::time::timeout(Duration::from_millis(200), ben.recv()).await {
            Ok(ev) => break ev,
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "never resubscribed"),
        }
    };
    assert_eq!(ev["type"], "event", "{ev}");
    let mut again = b.client("ben", Fmt::Json).await;
    let r = again
        .call(
            json!({"cmd": "join", "room": "r", "since": {"epoch": epoch, "offset": 1}}),
            5,
        )
        .await;
    assert_eq!(r["recovered"], false, "Redis lost the stream: {r}");
    assert_ne!(r["epoch"], json!(epoch), "{r}");
}
