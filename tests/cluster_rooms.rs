//! Room definitions in cluster mode when Redis restarts empty (no AOF): the nodes that ran
//! through it give Redis back the rooms they know, private ones with the users let in, so a
//! node started afterwards knows them too and keeps private rooms private.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::cluster::{connected, node_with};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// A node of the cluster on `redis`, beating every 100 ms, connected to it.
async fn node(redis: &RedisServer) -> TestServer {
    node_with(redis, |c| {
        c.cluster_node_timeout = Duration::from_millis(400)
    })
    .await
}

#[tokio::test]
async fn room_definitions_are_given_back_to_a_redis_restarted_empty() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let api = Api::new(&a);
    let made = json!({"roomId": "vip", "createdBy": "ann", "private": true});
    assert_eq!(api.post("/api/v1/rooms", made).await.0, 201);
    let allow = json!({"userId": "bob"});
    let (s, r) = api.post("/api/v1/rooms/vip/members", allow).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        api.post("/api/v1/rooms", json!({"roomId": "open"})).await.0,
        201
    );

    let defs = |redis: &RedisServer| redis.cli(&["HLEN", "wsgate:{n}:defs"]).unwrap();
    assert_eq!(defs(&redis).trim(), "2");
    redis.restart();
    assert_eq!(defs(&redis).trim(), "0", "empty");
    connected(&a).await;
    // Node A's next beat finds itself missing and gives the rooms back.
    let deadline = tokio::time::Instant::now() + WAIT;
    while defs(&redis).trim() != "2" {
        assert!(tokio::time::Instant::now() < deadline, "never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A node that starts now reads them from Redis.
    let c = node(&redis).await;
    let (s, r) = Api::new(&c).get("/api/v1/rooms/vip").await;
    assert_eq!((s, r["private"].clone()), (200, json!(true)), "{r}");
    let mut bob = c.client("bob", Fmt::Json).await;
    let r = bob.call(json!({"cmd": "join", "room": "vip"}), 1).await;
    assert_eq!(r["type"], "reply", "let in before the restart: {r}");
    let mut eve = c.client("eve", Fmt::MsgPack).await;
    let e = eve.call(json!({"cmd": "join", "room": "vip"}), 2).await;
    assert_eq!(code(&e), "room.forbidden", "still private: {e}");
    let (s, _) = Api::new(&c).get("/api/v1/rooms/open").await;
    assert_eq!(s, 200);
}
