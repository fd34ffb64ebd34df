//! Hostile clients against the real server: malformed and lying input, deep nesting, oversized
//! and fragmented frames, floods, slowloris, abandoned handshakes, a consumer that never reads,
//! a 100 MB REST body and tampered tokens. Each case runs next to a bystander that must keep
//! receiving, and checks that it received a fresh message after the attack.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::bystander::{Bystander, Feed};
use common::raw::{read_until_closed, RawWs, UPGRADE_HEADERS};
use common::tokens::{
    b64, flip_signature, hs, now, rs256, rs256_token, swap_header, swap_payload, FIXTURES,
};
use common::watch::{open_fds, Counting, HeapWatch, ALONE};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// The server runs in this process: counting its allocations lets `HeapWatch` see its heap.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// 1. Malformed JSON, invalid UTF-8.

#[tokio::test]
async fn malformed_json_gets_bad_request_and_invalid_utf8_closes_with_1007() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|_| {});
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let mut c = server.client("mallory", Fmt::Json).await;
    c.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    let publish =
        |data: &str| format!(r#"{{"cmd":"publish","room":"watch","event":"evil","data":{data}}}"#);
    let mut bad: Vec<String> = [
        "{",
        "}",
        "",
        " \n",
        "nul",
        "\u{0}",
        "{'cmd':'ping'}",
        r#"{"cmd":"ping",}"#,
        r#"{"cmd":"ping"}{"cmd":"ping"}"#,
        r#"{"cmd":"ping"} x"#,
        r#"{"cmd":"ping","id":1"#,
        r#"{"cmd":"ping","id":01}"#,
        r#"["cmd","ping"]"#,
        "\"ping\"",
        "42",
    ]
    .map(String::from)
    .to_vec();
    // Bad `data` in a publish to the bystander's room: refused, never delivered.
    for data in [
        "",
        "[1,2,]",
        "\"\\ud800\"",
        "1e400",
        "{\"a\":1,}",
        "tru",
        "\"\\x\"",
    ] {
        bad.push(publish(data));
    }
    for text in &bad {
        c.send_raw(WsMessage::text(text.as_str())).await;
        let e = c.recv().await;
        assert_eq!(
            (e["type"].as_str(), code(&e)),
            (Some("error"), "bad_request"),
            "for {text:?}: {e}"
        );
    }
    c.ok(json!({"cmd": "ping"}), 2).await;

    // Invalid UTF-8 in a text message, whole or across fragments, or in a close reason: 1007.
    let mut split = ws_frame(TEXT_FIRST, br#"{"cmd":"ping","x":""#);
    split.extend(ws_frame(LAST | CONTINUATION, b"\xff\"}"));
    let cases: [(&str, Vec<u8>); 7] = [
        ("0xff 0xfe", ws_frame(TEXT, b"\xff\xfe")),
        ("overlong NUL", ws_frame(TEXT, b"{\"cmd\":\"\xc0\x80\"}")),
        (
            "UTF-16 surrogate",
            ws_frame(TEXT, b"{\"cmd\":\"\xed\xa0\x80\"}"),
        ),
        (
            "truncated sequence",
            ws_frame(TEXT, b"{\"cmd\":\"ping\",\"x\":\"\xe2\x82"),
        ),
        ("beyond U+10FFFF", ws_frame(TEXT, b"\"\xf4\x90\x80\x80\"")),
        ("in a continuation", split),
        ("in a close reason", ws_frame(CLOSE, b"\x03\xe8\xff")),
    ];
    for (name, bytes) in cases {
        let mut raw = RawWs::authed(&server, "mallory", Fmt::Json).await;
        raw.write(&bytes).await;
        match raw.recv(Fmt::Json).await {
            Ok(m) => panic!("{name}: expected a close, got {m}"),
            Err(code) => assert_eq!(code, Some(1007), "{name}"),
        }
    }
    // A character split between fragments is valid UTF-8: the message is served.
    let mut raw = RawWs::authed(&server, "mallory", Fmt::Json).await;
    raw.write(&ws_frame(
        TEXT_FIRST,
        b"{\"cmd\":\"ping\",\"id\":7,\"x\":\"\xc3",
    ))
    .await;
    raw.write(&ws_frame(LAST | CONTINUATION, b"\xa9\"}")).await;
    assert_eq!(
        raw.recv(Fmt::Json).await.unwrap(),
        json!({"type": "reply", "id": 7})
    );

    assert_eq!(
        bystander.finish().await,
        0,
        "nothing malformed was delivered"
    );
    drop((c, raw));
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. MessagePack (and WebSocket) lengths that lie.

#[tokio::test]
async fn lying_lengths_get_clear_errors_without_allocating_what_they_claim() {
    let _alone = ALONE.write().await;
    let server = start_api_server(|_| {});
    let max = wsgate::Config::for_tests().max_message_bytes;
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let mut c = server.client("liar", Fmt::MsgPack).await;
    c.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    let heap = HeapWatch::start();

    let cmd = mp_str("publish");
    let room = mp_str("watch");
    let event = mp_str("evil");
    let publish_with = |data: &[u8]| {
        mp_map(&[
            ("cmd", &cmd),
            ("room", &room),
            ("event", &event),
            ("data", data),
        ])
    };
    let u32_max = [0xff, 0xff, 0xff, 0xff];
    let lies: Vec<(&str, Vec<u8>)> = vec![
        (
            "str32 in data",
            publish_with(&[&[0xdb][..], &u32_max, b"abc"].concat()),
        ),
        (
            "bin32 in data",
            publish_with(&[&[0xc6][..], &u32_max, b"abc"].concat()),
        ),
        (
            "array32 in data",
            publish_with(&[&[0xdd][..], &u32_max, &[1, 2]].concat()),
        ),
        (
            "map32 in data",
            publish_with(&[&[0xdf][..], &u32_max, &[0xa1, b'k', 1]].concat()),
        ),
        (
            "array16 in data",
            publish_with(&[0xdc, 0xff, 0xff, 1, 2, 3]),
        ),
        (
            "map16 in data",
            publish_with(&[0xde, 0xff, 0xff, 0xa1, b'k', 1]),
        ),
        (
            "str32 in data, nested",
            publish_with(&[&[0x91, 0x91, 0xdb][..], &u32_max].concat()),
        ),
        (
            "envelope map32",
            [&[0xdf][..], &u32_max, &mp_str("cmd"), &cmd].concat(),
        ),
        (
            "envelope map16",
            [&[0xde, 0xff, 0xff][..], &mp_str("cmd"), &cmd].concat(),
        ),
        ("key str32", [&[0x81, 0xdb][..], &u32_max, b"cmd"].concat()),
        (
            "cmd str32",
            [&[0x81][..], &mp_str("cmd"), &[0xdb], &u32_max, b"ping"].concat(),
        ),
        (
            "room str32",
            mp_map(&[
                ("cmd", &mp_str("join")),
                ("room", &[&[0xdb][..], &u32_max].concat()),
            ]),
        ),
        (
            "unknown field bin32",
            mp_map(&[
                ("cmd", &mp_str("ping")),
                ("x", &[&[0xc6][..], &u32_max, b"ab"].concat()),
            ]),
        ),
        (
            "unknown field ext32",
            mp_map(&[
                ("cmd", &mp_str("ping")),
                ("x", &[&[0xc9][..], &u32_max, &[1, 2]].concat()),
            ]),
        ),
        (
            "unknown field array32",
            mp_map(&[
                ("cmd", &mp_str("ping")),
                ("x", &[&[0xdd][..], &u32_max].concat()),
            ]),
        ),
    ];
    for (name, bytes) in &lies {
        assert!(
            bytes.len() < 64,
            "{name}: a lie costs the attacker a few bytes"
        );
        c.send_raw(WsMessage::binary(bytes.clone())).await;
        let e = c.recv().await;
        assert_eq!(
            (e["type"].as_str(), code(&e)),
            (Some("error"), "bad_request"),
            "{name}: {e}"
        );
        assert_eq!(e.get("id"), None, "{name}: no id was read");
    }
    // When the id came first, the error carries it.
    let with_id = mp_map(&[
        ("id", &[7]),
        ("cmd", &cmd),
        ("data", &[&[0xdd][..], &u32_max].concat()),
    ]);
    c.send_raw(WsMessage::binary(with_id)).await;
    let e = c.recv().await;
    assert_eq!((code(&e), &e["id"]), ("bad_request", &json!(7)), "{e}");
    c.ok(json!({"cmd": "ping"}), 2).await;

    // A WebSocket frame claiming 4 GiB (over max_message_bytes): answered at once with
    // frame.too_large, and closed with 1009 (the rest is never read).
    let mut raw = RawWs::authed(&server, "liar", Fmt::MsgPack).await;
    raw.write(&ws_header(BINARY, 4 << 30)).await;
    raw.write(b"0123456789").await;
    let e = raw.recv(Fmt::MsgPack).await.unwrap();
    assert_eq!((code(&e), e.get("id")), ("frame.too_large", None), "{e}");
    raw.expect_close(Fmt::MsgPack, 1009).await;
    // A length with the top bit set breaks RFC 6455: close 1002.
    let mut raw = RawWs::authed(&server, "liar", Fmt::MsgPack).await;
    raw.write(&ws_header(BINARY, 1 << 63)).await;
    raw.expect_close(Fmt::MsgPack, 1002).await;
    let growth = heap.peak_growth();
    eprintln!("lying lengths: peak heap growth {growth} bytes");
    assert!(growth < 4 * MIB, "peak heap growth {growth}");

    // Frames claiming just under the limit, with 10 bytes sent: the server reserves the claimed
    // payload when it reads the header, so each such connection may hold up to
    // max_message_bytes (the documented bound), never more.
    let heap = HeapWatch::start();
    let mut under = Vec::new();
    for _ in 0..8 {
        let mut raw = RawWs::authed(&server, "liar", Fmt::MsgPack).await;
        raw.write(&ws_header(BINARY, max as u64)).await;
        raw.write(b"0123456789").await;
        under.push(raw);
    }
    // Nothing on the wire tells when the server has read them; measuring before it did could
    // only let the bound pass, never fail it spuriously.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let growth = heap.peak_growth();
    eprintln!("8 frames claiming max_message_bytes: peak heap growth {growth} bytes");
    assert!(growth < 8 * max + 4 * MIB, "peak heap growth {growth}");
    drop(under);

    assert_eq!(bystander.finish().await, 0, "no lie was delivered");
    drop((c, raw));
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Deep nesting.

#[tokio::test]
async fn deeply_nested_values_get_bad_request_without_overflowing_the_stack() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|_| {});
    let bystander = Bystander::start(&server, Feed::Rest).await;
    const N: usize = 100_000;
    let deep_json = format!("{}{}", "[".repeat(N), "]".repeat(N));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(N), "}".repeat(N));

    let mut j = server.client("nester", Fmt::Json).await;
    j.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    let publish = |data: &str| {
        format!(r#"{{"cmd":"publish","id":5,"room":"watch","event":"deep","data":{data}}}"#)
    };
    for (name, text) in [
        ("arrays in data", publish(&deep_json)),
        ("objects in data", publish(&deep_objects)),
        ("unclosed arrays in data", publish(&"[".repeat(N))),
    ] {
        j.send_raw(WsMessage::text(text)).await;
        let e = j.recv().await;
        assert_eq!(code(&e), "bad_request", "{name}: {e}");
    }
    // The same depth at the top level, and in a field that must be a string.
    for (name, text) in [
        ("top level", deep_json.clone()),
        (
            "room",
            format!(r#"{{"cmd":"join","id":6,"room":{deep_json}}}"#),
        ),
    ] {
        j.send_raw(WsMessage::text(text)).await;
        let e = j.recv().await;
        assert_eq!(code(&e), "bad_request", "{name}: {e}");
    }
    // In a field this version does not know, both encodings skip the value without recursing
    // (unknown fields are ignored at any depth that fits in the message).
    j.send_raw(WsMessage::text(format!(
        r#"{{"cmd":"ping","id":7,"x":{deep_json}}}"#
    )))
    .await;
    assert_eq!(j.recv().await, json!({"type": "reply", "id": 7}));
    // 64 deep is allowed, and delivered.
    let ok64 = format!("{}{}", "[".repeat(64), "]".repeat(64));
    j.send_raw(WsMessage::text(publish(&ok64))).await;
    let r = j.recv().await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_u64()),
        (Some("reply"), Some(5)),
        "{r}"
    );

    let mut m = server.client("nester", Fmt::MsgPack).await;
    m.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    let mut deep_mp = vec![0x91; N];
    deep_mp.push(0xc0);
    let mut deep_maps = Vec::with_capacity(3 * N);
    for _ in 0..N {
        deep_maps.extend_from_slice(&[0x81, 0xa1, b'a']);
    }
    deep_maps.push(0xc0);
    for (name, data) in [("arrays", &deep_mp), ("maps", &deep_maps)] {
        let msg = mp_map(&[
            ("id", &[5]),
            ("cmd", &mp_str("publish")),
            ("room", &mp_str("watch")),
            ("event", &mp_str("deep")),
            ("data", data),
        ]);
        m.send_raw(WsMessage::binary(msg)).await;
        let e = m.recv().await;
        assert_eq!(
            (code(&e), &e["id"]),
            ("bad_request", &json!(5)),
            "{name}: {e}"
        );
    }
    for deep in [&deep_mp, &deep_maps] {
        let unknown = mp_map(&[("cmd", &mp_str("ping")), ("id", &[7]), ("x", deep)]);
        m.send_raw(WsMessage::binary(unknown)).await;
        assert_eq!(m.recv().await, json!({"type": "reply", "id": 7}));
    }
    m.send_raw(WsMessage::binary(deep_mp.clone())).await;
    assert_eq!(code(&m.recv().await), "bad_request");

    // REST: the same nesting in a push's data.
    let api = Api::new(&server);
    let body = format!(r#"{{"userId":"watcher","event":"deep","data":{deep_json}}}"#);
    let (status, e) = api.post_raw("/api/v1/push/users", body).await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "bad_request", "{e}");
    assert_eq!(e["error"]["details"][0]["field"], "data", "{e}");

    j.ok(json!({"cmd": "ping"}), 9).await;
    m.ok(json!({"cmd": "ping"}), 9).await;
    assert_eq!(
        bystander.finish().await,
        1,
        "only the 64-deep event was delivered"
    );
    drop((j, m));
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Oversized frames and fragments.

#[tokio::test]
async fn oversized_frames_and_fragments_get_frame_too_large_and_a_close() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| {
        c.max_message_bytes = 1024;
        c.max_outbound_bytes = 64 * 1024;
    });
    let bystander = Bystander::start(&server, Feed::Room).await;
    for fmt in BOTH {
        let (first, whole) = match fmt {
            Fmt::Json => (TEXT_FIRST, TEXT),
            Fmt::MsgPack => (0x02, BINARY),
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("one frame of 1025 bytes", ws_frame(whole, &[b' '; 1025])),
            ("one frame of 1 MiB", ws_frame(whole, &vec![b' '; MIB])),
            ("3 fragments of 600", {
                let mut f = ws_frame(first, &[b' '; 600]);
                f.extend(ws_frame(CONTINUATION, &[b' '; 600]));
                f.extend(ws_frame(LAST | CONTINUATION, &[b' '; 600]));
                f
            }),
            ("2000 fragments of 1 byte", {
                let mut f = ws_frame(first, b" ");
                for _ in 0..1998 {
                    f.extend(ws_frame(CONTINUATION, b" "));
                }
                f.extend(ws_frame(LAST | CONTINUATION, b" "));
                f
            }),
            ("a ping between oversized fragments", {
                let mut f = ws_frame(first, &[b' '; 1000]);
                f.extend(ws_frame(0x89, b"mid"));
                f.extend(ws_frame(LAST | CONTINUATION, &[b' '; 1000]));
                f
            }),
        ];
        for (name, bytes) in cases {
            let mut raw = RawWs::authed(&server, "big", fmt).await;
            raw.write(&bytes).await;
            let e = raw.recv(fmt).await.unwrap();
            assert_eq!(
                (code(&e), e.get("id")),
                ("frame.too_large", None),
                "{fmt:?} {name}: {e}"
            );
            // Then closed: an oversized message is never read to its end.
            raw.expect_close(fmt, 1009).await;
        }
        let mut raw = RawWs::authed(&server, "big", fmt).await;
        // Exactly at the limit is accepted.
        let pad = |n: usize| {
            let base = json!({"cmd": "ping", "id": 2, "p": ""});
            let len = match fmt {
                Fmt::Json => base.to_string().len(),
                Fmt::MsgPack => rmp_serde::to_vec(&base).unwrap().len() + 2,
            };
            let v = json!({"cmd": "ping", "id": 2, "p": "x".repeat(n - len)});
            match fmt {
                Fmt::Json => v.to_string().into_bytes(),
                Fmt::MsgPack => rmp_serde::to_vec(&v).unwrap(),
            }
        };
        let at_limit = pad(1024);
        assert_eq!(at_limit.len(), 1024);
        raw.write(&ws_frame(whole, &at_limit)).await;
        assert_eq!(
            raw.recv(fmt).await.unwrap(),
            json!({"type": "reply", "id": 2})
        );
    }
    assert_eq!(bystander.finish().await, 0);
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Unknown commands and wrong types.

