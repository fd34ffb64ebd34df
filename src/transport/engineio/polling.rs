//! The long-polling wire: frames taken from a session's outbox, their WebSocket headers
//! stripped, written as one Engine.IO payload (text as it is, binary as `b<base64>`, joined by
//! `\x1e`), bounded per response.

use std::io::{ErrorKind, IoSlice};

use wsgate_protocol::engineio::{encode_binary, SEPARATOR};

use crate::transport::outbound::Outbound;
use crate::transport::ws::frame::{first_server_frame, OpCode};

/// Moves whole frames from the front of `out` into `body` as one payload, until the next one
/// would take `body` past `max` bytes (the first always goes, whatever its size, so a message
/// larger than `max` cannot stall the session). A queued run of frames (a Socket.IO binary
/// packet and its attachments) is one packet per frame, and may be split between responses
/// at a frame. Control frames (none are queued for an Engine.IO session) are dropped.
/// Returns how many packets were written.
pub(crate) fn drain(out: &mut Outbound, max: usize, body: &mut Vec<u8>) -> usize {
    let mut packets = 0;
    let flushed = out.flush_with(|slices: &[IoSlice<'_>]| {
        let mut taken = 0;
        'slices: for slice in slices {
            let mut rest: &[u8] = slice;
            while !rest.is_empty() {
                let Some((opcode, payload, len)) = first_server_frame(rest) else {
                    // Not a complete server frame: cannot happen (frames are built whole and
                    // only this function takes them from an Engine.IO polling outbox); skipped.
                    taken += rest.len();
                    break;
                };
                let cost = match opcode {
                    OpCode::Text => Some(payload.len()),
                    OpCode::Binary => Some(1 + payload.len().div_ceil(3) * 4),
                    _ => None,
                };
                if let Some(cost) = cost {
                    let sep = usize::from(!body.is_empty());
                    if packets > 0 && body.len() + sep + cost > max {
                        break 'slices;
                    }
                    if sep == 1 {
                        body.push(SEPARATOR);
                    }
                    match opcode {
                        OpCode::Text => body.extend_from_slice(payload),
                        _ => encode_binary(payload, body),
                    }
                    packets += 1;
                }
                taken += len;
                rest = rest.get(len..).unwrap_or_default();
            }
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
}
