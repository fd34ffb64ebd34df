//! The Socket.IO golden vectors in `vectors/socketio/vectors.json`, written by the real
//! JavaScript parsers (`vectors/socketio/gen.mjs`: socket.io-parser, socket.io-msgpack-parser):
//! what they encode, wsgate decodes to the same packet; what wsgate encodes from that packet
//! (from JSON or MessagePack arguments alike) is byte for byte what they wrote; what they
//! refuse, wsgate refuses with the code listed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use wsgate_protocol::socketio::{
    encode, encode_connect, encode_connect_error, encode_event, Args, AttachmentLimits, Decoded,
    Decoder, Event, Packet, Payload,
};
use wsgate_protocol::{Format, RawData};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    origin: String,
    #[serde(rename = "type")]
    kind: u8,
    nsp: String,
    id: Option<u64>,
    event: Option<String>,
    args_json: Option<String>,
    wire_args_json: Option<String>,
    args_msgpack_hex: Option<String>,
    wire_args_msgpack_hex: Option<String>,
    data_json: Option<String>,
    data_msgpack_hex: Option<String>,
    offset: Option<String>,
    sid: Option<String>,
    pid: Option<String>,
    message: Option<String>,
    error_data_json: Option<String>,
    json: String,
    attachments_hex: Vec<String>,
    msgpack_hex: String,
}

#[derive(Deserialize)]
struct Invalid {
    name: String,
    format: String,
    input: Option<String>,
    #[serde(default)]
    attachments_hex: Vec<String>,
    input_hex: Option<String>,
    code: String,
}

fn load() -> File {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/socketio/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// The vector's values in one format: (args as sent, args as decoded, CONNECT/CONNECT_ERROR data).
struct Side {
    format: Format,
    args: Option<Vec<u8>>,
    wire_args: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
}

impl Vector {
    fn side(&self, format: Format) -> Side {
        let pick = |json: &Option<String>, mp: &Option<String>| match format {
            Format::Json => json.clone().map(String::into_bytes),
            Format::MsgPack => mp.as_deref().map(unhex),
        };
        Side {
            format,
            args: pick(&self.args_json, &self.args_msgpack_hex),
            wire_args: pick(&self.wire_args_json, &self.wire_args_msgpack_hex),
            data: pick(&self.data_json, &self.data_msgpack_hex),
        }
    }

    fn attachments(&self) -> Vec<Bytes> {
        self.attachments_hex
            .iter()
            .map(|h| unhex(h).into())
            .collect()
    }
}

/// Feeds a text message and its attachments; the packet is what the last message completed.
fn decode_default<'a>(dec: &'a mut Decoder, text: &'a str, attachments: &'a [Bytes]) -> Packet<'a> {
    let Some((last, first)) = attachments.split_last() else {
        let Decoded::Packet(p) = dec.text(text).unwrap() else {
            panic!("{text}: incomplete")
        };
        return p;
    };
    let mut remaining = attachments.len();
    assert_eq!(
        dec.text(text).unwrap(),
        Decoded::NeedAttachments { remaining }
    );
    for a in first {
        remaining -= 1;
        assert_eq!(
            dec.binary(a).unwrap(),
            Decoded::NeedAttachments { remaining }
        );
    }
    let Decoded::Packet(p) = dec.binary(last).unwrap() else {
        panic!("{text}: incomplete after its attachments")
    };
    p
}

fn check_decoded(v: &Vector, side: &Side, p: &Packet<'_>, attachments: &[Bytes]) {
    let what = format!("{} ({:?})", v.name, side.format);
    let kind = match (side.format, v.kind) {
        (Format::MsgPack, 5) => 2,
        (Format::MsgPack, 6) => 3,
        (_, k) => k,
    };
    assert_eq!(p.packet_type().as_u8(), kind, "{what}");
    assert_eq!(p.nsp(), v.nsp, "{what}");
    let expect_args = || Args::from_array(side.format, side.wire_args.as_deref().unwrap()).unwrap();
    let expect_data = || side.data.as_deref();
    match p {
        Packet::Event(e) => {
            assert_eq!(Some(e.name.as_ref()), v.event.as_deref(), "{what}");
            assert_eq!(e.id, v.id, "{what}");
            assert_eq!(e.args.with_attachments(&[]), expect_args(), "{what}");
            assert_eq!(e.args.attachments(), attachments, "{what}");
            assert_eq!(e.offset, None);
        }
        Packet::Ack { id, args, .. } => {
            assert_eq!(Some(*id), v.id, "{what}");
            assert_eq!(args.with_attachments(&[]), expect_args(), "{what}");
            assert_eq!(args.attachments(), attachments, "{what}");
        }
        Packet::Connect { auth, .. } => {
            assert_eq!(auth.map(|a| a.bytes()), expect_data(), "{what}")
        }
        Packet::ConnectError { data, .. } => {
            assert_eq!(Some(data.bytes()), expect_data(), "{what}")
        }
        Packet::Disconnect { .. } => {}
    }
}

