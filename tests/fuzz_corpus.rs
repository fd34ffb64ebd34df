//! The fuzz corpora as ordinary tests: every seed in `fuzz/corpus/<target>/` and every crash
//! found so far in `fuzz/regressions/<target>/` goes through the same function the fuzz target
//! calls (`wsgate_protocol::fuzzing`, `wsgate::testing::fuzz::targets`), with the same allocation
//! cap, so `cargo test` checks them without cargo-fuzz.
//!
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seeds` rewrites the seeds from
//! `protocol/vectors/` and the cases listed below (see `fuzz/README.md`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use wsgate::testing::fuzz::targets::{self, SECRET};
use wsgate_protocol::fuzzing::CappedAlloc;

// The fuzz targets run under this allocator: the replay must too, or the allocation cap of
// `decode_msgpack` and the others would go unchecked here.
#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The input files of one directory (none if it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` over its seeds and regressions; fails naming every input that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let seeds = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        seeds.len() >= 5,
        "fuzz/corpus/{target}/ holds {} seeds: regenerate them (see fuzz/README.md)",
        seeds.len()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} failed on {failed:#?}");
}

#[test]
fn decode_json() {
    replay("decode_json", wsgate_protocol::fuzzing::decode_json);
}

#[test]
fn decode_msgpack() {
    replay("decode_msgpack", wsgate_protocol::fuzzing::decode_msgpack);
}

#[test]
fn socketio_json() {
    replay("socketio_json", wsgate_protocol::fuzzing::socketio_json);
}

#[test]
fn socketio_msgpack() {
    replay(
        "socketio_msgpack",
        wsgate_protocol::fuzzing::socketio_msgpack,
    );
}

#[test]
fn engineio_payload() {
    replay(
        "engineio_payload",
        wsgate_protocol::fuzzing::engineio_payload,
    );
}

#[test]
fn store_records() {
    replay("store_records", targets::store_records);
}

#[test]
fn frame_reader() {
    replay("frame_reader", targets::frame_reader);
}

#[test]
fn connection() {
    replay("connection", targets::connection);
}

#[test]
fn rest_body() {
    replay("rest_body", targets::rest_body);
}

#[test]
fn token() {
    replay("token", targets::token);
}

// ---- Seed generation ------------------------------------------------------------------------

#[derive(Deserialize)]
struct Vector {
    name: String,
    json: String,
    msgpack_hex: String,
    logical: Value,
}

#[derive(Deserialize)]
struct Invalid {
    name: String,
    format: String,
    input: Option<String>,
    input_hex: Option<String>,
}

fn vectors<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("protocol/vectors")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A masked client frame (RFC 6455 §5.2), with the mask key of the RFC's examples.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 1, payload)
}

fn binary(payload: &[u8]) -> Vec<u8> {
    frame(true, 2, payload)
}

fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    frame(true, 8, &payload)
}

