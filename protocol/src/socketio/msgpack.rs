//! The msgpack parser (socket.io-msgpack-parser, on notepack.io): one map per binary message.
//!
//! Decoding walks the map with the crate's bounds-checked MessagePack reader: every length is
//! checked against the bytes that remain, nesting is bounded, unknown keys (socket.io-client
//! sends `options`) are skipped. Binary values stay binary: there are no attachments. Encoding
//! writes the keys in the order the Node server does (`type`, `data`, `id`, `nsp`; an ack's
//! `id` first), so the bytes equal notepack's for the same packet.

use super::error::{check_event_name, SioError};
use super::{check_nsp, write_payload, Args, Event, Field, Object, Packet, PacketType, Payload};
use crate::error::{EncodeError, ProtocolError};
use crate::format::Format;
use crate::msgpack::{
    int, map_len, read_str, skip_value, write_array_len, write_map_len, write_str, write_uint, Int,
    Reader,
};

/// notepack's `undefined`: fixext 1 of type 0. socket.io-client sends it for an absent
/// `data` (a `CONNECT` without auth) and it reads as absent here.
const UNDEFINED: [u8; 3] = [0xd4, 0x00, 0x00];

fn malformed(e: ProtocolError) -> SioError {
    SioError::BadMsgPack(e.message.into_owned())
}

fn bad(why: &str) -> SioError {
    SioError::BadMsgPack(format!("malformed MessagePack: {why}"))
}

/// Decodes one binary message.
pub(crate) fn decode(bytes: &[u8]) -> Result<Packet<'_>, SioError> {
    let mut r = Reader::new(bytes);
    let n = map_len(&mut r)
        .map_err(malformed)?
        .ok_or_else(|| bad("expected a map"))?;
    // type, nsp, data, id: each value's bytes.
    let mut fields: [Option<&[u8]>; 4] = [None; 4];
    for _ in 0..n {
        let key = read_str(&mut r)
            .map_err(malformed)?
            .ok_or_else(|| bad("map keys must be strings"))?;
        let start = r.pos;
        skip_value(&mut r).map_err(malformed)?;
        let value = bytes.get(start..r.pos).ok_or_else(|| bad("truncated"))?;
        let slot = match key {
            b"type" => 0,
            b"nsp" => 1,
            b"data" => 2,
            b"id" => 3,
            _ => continue,
        };
        if fields[slot].replace(value).is_some() {
            return Err(bad("a repeated key"));
        }
    }
    if r.remaining() != 0 {
        return Err(bad("trailing bytes after the packet"));
    }
    let [kind, nsp, data, id] = fields.map(|f| f.filter(|v| *v != UNDEFINED));
    let kind = match kind.map(int) {
        Some(Ok(Int::Unsigned(n))) if n <= 4 => PacketType::from_u8(n as u8),
        _ => None,
    }
    .ok_or(SioError::BadType)?;
    let nsp = nsp
        .and_then(whole_str)
        .filter(|nsp| check_nsp(nsp).is_ok())
        .ok_or(SioError::BadNamespace)?;
    let id = match id.map(int) {
        None => None,
        Some(Ok(Int::Unsigned(n))) => Some(n),
        Some(_) => return Err(SioError::BadId),
    };
    let payload = |d| Payload::new(Format::MsgPack, d);
    Ok(match kind {
        PacketType::Connect => Packet::Connect {
            nsp,
            auth: match data {
                None => None,
                Some(d) if is_map(d) => Some(payload(d)),
                Some(_) => return Err(SioError::BadConnect),
            },
        },
        PacketType::Disconnect if data.is_some() => return Err(SioError::UnexpectedData),
        PacketType::Disconnect => Packet::Disconnect { nsp },
        PacketType::Event => {
            let (len, rest) = data.and_then(array).ok_or(SioError::BadEvent)?;
            let mut r = Reader::new(rest);
            let name = match read_str(&mut r) {
                Ok(Some(name)) if len > 0 => std::str::from_utf8(name).ok(),
                _ => None,
            }
            .ok_or(SioError::BadEvent)?;
            check_event_name(name)?;
            Packet::Event(Event {
                nsp,
                name: name.into(),
                args: Args::new(
                    Format::MsgPack,
                    len - 1,
                    rest.get(r.pos..).unwrap_or_default(),
                ),
                id,
                offset: None,
            })
        }
        PacketType::Ack => {
            let (len, rest) = data.and_then(array).ok_or(SioError::BadAck)?;
            Packet::Ack {
                nsp,
                id: id.ok_or(SioError::MissingId)?,
                args: Args::new(Format::MsgPack, len, rest),
            }
        }
        _ => match data {
            Some(d) if is_map(d) || whole_str(d).is_some() => Packet::ConnectError {
                nsp,
                data: payload(d),
            },
            _ => return Err(SioError::BadConnectError),
        },
    })
}

