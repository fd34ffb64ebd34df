//! Entry points for the fuzz targets (`fuzz/`) and the corpus-replay tests: the real parsers
//! and the real connection code, driven from arbitrary bytes. Free to change with the fuzz
//! targets.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wsgate_protocol::Format;

use crate::node::permit::{ConnPermit, UserSlot};
use crate::node::{Handoff, Role};
use crate::session::auth::Identity;
use crate::transport::socket::Socket;
use crate::transport::ws::reader::{Incoming, Reader};
use crate::ServerHandle;

/// What a reader made of a byte stream: the items, then the close code of a framing error.
#[derive(Debug, PartialEq, Eq)]
pub struct ReaderOutcome {
    items: Vec<Incoming>,
    error: Option<u16>,
}

/// Parses `data` with the connection's frame reader, fed whole, and checks that feeding the
/// same bytes one at a time gives the same items and the same error: framing must not depend
/// on how the network splits a stream. Panics if the two disagree.
pub fn frame_reader(data: &[u8], max_message: usize) -> ReaderOutcome {
    let whole = read_all(std::iter::once(data), max_message);
    let bytewise = read_all(data.chunks(1), max_message);
    assert_eq!(
        whole, bytewise,
        "the reader's result depends on how the input is split"
    );
    whole
}

fn read_all<'a>(chunks: impl Iterator<Item = &'a [u8]>, max_message: usize) -> ReaderOutcome {
    let mut reader = Reader::new(Bytes::new(), max_message);
    let mut items = Vec::new();
    for chunk in chunks {
        reader.feed(chunk);
        loop {
            match reader.next() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    return ReaderOutcome {
                        items,
                        error: Some(e.close_code()),
                    }
                }
            }
        }
        reader.release_if_idle();
    }
    ReaderOutcome { items, error: None }
}

/// Why [`attach`] could not hand a stream to the server.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The server holds its maximum number of connections.
    #[error("the server holds its maximum number of connections")]
    ServerFull,
    /// The user holds its maximum number of connections.
    #[error("the user holds its maximum number of connections")]
    UserFull,
    /// The stream could not be made non-blocking.
    #[error("cannot prepare the stream: {0}")]
    Io(#[from] io::Error),
    /// Shard 0 is not running.
    #[error("shard 0 is gone")]
    Gone,
}

/// Serves `stream` on shard 0 through the real connection code, as if it had just completed
/// a WebSocket upgrade in `format` (authenticated as `user` when given, as with a token in the
/// handshake). The caller speaks WebSocket on the other end of the pair.
pub fn attach(
    server: &ServerHandle,
    stream: UnixStream,
    format: Format,
    user: Option<&str>,
) -> Result<(), AttachError> {
    let shared = server.shared();
    let permit = ConnPermit::acquire(shared).ok_or(AttachError::ServerFull)?;
    let identity = match user {
        Some(user) => {
            let user: Arc<str> = user.into();
            let slot = UserSlot::acquire(shared, &user).ok_or(AttachError::UserFull)?;
            let identity = Identity {
                user,
                session: None,
                expires_at: None,
                rooms: None,
            };
            Some((identity, slot))
        }
        None => None,
    };
    stream.set_nonblocking(true)?;
    let handoff = Handoff {
        socket: Socket::Unix(mio::net::UnixStream::from_std(stream)),
        already_read: Bytes::new(),
        role: Role::Gateway { format, identity },
        permit,
    };
    if shared.hand_off(0, handoff) {
        Ok(())
    } else {
        Err(AttachError::Gone)
    }
}

