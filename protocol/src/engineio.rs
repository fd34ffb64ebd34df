//! Engine.IO v4 packets: one packet, a long-polling payload, the open packet, the HTTP errors.
//!
//! A packet is a type digit and its data: `0` open, `1` close, `2` ping, `3` pong, `4`
//! message, `5` upgrade, `6` noop. Over WebSocket a text frame carries one packet and a binary
//! frame carries the raw bytes of one binary message (no type). Over HTTP long-polling a
//! payload joins packets with the record separator `\x1e`, and a binary message travels as
//! `b<base64>`. The decoder is strict: an empty packet, an unknown type, data on a packet that
//! carries none, a ping or pong whose data is not empty or `probe`, and base64 that is not
//! canonical are refused, never guessed at; it never panics and allocates only a binary
//! message's decoded bytes (at most three quarters of its input).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The separator of packets in a long-polling payload (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

/// The data of the ping and pong packets of the upgrade probe.
pub const PROBE: &str = "probe";

/// An Engine.IO packet type, by its digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: the server's handshake, with the session's parameters.
    Open,
    /// `1`: the session is over.
    Close,
    /// `2`: a heartbeat (server to client), or the upgrade probe (client to server).
    Ping,
    /// `3`: the answer to a ping.
    Pong,
    /// `4`: an application message.
    Message,
    /// `5`: the client switches to the probed transport.
    Upgrade,
    /// `6`: nothing; ends a long-poll without data.
    Noop,
}

impl PacketType {
    /// The type of digit `b`, if it is one.
    pub const fn from_digit(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }

    /// The type's digit.
    pub const fn digit(self) -> u8 {
        match self {
            PacketType::Open => b'0',
            PacketType::Close => b'1',
            PacketType::Ping => b'2',
            PacketType::Pong => b'3',
            PacketType::Message => b'4',
            PacketType::Upgrade => b'5',
            PacketType::Noop => b'6',
        }
    }
}

/// One decoded packet; text borrows from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the open packet's JSON (only servers send it).
    Open(&'a str),
    /// `1`.
    Close,
    /// `2` or `2probe`; `true` for the probe.
    Ping(bool),
    /// `3` or `3probe`; `true` for the probe.
    Pong(bool),
    /// `4<text>`: a text message (possibly empty).
    Text(&'a str),
    /// `b<base64>` (polling) or a binary frame (WebSocket): a binary message.
    Binary(Vec<u8>),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

impl Packet<'_> {
    /// The packet's type (a binary message is a message).
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Packet::Open(_) => PacketType::Open,
            Packet::Close => PacketType::Close,
            Packet::Ping(_) => PacketType::Ping,
            Packet::Pong(_) => PacketType::Pong,
            Packet::Text(_) | Packet::Binary(_) => PacketType::Message,
            Packet::Upgrade => PacketType::Upgrade,
            Packet::Noop => PacketType::Noop,
        }
    }
}

/// Why bytes are not an Engine.IO packet or payload. Each variant has a stable code
/// ([`PacketError::code`]); the server closes the session on any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// An empty packet (an empty payload, or two separators in a row).
    #[error("empty packet")]
    Empty,
    /// The first byte is not a packet type digit (nor `b` in a payload).
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// Data after a type that carries none (`1`, `5`, `6`), or ping/pong data other than `probe`.
    #[error("unexpected data after packet type {}", *.0 as char)]
    UnexpectedData(u8),
    /// `b` followed by what is not canonical standard base64.
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,
    /// The payload is not UTF-8 text.
    #[error("payload is not UTF-8")]
    InvalidUtf8,
}

impl PacketError {
    /// The stable code of this error.
    pub const fn code(self) -> &'static str {
        match self {
            PacketError::Empty => "engineio.empty_packet",
            PacketError::UnknownType(_) => "engineio.unknown_type",
            PacketError::UnexpectedData(_) => "engineio.unexpected_data",
            PacketError::InvalidBase64 => "engineio.invalid_base64",
            PacketError::InvalidUtf8 => "engineio.invalid_utf8",
        }
    }
}

/// Decodes the text of one packet (a WebSocket text frame, or one packet of a payload without
/// its separators). `b<base64>` is accepted only where `allow_base64` (long-polling).
pub fn decode_packet(text: &str, allow_base64: bool) -> Result<Packet<'_>, PacketError> {
    let Some(&first) = text.as_bytes().first() else {
        return Err(PacketError::Empty);
    };
    // Every type is one ASCII byte: past it is a character boundary.
    if !first.is_ascii() {
        return Err(PacketError::UnknownType(first));
    }
    let data = &text[1..];
    if first == b'b' && allow_base64 {
        return STANDARD
            .decode(data)
            .map(Packet::Binary)
            .map_err(|_| PacketError::InvalidBase64);
    }
    let ty = PacketType::from_digit(first).ok_or(PacketError::UnknownType(first))?;
    let probe = |data: &str| match data {
        "" => Ok(false),
        PROBE => Ok(true),
        _ => Err(PacketError::UnexpectedData(first)),
    };
    let bare = |packet: Packet<'static>| {
        if data.is_empty() {
            Ok(packet)
        } else {
            Err(PacketError::UnexpectedData(first))
        }
    };
    match ty {
        PacketType::Open => Ok(Packet::Open(data)),
        PacketType::Close => bare(Packet::Close),
        PacketType::Ping => probe(data).map(Packet::Ping),
        PacketType::Pong => probe(data).map(Packet::Pong),
        PacketType::Message => Ok(Packet::Text(data)),
        PacketType::Upgrade => bare(Packet::Upgrade),
        PacketType::Noop => bare(Packet::Noop),
    }
}

