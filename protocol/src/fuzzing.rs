//! The bodies of the codec fuzz targets (`fuzz/`), shared with the corpus-replay test so both
//! run the same checks. Not API: hidden from the docs and free to change with the targets.
//!
//! Each target decodes arbitrary bytes as a client request and checks what the server relies
//! on: no panic; an accepted request re-encodes to itself; its `data` reaches clients of both
//! encodings as the same value; a refused one still yields an error the client can read. The
//! client-side server-message decoder is fed the same bytes. Every allocation on the calling
//! thread is capped in proportion to the input when [`CappedAlloc`] is the global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use crate::socketio as sio;
use crate::{
    decode_request, decode_server_message, encode_request, encode_server_message, transcode,
    Command, Format, OwnedServerMessage, RawData, Request, ServerMessage,
};

/// Fuzz target `decode_json`: a text message from a client.
pub fn decode_json(input: &[u8]) {
    with_alloc_cap(alloc_cap(input.len()), || decode(Format::Json, input));
}

/// Fuzz target `decode_msgpack`: a binary message from a client. No length field in the input
/// may make the decoder allocate out of proportion to the input (see [`CappedAlloc`]).
pub fn decode_msgpack(input: &[u8]) {
    with_alloc_cap(alloc_cap(input.len()), || decode(Format::MsgPack, input));
}

/// The largest single allocation a decoder may make for an input of `len` bytes: room for the
/// re-encodings and error texts (a MessagePack byte can become six JSON bytes, `\u0000`, and a
/// `Vec` may double), but far below what a lying length field would ask for.
pub const fn alloc_cap(len: usize) -> usize {
    64 * 1024 + 32 * len
}

fn decode(format: Format, input: &[u8]) {
    match decode_request(format, input) {
        Ok(req) => accepted(format, &req),
        Err(e) => {
            // The server answers with an error naming the id; the client must be able to read it.
            let msg = ServerMessage::Error {
                id: e.id.clone(),
                code: e.error.code,
                message: &e.error.message,
            };
            let back = round_trip(format, &msg);
            let OwnedServerMessage::Error { id, code, .. } = back else {
                panic!("an error came back as {back:?}");
            };
            assert_eq!(id, e.id.map(|id| id.into_owned()), "the error's id");
            assert_eq!(code, e.error.code.as_str());
        }
    }
    // Client side (tests, loadgen): any bytes from a server decode or fail, never panic.
    let _ = decode_server_message(format, input);
}

/// Checks for a request the decoder accepted.
fn accepted(format: Format, req: &Request<'_>) {
    let mut out = Vec::new();
    encode_request(format, req, &mut out).expect("an accepted request re-encodes");
    let again = decode_request(format, &out).expect("a re-encoded request decodes");
    assert_eq!(&again, req, "re-encoding changed the request");

    let (Command::Publish { event, data, .. } | Command::Send { event, data, .. }) = &req.command
    else {
        return;
    };
    // What a publish or send becomes: one event per receiving encoding, `data` transcoded.
    let mut values = Vec::new();
    for target in Format::ALL {
        let msg = ServerMessage::Event {
            event,
            room: Some("r"),
            from: Some("u"),
            offset: Some(u64::MAX),
            data: *data,
        };
        match round_trip(target, &msg) {
            OwnedServerMessage::Event {
                event: got,
                offset,
                data,
                ..
            } => {
                assert_eq!(&got, event, "the event name in {target:?}");
                assert_eq!(offset, Some(u64::MAX), "the offset in {target:?}");
                values.push(data);
            }
            other => panic!("an event came back as {other:?}"),
        }
    }
    match format {
        // JSON data goes through MessagePack exactly (PROTOCOL.md: it must be representable).
        Format::Json => assert_eq!(values[0], values[1], "JSON data changed in MessagePack"),
        // MessagePack data may lose what JSON cannot say (NaN, f32 digits) once; after that
        // the value survives further transcoding (its text may not: an f32 is written with
        // f32 digits, `0.000008732809`, the same value read back as f64 with f64 ones,
        // `8.732809e-6`), and the JSON form is acceptable from a client.
        Format::MsgPack => {
            let json = transcoded(*data, Format::Json);
            RawData::validate(Format::Json, &json).expect("transcoded JSON data is valid data");
            let mp = transcoded(RawData::trusted(Format::Json, &json), Format::MsgPack);
            RawData::validate(Format::MsgPack, &mp).expect("transcoded data is valid data");
            let json2 = transcoded(RawData::trusted(Format::MsgPack, &mp), Format::Json);
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&json).ok(),
                serde_json::from_slice::<serde_json::Value>(&json2).ok(),
                "MessagePack -> JSON -> MessagePack -> JSON changed the value"
            );
        }
    }
}

