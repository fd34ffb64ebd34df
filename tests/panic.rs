//! Panic containment: a panic while serving one connection closes that connection with 1011;
//! a panic in a shard's delivery code skips that delivery. Either way the shards and every
//! other connection keep serving. The panics are injected with `Config::faults`, which no
//! flag or environment variable can set.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::json;
use wsgate::testing::{Faults, PANIC_IN_CONNECTION, PANIC_IN_SHARD};

/// Publishes `n` to `room` from `from` and checks that `to` receives it.
async fn still_delivered(from: &mut Client, to: &mut Client, room: &str, n: u64) {
    from.ok(
        json!({"cmd": "publish", "room": room, "event": "tick", "data": n}),
        1000 + n,
    )
    .await;
    let got = to.recv().await;
    assert_eq!(
        (got["event"].as_str(), got["data"].as_u64()),
        (Some("tick"), Some(n))
    );
}

#[tokio::test]
async fn a_panic_in_one_connection_closes_only_that_connection_with_1011() {
    let server = start_server(|c| c.faults = Faults::On);
    // A bystander pair on each shard, so both shards are shown to keep serving.
    let mut speaker = server.client_on_shard("speaker", Fmt::Json, 0).await;
    let mut listener = server.client_on_shard("listener", Fmt::MsgPack, 1).await;
    let mut victim = server.client_on_shard("victim", Fmt::Json, 0).await;
    for (c, id) in [(&mut speaker, 1), (&mut listener, 2)] {
        c.ok(json!({"cmd": "join", "room": "lobby"}), id).await;
    }
    victim
        .ok(json!({"cmd": "join", "room": PANIC_IN_CONNECTION}), 3)
        .await;
    still_delivered(&mut speaker, &mut listener, "lobby", 1).await;

    victim
        .send(json!({"cmd": "publish", "room": PANIC_IN_CONNECTION, "event": "x", "data": 1, "id": 4}))
        .await;
    victim.expect_close(1011).await;
    assert_eq!(server.handle.stats().panics, 1);

    // Everyone else keeps being served, on both shards, and the victim can come back.
    still_delivered(&mut speaker, &mut listener, "lobby", 2).await;
    still_delivered(&mut listener, &mut speaker, "lobby", 3).await;
    let mut again = server.client_on_shard("victim", Fmt::Json, 0).await;
    again.ok(json!({"cmd": "join", "room": "lobby"}), 5).await;
    still_delivered(&mut speaker, &mut again, "lobby", 4).await;
    // The victim's connection was cleaned up: its slot and room membership are gone.
    assert_eq!(server.handle.stats().connections, 3);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_panic_in_shard_delivery_skips_that_delivery_and_the_shards_keep_serving() {
    let server = start_server(|c| c.faults = Faults::On);
    let mut publisher = server.client_on_shard("pub", Fmt::Json, 0).await;
    let mut near = server.client_on_shard("near", Fmt::Json, 0).await;
    let mut far = server.client_on_shard("far", Fmt::MsgPack, 1).await;
    for (c, id) in [(&mut publisher, 1), (&mut near, 2), (&mut far, 3)] {
        c.ok(json!({"cmd": "join", "room": PANIC_IN_SHARD}), id)
            .await;
        c.ok(json!({"cmd": "join", "room": "lobby"}), id + 10).await;
    }
    // Both shards panic delivering this event: the publisher's shard inside its connection's
    // command, the other in its inbox loop. Neither takes the publisher or the shard down.
    publisher
        .ok(
            json!({"cmd": "publish", "room": PANIC_IN_SHARD, "event": "x", "data": 0}),
            20,
        )
        .await;
    // Cross-shard delivery still works in both directions afterwards, and the skipped
    // event never arrives: the next thing each member receives is the lobby message.
    still_delivered(&mut publisher, &mut far, "lobby", 1).await;
    assert_eq!(near.recv().await["data"], 1);
    still_delivered(&mut far, &mut near, "lobby", 2).await;
    assert_eq!(publisher.recv().await["data"], 2);
    let panics: Vec<u64> = server
        .handle
        .shard_stats()
        .iter()
        .map(|s| s.panics)
        .collect();
    assert_eq!(panics, vec![1, 1], "one contained panic per shard");
    assert_eq!(server.handle.stats().connections, 3);
    server.handle.shutdown().await;
}
