//! Cluster mode under faults, over real Redis servers and real nodes: a Redis Cluster of 3
//! masters whose shards each carry some rooms' and users' channels (sharded pub/sub across
//! shards); a node killed with `kill -9` under load, whose clients resume on another node
//! losing nothing acknowledged; a stalled, then cut, link between a node and Redis (bounded
//! commands in flight, no stuck shard, everything back after it heals); and a publish made
//! while Redis is briefly down (answered OK only if it ran, and then delivered).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::cluster::{connected, events, join, metric};
use common::proxy::Proxy;
use common::redis::{RedisCluster, RedisServer};
use common::*;
use serde_json::{json, Value};

/// A node on the Redis at `url`, connected to it.
async fn node(url: &str, timeout: Duration, buffer: usize) -> TestServer {
    let url = url.to_owned();
    let server = start_api_server(move |c| {
        c.cluster_redis_url = Some(url);
        c.cluster_timeout = timeout;
        c.cluster_buffer = buffer;
    });
    connected(&server).await;
    server
}

/// `n` names `<stem><i>` whose channels (`wsgate:{<tag>:<name>}`) land on `n` different
/// masters of `cluster`.
fn spread(cluster: &RedisCluster, stem: &str, tag: &str, n: usize) -> Vec<String> {
    let mut by_master = BTreeMap::new();
    for i in 0..1000 {
        let name = format!("{stem}{i}");
        let master = cluster.master_of(&format!("{tag}:{name}"));
        by_master.entry(master).or_insert(name);
        if by_master.len() == n {
            return by_master.into_values().collect();
        }
    }
    panic!("no {n} names on {n} masters");
}

#[tokio::test]
async fn on_a_redis_cluster_every_shard_carries_rooms_users_resumes_and_history() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let timeout = Duration::from_millis(500);
    let nodes = [
        node(&url, timeout, 10_000).await,
        node(&url, timeout, 10_000).await,
        node(&url, timeout, 10_000).await,
    ];
    let rooms = spread(&cluster, "room", "r", 3);
    let users = spread(&cluster, "user", "u", 3);

    // A member of every room on every node.
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let fmt = if i % 2 == 0 { Fmt::Json } else { Fmt::MsgPack };
        let mut c = n.client(&format!("member{i}"), fmt).await;
        for (j, room) in rooms.iter().enumerate() {
            join(&mut c, room, 1 + j as u64).await;
        }
        members.push(c);
    }
    // Each room's channel is subscribed, on its own master, by all three nodes.
    for room in &rooms {
        let channel = format!("wsgate:{{r:{room}}}");
        let master = cluster.master_of(&format!("r:{room}"));
        let m = cluster.masters.iter().find(|m| m.port == master).unwrap();
        let counts = m.cli(&["PUBSUB", "SHARDNUMSUB", &channel]).unwrap();
        assert_eq!(
            counts.lines().nth(1).map(str::trim),
            Some("3"),
            "{channel} on {master}: {counts}"
        );
    }
    // Published on one node, interleaved over the rooms: every member gets each room's
    // events in its offset order.
    const N: u64 = 10;
    let mut publisher = nodes[0].client("pub", Fmt::Json).await;
    for (j, room) in rooms.iter().enumerate() {
        join(&mut publisher, room, 50 + j as u64).await;
    }
    for i in 0..N {
        for (j, room) in rooms.iter().enumerate() {
            let r = publisher
                .call(
                    json!({"cmd": "publish", "room": room, "event": "e", "data": i}),
                    100 + i * 3 + j as u64,
                )
                .await;
            assert_eq!(
                (&r["type"], &r["offset"]),
                (&json!("reply"), &json!(i + 1)),
                "{r}"
            );
        }
    }
    for m in &mut members {
        let mut by_room: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for _ in 0..N * 3 {
            let ev = m.recv().await;
            assert_eq!(ev["type"], "event", "{ev}");
            let room = ev["room"].as_str().unwrap().to_owned();
            by_room
                .entry(room)
                .or_default()
                .push(ev["offset"].as_u64().unwrap());
        }
        for room in &rooms {
            assert_eq!(by_room[room], (1..=N).collect::<Vec<_>>(), "{room}");
        }
    }

    // Private messages to users on every shard, each with a device on two nodes.
    let mut devices = Vec::new();
    for user in &users {
        devices.push(nodes[1].client(user, Fmt::Json).await);
        devices.push(nodes[2].client(user, Fmt::MsgPack).await);
    }
    for (i, user) in users.iter().enumerate() {
        publisher
            .ok(
                json!({"cmd": "send", "to": user, "event": "dm", "data": i}),
                200 + i as u64,
            )
            .await;
    }
    for (k, d) in devices.iter_mut().enumerate() {
        let ev = d.recv().await;
        assert_eq!(
            (&ev["event"], &ev["data"]),
            (&json!("dm"), &json!(k / 2)),
            "{ev}"
        );
    }

    // Resume on another node, in every room; history reads alike everywhere.
    let mut back = nodes[2].client("member0", Fmt::Json).await;
    members.swap_remove(0).close().await;
    for (j, room) in rooms.iter().enumerate() {
        publisher
            .ok(
                json!({"cmd": "publish", "room": room, "event": "e", "data": "late"}),
                300 + j as u64,
            )
            .await;
        let (s, page) = Api::new(&nodes[1])
            .get(&format!("/api/v1/rooms/{room}/messages?limit=3"))
            .await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(offsets(&page["messages"]), vec![N - 1, N, N + 1], "{room}");
        let h = publisher
            .call(
                json!({"cmd": "history", "room": room, "after": N - 2, "limit": 2}),
                350 + j as u64,
            )
            .await;
        assert_eq!(offsets(&h["messages"]), vec![N - 1, N], "{h}");
        back.send(json!({"cmd": "join", "id": 400 + j as u64, "room": room,
            "since": {"epoch": h["epoch"], "offset": N - 2}}))
            .await;
        // The missed events come before the reply.
        let got = events(&mut back, room, 3).await;
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![N - 1, N, N + 1]
        );
        let reply = back.recv().await;
        assert_eq!(
            (&reply["type"], &reply["recovered"]),
            (&json!("reply"), &json!(true)),
            "{reply}"
        );
    }
}

