//! The MessagePack codec (binary frames): a hand-written, bounds-checked decoder over the
//! message bytes and `rmp` to encode.
//!
//! Every length read from the input is checked against the bytes that remain before it is used,
//! and nesting is limited to [`MAX_DEPTH`], so no input can make the decoder allocate, loop or
//! recurse out of proportion to its size, or panic.

use std::borrow::Cow;

use rmp::encode;

use crate::envelope::{self, Envelope, FieldValue, ListError, SinceFields};
use crate::error::{DecodeError, EncodeError, ProtocolError};
use crate::format::Format;
use crate::message::{
    Command, HistoryEntry, Id, Member, OwnedServerMessage, RawData, Request, ServerMessage, Since,
    UserState, Welcome, MAX_DEPTH,
};
use crate::transcode::transcode;

/// A cursor over the input; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// The `bin` values skipped in `data` so far.
    binaries: usize,
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            binaries: 0,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, ProtocolError> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A big-endian unsigned integer of `n` (at most 8) bytes.
    pub(crate) fn uint(&mut self, n: usize) -> Result<u64, ProtocolError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length of `n` (1, 2 or 4) bytes.
    pub(crate) fn len(&mut self, n: usize) -> Result<usize, ProtocolError> {
        let len = self.uint(n)?;
        usize::try_from(len).map_err(|_| truncated())
    }
}

fn truncated() -> ProtocolError {
    malformed("unexpected end of input")
}

fn malformed(why: &str) -> ProtocolError {
    ProtocolError::bad_request(format!("malformed MessagePack: {why}"))
}

/// What a skipped value may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A `data` value: wsgate's data model only (string map keys, valid UTF-8, bin counted,
    /// no ext, no map whose one key is `$binary`).
    Data,
    /// Any well-formed MessagePack (the value of a field this version does not know).
    Any,
}

/// Skips one value, validating it; `depth` is the number of enclosing arrays/maps.
fn skip(r: &mut Reader<'_>, depth: usize, mode: Mode) -> Result<(), ProtocolError> {
    let data = mode == Mode::Data;
    let marker = r.byte()?;
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Ok(()),
        0x80..=0x8f => skip_map(r, usize::from(marker & 0x0f), depth, mode),
        0x90..=0x9f => skip_array(r, usize::from(marker & 0x0f), depth, mode),
        0xa0..=0xbf => skip_str(r, usize::from(marker & 0x1f), mode),
        0xc1 => Err(malformed("invalid marker 0xc1")),
        0xc7..=0xc9 | 0xd4..=0xd8 if data => Err(ProtocolError::bad_request(
            "data: MessagePack ext types are not supported",
        )),
        0xc4..=0xc6 if data => {
            // As deep as the `{"$binary": …}` object it is in JSON.
            enter(depth, mode)?;
            r.binaries += 1;
            skip_bytes(r, 1 << (marker - 0xc4), 0)
        }
        0xc4 => skip_bytes(r, 1, 0),
        0xc5 => skip_bytes(r, 2, 0),
        0xc6 => skip_bytes(r, 4, 0),
        0xc7 => skip_bytes(r, 1, 1),
        0xc8 => skip_bytes(r, 2, 1),
        0xc9 => skip_bytes(r, 4, 1),
        0xcc | 0xd0 => r.take(1).map(drop),
        0xcd | 0xd1 => r.take(2).map(drop),
        0xca | 0xce | 0xd2 => r.take(4).map(drop),
        0xcb | 0xcf | 0xd3 => r.take(8).map(drop),
        // fixext 1, 2, 4, 8, 16: a type byte and 2^(marker - 0xd4) bytes.
        0xd4..=0xd8 => r.take(1 + (1 << (marker - 0xd4))).map(drop),
        0xd9 => {
            let n = r.len(1)?;
            skip_str(r, n, mode)
        }
        0xda => {
            let n = r.len(2)?;
            skip_str(r, n, mode)
        }
        0xdb => {
            let n = r.len(4)?;
            skip_str(r, n, mode)
        }
        0xdc => {
            let n = r.len(2)?;
            skip_array(r, n, depth, mode)
        }
        0xdd => {
            let n = r.len(4)?;
            skip_array(r, n, depth, mode)
        }
        0xde => {
            let n = r.len(2)?;
            skip_map(r, n, depth, mode)
        }
        0xdf => {
            let n = r.len(4)?;
            skip_map(r, n, depth, mode)
        }
    }
}

/// Skips one well-formed value of any type (a field this version does not know, or a known
/// field before its type is checked) without recursion: a count of the values still to skip
/// stands in for the call stack, so any nesting that fits in the message is skipped in constant
/// memory, as the JSON decoder skips unknown fields. (`data` keeps its depth bound: [`skip`].)
fn skip_any(r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    if !matches!(peek(r)?, 0x80..=0x9f | 0xdc..=0xdf) {
        // A scalar (every known field but `data`, in a valid request): no loop, measurably.
        return skip(r, 0, Mode::Any);
    }
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let marker = peek(r)?;
        let (is_map, n) = match marker {
            0x80..=0x9f => (marker < 0x90, usize::from(marker & 0x0f)),
            0xdc..=0xdf => {
                r.byte()?;
                (marker >= 0xde, r.len(if marker & 1 == 0 { 2 } else { 4 })?)
            }
            _ => {
                skip(r, 0, Mode::Any)?;
                continue;
            }
        };
        if marker <= 0x9f {
            r.byte()?;
        }
        // Every value takes at least one byte: a longer claim is a lie, refused before looping.
        let values = if is_map { n.saturating_mul(2) } else { n };
        pending = match pending.checked_add(values) {
            Some(p) if p <= r.remaining() => p,
            _ => {
                let (what, unit) = if is_map {
                    ("map", "entries")
                } else {
                    ("array", "elements")
                };
                return Err(malformed(&format!(
                    "{what} of {n} {unit} in {} remaining bytes",
                    r.remaining()
                )));
            }
        };
    }
    Ok(())
}

