//! The long-polling wire: frames taken from a session's outbox, their WebSocket headers
//! stripped, written as one Engine.IO payload (text as it is, binary as `b<base64>`, joined by
//! `\x1e`), bounded per response.

use std::io::{ErrorKind, IoSlice};

use smallvec::SmallVec;
use wsgate_protocol::engineio::{encode_binary, SEPARATOR};

use crate::transport::outbound::Outbound;
use crate::transport::ws::frame::{server_payload, OpCode};

/// Moves whole messages from the front of `out` into `body` as one payload, until the next one
/// would take `body` past `max` bytes (the first always goes, whatever its size, so a message
/// larger than `max` cannot stall the session). A message is one frame, or a first fragment
/// and its continuations (queued together, see `frame::build_fragment`), whose payloads are
/// joined back into one packet. Control frames (none are queued for an Engine.IO session) are
/// dropped. Returns how many packets were written.
pub(crate) fn drain(out: &mut Outbound, max: usize, body: &mut Vec<u8>) -> usize {
    let mut packets = 0;
    let flushed = out.flush_with(|slices: &[IoSlice<'_>]| {
        let mut taken = 0;
        let mut at = 0;
        while at < slices.len() {
            let Some(message) = message(&slices[at..]) else {
                if at == 0 {
                    // A first fragment without its last: cannot happen (the fragments of a
                    // message are queued together, and a flush sees up to 64 frames);
                    // dropped rather than stalling the session.
                    taken += slices[0].len();
                    at = 1;
                    continue;
                }
                // Its last fragment is past this write: the next one starts with it.
                break;
            };
            let Message {
                opcode,
                frames,
                payloads,
            } = message;
            let len: usize = payloads.iter().map(|p| p.len()).sum();
            let cost = match opcode {
                OpCode::Text => len,
                OpCode::Binary => 1 + len.div_ceil(3) * 4,
                _ => {
                    taken += slice_bytes(&slices[at..at + frames]);
                    at += frames;
                    continue;
                }
            };
            let sep = usize::from(!body.is_empty());
            if packets > 0 && body.len() + sep + cost > max {
                break;
            }
            if sep == 1 {
                body.push(SEPARATOR);
            }
            match (opcode, &payloads[..]) {
                (OpCode::Text, _) => payloads.iter().for_each(|p| body.extend_from_slice(p)),
                (_, [one]) => encode_binary(one, body),
                _ => encode_binary(&payloads.concat(), body),
            }
            packets += 1;
            taken += slice_bytes(&slices[at..at + frames]);
            at += frames;
        }
        if taken == 0 {
            Err(ErrorKind::WouldBlock.into())
        } else {
            Ok(taken)
        }
    });
    // The writer above never fails but to stop (`WouldBlock`, which ends the flush quietly).
    debug_assert!(flushed.is_ok());
    packets
}

/// One message of queued frames.
struct Message<'a> {
    /// Its first frame's.
    opcode: OpCode,
    /// How many frames it spans.
    frames: usize,
    payloads: SmallVec<[&'a [u8]; 2]>,
}

