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