#[tokio::test]
async fn unknown_commands_and_wrong_types_get_documented_codes() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|_| {});
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let long = "x".repeat(129);
    let long_id = "i".repeat(65);
    // (command, expected code, expected id)
    let cases = [
        (
            json!({"cmd": "dance", "id": 1}),
            "unknown_command",
            json!(1),
        ),
        (json!({"cmd": "", "id": 2}), "unknown_command", json!(2)),
        (
            json!({"cmd": "JOIN", "id": 3, "room": "watch"}),
            "unknown_command",
            json!(3),
        ),
        (json!({"cmd": 42, "id": 4}), "bad_request", json!(4)),
        (json!({"cmd": null, "id": 5}), "bad_request", json!(5)),
        (json!({"id": 6}), "bad_request", json!(6)),
        (
            json!({"cmd": "join", "id": 7, "room": 42}),
            "bad_request",
            json!(7),
        ),
        (
            json!({"cmd": "join", "id": 8, "room": ["watch"]}),
            "bad_request",
            json!(8),
        ),
        (json!({"cmd": "join", "id": 9}), "bad_request", json!(9)),
        (
            json!({"cmd": "join", "id": 10, "room": ""}),
            "bad_request",
            json!(10),
        ),
        (
            json!({"cmd": "join", "id": 11, "room": long}),
            "bad_request",
            json!(11),
        ),
        (
            json!({"cmd": "publish", "id": 12, "room": "watch", "event": {}}),
            "bad_request",
            json!(12),
        ),
        (
            json!({"cmd": "publish", "id": 13, "room": "watch", "event": "e", "echo": "yes"}),
            "bad_request",
            json!(13),
        ),
        (
            json!({"cmd": "publish", "id": 14, "room": 1, "event": "e"}),
            "bad_request",
            json!(14),
        ),
        (
            json!({"cmd": "send", "id": 15, "to": ["watcher"], "event": "e"}),
            "bad_request",
            json!(15),
        ),
        (
            json!({"cmd": "send", "id": 16, "to": "watcher", "event": 7}),
            "bad_request",
            json!(16),
        ),
        (
            json!({"cmd": "auth", "id": 17, "token": 5}),
            "bad_request",
            json!(17),
        ),
        (
            json!({"cmd": "leave", "id": "s", "room": true}),
            "bad_request",
            json!("s"),
        ),
        (json!({"cmd": "ping", "id": -1}), "bad_request", Value::Null),
        (
            json!({"cmd": "ping", "id": 1.5}),
            "bad_request",
            Value::Null,
        ),
        (
            json!({"cmd": "ping", "id": null}),
            "bad_request",
            Value::Null,
        ),
        (
            json!({"cmd": "ping", "id": true}),
            "bad_request",
            Value::Null,
        ),
        (
            json!({"cmd": "ping", "id": long_id}),
            "bad_request",
            Value::Null,
        ),
        (
            json!({"cmd": "join", "room": 42}),
            "bad_request",
            Value::Null,
        ),
        (json!({"cmd": "dance"}), "unknown_command", Value::Null),
    ];
    for fmt in BOTH {
        let mut c = server.client("typo", fmt).await;
        c.ok(json!({"cmd": "join", "room": "watch"}), 100).await;
        for (cmd, want, id) in &cases {
            c.send(cmd.clone()).await;
            let e = c.recv().await;
            assert_eq!(e["type"], "error", "{fmt:?} {cmd}: {e}");
            assert_eq!(
                (code(&e), e.get("id").unwrap_or(&Value::Null)),
                (*want, id),
                "{fmt:?} {cmd}: {e}"
            );
        }
        if fmt == Fmt::MsgPack {
            // What JSON cannot say (ext in data, a map key that is not a string) or would say
            // otherwise (a map whose one key is `$binary`: binary in JSON).
            let binary_key = [&[0x81, 0xa7][..], b"$binary", &mp_str("AAA=")].concat();
            let bin = mp_map(&[
                ("cmd", &mp_str("publish")),
                ("id", &[20]),
                ("room", &mp_str("watch")),
                ("event", &mp_str("e")),
                ("data", &binary_key),
            ]);
            let ext = mp_map(&[
                ("cmd", &mp_str("publish")),
                ("id", &[21]),
                ("room", &mp_str("watch")),
                ("event", &mp_str("e")),
                ("data", &[0xd4, 1, 0]),
            ]);
            let int_key = mp_map(&[
                ("cmd", &mp_str("publish")),
                ("id", &[22]),
                ("room", &mp_str("watch")),
                ("event", &mp_str("e")),
                ("data", &[0x81, 0x01, 0x02]),
            ]);
            let top_int_key = [
                0x82, 0xa3, b'c', b'm', b'd', 0xa4, b'p', b'i', b'n', b'g', 0x01, 0x02,
            ]
            .to_vec();
            for (msg, id) in [
                (bin, json!(20)),
                (ext, json!(21)),
                (int_key, json!(22)),
                (top_int_key, Value::Null),
            ] {
                c.send_raw(WsMessage::binary(msg)).await;
                let e = c.recv().await;
                assert_eq!(
                    (code(&e), e.get("id").unwrap_or(&Value::Null)),
                    ("bad_request", &id),
                    "{e}"
                );
            }
        }
        c.ok(json!({"cmd": "ping"}), 101).await;
        c.close().await;
    }
    assert_eq!(
        bystander.finish().await,
        0,
        "no refused command delivered anything"
    );
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Commands before authentication.

