//! Per-room history options over the real server: a room created with `historySize` /
//! `historyTtl` (REST `POST /api/v1/rooms`, or the client's `create` in either encoding) keeps
//! to them, a room made by a join keeps to the server's defaults, every room answer shows the
//! values in force, bad values are refused naming the field, and the options survive a clean
//! restart with `STORE=disk`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wsgate::config::StoreKind;

/// The server's defaults in these tests: 5 messages, an hour.
fn defaults(c: &mut wsgate::Config) {
    c.api_keys = Some(API_KEY.into());
    c.room_history_size = 5;
    c.room_history_ttl = Duration::from_secs(3600);
}

/// Publishes `n` events to `room`, each answered before the next.
async fn publish(c: &mut Client, room: &str, n: u64) {
    for i in 0..n {
        let cmd = json!({"cmd": "publish", "room": room, "event": "m", "data": {"i": i}});
        c.ok(cmd, 100 + i).await;
    }
}

/// The offsets the `history` command answers for `room`.
async fn history(c: &mut Client, room: &str) -> Vec<u64> {
    let reply = c.call(json!({"cmd": "history", "room": room}), 99).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    offsets(&reply["messages"])
}

/// The offsets REST answers for `room`'s messages.
async fn rest_history(api: &Api, room: &str) -> Vec<u64> {
    let (s, body) = api.get(&format!("/api/v1/rooms/{room}/messages")).await;
    assert_eq!(s, 200, "{body}");
    offsets(&body["messages"])
}

/// `historySize` and `historyTtl` as a room answer shows them.
fn shown(room: &Value) -> (Option<u64>, Option<u64>) {
    (room["historySize"].as_u64(), room["historyTtl"].as_u64())
}

async fn room(api: &Api, room: &str) -> Value {
    let (s, body) = api.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(s, 200, "{body}");
    body
}

