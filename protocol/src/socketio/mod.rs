//! Socket.IO v5 packets: the default parser (text, with binary attachments) and socket.io-msgpack-parser.
//!
//! One Socket.IO packet is the content of one Engine.IO `message` (the `4` prefix, `\x1e`
//! payloads and `b<base64>` belong to the Engine.IO layer, not here). The two parsers carry
//! the same packets: the default parser as text, `<type>[<n>-][<nsp>,][<id>]<json>`, followed by
//! `n` binary messages for a binary packet; the msgpack parser as one binary message, a map
//! `{type, data, nsp, id?}`. They correspond to the crate's two [`Format`]s: [`Format::Json`]
//! is the default parser, [`Format::MsgPack`] the msgpack parser, and the payloads they carry
//! are in that format.
//!
//! Decoding ([`Decoder`]) borrows from the message and never builds a tree: an event's
//! arguments stay the encoded bytes they arrived as ([`Args`]). Encoding is shaped for fan-out:
//! [`encode_event`] splices already-encoded data bytes into the packet, transcoding them once
//! when they are in the other format, so one event is encoded once per parser.

mod decoder;
mod error;
mod json;
mod msgpack;
mod payload;
mod placeholder;

use std::borrow::Cow;

use bytes::Bytes;

pub use decoder::{AttachmentLimits, Decoded, Decoder};
pub use error::{SioError, CODES};
pub use payload::{Args, Payload};
pub use placeholder::resolve as resolve_placeholders;

use crate::error::EncodeError;
use crate::format::Format;
use crate::message::RawData;

/// A Socket.IO packet type, with its number on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 0: a client joins a namespace (with its auth payload); the server's answer (the sid).
    Connect = 0,
    /// 1: either side leaves a namespace.
    Disconnect = 1,
    /// 2: an event: `[name, ...args]`, with an ack id when an answer is wanted.
    Event = 2,
    /// 3: the answer to an event that carried an ack id: `[...args]`.
    Ack = 3,
    /// 4: the server refuses a `CONNECT`: `{message, data?}`.
    ConnectError = 4,
    /// 5: an `EVENT` with binary attachments (default parser only).
    BinaryEvent = 5,
    /// 6: an `ACK` with binary attachments (default parser only).
    BinaryAck = 6,
}

impl PacketType {
    /// The type for its wire number.
    pub const fn from_u8(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Connect,
            1 => PacketType::Disconnect,
            2 => PacketType::Event,
            3 => PacketType::Ack,
            4 => PacketType::ConnectError,
            5 => PacketType::BinaryEvent,
            6 => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The wire number.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// An event: what a client emits, and what the server sends to a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The namespace (`/` for the main one).
    pub nsp: &'a str,
    /// The event name: the array's first element.
    pub name: Cow<'a, str>,
    /// The arguments after the name.
    pub args: Args<'a>,
    /// The ack id, when the sender wants an `ACK`.
    pub id: Option<u64>,
    /// Connection state recovery: the event's offset, sent as one more string argument after
    /// `args` (socket.io's session-aware adapter). Never set by the decoder, which cannot tell
    /// it from an argument.
    pub offset: Option<&'a str>,
}

/// One Socket.IO packet; a binary packet of the default parser is its `Event` or `Ack`, with
/// its attachments in [`Args::attachments`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `CONNECT`: from a client, with its optional auth object. (The server's answer is
    /// written by [`encode_connect`].)
    Connect {
        /// The namespace.
        nsp: &'a str,
        /// The auth payload (`socket.handshake.auth`): an object.
        auth: Option<Payload<'a>>,
    },
    /// `DISCONNECT`.
    Disconnect {
        /// The namespace.
        nsp: &'a str,
    },
    /// `EVENT` or `BINARY_EVENT`.
    Event(Event<'a>),
    /// `ACK` or `BINARY_ACK`.
    Ack {
        /// The namespace.
        nsp: &'a str,
        /// The id of the event it answers.
        id: u64,
        /// The answer's arguments.
        args: Args<'a>,
    },
    /// `CONNECT_ERROR`: an object (`{message, data?}`) or, from older peers, a string.
    ConnectError {
        /// The namespace.
        nsp: &'a str,
        /// The error.
        data: Payload<'a>,
    },
}

impl Packet<'_> {
    /// The namespace the packet is for.
    pub fn nsp(&self) -> &str {
        match self {
            Packet::Connect { nsp, .. }
            | Packet::Disconnect { nsp }
            | Packet::Ack { nsp, .. }
            | Packet::ConnectError { nsp, .. } => nsp,
            Packet::Event(e) => e.nsp,
        }
    }

