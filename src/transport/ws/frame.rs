//! WebSocket frame headers (RFC 6455 §5.2): parsing client frames, encoding server frames.
//!
//! Parsing is two-phase, as in fastwebsockets: the header is checked first (size limits and
//! framing rules are enforced before any payload byte is buffered), then the caller takes the
//! payload. "Need more bytes" is an ordinary value, not an error.

use bytes::{Bytes, BytesMut};

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<OpCode> {
        Some(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) const fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: [u8; 4],
    /// Bytes taken by the header itself.
    pub(crate) header_len: usize,
    /// Bytes of payload that follow the header.
    pub(crate) payload_len: u64,
}

/// Why a client frame breaks the framing rules; the connection is closed with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("client frame not masked")]
    Unmasked,
    #[error("payload length uses more than 63 bits")]
    BadLength,
}

/// Room a server frame needs in front of its payload: 2 + 8 (length), never masked.
pub(crate) const SERVER_HEADROOM: usize = 10;

/// Parses a client frame header from the start of `buf`; `Ok(None)` means more bytes are needed.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::UnknownOpcode(b0 & 0x0F))?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (n, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if opcode.is_control() && (!fin || payload_len > 125) {
        return Err(FrameError::BadControlFrame);
    }
    let mask_at = 2 + len_bytes;
    let Some(m) = buf.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        header_len: mask_at + 4,
        payload_len,
    }))
}

/// Writes an unmasked server frame header (final when `fin`) for `len` payload bytes into the
/// end of `head`, returning how many bytes it used.
fn write_header(head: &mut [u8; SERVER_HEADROOM], fin: bool, opcode: OpCode, len: usize) -> usize {
    let b0 = if fin { 0x80 } else { 0 } | opcode.as_u8();
    if len < 126 {
        head[8] = b0;
        head[9] = len as u8;
        2
    } else if let Ok(len16) = u16::try_from(len) {
        head[6] = b0;
        head[7] = 126;
        head[8..10].copy_from_slice(&len16.to_be_bytes());
        4
    } else {
        head[0] = b0;
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Builds one complete server frame: `fill` appends the payload to a buffer that already holds
/// [`SERVER_HEADROOM`] bytes, and the header is written in front of it without copying the
/// payload. The result can be queued to any number of connections.
pub(crate) fn build<E>(
    opcode: OpCode,
    capacity_hint: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    build_fragment(true, opcode, capacity_hint, fill)
}

/// [`build`] for one fragment of a message (RFC 6455 §5.4): the first carries the message's
/// opcode and is not final; the last is a final [`OpCode::Continuation`]. A message whose
/// first part differs per recipient goes out so: a small first fragment each, and one last
/// fragment shared by all (a Socket.IO event asking for an ack, `transport::socketio`).
pub(crate) fn build_fragment<E>(
    fin: bool,
    opcode: OpCode,
    capacity_hint: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut buf = Vec::with_capacity(SERVER_HEADROOM + capacity_hint);
    buf.resize(SERVER_HEADROOM, 0);
    fill(&mut buf)?;
    let payload_len = buf.len() - SERVER_HEADROOM;
    let mut head = [0u8; SERVER_HEADROOM];
    let used = write_header(&mut head, fin, opcode, payload_len);
    let start = SERVER_HEADROOM - used;
    buf[start..SERVER_HEADROOM].copy_from_slice(&head[start..]);
    Ok(Bytes::from(buf).slice(start..))
}

/// The opcode, finality and payload of one complete server frame (as [`build`],
/// [`build_fragment`], [`data`] and [`control`] write them: unmasked, no reserved bits);
/// `None` for anything else, a run of several frames included.
#[cfg(test)]
pub(crate) fn server_payload(frame: &[u8]) -> Option<(OpCode, bool, &[u8])> {
    match first_server_frame(frame)? {
        (opcode, fin, payload, len) if len == frame.len() => Some((opcode, fin, payload)),
        _ => None,
    }
}

/// The first of the complete server frames `frame` starts with (a frame, or a run of them
/// that [`append`] made): its opcode, finality, payload and whole length; `None` if they do
/// not start with one. For transports that carry the payloads of queued frames without their
/// WebSocket headers (Engine.IO polling), which join a message's fragments again.
pub(crate) fn first_server_frame(frame: &[u8]) -> Option<(OpCode, bool, &[u8], usize)> {
    let [b0, b1, ..] = *frame else { return None };
    let opcode = OpCode::from_u8(b0 & 0x0F)?;
    let (len, at) = match b1 {
        126 => (
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
            4,
        ),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(frame.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(n)).ok()?, 10)
        }
        n if n < 126 => (usize::from(n), 2),
        _ => return None,
    };
    let end = len.checked_add(at)?;
    let payload = frame.get(at..end)?;
    let fin = b0 & 0x80 != 0;
    (b0 & 0x70 == 0).then_some((opcode, fin, payload, end))
}

/// Appends one final, unmasked data frame carrying `payload` to `out`, after the frames it
/// holds: frames that must travel together, in order (a Socket.IO binary packet and its
/// attachments), queued as one `Bytes`.
pub(crate) fn append(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; SERVER_HEADROOM];
    let used = write_header(&mut head, true, opcode, payload.len());
    out.extend_from_slice(&head[SERVER_HEADROOM - used..]);
    out.extend_from_slice(payload);
}

