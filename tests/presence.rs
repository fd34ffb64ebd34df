//! Presence over the real server (2 shards): room member lists (`members`, REST), coalesced
//! `presence.join` / `presence.leave` per user across shards and tabs, presence off per room,
//! and watched users' `user.online` / `user.offline` with the grace period.
//!
//! "Nothing more arrived" is shown without sleeping where it can be: a later change (a
//! sentinel) is made, and the next event must be the sentinel's, since every presence change
//! reaches each connection in the order it happened.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Joins `room`, asking for its presence events; returns the reply.
async fn join_presence(c: &mut Client, room: &str, id: u64) -> Value {
    let r = c
        .call(json!({"cmd": "join", "room": room, "presence": true}), id)
        .await;
    assert_eq!(r["type"], "reply", "{r}");
    r
}

async fn join(c: &mut Client, room: &str, id: u64) {
    c.ok(json!({"cmd": "join", "room": room}), id).await;
}

/// The event `presence.<kind>` of `user` in `room`, exactly as it goes over the wire.
fn presence(kind: &str, room: &str, user: &str) -> Value {
    json!({"type": "event", "event": format!("presence.{kind}"), "room": room, "data": {"user": user}})
}

fn status(kind: &str, user: &str) -> Value {
    json!({"type": "event", "event": format!("user.{kind}"), "data": {"user": user}})
}

/// Asserts that nothing arrives on `c` within `window`.
async fn nothing_within(c: &mut Client, window: Duration) {
    use futures_util::StreamExt;
    if let Ok(Some(Ok(m))) = tokio::time::timeout(window, c.ws.next()).await {
        panic!("expected nothing, got {m:?}");
    }
}

#[tokio::test]
async fn three_tabs_on_two_shards_join_once_and_leave_with_the_last() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let room = format!("team-{}", fmt.query());
        let mut watcher = server.client_on_shard("wendy", fmt, 0).await;
        let r = join_presence(&mut watcher, &room, 1).await;
        assert_eq!(r["presence"], true, "{r}");

        let mut tab1 = server.client_on_shard("alice", fmt, 0).await;
        let mut tab2 = server.client_on_shard("alice", fmt, 1).await;
        let mut tab3 = server.client_on_shard("alice", fmt, 1).await;
        for (i, tab) in [&mut tab1, &mut tab2, &mut tab3].into_iter().enumerate() {
            join(tab, &room, 10 + i as u64).await;
        }
        let ev = watcher.recv().await;
        assert_eq!(ev, presence("join", &room, "alice"));
        assert!(ev.get("offset").is_none(), "not in the stream: {ev}");
        // A sentinel: bob's join is the next event, so no other alice join came before it.
        let mut bob = server.client(&format!("bob-{}", fmt.query()), fmt).await;
        join(&mut bob, &room, 20).await;
        let bob_id = format!("bob-{}", fmt.query());
        assert_eq!(watcher.recv().await, presence("join", &room, &bob_id));

        // The member list: each user once, with its member connections across both shards.
        let m = watcher
            .call(json!({"cmd": "members", "room": room}), 2)
            .await;
        assert_eq!(
            m,
            json!({"type": "reply", "id": 2, "room": room, "members": [
                {"user": "alice", "connections": 3},
                {"user": bob_id, "connections": 1},
                {"user": "wendy", "connections": 1},
            ]})
        );

        // Two tabs go (a leave, a disconnect): nothing is announced.
        tab1.ok(json!({"cmd": "leave", "room": room}), 30).await;
        tab2.close().await;
        api.wait_connections(&room, "alice", 1).await;
        bob.ok(json!({"cmd": "leave", "room": room}), 21).await;
        assert_eq!(watcher.recv().await, presence("leave", &room, &bob_id));

        // The last one's disconnect is the leave.
        tab3.close().await;
        assert_eq!(watcher.recv().await, presence("leave", &room, "alice"));
        api.wait_connections(&room, "alice", 0).await;

        // Presence is not in the room's stream.
        let h = watcher
            .call(json!({"cmd": "history", "room": room}), 3)
            .await;
        assert_eq!(h["messages"], json!([]), "{h}");
        assert_eq!(h["offset"], 0, "{h}");
        tab1.close().await;
        bob.close().await;
        watcher.close().await;
    }
}