/// Skips a bin or ext body: a length of `len_bytes` bytes, then `extra` type bytes and the body.
fn skip_bytes(r: &mut Reader<'_>, len_bytes: usize, extra: usize) -> Result<(), ProtocolError> {
    let n = r.len(len_bytes)?;
    r.take(n.checked_add(extra).ok_or_else(truncated)?)
        .map(drop)
}

fn skip_str(r: &mut Reader<'_>, n: usize, mode: Mode) -> Result<(), ProtocolError> {
    let bytes = r.take(n)?;
    if mode == Mode::Data && std::str::from_utf8(bytes).is_err() {
        return Err(ProtocolError::bad_request(
            "data: invalid UTF-8 in a string",
        ));
    }
    Ok(())
}

fn enter(depth: usize, mode: Mode) -> Result<usize, ProtocolError> {
    if depth >= MAX_DEPTH {
        return Err(ProtocolError::bad_request(match mode {
            Mode::Data => format!("data: nested deeper than {MAX_DEPTH}"),
            Mode::Any => format!("malformed MessagePack: nested deeper than {MAX_DEPTH}"),
        }));
    }
    Ok(depth + 1)
}

fn skip_array(r: &mut Reader<'_>, n: usize, depth: usize, mode: Mode) -> Result<(), ProtocolError> {
    let depth = enter(depth, mode)?;
    // Every element takes at least one byte: a longer claim is a lie, refused before looping.
    if n > r.remaining() {
        return Err(malformed(&format!(
            "array of {n} elements in {} remaining bytes",
            r.remaining()
        )));
    }
    for _ in 0..n {
        skip(r, depth, mode)?;
    }
    Ok(())
}

fn skip_map(r: &mut Reader<'_>, n: usize, depth: usize, mode: Mode) -> Result<(), ProtocolError> {
    let depth = enter(depth, mode)?;
    if n > r.remaining() / 2 {
        return Err(malformed(&format!(
            "map of {n} entries in {} remaining bytes",
            r.remaining()
        )));
    }
    if mode == Mode::Data && n == 1 && key_is(r, crate::transcode::BINARY_KEY) {
        // It would read as a binary value in JSON.
        return Err(ProtocolError::bad_request(
            r#"data: a map whose one key is "$binary" stands for binary in JSON: send bin"#,
        ));
    }
    for _ in 0..n {
        if mode == Mode::Data && !is_str_marker(peek(r)?) {
            return Err(ProtocolError::bad_request("data: map keys must be strings"));
        }
        skip(r, depth, mode)?;
        skip(r, depth, mode)?;
    }
    Ok(())
}

/// Whether the value at the reader is the str `key` (the reader does not move).
fn key_is(r: &Reader<'_>, key: &str) -> bool {
    let mut ahead = Reader::new(r.buf);
    ahead.pos = r.pos;
    matches!(read_str(&mut ahead), Ok(Some(k)) if k == key.as_bytes())
}

fn peek(r: &Reader<'_>) -> Result<u8, ProtocolError> {
    r.buf.get(r.pos).copied().ok_or_else(truncated)
}

const fn is_str_marker(m: u8) -> bool {
    matches!(m, 0xa0..=0xbf | 0xd9..=0xdb)
}

/// Reads a str value's bytes, `None` when the value is not a str.
pub(crate) fn read_str<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, ProtocolError> {
    let n = match r.byte()? {
        m @ 0xa0..=0xbf => usize::from(m & 0x1f),
        0xd9 => r.len(1)?,
        0xda => r.len(2)?,
        0xdb => r.len(4)?,
        _ => return Ok(None),
    };
    r.take(n).map(Some)
}

/// Skips one well-formed value of any type (bin and ext included), at most [`MAX_DEPTH`] deep.
pub(crate) fn skip_value(r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    skip(r, 0, Mode::Any)
}

/// Validates `bytes` as exactly one `data` value.
pub(crate) fn validate_data(bytes: &[u8]) -> Result<(), ProtocolError> {
    let mut r = Reader::new(bytes);
    skip(&mut r, 0, Mode::Data)?;
    if r.remaining() != 0 {
        return Err(malformed("trailing bytes after the value"));
    }
    crate::transcode::check_binaries(r.binaries)
}

/// One field's value: the exact bytes of one validated MessagePack value.
#[derive(Clone, Copy)]
struct Span<'a>(&'a [u8]);

impl<'a> FieldValue<'a> for Span<'a> {
    fn id(self) -> Result<Id<'a>, ProtocolError> {
        match int(self.0)? {
            Int::Unsigned(n) => Ok(Id::Num(n)),
            Int::Negative => Err(ProtocolError::bad_request(
                "id: expected an unsigned integer",
            )),
            Int::Not if self.0.first().is_some_and(|&m| is_str_marker(m)) => {
                let s = self
                    .string()
                    .map_err(|why| ProtocolError::bad_request(format!("id: {why}")))?;
                envelope::string_id(s)
            }
            Int::Not => Err(envelope::id_type_error()),
        }
    }

    fn string(self) -> Result<Cow<'a, str>, &'static str> {
        let mut r = Reader::new(self.0);
        let bytes = read_str(&mut r).ok().flatten().ok_or("expected a string")?;
        std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|_| "invalid UTF-8")
    }

    fn boolean(self) -> Option<bool> {
        match self.0 {
            [0xc2] => Some(false),
            [0xc3] => Some(true),
            _ => None,
        }
    }

    fn uint(self) -> Option<u64> {
        match int(self.0) {
            Ok(Int::Unsigned(n)) => Some(n),
            _ => None,
        }
    }

    fn since(self) -> Result<SinceFields<Self>, ProtocolError> {
        read_since(self.0).map_err(|e| ProtocolError::bad_request(format!("since: {}", e.message)))
    }

    fn data(self) -> Result<RawData<'a>, ProtocolError> {
        // Validated in Mode::Data while the envelope was read.
        Ok(RawData::trusted(Format::MsgPack, self.0))
    }

    fn list(self, max: usize) -> Result<Vec<Self>, ListError> {
        let mut r = Reader::new(self.0);
        let n = match r.byte().map_err(|_| ListError::NotArray)? {
            m @ 0x90..=0x9f => usize::from(m & 0x0f),
            0xdc => r.len(2).map_err(|_| ListError::NotArray)?,
            0xdd => r.len(4).map_err(|_| ListError::NotArray)?,
            _ => return Err(ListError::NotArray),
        };
        if n > max {
            return Err(ListError::TooLong);
        }
        // The value was validated as a whole while the envelope was read: each item is one
        // well-formed value.
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let start = r.pos;
            skip_any(&mut r).map_err(|_| ListError::NotArray)?;
            let item = r.buf.get(start..r.pos).ok_or(ListError::NotArray)?;
            items.push(Span(item));
        }
        Ok(items)
    }
}