/// The string at `key` of a MessagePack map (see [`Payload::str_field`]).
pub(crate) fn str_field<'a>(map: &'a [u8], key: &str) -> Option<&'a str> {
    let mut r = Reader::new(map);
    for _ in 0..map_len(&mut r).ok()?? {
        let k = read_str(&mut r).ok()?;
        let start = r.pos;
        skip_value(&mut r).ok()?;
        if k == Some(key.as_bytes()) {
            return whole_str(map.get(start..r.pos)?);
        }
    }
    None
}

/// A str value that is the whole of `value`, as UTF-8.
fn whole_str(value: &[u8]) -> Option<&str> {
    let mut r = Reader::new(value);
    let s = read_str(&mut r).ok().flatten()?;
    (r.remaining() == 0).then_some(())?;
    std::str::from_utf8(s).ok()
}

const fn is_map(value: &[u8]) -> bool {
    matches!(value.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// An array value's length and the bytes of its elements.
fn array(value: &[u8]) -> Option<(usize, &[u8])> {
    let mut r = Reader::new(value);
    let len = match r.byte().ok()? {
        m @ 0x90..=0x9f => usize::from(m & 0x0f),
        0xdc => usize::try_from(r.uint(2).ok()?).ok()?,
        0xdd => usize::try_from(r.uint(4).ok()?).ok()?,
        _ => return None,
    };
    Some((len, value.get(r.pos..)?))
}

/// Args from one MessagePack array value.
pub(crate) fn args_from_array(value: &[u8]) -> Result<Args<'_>, SioError> {
    let mut r = Reader::new(value);
    skip_value(&mut r).map_err(malformed)?;
    if r.remaining() != 0 {
        return Err(bad("trailing bytes after the array"));
    }
    let (len, rest) = array(value).ok_or(SioError::BadAck)?;
    Ok(Args::new(Format::MsgPack, len, rest))
}

/// Splits the first value off MessagePack args (validated values, one after the other).
pub(crate) fn split_first(args: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(args);
    skip_value(&mut r).ok()?;
    Some((args.get(..r.pos)?, args.get(r.pos..)?))
}

/// Appends any packet.
pub(crate) fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect { nsp, auth } => {
            write_map_len(2 + u32::from(auth.is_some()), out)?;
            write_type(PacketType::Connect, out)?;
            if let Some(auth) = auth {
                write_str("data", out)?;
                write_payload(*auth, Format::MsgPack, out)?;
            }
            write_nsp(nsp, out)
        }
        Packet::Disconnect { nsp } => {
            write_map_len(2, out)?;
            write_type(PacketType::Disconnect, out)?;
            write_nsp(nsp, out)
        }
        Packet::Event(event) => write_event(event, out),
        Packet::Ack { nsp, id, args } => {
            write_map_len(4, out)?;
            write_str("id", out)?;
            write_uint(*id, out)?;
            write_type(PacketType::Ack, out)?;
            write_str("data", out)?;
            write_array_len(args.len(), out)?;
            write_args(args, out)?;
            write_nsp(nsp, out)
        }
        Packet::ConnectError { nsp, data } => {
            write_map_len(3, out)?;
            write_type(PacketType::ConnectError, out)?;
            write_str("data", out)?;
            write_payload(*data, Format::MsgPack, out)?;
            write_nsp(nsp, out)
        }
    }
}

