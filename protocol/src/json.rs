//! The JSON codec (text frames): a borrowed serde envelope to decode, hand-written output to encode.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::envelope::{self, Envelope, FieldValue, ListError, SinceFields};
use crate::error::{DecodeError, EncodeError, ProtocolError};
use crate::format::Format;
use crate::message::{
    Command, HistoryEntry, Id, Member, OwnedServerMessage, RawData, Request, ServerMessage, Since,
    UserState, Welcome, MAX_DEPTH,
};
use crate::transcode::transcode;

/// The top-level object as serde sees it: every known field kept as its raw text, so that type
/// errors can name the field. Unknown fields are ignored; a repeated known field is an error.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    cmd: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    room: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    echo: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ephemeral: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    idem: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    private: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "maxMembers")]
    max_members: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "historySize")]
    history_size: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "historyTtl")]
    history_ttl: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    before: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    offset: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    presence: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    users: Option<&'a RawValue>,
}

/// A `since` object as serde sees it, like [`Wire`].
#[derive(Deserialize)]
struct SinceWire<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    epoch: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    offset: Option<&'a RawValue>,
}

/// Keeps an explicit `null` as `Some("null")`: `"id": null` is an invalid id, not a missing one.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// A field's raw JSON text, already known to be one well-formed value.
#[derive(Clone, Copy)]
struct Raw<'a>(&'a str);

impl<'a> FieldValue<'a> for Raw<'a> {
    fn id(self) -> Result<Id<'a>, ProtocolError> {
        match self.0.as_bytes().first() {
            Some(b'"') => {
                let s = self.string().map_err(|_| envelope::id_type_error())?;
                envelope::string_id(s)
            }
            Some(b'0'..=b'9') => self.0.parse::<u64>().map(Id::Num).map_err(|_| {
                ProtocolError::bad_request("id: expected an unsigned integer of at most 2^64-1")
            }),
            _ => Err(envelope::id_type_error()),
        }
    }

    fn string(self) -> Result<Cow<'a, str>, &'static str> {
        unquote(self.0)
    }

    fn boolean(self) -> Option<bool> {
        match self.0 {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    fn uint(self) -> Option<u64> {
        // A JSON number of digits only (no sign, fraction or exponent) that fits.
        self.0.parse().ok()
    }

    fn since(self) -> Result<SinceFields<Self>, ProtocolError> {
        // Checked here: serde would also read an array as the struct's fields in order.
        if !self.0.starts_with('{') {
            return Err(ProtocolError::bad_request("since: expected an object"));
        }
        let wire: SinceWire<'a> = serde_json::from_str(self.0)
            .map_err(|e| ProtocolError::bad_request(format!("since: {e}")))?;
        Ok(SinceFields {
            epoch: raw(wire.epoch),
            offset: raw(wire.offset),
        })
    }

    fn data(self) -> Result<RawData<'a>, ProtocolError> {
        crate::transcode::check_json(self.0)?;
        Ok(RawData::trusted(Format::Json, self.0.as_bytes()))
    }

    fn list(self, max: usize) -> Result<Vec<Self>, ListError> {
        if !self.0.starts_with('[') {
            return Err(ListError::NotArray);
        }
        let mut de = serde_json::Deserializer::from_str(self.0);
        let items = de
            .deserialize_seq(Bounded { max })
            .map_err(|_| ListError::NotArray)?;
        items.ok_or(ListError::TooLong)
    }
}

/// Reads an array's items as raw values; past `max`, the rest is skipped without being kept
/// (`None`), so a long array is refused without being read into memory.
struct Bounded {
    max: usize,
}

impl<'de> serde::de::Visitor<'de> for Bounded {
    type Value = Option<Vec<Raw<'de>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                return Ok(None);
            }
            items.push(Raw(item.get()));
        }
        Ok(Some(items))
    }
}

/// A well-formed JSON value's text as a string: borrowed when it holds no escapes.
pub(crate) fn unquote(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or("expected a string")?;
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw)
        .map(Cow::Owned)
        .map_err(|_| "expected a string")
}

fn raw(v: Option<&RawValue>) -> Option<Raw<'_>> {
    v.map(|v| Raw(v.get()))
}

