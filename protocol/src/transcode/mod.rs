//! Validation of raw `data` values and transcoding between the two encodings.
//!
//! A value is walked once, streaming, from its encoding's reader (`from_json`, `from_msgpack`)
//! into a writer of the other (`sink`): no tree is built. Binary is a value of its own: MessagePack
//! `bin`, and in JSON the one-key object `{"$binary":"<standard base64 with padding>"}`; each
//! becomes the other. MessagePack floats that JSON cannot represent (NaN, ±infinity) become
//! `null`, as serde_json writes them; integers keep their exact value.

mod from_json;
mod from_msgpack;
mod sink;

use bytes::Bytes;

use crate::error::{EncodeError, ProtocolError};
use crate::format::Format;
use crate::message::{RawData, MAX_BINARIES};
pub(crate) use sink::BINARY_KEY;
use sink::{BinaryAs, Count, JsonWriter, MsgPackWriter};

/// Validates one complete value: well-formed, in wsgate's data model, at most
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
/// lone surrogates, every one-key `$binary` object a binary value, at most [`MAX_BINARIES`]
/// of them. A value that passes always transcodes to MessagePack.
pub(crate) fn check_json(value: &str) -> Result<(), ProtocolError> {
    crate::json::check_depth(value.as_bytes())?;
    let mut count = Count::default();
    from_json::walk(value.as_bytes(), &mut count).map_err(|e| {
        let e = e.to_string();
        if e.starts_with(from_json::NOT_BASE64) {
            ProtocolError::bad_request(e)
        } else {
            ProtocolError::bad_request(format!("data: not representable: {e}"))
        }
    })?;
    check_binaries(count.binaries)
}

/// At most [`MAX_BINARIES`] binary values in one `data`.
pub(crate) fn check_binaries(n: usize) -> Result<(), ProtocolError> {
    if n > MAX_BINARIES {
        return Err(ProtocolError::bad_request(format!(
            "data: more than {MAX_BINARIES} binary values"
        )));
    }
    Ok(())
}

/// Appends `data` encoded in `target` to `out`: a copy when formats match, else a transcode.
///
/// On error `out` is left as it was.
pub fn transcode(data: RawData<'_>, target: Format, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    crate::restore_on_error(out, |out| match (data.format(), target) {
        (from, to) if from == to => {
            out.extend_from_slice(data.bytes());
            Ok(())
        }
        (Format::Json, _) => from_json::walk(data.bytes(), &mut MsgPackWriter { out })
            .map_err(|e| EncodeError(e.to_string())),
        (Format::MsgPack, _) => {
            let mut json = JsonWriter {
                out,
                binary: BinaryAs::Base64,
            };
            from_msgpack::walk(data.bytes(), &mut json)
        }
    })
}

