//! A WebSocket client over a bare socket: it writes any bytes, including what no library
//! sends, and reads the server's frames without checking them for the client.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{token, Fmt, TestServer, WAIT};

/// The upgrade headers of RFC 6455's example handshake, each line ending in CRLF.
pub const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// An upgraded `/ws` connection on a bare socket; write frames with [`super::ws_frame`].
pub struct RawWs {
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades with `query` (which carries the token, if any) and returns after the 101.
    pub async fn connect(server: &TestServer, query: &str) -> RawWs {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let req = format!("GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE_HEADERS}\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await, "closed during the handshake");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw.buf.drain(..end);
        raw
    }

    /// An authenticated connection, its welcome read.
    pub async fn authed(server: &TestServer, user: &str, fmt: Fmt) -> RawWs {
        let query = format!("token={}&format={}", token(user), fmt.query());
        let mut raw = RawWs::connect(server, &query).await;
        assert_eq!(raw.recv(fmt).await.unwrap()["type"], "welcome");
        raw
    }

    /// Writes `bytes` as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at end of stream (or reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await;
        match read.expect("server answered in time") {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next server frame (opcode, payload); `None` at end of stream.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let [b0, b1, ..] = self.buf[..] {
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(n) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (usize::from(n), 2),
                };
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                if at > 0 && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((b0 & 0x0f, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next message, decoded; `Err` with the close code when the server closed instead.
    pub async fn recv(&mut self, fmt: Fmt) -> Result<Value, Option<u16>> {
        loop {
            match self.next_frame().await {
                None => return Err(None),
                Some((0x8, p)) => return Err(p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
                Some((0x1, p)) if fmt == Fmt::Json => {
                    return Ok(serde_json::from_slice(&p).unwrap())
                }
                Some((0x2, p)) if fmt == Fmt::MsgPack => {
                    return Ok(rmp_serde::from_slice(&p).unwrap())
                }
                Some((0x9 | 0xa, _)) => continue,
                Some((op, _)) => panic!("unexpected opcode {op:#x} for {fmt:?}"),
            }
        }
    }

    /// Skips messages until the server's close frame, and checks its code.
    pub async fn expect_close(&mut self, fmt: Fmt, code: u16) {
        loop {
            if let Err(got) = self.recv(fmt).await {
                assert_eq!(got, Some(code), "close code");
                return;
            }
        }
    }
}

/// Reads until the server closes (end of stream or reset); returns what it sent.
pub async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(WAIT, s.read(&mut chunk)).await;
        match read.expect("the server closes in time") {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}
