//! Codec hot paths: decoding a `publish` with a 64-byte `data` payload, encoding the `event`
//! it becomes (same encoding, and transcoded), and serde_json+RawValue against simd-json for
//! the envelope decode.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wsgate_protocol::{
    decode_request, encode_request, encode_server_message, Command, Format, RawData, Request,
    ServerMessage,
};

/// A publish whose `data` is 64 bytes of JSON.
const PUBLISH_JSON: &str = r#"{"cmd":"publish","id":42,"room":"lobby","event":"chat","data":{"user":"alice","text":"hello world","n":12,"ok":true,"v":[1,2]}}"#;

fn msgpack_publish() -> Vec<u8> {
    let req = decode_request(Format::Json, PUBLISH_JSON.as_bytes()).unwrap();
    let mut out = Vec::new();
    encode_request(Format::MsgPack, &req, &mut out).unwrap();
    out
}

fn data_of<'a>(req: &Request<'a>) -> RawData<'a> {
    match &req.command {
        Command::Publish { data, .. } => *data,
        _ => unreachable!("a publish"),
    }
}

fn event(data: RawData<'_>) -> ServerMessage<'_> {
    ServerMessage::Event {
        event: "chat",
        room: Some("lobby"),
        from: Some("alice"),
        offset: None,
        data,
    }
}

fn benches(c: &mut Criterion) {
    let json = PUBLISH_JSON.as_bytes();
    let mp = msgpack_publish();
    let json_req = decode_request(Format::Json, json).unwrap();
    let mp_req = decode_request(Format::MsgPack, &mp).unwrap();
    assert_eq!(data_of(&json_req).bytes().len(), 64);

    c.bench_function("decode_request/json", |b| {
        b.iter(|| decode_request(Format::Json, black_box(json)).unwrap())
    });
    c.bench_function("decode_request/msgpack", |b| {
        b.iter(|| decode_request(Format::MsgPack, black_box(&mp)).unwrap())
    });

    let mut out = Vec::with_capacity(512);
    let cases = [
        ("encode_event/json", Format::Json, data_of(&json_req)),
        ("encode_event/msgpack", Format::MsgPack, data_of(&mp_req)),
        (
            "encode_event/json_data_to_msgpack",
            Format::MsgPack,
            data_of(&json_req),
        ),
        (
            "encode_event/msgpack_data_to_json",
            Format::Json,
            data_of(&mp_req),
        ),
    ];
    for (name, format, data) in cases {
        let msg = event(data);
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_server_message(format, black_box(&msg), &mut out).unwrap();
                out.len()
            })
        });
    }

    // simd-json parses in place (it needs a mutable copy) and can only give a tree: `data`
    // would then have to be re-serialized. Both sides include the copy of the input.
    let mut scratch = Vec::with_capacity(json.len());
    c.bench_function("envelope/serde_json_rawvalue", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(black_box(json));
            decode_request(Format::Json, &scratch).is_ok()
        })
    });
    c.bench_function("envelope/simd_json_borrowed_value", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(black_box(json));
            simd_json::to_borrowed_value(&mut scratch).is_ok()
        })
    });
}

criterion_group!(codec, benches);
criterion_main!(codec);
