//! No secret reaches the log: the real server runs with a subscriber capturing every level
//! (TRACE, `log` records included) while clients offer valid, tampered, expired, unsigned and
//! wrongly signed tokens (query string, `Authorization` header, `auth` command), REST callers
//! offer wrong and right API keys, a user is kicked, and broken requests make the server log
//! its debug lines; then the capture must hold none of the tokens, keys or JWT secrets.
//!
//! One test: the subscriber is process-global.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgate::{Config, MintOptions};

const JWT_SECRET: &str = "sekrit-jwt-7f3a9c41e2";
const GOOD_KEY: &str = "sekrit-apikey-5d1e8b77";
const WRONG_KEY: &str = "sekrit-wrongkey-0c2f6a";

/// Everything the subscriber wrote, shared with the writer it hands to `tracing`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs the global subscriber once: every level, every target except the test's own
/// client libraries (tungstenite, reqwest), which the server does not use and which trace the
/// frames this test sends.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "trace,tungstenite=off,tokio_tungstenite=off,reqwest=off",
                ))
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("the only subscriber of this test binary");
            capture
        })
        .clone()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(secret: &str, user: &str) -> String {
    wsgate::mint(
        secret,
        user,
        Duration::from_secs(3600),
        &MintOptions::default(),
    )
}

/// The same token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

/// A raw HTTP/1.1 exchange that keeps the socket open for more bytes after the answer head.
async fn raw_upgrade(server: &TestServer, query: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .expect("answer in time")
            .unwrap();
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Sends a raw request the server may refuse before reading all of it; returns the status
/// (0 when the connection ended without one).
async fn refused_raw(server: &TestServer, request: &str) -> u16 {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let _ = s.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut s).await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Reads until the server closes the socket (or WAIT passes).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    buf
}

fn header_request(path: &str, header: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n")
}

