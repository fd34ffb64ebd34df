//! Idempotency keys over the real server: REST pushes with `Idempotency-Key` (and a batch item's
//! `idempotencyKey`), and client `publish`/`send` with `idem`. A retry gets the first answer and
//! adds nothing to any stream, even while the first still runs; keys are scoped, bounded, and
//! an error is not remembered.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_rest_push_retried_with_its_key_answers_the_same_and_stores_once() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "orders"})).await;
    assert_eq!(s, 201);
    let mut a = server.client("ann", Fmt::MsgPack).await;
    a.ok(json!({"cmd": "join", "room": "orders"}), 1).await;
    let push = json!({"event": "order:paid", "data": {"order": 7}});
    let first = api
        .post_keyed("/api/v1/push/rooms/orders", "pay-7", &push)
        .await;
    assert_eq!(first, (200, r#"{"delivered":1}"#.to_owned()));
    assert_eq!(a.recv().await["data"], json!({"order": 7}));
    // The member leaves: a push run again would now reach nobody. The retry answers as the
    // first did and delivers nothing.
    a.ok(json!({"cmd": "leave", "room": "orders"}), 2).await;
    let retry = api
        .post_keyed("/api/v1/push/rooms/orders", "pay-7", &push)
        .await;
    assert_eq!(retry, first, "the first answer, byte for byte");
    assert_eq!(api.history("orders").await, [1], "one message stored");

    // Another route is another scope: the same key pushes there.
    let users = json!({"userIds": ["ann", "nobody"], "event": "n"});
    let to_users = api.post_keyed("/api/v1/push/users", "pay-7", &users).await;
    assert_eq!(to_users.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&to_users.1).unwrap(),
        json!({"delivered": 1, "offline": ["nobody"], "queued": ["nobody"]})
    );
    assert_eq!(a.recv().await["event"], "n");
    assert_eq!(
        api.post_keyed("/api/v1/push/users", "pay-7", &users).await,
        to_users
    );
    a.ok(json!({"cmd": "ping"}), 4).await;

    // Without a key, nothing is remembered.
    for _ in 0..2 {
        let (s, _) = api.post("/api/v1/push/rooms/orders", push.clone()).await;
        assert_eq!(s, 200);
    }
    assert_eq!(api.history("orders").await, [1, 2, 3]);
    a.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn concurrent_rest_retries_push_once() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "race"})).await;
    assert_eq!(s, 201);
    let push = json!({"event": "tick", "data": 1});
    let tries = (0..16).map(|_| api.post_keyed("/api/v1/push/rooms/race", "once", &push));
    let answers = futures_util::future::join_all(tries).await;
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer: {answers:?}"
    );
    assert_eq!(answers[0].0, 200);
    assert_eq!(api.history("race").await, [1], "pushed once");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_batch_remembers_each_keyed_item_and_the_whole_request() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "b"})).await;
    assert_eq!(s, 201);
    let batch = |keys: [Option<&str>; 2]| {
        let mut pushes = vec![
            json!({"roomId": "b", "event": "keyed"}),
            json!({"roomId": "b", "event": "free"}),
        ];
        for (item, key) in pushes.iter_mut().zip(keys) {
            if let Some(key) = key {
                item["idempotencyKey"] = json!(key);
            }
        }
        json!({ "pushes": pushes })
    };
    let (s, first) = api
        .post("/api/v1/push/batch", batch([Some("item-1"), None]))
        .await;
    assert_eq!(s, 200, "{first}");
    let (s, again) = api
        .post("/api/v1/push/batch", batch([Some("item-1"), None]))
        .await;
    assert_eq!((s, &again), (200, &first));
    let (_, page) = api.get("/api/v1/rooms/b/messages").await;
    let events: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["keyed", "free", "free"], "the keyed item once");

    // The whole batch under a header key: remembered as a whole.
    let whole = batch([None, None]);
    let one = api
        .post_keyed("/api/v1/push/batch", "batch-1", &whole)
        .await;
    assert_eq!(
        api.post_keyed("/api/v1/push/batch", "batch-1", &whole)
            .await,
        one
    );
    assert_eq!(api.history("b").await.len(), 5);

    // Refusals: a key twice in one batch, keys too long or not visible ASCII.
    let (s, e) = api
        .post("/api/v1/push/batch", batch([Some("k"), Some("k")]))
        .await;
    assert_eq!(
        (s, e["error"]["details"][0]["field"].as_str()),
        (400, Some("pushes[1].idempotencyKey")),
        "{e}"
    );
    let long = "k".repeat(65);
    let (s, e) = api
        .post("/api/v1/push/batch", batch([Some(&long), Some("a b")]))
        .await;
    let fields: Vec<&str> = e["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        (s, fields),
        (
            400,
            vec!["pushes[0].idempotencyKey", "pushes[1].idempotencyKey"]
        )
    );
    let (s, body) = api.post_keyed("/api/v1/push/batch", &long, &whole).await;
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (s, e["error"]["details"][0]["field"].as_str()),
        (400, Some("Idempotency-Key")),
        "{e}"
    );
    assert_eq!(api.history("b").await.len(), 5, "refusals push nothing");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn an_error_is_not_remembered_and_the_bound_forgets_the_oldest_key() {
    let server = start_api_server(|c| c.idempotency_max_keys = 1);
    let api = Api::new(&server);
    let push = json!({"event": "e"});
    let (s, _) = api.post_keyed("/api/v1/push/rooms/later", "k", &push).await;
    assert_eq!(s, 404);
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "later"})).await;
    assert_eq!(s, 201);
    let (s, _) = api.post_keyed("/api/v1/push/rooms/later", "k", &push).await;
    assert_eq!(s, 200, "the failed first is not the answer");
    assert_eq!(api.history("later").await, [1]);
    // One key remembered: a second forgets the first, whose retry then pushes again.
    api.post_keyed("/api/v1/push/rooms/later", "j", &push).await;
    api.post_keyed("/api/v1/push/rooms/later", "j", &push).await;
    assert_eq!(api.history("later").await, [1, 2]);
    api.post_keyed("/api/v1/push/rooms/later", "k", &push).await;
    assert_eq!(api.history("later").await, [1, 2, 3], "k was forgotten");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_client_publish_retried_with_its_idem_gets_the_same_offset() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let room = format!("idem-{}", fmt.query());
        let mut a = server.client("ann", fmt).await;
        let mut b = server.client("ben", fmt).await;
        for c in [&mut a, &mut b] {
            c.ok(json!({"cmd": "join", "room": room}), 1).await;
        }
        // A key names one command of the user's, whatever its room: one key per format here.
        let idem = format!("m-{}", fmt.query());
        let publish =
            json!({"cmd": "publish", "room": room, "event": "chat", "data": "hi", "idem": idem});
        let first = a.call(publish.clone(), 2).await;
        assert_eq!(first, json!({"type": "reply", "id": 2, "offset": 1}));
        // The retry (a new id, say after a reconnect) answers with the first offset.
        let mut again = server.client("ann", fmt).await;
        again.ok(json!({"cmd": "join", "room": room}), 1).await;
        let retry = again.call(publish.clone(), 3).await;
        assert_eq!(retry, json!({"type": "reply", "id": 3, "offset": 1}));
        assert_eq!(b.recv().await["offset"], 1, "ben gets ann's");
        // Another user's same key is another key.
        let theirs = b.call(publish, 4).await;
        assert_eq!(theirs["offset"], 2, "{theirs}");
        assert_eq!(a.recv().await["offset"], 2, "ann gets ben's");
        b.ok(json!({"cmd": "ping"}), 5).await;
        assert_eq!(api.history(&room).await, [1, 2]);

        // `send` too; its reply has no offset (a user's events are not in a room stream).
        let send = json!({"cmd": "send", "to": "ben", "event": "dm", "data": 1, "idem": format!("dm-{idem}")});
        assert_eq!(
            a.call(send.clone(), 6).await,
            json!({"type": "reply", "id": 6})
        );
        assert_eq!(a.call(send, 7).await, json!({"type": "reply", "id": 7}));
        assert_eq!(b.recv().await["event"], "dm");
        b.ok(json!({"cmd": "ping"}), 8).await;

        let long = json!({"cmd": "send", "to": "ben", "event": "dm", "idem": "k".repeat(65)});
        let e = a.call(long, 9).await;
        assert_eq!(code(&e), "bad_request");
        assert!(e["message"].as_str().unwrap().starts_with("idem"), "{e}");
        for c in [a, b, again] {
            c.close().await;
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn concurrent_client_retries_publish_once() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let mut c = server.client("ann", Fmt::Json).await;
        c.ok(json!({"cmd": "join", "room": "tabs"}), 1).await;
        tabs.push(c);
    }
    let publish =
        json!({"cmd": "publish", "id": 2, "room": "tabs", "event": "chat", "idem": "same"});
    for c in &mut tabs {
        c.send(publish.clone()).await;
    }
    let mut offsets = Vec::new();
    for c in &mut tabs {
        // Each tab may first get the event one of the others published.
        let reply = loop {
            let m = c.recv().await;
            if m["type"] == "reply" {
                break m;
            }
        };
        offsets.push(reply["offset"].clone());
    }
    assert_eq!(offsets, [json!(1), json!(1), json!(1), json!(1)]);
    assert_eq!(api.history("tabs").await, [1], "published once");
    server.handle.shutdown().await;
}
