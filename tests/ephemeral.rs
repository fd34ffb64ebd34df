//! Ephemeral publishes (`"ephemeral": true`, seed 004's `status:typing`) over the real server:
//! delivered like a publish but never stored (no offset, not in history, not replayed), under
//! their own rate limit, and the first dropped for a recipient whose queue is filling.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::{json, Value};

fn typing(room: &str, on: bool) -> Value {
    json!({"cmd": "publish", "room": room, "event": "status:typing", "data": {"roomId": room, "isTyping": on}, "ephemeral": true})
}

fn chat(room: &str, text: &str) -> Value {
    json!({"cmd": "publish", "room": room, "event": "chat:message", "data": {"text": text}})
}

#[tokio::test]
async fn an_ephemeral_publish_reaches_the_room_without_an_offset_and_is_never_stored() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let room = format!("typing-{}", fmt.query());
        let mut a = server.client("ann", fmt).await;
        let mut b = server.client("ben", fmt).await;
        a.ok(json!({"cmd": "join", "room": room}), 1).await;
        let joined = b.call(json!({"cmd": "join", "room": room}), 1).await;
        let epoch = joined["epoch"].as_str().unwrap().to_owned();
        a.ok(chat(&room, "one"), 2).await;
        a.ok(typing(&room, true), 3).await;
        a.ok(chat(&room, "two"), 4).await;
        assert_eq!(b.recv().await["offset"], 1);
        let ev = b.recv().await;
        assert_eq!(
            ev,
            json!({"type": "event", "event": "status:typing", "room": room, "from": "ann", "data": {"roomId": room, "isTyping": true}}),
            "no offset on an ephemeral event"
        );
        assert_eq!(
            b.recv().await["offset"],
            2,
            "the ephemeral event took no offset"
        );

        // Not in the history, by command or REST.
        let h = b.call(json!({"cmd": "history", "room": room}), 5).await;
        let events: Vec<&str> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["chat:message", "chat:message"], "{h}");
        let (status, page) = api.get(&format!("/api/v1/rooms/{room}/messages")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");

        // Not replayed on resume: a client back from offset 0 gets the two stored events.
        let mut c = server.client("cat", fmt).await;
        c.send(
            json!({"cmd": "join", "id": 6, "room": room, "since": {"epoch": epoch, "offset": 0}}),
        )
        .await;
        assert_eq!(c.recv().await["data"]["text"], "one");
        assert_eq!(c.recv().await["data"]["text"], "two");
        let reply = c.recv().await;
        assert_eq!(
            (reply["id"].as_u64(), reply["recovered"].as_bool()),
            (Some(6), Some(true)),
            "{reply}"
        );
        // Without an id, an ephemeral publish is answered only on failure.
        let mut no_id = typing(&room, false);
        no_id["room"] = json!("elsewhere");
        c.send(no_id).await;
        assert_eq!(code(&c.recv().await), "room.forbidden");
        for cl in [a, b, c] {
            cl.close().await;
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn ephemeral_publishes_have_their_own_rate_limit() {
    let server = start_server(|c| {
        c.ephemeral_rate_per_sec = 1;
        c.ephemeral_rate_burst = 2;
    });
    for fmt in BOTH {
        let mut a = server.client("ann", fmt).await;
        let mut b = server.client("ben", fmt).await;
        a.ok(json!({"cmd": "join", "room": "r"}), 1).await;
        b.ok(json!({"cmd": "join", "room": "r"}), 1).await;
        a.ok(typing("r", true), 2).await;
        a.ok(typing("r", false), 3).await;
        let refused = a.call(typing("r", true), 4).await;
        assert_eq!(code(&refused), "rate.limited", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("ephemeral"),
            "{refused}"
        );
        // Other commands, stored publishes included, keep their own bucket.
        a.ok(chat("r", "still here"), 5).await;
        let got: Vec<Value> = [b.recv().await, b.recv().await, b.recv().await].into();
        assert_eq!(
            got.iter().map(|m| m["event"].clone()).collect::<Vec<_>>(),
            ["status:typing", "status:typing", "chat:message"],
            "the refused one was not delivered"
        );
        assert_eq!(got[2]["data"]["text"], "still here");
        let bad = a
            .call(
                json!({"cmd": "publish", "room": "r", "event": "e", "ephemeral": 1}),
                6,
            )
            .await;
        assert_eq!(code(&bad), "bad_request");
        assert!(bad["message"].as_str().unwrap().starts_with("ephemeral"));
        a.close().await;
        b.close().await;
    }
    assert!(server.handle.stats().rate_limited >= 2);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_slow_reader_loses_ephemeral_events_first_and_keeps_every_stored_one() {
    let server = start_server(|c| {
        (c.max_message_bytes, c.max_outbound_bytes) = (16 * 1024, 256 * 1024);
        (c.rate_per_sec, c.rate_burst) = (100_000, 100_000);
        (c.ephemeral_rate_per_sec, c.ephemeral_rate_burst) = (100_000, 100_000);
    });
    // It reads nothing until told to: the server's queue to it fills.
    let mut slow = server.small_window_client("sloth").await;
    // A reader on the slow one's shard: once it has an event, so has the slow one's queue
    // (the shard delivers to its members in one go), so the counters are up to date.
    let shard = slow.welcome["shard"].as_u64().unwrap();
    let mut witness = server.client_on_shard("eye", Fmt::MsgPack, shard).await;
    let mut publisher = server.client("pub", Fmt::MsgPack).await;
    for c in [&mut slow, &mut witness, &mut publisher] {
        c.ok(json!({"cmd": "join", "room": "busy"}), 1).await;
    }
    let payload = "x".repeat(8 * 1024);
    let (mut stored, mut typed) = (0u64, 0u64);
    let mut id = 10;
    let mut publish = async |cmd: Value| {
        id += 1;
        publisher.ok(cmd, id).await;
        assert_eq!(witness.recv().await["type"], "event");
    };
    // Stored events and typing, alternately, until the server has shed an ephemeral one.
    while server.handle.stats().ephemeral_dropped == 0 {
        assert!(stored < 5_000, "40 MB published and nothing shed");
        publish(json!({"cmd": "publish", "room": "busy", "event": "bulk", "data": {"n": stored, "p": payload}})).await;
        publish(typing("busy", true)).await;
        stored += 1;
        typed += 1;
    }
    // Past half of its bound the queue still takes stored events (typing only when it has
    // drained below half again: how many depends on the writes, not asserted).
    for _ in 0..4 {
        publish(typing("busy", false)).await;
        publish(json!({"cmd": "publish", "room": "busy", "event": "bulk", "data": {"n": stored}}))
            .await;
        stored += 1;
        typed += 1;
    }
    let stats = server.handle.stats();
    assert_eq!(
        stats.slow_consumers, 0,
        "shedding typing made no slow consumer"
    );
    assert!(stats.ephemeral_dropped >= 1, "{stats:?}");
    let (mut offsets, mut typing_seen) = (Vec::new(), 0u64);
    while offsets.len() < stored as usize {
        let m = slow.recv().await;
        match m["event"].as_str() {
            Some("bulk") => offsets.push(m["offset"].as_u64().unwrap()),
            Some("status:typing") => typing_seen += 1,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(
        offsets,
        (1..=stored).collect::<Vec<_>>(),
        "every stored event, in order"
    );
    assert!(
        typing_seen < typed,
        "ephemeral events were dropped: {typing_seen} of {typed}"
    );
    assert_eq!(
        typed - typing_seen,
        server.handle.stats().ephemeral_dropped,
        "each drop counted"
    );
    let (status, metrics) = server.get("/metrics").await;
    let dropped = format!("{}", server.handle.stats().ephemeral_dropped);
    let line = metrics
        .lines()
        .filter(|l| l.starts_with("wsgate_ephemeral_dropped_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum::<u64>();
    assert_eq!((status, line.to_string()), (200, dropped), "{metrics}");
    slow.ok(json!({"cmd": "ping"}), 2).await;
    slow.close().await;
    publisher.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_rest_room_push_may_be_ephemeral() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let mut a = server.client("ann", Fmt::Json).await;
    a.ok(json!({"cmd": "join", "room": "desk"}), 1).await;
    let (s, r) = api
        .post(
            "/api/v1/push/rooms/desk",
            json!({"event": "status:typing", "data": {"agent": "bot"}, "ephemeral": true}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"delivered": 1})));
    let ev = a.recv().await;
    assert_eq!(
        ev,
        json!({"type": "event", "event": "status:typing", "room": "desk", "data": {"agent": "bot"}})
    );
    let (s, r) = api
        .post(
            "/api/v1/push/batch",
            json!({"pushes": [
                {"roomId": "desk", "event": "status:typing", "ephemeral": true},
                {"roomId": "desk", "event": "ticket", "ephemeral": false},
                {"userId": "ann", "event": "dm", "ephemeral": true}
            ]}),
        )
        .await;
    assert_eq!(s, 400, "ephemeral is for room pushes only: {r}");
    assert_eq!(r["error"]["details"][0]["field"], "pushes[2].ephemeral");
    let (s, r) = api
        .post(
            "/api/v1/push/rooms/desk",
            json!({"event": "e", "ephemeral": "yes"}),
        )
        .await;
    assert_eq!(
        (s, r["error"]["details"][0]["field"].as_str()),
        (400, Some("ephemeral"))
    );
    let (_, page) = api.get("/api/v1/rooms/desk/messages").await;
    assert_eq!(page["messages"], json!([]), "nothing stored: {page}");
    assert_eq!(page["offset"], 0);
    a.close().await;
    server.handle.shutdown().await;
}
