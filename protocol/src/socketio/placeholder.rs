//! Placeholders of the default parser's binary packets: `{"_placeholder":true,"num":k}` stands
//! for attachment `k`.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::Value;

use super::error::SioError;
use crate::transcode::BINARY_KEY;

/// Replaces each placeholder in `value` (an argument of a binary packet, as a tree) with the
/// attachment it names as wsgate's JSON for binary, `{"$binary":"<base64>"}`: what the
/// packet's data is as a native command's. An object is a placeholder when its
/// `_placeholder` is `true` (socket.io-parser's `reconstructPacket` rule); one naming no
/// attachment is [`SioError::BadPlaceholder`].
pub fn resolve(value: &mut Value, attachments: &[Bytes]) -> Result<(), SioError> {
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(|v| resolve(v, attachments)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let bytes = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|k| usize::try_from(k).ok())
                .and_then(|k| attachments.get(k))
                .ok_or(SioError::BadPlaceholder)?;
            let mut binary = serde_json::Map::with_capacity(1);
            binary.insert(BINARY_KEY.into(), Value::String(STANDARD.encode(bytes)));
            *value = Value::Object(binary);
            Ok(())
        }
        Value::Object(map) => map.values_mut().try_for_each(|v| resolve(v, attachments)),
        _ => Ok(()),
    }
}

/// Checks that every `{"_placeholder":true,"num":k}` in a binary packet's JSON names one of
/// its `attachments` (socket.io-parser's `reconstructPacket` rule).
pub(crate) fn check(d: &str, attachments: usize) -> Result<(), SioError> {
    let mut de = serde_json::Deserializer::from_str(d);
    Walk { attachments }
        .deserialize(&mut de)
        .map(drop)
        .map_err(|_| SioError::BadPlaceholder)
}

/// Walks any value, checking placeholders; reports what a scalar was, for the map around it.
#[derive(Clone, Copy)]
struct Walk {
    attachments: usize,
}

#[derive(PartialEq, Eq)]
enum Seen {
    True,
    Index(u64),
    Other,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Seen;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Seen, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Seen;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Seen, E> {
        Ok(if b { Seen::True } else { Seen::Other })
    }
    fn visit_u64<E>(self, n: u64) -> Result<Seen, E> {
        Ok(Seen::Index(n))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_unit<E>(self) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seen, A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(Seen::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        let (mut placeholder, mut num) = (false, Seen::Other);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value = map.next_value_seed(self)?;
            match key.as_ref() {
                "_placeholder" => placeholder = value == Seen::True,
                "num" => num = value,
                _ => {}
            }
        }
        match num {
            _ if !placeholder => Ok(Seen::Other),
            Seen::Index(k) if usize::try_from(k).is_ok_and(|k| k < self.attachments) => {
                Ok(Seen::Other)
            }
            _ => Err(serde::de::Error::custom("placeholder")),
        }
    }
}