#[tokio::test]
async fn commands_before_auth_are_refused_then_the_auth_timeout_closes_with_4001() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| c.auth_timeout = Duration::from_millis(500));
    let bystander = Bystander::start(&server, Feed::Room).await;
    let mut clients = Vec::new();
    for fmt in BOTH {
        let mut c = Client::connect(&server.url(&format!("format={}", fmt.query())), fmt)
            .await
            .unwrap();
        let commands = [
            json!({"cmd": "join", "room": "watch"}),
            json!({"cmd": "leave", "room": "watch"}),
            json!({"cmd": "publish", "room": "watch", "event": "e", "data": 1}),
            json!({"cmd": "send", "to": "watcher", "event": "e", "data": 1}),
        ];
        for (id, cmd) in commands.into_iter().enumerate() {
            let e = c.call(cmd, id as u64).await;
            assert_eq!(
                (e["type"].as_str(), code(&e)),
                (Some("error"), "auth.required"),
                "{e}"
            );
        }
        // Without an id too; ping is allowed.
        c.send(json!({"cmd": "send", "to": "watcher", "event": "e"}))
            .await;
        let e = c.recv().await;
        assert_eq!((code(&e), e.get("id")), ("auth.required", None), "{e}");
        assert_eq!(c.call(json!({"cmd": "ping"}), 9).await["type"], "reply");
        clients.push(c);
    }
    for c in &mut clients {
        c.expect_close(4001).await;
    }
    assert_eq!(
        bystander.finish().await,
        0,
        "nothing from unauthenticated clients delivered"
    );
    drop(clients);
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. A command flood past the rate limit.