    /// The binary attachments of a `BINARY_EVENT` or `BINARY_ACK` (else none).
    pub fn attachments(&self) -> &[Bytes] {
        match self {
            Packet::Event(e) => e.args.attachments,
            Packet::Ack { args, .. } => args.attachments,
            _ => &[],
        }
    }

    /// The packet's type on the wire (binary types when it has attachments).
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect { .. } => PacketType::Connect,
            Packet::Disconnect { .. } => PacketType::Disconnect,
            Packet::Event(e) if e.args.attachments.is_empty() => PacketType::Event,
            Packet::Event(_) => PacketType::BinaryEvent,
            Packet::Ack { args, .. } if args.attachments.is_empty() => PacketType::Ack,
            Packet::Ack { .. } => PacketType::BinaryAck,
            Packet::ConnectError { .. } => PacketType::ConnectError,
        }
    }
}

/// Appends any packet to `out` (client side, and the server's acks and disconnects), and
/// returns the binary attachments to send after it, in order, as binary messages: with the
/// default parser, an ack whose args have attachments or hold binary values is written as a
/// `BINARY_ACK`, its binary values as placeholders (none with the msgpack parser, where binary
/// stays in the packet). On error `out` is left as it was.
pub fn encode(
    format: Format,
    packet: &Packet<'_>,
    out: &mut Vec<u8>,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut attachments = packet.attachments().to_vec();
    crate::restore_on_error(out, |out| match format {
        Format::Json => json::encode(packet, out, &mut attachments),
        Format::MsgPack => msgpack::encode(packet, out),
    })?;
    Ok(attachments)
}

/// Appends an event to `out`: `2[/nsp,][id]["name",...args(,"offset")]` for the default
/// parser, `{type: 2, data: ["name", ...args], id?, nsp}` for the msgpack parser. Args in the
/// other format are transcoded here, so encode once per parser and send the same bytes to
/// every socket of that parser. Returns the binary attachments to send after it, as for
/// [`encode`]: with the default parser, binary values anywhere in the args make it a
/// `BINARY_EVENT` (`5<n>-…`). On error `out` is left as it was.
pub fn encode_event(
    format: Format,
    event: &Event<'_>,
    out: &mut Vec<u8>,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut attachments = event.args.attachments().to_vec();
    crate::restore_on_error(out, |out| match format {
        Format::Json => json::write_event(event, out, &mut attachments),
        Format::MsgPack => msgpack::write_event(event, out),
    })?;
    Ok(attachments)
}

/// Appends the server's answer to a `CONNECT`: `0[/nsp,]{"sid":"…","pid":"…"}`, `pid` only
/// with connection state recovery. On error `out` is left as it was.
pub fn encode_connect(
    format: Format,
    nsp: &str,
    sid: &str,
    pid: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let object = Object {
        kind: PacketType::Connect,
        nsp,
        first: ("sid", sid),
        extra: pid.map(|pid| ("pid", Field::Str(pid))),
    };
    write_object(format, object, out)
}

