//! The values a packet carries, as the bytes they arrived in: one [`Payload`], or the [`Args`]
//! of an event or ack; and reading inside them without building a tree.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{IgnoredAny, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use super::error::SioError;
use super::{json, msgpack};
use crate::error::ProtocolError;
use crate::format::Format;
use crate::json::unquote;
use crate::message::RawData;

/// One encoded value of a packet (an auth payload, an argument), as the sender encoded it:
/// well-formed and at most [`MAX_DEPTH`](crate::MAX_DEPTH) deep. With the msgpack parser it
/// may hold what JSON cannot (bin, ext, `undefined`); [`Payload::data`] says whether it can
/// travel as wsgate data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    format: Format,
    bytes: &'a [u8],
}

impl<'a> Payload<'a> {
    /// Wraps one value the decoder already checked.
    pub(crate) const fn new(format: Format, bytes: &'a [u8]) -> Payload<'a> {
        Payload { format, bytes }
    }

    /// The encoding of [`Payload::bytes`].
    pub const fn format(&self) -> Format {
        self.format
    }

    /// The value's encoded bytes.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The string at `key` of this payload when it is an object (an auth payload's `token`,
    /// or the `pid` and `offset` of a reconnect): `None` when the key is absent, `undefined`,
    /// or not a string. Reads without building a tree; the first of repeated keys wins.
    pub fn str_field(&self, key: &str) -> Option<Cow<'a, str>> {
        match self.format {
            Format::Json => str_field(self.bytes, key),
            Format::MsgPack => msgpack::str_field(self.bytes, key).map(Cow::Borrowed),
        }
    }

    /// The value as wsgate data: checked to be inside the JSON data model (no bin or ext,
    /// string map keys), so that it transcodes.
    pub fn data(&self) -> Result<RawData<'a>, ProtocolError> {
        RawData::validate(self.format, self.bytes)
    }
}

impl<'a> From<RawData<'a>> for Payload<'a> {
    fn from(data: RawData<'a>) -> Payload<'a> {
        Payload::new(data.format(), data.bytes())
    }
}

/// The arguments of an event (after its name) or of an ack, as the encoded bytes they arrived
/// in: for JSON the array's elements with their commas, without the brackets (`1,"2",{}`); for
/// MessagePack the elements one after the other. A binary packet of the default parser also
/// holds its attachments; its JSON refers to them with `{"_placeholder":true,"num":k}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args<'a> {
    pub(super) format: Format,
    pub(super) len: usize,
    pub(super) bytes: &'a [u8],
    pub(super) attachments: &'a [Bytes],
    /// One value already checked to be wsgate data ([`Args::one`]): transcoded whole, without
    /// splitting or checking it again.
    pub(super) one_data: bool,
}

impl<'a> Args<'a> {
    /// No arguments.
    pub const fn empty(format: Format) -> Args<'static> {
        Args {
            format,
            len: 0,
            bytes: b"",
            attachments: &[],
            one_data: false,
        }
    }

    /// One argument: wsgate's `data` of an event, or a reply to an ack.
    pub const fn one(data: RawData<'a>) -> Args<'a> {
        Args {
            format: data.format(),
            len: 1,
            bytes: data.bytes(),
            attachments: &[],
            one_data: true,
        }
    }

    /// Arguments the decoder checked.
    pub(crate) const fn new(format: Format, len: usize, bytes: &'a [u8]) -> Args<'a> {
        Args {
            format,
            len,
            bytes,
            attachments: &[],
            one_data: false,
        }
    }

    /// Arguments from one encoded array (`[null,{"ok":true}]`, or a MessagePack array): its
    /// elements, borrowed; for an ack answered with more than one value.
    pub fn from_array(format: Format, array: &'a [u8]) -> Result<Args<'a>, SioError> {
        match format {
            Format::Json => json::args_from_array(array),
            Format::MsgPack => msgpack::args_from_array(array),
        }
    }

    /// The same arguments with binary attachments (default parser): their JSON refers to
    /// attachment `k` with `{"_placeholder":true,"num":k}`.
    pub const fn with_attachments(self, attachments: &'a [Bytes]) -> Args<'a> {
        Args {
            attachments,
            ..self
        }
    }

    /// The encoding of the arguments.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// How many arguments there are.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The arguments' encoded bytes (see [`Args`]).
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The binary attachments, in `num` order (empty unless the packet was binary): sent as
    /// binary messages right after the packet that [`encode_event`] writes with these args.
    pub const fn attachments(&self) -> &'a [Bytes] {
        self.attachments
    }

    /// Each argument, in order.
    pub fn iter(&self) -> impl Iterator<Item = Payload<'a>> + 'a {
        let format = self.format;
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let (item, tail) = match format {
                Format::Json => split_first(rest)?,
                Format::MsgPack => msgpack::split_first(rest)?,
            };
            rest = tail;
            Some(Payload::new(format, item))
        })
        .take(self.len)
    }
}

/// The string at `key` of a JSON object (see [`Payload::str_field`]).
fn str_field<'a>(object: &'a [u8], key: &str) -> Option<Cow<'a, str>> {
    let text = std::str::from_utf8(object).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de.deserialize_map(FindKey { key }).ok()??;
    unquote(raw.get()).ok()
}

/// Finds one key's raw value in a map, skipping the others.
struct FindKey<'k> {
    key: &'k str,
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == self.key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Splits the first element off JSON args (`1,"a,b",[2,3]` gives `1` and `"a,b",[2,3]`): the
/// first comma outside strings and brackets ends it.
fn split_first(args: &[u8]) -> Option<(&[u8], &[u8])> {
    if args.is_empty() {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in args.iter().enumerate() {
        if in_string {
            (escaped, in_string) = match b {
                _ if escaped => (false, true),
                b'\\' => (true, true),
                b'"' => (false, false),
                _ => (false, true),
            };
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => return Some((trim(&args[..i]), &args[i + 1..])),
            _ => {}
        }
    }
    Some((trim(args), &[]))
}

fn trim(b: &[u8]) -> &[u8] {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !is_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}
