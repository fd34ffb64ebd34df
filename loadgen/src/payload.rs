//! The loadgen's event `data`: a send time and a sequence number padded to a fixed size, in
//! either encoding, and fast readers for it: in a native event (and the event's offset), and
//! in a Socket.IO event.
//!
//! JSON: `{"t":<ns>,"s":<seq>,"x":"<padding>"}`. MessagePack: a 3-entry map with `t` and `s` as
//! `uint64` (fixed width) and `x` a padding string. The server forwards `data` verbatim to
//! receivers of the sender's encoding and writes it last in an event, so a receiver finds it at
//! the end of the message without decoding the rest.

use crate::plan::WireFormat;

const JSON_PREFIX: &[u8] = b"{\"t\":";
const MSGPACK_PREFIX: &[u8] = &[0x83, 0xa1, b't', 0xcf];

/// Appends the `data` value for send time `t` and sequence `s`, padded to `size` bytes when
/// `size` is large enough (at least 60), to `out`.
pub(crate) fn write(format: WireFormat, t: u64, s: u64, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    match format {
        WireFormat::Json => {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{{\"t\":{t},\"s\":{s},\"x\":\"");
            let used = out.len() - start + 2;
            out.resize(out.len() + size.saturating_sub(used), b'x');
            out.extend_from_slice(b"\"}");
        }
        WireFormat::Msgpack => {
            out.extend_from_slice(MSGPACK_PREFIX);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0xa1, b's', 0xcf]);
            out.extend_from_slice(&s.to_be_bytes());
            out.extend_from_slice(&[0xa1, b'x']);
            let left = size.saturating_sub(out.len() - start);
            let pad = if left <= 32 {
                let pad = left.saturating_sub(1);
                out.push(0xa0 | pad as u8);
                pad
            } else if left <= 257 {
                out.extend_from_slice(&[0xd9, (left - 2) as u8]);
                left - 2
            } else {
                let pad = (left - 3).min(usize::from(u16::MAX));
                out.push(0xda);
                out.extend_from_slice(&(pad as u16).to_be_bytes());
                pad
            };
            out.resize(out.len() + pad, b'x');
        }
    }
}

/// Reads `(t, s)` from an event message whose `data` is the loadgen's own, `size` bytes long;
/// `None` when the message does not have that shape (then decode it fully).
pub(crate) fn read_fast(format: WireFormat, msg: &[u8], size: usize) -> Option<(u64, u64)> {
    match format {
        WireFormat::Json => {
            // The event object closes right after `data`.
            let end = msg.len().checked_sub(1)?;
            let data = msg.get(end.checked_sub(size)?..end)?;
            let rest = data.strip_prefix(JSON_PREFIX)?;
            let (t, rest) = digits(rest)?;
            let rest = rest.strip_prefix(b",\"s\":")?;
            let (s, rest) = digits(rest)?;
            rest.starts_with(b",\"x\":\"").then_some((t, s))
        }
        WireFormat::Msgpack => {
            let data = msg.get(msg.len().checked_sub(size)?..)?;
            let rest = data.strip_prefix(MSGPACK_PREFIX)?;
            let t = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
            let rest = rest.get(8..)?.strip_prefix(&[0xa1, b's', 0xcf])?;
            let s = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
            Some((t, s))
        }
    }
}

/// Reads the `offset` of an event message whose `data` (last in the message) is `size` bytes
/// long, from the fields before `data`; `None` when it has none (then decode it fully). The
/// loadgen's room and user names cannot hold the key, so the first match is the field.
pub(crate) fn read_offset(format: WireFormat, msg: &[u8], size: usize) -> Option<u64> {
    let head = msg.get(..msg.len().checked_sub(size)?)?;
    match format {
        WireFormat::Json => {
            const KEY: &[u8] = b"\"offset\":";
            let at = head.windows(KEY.len()).position(|w| w == KEY)?;
            digits(&head[at + KEY.len()..]).map(|(v, _)| v)
        }
        WireFormat::Msgpack => {
            // fixstr "offset", then an unsigned integer in its shortest form.
            const KEY: &[u8] = &[0xa6, b'o', b'f', b'f', b's', b'e', b't'];
            let at = head.windows(KEY.len()).position(|w| w == KEY)?;
            let rest = &head[at + KEY.len()..];
            let be = |n: usize| -> Option<u64> {
                let b = rest.get(1..=n)?;
                Some(b.iter().fold(0, |v, c| v << 8 | u64::from(*c)))
            };
            match *rest.first()? {
                v @ 0x00..=0x7f => Some(u64::from(v)),
                0xcc => be(1),
                0xcd => be(2),
                0xce => be(4),
                0xcf => be(8),
                _ => None,
            }
        }
    }
}