/// An HS256 token with fixed claims, so regenerated seeds are byte-identical.
fn token_with(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Valid until 2100.
fn valid_token() -> String {
    token_with(SECRET, &json!({"sub": "fuzz", "exp": 4_102_444_800u64}))
}

/// One `cmd` as a JSON text frame or a MessagePack binary frame.
fn command(msgpack: bool, value: &Value) -> Vec<u8> {
    if msgpack {
        binary(&rmp_serde::to_vec_named(value).unwrap())
    } else {
        text(&serde_json::to_vec(value).unwrap())
    }
}

struct Seeds {
    target: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

impl Seeds {
    fn new(target: &'static str) -> Seeds {
        Seeds {
            target,
            files: Vec::new(),
        }
    }

    fn add(&mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) {
        let name = name.into();
        assert!(
            self.files.iter().all(|(n, _)| *n != name),
            "{}: two seeds named {name}",
            self.target
        );
        self.files.push((name, data.into()));
    }

    /// Replaces `fuzz/corpus/<target>/` with these seeds.
    fn write(self) {
        let dir = fuzz_dir().join("corpus").join(self.target);
        for old in inputs(&dir) {
            std::fs::remove_file(old).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in &self.files {
            std::fs::write(dir.join(name), data).unwrap();
        }
        println!("{}: {} seeds", self.target, self.files.len());
    }
}

fn decode_seeds(
    target: &'static str,
    msgpack: bool,
    client: &[Vector],
    server: &[Vector],
    invalid: &[Invalid],
) {
    let mut seeds = Seeds::new(target);
    for v in client {
        let bytes = if msgpack {
            unhex(&v.msgpack_hex)
        } else {
            v.json.clone().into_bytes()
        };
        seeds.add(format!("client-{}", v.name), bytes);
    }
    for v in server {
        let bytes = if msgpack {
            unhex(&v.msgpack_hex)
        } else {
            v.json.clone().into_bytes()
        };
        seeds.add(format!("server-{}", v.name), bytes);
    }
    let format = if msgpack { "msgpack" } else { "json" };
    for v in invalid.iter().filter(|v| v.format == format) {
        let bytes = match (&v.input, &v.input_hex) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(h)) => unhex(h),
            (None, None) => continue,
        };
        seeds.add(format!("invalid-{}", v.name), bytes);
    }
    seeds.write();
}

fn frame_reader_seeds(client: &[Vector]) {
    let mut seeds = Seeds::new("frame_reader");
    for v in client {
        seeds.add(format!("text-{}", v.name), text(v.json.as_bytes()));
        seeds.add(format!("binary-{}", v.name), binary(&unhex(&v.msgpack_hex)));
    }
    let max = targets::FRAME_READER_MAX;
    let hello = b"{\"cmd\":\"ping\"}";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "ping-pong-close",
            [
                frame(true, 9, b"hb"),
                frame(true, 10, b""),
                close(1000, "bye"),
            ]
            .concat(),
        ),
        ("close-empty", frame(true, 8, b"")),
        ("close-bad-code", close(1005, "")),
        ("close-bad-utf8", frame(true, 8, &[0x03, 0xe8, 0xff])),
        (
            "fragmented-with-ping",
            [
                frame(false, 1, &hello[..5]),
                frame(true, 9, b"p"),
                frame(false, 0, &hello[5..9]),
                frame(true, 0, &hello[9..]),
            ]
            .concat(),
        ),
        ("continuation-first", frame(true, 0, b"x")),
        ("text-bad-utf8", text(&[0x61, 0xc3, 0x28])),
        (
            "text-utf8-split",
            [frame(false, 1, &[0xe2, 0x82]), frame(true, 0, &[0xac])].concat(),
        ),
        ("at-limit", binary(&vec![0x90; max])),
        (
            "over-limit-then-ping",
            [binary(&vec![0; max + 1]), frame(true, 9, b"")].concat(),
        ),
        (
            "over-limit-fragmented",
            [
                frame(false, 2, &vec![1; max]),
                frame(true, 0, b"xy"),
                text(hello),
            ]
            .concat(),
        ),
        ("len16", text(&vec![b' '; 300])),
        (
            "len64-header",
            [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4].to_vec(),
        ),
        ("unmasked", [0x81, 0x02, b'h', b'i'].to_vec()),
        ("reserved-bits", [0xc1, 0x80, 0, 0, 0, 0].to_vec()),
        ("long-ping", frame(true, 9, &[0; 126])),
        ("unknown-opcode", frame(true, 3, b"")),
    ];
    for (name, data) in cases {
        seeds.add(name, data);
    }
    seeds.write();
}

