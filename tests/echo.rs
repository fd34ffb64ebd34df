//! `GET /echo` (ECHO=true), the peer the Autobahn test suite drives: off by default, no auth,
//! every data message back unchanged, and the reader's close codes on the wire. The frames are
//! written by hand, so the tests send what a compliant client library would refuse to.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket client on a bare TCP socket: masked frames out, frames in, nothing checked.
struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl RawClient {
    /// Opens `/echo`, offering permessage-deflate, and returns the client and the 101's head.
    async fn connect(server: &TestServer) -> (RawClient, String) {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let request = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut client = RawClient {
            tcp,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(client.buf[..end].to_vec()).unwrap();
                client.buf.drain(..end + 4);
                break head;
            }
            assert!(
                client.fill().await > 0,
                "connection closed during the handshake"
            );
        };
        (client, head)
    }

    /// Reads more bytes; 0 at end of stream.
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("bytes in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Sends one masked frame: `b0` is FIN, RSV and opcode.
    async fn send(&mut self, b0: u8, payload: &[u8]) {
        self.tcp.write_all(&ws_frame(b0, payload)).await.unwrap();
    }

    /// The next frame, or `None` if the server closed the TCP connection.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// Expects a close frame with `code`, then, without sending anything, the end of the TCP
    /// connection within a second (Autobahn's patience): the server closes TCP first.
    async fn expect_close(&mut self, code: u16) {
        let frame = self.recv().await.expect("a close frame");
        assert_eq!(frame.opcode, 0x8, "expected a close frame, got {frame:?}");
        assert_eq!(frame.payload[..2], code.to_be_bytes(), "close code");
        let end = tokio::time::timeout(Duration::from_secs(1), self.recv()).await;
        assert_eq!(
            end,
            Ok(None),
            "the server closes TCP after the close handshake"
        );
    }
}

/// Parses one unmasked server frame from the start of `buf`.
fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload,
    };
    Some((frame, at + len))
}

fn echo_server() -> TestServer {
    start_server(|c| c.echo = true)
}

#[tokio::test]
async fn echo_is_not_found_when_off() {
    let server = start_server(|_| {});
    let (status, body) = server.get("/echo").await;
    assert_eq!(status, 404);
    assert!(body.contains("not_found"), "{body}");
    let upgrade = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Connection: close\r\n\r\n";
    assert_eq!(raw_http(server.addr, upgrade).await.0, 404);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn text_binary_and_fragmented_messages_come_back_unchanged() {
    let server = echo_server();
    let (mut c, head) = RawClient::connect(&server).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("sec-websocket-extensions"),
        "no compression: {head}"
    );
    assert!(
        !lower.contains("sec-websocket-protocol"),
        "no subprotocol: {head}"
    );

    c.send(0x81, "héllo".as_bytes()).await;
    let text = Frame {
        fin: true,
        opcode: 0x1,
        payload: "héllo".into(),
    };
    assert_eq!(c.recv().await, Some(text));

    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    c.send(0x82, &blob).await;
    let binary = Frame {
        fin: true,
        opcode: 0x2,
        payload: blob,
    };
    assert_eq!(c.recv().await, Some(binary));

    // "é" split across fragments, with a ping between them: the pong comes first, then the
    // message, whole, as one text frame.
    c.send(0x01, b"fr\xc3").await;
    c.send(0x89, b"between").await;
    c.send(0x00, b"\xa9g").await;
    c.send(0x80, b"ment").await;
    let pong = Frame {
        fin: true,
        opcode: 0xA,
        payload: b"between".to_vec(),
    };
    assert_eq!(c.recv().await, Some(pong));
    let joined = Frame {
        fin: true,
        opcode: 0x1,
        payload: "frégment".into(),
    };
    assert_eq!(c.recv().await, Some(joined));

    // The client's close is answered with its code, and the server closes TCP.
    c.send(0x88, &1000u16.to_be_bytes()).await;
    c.expect_close(1000).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_closes_1007() {
    let server = echo_server();
    let (mut c, _) = RawClient::connect(&server).await;
    c.send(0x81, b"ok \xff").await;
    c.expect_close(1007).await;
    // In a fragmented message, the fragment that makes the text invalid fails the connection
    // at once, without waiting for the last fragment.
    let (mut c, _) = RawClient::connect(&server).await;
    c.send(0x01, "valid".as_bytes()).await;
    c.send(0x00, b"\xed\xa0\x80").await; // a UTF-16 surrogate: never valid
    c.expect_close(1007).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn ping_of_126_bytes_closes_1002() {
    let server = echo_server();
    let (mut c, _) = RawClient::connect(&server).await;
    c.send(0x89, &[b'p'; 125]).await;
    assert_eq!(c.recv().await.map(|f| f.opcode), Some(0xA));
    c.send(0x89, &[b'p'; 126]).await;
    c.expect_close(1002).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn invalid_close_codes_close_1002() {
    let server = echo_server();
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let (mut c, _) = RawClient::connect(&server).await;
        c.send(0x88, &code.to_be_bytes()).await;
        c.expect_close(1002).await;
    }
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let (mut c, _) = RawClient::connect(&server).await;
        c.send(0x88, &code.to_be_bytes()).await;
        c.expect_close(code).await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn echo_has_no_auth_deadline_and_counts_toward_max_connections() {
    let server = start_server(|c| {
        c.echo = true;
        c.auth_timeout = Duration::from_millis(100);
        c.max_connections = 1;
    });
    let (mut c, _) = RawClient::connect(&server).await;
    let (_, refused) = RawClient::connect(&server).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send(0x81, b"still here").await;
    assert_eq!(c.recv().await.unwrap().payload, b"still here");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn echo_connections_are_pinged_and_closed_4000_without_a_pong() {
    let server = start_server(|c| {
        c.echo = true;
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(100);
    });
    let (mut c, _) = RawClient::connect(&server).await;
    assert_eq!(c.recv().await.unwrap().opcode, 0x9, "a ping");
    let close = c.recv().await.unwrap();
    assert_eq!(
        (close.opcode, &close.payload[..2]),
        (0x8, &4000u16.to_be_bytes()[..])
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_limit_closes_1009() {
    let server = start_server(|c| {
        c.echo = true;
        c.max_message_bytes = 1000;
        c.max_outbound_bytes = 4000;
    });
    let (mut c, _) = RawClient::connect(&server).await;
    c.send(0x82, &[0u8; 1000]).await;
    assert_eq!(c.recv().await.unwrap().payload.len(), 1000);
    c.send(0x82, &[0u8; 1001]).await;
    let close = c.recv().await.unwrap();
    assert_eq!(
        (close.opcode, &close.payload[..2]),
        (0x8, &1009u16.to_be_bytes()[..])
    );
    server.handle.shutdown().await;
}