#[test]
fn printing_the_config_shows_no_secret() {
    let mut c = wsgate::Config::for_tests();
    c.jwt_secret = Some(JWT_SECRET.into());
    c.api_keys = Some(format!("{GOOD_KEY},sekrit-apikey-rotated-91b0").into());
    let printed = format!("{c:?} {c:#?}");
    for secret in [JWT_SECRET, GOOD_KEY, "sekrit-apikey-rotated-91b0"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("jwt_secret: Some(Secret(<redacted>))"),
        "{printed}"
    );
    // The values themselves are intact.
    assert_eq!(c.jwt_secret.as_deref(), Some(JWT_SECRET));
    assert_eq!(c.api_key_list().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_api_key_or_jwt_secret_reaches_the_log() {
    let log = capture();
    let server = start_server(|c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.api_keys = Some(format!("{GOOD_KEY},sekrit-apikey-rotated-91b0").into());
    });
    let valid_query = mint(JWT_SECRET, "alice");
    let valid_header = mint(JWT_SECRET, "bob");
    let valid_auth_cmd = mint(JWT_SECRET, "carol");
    let second_auth = mint(JWT_SECRET, "carol2");
    let tampered_token = tampered(&mint(JWT_SECRET, "mallory"));
    let expired = wsgate::mint_with_exp(JWT_SECRET, "eve", now() - 3600, &MintOptions::default());
    let wrong_secret = mint("sekrit-not-the-servers-3e8d", "trudy");
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(format!(r#"{{"sub":"oscar","exp":{}}}"#, now() + 3600).as_bytes())
    );
    let bad_auth_cmd = tampered(&mint(JWT_SECRET, "peggy"));

    // Valid tokens: in the query string (JSON) and in the Authorization header (MessagePack).
    let url = server.url(&format!("token={valid_query}&format=json"));
    let mut alice = Client::connect(&url, Fmt::Json).await.expect("handshake");
    assert_eq!(alice.recv().await["type"], "welcome");
    let mut req = server.url("format=msgpack").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {valid_header}").parse().unwrap(),
    );
    let mut bob = Client::connect_with(req, Fmt::MsgPack)
        .await
        .expect("handshake");
    assert_eq!(bob.recv().await["type"], "welcome");
    alice.ok(json!({"cmd": "join", "room": "lobby"}), 1).await;
    bob.ok(json!({"cmd": "join", "room": "lobby"}), 2).await;
    alice
        .ok(
            json!({"cmd": "publish", "room": "lobby", "event": "e", "data": {"t": valid_query}}),
            3,
        )
        .await;
    assert_eq!(bob.recv().await["event"], "e");

    // Refused tokens, in the query string and in the header.
    for token in [&tampered_token, &expired, &wrong_secret, &unsigned] {
        let url = server.url(&format!("token={token}"));
        let refused = Client::connect(&url, Fmt::Json).await.err().unwrap();
        assert_eq!(refused.status, 401, "{token}: {:?}", refused.body);
        let mut req = server.url("").into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let refused = Client::connect_with(req, Fmt::Json).await.err().unwrap();
        assert_eq!(refused.status, 401, "{token}: {:?}", refused.body);
    }
    let mut req = server.url("").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Basic {GOOD_KEY}").parse().unwrap(),
    );
    assert_eq!(
        Client::connect_with(req, Fmt::Json)
            .await
            .err()
            .unwrap()
            .status,
        401
    );

    // The `auth` command: a refused token (error, then close 1008), a valid one, a second one.
    let mut peggy = Client::connect(&server.url(""), Fmt::Json).await.unwrap();
    let answer = peggy
        .call(json!({"cmd": "auth", "token": bad_auth_cmd}), 4)
        .await;
    assert_eq!(answer["code"], "auth.invalid");
    peggy.expect_close(1008).await;
    let mut carol = Client::connect(&server.url("format=msgpack"), Fmt::MsgPack)
        .await
        .unwrap();
    carol
        .send(json!({"cmd": "auth", "id": 5, "token": valid_auth_cmd}))
        .await;
    assert_eq!(carol.recv().await["type"], "welcome");
    assert_eq!(carol.recv().await, json!({"type": "reply", "id": 5}));
    let answer = carol
        .call(json!({"cmd": "auth", "token": second_auth}), 6)
        .await;
    assert_eq!(answer["code"], "auth.already");

    // REST: no key, wrong keys (both headers, and in the query string), the right key.
    let push = r#"{"userId":"alice","event":"n","data":{"x":1}}"#;
    let post = |key_header: &str| {
        format!(
            "POST /api/v1/push/users HTTP/1.1\r\nHost: x\r\n{key_header}Content-Type: \
             application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{push}",
            push.len()
        )
    };
    assert_eq!(raw_http(server.addr, &post("")).await.0, 401);
    let wrong = format!("Authorization: Bearer {WRONG_KEY}\r\n");
    assert_eq!(raw_http(server.addr, &post(&wrong)).await.0, 403);
    let wrong = format!("X-API-Key: {WRONG_KEY}\r\n");
    assert_eq!(raw_http(server.addr, &post(&wrong)).await.0, 403);
    let path = format!("/api/v1/stats?api_key={WRONG_KEY}&token={valid_query}");
    assert_eq!(
        raw_http(server.addr, &header_request(&path, "")).await.0,
        401
    );
    let good = format!("X-API-Key: {GOOD_KEY}\r\n");
    let (status, body) = raw_http(server.addr, &post(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice.recv().await["event"], "n");
    let auth = format!("Authorization: Bearer {GOOD_KEY}");
    let (status, _) = raw_http(server.addr, &header_request("/api/v1/users", &auth)).await;
    assert_eq!(status, 200);
    let (status, _) = raw_http(server.addr, &header_request("/metrics", &auth)).await;
    assert_eq!(status, 200);

    // A kick: alice's connection gets 4003.
    let kick = format!(
        "DELETE /api/v1/users/alice/connections?reason=bye HTTP/1.1\r\nHost: x\r\n\
         X-API-Key: {GOOD_KEY}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_http(server.addr, &kick).await;
    assert_eq!(status, 200, "{body}");
    alice.expect_close(4003).await;

    // Requests the server logs (at debug): a request head hyper cannot parse, one over the
    // header bound, and a framing violation on an upgraded connection, each carrying a token.
    let broken =
        format!("GET /ws?token={valid_query} HTTP/1.1\r\nHost: x\r\nBroken {valid_header}\r\n\r\n");
    assert_eq!(refused_raw(&server, &broken).await, 400);
    let huge = format!(
        "X-Pad: {}\r\nAuthorization: Bearer {valid_header}",
        "a".repeat(20_000)
    );
    assert_eq!(
        refused_raw(&server, &header_request("/ws", &huge)).await,
        431
    );
    let (mut s, head) = raw_upgrade(&server, &format!("token={valid_header}")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // An unmasked text frame (clients must mask): a protocol violation, closed with 1002.
    let payload = format!(r#"{{"cmd":"auth","token":"{valid_header}"}}"#);
    let mut frame = vec![0x81, 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload.as_bytes());
    s.write_all(&frame).await.unwrap();
    let rest = read_to_close(&mut s).await;
    assert!(
        rest.windows(2).any(|w| w == [0x03, 0xEA]),
        "a close frame with 1002"
    );

    bob.close().await;
    carol.close().await;
    server.handle.shutdown().await;

    // Development mode: the library hands the generated secret and key to the binary, which
    // prints them on purpose (src/main.rs); the library itself must not log them.
    let dev = wsgate::start(Config::for_tests()).expect("dev server starts");
    let dev_secret = dev.dev_secret().expect("development secret").to_owned();
    let dev_key = dev.dev_api_key().expect("development API key").to_owned();
    let dev_token = mint(&dev_secret, "dev-user");
    let dev_url = format!("ws://{}/ws?token={dev_token}", dev.local_addr());
    let mut c = Client::connect(&dev_url, Fmt::Json)
        .await
        .expect("handshake");
    assert_eq!(c.recv().await["type"], "welcome");
    c.close().await;
    dev.shutdown().await;

    // A configuration error names the rule, not the key.
    let mut short = Config::for_tests();
    short.api_keys = Some("shortk".into());
    let err = wsgate::start(short)
        .err()
        .expect("a 6-character key is refused");
    assert!(!err.to_string().contains("shortk"), "{err}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = log.text();

    // The capture works, down to debug: these lines come from the server under test.
    for expected in [
        "wsgate listening",
        "HTTP connection ended with an error",
        "closing on a framing error",
    ] {
        assert!(
            text.contains(expected),
            "the capture lacks {expected:?}:\n{text}"
        );
    }

    let mut secrets: Vec<(&str, String)> = vec![
        ("JWT secret", JWT_SECRET.into()),
        ("API key", GOOD_KEY.into()),
        ("rotated API key", "sekrit-apikey-rotated-91b0".into()),
        ("wrong API key", WRONG_KEY.into()),
        ("development JWT secret", dev_secret),
        ("development API key", dev_key),
    ];
    for (what, token) in [
        ("valid token (query)", &valid_query),
        ("valid token (header)", &valid_header),
        ("valid token (auth command)", &valid_auth_cmd),
        ("second auth token", &second_auth),
        ("tampered token", &tampered_token),
        ("expired token", &expired),
        ("token signed with another secret", &wrong_secret),
        ("unsigned token", &unsigned),
        ("refused auth-command token", &bad_auth_cmd),
        ("development token", &dev_token),
    ] {
        // The claims and the signature, each on its own: a log line holding either part of a
        // token leaks it (the header part is the same for every token and is no secret).
        let mut parts = token.split('.').skip(1).filter(|p| !p.is_empty());
        secrets.push((what, token.clone()));
        secrets.extend(parts.by_ref().map(|p| (what, p.to_owned())));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(what, s)| format!("{what} ({s})"))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log: {leaks:?}\n--- log ---\n{text}"
    );
    // The check itself can fail: a token in a log line is found.
    let planted = format!("{text}\nDEBUG handshake token={valid_query}\n");
    assert!(secrets.iter().any(|(_, s)| planted.contains(s.as_str())));
}
