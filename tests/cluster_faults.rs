//! Cluster mode under faults, over real Redis servers and real nodes: a Redis Cluster of 3
//! masters whose shards each carry some rooms' and users' channels (sharded pub/sub across
//! shards); a node killed with `kill -9` under load, whose clients resume on another node
//! losing nothing acknowledged; a stalled, then cut, link between a node and Redis (bounded
//! commands in flight, no stuck shard, everything back after it heals); a publish made
//! while Redis is briefly down (answered OK only if it ran, and then delivered); and a
//! publish whose answer was lost with its link (never run twice).
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
    let timeout = Duration::from_secs(2);
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
    // Many joins at once on one node: subscribed in batches, each command's channels in one
    // slot (a Redis Cluster refuses an SSUBSCRIBE across slots).
    let joins = (0..16).map(|i| {
        let node = &nodes[1];
        async move {
            let mut c = node.client(&format!("crowd{i}"), Fmt::Json).await;
            let r = c
                .call(json!({"cmd": "join", "room": format!("crowd{i}")}), 1)
                .await;
            assert_eq!(r["type"], "reply", "crowd{i}: {r}");
        }
    });
    futures_util::future::join_all(joins).await;
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
    // Both join before either publishes: a join's reply comes before any event then.
    let mut far = b.client("far", Fmt::Json).await;
    join(&mut far, ROOM, 1).await;
    let mut near = victim.client("near", Fmt::Json).await;
    join(&mut near, ROOM, 1).await;
    let far = tokio::spawn(publish_until(far, ROOM, "far", 400));
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
        // Which side of the kill a gap is on.
        let before = seen.last().unwrap().0;
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
            "{user}: no gap, no duplicate (the last live offset before the kill: {before})"
        );
        // Every acknowledged publish, as it was published.
        let got: BTreeMap<u64, Value> = seen.into_iter().collect();
        for (offset, data) in far.iter().chain(&near) {
            assert_eq!(got.get(offset), Some(data), "{user} at {offset}");
        }
    }
}