/// What an integer value turned out to be.
pub(crate) enum Int {
    /// A non-negative integer, in any width.
    Unsigned(u64),
    /// A negative integer.
    Negative,
    /// Not an integer.
    Not,
}

/// Reads an integer value of any width. Signed encodings of non-negative values count as
/// unsigned (some encoders use them).
pub(crate) fn int(value: &[u8]) -> Result<Int, ProtocolError> {
    let mut r = Reader::new(value);
    let n = match r.byte()? {
        m @ 0x00..=0x7f => u64::from(m),
        0xcc => r.uint(1)?,
        0xcd => r.uint(2)?,
        0xce => r.uint(4)?,
        0xcf => r.uint(8)?,
        m @ 0xd0..=0xd3 => {
            let width = 1usize << (m - 0xd0);
            let raw = r.uint(width)?;
            let sign_bit = 1u64 << (width * 8 - 1);
            if raw & sign_bit != 0 {
                return Ok(Int::Negative);
            }
            raw
        }
        0xe0..=0xff => return Ok(Int::Negative),
        _ => return Ok(Int::Not),
    };
    Ok(Int::Unsigned(n))
}

/// Reads a `since` map (one already validated value) into its known fields.
fn read_since(value: &[u8]) -> Result<SinceFields<Span<'_>>, ProtocolError> {
    let mut r = Reader::new(value);
    let n = map_len(&mut r)?.ok_or_else(|| ProtocolError::bad_request("expected an object"))?;
    let mut fields = SinceFields {
        epoch: None,
        offset: None,
    };
    for _ in 0..n {
        let slot = match key(&mut r)? {
            b"epoch" => (&mut fields.epoch, "epoch"),
            b"offset" => (&mut fields.offset, "offset"),
            unknown => {
                skip_unknown(unknown, &mut r)?;
                continue;
            }
        };
        field(&mut r, slot, Mode::Any)?;
    }
    Ok(fields)
}

/// Decodes one request from a binary message.
pub(crate) fn decode_request(payload: &[u8]) -> Result<Request<'_>, DecodeError<'_>> {
    let mut envelope = Envelope::new();
    match read_envelope(payload, &mut envelope) {
        Ok(()) => envelope.into_request(Format::MsgPack),
        Err(error) => Err(DecodeError {
            id: envelope.valid_id(),
            error,
        }),
    }
}

/// Reads the top-level map into `envelope`, recording each known field's value bytes.
fn read_envelope<'a>(
    payload: &'a [u8],
    envelope: &mut Envelope<Span<'a>>,
) -> Result<(), ProtocolError> {
    let mut r = Reader::new(payload);
    let n =
        map_len(&mut r)?.ok_or_else(|| ProtocolError::bad_request("expected a MessagePack map"))?;
    for _ in 0..n {
        let slot = match key(&mut r)? {
            b"id" => (&mut envelope.id, "id"),
            b"cmd" => (&mut envelope.cmd, "cmd"),
            b"token" => (&mut envelope.token, "token"),
            b"room" => (&mut envelope.room, "room"),
            b"event" => (&mut envelope.event, "event"),
            b"to" => (&mut envelope.to, "to"),
            b"data" => (&mut envelope.data, "data"),
            b"echo" => (&mut envelope.echo, "echo"),
            b"ephemeral" => (&mut envelope.ephemeral, "ephemeral"),
            b"idem" => (&mut envelope.idem, "idem"),
            b"private" => (&mut envelope.private, "private"),
            b"maxMembers" => (&mut envelope.max_members, "maxMembers"),
            b"historySize" => (&mut envelope.history_size, "historySize"),
            b"historyTtl" => (&mut envelope.history_ttl, "historyTtl"),
            b"since" => (&mut envelope.since, "since"),
            b"limit" => (&mut envelope.limit, "limit"),
            b"before" => (&mut envelope.before, "before"),
            b"after" => (&mut envelope.after, "after"),
            b"offset" => (&mut envelope.offset, "offset"),
            b"presence" => (&mut envelope.presence, "presence"),
            b"users" => (&mut envelope.users, "users"),
            unknown => {
                skip_unknown(unknown, &mut r)?;
                continue;
            }
        };
        let mode = if slot.1 == "data" {
            Mode::Data
        } else {
            Mode::Any
        };
        field(&mut r, slot, mode)?;
    }
    if r.remaining() != 0 {
        return Err(malformed("trailing bytes after the message"));
    }
    Ok(())
}

/// Reads a map header: `None` when the value is not a map. A count of entries the remaining
/// bytes cannot hold (each takes at least two) is a lie, refused before any loop.
pub(crate) fn map_len(r: &mut Reader<'_>) -> Result<Option<usize>, ProtocolError> {
    let n = match r.byte()? {
        m @ 0x80..=0x8f => usize::from(m & 0x0f),
        0xde => r.len(2)?,
        0xdf => r.len(4)?,
        _ => return Ok(None),
    };
    if n > r.remaining() / 2 {
        return Err(malformed(&format!(
            "map of {n} entries in {} remaining bytes",
            r.remaining()
        )));
    }
    Ok(Some(n))
}

/// Reads a map entry's key: a str.
fn key<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ProtocolError> {
    read_str(r)?.ok_or_else(|| ProtocolError::bad_request("map keys must be strings"))
}

/// Skips the value of a field this version does not know; its key must still be valid UTF-8.
fn skip_unknown(key: &[u8], r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    if std::str::from_utf8(key).is_err() {
        return Err(ProtocolError::bad_request("map keys must be valid UTF-8"));
    }
    skip_any(r)
}

