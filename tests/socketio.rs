//! Socket.IO v4 with the real `socket.io-client` (tests/js/socketio.mjs) against wsgate: the
//! token in `auth` and the refusals as `connect_error`, built-in events answered on their ack
//! callbacks, room events and private messages between Socket.IO and native clients, REST
//! pushes, several namespaces on one connection, both parsers, both transports, and the seeds'
//! client code against their example configuration files (`examples/`), and private messages
//! that ask for acks (`SOCKETIO_PRIVATE_ACKS`).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The verdict of `node tests/js/socketio.mjs <server> <scenario> <args>`.
async fn client(server: &TestServer, scenario: &str, args: Value) -> Value {
    let url = format!("http://{}", server.addr);
    let run = node::run("socketio.mjs", &[&url, scenario, &args.to_string()]).await;
    let verdict = run.verdict();
    assert!(run.success, "{verdict}\n{}", run.stderr);
    assert_eq!(verdict["ok"], true, "{verdict}");
    verdict
}

fn tokens() -> Value {
    json!({"alice": token("alice"), "bob": token("bob")})
}

/// Every pair of transports and parsers the client may use.
const WAYS: [(&[&str], &str, &str); 4] = [
    (&["polling", "websocket"], "json", "/socket.io/"),
    (&["websocket"], "json", "/socket.io/"),
    (&["polling"], "msgpack", "/socket.io-msgpack/"),
    (&["websocket"], "msgpack", "/socket.io-msgpack/"),
];

#[tokio::test]
async fn socket_io_clients_chat_with_each_other_and_with_native_clients() {
    let server = start_api_server(|_| {});
    for (i, (transports, parser, path)) in WAYS.into_iter().enumerate() {
        // A native client in the same room hears what a Socket.IO client publishes.
        let mut carol = server.client("carol", Fmt::MsgPack).await;
        carol.ok(json!({"cmd": "join", "room": "lobby"}), 1).await;
        // Users of their own each round: the last round's sockets may still be closing.
        let (alice, bob) = (format!("alice-{i}"), format!("bob-{i}"));
        let args = json!({"tokens": {"alice": token(&alice), "bob": token(&bob)},
            "names": {"alice": alice, "bob": bob}, "transports": transports, "parser": parser,
            "path": path, "apiKey": API_KEY});
        let v = client(&server, "chat", args).await;
        let ways = format!("{transports:?} {parser}");
        assert_eq!(v["joinA"]["type"], "reply", "{ways}: {v}");
        assert_eq!(v["joinA"]["room"], "lobby", "{ways}: {v}");
        assert_eq!(v["published"]["type"], "reply", "{ways}: {v}");
        assert_eq!(
            v["chatData"],
            json!({"text": "hi ✓", "n": 1}),
            "{ways}: {v}"
        );
        assert_eq!(v["dmData"], json!([1, 2, 3]), "{ways}: {v}");
        assert_eq!(v["rest"]["delivered"], 1, "{ways}: {v}");
        assert_eq!(v["pushData"], json!({"kind": "rest"}), "{ways}: {v}");
        assert_eq!(
            v["pushAsksForAck"], false,
            "without SOCKETIO_PRIVATE_ACKS: {ways}: {v}"
        );
        assert_eq!(v["unknownAck"]["type"], "error", "{ways}: {v}");
        assert_eq!(v["unknownAck"]["code"], "unknown_command", "{ways}: {v}");
        assert_eq!(v["errorData"]["code"], "unknown_command", "{ways}: {v}");
        assert_eq!(v["badAck"]["code"], "bad_request", "{ways}: {v}");
        assert_eq!(
            v["transport"],
            transports[transports.len() - 1],
            "{ways}: {v}"
        );
        let ev = carol.recv().await;
        assert_eq!(
            (&ev["event"], &ev["room"], &ev["from"], &ev["data"]),
            (
                &json!("chat"),
                &json!("lobby"),
                &json!(alice),
                &json!({"text": "hi ✓", "n": 1})
            ),
            "{ways}: {ev}"
        );
        carol.close().await;
    }
    server.handle.shutdown().await;
}