#[tokio::test]
async fn a_command_flood_is_rate_limited_and_the_bystander_is_unaffected() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| {
        c.rate_per_sec = 10;
        c.rate_burst = 20;
    });
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let mut c = server.client("flooder", Fmt::Json).await;
    c.ok(json!({"cmd": "join", "room": "watch"}), 0).await;
    const FLOOD: u64 = 1000;
    for id in 1..=FLOOD {
        let cmd =
            json!({"cmd": "publish", "id": id, "room": "watch", "event": "flood", "data": id});
        c.send(cmd).await;
    }
    let (mut replies, mut limited) = (0, 0);
    for id in 1..=FLOOD {
        let a = c.recv().await;
        assert_eq!(a["id"], id, "one answer per command, in order: {a}");
        match (a["type"].as_str(), code(&a)) {
            (Some("reply"), _) => replies += 1,
            (Some("error"), "rate.limited") => limited += 1,
            _ => panic!("unexpected answer {a}"),
        }
    }
    eprintln!("flood: {replies} executed, {limited} rate-limited");
    assert_eq!(replies + limited, FLOOD);
    assert!(replies >= 19, "the burst passes: {replies}");
    assert!(
        limited >= FLOOD / 2,
        "most of the flood is refused: {limited}"
    );
    assert!(server.handle.stats().rate_limited >= limited);
    // Exactly the executed publishes reach the room, no more.
    wait_for("the executed publishes arrive", || {
        bystander.others() >= replies
    })
    .await;
    bystander.fresh().await;
    assert_eq!(bystander.finish().await, replies);
    drop(c);
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Slowloris and idle connections before the upgrade.