/// Appends an event: `{type: 2, data: [name, ...args, offset?], id?, nsp}`.
pub(crate) fn write_event(event: &Event<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(3 + u32::from(event.id.is_some()), out)?;
    write_type(PacketType::Event, out)?;
    write_str("data", out)?;
    let extra = 1 + usize::from(event.offset.is_some());
    write_array_len(event.args.len().saturating_add(extra), out)?;
    write_str(&event.name, out)?;
    write_args(&event.args, out)?;
    if let Some(offset) = event.offset {
        write_str(offset, out)?;
    }
    if let Some(id) = event.id {
        write_str("id", out)?;
        write_uint(id, out)?;
    }
    write_nsp(event.nsp, out)
}

/// Appends a `CONNECT` answer or a `CONNECT_ERROR`: `{type, data: {<key>, <key>?}, nsp}`.
pub(crate) fn write_object(object: Object<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (key, value) = object.first;
    write_map_len(3, out)?;
    write_type(object.kind, out)?;
    write_str("data", out)?;
    write_map_len(1 + u32::from(object.extra.is_some()), out)?;
    write_str(key, out)?;
    write_str(value, out)?;
    if let Some((key, value)) = object.extra {
        write_str(key, out)?;
        match value {
            Field::Str(s) => write_str(s, out)?,
            Field::Data(data) => crate::transcode(data, Format::MsgPack, out)?,
        }
    }
    write_nsp(object.nsp, out)
}

fn write_type(kind: PacketType, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_str("type", out)?;
    write_uint(u64::from(kind.as_u8()), out)
}

fn write_nsp(nsp: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_nsp(nsp)?;
    write_str("nsp", out)?;
    write_str(nsp, out)
}