/// How long [`connection`] waits for the server to finish with one input.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Feeds `data` to a fresh connection on `server` as the client's bytes after a valid upgrade,
/// then ends the stream and returns everything the server wrote. The first byte picks the
/// connection: bit 0 MessagePack (else JSON), bit 1 authenticated as user `fuzz` (else not).
/// Panics if the server does not close the connection within 10 s of the end of input (a
/// hang is a bug too).
pub fn connection(server: &ServerHandle, data: &[u8]) -> Vec<u8> {
    let Some((&mode, data)) = data.split_first() else {
        return Vec::new();
    };
    let format = if mode & 1 == 1 {
        Format::MsgPack
    } else {
        Format::Json
    };
    let user = (mode & 2 == 2).then_some("fuzz");
    let (mut client, theirs) = UnixStream::pair().expect("a socket pair");
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    // The previous input's connection may still hold its slots for a moment.
    loop {
        let stream = theirs.try_clone().expect("a socket clone");
        match attach(server, stream, format, user) {
            Ok(()) => break,
            Err(AttachError::ServerFull | AttachError::UserFull) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("cannot attach: {e}"),
        }
    }
    drop(theirs);
    client
        .set_nonblocking(true)
        .expect("a non-blocking client socket");
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut written = 0;
    let mut write_open = true;
    loop {
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection within {CONNECTION_DEADLINE:?}"
        );
        let mut progress = false;
        if written < data.len() {
            match client.write(&data[written..]) {
                Ok(n) => {
                    written += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server closed first (after a framing error, say).
                Err(_) => written = data.len(),
            }
        } else if write_open {
            let _ = client.shutdown(std::net::Shutdown::Write);
            write_open = false;
        }
        match client.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return out,
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The fuzz targets' bodies, one function per target in `fuzz/fuzz_targets/` (each target is
/// a one-line call), so `tests/fuzz_corpus.rs` replays the corpora through the same checks.
pub mod targets {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use base64::Engine;
    use http_body_util::BodyExt;
    use wsgate_protocol::fuzzing::{alloc_cap, with_alloc_cap};
    use wsgate_protocol::{decode_server_message, Format, RawData, MAX_NAME_LEN};

    use super::{Incoming, ReaderOutcome};
    use crate::http::rest::{body_endpoints, validate_body};
    use crate::http::token::{self as auth, OfferedToken};
    use crate::http::url;
    use crate::session::auth::Verifier;
    use crate::{Config, ServerHandle};

    /// The HS256 secret of the fuzz server and of the `token` target's verifier.
    pub const SECRET: &str = "wsgate-fuzz-secret";
    /// The fuzz server's `max_message_bytes`, small so the fuzzer reaches the limit.
    pub const MAX_MESSAGE: usize = 4096;
    /// The `frame_reader` target's message limit.
    pub const FRAME_READER_MAX: usize = 1024;

    /// Fuzz target `frame_reader`: client bytes through the connection's frame reader (whole
    /// and byte at a time, which must agree), with allocations capped by the input's size.
    pub fn frame_reader(data: &[u8]) {
        let outcome = with_alloc_cap(alloc_cap(data.len()), || {
            super::frame_reader(data, FRAME_READER_MAX)
        });
        check_reader_outcome(&outcome);
    }

    fn check_reader_outcome(outcome: &ReaderOutcome) {
        for item in &outcome.items {
            match item {
                Incoming::Message { text, payload } => {
                    assert!(
                        payload.len() <= FRAME_READER_MAX,
                        "a message over the limit"
                    );
                    if *text {
                        assert!(
                            std::str::from_utf8(payload).is_ok(),
                            "text that is not UTF-8"
                        );
                    }
                }
                Incoming::Ping(payload) => assert!(payload.len() <= 125, "a long ping"),
                Incoming::Close(Some(code)) => {
                    assert!(
                        crate::transport::ws::frame::is_valid_close_code(*code),
                        "close code {code}"
                    );
                }
                Incoming::Pong | Incoming::Close(None) | Incoming::TooLarge => {}
            }
        }
        if let Some(code) = outcome.error {
            assert!(code == 1002 || code == 1007, "framing error code {code}");
        }
    }

    /// The server the `connection` target talks to, started once per process: one shard,
    /// [`SECRET`], [`MAX_MESSAGE`].
    pub fn server() -> &'static ServerHandle {
        static SERVER: OnceLock<ServerHandle> = OnceLock::new();
        SERVER.get_or_init(|| {
            let mut config = Config::for_tests();
            config.jwt_secret = Some(SECRET.into());
            config.shards = 1;
            config.max_message_bytes = MAX_MESSAGE;
            crate::start(config).unwrap_or_else(|e| panic!("the fuzz server starts: {e}"))
        })
    }

    /// Fuzz target `connection`: see [`super::connection`] for the input's layout. Whatever
    /// the client sends, the server must only send well-formed frames, each data message one a
    /// client decodes, never close with 1011 (unless echoing the client's own 1011, as RFC
    /// 6455 §5.5.1 has it), and never panic.
    pub fn connection(data: &[u8]) {
        let server = server();
        let panics = server.stats().panics;
        let out = super::connection(server, data);
        assert_eq!(
            server.stats().panics,
            panics,
            "the server panicked while serving the input"
        );
        let format = match data.first() {
            Some(mode) if mode & 1 == 1 => Format::MsgPack,
            _ => Format::Json,
        };
        let client = super::read_all(
            std::iter::once(data.get(1..).unwrap_or_default()),
            MAX_MESSAGE,
        );
        let echo_1011 = client.items.contains(&Incoming::Close(Some(1011)));
        check_server_output(format, &out, echo_1011);
    }

    /// Checks a server's bytes: complete unmasked frames, data in the connection's format,
    /// nothing after a close, no 1011 unless `may_close_1011` (the client sent one).
    fn check_server_output(format: Format, mut out: &[u8], may_close_1011: bool) {
        let mut closed = false;
        while !out.is_empty() {
            assert!(!closed, "frames after the close frame");
            let [b0, b1, ..] = *out else {
                panic!("a truncated frame header")
            };
            assert_eq!(
                b0 & 0xF0,
                0x80,
                "a server frame that is not final or has RSV bits"
            );
            assert_eq!(b1 & 0x80, 0, "a masked server frame");
            let at: usize = match b1 & 0x7F {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let ext = out.get(2..at).expect("a truncated frame length");
            let len = match *ext {
                [hi, lo] => usize::from(u16::from_be_bytes([hi, lo])),
                [..] if at == 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(ext);
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX)
                }
                _ => usize::from(b1 & 0x7F),
            };
            let payload = out
                .get(at..at.saturating_add(len))
                .unwrap_or_else(|| panic!("a truncated frame of {len} bytes"));
            out = &out[at + len..];
            match b0 & 0x0F {
                op @ (1 | 2) => {
                    let want = if format == Format::Json { 1 } else { 2 };
                    assert_eq!(op, want, "a data frame of the wrong kind for {format:?}");
                    if let Err(e) = decode_server_message(format, payload) {
                        panic!("the client cannot decode the server's message: {e}");
                    }
                }
                8 => {
                    closed = true;
                    if let [hi, lo, reason @ ..] = payload {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        assert!(
                            code != 1011 || may_close_1011,
                            "closed with 1011 (internal error)"
                        );
                        assert!(
                            crate::transport::ws::frame::is_valid_close_code(code),
                            "code {code}"
                        );
                        assert!(std::str::from_utf8(reason).is_ok(), "a non-UTF-8 reason");
                    } else {
                        assert!(payload.is_empty(), "a one-byte close payload");
                    }
                }
                9 | 10 => assert!(len <= 125, "a long control frame"),
                op => panic!("opcode {op} from the server"),
            }
        }
    }

    /// Fuzz target `rest_body`: the first byte picks one of the routes that take a body, the rest is
    /// its JSON body, validated exactly as the handler does. A refused body is a 400 listing
    /// every invalid field (never a 500); an accepted one holds only valid names and `data` that
    /// reaches MessagePack clients; a batch keeps every item.
    pub fn rest_body(data: &[u8]) {
        let Some((&kind, body)) = data.split_first() else {
            return;
        };
        let endpoints = body_endpoints();
        let endpoint = usize::from(kind) % endpoints.len();
        with_alloc_cap(alloc_cap(body.len()), || {
            match validate_body(endpoint, body) {
                Ok(summary) => {
                    for name in &summary.names {
                        assert!(
                            !name.is_empty() && name.len() <= MAX_NAME_LEN,
                            "accepted name {name:?}"
                        );
                    }
                    for data in &summary.data {
                        let raw = RawData::validate(Format::Json, data)
                            .unwrap_or_else(|e| panic!("accepted data is not valid: {e}"));
                        let mut mp = Vec::new();
                        wsgate_protocol::transcode(raw, Format::MsgPack, &mut mp)
                            .unwrap_or_else(|e| panic!("accepted data cannot transcode: {e}"));
                    }
                    if endpoints[endpoint] == "POST /api/v1/push/batch" {
                        let value: serde_json::Value =
                            serde_json::from_slice(body).expect("an accepted body is JSON");
                        let items = value["pushes"].as_array().map_or(0, Vec::len);
                        assert_eq!(summary.actions, items, "a batch lost items");
                    }
                }
                Err(e) => {
                    let res = e.into_response();
                    let status = res.status();
                    let bytes = futures_util::FutureExt::now_or_never(res.into_body().collect())
                        .expect("a full body is ready")
                        .map(|c| c.to_bytes())
                        .unwrap_or_else(|e| match e {});
                    let wire: serde_json::Value =
                        serde_json::from_slice(&bytes).expect("the error body is JSON");
                    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bytes));
                    assert_eq!(wire["error"]["code"], "bad_request");
                    let details = wire["error"]["details"].as_array();
                    assert!(
                        details.is_some_and(|d| !d.is_empty()),
                        "a 400 without details: {wire}"
                    );
                }
            }
        });
    }

    /// The default `JWT_LEEWAY` in seconds, read once (outside any allocation cap).
    fn leeway_secs() -> u64 {
        static LEEWAY: OnceLock<u64> = OnceLock::new();
        *LEEWAY.get_or_init(|| Config::for_tests().jwt_leeway_secs)
    }

    /// The `token` target's verifier: HS256 with [`SECRET`], the default leeway.
    fn verifier() -> &'static Verifier {
        static VERIFIER: OnceLock<Verifier> = OnceLock::new();
        VERIFIER.get_or_init(|| {
            let mut config = Config::for_tests();
            config.jwt_secret = Some(SECRET.into());
            Verifier::from_config(&config, None).expect("an HS256 verifier")
        })
    }

    /// Fuzz target `token`: the first byte picks what the rest is.
    ///
    /// - `0 mod 4`: a query string: `token` is read from it exactly as a reference decoder does
    ///   (`%` and two hex digits, `+` a space); path segments likewise, `+` kept.
    /// - `1 mod 4`: `Authorization` header value, newline, query string: the token offered by
    ///   a handshake with them is checked against both, then verified.
    /// - `2 mod 4`: a token, verified.
    /// - `3 mod 4`: JWT header JSON, newline, claims JSON: signed with the right key, then
    ///   verified; an accepted token's `sub` is the user and its `exp` has not passed.
    pub fn token(data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        // Made once, outside the cap: they parse a whole configuration.
        verifier();
        leeway_secs();
        with_alloc_cap(alloc_cap(rest.len()), || match mode % 4 {
            0 => query(&String::from_utf8_lossy(rest)),
            1 => handshake(rest),
            2 => {
                let _ = verify(&String::from_utf8_lossy(rest));
            }
            _ => signed(rest),
        });
    }

    /// Fuzz target `store_records`: bytes as the store would read them back from disk. The
    /// first byte picks the record (`0 mod 6` a message value, `1` a room definition, `2` a
    /// head, `3` the run record, `4` a message key, `5` a meta key); a damaged record is
    /// refused (`None`), never a panic, and one that reads writes back to the same bytes.
    pub fn store_records(data: &[u8]) {
        use crate::store::codec::{self, meta, StreamKey};
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        with_alloc_cap(alloc_cap(rest.len()), || match mode % 6 {
            0 => {
                if let Some(m) = codec::decode_message(rest) {
                    let again = codec::encode_message(
                        m.at,
                        &m.event,
                        m.room.as_deref(),
                        m.from.as_deref(),
                        m.format,
                        &m.data,
                    );
                    assert_eq!(again, rest, "a message reads back to other bytes");
                }
            }
            1 => {
                if let Some(def) = codec::decode_room(rest) {
                    assert_eq!(codec::encode_room(&def), rest, "a room reads back");
                }
            }
            2 => {
                if let Some((epoch, last)) = codec::decode_head(rest) {
                    assert_eq!(codec::encode_head(epoch, last), rest, "a head reads back");
                }
            }
            3 => {
                if let Some((clean, skip)) = codec::decode_run(rest) {
                    // Any byte other than 1 reads as "not clean".
                    assert_eq!(codec::encode_run(clean, skip)[1..], rest[1..]);
                }
            }
            4 => {
                if let Some((stream, offset)) = StreamKey::parse_message(rest) {
                    assert_eq!(stream.message(offset), rest, "a key reads back");
                }
            }
            _ => {
                let _ = meta::parse(rest);
            }
        });
    }

    fn query(q: &str) {
        let got = url::query_param(q, "token");
        let want = q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == "token").then(|| String::from_utf8_lossy(&reference_decode(v, true)).into_owned())
        });
        assert_eq!(got, want, "query parameter of {q:?}");
        let path = url::percent_decode_path(q);
        let want = String::from_utf8(reference_decode(q, false)).ok();
        assert_eq!(path, want, "path segment {q:?}");
    }

    /// Percent-decoding as RFC 3986 has it: `%` and exactly two hex digits is a byte; anything
    /// else is itself. `+` is a space in a query (`plus_is_space`), itself in a path.
    fn reference_decode(s: &str, plus_is_space: bool) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                (b'+', ..) if plus_is_space => out.push(b' '),
                (c, ..) => out.push(c),
            }
            i += 1;
        }
        out
    }

    fn handshake(rest: &[u8]) {
        let (header, q) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let q = String::from_utf8_lossy(q);
        let mut req = hyper::Request::builder();
        let uri_ok = format!("/ws?{q}").parse::<hyper::Uri>().is_ok();
        if uri_ok {
            req = req.uri(format!("/ws?{q}"));
        }
        let header = header.and_then(|h| hyper::header::HeaderValue::from_bytes(h).ok());
        if let Some(h) = &header {
            req = req.header(hyper::header::AUTHORIZATION, h.clone());
        }
        let req = req.body(()).expect("a request from a valid URI and header");
        let offered = auth::token_from_request(&req);
        match (&header, &offered) {
            (Some(h), OfferedToken::Token(t)) => {
                let text = h.to_str().expect("a token came from a text header");
                assert_eq!(
                    Some(t.as_str()),
                    text.strip_prefix("Bearer ").map(str::trim)
                );
            }
            (Some(_), OfferedToken::None) => panic!("a header offered no token"),
            (None, OfferedToken::Token(t)) => {
                let query = req.uri().query().unwrap_or("");
                assert_eq!(Some(t), url::query_param(query, "token").as_ref());
            }
            _ => {}
        }
        if let OfferedToken::Token(t) = offered {
            assert!(!t.is_empty(), "an empty token offered");
            let _ = verify(&t);
        }
    }

    /// Verifies a token; an accepted one must name a valid user.
    fn verify(token: &str) -> Option<std::sync::Arc<str>> {
        let identity = verifier().verify(token).ok()?;
        let user = identity.user;
        assert!(
            !user.is_empty() && user.len() <= MAX_NAME_LEN,
            "user {user:?}"
        );
        if let Some(sid) = &identity.session {
            assert!(
                !sid.is_empty() && sid.len() <= MAX_NAME_LEN,
                "session {sid:?}"
            );
        }
        Some(user)
    }

    fn signed(rest: &[u8]) {
        let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (header, claims) = (&rest[..at], rest.get(at + 1..).unwrap_or_default());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .expect("HS256 signs anything");
        let Some(user) = verify(&format!("{input}.{signature}")) else {
            return;
        };
        // Only the fields checked are read, unknown ones skipped as jsonwebtoken skips them
        // (serde_json does not check the UTF-8 of a skipped string, so neither may a check).
        #[derive(serde::Deserialize)]
        struct Header {
            alg: String,
        }
        #[derive(serde::Deserialize)]
        struct Claims {
            sub: String,
            exp: serde_json::Number,
        }
        let header: Header = serde_json::from_slice(header).expect("an accepted header");
        assert_eq!(header.alg, "HS256", "accepted alg {}", header.alg);
        let claims: Claims = serde_json::from_slice(claims).expect("accepted claims");
        assert_eq!(claims.sub, *user, "the user is not the sub");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = claims
            .exp
            .as_u64()
            .or_else(|| claims.exp.as_f64().map(|f| f as u64));
        let leeway = leeway_secs();
        assert!(
            exp.is_some_and(|exp| exp + leeway + 5 >= now),
            "accepted exp {} at {now}",
            claims.exp
        );
    }
}