fn transcoded(data: RawData<'_>, target: Format) -> Vec<u8> {
    let mut out = Vec::new();
    transcode(data, target, &mut out).expect("validated data transcodes");
    out
}

/// Encodes a server message and decodes it as a client would.
fn round_trip(format: Format, msg: &ServerMessage<'_>) -> OwnedServerMessage {
    let mut out = Vec::new();
    encode_server_message(format, msg, &mut out).expect("the server can encode its answer");
    decode_server_message(format, &out).expect("a client can decode the server's answer")
}

/// Fuzz target `socketio_json`: the messages of one Engine.IO connection using Socket.IO's
/// default parser, separated by `\x1e`; a message that starts with `b` is binary (the rest of
/// it), any other is text (skipped unless UTF-8). Attachments are bounded at 4 per packet and
/// 64 bytes in all, so the bounds are reached.
pub fn socketio_json(input: &[u8]) {
    with_alloc_cap(alloc_cap(input.len()), || {
        let limits = sio::AttachmentLimits {
            max_attachments: 4,
            max_bytes: 64,
        };
        let mut decoder = sio::Decoder::new(Format::Json, limits);
        for message in input.split(|&b| b == 0x1e) {
            let bin = message
                .strip_prefix(b"b")
                .map(bytes::Bytes::copy_from_slice);
            let decoded = match &bin {
                Some(bin) => decoder.binary(bin).ok(),
                None => match std::str::from_utf8(message) {
                    Ok(text) => decoder.text(text).ok(),
                    Err(_) => continue,
                },
            };
            if let Some(sio::Decoded::Packet(p)) = decoded {
                sio_accepted(Format::Json, &p);
            }
        }
    });
}

/// Fuzz target `socketio_msgpack`: one binary message for socket.io-msgpack-parser.
pub fn socketio_msgpack(input: &[u8]) {
    with_alloc_cap(alloc_cap(input.len()), || {
        let mut decoder = sio::Decoder::new(Format::MsgPack, sio::AttachmentLimits::default());
        let bytes = bytes::Bytes::copy_from_slice(input);
        if let Ok(sio::Decoded::Packet(p)) = decoder.binary(&bytes) {
            sio_accepted(Format::MsgPack, &p);
        }
    });
}

