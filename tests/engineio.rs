//! Engine.IO v4 with the real `engine.io-client` (tests/js) against the Engine.IO echo
//! (`ECHO=true`): long-polling only, WebSocket only, the upgrade with messages in flight both
//! ways, binary on both transports, the heartbeat closing a client that stops answering; and
//! the upgrade and the session's life written from the spec, byte for byte.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::eio::{eio_error, eio_server, next_text, Eio};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// `node tests/js/engineio.mjs <server> <scenario> <transports>`'s verdict.
async fn client(server: &TestServer, scenario: &str, transports: &str) -> serde_json::Value {
    let url = format!("http://{}", server.addr);
    let run = node::run("engineio.mjs", &[&url, scenario, transports]).await;
    let verdict = run.verdict();
    assert!(run.success, "{verdict}\n{}", run.stderr);
    verdict
}

#[tokio::test]
async fn the_real_client_echoes_text_and_binary_over_long_polling_only() {
    let server = eio_server(|_| {});
    let verdict = client(&server, "echo", "polling").await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["transport"], "polling");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_real_client_echoes_text_and_binary_over_websocket_only() {
    let server = eio_server(|_| {});
    let verdict = client(&server, "echo", "websocket").await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["transport"], "websocket");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_upgrade_loses_doubles_and_reorders_nothing_with_messages_in_flight() {
    let server = eio_server(|_| {});
    for _ in 0..3 {
        let verdict = client(&server, "upgrade", "polling,websocket").await;
        // Every sequence number came back once, in order; messages were sent over long-polling
        // before the upgrade and over WebSocket after it, without a pause.
        assert_eq!(verdict["ok"], true, "{verdict}");
        assert_eq!(verdict["transport"], "websocket");
        assert!(
            verdict["sentOver"]["polling"].as_u64().unwrap() > 0,
            "{verdict}"
        );
        assert!(
            verdict["sentOver"]["websocket"].as_u64().unwrap() >= 40,
            "{verdict}"
        );
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_on_both_transports() {
    let server = eio_server(|c| {
        c.engineio_ping_interval = Duration::from_millis(150);
        c.engineio_ping_timeout = Duration::from_millis(150);
    });
    for transports in ["polling", "websocket"] {
        let verdict = client(&server, "no-pong", transports).await;
        assert!(verdict["pings"].as_u64().unwrap() >= 1, "{verdict}");
        // The server closed it: the client's own timer (interval + timeout after a ping) had not
        // run out.
        assert_eq!(verdict["reason"], "transport close", "{verdict}");
    }
    wait_for("the sessions are gone", || {
        server.handle.stats().connections == 0
    })
    .await;
    assert!(server.handle.stats().heartbeat_timeouts >= 2);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn long_polling_speaks_the_spec_byte_for_byte() {
    let server = eio_server(|_| {});
    let eio = Eio::new(&server);
    let (sid, open) = eio.open().await;
    assert_eq!(sid.len(), 25);
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(
        (
            &open["pingInterval"],
            &open["pingTimeout"],
            &open["maxPayload"]
        ),
        (&25_000.into(), &20_000.into(), &1_000_000.into())
    );
    let posted = eio.post(&sid, b"4hello\x1ebAQIDBA==\x1e4\xc3\xa9").await;
    assert_eq!((posted.status, posted.body.as_str()), (200, "ok"));
    assert_eq!(posted.header("content-type"), "text/html");
    let polled = eio.poll(&sid).await;
    assert_eq!(polled.status, 200);
    assert_eq!(polled.header("content-type"), "text/plain; charset=UTF-8");
    assert_eq!(polled.body, "4hello\x1ebAQIDBA==\x1e4é");
    // A long-poll waits for the next packet, and is answered when it is queued.
    let waiting = {
        let eio = Eio::new(&server);
        let sid = sid.clone();
        tokio::spawn(async move { eio.poll(&sid).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a long-poll with nothing queued waits"
    );
    assert_eq!(eio.post(&sid, b"4later").await.status, 200);
    assert_eq!(waiting.await.unwrap().body, "4later");
    // The client closes: `ok`, and the session is gone.
    assert_eq!(eio.post(&sid, b"1").await.body, "ok");
    let gone = eio.poll(&sid).await;
    assert_eq!((gone.status, gone.body), (400, eio_error(1)));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_carries_what_long_polling_left_queued_in_order() {
    let server = eio_server(|_| {});
    let eio = Eio::new(&server);
    let (sid, _) = eio.open().await;
    let pending = {
        let eio = Eio::new(&server);
        let sid = sid.clone();
        tokio::spawn(async move { eio.poll(&sid).await })
    };
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    // The pending long-poll is ended with a noop, and later ones are answered at once.
    assert_eq!(pending.await.unwrap().body, "6");
    assert_eq!(eio.poll(&sid).await.body, "6");
    // Queued while probing and polled by nobody: they must come over the WebSocket, first.
    assert_eq!(eio.post(&sid, b"4one\x1ebAQI=\x1e4two").await.status, 200);
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4three")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4one");
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], [1, 2]),
        other => panic!("expected the binary message, got {other:?}"),
    }
    assert_eq!(next_text(&mut ws).await, "4two");
    assert_eq!(next_text(&mut ws).await, "4three");
    // Long-polling is over for this session: its requests are refused as Node refuses them.
    let refused = eio.poll(&sid).await;
    assert_eq!((refused.status, refused.body), (400, eio_error(3)));
    // A second WebSocket for the session is accepted and closed at once.
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        server.addr
    );
    let (mut second, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let closed = tokio::time::timeout(WAIT, second.next()).await.unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None),
        "{closed:?}"
    );
    ws.send(Message::text("4still")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4still");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_websocket_session_opens_with_its_open_packet_and_echoes_binary_raw() {
    let server = eio_server(|_| {});
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    let open: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!([]));
    ws.send(Message::binary(vec![1u8, 2, 3, 4])).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], [1, 2, 3, 4]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    // A session carried by a WebSocket refuses long-polling requests.
    let sid = open["sid"].as_str().unwrap();
    let refused = Eio::new(&server).poll(sid).await;
    assert_eq!((refused.status, refused.body), (400, eio_error(3)));
    // What is not an Engine.IO packet closes the session.
    ws.send(Message::text("abc")).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn an_idle_long_polling_session_times_out_like_any_other() {
    let server = eio_server(|c| {
        c.engineio_ping_interval = Duration::from_millis(100);
        c.engineio_ping_timeout = Duration::from_millis(100);
    });
    let eio = Eio::new(&server);
    let (sid, _) = eio.open().await;
    assert_eq!(server.handle.stats().connections, 1, "a session of the hub");
    // No long-poll, no pong: the heartbeat ends it. A noop proves nothing.
    let deadline = tokio::time::Instant::now() + WAIT;
    let gone = loop {
        let answer = eio.post(&sid, b"6").await;
        if answer.status != 200 {
            break answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "never timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((gone.status, gone.body), (400, eio_error(1)));
    wait_for("the hub forgot it", || {
        server.handle.stats().connections == 0
    })
    .await;
    assert_eq!(server.handle.stats().heartbeat_timeouts, 1);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_heartbeat_goes_over_long_polling_and_pongs_keep_the_session() {
    let server = eio_server(|c| {
        c.engineio_ping_interval = Duration::from_millis(100);
        c.engineio_ping_timeout = Duration::from_millis(300);
    });
    let eio = Eio::new(&server);
    let (sid, _) = eio.open().await;
    for _ in 0..3 {
        assert_eq!(eio.poll(&sid).await.body, "2");
        assert_eq!(eio.post(&sid, b"3").await.body, "ok");
    }
    assert_eq!(server.handle.stats().heartbeat_timeouts, 0);
    server.handle.shutdown().await;
}
