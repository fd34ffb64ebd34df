//! Room streams over the real server: offsets on room events, `history` (command and REST),
//! and resume with `join` + `since`, in both encodings and across shards, with the bounds.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const BOTH: [Fmt; 2] = [Fmt::Json, Fmt::MsgPack];

/// Joins `room` and returns the reply (with the stream's epoch and offset).
async fn join(c: &mut Client, room: &str, id: u64) -> Value {
    let r = c.call(json!({"cmd": "join", "room": room}), id).await;
    assert_eq!(r["type"], "reply", "{r}");
    r
}

#[tokio::test]
async fn room_events_carry_offsets_and_history_returns_them() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let room = format!("lobby-{}", fmt.query());
        let mut a = server.client("ann", fmt).await;
        let mut b = server.client("ben", fmt).await;
        let joined = join(&mut a, &room, 1).await;
        assert_eq!(joined["room"], json!(room));
        assert_eq!(joined["offset"], 0, "a new stream: {joined}");
        let epoch = joined["epoch"].as_str().unwrap().to_owned();
        assert_eq!(epoch.len(), 16, "16 hex digits: {epoch}");
        assert!(joined.get("recovered").is_none(), "no since, no recovered");
        let joined = join(&mut b, &room, 2).await;
        assert_eq!(
            (joined["epoch"].as_str(), joined["offset"].as_u64()),
            (Some(&*epoch), Some(0))
        );

        for i in 1..=3 {
            a.ok(
                json!({"cmd": "publish", "room": room, "event": "chat", "data": {"n": i}}),
                10 + i,
            )
            .await;
        }
        for i in 1..=3u64 {
            let ev = b.recv().await;
            assert_eq!(
                ev,
                json!({"type": "event", "event": "chat", "room": room, "from": "ann", "offset": i, "data": {"n": i}})
            );
        }

        let h = b.call(json!({"cmd": "history", "room": room}), 20).await;
        assert_eq!(
            (
                h["type"].as_str(),
                h["epoch"].as_str(),
                h["offset"].as_u64()
            ),
            (Some("reply"), Some(&*epoch), Some(3))
        );
        assert_eq!(offsets(&h["messages"]), [1, 2, 3]);
        let m = &h["messages"][1];
        assert_eq!(
            (m["event"].as_str(), m["from"].as_str(), m["data"].clone()),
            (Some("chat"), Some("ann"), json!({"n": 2}))
        );
        assert!(
            m["at"].as_u64().unwrap() > 1_700_000_000_000,
            "Unix ms: {m}"
        );

        let h = b
            .call(
                json!({"cmd": "history", "room": room, "before": 3, "limit": 1}),
                21,
            )
            .await;
        assert_eq!(offsets(&h["messages"]), [2]);
        let h = b
            .call(json!({"cmd": "history", "room": room, "after": 1}), 22)
            .await;
        assert_eq!(offsets(&h["messages"]), [2, 3]);

        // Refusals: not a member, bad arguments.
        let mut c = server.client("cat", fmt).await;
        let e = c.call(json!({"cmd": "history", "room": room}), 30).await;
        assert_eq!(code(&e), "room.forbidden", "{e}");
        for (cmd, field) in [
            (
                json!({"cmd": "history", "room": room, "before": 2, "after": 1}),
                "before",
            ),
            (json!({"cmd": "history", "room": room, "limit": 0}), "limit"),
            (
                json!({"cmd": "history", "room": room, "limit": 1001}),
                "limit",
            ),
            (
                json!({"cmd": "history", "room": room, "after": -1}),
                "after",
            ),
        ] {
            let e = b.call(cmd, 31).await;
            assert_eq!(code(&e), "bad_request", "{e}");
            assert!(e["message"].as_str().unwrap().contains(field), "{e}");
        }
        // Still served after the refusals.
        b.ok(json!({"cmd": "ping"}), 32).await;
        for cl in [a, b, c] {
            cl.close().await;
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_stream_keeps_at_most_its_size_and_rest_pages_through_it() {
    let server = start_api_server(|c| c.room_history_size = 3);
    let api = Api::new(&server);
    let mut a = server.client("ann", Fmt::MsgPack).await;
    join(&mut a, "news", 1).await;
    for i in 1..=5 {
        let (s, _) = api
            .post(
                "/api/v1/push/rooms/news",
                json!({"event": "item", "data": i}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            a.recv().await["offset"],
            json!(i),
            "REST pushes go through the stream"
        );
    }
    a.ok(
        json!({"cmd": "publish", "room": "news", "event": "mp", "data": [1, "two"]}),
        2,
    )
    .await;
    let h = a
        .call(json!({"cmd": "history", "room": "news", "limit": 1000}), 3)
        .await;
    assert_eq!(
        offsets(&h["messages"]),
        [4, 5, 6],
        "ROOM_HISTORY_SIZE=3 keeps the last three"
    );

    let (s, page) = api.get("/api/v1/rooms/news/messages?limit=2").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(offsets(&page["messages"]), [5, 6]);
    assert_eq!(
        (page["roomId"].as_str(), page["offset"].as_u64()),
        (Some("news"), Some(6))
    );
    assert_eq!(page["epoch"], h["epoch"]);
    assert_eq!(
        page["messages"][1]["data"],
        json!([1, "two"]),
        "MessagePack data as JSON"
    );
    assert_eq!(page["messages"][1]["from"], "ann");
    assert_eq!(
        page["messages"][0]["from"],
        Value::Null,
        "a REST push has no sender"
    );
    assert_eq!(page["nextBefore"], 5);
    let (_, older) = api
        .get("/api/v1/rooms/news/messages?limit=2&before=5")
        .await;
    assert_eq!(offsets(&older["messages"]), [4], "only three are kept");
    assert_eq!(
        older["nextBefore"],
        Value::Null,
        "a short page ends the paging"
    );
    let (_, newer) = api.get("/api/v1/rooms/news/messages?after=4&limit=1").await;
    assert_eq!(
        (offsets(&newer["messages"]), newer["nextAfter"].as_u64()),
        (vec![5], Some(5))
    );

    for (path, status, code) in [
        ("/api/v1/rooms/none/messages", 404, "room.not_found"),
        ("/api/v1/rooms/news/messages?limit=0", 400, "bad_request"),
        ("/api/v1/rooms/news/messages?limit=x", 400, "bad_request"),
        (
            "/api/v1/rooms/news/messages?before=1&after=2",
            400,
            "bad_request",
        ),
        ("/api/v1/rooms/news/messages?after=-3", 400, "bad_request"),
    ] {
        let (s, e) = api.get(path).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {e}"
        );
    }
    a.close().await;
    server.handle.shutdown().await;
}

/// Publishes `n` numbered events to `room` from `user`, one every `gap`.
fn publisher(
    server: &TestServer,
    user: &'static str,
    room: &'static str,
    n: u64,
    gap: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = server.url(&format!("token={}", token(user)));
    tokio::spawn(async move {
        let mut p = Client::connect(&url, Fmt::Json).await.unwrap();
        assert_eq!(p.recv().await["type"], "welcome");
        p.ok(json!({"cmd": "join", "room": room}), 1).await;
        for i in 0..n {
            p.ok(
                json!({"cmd": "publish", "room": room, "event": "tick", "data": i}),
                100 + i,
            )
            .await;
            tokio::time::sleep(gap).await;
        }
        p.close().await;
    })
}

/// Reads events until `until` (an offset) arrived; every other message must be the join
/// reply with `id`, which is returned. Returns the offsets seen, in order.
async fn read_until(c: &mut Client, until: u64, id: u64) -> (Vec<u64>, Option<Value>) {
    let (mut seen, mut reply) = (Vec::new(), None);
    while seen.last().is_none_or(|&o| o < until) {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("event") => seen.push(m["offset"].as_u64().unwrap()),
            Some("reply") if m["id"] == id => reply = Some(m),
            _ => panic!("unexpected {m}"),
        }
    }
    (seen, reply)
}

