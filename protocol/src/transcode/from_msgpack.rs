//! A walk over one MessagePack value into a [`Sink`], with the crate's bounds-checked reader:
//! `bin` is reported as a binary value; ext, non-string map keys and invalid UTF-8 are refused
//! (validated data has none).

use super::sink::Sink;
use crate::error::EncodeError;
use crate::msgpack::Reader;

/// Deepest nesting walked: `data`'s bound with room for the message around it (a client
/// reads whole server messages this way).
const MAX_WALK_DEPTH: usize = 2 * crate::MAX_DEPTH;

/// Walks the one MessagePack value of `bytes` (nothing may follow it) into `sink`.
pub(crate) fn walk<S: Sink>(bytes: &[u8], sink: &mut S) -> Result<(), EncodeError> {
    let mut r = Reader::new(bytes);
    value(&mut r, sink, 0)?;
    if r.remaining() != 0 {
        return Err(bad("trailing bytes after the value"));
    }
    Ok(())
}

fn bad(why: &str) -> EncodeError {
    EncodeError(format!("MessagePack data: {why}"))
}

fn read<T>(result: Result<T, crate::ProtocolError>) -> Result<T, EncodeError> {
    result.map_err(|e| EncodeError(e.message.into_owned()))
}

fn value<S: Sink>(r: &mut Reader<'_>, sink: &mut S, depth: usize) -> Result<(), EncodeError> {
    let marker = read(r.byte())?;
    match marker {
        0x00..=0x7f => sink.uint(u64::from(marker)),
        0xe0..=0xff => sink.int(i64::from(marker as i8)),
        0xc0 => sink.null(),
        0xc2 => sink.bool(false),
        0xc3 => sink.bool(true),
        0x80..=0x8f => container(r, sink, (usize::from(marker & 0x0f), true), depth)?,
        0xde | 0xdf => {
            let n = read(r.len(if marker == 0xde { 2 } else { 4 }))?;
            container(r, sink, (n, true), depth)?;
        }
        0x90..=0x9f => container(r, sink, (usize::from(marker & 0x0f), false), depth)?,
        0xdc | 0xdd => {
            let n = read(r.len(if marker == 0xdc { 2 } else { 4 }))?;
            container(r, sink, (n, false), depth)?;
        }
        0xa0..=0xbf | 0xd9..=0xdb => sink.str(string(r, marker)?),
        0xc4..=0xc6 => {
            let n = read(r.len(1 << (marker - 0xc4)))?;
            sink.binary(read(r.take(n))?);
        }
        // The casts reinterpret the bits, as MessagePack means them.
        0xca => sink.f32(f32::from_bits(read(r.uint(4))? as u32)),
        0xcb => sink.f64(f64::from_bits(read(r.uint(8))?)),
        0xcc..=0xcf => sink.uint(read(r.uint(1 << (marker - 0xcc)))?),
        0xd0..=0xd3 => {
            let n = 1usize << (marker - 0xd0);
            let raw = read(r.uint(n))?;
            // Sign-extends the `n`-byte integer.
            let shift = 64 - 8 * n as u32;
            let v = ((raw << shift) as i64) >> shift;
            match u64::try_from(v) {
                Ok(v) => sink.uint(v),
                Err(_) => sink.int(v),
            }
        }
        0xc1 => return Err(bad("invalid marker 0xc1")),
        0xc7..=0xc9 | 0xd4..=0xd8 => return Err(bad("ext types are not supported")),
    }
    Ok(())
}

/// A str value's text, its marker already read.
fn string<'a>(r: &mut Reader<'a>, marker: u8) -> Result<&'a str, EncodeError> {
    let n = match marker {
        0xa0..=0xbf => usize::from(marker & 0x1f),
        _ => read(r.len(1 << (marker - 0xd9)))?,
    };
    std::str::from_utf8(read(r.take(n))?).map_err(|_| bad("invalid UTF-8 in a string"))
}

/// An array's or a map's `n` elements (entries), its marker read.
fn container<S: Sink>(
    r: &mut Reader<'_>,
    sink: &mut S,
    (n, is_map): (usize, bool),
    depth: usize,
) -> Result<(), EncodeError> {
    if depth >= MAX_WALK_DEPTH {
        return Err(bad("nested too deep"));
    }
    let mark = if is_map {
        sink.begin_map()
    } else {
        sink.begin_array()
    };
    for i in 0..n {
        if is_map {
            let marker = read(r.byte())?;
            if !matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb) {
                return Err(bad("map keys must be strings"));
            }
            sink.key(i, string(r, marker)?);
        } else {
            sink.element(i);
        }
        value(r, sink, depth + 1)?;
    }
    if is_map {
        sink.end_map(mark, n);
    } else {
        sink.end_array(mark, n);
    }
    Ok(())
}
