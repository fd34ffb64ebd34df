//! The two decoders agree where the specification says one thing for both encodings: fields a
//! command does not use are skipped at any depth that fits in the message, and `data` nests at
//! most `MAX_DEPTH` deep.

#![allow(clippy::unwrap_used, missing_docs)]

use wsgate_protocol::{decode_request, Format, MAX_DEPTH};

/// `{"cmd":"ping","<field>":[[…null…]]}` nested `n` deep, in both encodings.
fn ping_with(field: &str, n: usize) -> (String, Vec<u8>) {
    let json = format!(
        r#"{{"cmd":"ping","{field}":{}null{}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let mut msgpack = vec![0x82, 0xa3, b'c', b'm', b'd', 0xa4, b'p', b'i', b'n', b'g'];
    msgpack.push(0xa0 | u8::try_from(field.len()).unwrap());
    msgpack.extend_from_slice(field.as_bytes());
    msgpack.extend(std::iter::repeat_n(0x91, n));
    msgpack.push(0xc0);
    (json, msgpack)
}

fn outcomes(field: &str, n: usize) -> [Result<(), String>; 2] {
    let (json, msgpack) = ping_with(field, n);
    [
        decode_request(Format::Json, json.as_bytes()),
        decode_request(Format::MsgPack, &msgpack),
    ]
    .map(|r| r.map(drop).map_err(|e| e.error.message.into_owned()))
}

#[test]
fn unknown_fields_are_skipped_at_any_depth_in_both() {
    for n in [0, 1, MAX_DEPTH, MAX_DEPTH + 1, 128, 129, 10_000, 200_000] {
        assert_eq!(outcomes("zz", n), [Ok(()), Ok(())], "depth {n}");
    }
}

#[test]
fn data_nests_at_most_max_depth_in_both() {
    assert_eq!(outcomes("data", MAX_DEPTH), [Ok(()), Ok(())]);
    let too_deep = Err(format!("data: nested deeper than {MAX_DEPTH}"));
    for n in [MAX_DEPTH + 1, 10_000] {
        assert_eq!(
            outcomes("data", n),
            [too_deep.clone(), too_deep.clone()],
            "depth {n}"
        );
    }
}
