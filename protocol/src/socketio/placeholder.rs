//! Placeholders of the default parser's binary packets: `{"_placeholder":true,"num":k}` stands
//! for attachment `k`.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::Deserializer;

use super::error::SioError;

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