#[tokio::test]
async fn a_kick_is_a_leave_and_a_room_can_announce_no_presence() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, quiet) = api
        .post(
            "/api/v1/rooms",
            json!({"roomId": "quiet", "presence": false}),
        )
        .await;
    assert_eq!((s, &quiet["presence"]), (201, &json!(false)), "{quiet}");
    let (s, room) = api.get("/api/v1/rooms/quiet").await;
    assert_eq!((s, &room["presence"]), (200, &json!(false)), "{room}");
    let (_, loud) = api.post("/api/v1/rooms", json!({"roomId": "loud"})).await;
    assert_eq!(loud["presence"], true, "the server's default: {loud}");

    let mut watcher = server.client_on_shard("wendy", Fmt::Json, 1).await;
    let r = join_presence(&mut watcher, "quiet", 1).await;
    assert_eq!(r["presence"], false, "the room announces none: {r}");
    join_presence(&mut watcher, "loud", 2).await;
    let r = watcher
        .call(json!({"cmd": "join", "room": "loud"}), 3)
        .await;
    assert!(r.get("presence").is_none(), "not asked, not said: {r}");

    let mut alice = server.client_on_shard("alice", Fmt::Json, 0).await;
    join(&mut alice, "quiet", 10).await;
    join(&mut alice, "loud", 11).await;
    // The quiet room said nothing: the loud room's join is the next event.
    assert_eq!(watcher.recv().await, presence("join", "loud", "alice"));
    alice
        .ok(
            json!({"cmd": "publish", "room": "quiet", "event": "chat", "data": 1}),
            12,
        )
        .await;
    assert_eq!(watcher.recv().await["event"], "chat");

    // A kick is a disconnect: the last connection leaves.
    let (s, kicked) = api.delete("/api/v1/users/alice/connections").await;
    assert_eq!((s, &kicked["disconnected"]), (200, &json!(1)));
    assert_eq!(watcher.recv().await, presence("leave", "loud", "alice"));
    alice.expect_close(4003).await;

    // `presence: false` stops the events for this connection.
    let r = watcher
        .call(json!({"cmd": "join", "room": "loud", "presence": false}), 4)
        .await;
    assert_eq!(r["presence"], false, "{r}");
    let mut ann = server.client("ann", Fmt::Json).await;
    join(&mut ann, "loud", 20).await;
    ann.ok(
        json!({"cmd": "publish", "room": "loud", "event": "chat", "data": 2}),
        21,
    )
    .await;
    assert_eq!(
        watcher.recv().await["data"],
        2,
        "no presence.join before it"
    );
}

#[tokio::test]
async fn a_server_without_room_presence_announces_none_unless_a_room_asks() {
    let server = start_api_server(|c| c.room_presence = false);
    let api = Api::new(&server);
    let (_, room) = api
        .post("/api/v1/rooms", json!({"roomId": "asks", "presence": true}))
        .await;
    assert_eq!(room["presence"], true, "{room}");
    let mut watcher = server.client("wendy", Fmt::MsgPack).await;
    let r = join_presence(&mut watcher, "made-by-join", 1).await;
    assert_eq!(r["presence"], false, "{r}");
    let r = join_presence(&mut watcher, "asks", 2).await;
    assert_eq!(r["presence"], true, "{r}");
    let mut alice = server.client("alice", Fmt::MsgPack).await;
    join(&mut alice, "made-by-join", 10).await;
    join(&mut alice, "asks", 11).await;
    assert_eq!(watcher.recv().await, presence("join", "asks", "alice"));
}