/// Reads a known field's value (validated in `mode`) into its slot, refusing a second one.
fn field<'a>(
    r: &mut Reader<'a>,
    (slot, name): (&mut Option<Span<'a>>, &str),
    mode: Mode,
) -> Result<(), ProtocolError> {
    let start = r.pos;
    match mode {
        Mode::Data => {
            r.binaries = 0;
            skip(r, 0, Mode::Data)?;
            crate::transcode::check_binaries(r.binaries)?;
        }
        Mode::Any => skip_any(r)?,
    }
    let value = r.buf.get(start..r.pos).ok_or_else(truncated)?;
    if slot.is_some() {
        return Err(ProtocolError::bad_request(format!(
            "duplicate field `{name}`"
        )));
    }
    *slot = Some(Span(value));
    Ok(())
}

/// Writing to a `Vec` cannot fail; the error is mapped all the same rather than unwrapped.
fn enc<E: std::fmt::Display>(e: E) -> EncodeError {
    EncodeError(e.to_string())
}

pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode::write_str(out, s).map_err(enc)
}

pub(crate) fn write_uint(n: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode::write_uint(out, n).map(drop).map_err(enc)
}

pub(crate) fn write_map_len(n: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode::write_map_len(out, n).map(drop).map_err(enc)
}

fn write_id(id: &Id<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match id {
        Id::Num(n) => write_uint(*n, out),
        Id::Str(s) => write_str(s, out),
    }
}

/// Appends a server message (the caller restores `out` on error).
pub(crate) fn encode_server_message(
    msg: &ServerMessage<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match msg {
        ServerMessage::Welcome(w) => write_welcome(w, out),
        ServerMessage::Reply { id } => write_reply_head(2, id, out),
        ServerMessage::Error { id, code, message } => {
            write_map_len(if id.is_some() { 4 } else { 3 }, out)?;
            write_str("type", out)?;
            write_str("error", out)?;
            if let Some(id) = id {
                write_str("id", out)?;
                write_id(id, out)?;
            }
            write_str("code", out)?;
            write_str(code.as_str(), out)?;
            write_str("message", out)?;
            write_str(message, out)
        }
        ServerMessage::Published { id, offset } => {
            write_map_len(3, out)?;
            write_str("type", out)?;
            write_str("reply", out)?;
            write_str("id", out)?;
            write_id(id, out)?;
            write_str("offset", out)?;
            write_uint(*offset, out)
        }
        ServerMessage::Joined {
            recovered,
            presence,
            read,
            ..
        } => {
            let fields = 5
                + u32::from(recovered.is_some())
                + u32::from(presence.is_some())
                + u32::from(read.is_some());
            write_position(msg, fields, out)?;
            write_flag("recovered", *recovered, out)?;
            write_flag("presence", *presence, out)?;
            if let Some(read) = read {
                write_str("read", out)?;
                write_uint(*read, out)?;
            }
            Ok(())
        }
        ServerMessage::Members {
            id,
            room,
            members,
            next,
        } => {
            write_reply_head(4 + u32::from(next.is_some()), id, out)?;
            write_str("room", out)?;
            write_str(room, out)?;
            write_str("members", out)?;
            write_array_len(members.len(), out)?;
            members.iter().try_for_each(|m| write_member(m, out))?;
            match next {
                Some(next) => {
                    write_str("next", out)?;
                    write_str(next, out)
                }
                None => Ok(()),
            }
        }
        ServerMessage::Watching { id, users } => {
            write_reply_head(3, id, out)?;
            write_str("users", out)?;
            write_array_len(users.len(), out)?;
            users.iter().try_for_each(|u| write_user_state(u, out))
        }
        ServerMessage::History { messages, .. } => {
            write_position(msg, 6, out)?;
            write_str("messages", out)?;
            write_array_len(messages.len(), out)?;
            messages
                .iter()
                .try_for_each(|entry| write_entry(entry, out))
        }
        ServerMessage::Event {
            event,
            room,
            from,
            offset,
            data,
        } => {
            write_map_len(
                3 + u32::from(room.is_some())
                    + u32::from(from.is_some())
                    + u32::from(offset.is_some()),
                out,
            )?;
            write_str("type", out)?;
            write_str("event", out)?;
            write_str("event", out)?;
            write_str(event, out)?;
            if let Some(room) = room {
                write_str("room", out)?;
                write_str(room, out)?;
            }
            write_from(*from, out)?;
            if let Some(offset) = offset {
                write_str("offset", out)?;
                write_uint(*offset, out)?;
            }
            write_str("data", out)?;
            transcode(*data, Format::MsgPack, out)
        }
    }
}

/// The opening of a reply map of `fields` entries that carries a stream position, up to its
/// `offset` (nothing for a message without a position).
fn write_position(
    msg: &ServerMessage<'_>,
    fields: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let Some(p) = msg.position() else {
        return Ok(());
    };
    write_reply_head(fields, p.id, out)?;
    write_str("room", out)?;
    write_str(p.room, out)?;
    write_str("epoch", out)?;
    write_str(p.epoch, out)?;
    write_str("offset", out)?;
    write_uint(p.offset, out)
}

/// The opening of a reply map of `fields` entries, up to its `id`.
fn write_reply_head(fields: u32, id: &Id<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(fields, out)?;
    write_str("type", out)?;
    write_str("reply", out)?;
    write_str("id", out)?;
    write_id(id, out)
}

pub(crate) fn write_array_len(len: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = u32::try_from(len).map_err(|_| EncodeError("an array of more than 2^32-1".into()))?;
    encode::write_array_len(out, len).map(drop).map_err(enc)
}

/// An optional boolean field (nothing when `None`).
fn write_flag(name: &str, value: Option<bool>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match value {
        Some(value) => {
            write_str(name, out)?;
            encode::write_bool(out, value).map_err(enc)
        }
        None => Ok(()),
    }
}

fn write_member(m: &Member<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(2, out)?;
    write_str("user", out)?;
    write_str(m.user, out)?;
    write_str("connections", out)?;
    write_uint(u64::from(m.connections), out)
}

fn write_user_state(u: &UserState<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(2, out)?;
    write_str("user", out)?;
    write_str(u.user, out)?;
    write_str("online", out)?;
    encode::write_bool(out, u.online).map_err(enc)
}