/// The packets of a long-polling payload, in order, each decoded as it is reached: a payload
/// that is not UTF-8 yields one [`PacketError::InvalidUtf8`] and stops.
pub fn decode_payload(payload: &[u8]) -> Payload<'_> {
    match std::str::from_utf8(payload) {
        Ok(text) => Payload {
            rest: Some(text),
            failed: false,
        },
        Err(_) => Payload {
            rest: None,
            failed: true,
        },
    }
}

/// The iterator of [`decode_payload`].
#[derive(Debug)]
pub struct Payload<'a> {
    /// What is left, `None` once the last packet is out.
    rest: Option<&'a str>,
    /// The payload was not UTF-8 and the error is still to be yielded.
    failed: bool,
}

impl<'a> Iterator for Payload<'a> {
    type Item = Result<Packet<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        if std::mem::take(&mut self.failed) {
            return Some(Err(PacketError::InvalidUtf8));
        }
        let rest = self.rest?;
        let (packet, tail) = match rest.split_once(SEPARATOR as char) {
            Some((packet, tail)) => (packet, Some(tail)),
            None => (rest, None),
        };
        self.rest = tail;
        Some(decode_packet(packet, true))
    }
}

/// Appends the text encoding of `packet` (as a WebSocket text frame carries it, or as one
/// packet of a payload: binary as `b<base64>`).
pub fn encode_packet(packet: &Packet<'_>, out: &mut Vec<u8>) {
    let probe = |p: bool| if p { PROBE } else { "" };
    let (ty, data) = match packet {
        Packet::Binary(bytes) => return encode_binary(bytes, out),
        Packet::Open(json) => (PacketType::Open, *json),
        Packet::Close => (PacketType::Close, ""),
        Packet::Ping(p) => (PacketType::Ping, probe(*p)),
        Packet::Pong(p) => (PacketType::Pong, probe(*p)),
        Packet::Text(text) => (PacketType::Message, *text),
        Packet::Upgrade => (PacketType::Upgrade, ""),
        Packet::Noop => (PacketType::Noop, ""),
    };
    out.push(ty.digit());
    out.extend_from_slice(data.as_bytes());
}

/// Appends a binary message as a long-polling payload carries it: `b<base64>`.
pub fn encode_binary(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'b');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Appends a payload of `packets`, joined by [`SEPARATOR`].
pub fn encode_payload(packets: &[Packet<'_>], out: &mut Vec<u8>) {
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        encode_packet(packet, out);
    }
}

/// What the open packet tells the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Open<'a> {
    /// The session id.
    pub sid: &'a str,
    /// The transports the client may upgrade to: `["websocket"]` over polling, `[]` over
    /// WebSocket.
    pub upgrades: &'a [&'a str],
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The most bytes the server accepts in one payload or message.
    pub max_payload: u64,
}

impl Open<'_> {
    /// Appends the open packet: `0` and the JSON object.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(PacketType::Open.digit());
        // Serializing a struct of strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }
}

/// The refusals of an Engine.IO request, as the Node server gives them: HTTP 400 (403 for
/// [`HandshakeError::Forbidden`]) with `{"code":N,"message":"…"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeError {
    /// `0`: `transport` is missing or not `polling`/`websocket`.
    TransportUnknown,
    /// `1`: no session has this `sid` (never had, or closed).
    SessionIdUnknown,
    /// `2`: a handshake (no `sid`) that is not a GET.
    BadHandshakeMethod,
    /// `3`: anything else wrong with the request (the transport does not match the
    /// session's, a second long-poll, an undecodable payload).
    BadRequest,
    /// `4`: the request was refused (the server cannot take the session).
    Forbidden,
    /// `5`: `EIO` is missing or not `4`.
    UnsupportedProtocolVersion,
}

impl HandshakeError {
    /// Every error, in code order.
    pub const ALL: [HandshakeError; 6] = [
        HandshakeError::TransportUnknown,
        HandshakeError::SessionIdUnknown,
        HandshakeError::BadHandshakeMethod,
        HandshakeError::BadRequest,
        HandshakeError::Forbidden,
        HandshakeError::UnsupportedProtocolVersion,
    ];