#[tokio::test]
async fn the_member_list_pages_for_members_only_by_command_and_rest() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let room = format!("big-{}", fmt.query());
        let mut clients = Vec::new();
        for user in ["dan", "ann", "cat", "bea", "ann"] {
            let mut c = server.client(user, fmt).await;
            join(&mut c, &room, 1).await;
            clients.push(c);
        }
        let c = &mut clients[0];
        let page = c
            .call(json!({"cmd": "members", "room": room, "limit": 2}), 2)
            .await;
        assert_eq!(
            (page["members"].clone(), page["next"].clone()),
            (
                json!([{"user": "ann", "connections": 2}, {"user": "bea", "connections": 1}]),
                json!("bea")
            )
        );
        let page = c
            .call(
                json!({"cmd": "members", "room": room, "limit": 2, "after": "bea"}),
                3,
            )
            .await;
        assert_eq!(
            page["members"],
            json!([{"user": "cat", "connections": 1}, {"user": "dan", "connections": 1}])
        );
        assert!(page.get("next").is_none(), "the last page: {page}");

        // Members only; bad arguments.
        let mut outsider = server.client("eve", fmt).await;
        let e = outsider
            .call(json!({"cmd": "members", "room": room}), 4)
            .await;
        assert_eq!(code(&e), "room.forbidden", "{e}");
        let e = outsider
            .call(json!({"cmd": "members", "room": "nowhere"}), 5)
            .await;
        assert_eq!(code(&e), "room.forbidden", "{e}");
        for (cmd, field) in [
            (json!({"cmd": "members", "room": room, "limit": 0}), "limit"),
            (json!({"cmd": "members", "room": room, "after": 3}), "after"),
            (
                json!({"cmd": "members", "room": room, "after": ""}),
                "after",
            ),
        ] {
            let e = c.call(cmd, 6).await;
            assert_eq!(code(&e), "bad_request", "{e}");
            assert!(e["message"].as_str().unwrap().starts_with(field), "{e}");
        }
        outsider.close().await;

        // The same over REST.
        let (s, page) = api
            .get(&format!("/api/v1/rooms/{room}/members?limit=3"))
            .await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(
            page,
            json!({"roomId": room, "members": [
                {"userId": "ann", "connections": 2},
                {"userId": "bea", "connections": 1},
                {"userId": "cat", "connections": 1},
            ], "nextAfter": "cat"})
        );
        let (_, page) = api
            .get(&format!("/api/v1/rooms/{room}/members?after=cat"))
            .await;
        assert_eq!(
            (page["members"].clone(), page["nextAfter"].clone()),
            (json!([{"userId": "dan", "connections": 1}]), Value::Null)
        );
        for c in clients {
            c.close().await;
        }
    }
    let (s, e) = api.get("/api/v1/rooms/nowhere/members").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("room.not_found"))
    );
    let (_, created) = api.post("/api/v1/rooms", json!({"roomId": "empty"})).await;
    assert_eq!(created["presence"], true);
    let (s, page) = api.get("/api/v1/rooms/empty/members").await;
    assert_eq!(
        (s, page),
        (
            200,
            json!({"roomId": "empty", "members": [], "nextAfter": null})
        )
    );
    for query in ["limit=0", "limit=1001", "limit=x", "after="] {
        let (s, e) = api
            .get(&format!("/api/v1/rooms/empty/members?{query}"))
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{query}"
        );
    }
}

#[tokio::test]
async fn watched_users_go_online_and_offline_after_the_grace() {
    let grace = Duration::from_millis(1000);
    let server = start_api_server(|c| c.presence_grace = grace);
    let api = Api::new(&server);
    let bob1 = server.client_on_shard("bob", Fmt::Json, 1).await;
    let mut watcher = server.client_on_shard("wendy", Fmt::MsgPack, 0).await;
    let r = watcher
        .call(json!({"cmd": "watch", "users": ["bob", "carl", "bob"]}), 1)
        .await;
    assert_eq!(
        r,
        json!({"type": "reply", "id": 1, "users": [
            {"user": "bob", "online": true},
            {"user": "carl", "online": false},
        ]})
    );

    // A second connection, then the first goes: bob stays online, nothing is said.
    let bob2 = server.client_on_shard("bob", Fmt::Json, 0).await;
    bob1.close().await;
    // A reconnect within the grace: nothing either.
    bob2.close().await;
    let bob3 = server.client("bob", Fmt::Json).await;
    // carl's coming is the next event: nothing about bob came before it.
    let carl = server.client("carl", Fmt::Json).await;
    assert_eq!(watcher.recv().await, status("online", "carl"));
    let (s, p) = api.get("/api/v1/users/bob/presence").await;
    assert_eq!(
        (s, p),
        (
            200,
            json!({"userId": "bob", "online": true, "connections": 1})
        )
    );

    // The last connection goes: online through the grace, then offline.
    carl.close().await;
    let (_, p) = api.get("/api/v1/users/carl/presence").await;
    assert_eq!(p["online"], true, "within the grace: {p}");
    nothing_within(&mut watcher, grace / 4).await;
    assert_eq!(watcher.recv().await, status("offline", "carl"));
    let (_, p) = api.get("/api/v1/users/carl/presence").await;
    assert_eq!(
        p,
        json!({"userId": "carl", "online": false, "connections": 0})
    );
    let r = watcher
        .call(json!({"cmd": "watch", "users": ["carl"]}), 3)
        .await;
    assert_eq!(r["users"], json!([{"user": "carl", "online": false}]));

    // After `unwatch`, bob's going is not told: once the server has him offline, carl's
    // coming is the next event.
    watcher
        .ok(json!({"cmd": "unwatch", "users": ["bob", "nobody"]}), 4)
        .await;
    bob3.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, p) = api.get("/api/v1/users/bob/presence").await;
        if p["online"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob stays online: {p}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _carl = server.client("carl", Fmt::Json).await;
    assert_eq!(watcher.recv().await, status("online", "carl"));
}

