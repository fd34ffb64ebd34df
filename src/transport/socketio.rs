//! Socket.IO packets as outbox frames: what a namespace socket's session queues, in the
//! Engine.IO session that carries it. A text frame holds a whole Engine.IO message packet
//! (`4` and the default parser's text); a binary frame holds one msgpack-parser packet (an
//! Engine.IO binary message). Each builder encodes once; fan-out shares the bytes.

use std::io::Write;

use bytes::Bytes;
use wsgate_protocol::socketio::{self, Args, Event, Packet};
use wsgate_protocol::{EncodeError, Format, RawData};

use super::ws::frame::{self, OpCode};

/// Bytes reserved ahead of a packet's payload, for its header and name.
const HEAD_ROOM: usize = 64;

/// Builds one frame for `parser`: the default parser's packet as an Engine.IO text message
/// (`4` first), the msgpack parser's as a binary message. `None` when it cannot be encoded
/// (data the parser cannot carry), which is logged.
fn build(
    parser: Format,
    size_hint: usize,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Option<Bytes> {
    let built = match parser {
        Format::Json => frame::build(OpCode::Text, HEAD_ROOM + size_hint, |out| {
            out.push(b'4');
            encode(out)
        }),
        Format::MsgPack => frame::build(OpCode::Binary, HEAD_ROOM + size_hint, encode),
    };
    built
        .inspect_err(|e| tracing::debug!(error = %e, "a Socket.IO packet could not be encoded"))
        .ok()
}

/// An event to namespace `nsp`: `["name", data]`, and the recovery `offset` as one more
/// argument when given.
pub(crate) fn event(
    parser: Format,
    nsp: &str,
    name: &str,
    data: RawData<'_>,
    offset: Option<&str>,
) -> Option<Bytes> {
    let event = one_arg(nsp, name, data, offset);
    build(parser, name.len() + data.bytes().len(), |out| {
        socketio::encode_event(parser, &event, out)
    })
}

/// The server's event `name` to `nsp` with one argument, `data`, and no ack id.
fn one_arg<'a>(
    nsp: &'a str,
    name: &'a str,
    data: RawData<'a>,
    offset: Option<&'a str>,
) -> Event<'a> {
    Event {
        nsp,
        name: name.into(),
        args: Args::one(data),
        id: None,
        offset,
    }
}

/// An event to namespace `nsp` that asks the client for an ack, as the last fragment of its
/// message (a final continuation frame): the packet after its ack id, shared by every socket
/// of the namespace and parser, each of which is queued its own [`ask`] fragment before it.
/// The default parser's `2[/nsp,]<id>["name",data]` is cut before the id: `["name",data]`.
/// The msgpack parser's map `{type, data, nsp}` is cut after its header: the `id` field goes
/// first, in the recipient's fragment, with the header counting it (a map's fields may come in
/// any order). So the payload is encoded once, and each recipient costs a frame of a few bytes.
pub(crate) fn event_body(
    parser: Format,
    nsp: &str,
    name: &str,
    data: RawData<'_>,
) -> Option<Bytes> {
    let event = one_arg(nsp, name, data, None);
    let hint = name.len() + data.bytes().len();
    let built = frame::build(OpCode::Continuation, HEAD_ROOM + hint, |out| {
        let start = out.len();
        socketio::encode_event(parser, &event, out)?;
        // What the encoder wrote ahead of the cut: the type and namespace, or the map header.
        let head = match parser {
            Format::Json if nsp == "/" => 1,
            Format::Json => 2 + nsp.len(),
            Format::MsgPack => 1,
        };
        let expected = match parser {
            Format::Json => out.get(start) == Some(&b'2') && out.get(start + head) == Some(&b'['),
            Format::MsgPack => out.get(start) == Some(&MSGPACK_EVENT_MAP),
        };
        if !expected {
            return Err(EncodeError("an event not laid out as expected".into()));
        }
        out.drain(start..start + head);
        Ok(())
    });
    built
        .inspect_err(|e| tracing::error!(error = %e, "a Socket.IO event could not be encoded"))
        .ok()
}

/// The header of the msgpack parser's event without an id: a map of 3 (`type`, `data`, `nsp`).
const MSGPACK_EVENT_MAP: u8 = 0x83;

/// One recipient's first fragment of an event asking for an ack ([`event_body`] is the rest):
/// `42[/nsp,]<id>` (the Engine.IO `4`, the event's `2`) for the default parser, a non-final
/// text frame; for the msgpack parser a non-final binary frame with the map's header (4
/// fields) and its `id` field.
pub(crate) fn ask(parser: Format, nsp: &str, id: u64) -> Bytes {
    let built = frame::build_fragment(false, frame::opcode_for(parser), 32 + nsp.len(), |out| {
        match parser {
            Format::Json => {
                out.extend_from_slice(b"42");
                if nsp != "/" {
                    out.extend_from_slice(nsp.as_bytes());
                    out.push(b',');
                }
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{id}");
            }
            Format::MsgPack => {
                out.extend_from_slice(&[MSGPACK_EVENT_MAP + 1, 0xa2, b'i', b'd']);
                msgpack_uint(id, out);
            }
        }
        Ok::<(), std::convert::Infallible>(())
    });
    match built {
        Ok(frame) => frame,
        Err(never) => match never {},
    }
}

