//! The default parser (socket.io-parser): `<type>[<n>-][<nsp>,][<id>]<json>` in a text message.
//!
//! The header is read byte by byte; the JSON is checked by serde_json without building a tree
//! (elements are borrowed as raw text), then for depth and representability as wsgate data.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use super::error::{check_event_name, SioError};
use super::{
    check_nsp, write_args, write_payload, Args, Event, Field, Object, Packet, PacketType, Payload,
};
use crate::error::EncodeError;
use crate::format::Format;
use crate::json::{unquote, write_str, write_u64};

/// Decodes one text message into its packet and the number of attachments it announced (0
/// unless it is a binary packet, whose args then lack their attachments).
pub(crate) fn decode(text: &str, max_attachments: usize) -> Result<(Packet<'_>, usize), SioError> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|b| b.checked_sub(b'0'))
        .and_then(PacketType::from_u8)
        .ok_or(SioError::BadType)?;
    let mut i = 1;
    let mut attachments = 0;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let (n, end) = digits(bytes, i);
        if end == i || bytes.get(end) != Some(&b'-') || n == Some(0) {
            return Err(SioError::BadAttachments);
        }
        attachments = n
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= max_attachments)
            .ok_or(SioError::TooManyAttachments {
                max: max_attachments,
            })?;
        i = end + 1;
    }
    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let end = bytes[i..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |p| i + p);
        nsp = text.get(i..end).ok_or(SioError::BadNamespace)?;
        i = (end + 1).min(bytes.len());
    }
    let (n, end) = digits(bytes, i);
    let id = if end == i {
        None
    } else {
        Some(n.ok_or(SioError::BadId)?)
    };
    let data = match text.get(end..).unwrap_or_default() {
        "" => None,
        raw => match raw.trim_matches(is_json_space) {
            "" => return Err(SioError::BadJson("only whitespace after the header".into())),
            d => Some(d),
        },
    };
    let packet = match kind {
        PacketType::Connect => Packet::Connect {
            nsp,
            auth: data
                .map(|d| payload(d, '{', SioError::BadConnect))
                .transpose()?,
        },
        PacketType::Disconnect if data.is_some() => return Err(SioError::UnexpectedData),
        PacketType::Disconnect => Packet::Disconnect { nsp },
        PacketType::Event | PacketType::BinaryEvent => {
            let (name, args) = array(data, true, SioError::BadEvent)?;
            let name = name.ok_or(SioError::BadEvent)?;
            check_event_name(&name)?;
            Packet::Event(Event {
                nsp,
                name,
                args,
                id,
                offset: None,
            })
        }
        PacketType::Ack | PacketType::BinaryAck => Packet::Ack {
            nsp,
            id: id.ok_or(SioError::MissingId)?,
            args: array(data, false, SioError::BadAck)?.1,
        },
        PacketType::ConnectError => {
            let d = data.ok_or(SioError::BadConnectError)?;
            let open = if d.starts_with('"') { '"' } else { '{' };
            Packet::ConnectError {
                nsp,
                data: payload(d, open, SioError::BadConnectError)?,
            }
        }
    };
    if attachments > 0 {
        if let Some(d) = data {
            super::placeholder::check(d, attachments)?;
        }
    }
    Ok((packet, attachments))
}

/// The run of ASCII digits at `i`: its value (`None` past 2^64-1) and where it ends.
fn digits(bytes: &[u8], i: usize) -> (Option<u64>, usize) {
    let mut n = Some(0u64);
    let mut end = i;
    while let Some(d) = bytes.get(end).filter(|b| b.is_ascii_digit()) {
        n = n
            .and_then(|n| n.checked_mul(10))
            .and_then(|n| n.checked_add(u64::from(d - b'0')));
        end += 1;
    }
    (n, end)
}

const fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Checks one whole value: well-formed (else [`SioError::BadJson`]), opening with `open`
/// (else `shape`), and carriable as wsgate data (else [`SioError::BadData`]).
fn payload<'a>(d: &'a str, open: char, shape: SioError) -> Result<Payload<'a>, SioError> {
    serde_json::from_str::<IgnoredAny>(d).map_err(|e| SioError::BadJson(e.to_string()))?;
    if !d.starts_with(open) {
        return Err(shape);
    }
    checked(d)?;
    Ok(Payload::new(Format::Json, d.as_bytes()))
}

