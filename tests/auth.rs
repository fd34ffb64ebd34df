//! Handshake authentication: every way of passing a token, every way of being refused.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgate::MintOptions;

#[tokio::test]
async fn token_in_query_header_or_auth_command_is_accepted_in_both_encodings() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        // ?token=
        let c = server.client("alice", fmt).await;
        assert_eq!(c.welcome["user"], "alice");

        // Authorization: Bearer, with the format chosen by Sec-WebSocket-Protocol.
        let mut req = server.url("").into_client_request().unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", token("bob")).parse().unwrap(),
        );
        let proto = if fmt == Fmt::Json {
            "wsgate.v1.json"
        } else {
            "wsgate.v1.msgpack"
        };
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
        let mut c = Client::connect_with(req, fmt).await.unwrap();
        let w = c.recv().await;
        assert_eq!(
            (w["type"].as_str(), w["user"].as_str()),
            (Some("welcome"), Some("bob"))
        );

        // No token at the handshake, then an `auth` command.
        let mut c = Client::connect(&server.url(&format!("format={}", fmt.query())), fmt)
            .await
            .unwrap();
        c.send(json!({"cmd": "auth", "id": 1, "token": token("carol")}))
            .await;
        let w = c.recv().await;
        assert_eq!(
            (w["type"].as_str(), w["user"].as_str()),
            (Some("welcome"), Some("carol"))
        );
        assert_eq!(c.recv().await, json!({"type": "reply", "id": 1}));
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_subprotocol_is_echoed() {
    let server = start_server(|_| {});
    let mut req = server
        .url(&format!("token={}", token("a")))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat, wsgate.v1.msgpack".parse().unwrap(),
    );
    let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "wsgate.v1.msgpack");
    drop(ws);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn welcome_carries_identity_heartbeat_and_limits() {
    let server = start_server(|c| c.rate_per_sec = 7);
    let opts = MintOptions {
        sid: Some("sess-9"),
        ..Default::default()
    };
    let t = wsgate::mint(SECRET, "dana", std::time::Duration::from_secs(60), &opts);
    let mut c = Client::connect(&server.url(&format!("token={t}")), Fmt::Json)
        .await
        .unwrap();
    let w = c.recv().await;
    assert_eq!(w["user"], "dana");
    assert_eq!(w["session"], "sess-9");
    assert!(w["conn"].as_str().is_some_and(|s| s.contains('.')));
    assert!(w["shard"].as_u64().is_some_and(|s| s < 2));
    assert_eq!(
        w["heartbeat"],
        json!({"interval_ms": 25000, "timeout_ms": 20000})
    );
    assert_eq!(w["limits"]["rate_per_sec"], 7);
    assert_eq!(w["limits"]["max_message_bytes"], 1048576);
    server.handle.shutdown().await;
}

async fn refused(server: &TestServer, query: &str) -> Refused {
    match Client::connect(&server.url(query), Fmt::Json).await {
        Ok(_) => panic!("handshake with {query:?} should be refused"),
        Err(r) => r,
    }
}

#[tokio::test]
async fn bad_tokens_get_401_json_before_any_upgrade() {
    let server = start_server(|_| {});
    let expired = wsgate::mint_with_exp(SECRET, "a", 1_000, &MintOptions::default());
    let r = refused(&server, &format!("token={expired}")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.expired"))
    );

    let other = wsgate::mint(
        "not-the-secret",
        "a",
        std::time::Duration::from_secs(60),
        &MintOptions::default(),
    );
    let r = refused(&server, &format!("token={other}")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.invalid"))
    );

    // alg: none, no signature.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"a","exp":99999999999}"#)
    );
    let r = refused(&server, &format!("token={none}")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.invalid"))
    );

    // Missing token: empty query value, and a non-Bearer Authorization header.
    let r = refused(&server, "token=").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.invalid"))
    );
    let mut req = server.url("").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Basic YTpi".parse().unwrap());
    let r = Client::connect_with(req, Fmt::Json).await.err().unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.invalid"))
    );

    assert!(server.handle.stats().auth_failures >= 5);
    assert_eq!(server.handle.stats().connections, 0);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_server_requiring_handshake_tokens_refuses_none() {
    let server = start_server(|c| c.require_handshake_token = true);
    let r = refused(&server, "").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("auth.required"))
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn an_auth_command_that_never_comes_closes_with_4001() {
    let server = start_server(|c| c.auth_timeout = std::time::Duration::from_millis(200));
    let mut c = Client::connect(&server.url(""), Fmt::Json).await.unwrap();
    c.expect_close(4001).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn commands_before_auth_are_refused_and_a_bad_auth_closes_with_1008() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let mut c = Client::connect(&server.url(&format!("format={}", fmt.query())), fmt)
            .await
            .unwrap();
        let e = c.call(json!({"cmd": "join", "room": "r"}), 1).await;
        assert_eq!(e["code"], "auth.required");
        // ping is allowed before auth.
        assert_eq!(c.call(json!({"cmd": "ping"}), 2).await["type"], "reply");
        let e = c.call(json!({"cmd": "auth", "token": "nope"}), 3).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("auth.invalid"))
        );
        c.expect_close(1008).await;
    }
    server.handle.shutdown().await;
}

/// A token that expires `secs` from now (whole seconds, as `exp` is).
fn token_expiring_in(user: &str, secs: u64) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + secs;
    wsgate::mint_with_exp(SECRET, user, exp, &MintOptions::default())
}

