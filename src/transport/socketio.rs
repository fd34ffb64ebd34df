//! Socket.IO packets as outbox frames: what a namespace socket's session queues, in the
//! Engine.IO session that carries it. A text frame holds a whole Engine.IO message packet
//! (`4` and the default parser's text); a binary frame holds one msgpack-parser packet (an
//! Engine.IO binary message). A binary packet of the default parser is a run of frames in one
//! `Bytes`: its text frame, then each attachment's binary frame, so they are queued together
//! and in order. Each builder encodes once; fan-out shares the bytes.

use std::io::Write;

use bytes::Bytes;
use wsgate_protocol::socketio::{self, Args, Event, Packet};
use wsgate_protocol::{EncodeError, Format, RawData, MAX_BINARIES};

use super::ws::frame::{self, OpCode};

/// Bytes reserved ahead of a packet's payload, for its header and name.
const HEAD_ROOM: usize = 64;

/// Builds one frame for `parser`: the default parser's packet as an Engine.IO text message
/// (`4` first), followed by its attachments' binary frames when `encode` gives some; the
/// msgpack parser's as a binary message. `None` when it cannot be encoded (data the parser
/// cannot carry), which is logged.
fn build(
    parser: Format,
    size_hint: usize,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<Vec<Bytes>, EncodeError>,
) -> Option<Bytes> {
    let mut attachments = Vec::new();
    let built = match parser {
        Format::Json => frame::build(OpCode::Text, HEAD_ROOM + size_hint, |out| {
            out.push(b'4');
            attachments = encode(out)?;
            Ok(())
        }),
        Format::MsgPack => frame::build(OpCode::Binary, HEAD_ROOM + size_hint, |out| {
            encode(out).map(drop)
        }),
    };
    let packet = built
        .inspect_err(|e| tracing::debug!(error = %e, "a Socket.IO packet could not be encoded"))
        .ok()?;
    with_attachments(packet, attachments)
}

/// `packet` followed by its attachments' binary frames, as one run (`packet` alone if it has
/// none); `None` past what the client takes.
fn with_attachments(packet: Bytes, attachments: Vec<Bytes>) -> Option<Bytes> {
    if attachments.is_empty() {
        return Some(packet);
    }
    if attachments.len() > MAX_BINARIES {
        // socket.io-client refuses the packet and drops the connection. One event's data
        // holds no more; an answer gathering many events' may (a history).
        tracing::debug!(
            attachments = attachments.len(),
            "a Socket.IO packet with more attachments than the client takes"
        );
        return None;
    }
    let size = attachments.iter().map(|a| a.len() + 10).sum::<usize>();
    let mut run = Vec::with_capacity(packet.len() + size);
    run.extend_from_slice(&packet);
    for a in &attachments {
        frame::append(OpCode::Binary, a, &mut run);
    }
    Some(Bytes::from(run))
}

/// An event to namespace `nsp`: `["name", data]`, and the recovery `offset` as one more
/// argument when given; with the default parser, binary values in `data` make it a binary
/// event with its attachments.
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
    let mut attachments = Vec::new();
    let built = frame::build(OpCode::Continuation, HEAD_ROOM + hint, |out| {
        let start = out.len();
        attachments = socketio::encode_event(parser, &event, out)?;
        // What the encoder wrote ahead of the cut: the type (`2`, or `5<n>-` for a binary
        // event) and namespace, or the map header.
        let kind = match attachments.len() {
            0 => 1,
            n => 2 + n.to_string().len(),
        };
        let head = match parser {
            Format::Json if nsp == "/" => kind,
            Format::Json => kind + 1 + nsp.len(),
            Format::MsgPack => 1,
        };
        let expected = match parser {
            Format::Json => {
                out.get(start).is_some_and(|t| *t == b'2' || *t == b'5')
                    && out.get(start + head) == Some(&b'[')
            }
            Format::MsgPack => out.get(start) == Some(&MSGPACK_EVENT_MAP),
        };
        if !expected {
            return Err(EncodeError("an event not laid out as expected".into()));
        }
        out.drain(start..start + head);
        Ok(())
    });
    let body = built
        .inspect_err(|e| tracing::error!(error = %e, "a Socket.IO event could not be encoded"))
        .ok()?;
    with_attachments(body, attachments)
}

