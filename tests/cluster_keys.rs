//! Idempotency keys in cluster mode, over a real `redis-server` and real nodes: a backend's
//! retry that the balancer sends to another node gets the first answer there and adds nothing
//! to any stream; so does a client's `publish` retried after reconnecting to another node, and
//! the same key sent to two nodes at once runs once.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::cluster::{join, node};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_rest_push_retried_on_another_node_answers_the_same_and_stores_once() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let (api_a, api_b, api_c) = (Api::new(&a), Api::new(&b), Api::new(&c));
    // A room made by a join on node C: a push through node A finds it (its members are in
    // Redis) instead of answering `room.not_found`.
    let mut member = c.client("ann", Fmt::Json).await;
    join(&mut member, "orders", 1).await;
    // Once the join is synced into Redis (a few ms after its reply: docs/cluster.md).
    api_a.wait_connections("orders", "ann", 1).await;
    let push = json!({"event": "order:paid", "data": {"order": 7}});
    let path = "/api/v1/push/rooms/orders";
    let first = api_a.post_keyed(path, "pay-7", &push).await;
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(member.recv().await["data"], json!({"order": 7}));
    // The backend timed out and retries; the balancer picks another node.
    let retry = api_b.post_keyed(path, "pay-7", &push).await;
    assert_eq!(retry, first, "the first answer, byte for byte");
    let again = api_c.post_keyed(path, "pay-7", &push).await;
    assert_eq!(again, first);
    assert_eq!(api_b.history("orders").await, [1], "one message stored");
    // What a retry would have delivered did not come: the next event is the next push.
    let next = api_b.post_keyed(path, "pay-8", &push).await;
    assert_eq!(next.0, 200, "{next:?}");
    assert_eq!(member.recv().await["offset"], 2);
    assert_eq!(api_c.history("orders").await, [1, 2]);

    // The same key sent to three nodes at once runs once: every answer is the first's.
    let push = json!({"event": "order:paid", "data": {"order": 9}});
    let (x, y, z) = tokio::join!(
        api_a.post_keyed(path, "pay-9", &push),
        api_b.post_keyed(path, "pay-9", &push),
        api_c.post_keyed(path, "pay-9", &push),
    );
    assert_eq!(x.0, 200, "{x:?}");
    assert!(x == y && y == z, "{x:?} {y:?} {z:?}");
    assert_eq!(api_a.history("orders").await, [1, 2, 3]);
    assert_eq!(member.recv().await["offset"], 3);

    // A batch item's key is shared too: the retry on another node delivers nothing, so the
    // next event the user gets is the next push.
    let batch = json!({"pushes": [
        {"userId": "ann", "event": "n", "idempotencyKey": "b-1"}
    ]});
    let (s1, one) = api_a.post("/api/v1/push/batch", batch.clone()).await;
    let (s2, two) = api_b.post("/api/v1/push/batch", batch).await;
    assert_eq!((s1, s2), (200, 200), "{one} {two}");
    assert_eq!(one, two);
    let (s, _) = api_c
        .post(
            "/api/v1/push/users",
            json!({"userIds": ["ann"], "event": "m"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(member.recv().await["event"], "n");
    assert_eq!(
        member.recv().await["event"],
        "m",
        "the batch item came once"
    );
}

#[tokio::test]
async fn a_client_publish_retried_on_another_node_gets_the_same_offset() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    for fmt in BOTH {
        let room = format!("idem-{}", fmt.query());
        let mut ben = b.client("ben", fmt).await;
        join(&mut ben, &room, 1).await;
        let mut ann = a.client("ann", fmt).await;
        join(&mut ann, &room, 1).await;
        let idem = format!("m-{}", fmt.query());
        let publish =
            json!({"cmd": "publish", "room": room, "event": "chat", "data": "hi", "idem": idem});
        let first = ann.call(publish.clone(), 2).await;
        assert_eq!(first, json!({"type": "reply", "id": 2, "offset": 1}));
        // Ann's connection dropped before the reply; she reconnects to the other node.
        drop(ann);
        let mut again = b.client("ann", fmt).await;
        join(&mut again, &room, 1).await;
        let retry = again.call(publish, 3).await;
        assert_eq!(retry, json!({"type": "reply", "id": 3, "offset": 1}));
        assert_eq!(ben.recv().await["offset"], 1);
        // Ben's own next publish is offset 2: the retry added nothing.
        let next = json!({"cmd": "publish", "room": room, "event": "chat", "data": "yo"});
        assert_eq!(ben.call(next, 4).await["offset"], 2);
        assert_eq!(Api::new(&a).history(&room).await, [1, 2]);
    }
}
