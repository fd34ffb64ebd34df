//! What the cluster tests share: starting a node, waiting for its link to Redis, reading its
//! metrics, joining, and reading a room's events.

use std::time::Duration;

use serde_json::{json, Value};

use super::redis::RedisServer;
use super::{start_api_server, Client, Remote, TestServer, WAIT};

/// A node of the cluster on `redis` (with the REST API), connected to it, with `tweak`
/// applied to its config.
pub async fn node_with(redis: &RedisServer, tweak: impl FnOnce(&mut wsgate::Config)) -> TestServer {
    let url = redis.url();
    let server = start_api_server(move |c| {
        c.cluster_redis_url = Some(url);
        c.cluster_timeout = Duration::from_millis(500);
        tweak(c);
    });
    connected(&server).await;
    server
}

/// Waits until `server`'s `/readyz` no longer says degraded.
pub async fn connected(server: &Remote) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.get("/readyz").await.1.contains("degraded") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never connected to Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Joins `room`, asserting it was a reply.
pub async fn join(c: &mut Client, room: &str, id: u64) -> Value {
    let r = c.call(json!({"cmd": "join", "room": room}), id).await;
    assert_eq!(r["type"], "reply", "{r}");
    r
}

/// The value of metric `name` on `server`.
pub async fn metric(server: &Remote, name: &str) -> u64 {
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {body}"))
}

/// Reads `room`'s events until `n` of them came: their offsets and data. Anything else is
/// a failure.
pub async fn events(c: &mut Client, room: &str, n: usize) -> Vec<(u64, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = c.recv().await;
        assert!(m["type"] == "event" && m["room"] == room, "unexpected {m}");
        got.push((m["offset"].as_u64().unwrap(), m["data"].clone()));
    }
    got
}