/// How many attachments follow the first frame of `body` (an [`event_body`]).
pub(crate) fn attachments_after(body: &[u8]) -> usize {
    let mut rest = body;
    let mut frames = 0usize;
    while let Some((_, _, _, len)) = frame::first_server_frame(rest) {
        frames += 1;
        rest = &rest[len..];
    }
    frames.saturating_sub(1)
}

/// The header of the msgpack parser's event without an id: a map of 3 (`type`, `data`, `nsp`).
const MSGPACK_EVENT_MAP: u8 = 0x83;

/// One recipient's first fragment of an event asking for an ack ([`event_body`] is the rest):
/// `42[/nsp,]<id>` (the Engine.IO `4`, the event's `2`) for the default parser, a non-final
/// text frame; for the msgpack parser a non-final binary frame with the map's header (4
/// fields) and its `id` field.
pub(crate) fn ask(parser: Format, nsp: &str, id: u64, attachments: usize) -> Bytes {
    let built = frame::build_fragment(false, frame::opcode_for(parser), 32 + nsp.len(), |out| {
        match parser {
            Format::Json => {
                // Writing to a Vec cannot fail.
                let _ = match attachments {
                    0 => write!(out, "42"),
                    n => write!(out, "45{n}-"),
                };
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

/// An event to namespace `nsp` with `args` as they came from a client: a binary event, with
/// its attachments, when they have some.
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

/// The answer to the client's event `id` with `args`: a binary ack, with its attachments,
/// when they have some (or binary values).
pub(crate) fn ack_args(parser: Format, nsp: &str, id: u64, args: Args<'_>) -> Option<Bytes> {
    let packet = Packet::Ack { nsp, id, args };
    build(parser, args.bytes().len(), |out| {
        socketio::encode(parser, &packet, out)
    })
}

/// The answer to a `CONNECT`: the socket's id, and its `pid` with connection state recovery.
pub(crate) fn connect(parser: Format, nsp: &str, sid: &str, pid: Option<&str>) -> Option<Bytes> {
    build(parser, sid.len() + 16, |out| {
        socketio::encode_connect(parser, nsp, sid, pid, out).map(|()| Vec::new())
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
        socketio::encode_connect_error(parser, nsp, message, data, out).map(|()| Vec::new())
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
    fn a_binary_event_asking_for_an_ack_is_a_binary_event_with_its_id_and_attachments() {
        // {"b": bin [1, 2]}
        let data = RawData::trusted(Format::MsgPack, &[0x81, 0xa1, b'b', 0xc4, 0x02, 1, 2]);
        for (nsp, head) in [("/", &b"451-7"[..]), ("/chat", &b"451-/chat,7"[..])] {
            let body = event_body(Format::Json, nsp, "note", data).unwrap();
            assert_eq!(attachments_after(&body), 1);
            let (op, fin, payload, len) = frame::first_server_frame(&body).unwrap();
            assert_eq!((op, fin), (OpCode::Continuation, true));
            assert_eq!(payload, br#"["note",{"b":{"_placeholder":true,"num":0}}]"#);
            let (op, fin, attachment, _) = frame::first_server_frame(&body[len..]).unwrap();
            assert_eq!((op, fin, attachment), (OpCode::Binary, true, &[1u8, 2][..]));
            let ask = ask(Format::Json, nsp, 7, 1);
            let (_, fin, first, _) = frame::first_server_frame(&ask).unwrap();
            assert_eq!(
                (fin, first),
                (false, head),
                "{}",
                String::from_utf8_lossy(first)
            );
        }
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
        let head = ask(Format::Json, "/", 7, 0);
        assert_eq!(
            &head[..],
            b"\x01\x03427",
            "a first text fragment: 42 and the id"
        );
        assert_eq!(joined(&[&head, &body]), b"427[\"note\",{\"n\":1}]");
        let body = event_body(Format::Json, "/chat", "note", data).unwrap();
        let head = ask(Format::Json, "/chat", 12, 0);
        assert_eq!(joined(&[&head, &body]), b"42/chat,12[\"note\",{\"n\":1}]");
    }

    #[test]
    fn the_msgpack_parsers_fragments_decode_as_the_event_with_its_id() {
        let data = RawData::trusted(Format::Json, br#"{"n":1}"#);
        let body = event_body(Format::MsgPack, "/chat", "note", data).unwrap();
        for id in [0, 0x7f, 0x80, 0xffff, 0x1_0000, 1 << 40] {
            let head = ask(Format::MsgPack, "/chat", id, 0);
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