fn checked(d: &str) -> Result<(), SioError> {
    crate::transcode::check_json(d).map_err(|e| SioError::BadData(e.message.into_owned()))
}

/// Reads an `EVENT`'s or `ACK`'s array: its name when `named` (`None` if the first element is
/// not a string), and the elements after it.
fn array(
    data: Option<&str>,
    named: bool,
    shape: SioError,
) -> Result<(Option<Cow<'_, str>>, Args<'_>), SioError> {
    let d = data.ok_or_else(|| shape.clone())?;
    if !d.starts_with('[') {
        return Err(match serde_json::from_str::<IgnoredAny>(d) {
            Err(e) => SioError::BadJson(e.to_string()),
            Ok(_) => shape,
        });
    }
    let mut de = serde_json::Deserializer::from_str(d);
    let elements = de
        .deserialize_seq(Elements { named })
        .and_then(|e| de.end().map(|()| e))
        .map_err(|e| SioError::BadJson(e.to_string()))?;
    checked(d)?;
    let name = match elements.name {
        Some(raw) => Some(unquote(raw.get()).map_err(|_| shape.clone())?),
        None if named => return Err(shape),
        None => None,
    };
    let rest = match elements.rest {
        // Both are slices of `d`, which the deserializer borrows from.
        Some((first, last)) => {
            let base = d.as_ptr() as usize;
            let start = (first.as_ptr() as usize).checked_sub(base);
            let end = (last.as_ptr() as usize + last.len()).checked_sub(base);
            start
                .zip(end)
                .and_then(|(start, end)| d.get(start..end))
                .ok_or(shape)?
        }
        None => "",
    };
    Ok((name, Args::new(Format::Json, elements.len, rest.as_bytes())))
}

/// Args from one JSON array's text.
pub(crate) fn args_from_array(array: &[u8]) -> Result<Args<'_>, SioError> {
    let text = std::str::from_utf8(array).map_err(|e| SioError::BadJson(e.to_string()))?;
    self::array(
        Some(text.trim_matches(is_json_space)),
        false,
        SioError::BadAck,
    )
    .map(|(_, a)| a)
}

/// An array as raw elements: the first kept apart when it names an event, the rest only as
/// the first and last of them (their span is the args) and a count.
struct Elements {
    named: bool,
}

struct ElementsSeen<'de> {
    name: Option<&'de RawValue>,
    rest: Option<(&'de str, &'de str)>,
    len: usize,
}

impl<'de> Visitor<'de> for Elements {
    type Value = ElementsSeen<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut seen = ElementsSeen {
            name: None,
            rest: None,
            len: 0,
        };
        if self.named {
            seen.name = seq.next_element::<&'de RawValue>()?;
            if seen.name.is_none_or(|n| !n.get().starts_with('"')) {
                // Not a name: the shape error is reported, the rest need not be read.
                seen.name = None;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(seen);
            }
        }
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let first = seen.rest.map_or(raw.get(), |(first, _)| first);
            seen.rest = Some((first, raw.get()));
            seen.len += 1;
        }
        Ok(seen)
    }
}

/// Appends any packet; binary values of an event's or ack's args become placeholders, their
/// bytes pushed to `attachments` (which holds the args' own attachments already).
pub(crate) fn encode(
    packet: &Packet<'_>,
    out: &mut Vec<u8>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect { nsp, auth } => {
            write_head(PacketType::Connect, nsp, None, out)?;
            auth.map_or(Ok(()), |auth| write_payload(auth, Format::Json, out))
        }
        Packet::Disconnect { nsp } => write_head(PacketType::Disconnect, nsp, None, out),
        Packet::Event(event) => write_event(event, out, attachments),
        Packet::Ack { nsp, id, args } => {
            let head = out.len();
            write_head(PacketType::Ack, nsp, Some(*id), out)?;
            out.push(b'[');
            write_args(args, Format::Json, Some(b','), false, out, attachments)?;
            out.push(b']');
            mark_binary(out, head, PacketType::Ack, attachments.len());
            Ok(())
        }
        Packet::ConnectError { nsp, data } => {
            write_head(PacketType::ConnectError, nsp, None, out)?;
            write_payload(*data, Format::Json, out)
        }
    }
}

