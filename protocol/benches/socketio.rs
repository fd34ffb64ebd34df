//! Socket.IO codec hot paths: encoding one event for each parser (its 64-byte `data` copied, or
//! transcoded from the other format), and decoding a typical client `EVENT` with an ack id.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use wsgate_protocol::socketio::{encode_event, Args, AttachmentLimits, Decoded, Decoder, Event};
use wsgate_protocol::{transcode, Format, RawData};

/// The 64-byte `data` of `benches/codec.rs`.
const DATA: &[u8] = br#"{"user":"alice","text":"hello world","n":12,"ok":true,"v":[1,2]}"#;

/// What socket.io-client sends for `socket.emit("chat:message", {…}, ack)` in `/chat`.
const CLIENT_EVENT: &str = r#"2/chat,5["chat:message",{"content":"hello world","roomId":"lobby"}]"#;

/// The same emit from socket.io-msgpack-parser (with the client's `options`), as notepack
/// writes it (`vectors/socketio/gen.mjs`).
fn client_event_msgpack() -> Bytes {
    let h =
        "85a47479706502a46461746192ac636861743a6d65737361676582a7636f6e74656e74ab68656c6c6f2077\
             6f726c64a6726f6f6d4964a56c6f626279a76f7074696f6e7381a8636f6d7072657373c3a2696405a36e\
             7370a52f63686174";
    hex::decode(h).unwrap().into()
}

fn benches(c: &mut Criterion) {
    let json = RawData::validate(Format::Json, DATA).unwrap();
    let mut mp_bytes = Vec::new();
    transcode(json, Format::MsgPack, &mut mp_bytes).unwrap();
    let mp = RawData::validate(Format::MsgPack, &mp_bytes).unwrap();

    let mut out = Vec::with_capacity(512);
    for (name, parser, data) in [
        ("sio_encode_event/json", Format::Json, json),
        ("sio_encode_event/msgpack", Format::MsgPack, mp),
        (
            "sio_encode_event/json_data_to_msgpack",
            Format::MsgPack,
            json,
        ),
        ("sio_encode_event/msgpack_data_to_json", Format::Json, mp),
    ] {
        let event = Event {
            nsp: "/chat",
            name: "chat".into(),
            args: Args::one(data),
            id: None,
            offset: Some("9f2c41aa07be13d5-42"),
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_event(parser, black_box(&event), &mut out).unwrap();
                out.len()
            })
        });
    }

    let mut decoder = Decoder::new(Format::Json, AttachmentLimits::default());
    c.bench_function("sio_decode_event/json", |b| {
        b.iter(|| match decoder.text(black_box(CLIENT_EVENT)) {
            Ok(Decoded::Packet(p)) => p.nsp().len(),
            other => panic!("{other:?}"),
        })
    });
    let bytes = client_event_msgpack();
    let mut decoder = Decoder::new(Format::MsgPack, AttachmentLimits::default());
    c.bench_function("sio_decode_event/msgpack", |b| {
        b.iter(|| match decoder.binary(black_box(&bytes)) {
            Ok(Decoded::Packet(p)) => p.nsp().len(),
            other => panic!("{other:?}"),
        })
    });
}

criterion_group!(socketio, benches);
criterion_main!(socketio);