#[tokio::test]
async fn a_keep_alive_connection_idle_after_its_answer_is_closed_by_the_header_timeout() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| c.header_timeout = Duration::from_secs(1));
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    // Two requests on one connection (keep-alive works), then silence.
    for _ in 0..2 {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The whole answer: its head, then as many body bytes as it says.
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).await.unwrap();
            got.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a content-length");
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Idle after its answer: closed by HEADER_TIMEOUT, not held open without end (the
    // read ends within `WAIT`, or `read_until_closed` fails the test).
    let started = std::time::Instant::now();
    let rest = read_until_closed(&mut conn).await;
    let took = started.elapsed();
    assert!(rest.is_empty(), "nothing more was asked");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_by_the_header_timeout() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| c.header_timeout = Duration::from_millis(500));
    let bystander = Bystander::start(&server, Feed::Room).await;

    // Connected, silent.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    // An upgrade trickled one byte every 20 ms, with a header that never ends: only the
    // header timeout can end it within WAIT (16 KiB of head would take 5 minutes).
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let trickle = async {
        let head = format!(
            "GET /ws?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE_HEADERS}X-Slow: ",
            token("loris")
        );
        let mut sent = 0usize;
        let bytes = head.bytes().chain(std::iter::repeat(b'a'));
        for b in bytes {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if sent > 500 {
                panic!("still sending after 10 s: the header timeout did not close the connection");
            }
        }
        let answer = read_until_closed(&mut slow).await;
        (sent, answer)
    };
    let (idle_answer, (sent, slow_answer)) = tokio::join!(read_until_closed(&mut idle), trickle);
    let idle_answer = String::from_utf8_lossy(&idle_answer).into_owned();
    let slow_answer = String::from_utf8_lossy(&slow_answer).into_owned();
    eprintln!("slowloris: closed after {sent} bytes; answers {idle_answer:?} / {slow_answer:?}");
    assert!(
        !slow_answer.contains(" 101 "),
        "never upgraded: {slow_answer}"
    );
    assert!(!idle_answer.contains(" 101 "), "{idle_answer}");
    // A header bigger than MAX_HEADER_BYTES sent at once: 431, or closed.
    let mut big = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut big).await).into_owned();
    eprintln!("64 KiB header: {:?}", answer.lines().next());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    assert_eq!(server.handle.stats().connections, 2, "only the bystander's");
    assert_eq!(bystander.finish().await, 0);
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Thousands of handshakes abandoned half way.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_abandoned_handshakes_leave_nothing_behind() {
    let _alone = ALONE.write().await;
    let server = start_api_server(|_| {});
    let bystander = Bystander::start(&server, Feed::Room).await;
    let api = Api::new(&server);
    let (status, before) = api.get("/api/v1/stats").await;
    assert_eq!(status, 200);
    let fds_before = open_fds();
    const N: usize = 2000;
    let mut socks = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let query = format!("token={}", token(&format!("ghost{i}")));
        let full = format!("GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE_HEADERS}\r\n");
        let part = match i % 4 {
            0 => &full[..10],             // in the request line
            1 => &full[..full.len() / 2], // in the headers
            2 => &full[..full.len() - 2], // all but the final CRLF
            _ => &full[..],               // complete: upgraded, then dropped unread
        };
        s.write_all(part.as_bytes()).await.unwrap();
        socks.push(s);
    }
    // The completed ones are upgraded and registered as WebSocket connections.
    wait_for("the completed handshakes upgrade", || {
        server.handle.stats().connections_total >= 2 + (N / 4) as u64
    })
    .await;
    bystander.fresh().await;
    drop(socks);
    wait_for("the connection gauge returns to the baseline", || {
        server.handle.stats().connections == 2
    })
    .await;
    wait_for("the server closes its sockets", || {
        open_fds() <= fds_before + 8
    })
    .await;
    let (_, after) = api.get("/api/v1/stats").await;
    assert_eq!(
        (&after["connections"], &after["users"]),
        (&before["connections"], &before["users"]),
        "{after}"
    );
    // Still serving: a new client of one of the ghosts gets in and is answered.
    let mut c = server.client("ghost3", Fmt::Json).await;
    c.ok(json!({"cmd": "ping"}), 1).await;
    c.close().await;
    assert_eq!(bystander.finish().await, 0);
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 10. A consumer that never reads.