fn write_entry(entry: &HistoryEntry<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(4 + u32::from(entry.from.is_some()), out)?;
    write_str("offset", out)?;
    write_uint(entry.offset, out)?;
    write_str("at", out)?;
    write_uint(entry.at, out)?;
    write_str("event", out)?;
    write_str(entry.event, out)?;
    write_from(entry.from, out)?;
    write_str("data", out)?;
    transcode(entry.data, Format::MsgPack, out)
}

/// An event's optional `from`.
fn write_from(from: Option<&str>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match from {
        Some(from) => {
            write_str("from", out)?;
            write_str(from, out)
        }
        None => Ok(()),
    }
}

fn write_welcome(w: &Welcome<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map_len(7, out)?;
    write_str("type", out)?;
    write_str("welcome", out)?;
    write_str("user", out)?;
    write_str(w.user, out)?;
    write_str("conn", out)?;
    write_str(w.conn, out)?;
    write_str("session", out)?;
    write_str(w.session, out)?;
    write_str("shard", out)?;
    write_uint(u64::from(w.shard), out)?;
    write_str("heartbeat", out)?;
    write_map_len(2, out)?;
    write_str("interval_ms", out)?;
    write_uint(w.heartbeat.interval_ms, out)?;
    write_str("timeout_ms", out)?;
    write_uint(w.heartbeat.timeout_ms, out)?;
    write_str("limits", out)?;
    write_map_len(4, out)?;
    write_str("max_message_bytes", out)?;
    write_uint(w.limits.max_message_bytes, out)?;
    write_str("rate_per_sec", out)?;
    write_uint(u64::from(w.limits.rate_per_sec), out)?;
    write_str("rate_burst", out)?;
    write_uint(u64::from(w.limits.rate_burst), out)?;
    write_str("max_rooms", out)?;
    write_uint(u64::from(w.limits.max_rooms), out)
}

/// Appends a client request (the caller restores `out` on error).
pub(crate) fn encode_request(req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let fields: u32 = match &req.command {
        Command::Auth { .. } | Command::Leave { .. } | Command::Ack { .. } => 2,
        Command::Read { .. } => 3,
        Command::Join {
            since, presence, ..
        } => 2 + u32::from(since.is_some()) + u32::from(presence.is_some()),
        Command::Members { after, .. } => {
            2 + req.command.history_bounds().map(|_| 1).sum::<u32>() + u32::from(after.is_some())
        }
        Command::Watch { .. } | Command::Unwatch { .. } => 2,
        Command::Create {
            private, presence, ..
        } => {
            2 + u32::from(*private)
                + req.command.room_options().map(|_| 1).sum::<u32>()
                + u32::from(presence.is_some())
        }
        Command::Publish {
            echo, ephemeral, ..
        } => 4 + u32::from(*echo) + u32::from(*ephemeral) + u32::from(req.command.idem().is_some()),
        Command::Send { echo, .. } => {
            4 + u32::from(*echo) + u32::from(req.command.idem().is_some())
        }
        Command::History { .. } => 2 + req.command.history_bounds().map(|_| 1).sum::<u32>(),
        Command::Ping => 1,
    };
    write_map_len(fields + u32::from(req.id.is_some()), out)?;
    write_str("cmd", out)?;
    write_str(req.command.name(), out)?;
    if let Some(id) = &req.id {
        write_str("id", out)?;
        write_id(id, out)?;
    }
    match &req.command {
        Command::Auth { token } => {
            write_str("token", out)?;
            write_str(token, out)
        }
        Command::Join {
            room,
            since,
            presence,
        } => {
            write_str("room", out)?;
            write_str(room, out)?;
            if let Some(since) = since {
                write_since(since, out)?;
            }
            write_flag("presence", *presence, out)
        }
        Command::Leave { room } => {
            write_str("room", out)?;
            write_str(room, out)
        }
        Command::Ack { offset } => {
            write_str("offset", out)?;
            write_uint(*offset, out)
        }
        Command::Read { room, offset } => {
            write_str("room", out)?;
            write_str(room, out)?;
            write_str("offset", out)?;
            write_uint(*offset, out)
        }
        Command::Create {
            room,
            private,
            presence,
            ..
        } => {
            write_str("room", out)?;
            write_str(room, out)?;
            if *private {
                write_str("private", out)?;
                encode::write_bool(out, true).map_err(enc)?;
            }
            for (name, n) in req.command.room_options() {
                write_str(name, out)?;
                write_uint(u64::from(n), out)?;
            }
            if let Some(presence) = presence {
                write_str("presence", out)?;
                encode::write_bool(out, *presence).map_err(enc)?;
            }
            Ok(())
        }
        Command::History { room, .. } | Command::Members { room, .. } => {
            write_str("room", out)?;
            write_str(room, out)?;
            for (name, n) in req.command.history_bounds() {
                write_str(name, out)?;
                write_uint(n, out)?;
            }
            match &req.command {
                Command::Members {
                    after: Some(after), ..
                } => {
                    write_str("after", out)?;
                    write_str(after, out)
                }
                _ => Ok(()),
            }
        }
        Command::Watch { users } | Command::Unwatch { users } => {
            write_str("users", out)?;
            write_array_len(users.len(), out)?;
            users.iter().try_for_each(|u| write_str(u, out))
        }
        Command::Publish {
            room: target,
            event,
            data,
            echo,
            ..
        }
        | Command::Send {
            to: target,
            event,
            data,
            echo,
            ..
        } => {
            let target_key = if matches!(req.command, Command::Publish { .. }) {
                "room"
            } else {
                "to"
            };
            write_str(target_key, out)?;
            write_str(target, out)?;
            write_str("event", out)?;
            write_str(event, out)?;
            write_str("data", out)?;
            transcode(*data, Format::MsgPack, out)?;
            if *echo {
                write_str("echo", out)?;
                encode::write_bool(out, true).map_err(enc)?;
            }
            if let Command::Publish {
                ephemeral: true, ..
            } = req.command
            {
                write_str("ephemeral", out)?;
                encode::write_bool(out, true).map_err(enc)?;
            }
            if let Some(idem) = req.command.idem() {
                write_str("idem", out)?;
                write_str(idem, out)?;
            }
            Ok(())
        }
        Command::Ping => Ok(()),
    }
}

