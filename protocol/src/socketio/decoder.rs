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
    /// Most bytes a binary packet may hold in all, its text and its attachments: a server's
    /// bound on one message, whatever number of Engine.IO messages carries it. Default:
    /// 1 000 000 (Engine.IO's default `maxPayload`).
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
            bytes: text.len(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::socketio::{encode, Event};

    fn json() -> Decoder {
        Decoder::new(Format::Json, AttachmentLimits::default())
    }

    fn one(text: &str) -> Result<Packet<'_>, SioError> {
        match json::decode(text, 10)? {
            (p, 0) => Ok(p),
            (_, n) => panic!("{text}: waits for {n} attachments"),
        }
    }

    fn event(text: &str) -> Event<'_> {
        match one(text) {
            Ok(Packet::Event(e)) => e,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn stricter_than_socket_io_parser() {
        // socket.io-parser reads "" as CONNECT, a number as an event name, an ACK without id,
        // and ids past 2^53 as rounded numbers; wsgate refuses them.
        for (text, error) in [
            ("", SioError::BadType),
            ("2[1]", SioError::BadEvent),
            ("3[]", SioError::MissingId),
            ("318446744073709551616[]", SioError::BadId),
            (r#"2["\ud800"]"#, SioError::BadData("".into())),
            ("2 ", SioError::BadJson("".into())),
            (
                "599999999999999999999999-[]",
                SioError::TooManyAttachments { max: 10 },
            ),
        ] {
            let got = one(text).unwrap_err();
            assert_eq!(got.code(), error.code(), "{text}: {got}");
        }
        let deep = format!("2[\"e\",{}{}]", "[".repeat(64), "]".repeat(64));
        assert_eq!(one(&deep).unwrap_err().code(), "sio.bad_data");
        let ok = format!("2[\"e\",{}{}]", "[".repeat(63), "]".repeat(63));
        assert!(one(&ok).is_ok());
    }

    #[test]
    fn reads_the_header_as_socket_io_parser_does() {
        assert_eq!(
            one("0/random").unwrap(),
            Packet::Connect {
                nsp: "/random",
                auth: None
            }
        );
        // Without its comma the namespace runs to the end: no data is left for the event.
        assert_eq!(one(r#"2/admin["x"]"#).unwrap_err(), SioError::BadEvent);
        let e = event("2/a,18446744073709551615[\"e\"]");
        assert_eq!((e.nsp, e.id), ("/a", Some(u64::MAX)));
    }

    #[test]
    fn borrows_names_and_args_and_unescapes_only_when_needed() {
        let e = event(r#"2 [ "chat" , 1 , {"a":"]"} ] "#);
        assert!(matches!(e.name, std::borrow::Cow::Borrowed("chat")));
        assert_eq!(e.args.bytes(), br#"1 , {"a":"]"}"#);
        let items: Vec<_> = e.args.iter().map(|p| p.bytes()).collect();
        assert_eq!(items, [&b"1"[..], br#"{"a":"]"}"#]);
        let e = event(r#"2["a\"b\u00e9"]"#);
        assert!(matches!(e.name, std::borrow::Cow::Owned(_)));
        assert_eq!(e.name, "a\"bé");
        assert!(e.args.is_empty());
    }

    #[test]
    fn reassembles_a_binary_packet() {
        let mut dec = json();
        let text =
            r#"52-/up,9["f",{"a":{"_placeholder":true,"num":1}},{"_placeholder":true,"num":0}]"#;
        assert_eq!(
            dec.text(text),
            Ok(Decoded::NeedAttachments { remaining: 2 })
        );
        assert!(dec.is_awaiting());
        let (a, b) = (Bytes::from_static(b"\x01\x02"), Bytes::from_static(b""));
        assert_eq!(
            dec.binary(&a),
            Ok(Decoded::NeedAttachments { remaining: 1 })
        );
        let Ok(Decoded::Packet(Packet::Event(e))) = dec.binary(&b) else {
            panic!("incomplete")
        };
        assert_eq!((e.nsp, e.id, e.args.len()), ("/up", Some(9), 2));
        assert_eq!(e.args.attachments(), [a.clone(), b.clone()]);
        // And back: the same header, the same attachments to send after it.
        let mut out = Vec::new();
        encode(Format::Json, &Packet::Event(e), &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
        assert!(!dec.is_awaiting());
    }

    #[test]
    fn placeholders_must_name_an_attachment() {
        for (text, ok) in [
            (r#"51-["f",{"_placeholder":true,"num":0}]"#, true),
            (r#"51-["f",{"_placeholder":false,"num":7}]"#, true),
            (r#"51-["f",{"num":7}]"#, true),
            (r#"51-["f",[{"_placeholder":true,"num":1}]]"#, false),
            (r#"51-["f",{"num":0.0,"_placeholder":true}]"#, false),
            (r#"51-["f",{"_placeholder":true}]"#, false),
            (r#"61-1[{"_placeholder":true,"num":"0"}]"#, false),
        ] {
            let got = json::decode(text, 10).map(|(_, n)| n);
            assert_eq!(got.is_ok(), ok, "{text}: {got:?}");
            if !ok {
                assert_eq!(got, Err(SioError::BadPlaceholder), "{text}");
            }
        }
    }

    #[test]
    fn bounds_attachments_and_their_order() {
        // Each header below is 8 bytes: it counts too.
        let limits = AttachmentLimits {
            max_attachments: 2,
            max_bytes: 8 + 4,
        };
        let mut dec = Decoder::new(Format::Json, limits);
        let big = r#"53-["f"]"#;
        assert_eq!(dec.text(big), Err(SioError::TooManyAttachments { max: 2 }));
        assert_eq!(
            dec.text(r#"52-["f"]"#),
            Ok(Decoded::NeedAttachments { remaining: 2 })
        );
        let three = Bytes::from_static(b"abc");
        assert!(dec.binary(&three).is_ok());
        assert_eq!(
            dec.binary(&three),
            Err(SioError::AttachmentsTooLarge { max: 12 })
        );
        // The refused packet is dropped: the next binary message was announced by nothing.
        assert_eq!(dec.binary(&three), Err(SioError::UnexpectedBinary));
        assert_eq!(
            dec.text(r#"51-["f"]"#),
            Ok(Decoded::NeedAttachments { remaining: 1 })
        );
        assert_eq!(dec.text(r#"2["f"]"#), Err(SioError::UnexpectedText));
        assert!(matches!(dec.text(r#"2["f"]"#), Ok(Decoded::Packet(_))));

        let mut mp = Decoder::new(Format::MsgPack, AttachmentLimits::default());
        assert_eq!(mp.text("2[\"f\"]"), Err(SioError::UnexpectedText));
        assert_eq!(mp.format(), Format::MsgPack);
    }
}
