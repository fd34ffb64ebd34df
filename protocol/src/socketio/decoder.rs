//! The receiving side of one Engine.IO connection: each message becomes a packet, except that a
//! binary packet of the default parser waits for its attachments.

use bytes::Bytes;

use super::error::SioError;
use super::{json, msgpack, Packet};
use crate::format::Format;

/// How much a binary packet may make the decoder hold. An announced count over the limit is
/// refused from the packet's header, before anything is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Most attachments one packet may announce. Default: 10 (socket.io-parser's
    /// `maxAttachments`).
    pub max_attachments: usize,
    /// Most bytes a packet's attachments may hold in all. Default: 1 000 000 (Engine.IO's
    /// default `maxPayload`).
    pub max_bytes: usize,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits {
            max_attachments: 10,
            max_bytes: 1_000_000,
        }
    }
}

/// What one message gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete packet.
    Packet(Packet<'a>),
    /// A binary packet's header arrived, or one of its attachments: this many binary messages
    /// are still to come before the packet is complete.
    NeedAttachments {
        /// The attachments still expected (at least 1).
        remaining: usize,
    },
}

/// Decodes the packets of one connection, one Engine.IO message at a time, for one parser.
///
/// A refused message is an error and leaves the decoder idle (any half-received binary packet
/// is dropped); the reference server closes the connection then.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    limits: AttachmentLimits,
    /// A binary packet waiting for attachments: its header text (copied: the message it came
    /// in is gone by the time the attachments arrive) and what came so far.
    pending: Option<Pending>,
    /// The last binary packet completed: the packet [`Decoder::binary`] returned borrows it.
    complete: Option<(String, Vec<Bytes>)>,
}

#[derive(Debug)]
struct Pending {
    text: String,
    expected: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

impl Decoder {
    /// A decoder for the default parser ([`Format::Json`]) or the msgpack parser
    /// ([`Format::MsgPack`]).
    pub fn new(format: Format, limits: AttachmentLimits) -> Decoder {
        Decoder {
            format,
            limits,
            pending: None,
            complete: None,
        }
    }

    /// The parser this decoder reads.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// Whether a binary packet is waiting for attachments.
    pub const fn is_awaiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes a text message (the content of an Engine.IO `message` packet after its `4`).
    pub fn text<'a>(&'a mut self, text: &'a str) -> Result<Decoded<'a>, SioError> {
        self.complete = None;
        if self.format == Format::MsgPack || self.pending.take().is_some() {
            return Err(SioError::UnexpectedText);
        }
        let (packet, attachments) = json::decode(text, self.limits.max_attachments)?;
        if attachments == 0 {
            return Ok(Decoded::Packet(packet));
        }
        self.pending = Some(Pending {
            text: text.to_owned(),
            expected: attachments,
            // At most `max_attachments`: checked from the header.
            attachments: Vec::with_capacity(attachments),
            bytes: 0,
        });
        Ok(Decoded::NeedAttachments {
            remaining: attachments,
        })
    }

    /// Decodes a binary message: a whole packet for the msgpack parser, an attachment for the
    /// default parser.
    pub fn binary<'a>(&'a mut self, data: &'a Bytes) -> Result<Decoded<'a>, SioError> {
        self.complete = None;
        if self.format == Format::MsgPack {
            return msgpack::decode(data).map(Decoded::Packet);
        }
        let mut pending = self.pending.take().ok_or(SioError::UnexpectedBinary)?;
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.limits.max_bytes {
            return Err(SioError::AttachmentsTooLarge {
                max: self.limits.max_bytes,
            });
        }
        pending.attachments.push(data.clone());
        let remaining = pending.expected.saturating_sub(pending.attachments.len());
        if remaining > 0 {
            self.pending = Some(pending);
            return Ok(Decoded::NeedAttachments { remaining });
        }
        let (text, attachments) = &*self.complete.insert((pending.text, pending.attachments));
        // The header decoded when it arrived; decoding it again gives the same packet.
        let (packet, _) = json::decode(text, self.limits.max_attachments)?;
        Ok(Decoded::Packet(match packet {
            Packet::Event(mut e) => {
                e.args = e.args.with_attachments(attachments);
                Packet::Event(e)
            }
            Packet::Ack { nsp, id, args } => Packet::Ack {
                nsp,
                id,
                args: args.with_attachments(attachments),
            },
            other => other,
        }))
    }
}