/// The ways binary reaches socket.io-client: [`WAYS`], and long-polling alone with the default
/// parser (its attachments as `b<base64>` packets of the payloads).
const BINARY_WAYS: [(&[&str], &str, &str); 5] = [
    WAYS[0],
    WAYS[1],
    (&["polling"], "json", "/socket.io/"),
    WAYS[2],
    WAYS[3],
];

/// A native MessagePack `publish` of `data` (MessagePack bytes) to `room` as `event`.
fn msgpack_publish(room: &str, event: &str, data: &[u8], id: u64) -> Message {
    use wsgate_protocol::{Command, Id, RawData, Request};
    let req = Request {
        id: Some(Id::Num(id)),
        command: Command::Publish {
            room: room.into(),
            event: event.into(),
            data: RawData::trusted(wsgate_protocol::Format::MsgPack, data),
            echo: false,
            ephemeral: false,
            idem: None,
        },
    };
    let mut out = Vec::new();
    wsgate_protocol::encode_request(wsgate_protocol::Format::MsgPack, &req, &mut out).unwrap();
    Message::binary(out)
}

#[tokio::test]
async fn binary_data_travels_between_socket_io_and_native_clients_and_back() {
    let server = start_server(|_| {});
    for (i, (transports, parser, path)) in BINARY_WAYS.into_iter().enumerate() {
        let ways = format!("{transports:?} {parser}");
        let room = format!("photos-{i}");
        let mut carol = server.client(&format!("carol-{i}"), Fmt::MsgPack).await;
        carol.ok(json!({"cmd": "join", "room": room}), 1).await;
        let mut dave = server.client(&format!("dave-{i}"), Fmt::Json).await;
        dave.ok(json!({"cmd": "join", "room": room}), 1).await;
        let (alice, bob) = (format!("alice-b{i}"), format!("bob-b{i}"));
        let args = json!({"tokens": {"alice": token(&alice), "bob": token(&bob)},
            "transports": transports, "parser": parser, "path": path, "room": room});
        let url = format!("http://{}", server.addr);
        let script = tokio::spawn(async move {
            node::run("socketio.mjs", &[&url, "binary", &args.to_string()]).await
        });
        // alice's Buffers: `bin` at the MessagePack client, `$binary` at the JSON one.
        let raw = carol.recv_bytes().await;
        let photo = json!({"name": "a.png", "bytes": {"$binary": "AAEC/w=="},
            "list": [{"$binary": "aGk="}, 7]});
        assert!(
            raw.windows(6)
                .any(|w| w == [0xc4, 0x04, 0x00, 0x01, 0x02, 0xff]),
            "{ways}: bin in {raw:02x?}"
        );
        let got =
            wsgate_protocol::decode_server_message(wsgate_protocol::Format::MsgPack, &raw).unwrap();
        let wsgate_protocol::OwnedServerMessage::Event { event, data, .. } = got else {
            panic!("{ways}: an event, not {got:?}");
        };
        assert_eq!((event.as_str(), &data), ("photo", &photo), "{ways}");
        let ev = dave.recv().await;
        assert_eq!(
            (&ev["event"], &ev["data"]),
            (&json!("photo"), &photo),
            "{ways}: {ev}"
        );
        // The native MessagePack client answers with bin.
        let data = [&[0x81, 0xa5][..], b"bytes", &[0xc4, 0x03, 9, 8, 7]].concat();
        carol
            .send_raw(msgpack_publish(&room, "fromNative", &data, 2))
            .await;
        let reply = carol.recv_bytes().await;
        assert!(
            wsgate_protocol::decode_server_message(wsgate_protocol::Format::MsgPack, &reply)
                .is_ok_and(|m| matches!(m, wsgate_protocol::OwnedServerMessage::Reply { .. })),
            "{ways}: {reply:02x?}"
        );
        let ev = dave.recv().await;
        assert_eq!(
            ev["data"],
            json!({"bytes": {"$binary": "CQgH"}}),
            "{ways}: {ev}"
        );
        let run = script.await.unwrap();
        let v = run.verdict();
        assert!(run.success, "{ways}: {v}\n{}", run.stderr);
        assert_eq!(v["ok"], true, "{ways}: {v}");
        assert_eq!(v["published"]["type"], "reply", "{ways}: {v}");
        let buffer = |bytes: &[u8]| json!({"type": "Buffer", "bytes": bytes});
        assert_eq!(
            v["photoData"],
            json!({"name": "a.png", "bytes": buffer(&[0, 1, 2, 255]), "list": [buffer(b"hi"), 7]}),
            "{ways}: {v}"
        );
        assert_eq!(v["fromNative"], buffer(&[9, 8, 7]), "{ways}: {v}");
        assert_eq!(v["fromNativeAlice"], buffer(&[9, 8, 7]), "{ways}: {v}");
        // The stored binaries come back in the history's ack.
        assert_eq!(v["historyType"], "reply", "{ways}: {v}");
        assert_eq!(
            v["historyData"],
            json!([{"event": "photo", "bytes": buffer(&[0, 1, 2, 255])},
                {"event": "fromNative", "bytes": buffer(&[9, 8, 7])}]),
            "{ways}: {v}"
        );
        assert_eq!(
            v["transport"],
            transports[transports.len() - 1],
            "{ways}: {v}"
        );
        carol.close().await;
        dave.close().await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn refused_connects_fire_connect_error_with_wsgates_code() {
    let server = start_server(|_| {});
    let v = client(&server, "refused", json!({"tokens": tokens()})).await;
    assert_eq!(v["bad"]["data"]["code"], "auth.invalid", "{v}");
    assert_eq!(v["none"]["data"]["code"], "auth.required", "{v}");
    assert_eq!(v["unknownNsp"]["message"], "Invalid namespace", "{v}");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn namespaces_share_one_connection_and_keep_their_own_rooms() {
    let server = start_server(|c| c.socketio_namespaces = "/,/chat".into());
    for (transports, parser, path) in WAYS {
        let args = json!({"tokens": tokens(), "transports": transports, "parser": parser,
            "path": path});
        let v = client(&server, "namespaces", args).await;
        assert_eq!(v["sameEngine"], true, "{v}");
        assert_eq!(v["chatData"], "for chat", "{v}");
        assert_eq!(
            v["mainHeard"], false,
            "each socket hears its own rooms: {v}"
        );
        assert_eq!(v["mainData"], "for main", "{v}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn seed_004s_client_code_runs_against_its_example_config() {
    let mut config = wsgate::Config::for_tests_with(&["--config", "examples/seed-004.toml"]);
    config.jwt_secret = Some(SECRET.into());
    let server = start_with(config);
    let v = client(&server, "seed004", json!({"tokens": tokens()})).await;
    assert_eq!(v["joinedData"]["room"], "room-123", "{v}");
    assert_eq!(
        v["messageData"],
        json!({"content": "Hello, world!", "roomId": "room-123"}),
        "{v}"
    );
    assert_eq!(
        v["typingData"],
        json!({"roomId": "room-123", "isTyping": true}),
        "{v}"
    );
    assert_eq!(v["errorData"]["code"], "bad_request", "{v}");
    assert_eq!(v["reason"], "io server disconnect", "{v}");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn seed_001s_client_code_runs_against_its_example_config() {
    let mut config = wsgate::Config::for_tests_with(&["--config", "examples/seed-001.toml"]);
    config.jwt_secret = Some(SECRET.into());
    config.api_keys = Some(API_KEY.into());
    let server = start_with(config);
    let v = client(
        &server,
        "seed001",
        json!({"tokens": tokens(), "apiKey": API_KEY}),
    )
    .await;
    assert_eq!(v["connectedData"]["userId"], "alice", "{v}");
    assert_eq!(v["connectedData"]["socketId"], v["socketId"], "{v}");
    assert_eq!(v["receivedData"]["type"], "reply", "{v}");
    assert_eq!(v["notificationData"], json!({"title": "hi"}), "{v}");
    server.handle.shutdown().await;
}

/// A raw Socket.IO-over-WebSocket client: the Engine.IO open packet read, `40` sent with
/// `token`, the CONNECT answer read.
async fn raw_socket(server: &TestServer, token: &str) -> RawSio {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await.unwrap();
    assert!(open.starts_with("0{"), "{open}");
    ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}")))
        .await
        .unwrap();
    let answer = next_text(&mut ws).await.unwrap();
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
    ws
}

type RawSio =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame (pings answered), or `None` once the connection is closed.
async fn next_text(ws: &mut RawSio) -> Option<String> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")?;
        match msg {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.ok()?;
            }
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The next frame that is not a ping (answered): text, binary or the close code.
async fn next_frame(ws: &mut RawSio) -> Result<Message, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time");
        match msg {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.map_err(|_| None)?;
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

#[tokio::test]
async fn binary_packets_and_answers_are_bounded() {
    let server = start_server(|c| c.max_message_bytes = 1024);
    // A binary packet counts with its attachments: each message under the bound, together over.
    let mut ws = raw_socket(&server, &token("mallory")).await;
    ws.send(Message::text(r#"451-["e",{"_placeholder":true,"num":0}]"#))
        .await
        .unwrap();
    ws.send(Message::binary(vec![7u8; 1000])).await.unwrap();
    let closed = loop {
        match next_frame(&mut ws).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, Some(1009), "as one message over MAX_MESSAGE_BYTES");
    // A room of 11 messages with a binary value each: a history of all of them would be 11
    // attachments, more than socket.io-client takes in one packet.
    let mut dave = server.client("dave", Fmt::Json).await;
    dave.ok(json!({"cmd": "join", "room": "many"}), 1).await;
    for i in 0..11 {
        let publish = json!({"cmd": "publish", "room": "many", "event": "b",
            "data": {"$binary": "AAE="}});
        dave.ok(publish, 2 + i).await;
    }
    let mut ws = raw_socket(&server, &token("erin")).await;
    ws.send(Message::text(r#"420["wsgate:join",{"room":"many"}]"#))
        .await
        .unwrap();
    let joined = next_text(&mut ws).await.unwrap();
    assert!(joined.starts_with(r#"430[{"type":"reply""#), "{joined}");
    ws.send(Message::text(r#"421["wsgate:history",{"room":"many"}]"#))
        .await
        .unwrap();
    let refused = next_text(&mut ws).await.unwrap();
    assert!(
        refused.starts_with(r#"431[{"type":"error","code":"bad_request","message":"the answer holds more than 10 binary values"#),
        "{refused}"
    );
    // Ten fit: a BINARY_ACK and its ten attachments, in order.
    ws.send(Message::text(
        r#"422["wsgate:history",{"room":"many","limit":10}]"#,
    ))
    .await
    .unwrap();
    let Ok(Message::Text(head)) = next_frame(&mut ws).await else {
        panic!("the binary ack")
    };
    assert!(head.starts_with(r#"4610-2[{"type":"reply""#), "{head}");
    assert_eq!(
        head.matches(r#"{"_placeholder":true,"num":"#).count(),
        10,
        "{head}"
    );
    for _ in 0..10 {
        match next_frame(&mut ws).await {
            Ok(Message::Binary(b)) => assert_eq!(&b[..], [0, 1]),
            other => panic!("an attachment, not {other:?}"),
        }
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn hostile_socket_io_packets_close_their_connection_only() {
    let server = start_api_server(|c| c.max_message_bytes = 1024);
    let api = Api::new(&server);
    let mut bystander = raw_socket(&server, &token("bystander")).await;
    // Over MAX_MESSAGE_BYTES: the same rule as native /ws, the connection is closed.
    let oversized = format!("42[\"e\",\"{}\"]", "x".repeat(2000));
    let hostile: &[&str] = &[
        &oversized,
        "4x",                                                      // no packet type
        "49[\"e\"]",                                               // type 9
        "42[\"e\"",                                                // broken JSON
        "42{\"not\":\"an array\"}",                                // an event must be an array
        "42[1,2]",                                                 // a numeric event name
        "4599999999999-[\"e\",{\"_placeholder\":true,\"num\":0}]", // lying attachment count
        "451-[\"e\",{\"_placeholder\":true,\"num\":7}]",           // placeholder past the count
        "4/chat",                                                  // namespace without a packet
    ];
    for packet in hostile {
        let mut ws = raw_socket(&server, &token("mallory")).await;
        ws.send(Message::text(*packet)).await.unwrap();
        // A binary frame completes any packet waiting for an attachment.
        let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
        let mut closed = false;
        for _ in 0..3 {
            if next_text(&mut ws).await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "{packet}: the connection is closed");
        // Everyone else is still served.
        let (s, body) = api
            .post(
                "/api/v1/push/users",
                json!({"userId": "bystander", "event": "still", "data": &packet[..packet.len().min(40)]}),
            )
            .await;
        assert_eq!((s, &body["delivered"]), (200, &json!(1)), "{body}");
        let got = next_text(&mut bystander).await.unwrap();
        let sent = json!(&packet[..packet.len().min(40)]);
        assert_eq!(got, format!("42[\"still\",{sent}]"), "{packet}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn seed_003s_client_code_runs_against_its_example_config() {
    let mut config = wsgate::Config::for_tests_with(&["--config", "examples/seed-003.toml"]);
    config.jwt_secret = Some(SECRET.into());
    config.api_keys = Some(API_KEY.into());
    let server = start_with(config);
    let v = client(
        &server,
        "seed003",
        json!({"tokens": tokens(), "apiKey": API_KEY}),
    )
    .await;
    assert_eq!(v["notification"], json!({"ticket": 7}), "{v}");
    assert_eq!(
        v["viaQuery"],
        json!({"ticket": 8}),
        "?token= works too: {v}"
    );
    assert_eq!(v["mainRefused"], "Invalid namespace", "{v}");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_cut_connection_recovers_its_socket_and_misses_nothing() {
    let server = start_server(|_| {});
    for (transports, parser, path) in WAYS {
        let args = json!({"tokens": tokens(), "transports": transports, "parser": parser,
            "path": path, "count": 150});
        let v = client(&server, "recovery", args).await;
        let ways = format!("{transports:?} {parser}");
        assert_eq!(v["cuts"], 2, "{ways}: {v}");
        assert_eq!(v["recoveredFlags"], json!([true, true]), "{ways}: {v}");
        // The same socket each time: recovered twice, it keeps its first id.
        let ids = v["ids"].as_array().unwrap();
        assert!(
            ids.len() == 3 && ids.iter().all(|id| *id == ids[0]),
            "{ways}: {v}"
        );
        assert_eq!(v["missing"], json!([]), "{ways}: {v}");
        assert_eq!(v["duplicates"], 0, "{ways}: {v}");
        assert_eq!(v["inOrder"], true, "{ways}: {v}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn without_recovery_a_cut_connection_starts_over() {
    let server = start_server(|c| c.socketio_recovery = std::time::Duration::ZERO);
    let args = json!({"tokens": tokens(), "transports": ["websocket"], "count": 60});
    let v = client(&server, "recovery", args).await;
    // Reconnected (one connect), and not recovered: no pid was given (`recovered` unset).
    assert_eq!(v["recoveredFlags"], json!([null]), "{v}");
    assert_ne!(
        v["missing"],
        json!([]),
        "what came while it was away is lost: {v}"
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_quiet_socket_lives_on_its_engine_io_heartbeat_alone() {
    // The native heartbeat (ping after 50 ms idle, closed 50 ms later) must not touch sockets.
    let server = start_server(|c| {
        c.heartbeat_interval = std::time::Duration::from_millis(50);
        c.heartbeat_timeout = std::time::Duration::from_millis(50);
        c.engineio_ping_interval = std::time::Duration::from_millis(100);
        c.engineio_ping_timeout = std::time::Duration::from_millis(500);
    });
    for transports in [&["polling"][..], &["websocket"][..]] {
        let args = json!({"tokens": tokens(), "transports": transports, "idleMs": 800});
        let v = client(&server, "idle", args).await;
        assert_eq!(v["data"], "still here", "{transports:?}: {v}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_session_that_connects_no_namespace_in_time_is_closed() {
    let server =
        start_server(|c| c.socketio_connect_timeout = std::time::Duration::from_millis(300));
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut idle, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert!(next_text(&mut idle).await.unwrap().starts_with("0{"));
    // One that connects in time stays past the deadline.
    let mut connected = raw_socket(&server, &token("alice")).await;
    let close = loop {
        match tokio::time::timeout(WAIT, idle.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4001, "connect timeout")
    );
    connected
        .send(Message::text("42[\"wsgate:ping\",{}]"))
        .await
        .unwrap();
    connected
        .send(Message::text("421[\"wsgate:ping\",{}]"))
        .await
        .unwrap();
    let answer = next_text(&mut connected).await.unwrap();
    assert!(answer.starts_with("431["), "still served: {answer}");
    server.handle.shutdown().await;
}

/// `scenario` over each of [`WAYS`], for a user of its own each time: the verdicts, each with
/// the way it went.
async fn each_way(server: &TestServer, scenario: &str, user: &str) -> Vec<(String, Value)> {
    let mut verdicts = Vec::new();
    for (i, (transports, parser, path)) in WAYS.into_iter().enumerate() {
        let user = format!("{user}-{i}");
        let args = json!({"token": token(&user), "user": user, "transports": transports,
            "parser": parser, "path": path, "apiKey": API_KEY});
        let v = client(server, scenario, args).await;
        verdicts.push((format!("{transports:?} {parser}"), v));
    }
    verdicts
}

#[tokio::test]
async fn private_messages_ask_for_acks_and_come_again_until_acked() {
    let server = start_api_server(|c| c.socketio_private_acks = true);
    for (ways, v) in each_way(&server, "privateAcks", "acker").await {
        // 1 until acked; then not again. 2 not acked: again, and 3 with it (acks are
        // cumulative).
        let got = json!([[1], [1], [1], [2, 3], [2, 3], [4]]);
        assert_eq!(v["got"], got, "{ways}: {v}");
        assert_eq!(v["afterFirst"]["waiting"], 0, "{ways}: {v}");
        assert_eq!(
            (&v["heldBack"]["acked"], &v["heldBack"]["waiting"]),
            (&json!(1), &json!(2)),
            "3's ack waits for 2's: {ways}: {v}"
        );
        assert_eq!(v["afterAll"]["waiting"], 0, "{ways}: {v}");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_never_acks_keeps_working_and_its_asks_stay_bounded() {
    let server = start_api_server(|c| {
        c.socketio_private_acks = true;
        c.user_stream_size = 4;
    });
    for (ways, v) in each_way(&server, "acksBound", "silent").await {
        let all: Vec<u64> = (1..=10).collect();
        assert_eq!(v["got"], json!(all), "{ways}: {v}");
        assert_eq!(v["ping"]["type"], "reply", "{ways}: {v}");
        assert_eq!(
            (&v["before"]["acked"], &v["before"]["waiting"]),
            (&json!(0), &json!(4)),
            "the stream keeps its last four: {ways}: {v}"
        );
        // The socket remembered the last four asks: the six answers before them are unknown.
        assert_eq!(v["unknown"], 6, "{ways}: {v}");
        assert_eq!(v["after"]["waiting"], 0, "{ways}: {v}");
        assert_eq!(
            v["again"],
            json!([11]),
            "nothing acked comes again: {ways}: {v}"
        );
    }
    server.handle.shutdown().await;
}
