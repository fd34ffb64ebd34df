//! A walk over one JSON value into a [`Sink`], streaming from serde_json's parser: nothing is
//! kept but the key of a map's first entry. The one-key object `{"$binary":"<base64>"}` is
//! reported as a binary value; a one-key `$binary` object holding anything else is refused.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::sink::{Sink, BINARY_KEY};

/// The error of a one-key `$binary` object that is not a binary value.
pub(crate) const NOT_BASE64: &str =
    r#"data: {"$binary": …} must hold a string of standard base64 with padding"#;

/// Walks the one JSON value of `json` (nothing may follow it) into `sink`.
pub(crate) fn walk<S: Sink>(json: &[u8], sink: &mut S) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Walk {
        sink,
        element: None,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// One value into the sink; `element` is its index when it is an array's element.
struct Walk<'s, S> {
    sink: &'s mut S,
    element: Option<usize>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for Walk<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Some(i) = self.element {
            self.sink.element(i);
        }
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Walk<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.sink.bool(b);
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        match u64::try_from(n) {
            Ok(n) => self.sink.uint(n),
            Err(_) => self.sink.int(n),
        }
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.sink.uint(n);
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<(), E> {
        self.sink.f64(f);
        Ok(())
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.sink.str(s);
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.sink.null();
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mark = self.sink.begin_array();
        let mut len = 0;
        while seq
            .next_element_seed(Walk {
                sink: &mut *self.sink,
                element: Some(len),
            })?
            .is_some()
        {
            len += 1;
        }
        self.sink.end_array(mark, len);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.sink;
        let Some(first) = map.next_key::<Key<'de>>()? else {
            let mark = sink.begin_map();
            sink.end_map(mark, 0);
            return Ok(());
        };
        let mut lone_binary_key = false;
        let (mark, mut len) = if first.0 == BINARY_KEY {
            // A string is held back until the map is known to end after it.
            match map.next_value_seed(First { sink: &mut *sink })? {
                Held::Str(s) => {
                    let Some(second) = map.next_key::<Key<'de>>()? else {
                        let bytes = STANDARD
                            .decode(s.as_bytes())
                            .map_err(|_| A::Error::custom(NOT_BASE64))?;
                        sink.binary(&bytes);
                        return Ok(());
                    };
                    let mark = sink.begin_map();
                    sink.key(0, BINARY_KEY);
                    sink.str(&s);
                    sink.key(1, &second.0);
                    map.next_value_seed(value(sink))?;
                    (mark, 2)
                }
                Held::Opened(mark) => {
                    lone_binary_key = true;
                    (mark, 1)
                }
            }
        } else {
            let mark = sink.begin_map();
            sink.key(0, &first.0);
            map.next_value_seed(value(sink))?;
            (mark, 1)
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            sink.key(len, &key.0);
            map.next_value_seed(value(sink))?;
            len += 1;
        }
        if lone_binary_key && len == 1 {
            return Err(A::Error::custom(NOT_BASE64));
        }
        sink.end_map(mark, len);
        Ok(())
    }
}

/// A map's value.
fn value<S>(sink: &mut S) -> Walk<'_, S> {
    Walk {
        sink,
        element: None,
    }
}

/// A map key, borrowed unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
}

/// The value of a map's first key when that key is `$binary`: a string is held, anything
/// else opens the map and goes to the sink.
struct First<'s, S> {
    sink: &'s mut S,
}

enum Held<'de> {
    Str(Cow<'de, str>),
    /// The map was opened (this mark), its first entry written.
    Opened(usize),
}

impl<S: Sink> First<'_, S> {
    /// Opens the map and writes its first key, for a value that is not a string.
    fn open(&mut self) -> usize {
        let mark = self.sink.begin_map();
        self.sink.key(0, BINARY_KEY);
        mark
    }

    fn walk<E>(
        mut self,
        write: impl FnOnce(Walk<'_, S>) -> Result<(), E>,
    ) -> Result<Held<'static>, E> {
        let mark = self.open();
        write(value(self.sink))?;
        Ok(Held::Opened(mark))
    }
}

impl<'de, S: Sink> DeserializeSeed<'de> for First<'_, S> {
    type Value = Held<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Held<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for First<'_, S> {
    type Value = Held<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Held<'de>, E> {
        Ok(Held::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Held<'de>, E> {
        Ok(Held::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Held<'de>, E> {
        self.walk(|w| w.visit_bool(b))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Held<'de>, E> {
        self.walk(|w| w.visit_i64(n))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Held<'de>, E> {
        self.walk(|w| w.visit_u64(n))
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Held<'de>, E> {
        self.walk(|w| w.visit_f64(f))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Held<'de>, E> {
        self.walk(|w| w.visit_unit())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Held<'de>, A::Error> {
        self.walk(|w| w.visit_seq(seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Held<'de>, A::Error> {
        self.walk(|w| w.visit_map(map))
    }
}
