//! Test harness: the real server on port 0, real WebSocket clients (tokio-tungstenite), and
//! commands encoded independently of the server's codec (serde_json / rmp-serde over a
//! `serde_json::Value`), so the wire itself is what the tests check.
//!
//! Submodules: [`wire`] (frames and MessagePack written by hand, re-exported here), [`raw`] (a
//! WebSocket client on a bare socket), [`bystander`] (a client that must keep receiving during an
//! attack), [`watch`] (heap and descriptor counts of the process), [`tokens`] (forged tokens),
//! [`node`] (the real JavaScript clients of `tests/js/`), [`eio`] (an Engine.IO long-polling client),
//! [`redis`] (real Redis servers and clusters), [`proxy`] (a TCP proxy that stalls), [`binary`]
//! (the real binary in a child process), [`cluster`] (what the cluster tests share).
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    unreachable_pub,
    missing_docs
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
pub use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsgate::{Config, MintOptions, ServerHandle};

pub mod binary;
pub mod bystander;
pub mod cluster;
pub mod eio;
pub mod node;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod tokens;
pub mod watch;
pub mod wire;

pub use wire::*;

pub const SECRET: &str = "test-secret";
/// Upper bound on any single wait in a test; a test that hits it fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);
/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// Polls `cond` every 10 ms until it holds; panics with `what` after [`WAIT`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `offset` of each message of a history answer's `messages` array.
pub fn offsets(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect()
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub addr: std::net::SocketAddr,
    remote: Remote,
}

/// A server reached by its address only (one started in this process, through
/// [`TestServer`]'s `Deref`, or the real binary in a child process).
pub struct Remote {
    pub addr: std::net::SocketAddr,
}

impl std::ops::Deref for TestServer {
    type Target = Remote;
    fn deref(&self) -> &Remote {
        &self.remote
    }
}

/// Starts the real server on 127.0.0.1:0 with the test secret; `tweak` adjusts the config.
pub fn start_server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::for_tests();
    config.jwt_secret = Some(SECRET.into());
    config.shards = 2;
    tweak(&mut config);
    start_with(config)
}

/// The real server with `config` as it is, on the port it names (0 in tests).
pub fn start_with(config: Config) -> TestServer {
    let handle = wsgate::start(config).expect("server starts");
    let addr = handle.local_addr();
    TestServer {
        handle,
        addr,
        remote: Remote { addr },
    }
}