#[tokio::test]
async fn a_grace_of_zero_announces_offline_at_once() {
    let server = start_server(|c| c.presence_grace = Duration::ZERO);
    let mut watcher = server.client("wendy", Fmt::Json).await;
    watcher
        .ok(json!({"cmd": "watch", "users": ["bob"]}), 1)
        .await;
    let bob = server.client("bob", Fmt::Json).await;
    assert_eq!(watcher.recv().await, status("online", "bob"));
    bob.close().await;
    assert_eq!(watcher.recv().await, status("offline", "bob"));
}

#[tokio::test]
async fn a_connection_watches_at_most_max_watched_users() {
    let server = start_server(|c| c.max_watched_users = 3);
    for fmt in BOTH {
        let mut c = server.client("wendy", fmt).await;
        c.ok(json!({"cmd": "watch", "users": ["a", "b"]}), 1).await;
        let e = c
            .call(json!({"cmd": "watch", "users": ["b", "c", "d"]}), 2)
            .await;
        assert_eq!(code(&e), "watch.limit", "{e}");
        assert!(e["message"].as_str().unwrap().contains('3'), "{e}");
        // Nothing changed: `c` fits, and `a`, `b` watched again count once.
        c.ok(json!({"cmd": "watch", "users": ["c", "a", "b"]}), 3)
            .await;
        c.ok(json!({"cmd": "unwatch", "users": ["a"]}), 4).await;
        c.ok(json!({"cmd": "watch", "users": ["d"]}), 5).await;
        let e = c.call(json!({"cmd": "watch", "users": ["e"]}), 6).await;
        assert_eq!(code(&e), "watch.limit", "{e}");
        // The protocol's own bounds on one command.
        let many: Vec<String> = (0..1500).map(|i| format!("u{i}")).collect();
        for (cmd, message) in [
            (
                json!({"cmd": "watch", "users": many}),
                "users: more than 1000",
            ),
            (json!({"cmd": "watch", "users": []}), "users: empty"),
            (
                json!({"cmd": "unwatch", "users": ["x", 1]}),
                "users[1]: expected a string",
            ),
        ] {
            let e = c.call(cmd, 7).await;
            assert_eq!(code(&e), "bad_request", "{e}");
            assert!(e["message"].as_str().unwrap().starts_with(message), "{e}");
        }
        c.close().await;
    }
}

#[tokio::test]
async fn the_backend_adding_or_removing_a_user_is_a_join_or_a_leave_once() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": "desk"})).await;
    assert_eq!(s, 201);
    let mut watcher = server.client("wendy", Fmt::Json).await;
    join_presence(&mut watcher, "desk", 1).await;
    let _tab1 = server.client_on_shard("alice", Fmt::Json, 0).await;
    let _tab2 = server.client_on_shard("alice", Fmt::MsgPack, 1).await;

    let (s, added) = api
        .post("/api/v1/rooms/desk/members", json!({"userId": "alice"}))
        .await;
    assert_eq!((s, &added["added"]), (200, &json!(2)), "{added}");
    assert_eq!(watcher.recv().await, presence("join", "desk", "alice"));
    let (s, removed) = api.delete("/api/v1/rooms/desk/members/alice").await;
    assert_eq!((s, &removed["removed"]), (200, &json!(2)), "{removed}");
    assert_eq!(watcher.recv().await, presence("leave", "desk", "alice"));
    // Once each: the sentinel's join comes next.
    let mut bob = server.client("bob", Fmt::Json).await;
    join(&mut bob, "desk", 10).await;
    assert_eq!(watcher.recv().await, presence("join", "desk", "bob"));
}