#[tokio::test]
async fn a_publish_while_redis_is_briefly_down_is_answered_ok_only_if_it_ran_and_then_arrives() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(1500);
    let (a, b) = (
        node(&redis.url(), timeout, 10_000).await,
        node(&redis.url(), timeout, 10_000).await,
    );
    let mut ann = a.client("ann", Fmt::Json).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    join(&mut ann, "r", 1).await;
    join(&mut ben, "r", 1).await;
    ann.ok(
        json!({"cmd": "publish", "room": "r", "event": "e", "data": -1}),
        2,
    )
    .await;
    assert_eq!(events(&mut ben, "r", 1).await[0].1, -1);

    redis.kill();
    let down = Instant::now();
    // Publishes one after another while Redis is down, and on after it is back.
    let feed = tokio::spawn(async move {
        let mut answers = Vec::new();
        for i in 0..40 {
            let sent = Instant::now();
            ann.send(json!({"cmd": "publish", "id": 10 + i, "room": "r", "event": "e", "data": i}))
                .await;
            // Its own event fetched by its node to fill a gap comes to it too (the stream
            // does not say which connection sent it).
            let r = loop {
                let m = ann.recv().await;
                if m["type"] != "event" {
                    break m;
                }
            };
            assert_eq!(r["id"], 10 + i, "{r}");
            answers.push((i, sent, sent.elapsed(), r));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (answers, ann)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let up = Instant::now();
    let (answers, mut ann) = feed.await.unwrap();
    let mut ok = Vec::new();
    for (i, sent, took, r) in &answers {
        // Answered within CLUSTER_TIMEOUT (and a little for the machine), either way.
        assert!(
            *took < timeout + Duration::from_millis(500),
            "{i} took {took:?}"
        );
        match r["type"].as_str() {
            Some("reply") => ok.push((*i, *sent)),
            _ => assert_eq!(code(r), "cluster.unavailable", "{r}"),
        }
    }
    assert!(
        ok.iter().any(|(_, sent)| *sent < up),
        "a publish made while Redis was down ({:?}) waited for it and ran: {answers:?}",
        up - down
    );
    // Every publish answered OK reaches the member on the other node.
    let mut got = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !ok.iter().all(|(i, _)| got.contains(i)) {
        let missing: Vec<u64> = ok
            .iter()
            .map(|o| o.0)
            .filter(|i| !got.contains(i))
            .collect();
        let next = tokio::time::timeout_at(deadline, ben.recv()).await;
        let ev = next.unwrap_or_else(|_| panic!("never arrived: {missing:?} of {answers:?}"));
        assert_eq!(ev["type"], "event", "{ev}");
        got.insert(ev["data"].as_u64().unwrap());
    }

    // Once more, with the publish made while Redis is down the last one: no later event
    // shows ben's node the gap; it catches up once it has subscribed again.
    let mut redis = redis;
    redis.kill();
    // Made once ann's node knows Redis is down, so it waits in the link's queue. (Written
    // before the node noticed, into the dead connection, it would be answered
    // `cluster.unavailable`: the link writes a command once, never twice.)
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a.get("/readyz").await.1.contains("degraded") {
        assert!(tokio::time::Instant::now() < deadline, "never noticed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ann.send(json!({"cmd": "publish", "id": 99, "room": "r", "event": "e", "data": 1000}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let r = loop {
        let m = ann.recv().await;
        if m["type"] != "event" {
            break m;
        }
    };
    assert_eq!((&r["type"], &r["id"]), (&json!("reply"), &json!(99)), "{r}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, ben.recv()).await;
        let ev = next.expect("the last publish, answered OK, never arrived");
        if ev["data"] == 1000 {
            break;
        }
    }
    assert_eq!(metric(&b, "wsgate_cluster_lost_total").await, 0);
}

#[tokio::test]
async fn a_stalled_link_to_redis_bounds_what_waits_stalls_no_shard_and_heals() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let timeout = Duration::from_millis(600);
    const BUFFER: usize = 8;
    let a = node(
        &format!("redis://127.0.0.1:{}", proxy.port),
        timeout,
        BUFFER,
    )
    .await;
    let b = node(&redis.url(), timeout, 10_000).await;
    // Two clients on one shard of the node behind the stalled link.
    let mut ann = a.client_on_shard("ann", Fmt::Json, 0).await;
    let mut carl = a.client_on_shard("carl", Fmt::Json, 0).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    join(&mut ann, "r", 1).await;
    join(&mut carl, "r", 1).await;
    join(&mut ben, "r", 1).await;
    ann.ok(
        json!({"cmd": "publish", "room": "r", "event": "e", "data": 0}),
        2,
    )
    .await;
    assert_eq!(events(&mut ben, "r", 1).await[0].1, 0);
    assert_eq!(events(&mut carl, "r", 1).await[0].1, 0);

    proxy.stall();
    // Carl's publish waits for Redis; ann, on the same shard, is answered meanwhile.
    carl.send(json!({"cmd": "publish", "id": 3, "room": "r", "event": "e", "data": 1}))
        .await;
    // Many REST pushes at once: CLUSTER_BUFFER of them wait, the others are refused at once.
    let api = Api::new(&a);
    let pushes = (0..5 * BUFFER).map(|i| {
        let api = &api;
        async move {
            let start = Instant::now();
            let push = json!({"userId": format!("u{i}"), "event": "n", "data": i});
            let (s, body) = api.post("/api/v1/push/users", push).await;
            (s, body["error"]["code"].clone(), start.elapsed())
        }
    });
    let pings = async {
        let mut slowest = Duration::ZERO;
        for i in 0..10 {
            let start = Instant::now();
            ann.ok(json!({"cmd": "ping"}), 100 + i).await;
            slowest = slowest.max(start.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slowest
    };
    let (pushes, slowest) = tokio::join!(futures_util::future::join_all(pushes), pings);
    assert!(
        slowest < Duration::from_millis(200),
        "a ping took {slowest:?}"
    );
    let mut at_once = 0;
    for (s, code, took) in &pushes {
        assert_eq!((*s, code.as_str()), (503, Some("cluster.unavailable")));
        assert!(*took < timeout + Duration::from_millis(500), "{took:?}");
        at_once += usize::from(*took < timeout / 2);
    }
    assert!(
        at_once >= 4 * BUFFER,
        "only {at_once} refused at once: {pushes:?}"
    );
    let r = carl.recv().await;
    assert_eq!(
        (&r["id"], code(&r)),
        (&json!(3), "cluster.unavailable"),
        "{r}"
    );

    let refused = metric(&a, "wsgate_cluster_refused_total").await;
    assert!(refused > 5 * BUFFER as u64, "{refused} refused");
    // Partitioned: the connections reset, new ones hang until the link heals.
    proxy.cut();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a.get("/readyz").await.1.contains("degraded") {
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&a, "wsgate_cluster_redis_up").await, 0);
    ann.ok(json!({"cmd": "ping"}), 200).await;
    proxy.heal();
    connected(&a).await;
    // Resubscribed on its own: ben's events reach ann and carl again, and theirs reach ben.
    let mut id = 300;
    loop {
        id += 1;
        ben.ok(
            json!({"cmd": "publish", "room": "r", "event": "e", "data": id}),
            id,
        )
        .await;
        match tokio::time::timeout(Duration::from_millis(300), ann.recv()).await {
            Ok(mut ev) => {
                // Earlier ones may come late (fetched as a gap): in order, up to the last.
                let mut seen = Vec::new();
                while ev["data"] != id {
                    seen.push(ev["data"].as_u64().unwrap());
                    ev = ann.recv().await;
                }
                assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
                break;
            }
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "never resubscribed"),
        }
    }
    ann.ok(
        json!({"cmd": "publish", "room": "r", "event": "e", "data": "back"}),
        400,
    )
    .await;
    let ev = ben.recv().await;
    assert_eq!(ev["data"], "back", "{ev}");
    let (s, body) = api
        .post(
            "/api/v1/push/users",
            json!({"userId": "ben", "event": "n", "data": 1}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn a_publish_whose_answer_was_lost_with_its_link_is_never_run_twice() {
    // The link dies just after Redis ran a publish: the request reached Redis, the answer
    // did not come back. Run again on the next connection it would be two events (two
    // offsets) for one publish; it is answered `cluster.unavailable` instead, and the other
    // node's member gets it once.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let timeout = Duration::from_secs(3);
    let a = node(
        &format!("redis://127.0.0.1:{}", proxy.port),
        timeout,
        10_000,
    )
    .await;
    let b = node(&redis.url(), timeout, 10_000).await;
    let mut ann = a.client("ann", Fmt::Json).await;
    let mut ben = b.client("ben", Fmt::Json).await;
    join(&mut ann, "once", 1).await;
    join(&mut ben, "once", 1).await;
    // A first publish, so that Redis knows the script (else the held one would only be
    // refused with NOSCRIPT).
    let zero = json!({"cmd": "publish", "room": "once", "event": "e", "data": "zero"});
    assert_eq!(ann.call(zero, 2).await["offset"], 1);
    assert_eq!(events(&mut ben, "once", 1).await, vec![(1, json!("zero"))]);

    proxy.hold_answers();
    ann.send(json!({"cmd": "publish", "id": 3, "room": "once", "event": "e", "data": "one"}))
        .await;
    // Ben's node hears it from Redis directly: Redis ran it.
    assert_eq!(events(&mut ben, "once", 1).await, vec![(2, json!("one"))]);
    proxy.cut();
    proxy.heal();
    let r = loop {
        let m = ann.recv().await;
        if m["type"] != "event" {
            break m;
        }
    };
    assert_eq!(r["id"], 3, "{r}");
    assert_eq!(
        code(&r),
        "cluster.unavailable",
        "its fate was not told: {r}"
    );

    // Back on its feet, ann's node publishes again: the next offset is 3, and ben gets it
    // right after the held one (which was not run again).
    connected(&a).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let offset = loop {
        let r = ann
            .call(
                json!({"cmd": "publish", "room": "once", "event": "e", "data": "two"}),
                4,
            )
            .await;
        if r["type"] == "reply" {
            break r["offset"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(offset, 3);
    assert_eq!(events(&mut ben, "once", 1).await, vec![(3, json!("two"))]);
}
