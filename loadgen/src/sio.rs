//! Socket.IO v5 over Engine.IO v4 (WebSocket, or long-polling's packets one by one) as the
//! loadgen speaks it: the messages it sends (the `CONNECT` with the token in its auth, the
//! built-in events `wsgate:join` and `wsgate:publish` with ack ids) and what each server
//! message means, in the session's terms.
//! The packets are the protocol crate's codecs; nothing is kept per connection.

use bytes::Bytes;
use wsgate_protocol::engineio::{self, Packet as EioPacket};
use wsgate_protocol::socketio::{
    self, Args, AttachmentLimits, Decoded, Decoder, Event, Packet, Payload,
};
use wsgate_protocol::{EncodeError, Format, RawData};

use crate::payload;
use crate::plan::WireFormat;

/// The namespace every connection joins.
const NSP: &str = "/";

/// What one server message means to the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// The Engine.IO open packet: the `CONNECT` is due.
    Open,
    /// An Engine.IO ping: answer with a pong.
    Ping,
    /// The `CONNECT`'s answer (`{"sid":…}`): the socket is in the namespace.
    Connected,
    /// The ack of the event with this id: a reply (`{"type":"reply",…}`), or an error with
    /// its code.
    Ack {
        /// The event's ack id.
        id: u64,
        /// `Some(code)` for `{"type":"error","code":…}`.
        error: Option<String>,
    },
    /// An event: its first argument's `(t, s)` when that is the loadgen's own data.
    Event {
        /// The send time and sequence.
        ts: Option<(u64, u64)>,
    },
    /// Nothing for the session (a pong, a noop).
    Nothing,
}

/// Reads one server message, text or `binary`. `Err(cause)` fails the connection: a refused
/// `CONNECT` (`connect_error_<code>`), the server's `DISCONNECT` or Engine.IO close, or what
/// is not a packet of `format`'s parser (`bad_message`).
pub(crate) fn read(format: WireFormat, msg: &[u8], binary: bool) -> Result<Incoming, String> {
    fn bad<E>(_: E) -> String {
        "bad_message".into()
    }
    if binary {
        if format != WireFormat::Msgpack {
            return Err("bad_message".into());
        }
        // The decoder takes `Bytes` (the default parser's attachments outlive the message);
        // a copy, on the slow path only: the fast path reads events in place.
        let bytes = Bytes::copy_from_slice(msg);
        let mut decoder = Decoder::new(Format::MsgPack, AttachmentLimits::default());
        return match decoder.binary(&bytes).map_err(bad)? {
            Decoded::Packet(p) => packet(p),
            Decoded::NeedAttachments { .. } => Err("bad_message".into()),
        };
    }
    let text = std::str::from_utf8(msg).map_err(bad)?;
    match engineio::decode_packet(text, false).map_err(bad)? {
        EioPacket::Open(_) => Ok(Incoming::Open),
        EioPacket::Ping(false) => Ok(Incoming::Ping),
        EioPacket::Close => Err("eio_close".into()),
        EioPacket::Text(sio) if format == WireFormat::Json => {
            let mut decoder = Decoder::new(Format::Json, AttachmentLimits::default());
            match decoder.text(sio).map_err(bad)? {
                Decoded::Packet(p) => packet(p),
                // The server sends no binary packets to the loadgen.
                Decoded::NeedAttachments { .. } => Err("bad_message".into()),
            }
        }
        EioPacket::Text(_) | EioPacket::Binary(_) | EioPacket::Ping(true) => {
            Err("bad_message".into())
        }
        EioPacket::Pong(_) | EioPacket::Upgrade | EioPacket::Noop => Ok(Incoming::Nothing),
    }
}