#[tokio::test]
async fn a_client_that_drops_resumes_without_gap_or_duplicate_on_any_shard() {
    let server = start_server(|_| {});
    const N: u64 = 300;
    for (first, second) in [(0, 1), (1, 0), (1, 1)] {
        let room: &'static str = Box::leak(format!("live-{first}{second}").into_boxed_str());
        let mut sub = server.client_on_shard("sub", Fmt::MsgPack, first).await;
        let joined = join(&mut sub, room, 1).await;
        let epoch = joined["epoch"].as_str().unwrap().to_owned();
        let feed = publisher(&server, "pub", room, N, Duration::from_millis(2));
        // Take some events, then drop while they keep coming.
        let (seen, _) = read_until(&mut sub, 20, 0).await;
        let last = *seen.last().unwrap();
        sub.close().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut back = server.client_on_shard("sub", Fmt::Json, second).await;
        back.send(json!({"cmd": "join", "id": 2, "room": room, "since": {"epoch": epoch, "offset": last}}))
            .await;
        let (rest, reply) = read_until(&mut back, N, 2).await;
        feed.await.unwrap();
        let reply = reply.expect("the join answered");
        assert_eq!(reply["recovered"], true, "{reply}");
        assert_eq!(reply["epoch"], json!(epoch));
        let all: Vec<u64> = seen.iter().chain(&rest).copied().collect();
        assert_eq!(
            all,
            (1..=N).collect::<Vec<_>>(),
            "shards {first} -> {second}: no gap, no duplicate"
        );
        back.close().await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn resume_says_not_recovered_when_the_window_or_the_epoch_does_not_cover_it() {
    let server = start_server(|c| c.room_history_size = 2);
    let mut a = server.client("ann", Fmt::Json).await;
    let joined = join(&mut a, "small", 1).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 0..5 {
        // With `echo`, the sender's own event comes before the reply.
        a.send(json!({"cmd": "publish", "id": 10 + i, "room": "small", "event": "e", "data": i, "echo": true}))
            .await;
        assert_eq!(a.recv().await["offset"], json!(i + 1));
        assert_eq!(
            a.recv().await,
            json!({"type": "reply", "id": 10 + i, "offset": i + 1})
        );
    }
    let cases = [
        // Offsets 4 and 5 are kept: from 3 on, nothing is missing.
        (json!({"epoch": epoch, "offset": 3}), true, 2),
        (json!({"epoch": epoch, "offset": 5}), true, 0),
        // Offset 3 was dropped.
        (json!({"epoch": epoch, "offset": 1}), false, 0),
        // Another epoch, an offset from the future.
        (json!({"epoch": "0000000000000000", "offset": 4}), false, 0),
        (json!({"epoch": epoch, "offset": 9}), false, 0),
    ];
    for (since, recovered, replayed) in cases {
        let mut b = server.client("ben", Fmt::Json).await;
        b.send(json!({"cmd": "join", "id": 2, "room": "small", "since": since}))
            .await;
        let mut events = 0;
        let reply = loop {
            let m = b.recv().await;
            if m["type"] == "event" {
                events += 1;
                continue;
            }
            break m;
        };
        assert_eq!(
            (reply["recovered"].as_bool(), events),
            (Some(recovered), replayed),
            "{since}: {reply}"
        );
        assert_eq!(
            (reply["epoch"].as_str(), reply["offset"].as_u64()),
            (Some(&*epoch), Some(5))
        );
        b.close().await;
    }
    a.close().await;
    server.handle.shutdown().await;
}
