//! The client's `create` command over the real server: a room with options, made as
//! `POST /api/v1/rooms` makes one (its creator recorded), joined by the creating connection and
//! answered with the stream's position; and every refusal, each with its stable code.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wsgate::MintOptions;

fn create(room: &str) -> Value {
    json!({"cmd": "create", "room": room})
}

/// The code of a refused command, `"ok"` for a reply.
async fn outcome(c: &mut Client, cmd: Value, id: u64) -> String {
    let answer = c.call(cmd, id).await;
    match answer["type"].as_str() {
        Some("reply") => "ok".into(),
        _ => code(&answer).to_owned(),
    }
}

#[tokio::test]
async fn create_makes_the_room_with_its_options_joins_it_and_answers_its_position() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let room = format!("team-{}", fmt.query());
        let mut ann = server.client("ann", fmt).await;
        let cmd = json!({"cmd": "create", "room": room, "private": true, "maxMembers": 50});
        let reply = ann.call(cmd, 1).await;
        assert_eq!(
            (
                reply["type"].as_str(),
                reply["room"].as_str(),
                reply["offset"].as_u64()
            ),
            (Some("reply"), Some(&*room), Some(0)),
            "{reply}"
        );
        assert_eq!(reply["epoch"].as_str().unwrap().len(), 16, "{reply}");
        assert!(reply.get("recovered").is_none(), "{reply}");
        // As the backend sees it: the creator recorded, the options kept, one member.
        let (s, info) = api.get(&format!("/api/v1/rooms/{room}")).await;
        assert_eq!(s, 200, "{info}");
        assert_eq!(
            (
                &info["createdBy"],
                &info["private"],
                &info["maxMembers"],
                &info["members"]
            ),
            (&json!("ann"), &json!(true), &json!(50), &json!(1)),
            "{info}"
        );
        assert!(info["createdAt"].is_string(), "{info}");
        // The creator is a member: it publishes at once.
        let published = ann
            .call(json!({"cmd": "publish", "room": room, "event": "hi"}), 2)
            .await;
        assert_eq!(published["offset"], 1, "{published}");

        // Private: others stay out until the backend lets them in; the creator may come back.
        let mut ben = server.client("ben", fmt).await;
        let join = json!({"cmd": "join", "room": room});
        assert_eq!(outcome(&mut ben, join.clone(), 1).await, "room.forbidden");
        let (s, _) = api
            .post(
                &format!("/api/v1/rooms/{room}/members"),
                json!({"userId": "ben"}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(outcome(&mut ben, join.clone(), 2).await, "ok");
        ann.ok(json!({"cmd": "leave", "room": room}), 3).await;
        let mut tab = server.client("ann", fmt).await;
        assert_eq!(
            outcome(&mut tab, join, 1).await,
            "ok",
            "the creator's other connection"
        );
        // The room outlives its members, like the backend's.
        for c in [ann, ben, tab] {
            c.close().await;
        }
        let (s, info) = api.get(&format!("/api/v1/rooms/{room}")).await;
        assert_eq!((s, info["createdBy"].as_str()), (200, Some("ann")));
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn create_is_refused_with_the_existing_codes() {
    let server = start_api_server(|c| {
        c.max_rooms = 4;
        c.max_rooms_per_connection = 2;
        c.max_rooms_created_per_user = 2;
    });
    let api = Api::new(&server);
    let mut ann = server.client("ann", Fmt::MsgPack).await;
    // A room that exists: made by the backend, by a join, or by another create.
    let (s, _) = api
        .post("/api/v1/rooms", json!({"roomId": "backend"}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        outcome(&mut ann, create("backend"), 1).await,
        "room.conflict"
    );
    let mut ben = server.client("ben", Fmt::Json).await;
    ben.ok(json!({"cmd": "join", "room": "joined"}), 1).await;
    assert_eq!(
        outcome(&mut ann, create("joined"), 2).await,
        "room.conflict"
    );
    assert_eq!(outcome(&mut ann, create("a1"), 3).await, "ok");
    let again = ann.call(create("a1"), 4).await;
    assert_eq!(code(&again), "room.conflict", "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("exists"),
        "{again}"
    );
    // Rooms per connection: refused before the room is made.
    assert_eq!(outcome(&mut ann, create("a2"), 5).await, "ok");
    let full = ann.call(create("a3"), 6).await;
    assert_eq!(code(&full), "room.limit", "{full}");
    assert_eq!(api.get("/api/v1/rooms/a3").await.0, 404, "not made");
    // Rooms a user created: two (a1 and a2, which outlive ann's leaving), until the backend
    // closes one.
    ann.ok(json!({"cmd": "leave", "room": "a1"}), 7).await;
    assert_eq!(api.delete("/api/v1/rooms/backend").await.0, 200);
    let mine = ann.call(create("a3"), 8).await;
    assert_eq!(code(&mine), "room.limit", "{mine}");
    assert!(
        mine["message"].as_str().unwrap().contains("created"),
        "{mine}"
    );
    assert_eq!(api.delete("/api/v1/rooms/a1").await.0, 200);
    assert_eq!(outcome(&mut ann, create("a3"), 9).await, "ok");
    ann.ok(json!({"cmd": "leave", "room": "a3"}), 10).await;
    // A room of one member: the creator fills it.
    let small = json!({"cmd": "create", "room": "solo", "maxMembers": 1});
    assert_eq!(outcome(&mut ben, small, 2).await, "ok");
    let e = ann.call(json!({"cmd": "join", "room": "solo"}), 11).await;
    assert_eq!(code(&e), "room.limit", "{e}");
    // Rooms on the server: joined, a2, a3 and solo are four.
    let server_full = ann.call(create("a4"), 12).await;
    assert_eq!(code(&server_full), "room.limit", "{server_full}");
    assert!(server_full["message"].as_str().unwrap().contains("server"));
    // Malformed options.
    for (cmd, field) in [
        (
            json!({"cmd": "create", "room": "x", "maxMembers": 0}),
            "maxMembers",
        ),
        (
            json!({"cmd": "create", "room": "x", "maxMembers": 1_000_001}),
            "maxMembers",
        ),
        (
            json!({"cmd": "create", "room": "x", "private": 1}),
            "private",
        ),
        (json!({"cmd": "create", "room": ""}), "room"),
    ] {
        let e = ann.call(cmd, 13).await;
        assert_eq!(code(&e), "bad_request", "{e}");
        assert!(e["message"].as_str().unwrap().starts_with(field), "{e}");
    }
    ann.ok(json!({"cmd": "ping"}), 14).await;
    ann.close().await;
    ben.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn create_keeps_to_the_tokens_rooms_claim_and_is_how_rooms_come_with_rooms_require_create() {
    let server = start_server(|c| c.rooms_require_create = true);
    let opts = MintOptions {
        rooms: Some(&["team:42:*"]),
        ..MintOptions::default()
    };
    let token = wsgate::mint(SECRET, "tia", Duration::from_secs(3600), &opts);
    let mut tia = server.client_with_token(&token, Fmt::Json).await;
    let e = tia.call(create("elsewhere"), 1).await;
    assert_eq!(code(&e), "room.forbidden", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("rooms claim"),
        "{e}"
    );
    let mut ben = server.client("ben", Fmt::MsgPack).await;
    let join = json!({"cmd": "join", "room": "team:42:general"});
    assert_eq!(outcome(&mut ben, join.clone(), 1).await, "room.not_found");
    assert_eq!(outcome(&mut tia, create("team:42:general"), 2).await, "ok");
    assert_eq!(
        outcome(&mut ben, join, 2).await,
        "ok",
        "a public room, now it exists"
    );
    tia.close().await;
    ben.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_server_may_let_no_client_create_rooms() {
    let server = start_server(|c| c.max_rooms_created_per_user = 0);
    let mut ann = server.client("ann", Fmt::Json).await;
    let e = ann.call(create("mine"), 1).await;
    assert_eq!(code(&e), "room.limit", "{e}");
    assert!(e["message"].as_str().unwrap().contains("no client"), "{e}");
    // Joining still makes rooms (unless ROOMS_REQUIRE_CREATE).
    assert_eq!(
        outcome(&mut ann, json!({"cmd": "join", "room": "mine"}), 2).await,
        "ok"
    );
    ann.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn create_may_turn_a_rooms_presence_off_or_on() {
    let server = start_api_server(|c| c.room_presence = false);
    let api = Api::new(&server);
    for fmt in [Fmt::Json, Fmt::MsgPack] {
        let mut ann = server.client("ann", fmt).await;
        let (quiet, loud) = (
            format!("quiet-{}", fmt.query()),
            format!("loud-{}", fmt.query()),
        );
        let r = ann
            .call(
                json!({"cmd": "create", "room": quiet, "presence": false}),
                1,
            )
            .await;
        assert_eq!(r["type"], "reply", "{r}");
        let r = ann
            .call(json!({"cmd": "create", "room": loud, "presence": true}), 2)
            .await;
        assert_eq!(r["type"], "reply", "{r}");
        let mut ben = server.client("ben", fmt).await;
        let r = ben
            .call(json!({"cmd": "join", "room": quiet, "presence": true}), 1)
            .await;
        assert_eq!(r["presence"], false, "the room announces none: {r}");
        let r = ben
            .call(json!({"cmd": "join", "room": loud, "presence": true}), 2)
            .await;
        assert_eq!(r["presence"], true, "on, against the server's default: {r}");
        let (_, room) = api.get(&format!("/api/v1/rooms/{loud}")).await;
        assert_eq!(room["presence"], true, "{room}");
        let e = ann
            .call(json!({"cmd": "create", "room": "x", "presence": "yes"}), 3)
            .await;
        assert_eq!(
            (code(&e), e["message"].as_str()),
            ("bad_request", Some("presence: expected a boolean"))
        );
    }
}