/// Checks for a packet the decoder accepted: it re-encodes to itself; in the other parser it
/// is the same packet with the same values (or, for what the other parser cannot carry, an
/// encode error that leaves the buffer as it was); an event sent with a recovery offset comes
/// back with the offset as its last argument.
fn sio_accepted(format: Format, p: &sio::Packet<'_>) {
    let mut out = Vec::new();
    let attachments = sio::encode(format, p, &mut out).expect("an accepted packet re-encodes");
    assert_eq!(
        attachments,
        p.attachments(),
        "re-encoding changed the attachments"
    );
    sio_decode(format, &out, p.attachments(), |again| {
        assert_eq!(again, p, "re-encoding changed the packet");
    });

    let other = match format {
        Format::Json => Format::MsgPack,
        Format::MsgPack => Format::Json,
    };
    let mut out = b"kept".to_vec();
    match sio::encode(other, p, &mut out) {
        // More attachments than one packet of the default parser may carry: the server
        // does not send it (`transport::socketio`), socket.io-client would refuse it.
        Ok(attachments) if attachments.len() > crate::MAX_BINARIES => {}
        // Binary values cross as attachments (to the default parser) or as bin (to msgpack).
        Ok(attachments) => sio_decode(other, &out[4..], &attachments, |got| {
            assert_eq!(sio_summary(got), sio_summary(p), "the packet in {other:?}");
            let (a, b) = (sio_values(got), sio_values(p));
            assert_eq!(a.len(), b.len(), "the values in {other:?}");
            for (a, b) in a.into_iter().zip(b) {
                assert_eq!(
                    sio_json(a, got.attachments()),
                    sio_json(b, p.attachments()),
                    "a value in {other:?}"
                );
                for key in ["token", "pid", "offset"] {
                    assert_eq!(a.str_field(key), b.str_field(key), "`{key}` in {other:?}");
                }
            }
        }),
        Err(_) => assert_eq!(out, b"kept", "a failed encode left bytes behind"),
    }

    if let sio::Packet::Event(e) = p {
        let with_offset = sio::Event {
            offset: Some("o\"1"),
            ..e.clone()
        };
        let mut out = Vec::new();
        sio::encode_event(format, &with_offset, &mut out).expect("an event takes an offset");
        sio_decode(format, &out, p.attachments(), |back| {
            let sio::Packet::Event(back) = back else {
                panic!("an event came back as {back:?}");
            };
            assert_eq!(back.args.len(), e.args.len() + 1, "the offset argument");
            let last = back.args.iter().last().expect("the offset");
            assert_eq!(sio_json(last, &[]), serde_json::json!("o\"1"));
        });
    }
}

/// Decodes what an encoder wrote, then its attachments: one complete packet, given to `check`.
fn sio_decode(
    format: Format,
    bytes: &[u8],
    attachments: &[bytes::Bytes],
    check: impl FnOnce(&sio::Packet<'_>),
) {
    let mut decoder = sio::Decoder::new(format, sio::AttachmentLimits::default());
    let owned = bytes::Bytes::copy_from_slice(bytes);
    let first = match format {
        Format::Json => decoder.text(std::str::from_utf8(bytes).expect("UTF-8")),
        Format::MsgPack => decoder.binary(&owned),
    };
    let Some((last, init)) = attachments.split_last() else {
        match first.expect("an encoded packet decodes") {
            sio::Decoded::Packet(p) => return check(&p),
            other => panic!("an encoded packet decoded as {other:?}"),
        }
    };
    let remaining = |d: Result<sio::Decoded<'_>, sio::SioError>| match d {
        Ok(sio::Decoded::NeedAttachments { remaining }) => remaining,
        other => panic!("expected to wait for attachments: {other:?}"),
    };
    assert_eq!(remaining(first), attachments.len());
    for a in init {
        remaining(decoder.binary(a));
    }
    match decoder.binary(last) {
        Ok(sio::Decoded::Packet(p)) => check(&p),
        other => panic!("the last attachment gave {other:?}"),
    }
}

/// What the two parsers must agree on, values (and binary packet types) aside.
fn sio_summary(p: &sio::Packet<'_>) -> (sio::PacketType, String, Option<u64>, Option<String>) {
    let (id, name) = match p {
        sio::Packet::Event(e) => (e.id, Some(e.name.to_string())),
        sio::Packet::Ack { id, .. } => (Some(*id), None),
        _ => (None, None),
    };
    // Binary values make a binary packet of the default parser, not of the msgpack parser.
    let kind = match p.packet_type() {
        sio::PacketType::BinaryEvent => sio::PacketType::Event,
        sio::PacketType::BinaryAck => sio::PacketType::Ack,
        kind => kind,
    };
    (kind, p.nsp().to_owned(), id, name)
}

fn sio_values<'a>(p: &sio::Packet<'a>) -> Vec<sio::Payload<'a>> {
    match p {
        sio::Packet::Event(e) => e.args.iter().collect(),
        sio::Packet::Ack { args, .. } => args.iter().collect(),
        sio::Packet::Connect { auth, .. } => auth.iter().copied().collect(),
        sio::Packet::ConnectError { data, .. } => vec![*data],
        sio::Packet::Disconnect { .. } => Vec::new(),
    }
}

