//! The Socket.IO conformance mode (`SOCKETIO_CONFORMANCE=true`) with the real
//! `socket.io-client` (tests/js/conformance.mjs): the behaviours of the Socket.IO protocol
//! suite's reference server, over both transports and both parsers, so that CI checks them
//! without the suite (conformance/socketio/run.sh runs the suite itself).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::eio::Eio;
use common::*;
use serde_json::{json, Value};

/// The verdict of `node tests/js/conformance.mjs <server> <scenario> <args>`.
async fn client(server: &TestServer, scenario: &str, args: Value) -> Value {
    let url = format!("http://{}", server.addr);
    let run = node::run("conformance.mjs", &[&url, scenario, &args.to_string()]).await;
    let verdict = run.verdict();
    assert!(run.success, "{verdict}\n{}", run.stderr);
    assert_eq!(verdict["ok"], true, "{verdict}");
    verdict
}

fn conformance_server() -> TestServer {
    start_server(|c| {
        c.socketio_conformance = true;
        c.engineio_ping_interval = Duration::from_millis(300);
        c.engineio_ping_timeout = Duration::from_millis(200);
    })
}

#[tokio::test]
async fn behaves_as_the_socket_io_suites_reference_server() {
    let server = conformance_server();
    for (transports, parser, path) in [
        (&["polling", "websocket"][..], "json", "/socket.io/"),
        (&["websocket"], "json", "/socket.io/"),
        (&["polling"], "json", "/socket.io/"),
        (&["websocket"], "msgpack", "/socket.io-msgpack/"),
        (&["polling"], "msgpack", "/socket.io-msgpack/"),
    ] {
        let args = json!({"transports": transports, "parser": parser, "path": path});
        let v = client(&server, "reference", args).await;
        let ways = format!("{transports:?} {parser}");
        assert_eq!(
            v["transport"],
            transports[transports.len() - 1],
            "{ways}: {v}"
        );
        assert_eq!(v["mainAuth"], json!({"token": "123"}), "{ways}: {v}");
        assert_eq!(v["customAuth"], json!({}), "{ways}: {v}");
        assert_eq!(v["randomError"], "Invalid namespace", "{ways}: {v}");
        assert_eq!(
            v["messageBack"],
            json!([1, "2", {"3": [true]}]),
            "{ways}: {v}"
        );
        assert_eq!(
            v["binaryBack"],
            json!([{"bytes": [1, 2, 3]}, {"nested": {"bytes": [4, 5, 6]}}]),
            "{ways}: {v}"
        );
        assert_eq!(v["ack"], json!([1, "2", {"3": [false]}]), "{ways}: {v}");
        assert_eq!(
            v["binaryAck"],
            json!([{"bytes": [7, 8]}, "x"]),
            "{ways}: {v}"
        );
        assert_eq!(
            v["customHeard"], false,
            "/custom has no handlers: {ways}: {v}"
        );
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_connects_no_namespace_is_closed_after_a_second() {
    let server = conformance_server();
    for transports in [&["websocket"][..], &["polling"]] {
        let v = client(&server, "timeout", json!({"transports": transports})).await;
        // The client answers every ping: the connect timeout closes it, not the heartbeat.
        let after = v["afterMs"].as_u64().unwrap();
        assert!((950..2000).contains(&after), "{transports:?}: {v}");
        assert_eq!(v["reason"], "transport close", "{transports:?}: {v}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_mode_is_off_by_default() {
    // Socket.IO itself answers a CONNECT without a token: refused, no auth event.
    let server = start_server(|_| {});
    let eio = Eio::new(&server);
    let (sid, _) = eio.open().await;
    eio.post(&sid, b"40").await;
    let answer = eio.poll(&sid).await;
    assert!(answer.body.starts_with("44{"), "{}", answer.body);
    server.handle.shutdown().await;
}