/// Appends an event: `2[/nsp,][id]["name",...args(,"offset")]` (`5<n>-…` with attachments:
/// the args' own, in `attachments` already, and their binary values', pushed there).
pub(crate) fn write_event(
    event: &Event<'_>,
    out: &mut Vec<u8>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    let head = out.len();
    write_head(PacketType::Event, event.nsp, event.id, out)?;
    out.push(b'[');
    write_str(&event.name, out);
    write_args(
        &event.args,
        Format::Json,
        Some(b','),
        true,
        out,
        attachments,
    )?;
    if let Some(offset) = event.offset {
        out.push(b',');
        write_str(offset, out);
    }
    out.push(b']');
    mark_binary(out, head, PacketType::Event, attachments.len());
    Ok(())
}

/// Makes the packet whose head starts at `head` (written as `kind`) a binary packet of
/// `attachments`, when there are any: its type digit becomes the binary type and its count.
fn mark_binary(out: &mut Vec<u8>, head: usize, kind: PacketType, attachments: usize) {
    if attachments == 0 {
        return;
    }
    let binary = match kind {
        PacketType::Event => PacketType::BinaryEvent,
        _ => PacketType::BinaryAck,
    };
    let mut digit_and_count = vec![b'0' + binary.as_u8()];
    write_u64(attachments as u64, &mut digit_and_count);
    digit_and_count.push(b'-');
    out.splice(head..=head, digit_and_count);
}