#[tokio::test]
async fn a_consumer_that_never_reads_is_closed_with_4002_and_the_bystander_keeps_receiving() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| {
        c.max_message_bytes = 16 * 1024;
        c.max_outbound_bytes = 64 * 1024;
        c.rate_per_sec = 100_000;
        c.rate_burst = 100_000;
        // With the 2 s close grace, how long the server waits to write its close frame to a
        // client that does not read.
        c.heartbeat_timeout = Duration::from_secs(1);
    });
    let bystander = Bystander::start(&server, Feed::Room).await;
    let mut never = server.small_window_client("sloth").await;
    let mut drained = server.small_window_client("sloth").await;
    let mut fast = server.client("fast", Fmt::MsgPack).await;
    let mut publisher = server.client("pub", Fmt::Json).await;
    for c in [&mut never, &mut fast, &mut publisher] {
        c.ok(json!({"cmd": "join", "room": "flood"}), 1).await;
    }
    let payload = "y".repeat(8 * 1024);
    let published = std::cell::Cell::new(0u64);
    // Publishes until the server has counted `n` slow consumers.
    let mut flood_until = async |n: u64| {
        while server.handle.stats().slow_consumers < n {
            let i = published.get();
            assert!(i < 5_000, "40 MB published and no slow consumer");
            let data = json!({"i": i, "p": payload});
            let ev = json!({"cmd": "publish", "room": "flood", "event": "bulk", "data": data});
            publisher.send(ev).await;
            // A reader in the same room gets every event, in order.
            assert_eq!(fast.recv().await["data"]["i"], i);
            published.set(i + 1);
        }
    };
    // First the one that never reads, then, in the room too, one that will read late.
    flood_until(1).await;
    drained.ok(json!({"cmd": "join", "room": "flood"}), 1).await;
    let joined_at = published.get();
    flood_until(2).await;
    let published = published.get();
    eprintln!("slow consumers detected after {published} events of 8 KiB");
    // Reading now, within the close grace, one finds what got through, then the 4002 close.
    let mut got = 0;
    let close = loop {
        match drained.next_message().await {
            Ok(_) => got += 1,
            Err(code) => break code,
        }
    };
    assert_eq!(close, Some(4002));
    let sent = published - joined_at;
    assert!(got < sent, "events were dropped: {got} of {sent} arrived");
    drop(drained);
    // The other never reads: the server gives up on writing its close and drops it.
    wait_for("the never-reading connection is dropped", || {
        server.handle.stats().connections == 4
    })
    .await;
    let end = loop {
        match never.next_message().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert!(matches!(end, Some(4002) | None), "{end:?}");
    // The room still works for the others.
    publisher
        .ok(
            json!({"cmd": "publish", "room": "flood", "event": "after", "data": 1}),
            2,
        )
        .await;
    assert_eq!(fast.recv().await["event"], "after");
    assert_eq!(bystander.finish().await, 0);
    drop((never, fast, publisher));
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 11. A 100 MB REST body.

/// Sends `head`, then streams up to 100 MB of body from one reused buffer (as chunks when
/// `chunked`), while reading the answer. Returns the answer and the body bytes sent.
async fn stream_big_body(server: &TestServer, head: String, chunked: bool) -> (String, u64) {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        while counter.load(Relaxed) < 100_000_000 {
            wr.write_all(if chunked { &framed } else { &chunk }).await?;
            counter.fetch_add(chunk.len() as u64, Relaxed);
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(WAIT, rd.read(&mut buf)).await;
        match read.expect("answered in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if body.ends_with('}') {
                break;
            }
        }
    }
    // The server stops reading; the writer stops at the reset.
    writer.abort();
    let _ = writer.await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        sent.load(Relaxed),
    )
}

