//! Who may join which room, over the real server: public rooms, private rooms (their creator,
//! the users the backend let in), a token's `rooms` claim, and `ROOMS_REQUIRE_CREATE`. Every
//! refusal is an error with a stable code, and the connection keeps being served.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use wsgate::MintOptions;

/// A token for `user` whose `rooms` claim is `patterns`.
fn token_with_rooms(user: &str, patterns: &[&str]) -> String {
    let opts = MintOptions {
        rooms: Some(patterns),
        ..MintOptions::default()
    };
    wsgate::mint(SECRET, user, Duration::from_secs(3600), &opts)
}

async fn join_code(c: &mut Client, room: &str, id: u64) -> String {
    let answer = c.call(json!({"cmd": "join", "room": room}), id).await;
    match answer["type"].as_str() {
        Some("reply") => "ok".into(),
        _ => code(&answer).to_owned(),
    }
}

#[tokio::test]
async fn a_rooms_claim_is_the_only_rooms_its_user_may_join() {
    let server = start_server(|_| {});
    for fmt in [Fmt::Json, Fmt::MsgPack] {
        let mut c = server
            .client_with_token(&token_with_rooms("tia", &["team:42:*", "lobby"]), fmt)
            .await;
        assert_eq!(join_code(&mut c, "team:42:general", 1).await, "ok");
        assert_eq!(join_code(&mut c, "lobby", 2).await, "ok");
        for (room, id) in [("team:43:general", 3), ("lobby2", 4), ("support", 5)] {
            let e = c.call(json!({"cmd": "join", "room": room}), id).await;
            assert_eq!(code(&e), "room.forbidden", "{room}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains("rooms claim"),
                "{e}"
            );
        }
        // Still served, and a publish outside its rooms is refused as before.
        let e = c
            .call(
                json!({"cmd": "publish", "room": "support", "event": "x"}),
                6,
            )
            .await;
        assert_eq!(code(&e), "room.forbidden");
        c.ok(json!({"cmd": "ping"}), 7).await;
        c.close().await;
    }
    // A claim that breaks its bounds is a refused token.
    let many: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = Client::connect(
        &server.url(&format!("token={}", token_with_rooms("tia", &many))),
        Fmt::Json,
    )
    .await;
    let refused = refused
        .err()
        .expect("a token with 65 room patterns is refused");
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (401, Some("auth.invalid"))
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn private_rooms_let_in_their_creator_the_users_added_and_matching_claims_only() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, r) = api
        .post(
            "/api/v1/rooms",
            json!({"roomId": "vip", "createdBy": "ann", "private": true}),
        )
        .await;
    assert_eq!((s, r["private"].clone()), (201, json!(true)), "{r}");
    let (s, r) = api.get("/api/v1/rooms/vip").await;
    assert_eq!((s, r["private"].clone()), (200, json!(true)));
    let (_, r) = api.post("/api/v1/rooms", json!({"roomId": "open"})).await;
    assert_eq!(r["private"], false, "rooms are public unless asked");

    let mut ann = server.client("ann", Fmt::Json).await;
    let mut bob = server.client("bob", Fmt::MsgPack).await;
    assert_eq!(join_code(&mut ann, "vip", 1).await, "ok", "its creator");
    let e = bob.call(json!({"cmd": "join", "room": "vip"}), 2).await;
    assert_eq!(code(&e), "room.forbidden", "{e}");
    assert!(e["message"].as_str().unwrap().contains("private"), "{e}");
    assert_eq!(join_code(&mut bob, "open", 3).await, "ok", "a public room");

    // The backend lets bob in: his connection now, and any later one.
    let (s, r) = api
        .post("/api/v1/rooms/vip/members", json!({"userId": "bob"}))
        .await;
    assert_eq!((s, r), (200, json!({"added": 1})));
    let mut bob2 = server.client("bob", Fmt::Json).await;
    assert_eq!(
        join_code(&mut bob2, "vip", 4).await,
        "ok",
        "let in by the backend"
    );
    // Removed again: no more new joins.
    let (s, _) = api.delete("/api/v1/rooms/vip/members/bob").await;
    assert_eq!(s, 200);
    let mut bob3 = server.client("bob", Fmt::Json).await;
    assert_eq!(join_code(&mut bob3, "vip", 5).await, "room.forbidden");

    // A claim that matches opens a private room; one that does not, does not.
    let mut cal = server
        .client_with_token(&token_with_rooms("cal", &["v*"]), Fmt::Json)
        .await;
    assert_eq!(join_code(&mut cal, "vip", 6).await, "ok");
    let mut dee = server
        .client_with_token(&token_with_rooms("dee", &["open"]), Fmt::Json)
        .await;
    assert_eq!(join_code(&mut dee, "vip", 7).await, "room.forbidden");
    assert_eq!(join_code(&mut dee, "open", 8).await, "ok");

    for c in [ann, bob, bob2, bob3, cal, dee] {
        c.close().await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn with_rooms_require_create_a_join_makes_no_room() {
    let server = start_api_server(|c| c.rooms_require_create = true);
    let api = Api::new(&server);
    let mut c = server.client("ann", Fmt::Json).await;
    let e = c.call(json!({"cmd": "join", "room": "nowhere"}), 1).await;
    assert_eq!(code(&e), "room.not_found", "{e}");
    let (s, r) = api.get("/api/v1/rooms/nowhere").await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (404, Some("room.not_found"))
    );
    api.post("/api/v1/rooms", json!({"roomId": "made"})).await;
    assert_eq!(join_code(&mut c, "made", 2).await, "ok");
    c.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_room_with_max_members_refuses_one_more_join() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, r) = api
        .post("/api/v1/rooms", json!({"roomId": "duo", "maxMembers": 2}))
        .await;
    assert_eq!((s, r["maxMembers"].clone()), (201, json!(2)), "{r}");
    let (s, e) = api
        .post("/api/v1/rooms", json!({"roomId": "bad", "maxMembers": 0}))
        .await;
    assert_eq!(
        (s, e["error"]["details"][0]["field"].as_str()),
        (400, Some("maxMembers"))
    );
    let mut a = server.client("ann", Fmt::Json).await;
    let mut b = server.client("bob", Fmt::MsgPack).await;
    let mut c = server.client("cat", Fmt::Json).await;
    assert_eq!(join_code(&mut a, "duo", 1).await, "ok");
    assert_eq!(join_code(&mut b, "duo", 2).await, "ok");
    let e = c.call(json!({"cmd": "join", "room": "duo"}), 3).await;
    assert_eq!(code(&e), "room.limit", "{e}");
    // A place comes free when a member leaves.
    a.ok(json!({"cmd": "leave", "room": "duo"}), 4).await;
    assert_eq!(join_code(&mut c, "duo", 5).await, "ok");
    for cl in [a, b, c] {
        cl.close().await;
    }
    server.handle.shutdown().await;
}
