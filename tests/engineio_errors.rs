//! Engine.IO refusals and bounds, as the Node `engine.io` server answers them (checked against
//! engine.io 6.6): each error's status and JSON body, a WebSocket handshake's text refusal, the
//! second concurrent long-poll, a long-poll whose client went away, the oversized `POST`, a
//! broken packet, CORS with credentials and its preflight, the endpoint off without `ECHO`, and
//! its path as configured.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::eio::{eio_error, eio_server, Eio};
use common::raw::UPGRADE_HEADERS;
use common::*;

#[tokio::test]
async fn each_refusal_has_the_node_servers_status_and_body() {
    let server = eio_server(|_| {});
    let eio = Eio::new(&server);
    let cases: &[(&str, &str, u8)] = &[
        ("GET", "EIO=4", 0),
        ("GET", "EIO=4&transport=flash", 0),
        ("GET", "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA", 1),
        ("GET", "EIO=4&transport=polling&sid=00AAAAAAAAAAAAAAAAAA", 1),
        (
            "POST",
            "EIO=4&transport=polling&sid=63AAAAAAAAAAAAAAAAAA",
            1,
        ),
        ("POST", "EIO=4&transport=polling", 2),
        ("PUT", "EIO=4&transport=polling", 2),
        ("GET", "EIO=4&transport=websocket", 3),
        ("GET", "EIO=3&transport=polling", 5),
        ("GET", "transport=polling", 5),
        ("GET", "EIO=abc&transport=polling", 5),
    ];
    for (method, query, code) in cases {
        let answer = eio.request(method, query, None, &[]).await;
        assert_eq!(answer.status, 400, "{method} ?{query}: {answer:?}");
        assert_eq!(answer.body, eio_error(*code), "{method} ?{query}");
        assert_eq!(answer.header("content-type"), "application/json");
    }
    // The transport named must be the session's.
    let (sid, _) = eio.open().await;
    let answer = eio
        .get_query(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await;
    assert_eq!((answer.status, answer.body), (400, eio_error(3)));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_refused_websocket_handshake_gets_the_message_as_text() {
    let server = eio_server(|_| {});
    for (query, message) in [
        ("EIO=3&transport=websocket", "Unsupported protocol version"),
        ("EIO=4&transport=nope", "Transport unknown"),
        (
            "EIO=4&transport=websocket&sid=00AAAAAAAAAAAAAAAAAA",
            "Session ID unknown",
        ),
    ] {
        let request = format!(
            "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Connection: close\r\n\r\n"
        );
        let (status, body) = raw_http(server.addr, &request).await;
        assert_eq!((status, body.as_str()), (400, message), "?{query}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_server_full_refuses_with_forbidden() {
    let server = eio_server(|c| c.max_connections = 1);
    let eio = Eio::new(&server);
    let (_sid, _) = eio.open().await;
    let answer = eio.get_query("EIO=4&transport=polling").await;
    assert_eq!((answer.status, answer.body), (403, eio_error(4)));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_second_concurrent_long_poll_is_refused_and_ends_the_session() {
    let server = eio_server(|_| {});
    let eio = Eio::new(&server);
    let (sid, _) = eio.open().await;
    // Whichever reaches the server second is refused (400, no body, as Node); the first is
    // answered with the close packet.
    let other = Eio::new(&server);
    let (a, b) = tokio::join!(eio.poll(&sid), other.poll(&sid));
    let mut answers = [(a.status, a.body), (b.status, b.body)];
    answers.sort();
    assert_eq!(answers, [(200, "1".to_owned()), (400, String::new())]);
    let after = eio.poll(&sid).await;
    assert_eq!((after.status, after.body), (400, eio_error(1)));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_whose_client_went_away_ends_its_session_at_once() {
    use tokio::io::AsyncWriteExt;
    // Pings far apart: only the closed connection can end the session within the test.
    let server = eio_server(|c| {
        c.engineio_ping_interval = std::time::Duration::from_secs(60);
        c.engineio_ping_timeout = std::time::Duration::from_secs(60);
    });
    let eio = Eio::new(&server);
    let (bystander, _) = eio.open().await;
    let (sid, _) = eio.open().await;
    // A long-poll that waits (nothing is queued), then its connection closes unanswered, as
    // a tab that is closed or a client that lost its network does.
    let mut get = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    get.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(get);
    // As Node's server: the session ends ("transport error"), it does not wait for its ping
    // to time out. (Nothing is sent to it meanwhile: that would answer the long-poll, into
    // the closed connection, before the server knew.)
    wait_for("the session ends with its long-poll's connection", || {
        server.handle.stats().connections == 1
    })
    .await;
    let after = eio.post(&sid, b"4anyone?").await;
    assert_eq!((after.status, after.body), (400, eio_error(1)));
    // A long-poll answered as usual ends nothing.
    assert_eq!(eio.post(&bystander, b"4still here").await.body, "ok");
    assert_eq!(eio.poll(&bystander).await.body, "4still here");
    assert_eq!(eio.post(&bystander, b"4again").await.body, "ok");
    assert_eq!(eio.poll(&bystander).await.body, "4again");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn an_oversized_post_is_refused_413_and_ends_the_session() {
    let server = eio_server(|c| c.engineio_max_payload = 1000);
    let eio = Eio::new(&server);
    let (sid, open) = eio.open().await;
    assert_eq!(open["maxPayload"], 1000);
    let mut at_bound = b"4".to_vec();
    at_bound.resize(1000, b'x');
    assert_eq!(eio.post(&sid, &at_bound).await.status, 200);
    assert_eq!(eio.poll(&sid).await.body.len(), 1000);
    at_bound.push(b'x');
    let refused = eio.post(&sid, &at_bound).await;
    assert_eq!((refused.status, refused.body.as_str()), (413, ""));
    let after = eio.poll(&sid).await;
    assert_eq!((after.status, after.body), (400, eio_error(1)));
    // Without a Content-Length, the body is read up to the bound and no further.
    let (sid, _) = eio.open().await;
    let mut chunked = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..3 {
        chunked.push_str(&format!("190\r\n4{}\r\n", "y".repeat(399)));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(raw_http(server.addr, &chunked).await.0, 413);
    assert_eq!(eio.poll(&sid).await.status, 400);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_broken_packet_is_answered_ok_and_ends_the_session() {
    let server = eio_server(|_| {});
    let eio = Eio::new(&server);
    for broken in [
        &b"abc"[..],
        b"4ok\x1e\x1e4lost",
        b"4ok\x1ebA=",
        b"2",
        b"4ok\x1e5",
    ] {
        let (sid, _) = eio.open().await;
        // Node answers `ok` and closes the session.
        let answer = eio.post(&sid, broken).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
        let after = eio.poll(&sid).await;
        assert_eq!(
            (after.status, after.body),
            (400, eio_error(1)),
            "{broken:?}"
        );
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn cors_allows_the_configured_origin_with_credentials_and_answers_preflights() {
    let server = eio_server(|c| c.cors_origin = Some("https://app.example".into()));
    let eio = Eio::new(&server);
    let origin = [("Origin", "https://app.example")];
    let preflight = eio
        .request(
            "OPTIONS",
            "EIO=4&transport=polling",
            None,
            &[
                origin[0],
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type,x-foo"),
            ],
        )
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(preflight.header("access-control-allow-credentials"), "true");
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        "GET,HEAD,PUT,PATCH,POST,DELETE"
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        "content-type,x-foo"
    );
    let open = eio
        .request("GET", "EIO=4&transport=polling", None, &origin)
        .await;
    assert_eq!(open.status, 200);
    assert_eq!(
        open.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(open.header("access-control-allow-credentials"), "true");
    assert_eq!(open.header("cache-control"), "no-store");
    // Refusals carry them too, so that a browser can read them.
    let refused = eio
        .request("GET", "EIO=3&transport=polling", None, &origin)
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("access-control-allow-credentials"), "true");
    server.handle.shutdown().await;

    // With `*`, the request's origin is echoed: browsers refuse `*` with credentials.
    let server = eio_server(|c| c.cors_origin = Some("*".into()));
    let answer = Eio::new(&server)
        .request(
            "GET",
            "EIO=4&transport=polling",
            None,
            &[("Origin", "https://x.example")],
        )
        .await;
    assert_eq!(
        answer.header("access-control-allow-origin"),
        "https://x.example"
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_endpoint_is_off_without_echo_or_socketio_and_follows_its_configured_path() {
    let server = start_server(|c| c.socketio = false);
    let answer = Eio::new(&server).get_query("EIO=4&transport=polling").await;
    assert_eq!(answer.status, 404);
    server.handle.shutdown().await;

    let server = eio_server(|c| c.engineio_path = "/engine.io".into());
    let (sid, _) = Eio::at(&server, "/engine.io/").open().await;
    assert_eq!(sid.len(), 25);
    let default = Eio::new(&server).get_query("EIO=4&transport=polling").await;
    assert_eq!(default.status, 404, "only the configured path");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn hostile_requests_leave_a_bystander_session_working() {
    let server = eio_server(|c| c.engineio_max_payload = 1000);
    let eio = Eio::new(&server);
    let (bystander, _) = eio.open().await;
    let junk: &[(&str, &str, &[u8])] = &[
        (
            "POST",
            "EIO=4&transport=polling&sid=00AAAAAAAAAAAAAAAAAA",
            b"4x",
        ),
        (
            "POST",
            "EIO=4&transport=polling&sid=99AAAAAAAAAAAAAAAAAA",
            b"4x",
        ),
        ("GET", "EIO=4&transport=polling&sid=%00%ff", b""),
        ("GET", "EIO=3&transport=polling", b""),
        ("POST", "EIO=4&transport=polling", b"\xff\xfe"),
    ];
    for round in 0..20 {
        for (method, query, body) in junk {
            let answer = eio.request(method, query, Some(body.to_vec()), &[]).await;
            assert_eq!(answer.status, 400, "{method} ?{query}");
        }
        // A session of its own, broken in every way a client can.
        let (sid, _) = eio.open().await;
        let body: &[u8] = match round % 4 {
            0 => b"\xff",
            1 => b"4ok\x1ebnot base64",
            2 => b"0{}",
            _ => &[b'4'; 1001],
        };
        let answer = eio.post(&sid, body).await;
        assert!(matches!(answer.status, 200 | 413), "{answer:?}");
        assert_eq!(eio.poll(&sid).await.status, 400, "closed");
    }
    assert_eq!(eio.post(&bystander, b"4still here").await.body, "ok");
    assert_eq!(eio.poll(&bystander).await.body, "4still here");
    wait_for("only the bystander is left", || {
        server.handle.stats().connections == 1
    })
    .await;
    assert_eq!(server.handle.stats().panics, 0);
    server.handle.shutdown().await;
}