/// The frame opcode that carries a format's messages: text for JSON, binary for MessagePack.
pub(crate) const fn opcode_for(format: wsgate_protocol::Format) -> OpCode {
    if format.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    }
}

/// One final data frame (text or binary) carrying a copy of `payload`.
pub(crate) fn data(opcode: OpCode, payload: &[u8]) -> Bytes {
    let built = build(opcode, payload.len(), |out| {
        out.extend_from_slice(payload);
        Ok::<(), std::convert::Infallible>(())
    });
    match built {
        Ok(frame) => frame,
        Err(never) => match never {},
    }
}

/// A control frame (close, ping, pong) with a payload of at most 125 bytes.
pub(crate) fn control(opcode: OpCode, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(125)];
    let mut out = BytesMut::with_capacity(2 + payload.len());
    out.extend_from_slice(&[0x80 | opcode.as_u8(), payload.len() as u8]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A close frame with a code and a reason (truncated to fit 125 bytes on a char boundary).
pub(crate) fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(OpCode::Close, &payload)
}

/// Whether a close code received from a client is one RFC 6455 §7.4 allows on the wire.
pub(crate) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn server_frames_give_their_payloads_back() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![b'x'; len];
            let frame = super::data(super::OpCode::Text, &payload);
            assert_eq!(
                super::server_payload(&frame),
                Some((super::OpCode::Text, true, &payload[..]))
            );
            assert_eq!(super::server_payload(&frame[..frame.len() - 1]), None);
            let mut run = frame.to_vec();
            super::append(super::OpCode::Binary, &payload, &mut run);
            assert_eq!(super::server_payload(&run), None, "two frames are not one");
            let (op, fin, first, len) = super::first_server_frame(&run).unwrap();
            assert_eq!(
                (op, fin, first, len),
                (super::OpCode::Text, true, &payload[..], frame.len())
            );
            assert_eq!(
                super::server_payload(&run[len..]),
                Some((super::OpCode::Binary, true, &payload[..]))
            );
        }
        let ping = super::control(super::OpCode::Ping, b"");
        assert_eq!(
            super::server_payload(&ping),
            Some((super::OpCode::Ping, true, &b""[..]))
        );
    }

    #[test]
    fn fragments_are_a_first_non_final_frame_then_a_final_continuation() {
        let fill = |b: &mut Vec<u8>| {
            b.extend_from_slice(b"42");
            Ok::<(), ()>(())
        };
        let first = build_fragment(false, OpCode::Text, 2, fill).unwrap();
        assert_eq!(&first[..], b"\x01\x0242", "FIN clear, text, 2 bytes");
        let last = build(OpCode::Continuation, 2, |b| {
            b.extend_from_slice(b"[]");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(&last[..], b"\x80\x02[]", "FIN set, continuation, 2 bytes");
        assert_eq!(
            server_payload(&first),
            Some((OpCode::Text, false, &b"42"[..]))
        );
        assert_eq!(
            server_payload(&last),
            Some((OpCode::Continuation, true, &b"[]"[..]))
        );
    }

    #[test]
    fn parses_masked_text_header() {
        // FIN + text, masked, length 5, mask 01 02 03 04.
        let h = parse_header(&[0x81, 0x85, 1, 2, 3, 4, b'x'])
            .unwrap()
            .unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.header_len, 6);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, [1, 2, 3, 4]);
    }

    #[test]
    fn extended_lengths_and_need_more() {
        assert_eq!(parse_header(&[0x82]).unwrap(), None);
        assert_eq!(parse_header(&[0x82, 0xFE, 0x01]).unwrap(), None);
        let h = parse_header(&[0x82, 0xFE, 0x01, 0x00, 9, 9, 9, 9])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (256, 8));
        let mut b = vec![0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9];
        let h = parse_header(&b).unwrap().unwrap();
        assert_eq!((h.payload_len, h.header_len), (1 << 32, 14));
        b[2] = 0x80;
        assert_eq!(parse_header(&b), Err(FrameError::BadLength));
    }

    #[test]
    fn rejects_rule_breakers() {
        assert_eq!(parse_header(&[0xC1, 0x80]), Err(FrameError::ReservedBits));
        assert_eq!(
            parse_header(&[0x83, 0x80]),
            Err(FrameError::UnknownOpcode(3))
        );
        assert_eq!(parse_header(&[0x81, 0x05]), Err(FrameError::Unmasked));
        assert_eq!(
            parse_header(&[0x09, 0x80]),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            parse_header(&[0x88, 0xFE, 0, 126]),
            Err(FrameError::BadControlFrame)
        );
    }

    #[test]
    fn builds_frames_with_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let f = build::<()>(OpCode::Binary, len, |b| {
                b.resize(b.len() + len, 7);
                Ok(())
            })
            .unwrap();
            let head = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(f.len(), head + len);
            assert_eq!(f[0], 0x82);
            if len >= 126 {
                assert_eq!(f[1], if head == 4 { 126 } else { 127 });
            } else {
                assert_eq!(f[1] as usize, len);
            }
        }
    }

    #[test]
    fn close_frame_is_capped_at_125_bytes() {
        let f = close(1000, &"é".repeat(100));
        assert!(f.len() <= 127);
        assert_eq!(&f[2..4], &1000u16.to_be_bytes());
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