/// Decodes one request from a text message.
pub(crate) fn decode_request(payload: &[u8]) -> Result<Request<'_>, DecodeError<'_>> {
    let fail = |error| DecodeError { id: None, error };
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(fail(ProtocolError::bad_request("expected a JSON object"))),
        None => {
            return Err(fail(ProtocolError::bad_request(
                "malformed JSON: empty message",
            )))
        }
    }
    let wire: Wire<'_> = serde_json::from_slice(payload).map_err(|e| fail(serde_error(&e)))?;
    let envelope = Envelope {
        id: raw(wire.id),
        cmd: raw(wire.cmd),
        token: raw(wire.token),
        room: raw(wire.room),
        event: raw(wire.event),
        to: raw(wire.to),
        data: raw(wire.data),
        echo: raw(wire.echo),
        ephemeral: raw(wire.ephemeral),
        idem: raw(wire.idem),
        private: raw(wire.private),
        max_members: raw(wire.max_members),
        history_size: raw(wire.history_size),
        history_ttl: raw(wire.history_ttl),
        since: raw(wire.since),
        limit: raw(wire.limit),
        before: raw(wire.before),
        after: raw(wire.after),
        offset: raw(wire.offset),
        presence: raw(wire.presence),
        users: raw(wire.users),
    };
    envelope.into_request(Format::Json)
}

/// Maps a serde_json error: syntax errors are "malformed JSON", data errors (a duplicate field)
/// keep serde's own message, which names the field.
fn serde_error(e: &serde_json::Error) -> ProtocolError {
    match e.classify() {
        serde_json::error::Category::Data => ProtocolError::bad_request(e.to_string()),
        _ => ProtocolError::bad_request(format!("malformed JSON: {e}")),
    }
}