/// Encodes the vector's packet in `target` from the values of `source` (which may be the other
/// format: then the encoder transcodes), taking binary args from the decoded packet.
fn encode_vector(v: &Vector, target: Format, source: &Side, decoded: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let nsp = v.nsp.as_str();
    let args = || match decoded {
        Packet::Event(e) if !e.args.attachments().is_empty() => e.args,
        Packet::Ack { args, .. } if !args.attachments().is_empty() => *args,
        _ => Args::from_array(source.format, source.args.as_deref().unwrap()).unwrap(),
    };
    let data = source
        .data
        .as_deref()
        .map(|d| Payload::from(RawData::trusted(source.format, d)));
    match v.kind {
        0 if v.sid.is_some() => encode_connect(
            target,
            nsp,
            v.sid.as_deref().unwrap(),
            v.pid.as_deref(),
            &mut out,
        ),
        0 => encode(target, &Packet::Connect { nsp, auth: data }, &mut out).map(drop),
        1 => encode(target, &Packet::Disconnect { nsp }, &mut out).map(drop),
        2 | 5 => {
            let event = Event {
                nsp,
                name: Cow::Borrowed(v.event.as_deref().unwrap()),
                args: args(),
                id: v.id,
                offset: v.offset.as_deref(),
            };
            encode_event(target, &event, &mut out).map(drop)
        }
        3 | 6 => {
            let ack = Packet::Ack {
                nsp,
                id: v.id.unwrap(),
                args: args(),
            };
            encode(target, &ack, &mut out).map(drop)
        }
        4 => {
            let data = v
                .error_data_json
                .as_deref()
                .map(|d| RawData::trusted(Format::Json, d.as_bytes()));
            encode_connect_error(target, nsp, v.message.as_deref().unwrap(), data, &mut out)
        }
        k => panic!("type {k}"),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", v.name));
    out
}

#[test]
fn default_parser_decodes_and_encodes_what_socket_io_parser_does() {
    for v in load().vectors {
        let attachments = v.attachments();
        let mut dec = Decoder::new(Format::Json, AttachmentLimits::default());
        let p = decode_default(&mut dec, &v.json, &attachments);
        let json = v.side(Format::Json);
        check_decoded(&v, &json, &p, &attachments);
        let out = encode_vector(&v, Format::Json, &json, &p);
        assert_eq!(String::from_utf8(out).unwrap(), v.json, "{}", v.name);
        if attachments.is_empty() && v.origin == "server" {
            // The same packet from MessagePack values: transcoded, the same text.
            let out = encode_vector(&v, Format::Json, &v.side(Format::MsgPack), &p);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                v.json,
                "{} (from msgpack)",
                v.name
            );
        }
    }
}

#[test]
fn msgpack_parser_decodes_and_encodes_what_socket_io_msgpack_parser_does() {
    for v in load().vectors {
        let bytes = Bytes::from(unhex(&v.msgpack_hex));
        let mut dec = Decoder::new(Format::MsgPack, AttachmentLimits::default());
        let Decoded::Packet(p) = dec
            .binary(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name))
        else {
            panic!("{}: incomplete", v.name)
        };
        let mp = v.side(Format::MsgPack);
        check_decoded(&v, &mp, &p, &[]);
        // Client packets carry `options` and the client's key order: decode only.
        if v.origin != "server" {
            continue;
        }
        assert_eq!(
            hex::encode(encode_vector(&v, Format::MsgPack, &mp, &p)),
            v.msgpack_hex,
            "{}",
            v.name
        );
        if v.attachments_hex.is_empty() {
            let out = encode_vector(&v, Format::MsgPack, &v.side(Format::Json), &p);
            assert_eq!(hex::encode(out), v.msgpack_hex, "{} (from JSON)", v.name);
        }
    }
}

#[test]
fn refuses_what_the_js_parsers_refuse() {
    for v in load().invalid {
        let error = match v.format.as_str() {
            "json" => {
                let attachments: Vec<Bytes> =
                    v.attachments_hex.iter().map(|h| unhex(h).into()).collect();
                let mut dec = Decoder::new(Format::Json, AttachmentLimits::default());
                let text = v.input.as_deref().unwrap();
                match dec.text(text) {
                    Err(e) => e,
                    Ok(_) => attachments
                        .iter()
                        .find_map(|a| dec.binary(a).err())
                        .unwrap_or_else(|| panic!("{}: accepted", v.name)),
                }
            }
            _ => {
                let bytes = Bytes::from(unhex(v.input_hex.as_deref().unwrap()));
                let mut dec = Decoder::new(Format::MsgPack, AttachmentLimits::default());
                dec.binary(&bytes).map(drop).expect_err(&v.name)
            }
        };
        assert_eq!(error.code(), v.code, "{}: {error}", v.name);
    }
}