impl Remote {
    pub fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/ws", self.addr)
        } else {
            format!("ws://{}/ws?{query}", self.addr)
        }
    }

    /// An authenticated client (token in the query), with its welcome already read.
    pub async fn client(&self, user: &str, format: Fmt) -> Client {
        self.client_with_token(&token(user), format).await
    }

    /// An authenticated client with the given token (in the query), its welcome read.
    pub async fn client_with_token(&self, token: &str, format: Fmt) -> Client {
        let url = self.url(&format!("token={token}&format={}", format.query()));
        let mut c = Client::connect(&url, format).await.expect("handshake");
        let w = c.recv().await;
        assert_eq!(w["type"], "welcome", "expected welcome, got {w}");
        c.welcome = w;
        c
    }

    /// A JSON client whose socket receive buffer is small (4 KiB), so the server's queue to it
    /// fills soon when it does not read; its welcome read.
    pub async fn small_window_client(&self, user: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let url = self.url(&format!("token={}", token(user)));
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
        let mut c = Client {
            ws,
            format: Fmt::Json,
            welcome: Value::Null,
        };
        c.welcome = c.recv().await;
        c
    }

    /// A client whose welcome says it is served by shard `shard` (connections spread over
    /// shards by the kernel, so this opens connections until one lands there).
    pub async fn client_on_shard(&self, user: &str, format: Fmt, shard: u64) -> Client {
        for _ in 0..200 {
            let c = self.client(user, format).await;
            if c.welcome["shard"] == shard {
                return c;
            }
            c.close().await;
        }
        panic!("no connection landed on shard {shard} in 200 tries");
    }

    /// An HTTP GET on the server, returning status and body.
    pub async fn get(&self, path_and_headers: &str) -> (u16, String) {
        raw_http(
            self.addr,
            &format!("GET {path_and_headers} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await
    }
}

/// Sends a raw HTTP/1.1 request and reads the whole response (status, body).
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The error code of an error message (`""` if there is none).
pub fn code(m: &Value) -> &str {
    m["code"].as_str().unwrap_or_default()
}

pub fn token(user: &str) -> String {
    wsgate::mint(
        SECRET,
        user,
        Duration::from_secs(3600),
        &MintOptions::default(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    Json,
    MsgPack,
}

impl Fmt {
    pub fn query(self) -> &'static str {
        match self {
            Fmt::Json => "json",
            Fmt::MsgPack => "msgpack",
        }
    }
}

pub const BOTH: [Fmt; 2] = [Fmt::Json, Fmt::MsgPack];

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub format: Fmt,
    pub welcome: Value,
}

/// What came back instead of an upgrade.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Client {
    pub async fn connect(url: &str, format: Fmt) -> Result<Client, Refused> {
        Self::connect_with(url.into_client_request().unwrap(), format).await
    }

    pub async fn connect_with(
        req: tungstenite::handshake::client::Request,
        format: Fmt,
    ) -> Result<Client, Refused> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(64 << 20);
        config.max_frame_size = Some(64 << 20);
        let attempt = tokio_tungstenite::connect_async_with_config(req, Some(config), false);
        match tokio::time::timeout(WAIT, attempt)
            .await
            .expect("handshake in time")
        {
            Ok((ws, _)) => Ok(Client {
                ws,
                format,
                welcome: Value::Null,
            }),
            Err(tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                let body = res
                    .body()
                    .as_ref()
                    .map(|b| serde_json::from_slice(b).unwrap())
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Err(e) => panic!("unexpected handshake error: {e}"),
        }
    }

    /// Sends a command, encoded for this client's format.
    pub async fn send(&mut self, cmd: Value) {
        let msg = match self.format {
            Fmt::Json => Message::text(cmd.to_string()),
            Fmt::MsgPack => Message::binary(rmp_serde::to_vec(&cmd).unwrap()),
        };
        self.ws.send(msg).await.unwrap();
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next server message (pings and pongs skipped), decoded to a JSON value. Panics on
    /// close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.next_message().await {
            Ok(v) => v,
            Err(close) => panic!("connection closed while waiting for a message: {close:?}"),
        }
    }

    /// The next server message, or the close code if the server closed instead.
    pub async fn next_message(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("message in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    assert_eq!(self.format, Fmt::Json, "JSON arrives in text frames");
                    return Ok(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Binary(b))) => {
                    assert_eq!(
                        self.format,
                        Fmt::MsgPack,
                        "MessagePack arrives in binary frames"
                    );
                    return Ok(rmp_serde::from_slice(&b).unwrap());
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// The next server message's payload as it came (pings and pongs skipped): for what a
    /// JSON tree cannot hold (MessagePack `bin`). Panics on close or timeout.
    pub async fn recv_bytes(&mut self) -> Vec<u8> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("message in time");
            match next {
                Some(Ok(Message::Text(t))) => return t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => return b.to_vec(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("no message: {other:?}"),
            }
        }
    }

    /// Sends a command with an id and returns the one answer.
    pub async fn call(&mut self, mut cmd: Value, id: u64) -> Value {
        cmd["id"] = json!(id);
        self.send(cmd).await;
        let answer = self.recv().await;
        assert_eq!(answer["id"], json!(id), "answer carries the id: {answer}");
        answer
    }

    /// Sends a command with an id and asserts it succeeded.
    pub async fn ok(&mut self, cmd: Value, id: u64) {
        let answer = self.call(cmd, id).await;
        assert_eq!(answer["type"], "reply", "expected a reply, got {answer}");
    }

    /// Expects the server to close the connection with `code` (skipping other messages).
    pub async fn expect_close(&mut self, code: u16) {
        loop {
            match self.next_message().await {
                Ok(_) => continue,
                Err(got) => {
                    assert_eq!(got, Some(code), "close code");
                    return;
                }
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

pub const API_KEY: &str = "test-api-key";

/// A REST client for the test server (reqwest), sending the API key.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &Remote) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Api::answer(req).await
    }

    /// POSTs `body` as it is, as `application/json`: for bodies `serde_json` would not write
    /// (malformed, too deep, numbers out of range).
    pub async fn post_raw(&self, path: &str, body: impl Into<String>) -> (u16, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body.into());
        Api::answer(req).await
    }

    async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("answer in time")
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// A POST with an `Idempotency-Key`: status and body as text, to compare byte for byte.
    pub async fn post_keyed(&self, path: &str, key: &str, body: &Value) -> (u16, String) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The offsets of `room`'s kept messages, over REST.
    pub async fn history(&self, room: &str) -> Vec<u64> {
        let (s, page) = self.get(&format!("/api/v1/rooms/{room}/messages")).await;
        assert_eq!(s, 200, "{page}");
        offsets(&page["messages"])
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }

    /// Polls the REST member list until `user` holds `n` member connections of `room` (0: not
    /// listed; in cluster mode, counted across the nodes): the server has then processed, and
    /// in cluster mode synced into Redis, every change before.
    pub async fn wait_connections(&self, room: &str, user: &str, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, page) = self
                .get(&format!("/api/v1/rooms/{room}/members?limit=1000"))
                .await;
            let got = if status == 404 {
                0
            } else {
                page["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["userId"] == user)
                    .map_or(0, |m| m["connections"].as_u64().unwrap())
            };
            if got == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} in {room}: {got} member connections, not {n} ({page})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A server with the test API key.
pub fn start_api_server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    start_server(|c| {
        c.api_keys = Some(API_KEY.into());
        tweak(c);
    })
}