/// Reads `c`'s events of `room` until the connection breaks: their offsets and data.
async fn until_closed(mut c: Client, room: &'static str) -> Vec<(u64, Value)> {
    let mut seen = Vec::new();
    while let Ok(m) = c.next_message().await {
        assert!(m["type"] == "event" && m["room"] == room, "unexpected {m}");
        seen.push((m["offset"].as_u64().unwrap(), m["data"].clone()));
    }
    seen
}

/// `c` publishes to `room` (joined already) one event after another, `data` made of `tag`
/// and a count, for at most `n` events or until its connection breaks: what was answered
/// with a reply (offset, data).
/// Nothing else may come but events.
async fn publish_until(mut c: Client, room: &str, tag: &str, n: u64) -> Vec<(u64, Value)> {
    let mut acked = Vec::new();
    for i in 0..n {
        let data = json!({tag: i});
        let cmd = json!({"cmd": "publish", "id": 10 + i, "room": room, "event": "e", "data": data});
        if c.ws.send(WsMessage::text(cmd.to_string())).await.is_err() {
            break;
        }
        // The other publisher's events may come first.
        let reply = loop {
            match c.next_message().await {
                Ok(m) if m["type"] == "event" => continue,
                other => break other,
            }
        };
        match reply {
            Ok(r) if r["id"] == 10 + i && r["type"] == "reply" => {
                acked.push((r["offset"].as_u64().unwrap(), data))
            }
            Ok(other) => panic!("unexpected {other}"),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    acked
}

use futures_util::SinkExt;

#[tokio::test]
async fn a_node_killed_under_load_loses_nothing_acknowledged() {
    const ROOM: &str = "load";
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--cluster-redis-url",
        &url,
        "--cluster-timeout",
        "1s",
        // Load: publishers far past the default command rate.
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
    ];
    let mut victim = Binary::start(&args);
    let (b, c) = (Binary::start(&args), Binary::start(&args));
    for n in [&*victim, &*b, &*c] {
        connected(n).await;
    }
    let mut readers = Vec::new();
    let mut epoch = Value::Null;
    for i in 0..4 {
        let fmt = if i % 2 == 0 { Fmt::Json } else { Fmt::MsgPack };
        let user = format!("member{i}");
        let mut m = victim.client(&user, fmt).await;
        epoch = join(&mut m, ROOM, 1).await["epoch"].clone();
        readers.push((user, fmt, tokio::spawn(until_closed(m, ROOM))));
    }
    // Load from two publishers: one on another node, one on the node that dies.
    let mut far = b.client("far", Fmt::Json).await;
    join(&mut far, ROOM, 1).await;
    let far = tokio::spawn(publish_until(far, ROOM, "far", 400));
    let mut near = victim.client("near", Fmt::Json).await;
    join(&mut near, ROOM, 1).await;
    let near = tokio::spawn(publish_until(near, ROOM, "near", 100_000));
    tokio::time::sleep(Duration::from_millis(400)).await;
    victim.kill_9();

    let near = near.await.unwrap();
    assert!(
        near.len() > 10,
        "the dying node was under load: {}",
        near.len()
    );
    let mut members = Vec::new();
    for (user, fmt, reader) in readers {
        let seen = reader.await.unwrap();
        assert!(!seen.is_empty(), "{user} got events before the kill");
        // Reconnects at once, to another node, and resumes from what it saw.
        let mut back = c.client(&user, fmt).await;
        let since = json!({"epoch": epoch, "offset": seen.last().unwrap().0});
        back.send(json!({"cmd": "join", "id": 2, "room": ROOM, "since": since}))
            .await;
        members.push((user, seen, back));
    }
    let far = far.await.unwrap();
    assert_eq!(
        far.len(),
        400,
        "the other node's publisher was not disturbed"
    );
    let last = far
        .iter()
        .chain(&near)
        .map(|(o, _)| *o)
        .max()
        .unwrap()
        .max(far.last().unwrap().0);
    for (user, mut seen, mut back) in members {
        let mut replied = None;
        while replied.is_none() || seen.last().unwrap().0 < last {
            let m = back.recv().await;
            match m["type"].as_str() {
                Some("event") if m["room"] == ROOM => {
                    seen.push((m["offset"].as_u64().unwrap(), m["data"].clone()))
                }
                Some("reply") if m["id"] == 2 => replied = Some(m),
                _ => panic!("unexpected {m}"),
            }
        }
        let replied = replied.unwrap();
        assert_eq!(replied["recovered"], true, "{user}: {replied}");
        let offsets: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            offsets,
            (1..=last).collect::<Vec<_>>(),
            "{user}: no gap, no duplicate"
        );
        // Every acknowledged publish, as it was published.
        let got: BTreeMap<u64, Value> = seen.into_iter().collect();
        for (offset, data) in far.iter().chain(&near) {
            assert_eq!(got.get(offset), Some(data), "{user} at {offset}");
        }
    }
}
