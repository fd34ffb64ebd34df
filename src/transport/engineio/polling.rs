//! The long-polling wire: frames taken from a session's outbox, their WebSocket headers
//! stripped, written as one Engine.IO payload (text as it is, binary as `b<base64>`, joined by
//! `\x1e`), bounded per response.

use std::io::{ErrorKind, IoSlice};

use wsgate_protocol::engineio::{encode_binary, SEPARATOR};

use crate::transport::outbound::Outbound;
use crate::transport::ws::frame::{server_payload, OpCode};

/// Moves whole frames from the front of `out` into `body` as one payload, until the next one
/// would take `body` past `max` bytes (the first always goes, whatever its size, so a message
/// larger than `max` cannot stall the session). Control frames (none are queued for an
/// Engine.IO session) are dropped. Returns how many packets were written.
pub(crate) fn drain(out: &mut Outbound, max: usize, body: &mut Vec<u8>) -> usize {
    let mut packets = 0;
    let flushed = out.flush_with(|slices: &[IoSlice<'_>]| {
        let mut taken = 0;
        for slice in slices {
            let Some((opcode, payload)) = server_payload(slice) else {
                // Not a complete server frame: cannot happen (frames are built whole and only
                // this function takes them from an Engine.IO polling outbox); skipped.
                taken += slice.len();
                continue;
            };
            let cost = match opcode {
                OpCode::Text => payload.len(),
                OpCode::Binary => 1 + payload.len().div_ceil(3) * 4,
                _ => {
                    taken += slice.len();
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
            match opcode {
                OpCode::Text => body.extend_from_slice(payload),
                _ => encode_binary(payload, body),
            }
            packets += 1;
            taken += slice.len();
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