/// The message that starts `slices`; `None` when its last fragment is not among them.
fn message<'a>(slices: &'a [IoSlice<'a>]) -> Option<Message<'a>> {
    let mut payloads = SmallVec::new();
    let mut first = None;
    for (i, slice) in slices.iter().enumerate() {
        let Some((op, fin, payload)) = server_payload(slice) else {
            // Not a server frame: cannot happen (frames are built whole and only this function
            // takes them from an Engine.IO polling outbox); skipped as a control frame.
            let (opcode, frames) = (OpCode::Close, i + 1);
            return Some(Message {
                opcode,
                frames,
                payloads,
            });
        };
        payloads.push(payload);
        let opcode = *first.get_or_insert(op);
        if fin {
            let frames = i + 1;
            return Some(Message {
                opcode,
                frames,
                payloads,
            });
        }
    }
    None
}

fn slice_bytes(slices: &[IoSlice<'_>]) -> usize {
    slices.iter().map(|s| s.len()).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::*;
    use crate::transport::ws::frame;

    fn outbox(frames: &[Bytes]) -> Outbound {
        let mut out = Outbound::default();
        for f in frames {
            out.push(f.clone(), 1 << 20).unwrap();
        }
        out
    }

    #[test]
    fn frames_become_one_payload_text_as_is_binary_in_base64() {
        let mut out = outbox(&[
            frame::data(OpCode::Text, b"4hello"),
            frame::data(OpCode::Binary, &[1, 2, 3, 4]),
            frame::data(OpCode::Text, b"2"),
        ]);
        let mut body = Vec::new();
        assert_eq!(drain(&mut out, 1000, &mut body), 3);
        assert_eq!(body, b"4hello\x1ebAQIDBA==\x1e2");
        assert!(!out.has_output());
    }

    #[test]
    fn a_response_is_bounded_and_the_rest_waits_in_order() {
        let big = vec![b'x'; 600];
        let mut text = b"4".to_vec();
        text.extend(&big);
        let mut out = outbox(&[
            frame::data(OpCode::Text, &text),
            frame::data(OpCode::Text, &text),
            frame::data(OpCode::Text, b"4end"),
        ]);
        let mut body = Vec::new();
        assert_eq!(
            drain(&mut out, 1000, &mut body),
            1,
            "two would pass 1000 bytes"
        );
        assert_eq!(body, text);
        body.clear();
        assert_eq!(drain(&mut out, 1000, &mut body), 2);
        assert_eq!(body.len(), text.len() + 5);
        body.clear();
        assert_eq!(drain(&mut out, 1000, &mut body), 0);
        // One message over the bound still goes, alone.
        let mut out = outbox(&[frame::data(OpCode::Text, &text)]);
        assert_eq!(drain(&mut out, 10, &mut body), 1);
    }

    fn fragment(fin: bool, opcode: OpCode, payload: &[u8]) -> Bytes {
        frame::build_fragment(fin, opcode, payload.len(), |out| {
            out.extend_from_slice(payload);
            Ok::<(), ()>(())
        })
        .unwrap()
    }

    #[test]
    fn a_fragmented_message_is_one_packet_and_never_split_between_responses() {
        let mut out = outbox(&[
            frame::data(OpCode::Text, b"4a"),
            fragment(false, OpCode::Text, b"427"),
            fragment(true, OpCode::Continuation, b"[\"n\",1]"),
            // Binary fragments are joined before base64 (3 + 1 bytes: not a multiple of 3).
            fragment(false, OpCode::Binary, &[1, 2, 3]),
            fragment(true, OpCode::Continuation, &[4]),
        ]);
        let mut body = Vec::new();
        // Room for "4a" and not for the fragmented message after it: it waits, whole.
        assert_eq!(drain(&mut out, 8, &mut body), 1);
        assert_eq!(body, b"4a");
        body.clear();
        assert_eq!(drain(&mut out, 1000, &mut body), 2);
        assert_eq!(body, b"427[\"n\",1]\x1ebAQIDBA==");
        assert!(!out.has_output());
    }

    #[test]
    fn a_first_fragment_whose_last_is_past_the_flush_waits_for_the_next() {
        // 63 whole frames, then a message in two: the flush sees 64 frames, the first
        // fragment last among them.
        let mut frames: Vec<Bytes> = (0..63).map(|_| frame::data(OpCode::Text, b"4x")).collect();
        frames.push(fragment(false, OpCode::Text, b"421"));
        frames.push(fragment(true, OpCode::Continuation, b"[]"));
        let mut out = outbox(&frames);
        let mut body = Vec::new();
        assert_eq!(drain(&mut out, 1 << 20, &mut body), 64);
        assert!(body.ends_with(b"4x\x1e421[]"), "joined, after the 63");
        assert!(!out.has_output());
    }
}