/// What a whole Socket.IO packet means.
fn packet(p: Packet<'_>) -> Result<Incoming, String> {
    match p {
        Packet::Connect { .. } => Ok(Incoming::Connected),
        Packet::ConnectError { data, .. } => {
            let code = value(data)
                .and_then(|v| v.pointer("/data/code")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            Err(format!("connect_error_{code}"))
        }
        Packet::Disconnect { .. } => Err("sio_disconnect".into()),
        Packet::Event(e) => Ok(Incoming::Event {
            ts: e
                .args
                .iter()
                .next()
                .and_then(value)
                .and_then(|v| payload::read_value(&v)),
        }),
        Packet::Ack { id, args, .. } => {
            let answer = args.iter().next().ok_or("bad_ack")?;
            let error = match answer.str_field("type").as_deref() {
                Some("reply") => None,
                Some("error") => Some(
                    answer
                        .str_field("code")
                        .map_or("unknown".into(), |c| c.into_owned()),
                ),
                _ => return Err("bad_ack".into()),
            };
            Ok(Incoming::Ack { id, error })
        }
    }
}

/// A payload as a JSON tree (the slow path: spot checks and refusals).
fn value(p: Payload<'_>) -> Option<serde_json::Value> {
    let mut json = Vec::new();
    wsgate_protocol::transcode(p.data().ok()?, Format::Json, &mut json).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Writes the loadgen's messages, in buffers reused for every connection of a worker: each
/// method leaves one whole message in [`Writer::message`], a text one for the default parser
/// (its Engine.IO `4` first) and a binary one for the msgpack parser.
#[derive(Default)]
pub(crate) struct Writer {
    /// The event's one argument (or the `CONNECT`'s auth): an object.
    object: Vec<u8>,
    /// The whole message.
    out: Vec<u8>,
}

/// The Engine.IO pong (text with either parser).
pub(crate) const PONG: &[u8] = b"3";

impl Writer {
    /// The message last written.
    pub(crate) fn message(&self) -> &[u8] {
        &self.out
    }

    /// The `CONNECT` to the main namespace with auth `{"token": token}`.
    pub(crate) fn connect(&mut self, format: WireFormat, token: &str) -> Result<(), EncodeError> {
        self.object.clear();
        let mut o = Object::new(format, 1, &mut self.object);
        o.str("token", token);
        o.finish();
        let auth = Payload::from(RawData::trusted(format.format(), &self.object));
        let connect = Packet::Connect {
            nsp: NSP,
            auth: Some(auth),
        };
        start(format, &mut self.out);
        // A CONNECT has no attachments.
        socketio::encode(format.format(), &connect, &mut self.out).map(drop)
    }

    /// `wsgate:join` of `room`, acked as `id`.
    pub(crate) fn join(
        &mut self,
        format: WireFormat,
        id: u64,
        room: &str,
    ) -> Result<(), EncodeError> {
        self.object.clear();
        let mut o = Object::new(format, 1, &mut self.object);
        o.str("room", room);
        o.finish();
        self.event(format, "wsgate:join", id)
    }

    /// `wsgate:publish` of `data` (already in the parser's format) to `room` as `event`, with
    /// `echo: true` when `echo`, acked as `id`.
    pub(crate) fn publish(
        &mut self,
        format: WireFormat,
        id: u64,
        room: &str,
        event: &str,
        data: &[u8],
        echo: bool,
    ) -> Result<(), EncodeError> {
        self.object.clear();
        let mut o = Object::new(format, 3 + u8::from(echo), &mut self.object);
        o.str("room", room);
        o.str("event", event);
        o.raw("data", data);
        if echo {
            o.bool("echo", true);
        }
        o.finish();
        self.event(format, "wsgate:publish", id)
    }

    /// The event `name` with `self.object` as its one argument, acked as `id`.
    fn event(&mut self, format: WireFormat, name: &str, id: u64) -> Result<(), EncodeError> {
        let event = Event {
            nsp: NSP,
            name: name.into(),
            args: Args::one(RawData::trusted(format.format(), &self.object)),
            id: Some(id),
            offset: None,
        };
        start(format, &mut self.out);
        // The loadgen's events carry no binary: no attachments.
        socketio::encode_event(format.format(), &event, &mut self.out).map(drop)
    }
}

/// Clears `out` for a message; the default parser's starts with Engine.IO's `4` (message).
fn start(format: WireFormat, out: &mut Vec<u8>) {
    out.clear();
    if format == WireFormat::Json {
        out.push(b'4');
    }
}

/// An object being written, its fields in order, then [`Object::finish`] (the count is given
/// first: MessagePack's map header comes before its fields).
struct Object<'a> {
    format: WireFormat,
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(format: WireFormat, fields: u8, out: &'a mut Vec<u8>) -> Self {
        match format {
            WireFormat::Json => out.push(b'{'),
            // A fixmap: the loadgen's objects have at most 15 fields.
            WireFormat::Msgpack => out.push(0x80 | (fields & 0x0f)),
        }
        Object {
            format,
            out,
            first: true,
        }
    }

    fn key(&mut self, key: &str) {
        match self.format {
            WireFormat::Json => {
                if !std::mem::take(&mut self.first) {
                    self.out.push(b',');
                }
                json_str(key, self.out);
                self.out.push(b':');
            }
            WireFormat::Msgpack => msgpack_str(key, self.out),
        }
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        match self.format {
            WireFormat::Json => json_str(value, self.out),
            WireFormat::Msgpack => msgpack_str(value, self.out),
        }
    }

    fn raw(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        match (self.format, value) {
            (WireFormat::Json, true) => self.out.extend_from_slice(b"true"),
            (WireFormat::Json, false) => self.out.extend_from_slice(b"false"),
            (WireFormat::Msgpack, v) => self.out.push(if v { 0xc3 } else { 0xc2 }),
        }
    }

    /// Ends the object (JSON's closing brace).
    fn finish(self) {
        if self.format == WireFormat::Json {
            self.out.push(b'}');
        }
    }
}

/// A JSON string (serde_json's escaping).
fn json_str(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A MessagePack str in its shortest header.
fn msgpack_str(s: &str, out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(l) = u8::try_from(len) {
        out.extend_from_slice(&[0xd9, l]);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(w: &Writer) -> &str {
        std::str::from_utf8(w.message()).expect("text")
    }

    #[test]
    fn writes_the_contracts_packets_for_the_default_parser() {
        let mut w = Writer::default();
        w.connect(WireFormat::Json, "a.b-c_d").expect("connect");
        assert_eq!(text(&w), r#"40{"token":"a.b-c_d"}"#);
        w.join(WireFormat::Json, 1, "room-0").expect("join");
        assert_eq!(text(&w), r#"421["wsgate:join",{"room":"room-0"}]"#);
        w.publish(WireFormat::Json, 7, "room-0", "bench", br#"{"t":1}"#, false)
            .expect("publish");
        assert_eq!(
            text(&w),
            r#"427["wsgate:publish",{"room":"room-0","event":"bench","data":{"t":1}}]"#
        );
        w.publish(WireFormat::Json, 8, "r", "bench", b"1", true)
            .expect("publish");
        assert_eq!(
            text(&w),
            r#"428["wsgate:publish",{"room":"r","event":"bench","data":1,"echo":true}]"#
        );
    }

    #[test]
    fn msgpack_packets_decode_as_the_server_reads_them() {
        let mut w = Writer::default();
        let token = "t".repeat(150);
        w.connect(WireFormat::Msgpack, &token).expect("connect");
        let bytes = Bytes::copy_from_slice(w.message());
        let mut d = Decoder::new(Format::MsgPack, AttachmentLimits::default());
        let Ok(Decoded::Packet(Packet::Connect { nsp, auth: Some(a) })) = d.binary(&bytes) else {
            panic!("not a CONNECT with auth");
        };
        assert_eq!((nsp, a.str_field("token").as_deref()), ("/", Some(&*token)));

        let mut data = Vec::new();
        payload::write(WireFormat::Msgpack, 11, 12, 64, &mut data);
        w.publish(WireFormat::Msgpack, 300, "room-3", "bench", &data, true)
            .expect("publish");
        let bytes = Bytes::copy_from_slice(w.message());
        let Ok(Decoded::Packet(Packet::Event(e))) = d.binary(&bytes) else {
            panic!("not an event");
        };
        assert_eq!(
            (&*e.name, e.id, e.args.len()),
            ("wsgate:publish", Some(300), 1)
        );
        let arg = e.args.iter().next().expect("one argument");
        assert_eq!(arg.str_field("room").as_deref(), Some("room-3"));
        assert_eq!(arg.str_field("event").as_deref(), Some("bench"));
        let v = value(arg).expect("data");
        assert_eq!(v["echo"], true);
        assert_eq!(payload::read_value(&v["data"]), Some((11, 12)));
    }

    #[test]
    fn reads_every_server_message_of_the_contract() {
        let json = |m: &str| read(WireFormat::Json, m.as_bytes(), false);
        assert_eq!(
            json(r#"0{"sid":"x","upgrades":[],"pingInterval":25000}"#),
            Ok(Incoming::Open)
        );
        assert_eq!(json("2"), Ok(Incoming::Ping));
        assert_eq!(json("3"), Ok(Incoming::Nothing));
        assert_eq!(json("1"), Err("eio_close".into()));
        assert_eq!(json(r#"40{"sid":"abc"}"#), Ok(Incoming::Connected));
        assert_eq!(
            json(r#"44{"message":"invalid token","data":{"code":"auth.invalid"}}"#),
            Err("connect_error_auth.invalid".into())
        );
        assert_eq!(json("41"), Err("sio_disconnect".into()));
        assert_eq!(
            json(r#"431[{"type":"reply","id":1}]"#),
            Ok(Incoming::Ack { id: 1, error: None })
        );
        assert_eq!(
            json(r#"432[{"type":"reply"}]"#),
            Ok(Incoming::Ack { id: 2, error: None })
        );
        assert_eq!(
            json(r#"433[{"type":"error","code":"room.forbidden","message":"no"}]"#),
            Ok(Incoming::Ack {
                id: 3,
                error: Some("room.forbidden".into())
            })
        );
        assert_eq!(json(r#"434[{"ok":true}]"#), Err("bad_ack".into()));
        assert_eq!(
            json(r#"42["bench",{"t":5,"s":6,"x":""}]"#),
            Ok(Incoming::Event { ts: Some((5, 6)) })
        );
        assert_eq!(json(r#"42["other",1]"#), Ok(Incoming::Event { ts: None }));
        for bad in ["", "x", "4", "42[", "2probe"] {
            assert_eq!(json(bad), Err("bad_message".into()), "{bad:?}");
        }
        // Text Socket.IO packets are the default parser's; binary ones the msgpack parser's.
        assert_eq!(
            read(WireFormat::Json, b"\x82", true),
            Err("bad_message".into())
        );
        assert_eq!(
            read(WireFormat::Msgpack, b"40", false),
            Err("bad_message".into())
        );
        assert_eq!(read(WireFormat::Msgpack, b"2", false), Ok(Incoming::Ping));
    }

    #[test]
    fn reads_msgpack_packets_as_wsgate_encodes_them() {
        let mp = |m: &[u8]| read(WireFormat::Msgpack, m, true);
        let mut out = Vec::new();
        socketio::encode_connect(Format::MsgPack, "/", "sid", None, &mut out).expect("encodes");
        assert_eq!(mp(&out), Ok(Incoming::Connected));
        let mut data = Vec::new();
        payload::write(WireFormat::Msgpack, 1 << 40, 9, 64, &mut data);
        let event = Event {
            nsp: "/",
            name: "bench".into(),
            args: Args::one(RawData::trusted(Format::MsgPack, &data)),
            id: None,
            offset: None,
        };
        out.clear();
        socketio::encode_event(Format::MsgPack, &event, &mut out).expect("encodes");
        assert_eq!(
            mp(&out),
            Ok(Incoming::Event {
                ts: Some((1 << 40, 9))
            })
        );
        assert_eq!(mp(b"\x81"), Err("bad_message".into()));
    }
}