/// Appends the args' elements (the array header is the caller's); binary values stay `bin`.
fn write_args(args: &Args<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if !args.attachments().is_empty() {
        return Err(EncodeError(
            "binary attachments cannot be sent with the msgpack parser".into(),
        ));
    }
    super::write_args(args, Format::MsgPack, None, false, out, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn unhex(h: &str) -> Vec<u8> {
        hex::decode(h.replace(' ', "")).unwrap()
    }

    #[test]
    fn reads_undefined_as_absent_and_skips_unknown_keys() {
        // {type: 2, data: ["e", undefined, bin(1)], options: {compress: true}, id: undefined, nsp: "/"}
        let bytes = unhex(
            "85 a4747970 6502 a464617461 93a165 d40000 c40101 \
             a76f7074696f6e73 81a8636f6d7072657373c3 a26964 d40000 a36e7370 a12f",
        );
        let Packet::Event(e) = decode(&bytes).unwrap() else {
            panic!("an event")
        };
        assert_eq!((e.name.as_ref(), e.id, e.nsp), ("e", None, "/"));
        let items: Vec<_> = e.args.iter().map(|p| p.bytes()).collect();
        assert_eq!(items, [&[0xd4, 0, 0][..], &[0xc4, 0x01, 0x01]]);
        // `undefined` is not wsgate data, and cannot go to a JSON client; bin is.
        let data: Vec<_> = e.args.iter().map(|p| p.data().is_ok()).collect();
        assert_eq!(data, [false, true]);
        let mut out = Vec::new();
        assert!(crate::socketio::encode_event(Format::Json, &e, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn binary_passes_both_ways_and_becomes_attachments_for_the_default_parser() {
        // {type: 2, data: ["e", {a: bin(1, 2)}], nsp: "/"}, as notepack writes it.
        let bytes = unhex("83 a474797065 02 a464617461 92 a165 81 a161 c4 02 0102 a36e7370 a12f");
        let Packet::Event(e) = decode(&bytes).unwrap() else {
            panic!("an event")
        };
        let mut out = Vec::new();
        let none = crate::socketio::encode_event(Format::MsgPack, &e, &mut out).unwrap();
        assert!(none.is_empty());
        assert_eq!(out, bytes, "bin stays in the packet, byte for byte");
        let mut out = Vec::new();
        let attachments = crate::socketio::encode_event(Format::Json, &e, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"51-["e",{"a":{"_placeholder":true,"num":0}}]"#
        );
        assert_eq!(attachments, [&[1u8, 2][..]]);
    }

    #[test]
    fn refuses_repeated_keys_trailing_bytes_and_lying_lengths() {
        for (h, code) in [
            (
                "83 a474797065 02 a474797065 02 a36e7370 a12f",
                "sio.bad_msgpack",
            ),
            ("82 a474797065 01 a36e7370 a12f c0", "sio.bad_msgpack"),
            ("82 a474797065 01 a36e7370 a2612c", "sio.bad_namespace"),
            ("82 a474797065 01 a36e7370 a161", "sio.bad_namespace"),
            (
                "83 a474797065 02 a464617461 dd ffffffff a36e7370 a12f",
                "sio.bad_msgpack",
            ),
            ("df ffffffff", "sio.bad_msgpack"),
            (
                "83 a474797065 03 a464617461 90 a36e7370 a12f",
                "sio.missing_id",
            ),
            (
                "84 a474797065 02 a464617461 91a165 a26964 ff a36e7370 a12f",
                "sio.bad_id",
            ),
            (
                "83 a474797065 02 a464617461 91a7636f6e6e656374 a36e7370 a12f",
                "sio.reserved_event",
            ),
            (
                "83 a474797065 02 a464617461 91 c4 01 00 a36e7370 a12f",
                "sio.bad_event",
            ),
            ("81 01 02", "sio.bad_msgpack"),
        ] {
            let got = decode(&unhex(h)).unwrap_err();
            assert_eq!(got.code(), code, "{h}: {got}");
        }
        let deep = [
            vec![0x83, 0xa4],
            b"type".to_vec(),
            vec![0x02, 0xa4],
            b"data".to_vec(),
        ]
        .concat();
        let nested = [deep, vec![0x91; 100], vec![0xa1, b'e']].concat();
        assert_eq!(decode(&nested).unwrap_err().code(), "sio.bad_msgpack");
    }

    #[test]
    fn reads_auth_fields() {
        // {pid: "p", offset: undefined, token: "t", 1: 2} as socket.io-client may send it.
        let auth = unhex("84 a3706964 a170 a66f6666736574 d40000 a5746f6b656e a174 01 02");
        let auth = Payload::new(Format::MsgPack, &auth);
        assert_eq!(auth.str_field("pid").as_deref(), Some("p"));
        assert_eq!(auth.str_field("offset"), None);
        assert_eq!(auth.str_field("token").as_deref(), Some("t"));
        assert_eq!(auth.str_field("sid"), None);
        let json = br#"{"a":{"token":"x"},"token":"t\u00e9","pid":1,"token":"second"}"#;
        let auth = Payload::new(Format::Json, json);
        assert_eq!(auth.str_field("token").as_deref(), Some("té"));
        assert_eq!(auth.str_field("pid"), None);
        assert_eq!(auth.str_field("a"), None);
    }

    #[test]
    fn args_from_an_array() {
        let bytes = unhex("92 01 a17a");
        let args = Args::from_array(Format::MsgPack, &bytes).unwrap();
        assert_eq!((args.len(), args.bytes()), (2, &[0x01, 0xa1, 0x7a][..]));
        assert!(Args::from_array(Format::MsgPack, &unhex("92 01")).is_err());
        assert!(Args::from_array(Format::MsgPack, &unhex("91 01 01")).is_err());
        assert!(Args::from_array(Format::MsgPack, &unhex("80")).is_err());
    }
}
