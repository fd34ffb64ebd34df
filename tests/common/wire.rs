//! Wire bytes written by hand: masked client frames (RFC 6455 §5.2) and MessagePack, so a test
//! can send what no client library would.

/// First byte of a whole text frame: FIN and opcode 0x1.
pub const TEXT: u8 = 0x81;
/// First byte of a whole binary frame: FIN and opcode 0x2.
pub const BINARY: u8 = 0x82;
/// First byte of the first fragment of a text message: opcode 0x1 without FIN.
pub const TEXT_FIRST: u8 = 0x01;
/// Opcode of a continuation fragment; `LAST | CONTINUATION` ends the message.
pub const CONTINUATION: u8 = 0x00;
/// The FIN bit.
pub const LAST: u8 = 0x80;
/// First byte of a close frame: FIN and opcode 0x8.
pub const CLOSE: u8 = 0x88;

/// The mask key of RFC 6455's examples, used by every raw client frame of the tests.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame header (RFC 6455 §5.2): first byte `b0` (FIN, RSV and opcode) and a
/// claimed payload `len`.
pub fn ws_header(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// A whole masked client frame.
pub fn ws_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ws_header(b0, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A MessagePack fixstr.
pub fn mp_str(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut out = vec![0xa0 | s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// A MessagePack map of string keys to values given as raw bytes.
pub fn mp_map(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | fields.len() as u8];
    for (k, v) in fields {
        out.extend(mp_str(k));
        out.extend_from_slice(v);
    }
    out
}