/// Appends a refusal of a `CONNECT`: `4[/nsp,]{"message":"…","data":…}` (`data` only when
/// given), which fires the client's `connect_error` with an `Error` whose `message` and `data`
/// these are. On error `out` is left as it was.
pub fn encode_connect_error(
    format: Format,
    nsp: &str,
    message: &str,
    data: Option<RawData<'_>>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let object = Object {
        kind: PacketType::ConnectError,
        nsp,
        first: ("message", message),
        extra: data.map(|data| ("data", Field::Data(data))),
    };
    write_object(format, object, out)
}

/// The object of a `CONNECT` answer or a `CONNECT_ERROR`: a string field, then maybe another.
pub(crate) struct Object<'a> {
    kind: PacketType,
    nsp: &'a str,
    first: (&'a str, &'a str),
    extra: Option<(&'a str, Field<'a>)>,
}

/// The value of an [`Object`]'s second field.
pub(crate) enum Field<'a> {
    Str(&'a str),
    Data(RawData<'a>),
}

fn write_object(format: Format, object: Object<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    crate::restore_on_error(out, |out| match format {
        Format::Json => json::write_object(object, out),
        Format::MsgPack => msgpack::write_object(object, out),
    })
}

/// Whether `nsp` can be written: it starts with `/` and holds no `,` (the default parser ends
/// the namespace at the first comma).
pub(crate) fn check_nsp(nsp: &str) -> Result<(), EncodeError> {
    if nsp.starts_with('/') && !nsp.contains(',') {
        Ok(())
    } else {
        Err(EncodeError(format!(
            "namespace {nsp:?}: must start with `/` and hold no `,`"
        )))
    }
}

/// Appends the args' elements in `target`, separated by `separator` (JSON's comma), with one
/// before the first too when `lead`; the array around them is the caller's. In JSON, binary
/// values become placeholders, their bytes pushed to `attachments`.
pub(crate) fn write_args(
    args: &Args<'_>,
    target: Format,
    separator: Option<u8>,
    lead: bool,
    out: &mut Vec<u8>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    if args.one_data {
        // One value known to be wsgate data: written whole.
        if lead {
            out.extend(separator);
        }
        return write_data(
            RawData::trusted(args.format, args.bytes),
            target,
            out,
            attachments,
        );
    }
    if args.format == target {
        // As they came (a binary packet's placeholders included).
        if lead && !args.is_empty() {
            out.extend(separator);
        }
        out.extend_from_slice(args.bytes);
        return Ok(());
    }
    for (i, arg) in args.iter().enumerate() {
        if lead || i > 0 {
            out.extend(separator);
        }
        write_data(data_of(arg, target)?, target, out, attachments)?;
    }
    Ok(())
}

/// Appends one value of wsgate data in `target`: in JSON with placeholders for its binary
/// values (their bytes pushed to `attachments`), in MessagePack with them as `bin`.
fn write_data(
    data: RawData<'_>,
    target: Format,
    out: &mut Vec<u8>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    match target {
        Format::Json => crate::transcode::transcode_with_placeholders(data, out, attachments),
        Format::MsgPack => crate::transcode(data, target, out),
    }
}

/// Appends one payload in `target`: a copy in its own format, else transcoded (a MessagePack
/// payload must then be wsgate data); binary values in JSON as `{"$binary": …}` (a `CONNECT`'s
/// or `CONNECT_ERROR`'s payload has no attachments).
pub(crate) fn write_payload(
    payload: Payload<'_>,
    target: Format,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    crate::transcode(data_of(payload, target)?, target, out)
}

/// A payload as data to write in `target`: a MessagePack payload must be wsgate data (it may
/// hold what is not: ext, `undefined`) to become JSON.
fn data_of(payload: Payload<'_>, target: Format) -> Result<RawData<'_>, EncodeError> {
    match (payload.format(), target) {
        (Format::MsgPack, Format::Json) => payload
            .data()
            .map_err(|e| EncodeError(format!("a MessagePack value for JSON: {}", e.message))),
        (format, _) => Ok(RawData::trusted(format, payload.bytes())),
    }
}