#[tokio::test]
async fn a_room_keeps_its_own_history_size_and_others_the_defaults() {
    let server = start_server(defaults);
    let api = Api::new(&server);
    for fmt in BOTH {
        let small = format!("small-{}", fmt.query());
        let mut ann = server.client("ann", fmt).await;
        let cmd = json!({"cmd": "create", "room": small, "historySize": 3});
        ann.ok(cmd, 1).await;
        publish(&mut ann, &small, 6).await;
        assert_eq!(history(&mut ann, &small).await, [4, 5, 6]);
        assert_eq!(rest_history(&api, &small).await, [4, 5, 6]);
        assert_eq!(
            shown(&room(&api, &small).await),
            (Some(3), Some(3600)),
            "its size, the default age"
        );

        // A room made by a join keeps the server's 5.
        let joined = format!("joined-{}", fmt.query());
        ann.ok(json!({"cmd": "join", "room": joined}), 2).await;
        publish(&mut ann, &joined, 7).await;
        assert_eq!(history(&mut ann, &joined).await, [3, 4, 5, 6, 7]);
        assert_eq!(shown(&room(&api, &joined).await), (Some(5), Some(3600)));

        // None at all: offsets still count.
        let none = format!("none-{}", fmt.query());
        ann.ok(json!({"cmd": "create", "room": none, "historySize": 0}), 3)
            .await;
        publish(&mut ann, &none, 2).await;
        assert_eq!(history(&mut ann, &none).await, Vec::<u64>::new());
        let reply = ann
            .call(json!({"cmd": "publish", "room": none, "event": "m"}), 4)
            .await;
        assert_eq!(reply["offset"], 3, "{reply}");
        ann.close().await;
    }

    // Over REST: the answer to the creation shows what the room keeps, so does the list.
    let (s, created) = api
        .post(
            "/api/v1/rooms",
            json!({"roomId": "rest", "historySize": 2, "historyTtl": 600}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(shown(&created), (Some(2), Some(600)));
    let (s, plain) = api.post("/api/v1/rooms", json!({"roomId": "plain"})).await;
    assert_eq!(s, 201, "{plain}");
    assert_eq!(shown(&plain), (Some(5), Some(3600)), "the defaults");
    let (s, list) = api.get("/api/v1/rooms?limit=100").await;
    assert_eq!(s, 200, "{list}");
    let listed = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["roomId"] == "rest")
        .map(shown);
    assert_eq!(listed, Some((Some(2), Some(600))), "{list}");
    let mut ben = server.client("ben", Fmt::Json).await;
    ben.ok(json!({"cmd": "join", "room": "rest"}), 1).await;
    publish(&mut ben, "rest", 4).await;
    assert_eq!(rest_history(&api, "rest").await, [3, 4]);

    // A room made again by a join after the backend closed it keeps the defaults again.
    let (s, _) = api.delete("/api/v1/rooms/rest").await;
    assert_eq!(s, 200);
    assert_eq!(ben.recv().await["event"], "room.closed");
    ben.ok(json!({"cmd": "join", "room": "rest"}), 2).await;
    publish(&mut ben, "rest", 4).await;
    assert_eq!(rest_history(&api, "rest").await, [4, 5, 6, 7, 8]);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_room_with_a_short_ttl_drops_its_old_messages() {
    let server = start_server(defaults);
    let api = Api::new(&server);
    let (s, created) = api
        .post("/api/v1/rooms", json!({"roomId": "brief", "historyTtl": 1}))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(shown(&created), (Some(5), Some(1)));
    let mut ann = server.client("ann", Fmt::MsgPack).await;
    ann.ok(json!({"cmd": "join", "room": "brief"}), 1).await;
    ann.ok(json!({"cmd": "join", "room": "lasting"}), 2).await;
    publish(&mut ann, "brief", 2).await;
    publish(&mut ann, "lasting", 2).await;
    assert_eq!(history(&mut ann, "brief").await, [1, 2]);
    // Past the second (and a sweep, at most a second apart), with nothing appended since.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rest_history(&api, "brief").await, Vec::<u64>::new());
    assert_eq!(history(&mut ann, "brief").await, Vec::<u64>::new());
    assert_eq!(
        history(&mut ann, "lasting").await,
        [1, 2],
        "the default hour"
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn bad_history_options_are_refused_naming_the_field() {
    let server = start_server(defaults);
    let api = Api::new(&server);
    let bad = [
        ("historySize", json!(-1)),
        ("historySize", json!(10_001)),
        ("historySize", json!("3")),
        ("historySize", json!(2.5)),
        ("historyTtl", json!(0)),
        ("historyTtl", json!(2_592_001)),
        ("historyTtl", json!(null)),
    ];
    for (field, value) in &bad {
        let (s, r) = api
            .post("/api/v1/rooms", json!({"roomId": "r", *field: value}))
            .await;
        assert_eq!(
            (
                s,
                &r["error"]["code"],
                r["error"]["details"][0]["field"].as_str()
            ),
            (400, &json!("bad_request"), Some(*field)),
            "{field}: {value} → {r}"
        );
    }
    let (s, r) = api
        .post(
            "/api/v1/rooms",
            json!({"roomId": "r", "historySize": 10_000, "historyTtl": 2_592_000}),
        )
        .await;
    assert_eq!(
        (s, shown(&r)),
        (201, (Some(10_000), Some(2_592_000))),
        "{r}"
    );

    for fmt in BOTH {
        let mut ann = server.client("ann", fmt).await;
        for (i, (field, value)) in bad.iter().enumerate() {
            let cmd = json!({"cmd": "create", "room": "c", *field: value});
            let r = ann.call(cmd, i as u64).await;
            assert_eq!(code(&r), "bad_request", "{field}: {value} → {r}");
            let message = r["message"].as_str().unwrap();
            assert!(message.starts_with(field), "{message}");
        }
        // Nothing was made by the refusals.
        let (s, _) = api.get("/api/v1/rooms/c").await;
        assert_eq!(s, 404);
        ann.close().await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn history_options_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = |size: usize| {
        let dir = dir.path().to_path_buf();
        move |c: &mut wsgate::Config| {
            defaults(c);
            c.room_history_size = size;
            c.store = StoreKind::Disk;
            c.data_dir = dir;
        }
    };
    {
        let server = start_server(on_disk(5));
        let api = Api::new(&server);
        let (s, _) = api
            .post(
                "/api/v1/rooms",
                json!({"roomId": "kept", "historySize": 2, "historyTtl": 600}),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "plain"})).await;
        assert_eq!(s, 201);
        let mut ann = server.client("ann", Fmt::MsgPack).await;
        ann.ok(
            json!({"cmd": "create", "room": "mine", "historySize": 3}),
            1,
        )
        .await;
        ann.ok(json!({"cmd": "join", "room": "kept"}), 2).await;
        publish(&mut ann, "kept", 4).await;
        publish(&mut ann, "mine", 4).await;
        ann.close().await;
        server.handle.shutdown().await;
    }

    // Restarted with another default size: the rooms with their own keep theirs.
    let server = start_server(on_disk(4));
    let api = Api::new(&server);
    assert_eq!(shown(&room(&api, "kept").await), (Some(2), Some(600)));
    assert_eq!(shown(&room(&api, "mine").await), (Some(3), Some(3600)));
    assert_eq!(
        shown(&room(&api, "plain").await),
        (Some(4), Some(3600)),
        "no options: today's defaults"
    );
    assert_eq!(rest_history(&api, "kept").await, [3, 4]);
    assert_eq!(rest_history(&api, "mine").await, [2, 3, 4]);
    // The restored streams keep to them as they go on.
    let mut ann = server.client("ann", Fmt::Json).await;
    ann.ok(json!({"cmd": "join", "room": "kept"}), 1).await;
    ann.ok(json!({"cmd": "join", "room": "mine"}), 2).await;
    publish(&mut ann, "kept", 1).await;
    publish(&mut ann, "mine", 1).await;
    assert_eq!(history(&mut ann, "kept").await, [4, 5]);
    assert_eq!(history(&mut ann, "mine").await, [3, 4, 5]);
    server.handle.shutdown().await;
}