fn write_since(since: &Since<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_str("since", out)?;
    write_map_len(2, out)?;
    write_str("epoch", out)?;
    write_str(&since.epoch, out)?;
    write_str("offset", out)?;
    write_uint(since.offset, out)
}

/// Decodes one server message (client side); `data` is read into a JSON tree.
pub(crate) fn decode_server_message(payload: &[u8]) -> Result<OwnedServerMessage, ProtocolError> {
    crate::client::from_value(decode_server_tree(payload)?)
}

/// Reads one server message into a JSON tree (client side).
/// Binary values read as `{"$binary": …}`, as in JSON.
pub(crate) fn decode_server_tree(payload: &[u8]) -> Result<serde_json::Value, ProtocolError> {
    let mut json = Vec::with_capacity(payload.len() * 2);
    transcode(
        RawData::trusted(Format::MsgPack, payload),
        Format::Json,
        &mut json,
    )
    .map_err(|e| malformed(&e.0))?;
    serde_json::from_slice(&json).map_err(|e| malformed(&e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::ErrorCode;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// A map from `(key, encoded value)` pairs.
    fn map(fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        encode::write_map_len(&mut out, fields.len() as u32).unwrap();
        for (k, v) in fields {
            encode::write_str(&mut out, k).unwrap();
            out.extend_from_slice(v);
        }
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode::write_str(&mut out, v).unwrap();
        out
    }

    fn bad(input: &[u8]) -> (Option<Id<'_>>, ErrorCode, String) {
        let e = decode_request(input).unwrap_err();
        (e.id, e.error.code, e.error.message.into_owned())
    }

    #[test]
    fn decodes_publish_borrowing_strings_and_data() {
        let data = hex("81 a1 61 92 01 cb 40 04 00 00 00 00 00 00"); // {"a":[1,2.5]}
        let input = map(&[
            ("zz", &hex("c4 02 00 01")), // unknown field: any value, even bin
            ("cmd", &s("publish")),
            ("id", &hex("cd 01 00")),
            ("room", &s("lobby")),
            ("event", &s("msg")),
            ("data", &data),
            ("echo", &[0xc3]),
            ("ephemeral", &[0xc3]),
        ]);
        let req = decode_request(&input).unwrap();
        assert_eq!(req.id, Some(Id::Num(256)));
        let Command::Publish {
            room,
            event,
            data: raw,
            echo,
            ephemeral,
            ..
        } = req.command
        else {
            panic!("not a publish");
        };
        assert!(matches!(room, Cow::Borrowed("lobby")));
        assert!(matches!(event, Cow::Borrowed("msg")));
        assert_eq!((raw.format(), raw.bytes()), (Format::MsgPack, &data[..]));
        assert!(echo && ephemeral);
    }

    #[test]
    fn decodes_join_since_and_history() {
        let since = map(&[
            ("x", &hex("c4 01 00")), // unknown: skipped, whatever its type
            ("offset", &hex("d0 29")),
            ("epoch", &s("9f2c")),
        ]);
        let input = map(&[
            ("cmd", &s("join")),
            ("room", &s("lobby")),
            ("since", &since),
        ]);
        let Command::Join {
            since: Some(Since { epoch, offset }),
            ..
        } = decode_request(&input).unwrap().command
        else {
            panic!("not a join with since");
        };
        assert!(matches!(epoch, Cow::Borrowed("9f2c")));
        assert_eq!(offset, 41);
        let history = map(&[
            ("cmd", &s("history")),
            ("room", &s("r")),
            ("limit", &hex("cd 03 e8")),
            ("after", &hex("cf ff ff ff ff ff ff ff ff")),
            ("since", &[0x01]), // not read by history
        ]);
        assert_eq!(
            decode_request(&history).unwrap().command,
            Command::History {
                room: "r".into(),
                limit: Some(1000),
                before: None,
                after: Some(u64::MAX),
            }
        );
    }

    #[test]
    fn ids_of_every_width() {
        for (bytes, id) in [
            (hex("07"), Id::Num(7)),
            (hex("cc ff"), Id::Num(255)),
            (hex("cf ff ff ff ff ff ff ff ff"), Id::Num(u64::MAX)),
            (hex("d0 05"), Id::Num(5)),
            (hex("d3 00 00 00 00 00 00 00 09"), Id::Num(9)),
            (s("abc"), Id::Str("abc".into())),
        ] {
            let input = map(&[("cmd", &s("ping")), ("id", &bytes)]);
            assert_eq!(decode_request(&input).unwrap().id, Some(id));
        }
        for bytes in [
            hex("ff"),
            hex("d0 ff"),
            hex("c0"),
            hex("c3"),
            hex("cb 3f f0 00 00 00 00 00 00"),
            s(&"x".repeat(65)),
        ] {
            let input = map(&[("cmd", &s("dance")), ("id", &bytes)]);
            let (id, code, msg) = bad(&input);
            assert_eq!((id, code), (None, ErrorCode::BadRequest));
            assert!(msg.starts_with("id: "), "{msg}");
        }
    }

    #[test]
    fn refuses_with_field_named_messages_and_keeps_the_id() {
        let id: &[u8] = &[0x07];
        let join_since = |since: &[u8]| {
            map(&[
                ("id", id),
                ("cmd", &s("join")),
                ("room", &s("r")),
                ("since", since),
            ])
        };
        let (history_cmd, room) = (s("history"), s("r"));
        let history = |fields: &[(&str, &[u8])]| {
            let mut all: Vec<(&str, &[u8])> = vec![("id", id), ("cmd", &history_cmd[..])];
            all.extend_from_slice(fields);
            all.push(("room", &room[..]));
            map(&all)
        };
        let bad_request = |input: Vec<u8>, message| (input, ErrorCode::BadRequest, message);
        let cases: Vec<(Vec<u8>, ErrorCode, &str)> = vec![
            bad_request(join_since(&[0x05]), "since: expected an object"),
            bad_request(join_since(&hex("92 a1 65 01")), "since: expected an object"),
            bad_request(join_since(&[0x80]), "since.epoch: missing"),
            bad_request(
                join_since(&map(&[("epoch", &s("e"))])),
                "since.offset: missing",
            ),
            bad_request(
                join_since(&map(&[("epoch", &s("")), ("offset", &[0x01])])),
                "since.epoch: empty",
            ),
            bad_request(
                join_since(&map(&[("epoch", &s(&"e".repeat(65))), ("offset", &[0x01])])),
                "since.epoch: longer than 64 bytes",
            ),
            bad_request(
                join_since(&map(&[("epoch", &hex("a1 ff")), ("offset", &[0x01])])),
                "since.epoch: invalid UTF-8",
            ),
            bad_request(
                join_since(&map(&[("epoch", &s("e")), ("offset", &[0xff])])),
                "since.offset: expected an unsigned integer",
            ),
            bad_request(
                join_since(&map(&[("epoch", &s("e")), ("offset", &hex("d0 ff"))])),
                "since.offset: expected an unsigned integer",
            ),
            bad_request(
                join_since(&map(&[("epoch", &s("e")), ("offset", &s("1"))])),
                "since.offset: expected an unsigned integer",
            ),
            bad_request(
                join_since(&map(&[
                    ("epoch", &s("e")),
                    ("offset", &[0x01]),
                    ("epoch", &s("f")),
                ])),
                "since: duplicate field `epoch`",
            ),
            bad_request(
                join_since(&hex("82 a5 65 70 6f 63 68 a1 65 01 02")),
                "since: map keys must be strings",
            ),
            bad_request(
                map(&[("id", id), ("cmd", &s("history")), ("limit", &[0x05])]),
                "room: missing",
            ),
            bad_request(history(&[("limit", &[0x00])]), "limit: expected 1 to 1000"),
            bad_request(
                history(&[("limit", &hex("cd 03 e9"))]),
                "limit: expected 1 to 1000",
            ),
            bad_request(
                history(&[("limit", &hex("ce 00 01 00 00"))]),
                "limit: expected 1 to 1000",
            ),
            bad_request(
                history(&[("limit", &hex("cb 40 49 00 00 00 00 00 00"))]),
                "limit: expected an unsigned integer",
            ),
            bad_request(
                history(&[("before", &[0xe0])]),
                "before: expected an unsigned integer",
            ),
            bad_request(
                history(&[("after", &[0xc0])]),
                "after: expected an unsigned integer",
            ),
            bad_request(
                history(&[("before", &[0x0a]), ("after", &[0x02])]),
                "before, after: give one, not both",
            ),
            (map(&[("id", id)]), ErrorCode::BadRequest, "cmd: missing"),
            (
                map(&[("id", id), ("cmd", &[0x01])]),
                ErrorCode::BadRequest,
                "cmd: expected a string",
            ),
            (
                map(&[("id", id), ("cmd", &s("dance"))]),
                ErrorCode::UnknownCommand,
                "unknown command `dance`",
            ),
            (
                map(&[("id", id), ("cmd", &s("join")), ("room", &[0x01])]),
                ErrorCode::BadRequest,
                "room: expected a string",
            ),
            (
                map(&[("id", id), ("cmd", &s("join")), ("room", &hex("a2 ff fe"))]),
                ErrorCode::BadRequest,
                "room: invalid UTF-8",
            ),
            (
                map(&[("id", id), ("cmd", &s("join")), ("room", &s(""))]),
                ErrorCode::BadRequest,
                "room: empty",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("join")),
                    ("room", &s(&"r".repeat(129))),
                ]),
                ErrorCode::BadRequest,
                "room: longer than 128 bytes",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("room", &s("r")),
                    ("event", &s("e")),
                    ("echo", &[0x01]),
                ]),
                ErrorCode::BadRequest,
                "echo: expected a boolean",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("join")),
                    ("room", &s("a")),
                    ("room", &s("b")),
                ]),
                ErrorCode::BadRequest,
                "duplicate field `room`",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &hex("81 a7 2462696e617279 a4 61476b3d")),
                ]),
                ErrorCode::BadRequest,
                r#"data: a map whose one key is "$binary" stands for binary in JSON: send bin"#,
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &[vec![0x9b], [0xc4, 0x00].repeat(11)].concat()),
                ]),
                ErrorCode::BadRequest,
                "data: more than 10 binary values",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &hex("d4 01 00")),
                ]),
                ErrorCode::BadRequest,
                "data: MessagePack ext types are not supported",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &hex("c7 01 05 00")),
                ]),
                ErrorCode::BadRequest,
                "data: MessagePack ext types are not supported",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &hex("81 01 02")),
                ]),
                ErrorCode::BadRequest,
                "data: map keys must be strings",
            ),
            (
                map(&[
                    ("id", id),
                    ("cmd", &s("publish")),
                    ("data", &hex("91 a1 ff")),
                ]),
                ErrorCode::BadRequest,
                "data: invalid UTF-8 in a string",
            ),
            (
                map(&[("id", id), ("cmd", &s("publish")), ("data", &hex("c1"))]),
                ErrorCode::BadRequest,
                "malformed MessagePack: invalid marker 0xc1",
            ),
        ];
        for (input, code, message) in cases {
            let (got_id, got_code, msg) = bad(&input);
            assert_eq!(
                (got_id, got_code, msg.as_str()),
                (Some(Id::Num(7)), code, message),
                "{}",
                hex::encode(&input)
            );
        }
    }

    #[test]
    fn refuses_malformed_input() {
        for (input, message) in [
            (hex(""), "malformed MessagePack: unexpected end of input"),
            (hex("91 a0"), "expected a MessagePack map"),
            (hex("a4 70 69 6e 67"), "expected a MessagePack map"),
            (
                hex("82 a3 63 6d 64"),
                "malformed MessagePack: unexpected end of input",
            ),
            (hex("81 01 02"), "map keys must be strings"),
            (
                hex("80 c0"),
                "malformed MessagePack: trailing bytes after the message",
            ),
            (
                hex("df ff ff ff ff 00"),
                "malformed MessagePack: map of 4294967295 entries in 1 remaining bytes",
            ),
            (
                hex("81 a4 64 61 74 61 dd 7f ff ff ff"),
                "malformed MessagePack: array of 2147483647 elements in 0 remaining bytes",
            ),
            (
                hex("81 a4 64 61 74 61 db ff ff ff ff"),
                "malformed MessagePack: unexpected end of input",
            ),
            (
                hex("81 a4 64 61 74 61 df ff ff ff ff"),
                "malformed MessagePack: map of 4294967295 entries in 0 remaining bytes",
            ),
            (
                hex("81 a1 7a c9 ff ff ff ff"),
                "malformed MessagePack: unexpected end of input",
            ),
        ] {
            let (id, code, msg) = bad(&input);
            assert_eq!(
                (id, code, msg.as_str()),
                (None, ErrorCode::BadRequest, message),
                "{}",
                hex::encode(&input)
            );
        }
    }

    #[test]
    fn truncated_after_the_id_still_carries_it() {
        let mut input = map(&[
            ("id", &[0x2a]),
            ("cmd", &s("publish")),
            ("data", &hex("92 01 02")),
        ]);
        input.pop();
        let (id, code, _) = bad(&input);
        assert_eq!((id, code), (Some(Id::Num(42)), ErrorCode::BadRequest));
    }

    #[test]
    fn limits_depth_in_data_but_skips_unknown_fields_at_any_depth() {
        let nest = |n: usize| {
            let mut v = vec![0x91; n];
            v.push(0xc0);
            v
        };
        let publish = |field: &str, d: &[u8]| {
            map(&[
                ("cmd", &s("publish")),
                ("room", &s("r")),
                ("event", &s("e")),
                (field, d),
            ])
        };
        assert!(decode_request(&publish("data", &nest(64))).is_ok());
        assert_eq!(
            bad(&publish("data", &nest(65))).2,
            "data: nested deeper than 64"
        );
        // Unknown fields: skipped at any depth, without recursion, as in JSON.
        assert!(decode_request(&publish("x", &nest(64))).is_ok());
        assert!(decode_request(&publish("x", &nest(100_000))).is_ok());
        let mut maps = [0x81, 0xa1, b'k'].repeat(100_000);
        maps.push(0xc0);
        assert!(decode_request(&publish("x", &maps)).is_ok());
        // Still well-formed only: a nested lie or a cut message is refused.
        let mut cut = nest(1_000);
        cut.pop();
        assert_eq!(
            bad(&publish("x", &cut)).2,
            "malformed MessagePack: array of 1 elements in 0 remaining bytes"
        );
        assert_eq!(
            bad(&publish("x", &hex("91 91 dd 7f ff ff ff"))).2,
            "malformed MessagePack: array of 2147483647 elements in 0 remaining bytes"
        );
        // A known field nested deep is skipped, then refused for its type.
        assert_eq!(bad(&publish("room", &nest(1_000))).1, ErrorCode::BadRequest);
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        // 10 bytes claiming 2^32-1 entries/elements at several places.
        for input in [
            hex("df ff ff ff ff a1 61 c0 c0 c0"),
            hex("81 a4 64 61 74 61 dd ff ff ff"),
            hex("81 a1 78 dd ff ff ff ff 00 00"),
            hex("81 a1 78 db ff ff ff ff 00 00"),
            hex("81 a1 78 c6 ff ff ff ff 00 00"),
            hex("81 a5 73 69 6e 63 65 df ff ff ff ff"),
            hex("81 a5 73 69 6e 63 65 81 a1 78 dd ff ff ff ff"),
        ] {
            assert_eq!(bad(&input).1, ErrorCode::BadRequest);
        }
    }

    #[test]
    fn never_panics_on_pseudo_random_input() {
        // A tiny LCG; inputs are biased toward interesting markers so that some get deep.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let interesting = [
            0x80, 0x81, 0x91, 0xa3, 0xc0, 0xc4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff,
        ];
        let mut ok = 0;
        for i in 0..10_000 {
            let len = (next() % 48) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        interesting[(r as usize / 3) % interesting.len()]
                    } else {
                        (r >> 8) as u8
                    }
                })
                .collect();
            if i % 2 == 0 && !input.is_empty() {
                input[0] = 0x80 | (input[0] & 0x0f);
            }
            if decode_request(&input).is_ok() {
                ok += 1;
            }
            let _ = validate_data(&input);
            let _ = decode_server_message(&input);
            // The JSON side gets the same bytes (mostly invalid UTF-8 / syntax, which it must
            // refuse without panicking too).
            let _ = crate::json::decode_request(&input);
            let _ = crate::transcode::validate(Format::Json, &input);
        }
        assert!(ok < 10_000);
    }

    #[test]
    fn encodes_compactly() {
        let mut out = Vec::new();
        encode_server_message(&ServerMessage::Reply { id: Id::Num(5) }, &mut out).unwrap();
        assert_eq!(hex::encode(&out), "82a474797065a57265706c79a2696405");
        out.clear();
        let req = Request {
            id: None,
            command: Command::Ping,
        };
        encode_request(&req, &mut out).unwrap();
        assert_eq!(hex::encode(&out), "81a3636d64a470696e67");
    }

    #[test]
    fn new_commands_round_trip() {
        for req in [
            Request {
                id: Some(Id::Num(2)),
                command: Command::Join {
                    room: "lobby".into(),
                    since: Some(Since {
                        epoch: "9f2c".into(),
                        offset: u64::MAX,
                    }),
                    presence: Some(true),
                },
            },
            Request {
                id: None,
                command: Command::History {
                    room: "lobby".into(),
                    limit: Some(1),
                    before: Some(0),
                    after: None,
                },
            },
            Request {
                id: Some(Id::Num(3)),
                command: Command::Members {
                    room: "lobby".into(),
                    limit: None,
                    after: Some("bob".into()),
                },
            },
            Request {
                id: None,
                command: Command::Watch {
                    users: vec!["bob".into(), "é".repeat(64).into()],
                },
            },
        ] {
            let mut out = Vec::new();
            encode_request(&req, &mut out).unwrap();
            assert_eq!(decode_request(&out).unwrap(), req);
        }
    }
}