/// A server with no `exp` leeway and a sweep every 100 ms (a quarter of the shortest timeout).
fn expiry_server(close_on_token_expiry: bool) -> TestServer {
    start_server(|c| {
        c.jwt_leeway_secs = 0;
        c.auth_timeout = std::time::Duration::from_millis(400);
        c.close_on_token_expiry = close_on_token_expiry;
    })
}

#[tokio::test]
async fn auth_again_refreshes_the_same_user_and_refuses_another() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let mut c = server.client("erin", fmt).await;
        // Same user: a refresh, answered with a reply and no second welcome.
        c.ok(json!({"cmd": "auth", "token": token("erin")}), 1)
            .await;
        assert_eq!(c.call(json!({"cmd": "ping"}), 2).await["type"], "reply");
        // Another user: refused, and the connection stays as it was.
        let e = c
            .call(json!({"cmd": "auth", "token": token("mallory")}), 3)
            .await;
        assert_eq!(e["code"], "auth.already");
        // A bad token: refused, counted, and the connection stays open (no 1008).
        let failures = server.handle.stats().auth_failures;
        let e = c.call(json!({"cmd": "auth", "token": "nope"}), 4).await;
        assert_eq!(e["code"], "auth.invalid");
        assert_eq!(server.handle.stats().auth_failures, failures + 1);
        c.ok(json!({"cmd": "join", "room": "r"}), 5).await;
        assert_eq!(server.handle.stats().tokens_expired, 0);
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_connection_closes_with_4004_when_its_token_expires_unless_refreshed() {
    let server = expiry_server(true);
    // Token in the handshake.
    let url = |t: &str, fmt: Fmt| server.url(&format!("token={t}&format={}", fmt.query()));
    let mut handshake = Client::connect(&url(&token_expiring_in("ann", 2), Fmt::Json), Fmt::Json)
        .await
        .unwrap();
    assert_eq!(handshake.recv().await["type"], "welcome");
    // Token by `auth`, then a refused refresh for another user: the old expiry stands.
    let mut by_command = Client::connect(&server.url("format=msgpack"), Fmt::MsgPack)
        .await
        .unwrap();
    let t = token_expiring_in("bob", 2);
    by_command.send(json!({"cmd": "auth", "token": t})).await;
    assert_eq!(by_command.recv().await["type"], "welcome");
    let e = by_command
        .call(json!({"cmd": "auth", "token": token("carl")}), 1)
        .await;
    assert_eq!(e["code"], "auth.already");
    // Refreshed with an expired token (refused), then with a fresh one for the same user.
    let mut refreshed = Client::connect(
        &url(&token_expiring_in("dora", 2), Fmt::MsgPack),
        Fmt::MsgPack,
    )
    .await
    .unwrap();
    assert_eq!(refreshed.recv().await["type"], "welcome");
    let stale = wsgate::mint_with_exp(SECRET, "dora", 1_000, &MintOptions::default());
    let e = refreshed
        .call(json!({"cmd": "auth", "token": stale}), 1)
        .await;
    assert_eq!(e["code"], "auth.expired");
    refreshed
        .ok(json!({"cmd": "auth", "token": token("dora")}), 2)
        .await;
    // Still open before the expiry.
    handshake.ok(json!({"cmd": "ping"}), 1).await;

    handshake.expect_close(4004).await;
    by_command.expect_close(4004).await;
    // Past the first token's expiry, the refreshed connection is still served.
    refreshed.ok(json!({"cmd": "join", "room": "r"}), 3).await;
    assert_eq!(server.handle.stats().tokens_expired, 2);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn with_close_on_token_expiry_off_connections_outlive_their_token() {
    let server = expiry_server(false);
    let t = token_expiring_in("ann", 1);
    let mut c = Client::connect(&server.url(&format!("token={t}")), Fmt::Json)
        .await
        .unwrap();
    assert_eq!(c.recv().await["type"], "welcome");
    // Well past `exp` (at most 1 s away) and many sweeps later:
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    c.ok(json!({"cmd": "ping"}), 1).await;
    assert_eq!(server.handle.stats().tokens_expired, 0);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn connection_limits_per_user_and_per_server() {
    let server = start_server(|c| {
        c.max_connections_per_user = 2;
        c.max_connections = 3;
    });
    let _a1 = server.client("frank", Fmt::Json).await;
    let a2 = server.client("frank", Fmt::Json).await;
    let r = refused(&server, &format!("token={}", token("frank"))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (429, Some("user.connection_limit"))
    );
    // A slot frees when a connection goes.
    a2.close().await;
    let mut again = None;
    for _ in 0..100 {
        match Client::connect(&server.url(&format!("token={}", token("frank"))), Fmt::Json).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let _a2 = again.expect("slot released after close");
    let _b = server.client("gina", Fmt::Json).await;
    let r = refused(&server, &format!("token={}", token("hal"))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("server.full"))
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn http_routes_answer_json() {
    let server = start_server(|_| {});
    assert_eq!(
        server.get("/healthz").await,
        (200, r#"{"status":"ok"}"#.to_string())
    );
    let (status, body) = server.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""code":"not_found""#), "{body}");
    let (status, body) = server.get("/ws").await;
    assert_eq!(status, 426);
    assert!(body.contains(r#""code":"bad_request""#), "{body}");
    let (status, _) = server.get("/ws?format=xml").await;
    assert_eq!(status, 426);
    server.handle.shutdown().await;
}