/// A value as a JSON tree, placeholders resolved from `attachments` (a MessagePack one
/// transcoded: it must be wsgate data by now).
fn sio_json(v: sio::Payload<'_>, attachments: &[bytes::Bytes]) -> serde_json::Value {
    let data = v
        .data()
        .expect("a value that crossed parsers is wsgate data");
    let mut tree: serde_json::Value =
        serde_json::from_slice(&transcoded(data, Format::Json)).expect("transcoded JSON parses");
    // Only a binary packet has placeholders; in another, that shape is plain data.
    if !attachments.is_empty() {
        sio::resolve_placeholders(&mut tree, attachments).expect("placeholders name attachments");
    }
    tree
}

thread_local! {
    /// The largest allocation allowed on this thread; `usize::MAX` when no cap is armed.
    static CAP: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs `f` with every single allocation on this thread capped at `cap` bytes (only when
/// [`CappedAlloc`] is the global allocator; otherwise just runs `f`).
pub fn with_alloc_cap<R>(cap: usize, f: impl FnOnce() -> R) -> R {
    struct Disarm(usize);
    impl Drop for Disarm {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
    let _disarm = Disarm(CAP.with(|c| c.replace(cap)));
    f()
}

/// A global allocator for fuzz targets and their replay: the system allocator, except that an
/// allocation above the cap armed by [`with_alloc_cap`] on the calling thread aborts the
/// process, naming the size. libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks
/// and does nothing with `-s none`; this check works with or without one.
pub struct CappedAlloc;

impl CappedAlloc {
    fn check(size: usize) {
        let cap = CAP.try_with(Cell::get).unwrap_or(usize::MAX);
        // A failed check's panic message and backtrace may allocate more: let them.
        if size > cap && !std::thread::panicking() {
            // Disarm first: the report and the abort must not trip the cap again.
            let _ = CAP.try_with(|c| c.set(usize::MAX));
            let _ = writeln!(
                std::io::stderr(),
                "allocation of {size} bytes over the fuzz cap of {cap} bytes"
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the added check reads a thread-local `Cell` (const-initialized, no destructor, so
// it never allocates) and aborts without returning an invalid pointer.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CappedAlloc::check(layout.size());
        // SAFETY: same layout the caller gave us, under the same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        CappedAlloc::check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CappedAlloc::check(new_size);
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through it) with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Fuzz target `engineio_payload`: a long-polling POST body from a client, and the same bytes
/// as one WebSocket text packet. Decoding never panics; a payload whose packets all decode
/// re-encodes to exactly its bytes (the decoder accepts one spelling of each packet); each
/// decoded packet re-encodes and decodes to itself.
pub fn engineio_payload(input: &[u8]) {
    with_alloc_cap(alloc_cap(input.len()), || {
        use crate::engineio::{decode_packet, decode_payload, encode_packet, encode_payload};
        let decoded: Vec<_> = decode_payload(input).collect();
        assert!(!decoded.is_empty(), "a payload holds at least one packet");
        if let Ok(packets) = decoded.into_iter().collect::<Result<Vec<_>, _>>() {
            let mut out = Vec::new();
            encode_payload(&packets, &mut out);
            assert_eq!(out, input, "a decoded payload re-encodes to its bytes");
            for packet in &packets {
                let mut one = Vec::new();
                encode_packet(packet, &mut one);
                let text = std::str::from_utf8(&one).expect("an encoded packet is text");
                assert_eq!(&decode_packet(text, true).as_ref(), &Ok(packet));
            }
        }
        if let Ok(text) = std::str::from_utf8(input) {
            if let Ok(packet) = decode_packet(text, false) {
                assert!(!matches!(packet, crate::engineio::Packet::Binary(_)));
                let mut out = Vec::new();
                encode_packet(&packet, &mut out);
                assert_eq!(out, input, "a WebSocket packet re-encodes to its bytes");
            }
        }
    });
}