/// Appends `data` as JSON the way Socket.IO's default parser carries it: each binary value as
/// a placeholder `{"_placeholder":true,"num":k}`, its bytes pushed to `attachments` (`k` is
/// their number before the push). JSON without binary is copied as it is.
///
/// On error `out` is left as it was (`attachments` may have grown).
pub(crate) fn transcode_with_placeholders(
    data: RawData<'_>,
    out: &mut Vec<u8>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    let bytes = data.bytes();
    crate::restore_on_error(out, |out| match data.format() {
        // Without `$binary` spelled out or an escape that could spell it, there is none.
        Format::Json if !contains(bytes, b"$binary") && !contains(bytes, b"\\u") => {
            out.extend_from_slice(bytes);
            Ok(())
        }
        Format::Json => {
            let (start, before) = (out.len(), attachments.len());
            let mut json = JsonWriter {
                out: &mut *out,
                binary: BinaryAs::Placeholders(&mut *attachments),
            };
            from_json::walk(bytes, &mut json).map_err(|e| EncodeError(e.to_string()))?;
            if attachments.len() == before {
                // No binary after all: the sender's bytes, as they were.
                out.truncate(start);
                out.extend_from_slice(bytes);
            }
            Ok(())
        }
        Format::MsgPack => {
            let mut json = JsonWriter {
                out,
                binary: BinaryAs::Placeholders(attachments),
            };
            from_msgpack::walk(bytes, &mut json)
        }
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
            (Format::MsgPack, &[0xc4, 0x01]),
            (Format::MsgPack, &[0xd4, 0x00, 0x00]),
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
    fn binary_is_bin_in_msgpack_and_base64_in_json_both_ways() {
        for (json, h) in [
            (r#"{"$binary":"aGk="}"#, "c4 02 6869"),
            (r#"{"$binary":""}"#, "c4 00"),
            (
                r#"{"img":{"$binary":"AAH/"},"n":[{"$binary":"AA=="}]}"#,
                "82 a3696d67 c4 03 0001ff a16e 91 c4 01 00",
            ),
            // Not a binary value: more than one key, or `$binary` among others.
            (
                r#"{"$binary":"aGk=","x":1}"#,
                "82 a7 2462696e617279 a4 61476b3d a178 01",
            ),
            (
                r#"{"x":1,"$binary":"aGk="}"#,
                "82 a178 01 a7 2462696e617279 a4 61476b3d",
            ),
            (
                r#"{"$binary":[1],"x":{}}"#,
                "82 a7 2462696e617279 91 01 a178 80",
            ),
        ] {
            let bytes = hex::decode(h.replace(' ', "")).unwrap();
            let j = RawData::validate(Format::Json, json.as_bytes()).unwrap();
            assert_eq!(
                hex::encode(to(Format::MsgPack, j)),
                h.replace(' ', ""),
                "{json}"
            );
            let m = RawData::validate(Format::MsgPack, &bytes).unwrap();
            assert_eq!(String::from_utf8(to(Format::Json, m)).unwrap(), json, "{h}");
        }
        // Every width of bin, and a long one (str16 of base64 in JSON).
        let long = vec![7u8; 70_000];
        let mut bin32 = vec![0xc6, 0, 1, 0x11, 0x70];
        bin32.extend(&long);
        let json = to(
            Format::Json,
            RawData::validate(Format::MsgPack, &bin32).unwrap(),
        );
        let back = to(
            Format::MsgPack,
            RawData::validate(Format::Json, &json).unwrap(),
        );
        assert_eq!(back, bin32);
        let escaped = r#"{"\u0024binary":"aGk="}"#;
        let j = RawData::validate(Format::Json, escaped.as_bytes()).unwrap();
        assert_eq!(
            to(Format::MsgPack, j),
            [0xc4, 0x02, b'h', b'i'],
            "an escaped key reads the same"
        );
    }

    #[test]
    fn a_lone_binary_key_must_hold_base64() {
        for bad in [
            r#"{"$binary":"aGk"}"#,
            r#"{"$binary":"aGk=="}"#,
            r#"{"$binary":"a Gk="}"#,
            r#"{"$binary":"aG_="}"#,
            r#"[{"$binary":5}]"#,
            r#"{"$binary":null}"#,
            r#"{"a":{"$binary":{}}}"#,
        ] {
            let e = RawData::validate(Format::Json, bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(
                e.message.starts_with(r#"data: {"$binary": …} must hold"#),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn at_most_ten_binary_values() {
        let items = |n: usize| format!("[{}]", vec![r#"{"$binary":""}"#; n].join(","));
        assert!(RawData::validate(Format::Json, items(10).as_bytes()).is_ok());
        let e = RawData::validate(Format::Json, items(11).as_bytes()).unwrap_err();
        assert_eq!(e.message, "data: more than 10 binary values");
        let mp = |n: usize| [vec![0x90 | n as u8], [0xc4, 0x00].repeat(n)].concat();
        assert!(RawData::validate(Format::MsgPack, &mp(10)).is_ok());
        assert!(RawData::validate(Format::MsgPack, &mp(11)).is_err());
    }

    #[test]
    fn a_binary_value_nests_as_deep_in_both() {
        let json = |n: usize| format!(r#"{}{{"$binary":""}}{}"#, "[".repeat(n), "]".repeat(n));
        let mp = |n: usize| [vec![0x91; n], vec![0xc4, 0x00]].concat();
        assert!(RawData::validate(Format::Json, json(63).as_bytes()).is_ok());
        assert!(RawData::validate(Format::MsgPack, &mp(63)).is_ok());
        assert!(RawData::validate(Format::Json, json(64).as_bytes()).is_err());
        assert!(RawData::validate(Format::MsgPack, &mp(64)).is_err());
    }

    #[test]
    fn placeholders_for_the_default_parser() {
        let mut attachments = vec![Bytes::from_static(b"before")];
        let mut out = b"kept".to_vec();
        let mp = hex::decode("92 c4 02 6869 81 a1 62 c4 01 ff".replace(' ', "")).unwrap();
        transcode_with_placeholders(
            RawData::trusted(Format::MsgPack, &mp),
            &mut out,
            &mut attachments,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"kept[{"_placeholder":true,"num":1},{"b":{"_placeholder":true,"num":2}}]"#
        );
        assert_eq!(attachments, [&b"before"[..], b"hi", &[0xff]]);
        let mut attachments = Vec::new();
        let mut out = Vec::new();
        let json = br#"[ 1.50, {"$binary":"aGk="}, "\u00e9" ]"#;
        transcode_with_placeholders(
            RawData::trusted(Format::Json, json),
            &mut out,
            &mut attachments,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[1.5,{"_placeholder":true,"num":0},"é"]"#
        );
        assert_eq!(attachments, [&b"hi"[..]]);
        // JSON without binary is the sender's bytes, even when it could have held some.
        for json in [
            &br#"[ 1.50, "x" ]"#[..],
            br#"[ "\u00e9", {"$binary":"aGk=","x":1} ]"#,
        ] {
            let (mut out, mut attachments) = (Vec::new(), Vec::new());
            transcode_with_placeholders(
                RawData::trusted(Format::Json, json),
                &mut out,
                &mut attachments,
            )
            .unwrap();
            assert_eq!(out, json);
            assert!(attachments.is_empty());
        }
    }

    #[test]
    fn same_format_is_a_copy() {
        let d = RawData::trusted(Format::Json, b"[1,2]");
        assert_eq!(to(Format::Json, d), b"[1,2]");
    }
}
