//! The long-polling wire: frames taken from a session's outbox, their WebSocket headers
//! stripped, written as one Engine.IO payload (text as it is, binary as `b<base64>`, joined by
//! `\x1e`), bounded per response.

use std::io::{ErrorKind, IoSlice};

use smallvec::SmallVec;
use wsgate_protocol::engineio::{encode_binary, SEPARATOR};

use crate::transport::outbound::Outbound;
use crate::transport::ws::frame::{first_server_frame, OpCode};

/// Moves whole messages from the front of `out` into `body` as one payload, until the next one
/// would take `body` past `max` bytes (the first always goes, whatever its size, so a message
/// larger than `max` cannot stall the session). A message is one frame, or a first fragment
/// and its continuations (queued together, see `frame::build_fragment`), whose payloads are
/// joined back into one packet; a queued run of frames (a Socket.IO binary packet and its
/// attachments, see `frame::append`) is one packet per frame, and may be split between
/// responses at a frame. Control frames (none are queued for an Engine.IO session) are
/// dropped. Returns how many packets were written.
pub(crate) fn drain(out: &mut Outbound, max: usize, body: &mut Vec<u8>) -> usize {
    let mut packets = 0;
    let flushed = out.flush_with(|slices: &[IoSlice<'_>]| {
        let frames = frames(slices);
        let mut taken = 0;
        let mut at = 0;
        while at < frames.len() {
            let Some(end) = frames[at..].iter().position(|f| f.fin).map(|i| at + i + 1) else {
                if at == 0 {
                    // A first fragment without its last: cannot happen (the fragments of a
                    // message are queued together, and a flush sees up to 64 entries);
                    // dropped rather than stalling the session.
                    taken += frames[0].len;
                    at = 1;
                    continue;
                }
                // Its last fragment is past this write: the next one starts with it.
                break;
            };
            let message = &frames[at..end];
            let bytes: usize = message.iter().map(|f| f.len).sum();
            let len: usize = message.iter().map(|f| f.payload.len()).sum();
            let cost = match message[0].opcode {
                OpCode::Text => len,
                OpCode::Binary => 1 + len.div_ceil(3) * 4,
                _ => {
                    taken += bytes;
                    at = end;
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
            match (message[0].opcode, message) {
                (OpCode::Text, _) => message
                    .iter()
                    .for_each(|f| body.extend_from_slice(f.payload)),
                (_, [one]) => encode_binary(one.payload, body),
                _ => {
                    let joined: Vec<u8> = message.iter().flat_map(|f| f.payload).copied().collect();
                    encode_binary(&joined, body);
                }
            }
            packets += 1;
            taken += bytes;
            at = end;
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

/// One queued frame as the drain reads it.
struct Frame<'a> {
    opcode: OpCode,
    fin: bool,
    payload: &'a [u8],
    /// Its bytes in the outbox, header included.
    len: usize,
}

/// The frames of `slices`, in order (an entry may hold a run of them).
fn frames<'a>(slices: &'a [IoSlice<'a>]) -> SmallVec<[Frame<'a>; 8]> {
    let mut frames = SmallVec::new();
    for slice in slices {
        let mut rest: &[u8] = slice;
        while !rest.is_empty() {
            let Some((opcode, fin, payload, len)) = first_server_frame(rest) else {
                // Not a complete server frame: cannot happen (frames are built whole and only
                // this function takes them from an Engine.IO polling outbox); skipped as a
                // control frame.
                frames.push(Frame {
                    opcode: OpCode::Close,
                    fin: true,
                    payload: &[],
                    len: rest.len(),
                });
                break;
            };
            frames.push(Frame {
                opcode,
                fin,
                payload,
                len,
            });
            rest = &rest[len..];
        }
    }
    frames
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
    fn a_run_of_frames_is_one_packet_each_and_may_be_split_between_responses() {
        let mut run = frame::data(OpCode::Text, b"451-[\"e\",{}]").to_vec();
        frame::append(OpCode::Binary, &[1, 2, 3], &mut run);
        frame::append(OpCode::Binary, &[4; 600], &mut run);
        let mut out = outbox(&[frame::data(OpCode::Text, b"2"), Bytes::from(run)]);
        let mut body = Vec::new();
        assert_eq!(
            drain(&mut out, 100, &mut body),
            3,
            "the 600 bytes would pass 100"
        );
        assert_eq!(body, b"2\x1e451-[\"e\",{}]\x1ebAQID");
        body.clear();
        assert_eq!(
            drain(&mut out, 100, &mut body),
            1,
            "the rest of the run, at a frame"
        );
        assert_eq!(body.len(), 1 + 800);
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