/// `n` as MessagePack's shortest unsigned integer.
fn msgpack_uint(n: u64, out: &mut Vec<u8>) {
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// An event to namespace `nsp` with `args` as they came from a client: a binary event when
/// they have attachments, which go after it ([`attachment`]).
pub(crate) fn event_args(parser: Format, nsp: &str, name: &str, args: Args<'_>) -> Option<Bytes> {
    let event = Event {
        nsp,
        name: name.into(),
        args,
        id: None,
        offset: None,
    };
    build(parser, name.len() + args.bytes().len(), |out| {
        socketio::encode_event(parser, &event, out)
    })
}

/// The answer to the client's event `id`: one argument, `data`.
pub(crate) fn ack(parser: Format, nsp: &str, id: u64, data: RawData<'_>) -> Option<Bytes> {
    ack_args(parser, nsp, id, Args::one(data))
}

/// The answer to the client's event `id` with `args`: a binary ack when they have attachments,
/// which go after it ([`attachment`]).
pub(crate) fn ack_args(parser: Format, nsp: &str, id: u64, args: Args<'_>) -> Option<Bytes> {
    let packet = Packet::Ack { nsp, id, args };
    build(parser, args.bytes().len(), |out| {
        socketio::encode(parser, &packet, out)
    })
}

/// One binary attachment of the default parser's binary packet (an Engine.IO binary message),
/// queued right after the packet, in `num` order.
pub(crate) fn attachment(bytes: &[u8]) -> Bytes {
    frame::data(OpCode::Binary, bytes)
}

/// The answer to a `CONNECT`: the socket's id, and its `pid` with connection state recovery.
pub(crate) fn connect(parser: Format, nsp: &str, sid: &str, pid: Option<&str>) -> Option<Bytes> {
    build(parser, sid.len() + 16, |out| {
        socketio::encode_connect(parser, nsp, sid, pid, out)
    })
}

/// A refused `CONNECT`: the client's `connect_error` fires with `message` and `data`.
pub(crate) fn connect_error(
    parser: Format,
    nsp: &str,
    message: &str,
    data: Option<RawData<'_>>,
) -> Option<Bytes> {
    build(parser, message.len() + 32, |out| {
        socketio::encode_connect_error(parser, nsp, message, data, out)
    })
}

/// The server ends the namespace socket: the client's `disconnect` fires with
/// `io server disconnect`.
pub(crate) fn disconnect(parser: Format, nsp: &str) -> Option<Bytes> {
    build(parser, 0, |out| {
        socketio::encode(parser, &Packet::Disconnect { nsp }, out)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wsgate_protocol::socketio::{AttachmentLimits, Decoded, Decoder};

    use super::*;
    use crate::transport::ws::frame::server_payload;

    /// The message that the fragments `parts` carry, their payloads joined.
    fn joined(parts: &[&Bytes]) -> Vec<u8> {
        let mut message = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let (_, fin, payload) = server_payload(part).unwrap();
            assert_eq!(fin, i == parts.len() - 1, "only the last is final");
            message.extend_from_slice(payload);
        }
        message
    }

    #[test]
    fn an_event_asking_for_an_ack_is_the_recipients_fragment_then_the_shared_one() {
        let data = RawData::trusted(Format::Json, br#"{"n":1}"#);
        let body = event_body(Format::Json, "/", "note", data).unwrap();
        assert_eq!(
            &body[..],
            b"\x80\x10[\"note\",{\"n\":1}]",
            "a final continuation"
        );
        let head = ask(Format::Json, "/", 7);
        assert_eq!(
            &head[..],
            b"\x01\x03427",
            "a first text fragment: 42 and the id"
        );
        assert_eq!(joined(&[&head, &body]), b"427[\"note\",{\"n\":1}]");
        let body = event_body(Format::Json, "/chat", "note", data).unwrap();
        let head = ask(Format::Json, "/chat", 12);
        assert_eq!(joined(&[&head, &body]), b"42/chat,12[\"note\",{\"n\":1}]");
    }

    #[test]
    fn the_msgpack_parsers_fragments_decode_as_the_event_with_its_id() {
        let data = RawData::trusted(Format::Json, br#"{"n":1}"#);
        let body = event_body(Format::MsgPack, "/chat", "note", data).unwrap();
        for id in [0, 0x7f, 0x80, 0xffff, 0x1_0000, 1 << 40] {
            let head = ask(Format::MsgPack, "/chat", id);
            // fixmap 4, "id", then the id.
            assert_eq!(&server_payload(&head).unwrap().2[..4], b"\x84\xa2id");
            let message = Bytes::from(joined(&[&head, &body]));
            let limits = AttachmentLimits {
                max_attachments: 0,
                max_bytes: 1 << 20,
            };
            let mut decoder = Decoder::new(Format::MsgPack, limits);
            let Ok(Decoded::Packet(Packet::Event(event))) = decoder.binary(&message) else {
                panic!("an event")
            };
            assert_eq!(
                (event.nsp, &*event.name, event.id),
                ("/chat", "note", Some(id))
            );
            let arg = event.args.iter().next().unwrap().data().unwrap();
            let mut json = Vec::new();
            wsgate_protocol::transcode(arg, Format::Json, &mut json).unwrap();
            assert_eq!(json, br#"{"n":1}"#);
        }
    }
}