/// Checks that a well-formed JSON value nests at most [`MAX_DEPTH`] arrays/objects deep, with a
/// byte scan that counts brackets outside strings.
pub(crate) fn check_depth(value: &[u8]) -> Result<(), ProtocolError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in value {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ProtocolError::bad_request(format!(
                        "data: nested deeper than {MAX_DEPTH}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Appends a server message (the caller restores `out` on error).
pub(crate) fn encode_server_message(
    msg: &ServerMessage<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match msg {
        ServerMessage::Welcome(w) => write_welcome(w, out),
        ServerMessage::Reply { id } => {
            write_reply_head(id, out);
            out.push(b'}');
        }
        ServerMessage::Error { id, code, message } => {
            out.extend_from_slice(br#"{"type":"error""#);
            if let Some(id) = id {
                out.extend_from_slice(br#","id":"#);
                write_id(id, out);
            }
            out.extend_from_slice(br#","code":"#);
            write_str(code.as_str(), out);
            out.extend_from_slice(br#","message":"#);
            write_str(message, out);
            out.push(b'}');
        }
        ServerMessage::Published { id, offset } => {
            out.extend_from_slice(br#"{"type":"reply","id":"#);
            write_id(id, out);
            out.extend_from_slice(br#","offset":"#);
            write_u64(*offset, out);
            out.push(b'}');
        }
        ServerMessage::Joined {
            recovered,
            presence,
            read,
            ..
        } => {
            write_position(msg, out);
            write_flag("recovered", *recovered, out);
            write_flag("presence", *presence, out);
            if let Some(read) = read {
                out.extend_from_slice(br#","read":"#);
                write_u64(*read, out);
            }
            out.push(b'}');
        }
        ServerMessage::Members {
            id,
            room,
            members,
            next,
        } => {
            write_reply_head(id, out);
            out.extend_from_slice(br#","room":"#);
            write_str(room, out);
            out.extend_from_slice(br#","members":"#);
            write_list(members, out, write_member)?;
            if let Some(next) = next {
                out.extend_from_slice(br#","next":"#);
                write_str(next, out);
            }
            out.push(b'}');
        }
        ServerMessage::Watching { id, users } => {
            write_reply_head(id, out);
            out.extend_from_slice(br#","users":"#);
            write_list(users, out, write_user_state)?;
            out.push(b'}');
        }
        ServerMessage::History { messages, .. } => {
            write_position(msg, out);
            out.extend_from_slice(br#","messages":"#);
            write_list(messages, out, write_entry)?;
            out.push(b'}');
        }
        ServerMessage::Event {
            event,
            room,
            from,
            offset,
            data,
        } => {
            out.extend_from_slice(br#"{"type":"event","event":"#);
            write_str(event, out);
            if let Some(room) = room {
                out.extend_from_slice(br#","room":"#);
                write_str(room, out);
            }
            write_from(*from, out);
            if let Some(offset) = offset {
                out.extend_from_slice(br#","offset":"#);
                write_u64(*offset, out);
            }
            out.extend_from_slice(br#","data":"#);
            transcode(*data, Format::Json, out)?;
            out.push(b'}');
        }
    }
    Ok(())
}

/// The opening of a reply that carries a stream position, up to its `offset` (no closing brace;
/// nothing for a message without a position).
fn write_position(msg: &ServerMessage<'_>, out: &mut Vec<u8>) {
    let Some(p) = msg.position() else {
        return;
    };
    write_reply_head(p.id, out);
    out.extend_from_slice(br#","room":"#);
    write_str(p.room, out);
    out.extend_from_slice(br#","epoch":"#);
    write_str(p.epoch, out);
    out.extend_from_slice(br#","offset":"#);
    write_u64(p.offset, out);
}

/// The opening of a reply, up to its `id` (no closing brace).
fn write_reply_head(id: &Id<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"reply","id":"#);
    write_id(id, out);
}

/// An optional boolean field, with its leading comma (nothing when `None`).
fn write_flag(name: &str, value: Option<bool>, out: &mut Vec<u8>) {
    if let Some(value) = value {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(if value { b"true" } else { b"false" });
    }
}

/// An array, each item written by `item`.
fn write_list<T>(
    items: &[T],
    out: &mut Vec<u8>,
    mut item: impl FnMut(&T, &mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    out.push(b'[');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(it, out)?;
    }
    out.push(b']');
    Ok(())
}

fn write_member(m: &Member<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(br#"{"user":"#);
    write_str(m.user, out);
    out.extend_from_slice(br#","connections":"#);
    write_u64(u64::from(m.connections), out);
    out.push(b'}');
    Ok(())
}

fn write_user_state(u: &UserState<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(br#"{"user":"#);
    write_str(u.user, out);
    out.extend_from_slice(br#","online":"#);
    out.extend_from_slice(if u.online { b"true" } else { b"false" });
    out.push(b'}');
    Ok(())
}

fn write_entry(entry: &HistoryEntry<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(br#"{"offset":"#);
    write_u64(entry.offset, out);
    out.extend_from_slice(br#","at":"#);
    write_u64(entry.at, out);
    out.extend_from_slice(br#","event":"#);
    write_str(entry.event, out);
    write_from(entry.from, out);
    out.extend_from_slice(br#","data":"#);
    transcode(entry.data, Format::Json, out)?;
    out.push(b'}');
    Ok(())
}

/// An event's optional `from`, with its leading comma.
fn write_from(from: Option<&str>, out: &mut Vec<u8>) {
    if let Some(from) = from {
        out.extend_from_slice(br#","from":"#);
        write_str(from, out);
    }
}

fn write_welcome(w: &Welcome<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"welcome","user":"#);
    write_str(w.user, out);
    out.extend_from_slice(br#","conn":"#);
    write_str(w.conn, out);
    out.extend_from_slice(br#","session":"#);
    write_str(w.session, out);
    out.extend_from_slice(br#","shard":"#);
    write_u64(u64::from(w.shard), out);
    out.extend_from_slice(br#","heartbeat":{"interval_ms":"#);
    write_u64(w.heartbeat.interval_ms, out);
    out.extend_from_slice(br#","timeout_ms":"#);
    write_u64(w.heartbeat.timeout_ms, out);
    out.extend_from_slice(br#"},"limits":{"max_message_bytes":"#);
    write_u64(w.limits.max_message_bytes, out);
    out.extend_from_slice(br#","rate_per_sec":"#);
    write_u64(u64::from(w.limits.rate_per_sec), out);
    out.extend_from_slice(br#","rate_burst":"#);
    write_u64(u64::from(w.limits.rate_burst), out);
    out.extend_from_slice(br#","max_rooms":"#);
    write_u64(u64::from(w.limits.max_rooms), out);
    out.extend_from_slice(b"}}");
}

/// Appends a client request (the caller restores `out` on error).
pub(crate) fn encode_request(req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(br#"{"cmd":"#);
    write_str(req.command.name(), out);
    if let Some(id) = &req.id {
        out.extend_from_slice(br#","id":"#);
        write_id(id, out);
    }
    let key = |name: &str, out: &mut Vec<u8>| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    let field = |name: &str, value: &str, out: &mut Vec<u8>| {
        key(name, out);
        write_str(value, out);
    };
    match &req.command {
        Command::Auth { token } => field("token", token, out),
        Command::Join {
            room,
            since,
            presence,
        } => {
            field("room", room, out);
            if let Some(since) = since {
                write_since(since, out);
            }
            write_flag("presence", *presence, out);
        }
        Command::Leave { room } => field("room", room, out),
        Command::Ack { offset } => {
            key("offset", out);
            write_u64(*offset, out);
        }
        Command::Read { room, offset } => {
            field("room", room, out);
            key("offset", out);
            write_u64(*offset, out);
        }
        Command::Create {
            room,
            private,
            presence,
            ..
        } => {
            field("room", room, out);
            if *private {
                out.extend_from_slice(br#","private":true"#);
            }
            for (name, n) in req.command.room_options() {
                key(name, out);
                write_u64(u64::from(n), out);
            }
            if let Some(presence) = presence {
                key("presence", out);
                out.extend_from_slice(if *presence { b"true" } else { b"false" });
            }
        }
        Command::History { room, .. } | Command::Members { room, .. } => {
            field("room", room, out);
            for (name, n) in req.command.history_bounds() {
                key(name, out);
                write_u64(n, out);
            }
            if let Command::Members {
                after: Some(after), ..
            } = &req.command
            {
                field("after", after, out);
            }
        }
        Command::Watch { users } | Command::Unwatch { users } => {
            key("users", out);
            write_list(users, out, |user, out| {
                write_str(user, out);
                Ok(())
            })?;
        }
        Command::Publish {
            room,
            event,
            data,
            echo,
            ephemeral,
            idem,
        } => {
            field("room", room, out);
            field("event", event, out);
            write_data_and_echo(*data, *echo, out)?;
            if *ephemeral {
                out.extend_from_slice(br#","ephemeral":true"#);
            }
            if let Some(idem) = idem {
                field("idem", idem, out);
            }
        }
        Command::Send {
            to,
            event,
            data,
            echo,
            idem,
        } => {
            field("to", to, out);
            field("event", event, out);
            write_data_and_echo(*data, *echo, out)?;
            if let Some(idem) = idem {
                field("idem", idem, out);
            }
        }
        Command::Ping => {}
    }
    out.push(b'}');
    Ok(())
}

fn write_since(since: &Since<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#","since":{"epoch":"#);
    write_str(&since.epoch, out);
    out.extend_from_slice(br#","offset":"#);
    write_u64(since.offset, out);
    out.push(b'}');
}

fn write_data_and_echo(
    data: RawData<'_>,
    echo: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.extend_from_slice(br#","data":"#);
    transcode(data, Format::Json, out)?;
    if echo {
        out.extend_from_slice(br#","echo":true"#);
    }
    Ok(())
}

/// Decodes one server message (client side).
pub(crate) fn decode_server_message(payload: &[u8]) -> Result<OwnedServerMessage, ProtocolError> {
    crate::client::from_value(decode_server_tree(payload)?)
}

/// Reads one server message into a JSON tree (client side).
pub(crate) fn decode_server_tree(payload: &[u8]) -> Result<serde_json::Value, ProtocolError> {
    serde_json::from_slice(payload)
        .map_err(|e| ProtocolError::bad_request(format!("malformed JSON: {e}")))
}

fn write_id(id: &Id<'_>, out: &mut Vec<u8>) {
    match id {
        Id::Num(n) => write_u64(*n, out),
        Id::Str(s) => write_str(s, out),
    }
}

/// Appends `n` in decimal.
pub(crate) fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes (so that top-level strings
/// and transcoded `data` strings read the same): `\"`, `\\`, `\b \f \n \r \t`, other control
/// characters as `\u00XX` (lowercase hex). Everything else, including non-ASCII, is copied.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::ErrorCode;

    fn decode(s: &str) -> Result<Request<'_>, DecodeError<'_>> {
        decode_request(s.as_bytes())
    }

    fn bad(s: &str) -> (Option<Id<'_>>, ErrorCode, String) {
        let e = decode(s).unwrap_err();
        (e.id, e.error.code, e.error.message.into_owned())
    }

    #[test]
    fn a_null_presence_is_refused_as_in_messagepack() {
        let e = decode(r#"{"cmd":"join","id":1,"room":"r","presence":null}"#).unwrap_err();
        assert_eq!(e.error.message, "presence: expected a boolean");
    }

    #[test]
    fn decodes_publish_borrowing_strings_and_data() {
        let req = decode(
            r#" {"echo":true,"data":{"a":[1,"x"]},"event":"msg","room":"lobby","cmd":"publish","id":3,"x":[{}]} "#,
        )
        .unwrap();
        assert_eq!(req.id, Some(Id::Num(3)));
        let Command::Publish {
            room,
            event,
            data,
            echo,
            ephemeral,
            ..
        } = req.command
        else {
            panic!("not a publish");
        };
        assert!(matches!(room, Cow::Borrowed("lobby")));
        assert!(matches!(event, Cow::Borrowed("msg")));
        assert_eq!(data.bytes(), br#"{"a":[1,"x"]}"#);
        assert_eq!(data.format(), Format::Json);
        assert!(echo);
        assert!(!ephemeral, "absent: a stored publish");
    }

    #[test]
    fn strings_with_escapes_are_owned_and_unescaped() {
        let req = decode(r#"{"cmd":"join","room":"a\"b\u00e9\n","id":"x\\y"}"#).unwrap();
        assert_eq!(req.id, Some(Id::Str(Cow::Owned("x\\y".into()))));
        let Command::Join { room, .. } = req.command else {
            panic!("not a join");
        };
        assert!(matches!(room, Cow::Owned(_)));
        assert_eq!(room, "a\"b\u{e9}\n");
    }

    #[test]
    fn absent_data_is_null_and_echo_defaults_false() {
        let req = decode(r#"{"cmd":"send","to":"u1","event":"e"}"#).unwrap();
        assert_eq!(
            req.command,
            Command::Send {
                to: "u1".into(),
                event: "e".into(),
                data: RawData::null(Format::Json),
                echo: false,
                idem: None
            }
        );
    }

    #[test]
    fn decodes_join_since_skipping_its_unknown_fields() {
        let req = decode(
            r#"{"cmd":"join","id":2,"room":"lobby","since":{"offset":41,"x":[{}],"epoch":"9f2c"}}"#,
        )
        .unwrap();
        let Command::Join {
            since: Some(Since { epoch, offset }),
            ..
        } = req.command
        else {
            panic!("not a join with since");
        };
        assert!(matches!(epoch, Cow::Borrowed("9f2c")));
        assert_eq!(offset, 41);
        let plain = decode(r#"{"cmd":"join","room":"lobby","limit":0}"#).unwrap();
        assert!(matches!(plain.command, Command::Join { since: None, .. }));
        // Only `join` reads `since`: other commands ignore it, like any field they do not use.
        assert!(decode(r#"{"cmd":"leave","room":"lobby","since":5}"#).is_ok());
    }

    #[test]
    fn decodes_history() {
        let history = |s| decode(s).unwrap().command;
        assert_eq!(
            history(r#"{"cmd":"history","id":3,"room":"lobby","limit":50,"before":120}"#),
            Command::History {
                room: "lobby".into(),
                limit: Some(50),
                before: Some(120),
                after: None
            }
        );
        assert_eq!(
            history(r#"{"cmd":"history","room":"r","after":18446744073709551615,"limit":1000}"#),
            Command::History {
                room: "r".into(),
                limit: Some(1000),
                before: None,
                after: Some(u64::MAX)
            }
        );
        assert_eq!(
            history(r#"{"cmd":"history","room":"r","since":[],"echo":1}"#),
            Command::History {
                room: "r".into(),
                limit: None,
                before: None,
                after: None
            }
        );
    }

    #[test]
    fn refuses_with_field_named_messages() {
        let long = "r".repeat(129);
        let join_since =
            |since: &str| format!(r#"{{"id":1,"cmd":"join","room":"r","since":{since}}}"#);
        let history = |rest: &str| format!(r#"{{"id":1,"cmd":"history","room":"r"{rest}}}"#);
        let cases: Vec<(String, &str)> = vec![
            (r#"{"id":1}"#.into(), "cmd: missing"),
            (r#"{"id":1,"cmd":5}"#.into(), "cmd: expected a string"),
            (r#"{"id":1,"cmd":"join"}"#.into(), "room: missing"),
            (
                r#"{"id":1,"cmd":"join","room":5}"#.into(),
                "room: expected a string",
            ),
            (
                r#"{"id":1,"cmd":"join","room":null}"#.into(),
                "room: expected a string",
            ),
            (r#"{"id":1,"cmd":"join","room":""}"#.into(), "room: empty"),
            (
                format!(r#"{{"id":1,"cmd":"join","room":"{long}"}}"#),
                "room: longer than 128 bytes",
            ),
            (
                r#"{"id":1,"cmd":"publish","room":"r"}"#.into(),
                "event: missing",
            ),
            (r#"{"id":1,"cmd":"send","event":"e"}"#.into(), "to: missing"),
            (
                r#"{"id":1,"cmd":"auth","token":[]}"#.into(),
                "token: expected a string",
            ),
            (
                r#"{"id":1,"cmd":"publish","room":"r","event":"e","echo":1}"#.into(),
                "echo: expected a boolean",
            ),
            (
                r#"{"id":1,"cmd":"publish","room":"r","event":"e","ephemeral":"yes"}"#.into(),
                "ephemeral: expected a boolean",
            ),
            (
                format!(
                    r#"{{"id":1,"cmd":"send","to":"u","event":"e","idem":"{}"}}"#,
                    "k".repeat(65)
                ),
                "idem: longer than 64 bytes",
            ),
            (
                r#"{"id":1,"cmd":"publish","room":"r","event":"e","idem":""}"#.into(),
                "idem: empty",
            ),
            (
                r#"{"id":1,"cmd":"publish","room":"r","event":"e","idem":7}"#.into(),
                "idem: expected a string",
            ),
            (r#"{"id":1,"cmd":"create"}"#.into(), "room: missing"),
            (
                r#"{"id":1,"cmd":"create","room":"r","private":"no"}"#.into(),
                "private: expected a boolean",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","maxMembers":0}"#.into(),
                "maxMembers: expected 1 to 1000000",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","maxMembers":1000001}"#.into(),
                "maxMembers: expected 1 to 1000000",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","maxMembers":-5}"#.into(),
                "maxMembers: expected an unsigned integer",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","historySize":10001}"#.into(),
                "historySize: expected 0 to 10000",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","historyTtl":0}"#.into(),
                "historyTtl: expected 1 to 2592000",
            ),
            (
                r#"{"id":1,"cmd":"create","room":"r","historyTtl":"1h"}"#.into(),
                "historyTtl: expected an unsigned integer",
            ),
            (join_since("5"), "since: expected an object"),
            (join_since("[\"e\",1]"), "since: expected an object"),
            (join_since("null"), "since: expected an object"),
            (join_since("{}"), "since.epoch: missing"),
            (join_since(r#"{"epoch":"e"}"#), "since.offset: missing"),
            (
                join_since(r#"{"epoch":"","offset":1}"#),
                "since.epoch: empty",
            ),
            (
                join_since(r#"{"epoch":5,"offset":1}"#),
                "since.epoch: expected a string",
            ),
            (
                join_since(&format!(r#"{{"epoch":"{}","offset":1}}"#, "e".repeat(65))),
                "since.epoch: longer than 64 bytes",
            ),
            (
                join_since(r#"{"epoch":"e","offset":-1}"#),
                "since.offset: expected an unsigned integer",
            ),
            (
                join_since(r#"{"epoch":"e","offset":1.5}"#),
                "since.offset: expected an unsigned integer",
            ),
            (
                join_since(r#"{"epoch":"e","offset":"1"}"#),
                "since.offset: expected an unsigned integer",
            ),
            (
                join_since(r#"{"epoch":"e","offset":18446744073709551616}"#),
                "since.offset: expected an unsigned integer",
            ),
            (
                r#"{"id":1,"cmd":"history","limit":5}"#.into(),
                "room: missing",
            ),
            (history(r#","limit":0"#), "limit: expected 1 to 1000"),
            (history(r#","limit":1001"#), "limit: expected 1 to 1000"),
            (
                history(r#","limit":4294967297"#),
                "limit: expected 1 to 1000",
            ),
            (
                history(r#","limit":"50""#),
                "limit: expected an unsigned integer",
            ),
            (
                history(r#","limit":1e2"#),
                "limit: expected an unsigned integer",
            ),
            (
                history(r#","before":-5"#),
                "before: expected an unsigned integer",
            ),
            (
                history(r#","after":null"#),
                "after: expected an unsigned integer",
            ),
            (
                history(r#","before":10,"after":2"#),
                "before, after: give one, not both",
            ),
            (
                r#"{"id":1,"cmd":"join","room":"r","presence":"yes"}"#.into(),
                "presence: expected a boolean",
            ),
            (
                r#"{"id":1,"cmd":"members","room":"r","limit":1001}"#.into(),
                "limit: expected 1 to 1000",
            ),
            (
                r#"{"id":1,"cmd":"members","room":"r","after":""}"#.into(),
                "after: empty",
            ),
            (r#"{"id":1,"cmd":"watch"}"#.into(), "users: missing"),
            (
                r#"{"id":1,"cmd":"watch","users":{}}"#.into(),
                "users: expected an array of strings",
            ),
            (
                r#"{"id":1,"cmd":"unwatch","users":[]}"#.into(),
                "users: empty",
            ),
            (
                r#"{"id":1,"cmd":"watch","users":["a",""]}"#.into(),
                "users[1]: empty",
            ),
            (
                format!(r#"{{"id":1,"cmd":"watch","users":["{long}"]}}"#),
                "users[0]: longer than 128 bytes",
            ),
            (
                format!(
                    r#"{{"id":1,"cmd":"watch","users":[{}]}}"#,
                    vec!["\"u\""; 1001].join(",")
                ),
                "users: more than 1000 users",
            ),
            (
                format!(
                    r#"{{"id":1,"cmd":"watch","users":[{}]}}"#,
                    vec!["[\"u\"]"; 5000].join(",")
                ),
                "users: more than 1000 users",
            ),
        ];
        for (input, message) in cases {
            let (id, code, msg) = bad(&input);
            assert_eq!(
                (id, code, msg.as_str()),
                (Some(Id::Num(1)), ErrorCode::BadRequest, message),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_a_repeated_field_in_since() {
        let (id, code, msg) =
            bad(r#"{"cmd":"join","id":1,"room":"r","since":{"epoch":"a","epoch":"b","offset":1}}"#);
        assert_eq!((id, code), (Some(Id::Num(1)), ErrorCode::BadRequest));
        assert!(msg.starts_with("since: duplicate field `epoch`"), "{msg}");
    }

    #[test]
    fn client_reads_event_offsets_and_replies_with_positions() {
        let msg = |s: &str| decode_server_message(s.as_bytes());
        let event = msg(r#"{"type":"event","event":"chat","room":"r","offset":42,"data":1}"#);
        assert!(matches!(
            event,
            Ok(OwnedServerMessage::Event {
                offset: Some(42),
                ..
            })
        ));
        let event = msg(r#"{"type":"event","event":"chat","data":1}"#);
        assert!(matches!(
            event,
            Ok(OwnedServerMessage::Event { offset: None, .. })
        ));
        let bad = msg(r#"{"type":"event","event":"chat","offset":-1,"data":1}"#).unwrap_err();
        assert!(bad.message.starts_with("offset: "), "{bad}");
        let reply = msg(
            r#"{"type":"reply","id":3,"room":"r","epoch":"e","offset":57,"recovered":false,"messages":[{"offset":40}]}"#,
        );
        assert_eq!(reply, Ok(OwnedServerMessage::Reply { id: Id::Num(3) }));
    }

    #[test]
    fn refuses_bad_ids_without_an_id() {
        let long = "i".repeat(65);
        for input in [
            r#"{"cmd":"ping","id":-1}"#.to_string(),
            r#"{"cmd":"ping","id":1.5}"#.into(),
            r#"{"cmd":"ping","id":1e3}"#.into(),
            r#"{"cmd":"ping","id":true}"#.into(),
            r#"{"cmd":"ping","id":null}"#.into(),
            r#"{"cmd":"ping","id":{}}"#.into(),
            r#"{"cmd":"ping","id":18446744073709551616}"#.into(),
            format!(r#"{{"cmd":"ping","id":"{long}"}}"#),
        ] {
            let (id, code, msg) = bad(&input);
            assert_eq!((id, code), (None, ErrorCode::BadRequest), "{input}");
            assert!(msg.starts_with("id: "), "{msg}");
        }
        let max = decode(r#"{"cmd":"ping","id":18446744073709551615}"#).unwrap();
        assert_eq!(max.id, Some(Id::Num(u64::MAX)));
    }

    #[test]
    fn unknown_command_names_it_truncated_and_keeps_the_id() {
        let (id, code, msg) = bad(r#"{"cmd":"dance","id":"q"}"#);
        assert_eq!(id, Some(Id::Str("q".into())));
        assert_eq!(code, ErrorCode::UnknownCommand);
        assert_eq!(msg, "unknown command `dance`");
        let long = "é".repeat(100);
        let (_, _, msg) = bad(&format!(r#"{{"cmd":"{long}"}}"#));
        assert_eq!(msg, format!("unknown command `{}`", "é".repeat(64)));
    }

    #[test]
    fn refuses_malformed_non_objects_duplicates_and_trailing_data() {
        for (input, prefix) in [
            ("", "malformed JSON"),
            ("{", "malformed JSON"),
            (r#"{"cmd":"ping"} x"#, "malformed JSON"),
            (r#"{"cmd":"ping"}{}"#, "malformed JSON"),
            ("[1]", "expected a JSON object"),
            ("\"ping\"", "expected a JSON object"),
            (
                r#"{"cmd":"join","room":"a","room":"b"}"#,
                "duplicate field `room`",
            ),
        ] {
            let (id, code, msg) = bad(input);
            assert_eq!((id, code), (None, ErrorCode::BadRequest), "{input}");
            assert!(msg.starts_with(prefix), "{input}: {msg}");
        }
    }

    #[test]
    fn limits_data_depth() {
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let msg =
            |d: &str| format!(r#"{{"cmd":"publish","id":2,"room":"r","event":"e","data":{d}}}"#);
        assert!(decode(&msg(&ok)).is_ok());
        let input = msg(&deep);
        let (id, code, m) = bad(&input);
        assert_eq!(
            (id, code, m.as_str()),
            (
                Some(Id::Num(2)),
                ErrorCode::BadRequest,
                "data: nested deeper than 64"
            )
        );
        // Brackets inside strings do not count.
        let strings = msg(&format!("[\"{}\\\"{}\"]", "[".repeat(100), "{".repeat(100)));
        assert!(decode(&strings).is_ok());
    }

    #[test]
    fn escapes_like_serde_json() {
        let s = "q\"b\\s/\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é🎉";
        let mut out = Vec::new();
        write_str(s, &mut out);
        assert_eq!(out, serde_json::to_vec(s).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}é🎉\""
        );
    }

    #[test]
    fn writes_integers() {
        for n in [0, 9, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn never_panics_on_pseudo_random_token_soup() {
        let tokens = [
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"cmd\"",
            "\"publish\"",
            "\"join\"",
            "\"id\"",
            "1",
            "-1",
            "1.5e3",
            "\"data\"",
            "\"room\"",
            "\"event\"",
            "\"r\\u00e9\"",
            "\"\\\"",
            "null",
            "true",
            "\"echo\"",
            "\"ephemeral\"",
            "\"idem\"",
            "\"create\"",
            "\"private\"",
            "\"maxMembers\"",
            "\"historySize\"",
            "\"historyTtl\"",
            "\"history\"",
            "\"since\"",
            "\"epoch\"",
            "\"offset\"",
            "\"limit\"",
            "\"before\"",
            " ",
            "\"\\ud800\"",
        ];
        let mut state: u64 = 7;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let mut decoded = 0;
        for _ in 0..10_000 {
            let n = next() % 24;
            let mut input = String::from("{");
            for _ in 0..n {
                input.push_str(tokens[next() % tokens.len()]);
            }
            if let Ok(req) = decode_request(input.as_bytes()) {
                decoded += 1;
                let mut out = Vec::new();
                encode_request(&req, &mut out).unwrap();
                assert_eq!(decode_request(&out).unwrap(), req, "{input}");
            }
        }
        assert!(decoded < 10_000);
    }
}