    /// The numeric code.
    pub const fn code(self) -> u8 {
        match self {
            HandshakeError::TransportUnknown => 0,
            HandshakeError::SessionIdUnknown => 1,
            HandshakeError::BadHandshakeMethod => 2,
            HandshakeError::BadRequest => 3,
            HandshakeError::Forbidden => 4,
            HandshakeError::UnsupportedProtocolVersion => 5,
        }
    }

    /// The message, as the Node server words it.
    pub const fn message(self) -> &'static str {
        match self {
            HandshakeError::TransportUnknown => "Transport unknown",
            HandshakeError::SessionIdUnknown => "Session ID unknown",
            HandshakeError::BadHandshakeMethod => "Bad handshake method",
            HandshakeError::BadRequest => "Bad request",
            HandshakeError::Forbidden => "Forbidden",
            HandshakeError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status.
    pub const fn status(self) -> u16 {
        match self {
            HandshakeError::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body: `{"code":N,"message":"…"}`.
    pub fn body(self) -> String {
        format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self.code(),
            self.message()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn payload(bytes: &[u8]) -> Vec<Result<Packet<'_>, PacketError>> {
        decode_payload(bytes).collect()
    }

    #[test]
    fn packets_decode_as_the_spec_writes_them() {
        assert_eq!(decode_packet("4hello", false), Ok(Packet::Text("hello")));
        assert_eq!(decode_packet("4", false), Ok(Packet::Text("")));
        assert_eq!(decode_packet("2probe", false), Ok(Packet::Ping(true)));
        assert_eq!(decode_packet("3", false), Ok(Packet::Pong(false)));
        assert_eq!(decode_packet("1", false), Ok(Packet::Close));
        assert_eq!(decode_packet("5", false), Ok(Packet::Upgrade));
        assert_eq!(decode_packet("6", false), Ok(Packet::Noop));
        assert_eq!(
            decode_packet("bAQIDBA==", true),
            Ok(Packet::Binary(vec![1, 2, 3, 4]))
        );
    }

    #[test]
    fn strictness_refuses_what_is_not_a_packet() {
        assert_eq!(decode_packet("", true), Err(PacketError::Empty));
        assert_eq!(
            decode_packet("abc", true),
            Err(PacketError::UnknownType(b'a'))
        );
        assert_eq!(
            decode_packet("7", true),
            Err(PacketError::UnknownType(b'7'))
        );
        assert_eq!(
            decode_packet("bAQ", false),
            Err(PacketError::UnknownType(b'b'))
        );
        assert_eq!(
            decode_packet("1x", true),
            Err(PacketError::UnexpectedData(b'1'))
        );
        assert_eq!(
            decode_packet("2ping", true),
            Err(PacketError::UnexpectedData(b'2'))
        );
        assert_eq!(decode_packet("bAQ=", true), Err(PacketError::InvalidBase64));
        assert_eq!(
            decode_packet("bAR==", true),
            Err(PacketError::InvalidBase64)
        );
    }

    #[test]
    fn payloads_split_on_the_record_separator() {
        let got = payload(b"4test1\x1e4test2\x1ebAQIDBA==");
        assert_eq!(
            got,
            [
                Ok(Packet::Text("test1")),
                Ok(Packet::Text("test2")),
                Ok(Packet::Binary(vec![1, 2, 3, 4]))
            ]
        );
        assert_eq!(payload(b""), [Err(PacketError::Empty)]);
        assert_eq!(payload(b"4a\x1e\x1e4b")[1], Err(PacketError::Empty));
        assert_eq!(payload(b"4\xff"), [Err(PacketError::InvalidUtf8)]);
    }

    #[test]
    fn encoding_round_trips() {
        let packets = [
            Packet::Text("é"),
            Packet::Binary(vec![0, 255]),
            Packet::Ping(false),
            Packet::Pong(true),
            Packet::Noop,
            Packet::Close,
        ];
        let mut out = Vec::new();
        encode_payload(&packets, &mut out);
        assert_eq!(out, "4é\x1ebAP8=\x1e2\x1e3probe\x1e6\x1e1".as_bytes());
        let back: Vec<_> = decode_payload(&out).map(Result::unwrap).collect();
        assert_eq!(back, packets);
    }

    #[test]
    fn the_open_packet_and_the_errors_are_the_node_servers() {
        let mut out = Vec::new();
        let open = Open {
            sid: "ab-_",
            upgrades: &["websocket"],
            ping_interval: 25_000,
            ping_timeout: 20_000,
            max_payload: 1_000_000,
        };
        open.encode(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"0{"sid":"ab-_","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(
            HandshakeError::TransportUnknown.body(),
            r#"{"code":0,"message":"Transport unknown"}"#
        );
        assert_eq!(HandshakeError::Forbidden.status(), 403);
        let codes: Vec<u8> = HandshakeError::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }
}