/// Reads `(t, s)` from a Socket.IO event `["<name>", data]` of the main namespace whose `data`
/// is the loadgen's own: after `42` in a text message (the default parser), or at the map's
/// `data` key in a binary one (the msgpack parser). The data is read from the front, and its
/// integers in any width: a Node server re-encodes `data` (notepack writes each integer in its
/// shortest form), wsgate splices it verbatim. `None` when the message does not have that
/// shape (then decode it fully).
pub(crate) fn read_fast_sio(format: WireFormat, msg: &[u8]) -> Option<(u64, u64)> {
    match format {
        WireFormat::Json => {
            let rest = msg.strip_prefix(b"42[\"")?;
            let name_end = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
            let rest = rest[name_end..].strip_prefix(b"\",")?;
            let rest = rest.strip_prefix(JSON_PREFIX)?;
            let (t, rest) = digits(rest)?;
            let rest = rest.strip_prefix(b",\"s\":")?;
            let (s, rest) = digits(rest)?;
            (rest.starts_with(b",\"x\":\"") && msg.ends_with(b"\"}]")).then_some((t, s))
        }
        WireFormat::Msgpack => {
            let mut r = MsgpackFront(msg);
            let keys = r.byte().filter(|b| b & 0xf0 == 0x80)? & 0x0f;
            for _ in 0..keys {
                if r.fixstr()? != b"data" {
                    // `type` and `nsp`: a fixint and a fixstr.
                    match r.byte()? {
                        0x00..=0x7f => {}
                        b @ 0xa0..=0xbf => {
                            r.take(usize::from(b & 0x1f))?;
                        }
                        _ => return None,
                    }
                    continue;
                }
                if r.byte()? != 0x92 {
                    return None;
                }
                r.fixstr()?;
                if r.byte()? != 0x83 || r.fixstr()? != b"t" {
                    return None;
                }
                let t = r.uint()?;
                if r.fixstr()? != b"s" {
                    return None;
                }
                let s = r.uint()?;
                return (r.fixstr()? == b"x").then_some((t, s));
            }
            None
        }
    }
}

/// A reader at the front of a MessagePack message, for [`read_fast_sio`].
struct MsgpackFront<'a>(&'a [u8]);

impl<'a> MsgpackFront<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn fixstr(&mut self) -> Option<&'a [u8]> {
        let b = self.byte().filter(|b| b & 0xe0 == 0xa0)?;
        self.take(usize::from(b & 0x1f))
    }

    /// An unsigned integer in any of its widths.
    fn uint(&mut self) -> Option<u64> {
        let width = match self.byte()? {
            v @ 0x00..=0x7f => return Some(u64::from(v)),
            0xcc => 1,
            0xcd => 2,
            0xce => 4,
            0xcf => 8,
            _ => return None,
        };
        let b = self.take(width)?;
        Some(b.iter().fold(0, |v, c| v << 8 | u64::from(*c)))
    }
}

