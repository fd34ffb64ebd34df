//! Socket.IO packets as outbox frames: what a namespace socket's session queues, in the
//! Engine.IO session that carries it. A text frame holds a whole Engine.IO message packet
//! (`4` and the default parser's text); a binary frame holds one msgpack-parser packet (an
//! Engine.IO binary message). A binary packet of the default parser is a run of frames in one
//! `Bytes`: its text frame, then each attachment's binary frame, so they are queued together
//! and in order. Each builder encodes once; fan-out shares the bytes.

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
    let event = Event {
        nsp,
        name: name.into(),
        args: Args::one(data),
        id: None,
        offset,
    };
    build(parser, name.len() + data.bytes().len(), |out| {
        socketio::encode_event(parser, &event, out)
    })
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