fn connection_seeds(client: &[Vector]) {
    let mut seeds = Seeds::new("connection");
    // Mode byte: bit 0 MessagePack, bit 1 authenticated as `fuzz`.
    for v in client {
        seeds.add(
            format!("json-{}", v.name),
            [&[2u8][..], &text(v.json.as_bytes())].concat(),
        );
        seeds.add(
            format!("msgpack-{}", v.name),
            [&[3u8][..], &binary(&unhex(&v.msgpack_hex))].concat(),
        );
    }
    let logical = |name: &str| {
        client
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no client vector {name}"))
            .logical
            .clone()
    };
    for (mode, fmt) in [(0u8, "json"), (1, "msgpack")] {
        let mp = mode == 1;
        let auth = command(mp, &json!({"cmd": "auth", "id": 1, "token": valid_token()}));
        let mut session = vec![mode];
        session.extend(&auth);
        for name in ["join", "publish", "publish_echo", "send", "leave", "ping"] {
            session.extend(command(mp, &logical(name)));
        }
        // No close frame: a client's close discards the answers still queued, and these
        // should reach the output checks. The end of input ends the connection.
        seeds.add(format!("{fmt}-session"), session);
        seeds.add(
            format!("{fmt}-before-auth"),
            [vec![mode], command(mp, &logical("join")), auth.clone()].concat(),
        );
        let expired = token_with(SECRET, &json!({"sub": "fuzz", "exp": 1000}));
        seeds.add(
            format!("{fmt}-expired-token"),
            [
                vec![mode],
                command(mp, &json!({"cmd": "auth", "token": expired})),
            ]
            .concat(),
        );
        seeds.add(
            format!("{fmt}-too-large"),
            [
                vec![mode | 2],
                frame(
                    true,
                    if mp { 2 } else { 1 },
                    &vec![b' '; targets::MAX_MESSAGE + 1],
                ),
                command(mp, &logical("ping")),
            ]
            .concat(),
        );
    }
    let join = serde_json::to_vec(&logical("join")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "ping-frame-then-close",
            [frame(true, 9, b"hb"), close(1001, "")].concat(),
        ),
        (
            "fragmented",
            [
                frame(false, 1, &join[..4]),
                frame(true, 9, b""),
                frame(true, 0, &join[4..]),
            ]
            .concat(),
        ),
        ("bad-utf8", text(&[b'"', 0xff, b'"'])),
        ("unmasked", [0x81, 0x02, b'{', b'}'].to_vec()),
        ("binary-on-json", binary(&[0x80])),
        (
            "rate-limit",
            std::iter::repeat_n(text(br#"{"cmd":"ping","id":1}"#), 120)
                .flatten()
                .collect(),
        ),
    ];
    for (name, data) in cases {
        seeds.add(name, [&[2u8][..], &data].concat());
    }
    seeds.write();
}

fn rest_body_seeds(client: &[Vector]) {
    let mut seeds = Seeds::new("rest_body");
    // First byte: the endpoint, an index into `BODY_ENDPOINTS`.
    let cases: &[(u8, &str, &str)] = &[
        (
            0,
            "users-one",
            r#"{"userId":"u1","event":"e","data":{"a":1}}"#,
        ),
        (
            0,
            "users-many",
            r#"{"userIds":["a","b","c"],"event":"chat"}"#,
        ),
        (
            0,
            "users-both",
            r#"{"userId":"u","userIds":["u"],"event":"e"}"#,
        ),
        (
            0,
            "users-bad-types",
            r#"{"userIds":["a",2],"event":5,"data":1e400}"#,
        ),
        (0, "users-empty-list", r#"{"userIds":[],"event":"e"}"#),
        (
            1,
            "room-full",
            r#"{"event":"e","data":[1,2.5,"x"],"exceptUserId":"u"}"#,
        ),
        (1, "room-missing-event", r#"{"data":null}"#),
        (2, "broadcast", r#"{"event":"news","data":"hello"}"#),
        (
            2,
            "broadcast-unknown-field",
            r#"{"event":"e","extra":true}"#,
        ),
        (
            3,
            "batch",
            r#"{"pushes":[{"userId":"u","event":"e"},{"roomId":"r","event":"e","exceptUserId":"x"},{"broadcast":true,"event":"e","data":{}}]}"#,
        ),
        (
            3,
            "batch-two-targets",
            r#"{"pushes":[{"userId":"u","roomId":"r","event":"e"}]}"#,
        ),
        (
            3,
            "batch-bad-items",
            r#"{"pushes":[1,{"broadcast":false,"event":"e"},{"event":"e"}]}"#,
        ),
        (3, "batch-empty", r#"{"pushes":[]}"#),
        (4, "create", r#"{"roomId":"lobby","createdBy":"alice"}"#),
        (
            4,
            "create-username",
            r#"{"roomId":"lobby","creatorUsername":"alice"}"#,
        ),
        (4, "create-duplicate", r#"{"roomId":"a","roomId":"b"}"#),
        (5, "member", r#"{"userId":"bob"}"#),
        (5, "member-escaped", r#"{"user\u0049d":"b\u00f6b"}"#),
        (5, "not-an-object", r#"["userId"]"#),
        (5, "malformed", r#"{"userId":"#),
    ];
    for (endpoint, name, body) in cases {
        seeds.add(*name, [&[*endpoint][..], body.as_bytes()].concat());
    }
    // Data one level deeper than allowed.
    let deep = format!(
        r#"{{"event":"e","data":{}{}}}"#,
        "[".repeat(65),
        "]".repeat(65)
    );
    seeds.add("broadcast-too-deep", [&[2u8][..], deep.as_bytes()].concat());
    // The data of every client vector, broadcast.
    for v in client.iter().filter(|v| v.logical.get("data").is_some()) {
        let body = json!({"event": "e", "data": v.logical["data"]});
        seeds.add(
            format!("broadcast-{}", v.name),
            [&[2u8][..], &serde_json::to_vec(&body).unwrap()].concat(),
        );
    }
    seeds.write();
}

fn token_seeds(client: &[Vector]) {
    let mut seeds = Seeds::new("token");
    let valid = valid_token();
    let expired = token_with(SECRET, &json!({"sub": "fuzz", "exp": 1000}));
    let foreign = token_with(
        "another-secret",
        &json!({"sub": "fuzz", "exp": 4_102_444_800u64}),
    );
    let vector_token = client
        .iter()
        .find_map(|v| v.logical.get("token").and_then(Value::as_str))
        .unwrap()
        .to_owned();
    let cases: Vec<(u8, &str, String)> = vec![
        (0, "query-plain", "token=abc".into()),
        (0, "query-among-others", "a=1&token=x%2Ey&b".into()),
        (0, "query-bad-escape", "token=%zz&t=%4".into()),
        (0, "query-plus-and-utf8", "token=a+b%20c%E2%82%AC".into()),
        (0, "query-bad-utf8", "token=%ff%fe".into()),
        (1, "bearer", format!("Bearer {valid}\n")),
        (1, "bearer-empty", "Bearer \n".into()),
        (1, "basic", "Basic dXNlcjpwYXNz\n".into()),
        (1, "query-token", format!("\ntoken={valid}&format=msgpack")),
        (1, "header-wins", format!("Bearer {expired}\ntoken={valid}")),
        (2, "valid", valid.clone()),
        (2, "expired", expired),
        (2, "wrong-key", foreign),
        (2, "vector", vector_token),
        (
            2,
            "alg-none",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5OX0.".into(),
        ),
        (2, "garbage", "a.b.c".into()),
    ];
    for (mode, name, s) in cases {
        seeds.add(name, [&[mode][..], s.as_bytes()].concat());
    }
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let signed: &[(&str, &str, &str)] = &[
        ("signed-valid", header, r#"{"sub":"u1","exp":4102444800}"#),
        (
            "signed-sid",
            header,
            r#"{"sub":"u1","sid":"s1","exp":4102444800,"iat":1}"#,
        ),
        (
            "signed-nbf-future",
            header,
            r#"{"sub":"u1","exp":4102444800,"nbf":4102444000}"#,
        ),
        ("signed-expired", header, r#"{"sub":"u1","exp":1}"#),
        ("signed-empty-sub", header, r#"{"sub":"","exp":4102444800}"#),
        ("signed-no-exp", header, r#"{"sub":"u1"}"#),
        (
            "signed-float-exp",
            header,
            r#"{"sub":"u1","exp":4102444800.5}"#,
        ),
        (
            "signed-aud",
            header,
            r#"{"sub":"u1","exp":4102444800,"aud":["x","y"]}"#,
        ),
        (
            "signed-alg-none",
            r#"{"alg":"none"}"#,
            r#"{"sub":"u1","exp":4102444800}"#,
        ),
        (
            "signed-kid",
            r#"{"alg":"HS256","kid":"k","cty":"x"}"#,
            r#"{"sub":"u1","exp":4102444800}"#,
        ),
    ];
    for (name, h, c) in signed {
        seeds.add(*name, format!("\x03{h}\n{c}").into_bytes());
    }
    seeds.write();
}

/// The Socket.IO vectors (`protocol/vectors/socketio/vectors.json`, from the JS parsers).
#[derive(Deserialize)]
struct SioFile {
    vectors: Vec<SioVector>,
    invalid: Vec<SioInvalid>,
}

#[derive(Deserialize)]
struct SioVector {
    name: String,
    json: String,
    attachments_hex: Vec<String>,
    msgpack_hex: String,
}

#[derive(Deserialize)]
struct SioInvalid {
    name: String,
    input: Option<String>,
    #[serde(default)]
    attachments_hex: Vec<String>,
    input_hex: Option<String>,
}

/// One connection's messages for `socketio_json`: `\x1e`-separated, binary ones after a `b`.
fn sio_messages(text: &str, attachments: &[String]) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    for a in attachments {
        out.push(0x1e);
        out.push(b'b');
        out.extend(unhex(a));
    }
    out
}

fn socketio_seeds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/vectors/socketio/vectors.json");
    let file: SioFile = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut json = Seeds::new("socketio_json");
    let mut msgpack = Seeds::new("socketio_msgpack");
    for v in &file.vectors {
        json.add(v.name.clone(), sio_messages(&v.json, &v.attachments_hex));
        msgpack.add(v.name.clone(), unhex(&v.msgpack_hex));
    }
    for v in &file.invalid {
        match (&v.input, &v.input_hex) {
            (Some(text), _) => json.add(
                format!("invalid-{}", v.name),
                sio_messages(text, &v.attachments_hex),
            ),
            (None, Some(h)) => msgpack.add(format!("invalid-{}", v.name), unhex(h)),
            (None, None) => {}
        }
    }
    // A whole connection: two namespaces, a binary event between text packets, a stray
    // attachment and a packet over the attachment bound (4 in the target).
    let session: &[&[u8]] = &[
        b"0",
        br#"0/chat,{"token":"t"}"#,
        br#"2/chat,1["chat:message",{"content":"hi","roomId":"r1"}]"#,
        br#"52-/chat,["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        b"b\x01\x02",
        b"b",
        br#"31["ok"]"#,
        b"b\xff",
        br#"55-["five"]"#,
        b"1/chat,",
    ];
    json.add("session", session.join(&0x1e));
    json.write();
    msgpack.write();
}

fn engineio_payload_seeds() {
    let mut seeds = Seeds::new("engineio_payload");
    let cases: &[(&str, &[u8])] = &[
        ("message", b"4hello"),
        ("messages", b"4test1\x1e4test2\x1e4test3"),
        ("text-and-binary", b"4hello\x1ebAQIDBA=="),
        ("binary-empty", b"b"),
        ("binary-padding", b"bAP8="),
        ("pong", b"3"),
        ("probe", b"2probe"),
        ("close", b"1"),
        ("upgrade-noop", b"5\x1e6"),
        ("open", b"0{\"sid\":\"x\"}"),
        ("socketio-event", b"42[\"chat:message\",{\"a\":1}]\x1e3"),
        ("utf8", "4h\u{e9}llo \u{1f600}".as_bytes()),
        ("empty", b""),
        ("empty-between", b"4a\x1e\x1e4b"),
        ("trailing-separator", b"4a\x1e"),
        ("unknown-type", b"abc"),
        ("data-on-close", b"1x"),
        ("bad-base64", b"bAQ="),
        ("bad-utf8", b"4\xff\xfe"),
    ];
    for (name, data) in cases {
        seeds.add(*name, *data);
    }
    seeds.write();
}

/// Rewrites every seed directory. Review the diff (`git status fuzz/corpus`) before committing.
#[test]
#[ignore = "rewrites fuzz/corpus/"]
fn regenerate_seeds() {
    let client: Vec<Vector> = vectors("client.json");
    let server: Vec<Vector> = vectors("server.json");
    let invalid: Vec<Invalid> = vectors("invalid.json");
    decode_seeds("decode_json", false, &client, &server, &invalid);
    decode_seeds("decode_msgpack", true, &client, &server, &invalid);
    frame_reader_seeds(&client);
    connection_seeds(&client);
    rest_body_seeds(&client);
    token_seeds(&client);
    socketio_seeds();
    engineio_payload_seeds();
}