#[tokio::test]
async fn a_100_mb_rest_body_gets_413_without_being_buffered() {
    let _alone = ALONE.write().await;
    let server = start_api_server(|c| c.max_body_bytes = MIB);
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let heap = HeapWatch::start();
    let declared = format!(
        "POST /api/v1/push/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    );
    let chunked = format!(
        "POST /api/v1/push/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for (name, head, is_chunked) in [
        ("Content-Length", declared, false),
        ("chunked", chunked, true),
    ] {
        let (answer, sent) = stream_big_body(&server, head, is_chunked).await;
        eprintln!("100 MB body, {name}: answered after {sent} bytes sent");
        assert!(answer.starts_with("HTTP/1.1 413"), "{name}: {answer}");
        let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"]["code"], "body.too_large", "{name}: {body}");
        assert!(
            sent < 100_000_000,
            "{name}: the server read the whole body first"
        );
        bystander.fresh().await;
    }
    let growth = heap.peak_growth();
    eprintln!("100 MB body: peak heap growth {growth} bytes");
    assert!(growth < 16 * MIB, "peak heap growth {growth}");
    assert_eq!(
        bystander.finish().await,
        0,
        "the refused broadcast was not delivered"
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_rest_body_trickled_past_the_body_timeout_gets_408_and_is_closed() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| c.body_timeout = Duration::from_millis(500));
    let bystander = Bystander::start(&server, Feed::Rest).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"event":"never","data":1}"#;
    let head = format!(
        "POST /api/v1/push/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Half the body, then nothing: only the body timeout can answer.
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut slow).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let json: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(json["error"]["code"], "body.timeout", "{json}");
    bystander.fresh().await;
    assert_eq!(
        bystander.finish().await,
        0,
        "the timed-out push was not delivered"
    );
    server.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Tampered tokens.

/// Each token must be refused with `code`: 401 at the handshake (query and header), and an
/// error then close 1008 for the `auth` command.
async fn refused_everywhere(server: &TestServer, cases: &[(&str, String, &str)]) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    for (name, token, want) in cases {
        let r = Client::connect(&server.url(&format!("token={token}")), Fmt::Json)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: the handshake was accepted"));
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (401, Some(*want)),
            "{name}: {:?}",
            r.body
        );
        let mut req = server.url("").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let r = Client::connect_with(req, Fmt::Json).await.err().unwrap();
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (401, Some(*want)),
            "{name} (header)"
        );
        for fmt in BOTH {
            let mut c = Client::connect(&server.url(&format!("format={}", fmt.query())), fmt)
                .await
                .unwrap();
            let e = c.call(json!({"cmd": "auth", "token": token}), 1).await;
            assert_eq!(
                (e["type"].as_str(), code(&e)),
                (Some("error"), *want),
                "{name} {fmt:?}: {e}"
            );
            c.expect_close(1008).await;
        }
    }
}

