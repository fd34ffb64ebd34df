//! Bad input and bounds: every case gets a clear error or a documented close code, and a
//! bystander keeps being served.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A bystander in room "watch" and a publisher that proves it still receives.
async fn bystander_pair(server: &TestServer) -> (Client, Client) {
    let mut watcher = server.client("watcher", Fmt::MsgPack).await;
    let mut feeder = server.client("feeder", Fmt::Json).await;
    watcher.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    feeder.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
    (watcher, feeder)
}

async fn bystander_still_served(watcher: &mut Client, feeder: &mut Client, n: u64) {
    feeder
        .ok(
            json!({"cmd": "publish", "room": "watch", "event": "tick", "data": n}),
            100 + n,
        )
        .await;
    assert_eq!(watcher.recv().await["data"], n);
}

#[tokio::test]
async fn oversized_messages_get_an_error_and_close_1009_and_others_go_on() {
    let server = start_server(|c| {
        c.max_message_bytes = 1024;
        c.max_outbound_bytes = 64 * 1024;
    });
    let (mut watcher, mut feeder) = bystander_pair(&server).await;
    for fmt in BOTH {
        let mut c = server.client("big", fmt).await;
        let big = json!({"cmd": "ping", "id": 1, "pad": "x".repeat(4000)});
        c.send(big).await;
        let e = c.recv().await;
        assert_eq!(
            (e["code"].as_str(), e.get("id")),
            (Some("frame.too_large"), None)
        );
        c.expect_close(1009).await;
        // Fragments that add up past the limit are refused the same way.
        let frag = |fin: bool, op: u8| {
            use tokio_tungstenite::tungstenite::protocol::frame::{coding::*, Frame, FrameHeader};
            let header = FrameHeader {
                is_final: fin,
                opcode: if op == 0 {
                    OpCode::Data(Data::Continue)
                } else {
                    OpCode::Data(Data::Text)
                },
                ..FrameHeader::default()
            };
            WsMessage::Frame(Frame::from_payload(header, vec![b' '; 600].into()))
        };
        if fmt == Fmt::Json {
            let mut c = server.client("big", fmt).await;
            c.send_raw(frag(false, 1)).await;
            c.send_raw(frag(true, 0)).await;
            let e = c.recv().await;
            assert_eq!(e["code"], "frame.too_large");
            c.expect_close(1009).await;
        }
        // A message at the limit is fine.
        let mut c = server.client("big", fmt).await;
        c.ok(json!({"cmd": "ping"}), 2).await;
        c.close().await;
    }
    bystander_still_served(&mut watcher, &mut feeder, 1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn malformed_json_and_msgpack_get_bad_request_and_the_connection_lives() {
    let server = start_server(|_| {});
    let (mut watcher, mut feeder) = bystander_pair(&server).await;
    let mut j = server.client("j", Fmt::Json).await;
    for bad in [
        "{",
        "[1,2]",
        "{\"cmd\":",
        "nul",
        "{\"cmd\":\"ping\"} trailing",
    ] {
        j.send_raw(WsMessage::text(bad)).await;
        let e = j.recv().await;
        assert_eq!(e["code"], "bad_request", "for {bad:?}: {e}");
    }
    // A binary frame on a JSON connection.
    j.send_raw(WsMessage::binary(vec![0x80])).await;
    assert_eq!(j.recv().await["code"], "bad_request");
    j.ok(json!({"cmd": "ping"}), 1).await;

    let mut m = server.client("m", Fmt::MsgPack).await;
    let lying = vec![
        0x81, 0xa4, b'd', b'a', b't', b'a', 0xdd, 0x7f, 0xff, 0xff, 0xff,
    ];
    for bad in [
        vec![0xc1],
        vec![0x81],
        vec![0x92, 0x01],
        lying,
        vec![0xde, 0xff, 0xff],
    ] {
        m.send_raw(WsMessage::binary(bad.clone())).await;
        let e = m.recv().await;
        assert_eq!(e["code"], "bad_request", "for {bad:x?}: {e}");
    }
    // A text frame on a MessagePack connection.
    m.send_raw(WsMessage::text("{}")).await;
    assert_eq!(m.recv().await["code"], "bad_request");
    m.ok(json!({"cmd": "ping"}), 1).await;
    bystander_still_served(&mut watcher, &mut feeder, 1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007_and_others_are_served() {
    let server = start_server(|_| {});
    let (mut watcher, mut feeder) = bystander_pair(&server).await;
    let mut c = server.client("u", Fmt::Json).await;
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::*, Frame, FrameHeader};
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    c.send_raw(WsMessage::Frame(Frame::from_payload(
        header,
        vec![0xff, 0xfe].into(),
    )))
    .await;
    c.expect_close(1007).await;
    bystander_still_served(&mut watcher, &mut feeder, 2).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_refuses_commands_past_the_bucket() {
    let server = start_server(|c| {
        c.rate_per_sec = 1;
        c.rate_burst = 5;
    });
    let (mut watcher, mut feeder) = bystander_pair(&server).await;
    let mut c = server.client("fast", Fmt::Json).await;
    for id in 0..20u64 {
        c.send(json!({"cmd": "ping", "id": id})).await;
    }
    let mut replies = 0;
    let mut limited = 0;
    for id in 0..20u64 {
        let a = c.recv().await;
        assert_eq!(a["id"], id, "one answer per command, in order");
        match a["type"].as_str() {
            Some("reply") => replies += 1,
            _ => {
                assert_eq!(a["code"], "rate.limited");
                limited += 1;
            }
        }
    }
    // The burst of 5 passes; at 1/s at most a couple more can refill while the test runs.
    assert!((5..=8).contains(&replies), "replies: {replies}");
    assert_eq!(replies + limited, 20);
    assert!(server.handle.stats().rate_limited >= 12);
    bystander_still_served(&mut watcher, &mut feeder, 3).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_while_a_bystander_keeps_receiving() {
    let server = start_server(|c| {
        c.max_message_bytes = 16 * 1024;
        c.max_outbound_bytes = 64 * 1024;
        c.rate_per_sec = 100_000;
        c.rate_burst = 100_000;
    });
    let mut slow = server.client("slow", Fmt::Json).await;
    let mut fast = server.client("fast", Fmt::MsgPack).await;
    let mut publisher = server.client("pub", Fmt::Json).await;
    for c in [&mut slow, &mut fast, &mut publisher] {
        c.ok(json!({"cmd": "join", "room": "flood"}), 1).await;
    }
    // ~40 MB through the room: far more than the socket buffers plus the 64 KiB bound hold.
    // `slow` never reads; `fast` reads each event before the next is published (closed loop).
    let payload = "y".repeat(8 * 1024);
    for i in 0..5_000u64 {
        publisher.send(json!({"cmd": "publish", "room": "flood", "event": "bulk", "data": {"i": i, "p": payload}})).await;
        let ev = fast.recv().await;
        assert_eq!(ev["data"]["i"], i, "in order, nothing lost");
    }
    assert!(server.handle.stats().slow_consumers >= 1);
    // When it finally reads, the slow client finds the 4002 close after what got through.
    slow.expect_close(4002).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_heartbeat_timeout() {
    let server = start_server(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(200);
    });
    // This client answers pings only when it reads; it does not read for a while.
    let mut silent = server.client("quiet", Fmt::Json).await;
    // A client that keeps reading (tungstenite answers pings as it reads) stays.
    let mut lively = server.client("lively", Fmt::Json).await;
    let keep_alive = tokio::spawn(async move {
        for id in 0..10u64 {
            lively.ok(json!({"cmd": "ping"}), id).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lively
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    silent.expect_close(4000).await;
    let mut lively = keep_alive.await.unwrap();
    lively.ok(json!({"cmd": "ping"}), 99).await;
    assert!(server.handle.stats().heartbeat_timeouts >= 1);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_everyone_with_1001() {
    let server = start_server(|_| {});
    let mut clients = Vec::new();
    for (i, fmt) in [Fmt::Json, Fmt::MsgPack, Fmt::Json, Fmt::MsgPack]
        .into_iter()
        .enumerate()
    {
        clients.push(server.client(&format!("u{i}"), fmt).await);
    }
    let addr = server.addr;
    let shutdown = tokio::spawn(server.handle.shutdown());
    for c in &mut clients {
        c.expect_close(1001).await;
    }
    drop(clients);
    shutdown.await.unwrap();
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
