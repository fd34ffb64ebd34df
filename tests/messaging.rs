//! Private messages and rooms, in both encodings and across shards.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_private_message_reaches_every_connection_of_the_user() {
    let server = start_server(|_| {});
    // Each message is the next one of bob's stream.
    for (offset, (sender_fmt, receiver_fmt)) in
        [(Fmt::Json, Fmt::MsgPack), (Fmt::MsgPack, Fmt::Json)]
            .into_iter()
            .enumerate()
    {
        let mut alice = server.client("alice", sender_fmt).await;
        let mut bob1 = server.client("bob", receiver_fmt).await;
        let mut bob2 = server.client("bob", Fmt::Json).await;
        let data = json!({"title": "hi", "n": [1, 2.5, -3], "nested": {"ok": true, "none": null}});
        alice
            .ok(
                json!({"cmd": "send", "to": "bob", "event": "notification", "data": data}),
                1,
            )
            .await;
        let expected = json!({"type": "event", "event": "notification", "from": "alice", "offset": offset + 1, "data": data});
        assert_eq!(bob1.recv().await, expected);
        assert_eq!(bob2.recv().await, expected);
        for c in [alice, bob1, bob2] {
            c.close().await;
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn send_excludes_the_sending_connection_unless_echo() {
    let server = start_server(|_| {});
    let mut a1 = server.client("amy", Fmt::Json).await;
    let mut a2 = server.client("amy", Fmt::Json).await;
    a1.ok(
        json!({"cmd": "send", "to": "amy", "event": "sync", "data": 1}),
        1,
    )
    .await;
    assert_eq!(a2.recv().await["data"], 1);
    // The sender's next message is the reply to the echo send, not the first event.
    a1.send(json!({"cmd": "send", "to": "amy", "event": "sync", "data": 2, "echo": true, "id": 2}))
        .await;
    let first = a1.recv().await;
    assert_eq!(
        (first["type"].as_str(), first["data"].as_i64()),
        (Some("event"), Some(2))
    );
    assert_eq!(a1.recv().await, json!({"type": "reply", "id": 2}));
    assert_eq!(a2.recv().await["data"], 2);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn room_join_publish_leave() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let mut a = server.client("ann", fmt).await;
        let mut b = server.client("ben", fmt).await;
        let mut c = server.client("cat", Fmt::Json).await;
        // The join answers the room stream's position: the next event has the next offset.
        let at = a.call(json!({"cmd": "join", "room": "lobby"}), 1).await["offset"]
            .as_u64()
            .unwrap();
        for (client, id) in [(&mut b, 2), (&mut c, 3)] {
            client.ok(json!({"cmd": "join", "room": "lobby"}), id).await;
        }
        // Joining twice is fine.
        b.ok(json!({"cmd": "join", "room": "lobby"}), 4).await;
        a.ok(json!({"cmd": "publish", "room": "lobby", "event": "chat:message", "data": {"text": "hello"}}), 5).await;
        let expected = json!({"type": "event", "event": "chat:message", "room": "lobby", "from": "ann", "offset": at + 1, "data": {"text": "hello"}});
        assert_eq!(b.recv().await, expected);
        assert_eq!(c.recv().await, expected);

        // After leaving, ben gets nothing from the room: the sentinel sent after the publish
        // is the next thing he sees (one sender's messages arrive in order).
        b.ok(json!({"cmd": "leave", "room": "lobby"}), 6).await;
        a.ok(
            json!({"cmd": "publish", "room": "lobby", "event": "chat:message", "data": "second"}),
            7,
        )
        .await;
        a.ok(json!({"cmd": "send", "to": "ben", "event": "sentinel"}), 8)
            .await;
        assert_eq!(c.recv().await["data"], "second");
        let next = b.recv().await;
        assert_eq!(
            (next["event"].as_str(), next["data"].clone()),
            (Some("sentinel"), json!(null))
        );

        // Errors: leave a room not joined, publish to a room not joined.
        let e = b.call(json!({"cmd": "leave", "room": "lobby"}), 9).await;
        assert_eq!(e["code"], "room.not_joined");
        let e = b
            .call(json!({"cmd": "publish", "room": "lobby", "event": "x"}), 10)
            .await;
        assert_eq!(e["code"], "room.forbidden");
        for cl in [a, b, c] {
            cl.close().await;
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn publish_with_echo_reaches_the_sender_too() {
    let server = start_server(|_| {});
    let mut a = server.client("al", Fmt::MsgPack).await;
    a.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    a.send(
        json!({"cmd": "publish", "room": "r", "event": "e", "data": [1], "echo": true, "id": 2}),
    )
    .await;
    assert_eq!(a.recv().await["data"], json!([1]));
    assert_eq!(
        a.recv().await,
        json!({"type": "reply", "id": 2, "offset": 1})
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn delivery_crosses_shards() {
    let server = start_server(|c| c.shards = 2);
    for fmt in BOTH {
        let mut alice = server.client_on_shard("alice", fmt, 0).await;
        let mut bob0 = server.client_on_shard("bob", Fmt::Json, 0).await;
        let mut bob1 = server.client_on_shard("bob", Fmt::MsgPack, 1).await;
        let mut carl1 = server.client_on_shard("carl", fmt, 1).await;

        alice
            .ok(
                json!({"cmd": "send", "to": "bob", "event": "dm", "data": {"k": "v"}}),
                1,
            )
            .await;
        assert_eq!(bob0.recv().await["data"], json!({"k": "v"}));
        assert_eq!(bob1.recv().await["data"], json!({"k": "v"}));

        carl1.ok(json!({"cmd": "join", "room": "x"}), 2).await;
        bob0.ok(json!({"cmd": "join", "room": "x"}), 3).await;
        alice.ok(json!({"cmd": "join", "room": "x"}), 4).await;
        alice
            .ok(
                json!({"cmd": "publish", "room": "x", "event": "news", "data": 42}),
                5,
            )
            .await;
        assert_eq!(carl1.recv().await["data"], 42);
        assert_eq!(bob0.recv().await["data"], 42);
        // And back the other way, from shard 1 to shard 0.
        carl1
            .ok(
                json!({"cmd": "publish", "room": "x", "event": "news", "data": 43}),
                6,
            )
            .await;
        assert_eq!(alice.recv().await["data"], 43);
        assert_eq!(bob0.recv().await["data"], 43);
        for c in [alice, bob0, bob1, carl1] {
            c.close().await;
        }
    }
    let per_shard = server.handle.shard_stats();
    assert!(
        per_shard.iter().all(|s| s.deliveries > 0),
        "both shards delivered: {per_shard:?}"
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_publisher_held_up_by_a_full_inbox_loses_nothing_and_keeps_order() {
    // An inbox of one delivery: the publisher's commands wait for room on the other shard. Its
    // connection then runs the command in a task and reads nothing more until the command ends.
    let server = start_server(|c| {
        c.shards = 2;
        c.shard_inbox_capacity = 1;
        c.rate_per_sec = 1_000_000;
        c.rate_burst = 1_000_000;
    });
    let mut publisher = server.client_on_shard("pub", Fmt::Json, 0).await;
    let mut far = server.client_on_shard("far", Fmt::MsgPack, 1).await;
    let mut near = server.client_on_shard("near", Fmt::Json, 0).await;
    for (id, c) in [&mut publisher, &mut far, &mut near]
        .into_iter()
        .enumerate()
    {
        c.ok(json!({"cmd": "join", "room": "q"}), id as u64 + 1)
            .await;
    }
    const N: u64 = 500;
    // Sent back to back, so the server reads many publishes at once.
    for n in 1..=N {
        let cmd = json!({"cmd": "publish", "room": "q", "event": "seq", "data": n, "id": 100 + n});
        publisher.send(cmd).await;
    }
    for n in 1..=N {
        assert_eq!(
            publisher.recv().await,
            json!({"type": "reply", "id": 100 + n, "offset": n})
        );
    }
    for c in [&mut far, &mut near] {
        for n in 1..=N {
            assert_eq!(c.recv().await["data"], n);
        }
    }
    let waited = server.handle.stats().commands_waited;
    assert!(
        waited > 0,
        "no publish found the inbox full: the test did not test the wait"
    );
    for c in [publisher, far, near] {
        c.close().await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn rooms_per_connection_and_per_server_are_bounded() {
    let server = start_server(|c| {
        c.max_rooms_per_connection = 2;
        c.max_rooms = 3;
    });
    let mut a = server.client("a", Fmt::Json).await;
    a.ok(json!({"cmd": "join", "room": "r1"}), 1).await;
    a.ok(json!({"cmd": "join", "room": "r2"}), 2).await;
    let e = a.call(json!({"cmd": "join", "room": "r3"}), 3).await;
    assert_eq!(e["code"], "room.limit");
    let mut b = server.client("b", Fmt::Json).await;
    b.ok(json!({"cmd": "join", "room": "r3"}), 1).await;
    let e = b.call(json!({"cmd": "join", "room": "r4"}), 2).await;
    assert_eq!(e["code"], "room.limit");
    // A room disappears with its last member, freeing a slot.
    a.ok(json!({"cmd": "leave", "room": "r1"}), 4).await;
    b.ok(json!({"cmd": "join", "room": "r4"}), 3).await;
    assert_eq!(server.handle.room_count(), 3);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn replies_carry_numeric_and_string_ids_and_errors_have_stable_codes() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let mut c = server.client("ida", fmt).await;
        c.send(json!({"cmd": "ping", "id": "req-1"})).await;
        assert_eq!(c.recv().await, json!({"type": "reply", "id": "req-1"}));
        c.send(json!({"cmd": "ping", "id": 18446744073709551615u64}))
            .await;
        assert_eq!(
            c.recv().await,
            json!({"type": "reply", "id": 18446744073709551615u64})
        );

        let e = c.call(json!({"cmd": "fly"}), 1).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unknown_command"))
        );
        let e = c.call(json!({"cmd": "join", "room": 5}), 2).await;
        assert_eq!(e["code"], "bad_request");
        assert!(
            e["message"].as_str().unwrap().contains("room"),
            "names the field: {e}"
        );
        let e = c.call(json!({"cmd": "join"}), 3).await;
        assert_eq!(e["code"], "bad_request");
        let e = c
            .call(
                json!({"cmd": "send", "to": "x".repeat(200), "event": "e"}),
                4,
            )
            .await;
        assert_eq!(e["code"], "bad_request");
        // A command without an id gets no reply on success, but an error (without id) on failure.
        c.send(json!({"cmd": "leave", "room": "nowhere"})).await;
        let e = c.recv().await;
        assert_eq!(
            (e["code"].as_str(), e.get("id")),
            (Some("room.not_joined"), None)
        );
        c.close().await;
    }
    server.handle.shutdown().await;
}
