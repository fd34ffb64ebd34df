//! Validation of raw `data` values and transcoding between the two encodings.
//!
//! Transcoding streams from one format's deserializer into the other's serializer with
//! `serde_transcode`: no tree is built. MessagePack floats that JSON cannot represent (NaN,
//! ±infinity) become `null`, as serde_json writes them; integers keep their exact value.

use crate::error::{EncodeError, ProtocolError};
use crate::format::Format;
use crate::message::RawData;

/// Validates one complete value: well-formed, in the JSON data model, at most
/// [`MAX_DEPTH`](crate::MAX_DEPTH) deep, with nothing after it.
pub(crate) fn validate(format: Format, bytes: &[u8]) -> Result<(), ProtocolError> {
    match format {
        Format::Json => {
            let raw: &serde_json::value::RawValue = serde_json::from_slice(bytes)
                .map_err(|e| ProtocolError::bad_request(format!("malformed JSON: {e}")))?;
            check_json(raw.get())
        }
        Format::MsgPack => crate::msgpack::validate_data(bytes),
    }
}

/// Checks a well-formed JSON value the way transcoding will read it: at most
/// [`MAX_DEPTH`](crate::MAX_DEPTH) deep, every number within f64 range, every string free of
/// lone surrogates. A value that passes always transcodes to MessagePack.
pub(crate) fn check_json(value: &str) -> Result<(), ProtocolError> {
    crate::json::check_depth(value.as_bytes())?;
    serde_json::from_str::<Checked>(value)
        .map(|_| ())
        .map_err(|e| ProtocolError::bad_request(format!("data: not representable: {e}")))
}

/// Reads any JSON value without keeping it, so serde_json parses numbers and strings fully
/// (and fails where transcoding would), allocating nothing.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Appends `data` encoded in `target` to `out`: a copy when formats match, else a transcode.
///
/// On error `out` is left as it was.
pub fn transcode(data: RawData<'_>, target: Format, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = match (data.format(), target) {
        (from, to) if from == to => {
            out.extend_from_slice(data.bytes());
            Ok(())
        }
        (Format::Json, _) => json_to_msgpack(data.bytes(), out),
        (Format::MsgPack, _) => msgpack_to_json(data.bytes(), out),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn json_to_msgpack(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut ser = rmp_serde::Serializer::new(&mut *out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| EncodeError(e.to_string()))?;
    de.end().map_err(|e| EncodeError(e.to_string()))
}

fn msgpack_to_json(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let mut ser = serde_json::Serializer::new(&mut *out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| EncodeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::ErrorCode;

    fn to(format: Format, data: RawData<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        transcode(data, format, &mut out).unwrap();
        out
    }

    #[test]
    fn json_to_msgpack_to_json_is_exact() {
        for text in [
            "null",
            "true",
            "0",
            "-1",
            "18446744073709551615",
            "-9223372036854775808",
            "2.5",
            "-0.125",
            "1e+300",
            r#""a\"b\\c\n\u0001é🎉""#,
            "[]",
            "{}",
            r#"{"a":[1,2.5,"x",null,true]}"#,
            r#"{"nested":{"deep":[[[{"k":"v"}]]]},"n":-42,"big":4294967296}"#,
        ] {
            let json = RawData::validate(Format::Json, text.as_bytes()).unwrap();
            let mp = to(Format::MsgPack, json);
            let mp = RawData::validate(Format::MsgPack, &mp).unwrap();
            assert_eq!(to(Format::Json, mp), text.as_bytes(), "{text}");
            assert_eq!(to(Format::Json, json), text.as_bytes());
        }
    }

    #[test]
    fn msgpack_to_json_to_msgpack_is_exact_for_compact_input() {
        for h in [
            "81a161950102a3786978c0c3", // {"a":[1,2,"xix",null,true]}
            "cf ffffffffffffffff",
            "d3 8000000000000000",
            "cb 4004000000000000",
            "90",
            "80",
        ] {
            let bytes = hex::decode(h.replace(' ', "")).unwrap();
            let mp = RawData::validate(Format::MsgPack, &bytes).unwrap();
            let json = to(Format::Json, mp);
            let json = RawData::validate(Format::Json, &json).unwrap();
            assert_eq!(to(Format::MsgPack, json), bytes, "{h}");
        }
    }

    #[test]
    fn msgpack_specials() {
        let cases = [
            ("cb7ff8000000000000", "null"), // f64 NaN
            ("cb7ff0000000000000", "null"), // f64 +inf
            ("ca7f800000", "null"),         // f32 +inf
            ("ca40200000", "2.5"),          // f32
            ("d0ff", "-1"),                 // int8
            ("d1ff00", "-256"),             // int16
            ("cc80", "128"),                // uint8
        ];
        for (h, json) in cases {
            let bytes = hex::decode(h).unwrap();
            let mp = RawData::validate(Format::MsgPack, &bytes).unwrap();
            assert_eq!(
                String::from_utf8(to(Format::Json, mp)).unwrap(),
                json,
                "{h}"
            );
        }
    }

    #[test]
    fn json_that_cannot_transcode_is_refused() {
        for bad in ["1e400", "-1e400", r#""\ud800""#, r#"{"a":["\udc00"]}"#] {
            assert!(validate(Format::Json, bad.as_bytes()).is_err(), "{bad}");
        }
        for good in [
            "1e300",
            "123456789012345678901234567890",
            r#""\ud83d\ude00""#,
        ] {
            assert!(validate(Format::Json, good.as_bytes()).is_ok(), "{good}");
            let mut out = Vec::new();
            transcode(
                RawData::trusted(Format::Json, good.as_bytes()),
                Format::MsgPack,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn validate_refuses_bad_values() {
        for (format, bytes) in [
            (Format::Json, &b"{"[..]),
            (Format::Json, b"1 2"),
            (Format::Json, b""),
            (Format::MsgPack, &[0x92, 0x01][..]),
            (Format::MsgPack, &[0x01, 0x02]),
            (Format::MsgPack, &[0xc4, 0x00]),
            (Format::MsgPack, &[]),
        ] {
            let e = RawData::validate(format, bytes).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
        }
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(RawData::validate(Format::Json, deep.as_bytes()).is_err());
        assert!(RawData::validate(Format::Json, b" [1] ").is_ok());
    }

    #[test]
    fn same_format_is_a_copy() {
        let d = RawData::trusted(Format::Json, b"[1,2]");
        assert_eq!(to(Format::Json, d), b"[1,2]");
    }
}