fn digits(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for c in &b[..n] {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((v, &b[n..]))
}

/// `(t, s)` from a fully decoded `data` tree.
pub(crate) fn read_value(data: &serde_json::Value) -> Option<(u64, u64)> {
    Some((data.get("t")?.as_u64()?, data.get("s")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_protocol::{encode_server_message, RawData, ServerMessage};

    fn event(format: WireFormat, data: &[u8]) -> Vec<u8> {
        event_at(format, data, None)
    }

    fn event_at(format: WireFormat, data: &[u8], offset: Option<u64>) -> Vec<u8> {
        let msg = ServerMessage::Event {
            event: "bench",
            room: Some("room-0"),
            from: Some("u1"),
            offset,
            data: RawData::validate(format.format(), data).expect("valid data"),
        };
        let mut out = Vec::new();
        encode_server_message(format.format(), &msg, &mut out).expect("encodes");
        out
    }

    #[test]
    fn both_encodings_have_the_exact_size_and_read_back() {
        for format in [WireFormat::Json, WireFormat::Msgpack] {
            for size in [64, 100, 300] {
                let mut data = Vec::new();
                write(format, 1_234_567_890_123, 42 << 32 | 7, size, &mut data);
                assert_eq!(data.len(), size, "{format:?} {size}");
                let msg = event(format, &data);
                assert_eq!(
                    read_fast(format, &msg, size),
                    Some((1_234_567_890_123, 42 << 32 | 7))
                );
                let decoded =
                    wsgate_protocol::decode_server_message(format.format(), &msg).expect("decodes");
                let wsgate_protocol::OwnedServerMessage::Event { data, .. } = decoded else {
                    panic!("not an event");
                };
                assert_eq!(read_value(&data), Some((1_234_567_890_123, 42 << 32 | 7)));
            }
        }
    }

    #[test]
    fn offsets_read_back_in_both_encodings() {
        for format in [WireFormat::Json, WireFormat::Msgpack] {
            let mut data = Vec::new();
            write(format, 1, 2, 64, &mut data);
            for offset in [0, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX] {
                let msg = event_at(format, &data, Some(offset));
                assert_eq!(read_offset(format, &msg, 64), Some(offset), "{format:?}");
                assert_eq!(read_fast(format, &msg, 64), Some((1, 2)));
            }
            assert_eq!(read_offset(format, &event(format, &data), 64), None);
        }
    }

    #[test]
    fn socketio_events_read_fast_as_wsgate_and_node_write_them() {
        use wsgate_protocol::socketio::{encode_event, Args, Event};
        for format in [WireFormat::Json, WireFormat::Msgpack] {
            let mut data = Vec::new();
            write(format, 1_234_567_890_123, 42 << 32 | 7, 64, &mut data);
            let event = Event {
                nsp: "/",
                name: "bench".into(),
                args: Args::one(RawData::trusted(format.format(), &data)),
                id: None,
                offset: None,
            };
            // wsgate's frame: the Engine.IO `4` first with the default parser.
            let mut msg = if format == WireFormat::Json {
                b"4".to_vec()
            } else {
                Vec::new()
            };
            encode_event(format.format(), &event, &mut msg).expect("encodes");
            assert_eq!(
                read_fast_sio(format, &msg),
                Some((1_234_567_890_123, 42 << 32 | 7)),
                "{format:?}"
            );
            assert_eq!(read_fast_sio(format, &msg[..25]), None);
        }
        // Node: JSON.stringify, and notepack's shortest integers (`s` a fixint, `t` a uint32).
        let node = br#"42["bench",{"t":99,"s":3,"x":"xx"}]"#;
        assert_eq!(read_fast_sio(WireFormat::Json, node), Some((99, 3)));
        let mut mp = vec![0x83, 0xa4];
        mp.extend_from_slice(b"type");
        mp.extend_from_slice(&[0x02, 0xa4]);
        mp.extend_from_slice(b"data");
        mp.extend_from_slice(&[0x92, 0xa5]);
        mp.extend_from_slice(b"bench");
        mp.extend_from_slice(&[
            0x83, 0xa1, b't', 0xce, 0, 1, 0, 0, 0xa1, b's', 0x03, 0xa1, b'x',
        ]);
        mp.extend_from_slice(&[0xa2, b'x', b'x', 0xa3]);
        mp.extend_from_slice(b"nsp");
        mp.extend_from_slice(&[0xa1, b'/']);
        assert_eq!(read_fast_sio(WireFormat::Msgpack, &mp), Some((65_536, 3)));
        // Not the loadgen's data: decoded fully instead.
        assert_eq!(
            read_fast_sio(WireFormat::Json, br#"42["bench",{"a":1}]"#),
            None
        );
        assert_eq!(
            read_fast_sio(WireFormat::Json, br#"431[{"type":"reply"}]"#),
            None
        );
    }
}