#[tokio::test]
async fn tampered_hs256_tokens_are_refused_with_documented_codes() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|_| {});
    let bystander = Bystander::start(&server, Feed::Room).await;
    let good = token("alice");
    let admin = json!({"sub": "admin", "exp": now() + 3600});
    let none_header = json!({"alg": "none", "typ": "JWT"});
    let unsigned = format!(
        "{}.{}.",
        b64(none_header.to_string().as_bytes()),
        b64(admin.to_string().as_bytes())
    );
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    let secret = SECRET.as_bytes();
    let cases = [
        (
            "signature byte flipped",
            flip_signature(&good),
            "auth.invalid",
        ),
        (
            "payload changed",
            swap_payload(&good, &admin),
            "auth.invalid",
        ),
        ("alg none, unsigned", unsigned.clone(), "auth.invalid"),
        (
            "alg none, old signature",
            swap_header(&good, &none_header),
            "auth.invalid",
        ),
        (
            "alg HS512, old signature",
            swap_header(&good, &json!({"alg": "HS512", "typ": "JWT"})),
            "auth.invalid",
        ),
        (
            "HS384 with the right secret",
            hs(HS384, secret, &admin),
            "auth.invalid",
        ),
        (
            "HS512 with the right secret",
            hs(HS512, secret, &admin),
            "auth.invalid",
        ),
        (
            "another secret",
            hs(HS256, b"guess", &admin),
            "auth.invalid",
        ),
        (
            "signature removed",
            good.rsplit_once('.').unwrap().0.to_owned() + ".",
            "auth.invalid",
        ),
        (
            "two parts",
            good.rsplit_once('.').unwrap().0.to_owned(),
            "auth.invalid",
        ),
        ("garbage", "a.b.c".into(), "auth.invalid"),
        (
            "no exp",
            hs(HS256, secret, &json!({"sub": "alice"})),
            "auth.invalid",
        ),
        (
            "sub a number",
            hs(HS256, secret, &json!({"sub": 7, "exp": now() + 60})),
            "auth.invalid",
        ),
        (
            "expired",
            wsgate::mint_with_exp(
                SECRET,
                "alice",
                now() - 3600,
                &wsgate::MintOptions::default(),
            ),
            "auth.expired",
        ),
        (
            "not yet valid",
            hs(
                HS256,
                secret,
                &json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}),
            ),
            "auth.expired",
        ),
    ];
    refused_everywhere(&server, &cases).await;
    assert!(server.handle.stats().auth_failures >= 4 * cases.len() as u64);
    // The untampered token still works.
    let mut c = server.client("alice", Fmt::Json).await;
    c.ok(json!({"cmd": "ping"}), 1).await;
    assert_eq!(bystander.finish().await, 0);
    drop(c);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn tampered_rs256_tokens_are_refused_with_documented_codes() {
    let _shared = ALONE.read().await;
    let server = start_api_server(|c| {
        c.jwt_secret = None;
        c.jwt_public_key_file = Some(format!("{FIXTURES}/rs256-public.pem").into());
        c.jwt_algorithm = Some(wsgate::config::JwtAlgorithm::Rs256);
    });
    let bystander = Bystander::start_with(&server, Feed::Room, rs256_token).await;
    let good = rs256_token("rita");
    let admin = json!({"sub": "admin", "exp": now() + 3600});
    let public = std::fs::read(format!("{FIXTURES}/rs256-public.pem")).unwrap();
    use jsonwebtoken::Algorithm::HS256;
    let cases = [
        (
            "signature byte flipped",
            flip_signature(&good),
            "auth.invalid",
        ),
        (
            "payload changed",
            swap_payload(&good, &admin),
            "auth.invalid",
        ),
        (
            "alg none, old signature",
            swap_header(&good, &json!({"alg": "none", "typ": "JWT"})),
            "auth.invalid",
        ),
        (
            "HS256 keyed with the public key",
            hs(HS256, &public, &admin),
            "auth.invalid",
        ),
        (
            "HS256 keyed with the public key, old header",
            swap_header(
                &hs(HS256, &public, &admin),
                &json!({"alg": "RS256", "typ": "JWT"}),
            ),
            "auth.invalid",
        ),
        (
            "expired",
            rs256(&json!({"sub": "rita", "exp": now() - 3600})),
            "auth.expired",
        ),
    ];
    refused_everywhere(&server, &cases).await;
    let mut c = server.client_with_token(&good, Fmt::MsgPack).await;
    c.ok(json!({"cmd": "ping"}), 1).await;
    assert_eq!(bystander.finish().await, 0);
    drop(c);
    server.handle.shutdown().await;
}