/// Appends the object of a `CONNECT` answer or a `CONNECT_ERROR`:
/// `<type>[/nsp,]{"<key>":"<value>"[,"<key>":<value>]}`.
pub(crate) fn write_object(object: Object<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (key, value) = object.first;
    write_head(object.kind, object.nsp, None, out)?;
    out.push(b'{');
    write_str(key, out);
    out.push(b':');
    write_str(value, out);
    if let Some((key, value)) = object.extra {
        out.push(b',');
        write_str(key, out);
        out.push(b':');
        match value {
            Field::Str(s) => write_str(s, out),
            Field::Data(data) => crate::transcode(data, Format::Json, out)?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// `<type>[<nsp>,][<id>]` (with attachments, see [`mark_binary`]).
fn write_head(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(b'0' + kind.as_u8());
    if nsp != "/" {
        check_nsp(nsp)?;
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        write_u64(id, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;
    use crate::message::RawData;
    use crate::socketio::{encode, encode_connect, encode_connect_error, encode_event};

    fn event<'a>(
        nsp: &'a str,
        args: Args<'a>,
        id: Option<u64>,
        offset: Option<&'a str>,
    ) -> Event<'a> {
        Event {
            nsp,
            name: "e\"v".into(),
            args,
            id,
            offset,
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>) -> String {
        let mut out = b"kept".to_vec();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_server_packets() {
        let data = RawData::trusted(Format::Json, br#"{"a":1}"#);
        let ev = event("/chat", Args::one(data), Some(7), Some("e-42"));
        assert_eq!(
            text(|o| encode_event(Format::Json, &ev, o).map(drop)),
            r#"kept2/chat,7["e\"v",{"a":1},"e-42"]"#
        );
        let ev = event("/", Args::empty(Format::Json), None, None);
        assert_eq!(
            text(|o| encode_event(Format::Json, &ev, o).map(drop)),
            r#"kept2["e\"v"]"#
        );
        assert_eq!(
            text(|o| encode_connect(Format::Json, "/", "s\"1", Some("p"), o)),
            r#"kept0{"sid":"s\"1","pid":"p"}"#
        );
        assert_eq!(
            text(|o| encode_connect_error(Format::Json, "/x", "no", Some(data), o)),
            r#"kept4/x,{"message":"no","data":{"a":1}}"#
        );
        let mp = RawData::trusted(Format::MsgPack, &[0x92, 0x01, 0xa1, 0x78]);
        let ack = Packet::Ack {
            nsp: "/",
            id: 0,
            args: Args::one(mp),
        };
        assert_eq!(
            text(|o| encode(Format::Json, &ack, o).map(drop)),
            r#"kept30[[1,"x"]]"#
        );
    }

    #[test]
    fn binary_values_become_a_binary_packet_after_the_args_own_attachments() {
        let mp = RawData::trusted(Format::MsgPack, &[0x92, 0xc4, 0x01, 0x07, 0xa1, 0x78]);
        let ev = event("/chat", Args::one(mp), Some(12), Some("3.ab"));
        let mut out = b"kept".to_vec();
        let attachments = encode_event(Format::Json, &ev, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"kept51-/chat,12["e\"v",[{"_placeholder":true,"num":0},"x"],"3.ab"]"#
        );
        assert_eq!(attachments, [&[7u8][..]]);
        let json = RawData::trusted(Format::Json, br#"{"type":"reply","d":{"$binary":"AQI="}}"#);
        let ack = Packet::Ack {
            nsp: "/",
            id: 4,
            args: Args::one(json),
        };
        let mut out = Vec::new();
        let attachments = encode(Format::Json, &ack, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"61-4[{"type":"reply","d":{"_placeholder":true,"num":0}}]"#
        );
        assert_eq!(attachments, [&[1u8, 2][..]]);
        // A decoded binary packet's args keep their attachments, first.
        let own = [Bytes::from_static(b"a")];
        let args = Args::from_array(Format::Json, br#"[{"_placeholder":true,"num":0}]"#)
            .unwrap()
            .with_attachments(&own);
        let ev = event("/", args, None, None);
        let mut out = Vec::new();
        let attachments = encode_event(Format::Json, &ev, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"51-["e\"v",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(attachments, [&b"a"[..]]);
        // Decoded again, the packet gives the bytes back.
        let mut out = Vec::new();
        let attachments = encode_event(
            Format::Json,
            &event("/", Args::one(mp), None, None),
            &mut out,
        )
        .unwrap();
        let mut decoder = crate::socketio::Decoder::new(Format::Json, Default::default());
        let text = String::from_utf8(out).unwrap();
        assert!(decoder.text(&text).is_ok());
        let Ok(crate::socketio::Decoded::Packet(Packet::Event(e))) =
            decoder.binary(&attachments[0])
        else {
            panic!("a binary event")
        };
        assert_eq!(e.args.attachments(), &attachments[..]);
    }

    #[test]
    fn refuses_what_it_cannot_write_and_leaves_out_as_it_was() {
        // Decoded MessagePack args may hold `undefined`; wsgate data (`RawData`) never does.
        let bin = Args::from_array(Format::MsgPack, &[0x91, 0xd4, 0x00, 0x00]).unwrap();
        let attachments = [Bytes::from_static(b"x")];
        let with_bin =
            Args::from_array(Format::Json, br#"[{"_placeholder":true,"num":0}]"#).unwrap();
        let cases = [
            (
                Format::Json,
                event("admin", Args::empty(Format::Json), None, None),
            ),
            (
                Format::Json,
                event("/a,b", Args::empty(Format::Json), None, None),
            ),
            (
                Format::MsgPack,
                event("", Args::empty(Format::Json), None, None),
            ),
            (Format::Json, event("/", bin, None, None)),
            (
                Format::MsgPack,
                event("/", with_bin.with_attachments(&attachments), None, None),
            ),
        ];
        for (format, ev) in cases {
            let mut out = b"kept".to_vec();
            assert!(encode_event(format, &ev, &mut out).is_err(), "{ev:?}");
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn splits_args_outside_strings_and_brackets() {
        let args =
            Args::from_array(Format::Json, br#"[ 1 ,"a,\"]b",[2,{"c":[3,4]}], {} ]"#).unwrap();
        let items: Vec<_> = args.iter().map(|p| p.bytes()).collect();
        assert_eq!(
            items,
            [&b"1"[..], br#""a,\"]b""#, br#"[2,{"c":[3,4]}]"#, b"{}"]
        );
        assert_eq!(args.len(), 4);
        assert!(Args::from_array(Format::Json, b"{}").is_err());
        assert!(Args::from_array(Format::Json, b"[1,]").is_err());
    }
}
