//! The golden vectors in `vectors/`: exact wire bytes, in both encodings, for every client
//! request and server message, and inputs that must be refused. The files are the
//! specification: these tests fail if the codec changes a single byte.
//!
//! `cargo test -p wsgate-protocol --test vectors -- --ignored regenerate` rewrites the files from
//! the sources listed at the bottom of this file; review the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wsgate_protocol::{
    decode_request, decode_server_message, encode_request, encode_server_message, Command,
    ErrorCode, Format, Heartbeat, HistoryEntry, Id, Limits, Member, OwnedServerMessage, RawData,
    Request, ServerMessage, UserState, Welcome,
};

#[derive(Serialize, Deserialize)]
struct Vector {
    name: String,
    description: String,
    json: String,
    msgpack_hex: String,
    /// For server events whose `data` came in as MessagePack: those exact `data` bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_msgpack_hex: Option<String>,
    logical: Value,
}

#[derive(Serialize, Deserialize)]
struct Invalid {
    name: String,
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_hex: Option<String>,
    code: String,
    id: Value,
}

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(file)
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(path(file)).expect("vector file");
    serde_json::from_str(&text).expect("vector file is valid JSON")
}

fn id_value(id: &Option<Id<'_>>) -> Option<Value> {
    id.as_ref().map(|id| match id {
        Id::Num(n) => json!(n),
        Id::Str(s) => json!(s),
    })
}

fn id_from(v: &Value) -> Option<Id<'static>> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(Id::Num(n.as_u64().unwrap())),
        Value::String(s) => Some(Id::Str(s.clone().into())),
        other => panic!("bad id {other}"),
    }
}

fn data_value(data: RawData<'_>) -> Value {
    let mut out = Vec::new();
    wsgate_protocol::transcode(data, Format::Json, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// The logical form of a request, built field by field (not through the encoder).
fn logical_request(req: &Request<'_>) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("cmd".into(), json!(req.command.name()));
    if let Some(id) = id_value(&req.id) {
        obj.insert("id".into(), id);
    }
    match &req.command {
        Command::Auth { token } => {
            obj.insert("token".into(), json!(token));
        }
        Command::Join {
            room,
            since,
            presence,
        } => {
            obj.insert("room".into(), json!(room));
            if let Some(since) = since {
                obj.insert(
                    "since".into(),
                    json!({"epoch": since.epoch, "offset": since.offset}),
                );
            }
            if let Some(presence) = presence {
                obj.insert("presence".into(), json!(presence));
            }
        }
        Command::Members { room, limit, after } => {
            let fields = json!({"room": room, "limit": limit, "after": after});
            let set = fields
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.is_null());
            obj.extend(set.map(|(k, v)| (k.clone(), v.clone())));
        }
        Command::Watch { users } | Command::Unwatch { users } => {
            obj.insert("users".into(), json!(users));
        }
        Command::Leave { room } => {
            obj.insert("room".into(), json!(room));
        }
        Command::Create {
            room,
            private,
            max_members,
            history_size,
            history_ttl,
            presence,
        } => {
            obj.insert("room".into(), json!(room));
            if *private {
                obj.insert("private".into(), json!(true));
            }
            let options = [
                ("maxMembers", max_members),
                ("historySize", history_size),
                ("historyTtl", history_ttl),
            ];
            for (key, value) in options {
                if let Some(n) = value {
                    obj.insert(key.into(), json!(n));
                }
            }
            if let Some(presence) = presence {
                obj.insert("presence".into(), json!(presence));
            }
        }
        Command::History {
            room,
            limit,
            before,
            after,
        } => {
            let fields = json!({"room": room, "limit": limit, "before": before, "after": after});
            let set = fields
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.is_null());
            obj.extend(set.map(|(k, v)| (k.clone(), v.clone())));
        }
        Command::Publish {
            room,
            event,
            data,
            echo,
            ephemeral,
            idem,
        } => {
            obj.insert("room".into(), json!(room));
            obj.insert("event".into(), json!(event));
            obj.insert("data".into(), data_value(*data));
            if *echo {
                obj.insert("echo".into(), json!(true));
            }
            if *ephemeral {
                obj.insert("ephemeral".into(), json!(true));
            }
            if let Some(idem) = idem {
                obj.insert("idem".into(), json!(idem));
            }
        }
        Command::Send {
            to,
            event,
            data,
            echo,
            idem,
        } => {
            obj.insert("to".into(), json!(to));
            obj.insert("event".into(), json!(event));
            obj.insert("data".into(), data_value(*data));
            if *echo {
                obj.insert("echo".into(), json!(true));
            }
            if let Some(idem) = idem {
                obj.insert("idem".into(), json!(idem));
            }
        }
        Command::Ack { offset } => {
            obj.insert("offset".into(), json!(offset));
        }
        Command::Read { room, offset } => {
            obj.insert("room".into(), json!(room));
            obj.insert("offset".into(), json!(offset));
        }
        Command::Ping => {}
    }
    Value::Object(obj)
}

fn encode_req(format: Format, req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(format, req, &mut out).unwrap();
    out
}

#[test]
fn client_vectors() {
    let vectors: Vec<Vector> = load("client.json");
    assert!(vectors.len() >= 15);
    let mut seen = HashSet::new();
    for v in &vectors {
        let mp = hex::decode(&v.msgpack_hex).unwrap();
        let from_json = decode_request(Format::Json, v.json.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        let from_mp =
            decode_request(Format::MsgPack, &mp).unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        assert_eq!(logical_request(&from_json), v.logical, "{} (json)", v.name);
        assert_eq!(logical_request(&from_mp), v.logical, "{} (msgpack)", v.name);
        for req in [&from_json, &from_mp] {
            assert_eq!(
                String::from_utf8(encode_req(Format::Json, req)).unwrap(),
                v.json,
                "{}",
                v.name
            );
            assert_eq!(
                hex::encode(encode_req(Format::MsgPack, req)),
                v.msgpack_hex,
                "{}",
                v.name
            );
        }
        seen.insert(from_json.command.name());
    }
    let all: HashSet<&str> = wsgate_protocol::COMMANDS.iter().copied().collect();
    assert_eq!(seen, all, "every command has a vector");
}

/// Everything a [`ServerMessage`] borrows, owned by the test.
struct ServerParts {
    logical: Value,
    data: Vec<u8>,
    data_format: Format,
    /// The `data` of each message of a history reply, as JSON.
    history_data: Vec<Vec<u8>>,
}

/// The members of a `members` reply (none for any other message).
fn members(logical: &Value) -> Vec<Member<'_>> {
    array(logical, "members")
        .iter()
        .map(|m| Member {
            user: m["user"].as_str().unwrap(),
            connections: m["connections"].as_u64().unwrap() as u32,
        })
        .collect()
}

/// The users of a `watch` reply (none for any other message).
fn user_states(logical: &Value) -> Vec<UserState<'_>> {
    array(logical, "users")
        .iter()
        .map(|u| UserState {
            user: u["user"].as_str().unwrap(),
            online: u["online"].as_bool().unwrap(),
        })
        .collect()
}

impl ServerParts {
    fn new(v: &Vector) -> Self {
        let (data, data_format) = match (&v.data_msgpack_hex, v.logical.get("data")) {
            (Some(h), _) => (hex::decode(h).unwrap(), Format::MsgPack),
            (None, Some(d)) => (serde_json::to_vec(d).unwrap(), Format::Json),
            (None, None) => (Vec::new(), Format::Json),
        };
        let history_data = history_messages(&v.logical)
            .iter()
            .map(|m| serde_json::to_vec(&m["data"]).unwrap())
            .collect();
        ServerParts {
            logical: v.logical.clone(),
            data,
            data_format,
            history_data,
        }
    }

    /// The messages of a history reply (none for any other message).
    fn entries(&self) -> Vec<HistoryEntry<'_>> {
        history_messages(&self.logical)
            .iter()
            .zip(&self.history_data)
            .map(|(m, data)| HistoryEntry {
                offset: m["offset"].as_u64().unwrap(),
                at: m["at"].as_u64().unwrap(),
                event: m["event"].as_str().unwrap(),
                from: m.get("from").map(|v| v.as_str().unwrap()),
                data: RawData::validate(Format::Json, data).unwrap(),
            })
            .collect()
    }

    fn message<'a>(
        &'a self,
        entries: &'a [HistoryEntry<'a>],
        members: &'a [Member<'a>],
        users: &'a [UserState<'a>],
    ) -> ServerMessage<'a> {
        let l = &self.logical;
        let s = |k: &str| l[k].as_str().unwrap();
        let opt = |k: &str| l.get(k).map(|v| v.as_str().unwrap());
        let n = |v: &Value| v.as_u64().unwrap();
        match s("type") {
            "welcome" => ServerMessage::Welcome(Welcome {
                user: s("user"),
                conn: s("conn"),
                session: s("session"),
                shard: n(&l["shard"]) as u32,
                heartbeat: Heartbeat {
                    interval_ms: n(&l["heartbeat"]["interval_ms"]),
                    timeout_ms: n(&l["heartbeat"]["timeout_ms"]),
                },
                limits: Limits {
                    max_message_bytes: n(&l["limits"]["max_message_bytes"]),
                    rate_per_sec: n(&l["limits"]["rate_per_sec"]) as u32,
                    rate_burst: n(&l["limits"]["rate_burst"]) as u32,
                    max_rooms: n(&l["limits"]["max_rooms"]) as u32,
                },
            }),
            "reply" if l.get("messages").is_some() => ServerMessage::History {
                id: borrowed_id(&l["id"]).unwrap(),
                room: s("room"),
                epoch: s("epoch"),
                offset: n(&l["offset"]),
                messages: entries,
            },
            "reply" if l.get("offset").is_some() && l.get("epoch").is_none() => {
                ServerMessage::Published {
                    id: borrowed_id(&l["id"]).unwrap(),
                    offset: n(&l["offset"]),
                }
            }
            "reply" if l.get("epoch").is_some() => ServerMessage::Joined {
                id: borrowed_id(&l["id"]).unwrap(),
                room: s("room"),
                epoch: s("epoch"),
                offset: n(&l["offset"]),
                recovered: l.get("recovered").map(|v| v.as_bool().unwrap()),
                read: l.get("read").map(|v| v.as_u64().unwrap()),
                presence: l.get("presence").map(|v| v.as_bool().unwrap()),
            },
            "reply" if l.get("members").is_some() => ServerMessage::Members {
                id: borrowed_id(&l["id"]).unwrap(),
                room: s("room"),
                members,
                next: opt("next"),
            },
            "reply" if l.get("users").is_some() => ServerMessage::Watching {
                id: borrowed_id(&l["id"]).unwrap(),
                users,
            },
            "reply" => ServerMessage::Reply {
                id: borrowed_id(&l["id"]).unwrap(),
            },
            "error" => ServerMessage::Error {
                id: l.get("id").and_then(borrowed_id),
                code: ErrorCode::parse(s("code")).unwrap(),
                message: s("message"),
            },
            "event" => ServerMessage::Event {
                event: s("event"),
                room: opt("room"),
                from: opt("from"),
                offset: l.get("offset").map(n),
                data: RawData::validate(self.data_format, &self.data).unwrap(),
            },
            other => panic!("unknown type {other}"),
        }
    }

    fn owned(&self) -> OwnedServerMessage {
        let l = &self.logical;
        let entries = self.entries();
        let (members, users) = (members(l), user_states(l));
        match self.message(&entries, &members, &users) {
            ServerMessage::Welcome(w) => OwnedServerMessage::Welcome {
                user: w.user.into(),
                conn: w.conn.into(),
                session: w.session.into(),
                shard: w.shard,
                heartbeat: w.heartbeat,
                limits: w.limits,
            },
            // The client decoder keeps only the id of a reply.
            ServerMessage::Reply { id }
            | ServerMessage::Published { id, .. }
            | ServerMessage::Joined { id, .. }
            | ServerMessage::History { id, .. }
            | ServerMessage::Members { id, .. }
            | ServerMessage::Watching { id, .. } => OwnedServerMessage::Reply {
                id: id.into_owned(),
            },
            ServerMessage::Error { id, code, message } => OwnedServerMessage::Error {
                id: id.map(Id::into_owned),
                code: code.as_str().into(),
                message: message.into(),
            },
            ServerMessage::Event {
                event,
                room,
                from,
                offset,
                ..
            } => OwnedServerMessage::Event {
                event: event.into(),
                room: room.map(Into::into),
                from: from.map(Into::into),
                offset,
                data: l["data"].clone(),
            },
        }
    }
}

fn history_messages(logical: &Value) -> &[Value] {
    array(logical, "messages")
}

/// The array `logical[key]` (empty when there is none).
fn array<'a>(logical: &'a Value, key: &str) -> &'a [Value] {
    logical
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The variant of a server message, to check that each has a vector.
fn variant(msg: &ServerMessage<'_>) -> &'static str {
    match msg {
        ServerMessage::Welcome(_) => "welcome",
        ServerMessage::Reply { .. } => "reply",
        ServerMessage::Published { .. } => "published",
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::History { .. } => "history",
        ServerMessage::Members { .. } => "members",
        ServerMessage::Watching { .. } => "watching",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Event { .. } => "event",
    }
}

fn borrowed_id(v: &Value) -> Option<Id<'_>> {
    match v {
        Value::Number(n) => Some(Id::Num(n.as_u64().unwrap())),
        Value::String(s) => Some(Id::Str(s.as_str().into())),
        _ => None,
    }
}

fn encode_msg(format: Format, msg: &ServerMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_server_message(format, msg, &mut out).unwrap();
    out
}

#[test]
fn server_vectors() {
    let vectors: Vec<Vector> = load("server.json");
    let mut variants = std::collections::HashSet::new();
    for v in &vectors {
        let parts = ServerParts::new(v);
        let entries = parts.entries();
        let (members, users) = (members(&v.logical), user_states(&v.logical));
        let msg = parts.message(&entries, &members, &users);
        assert_eq!(
            String::from_utf8(encode_msg(Format::Json, &msg)).unwrap(),
            v.json,
            "{}",
            v.name
        );
        assert_eq!(
            hex::encode(encode_msg(Format::MsgPack, &msg)),
            v.msgpack_hex,
            "{}",
            v.name
        );
        let mp = hex::decode(&v.msgpack_hex).unwrap();
        let from_json = decode_server_message(Format::Json, v.json.as_bytes()).unwrap();
        let from_mp = decode_server_message(Format::MsgPack, &mp).unwrap();
        assert_eq!(from_json, from_mp, "{}", v.name);
        assert_eq!(from_json, parts.owned(), "{}", v.name);
        assert_eq!(serde_json::from_str::<Value>(&v.json).unwrap(), v.logical);
        variants.insert(variant(&msg));
    }
    assert_eq!(variants.len(), 9, "every server message has a vector");
}

#[test]
fn invalid_vectors() {
    let vectors: Vec<Invalid> = load("invalid.json");
    for v in &vectors {
        let bytes = match (&v.input, &v.input_hex) {
            (Some(text), None) => text.clone().into_bytes(),
            (None, Some(h)) => hex::decode(h).unwrap(),
            _ => panic!("{}: exactly one of input and input_hex", v.name),
        };
        let format = match v.format.as_str() {
            "json" => Format::Json,
            "msgpack" => Format::MsgPack,
            other => panic!("{}: format {other}", v.name),
        };
        let err = decode_request(format, &bytes).expect_err(&v.name);
        assert_eq!(err.error.code.as_str(), v.code, "{}: {}", v.name, err.error);
        assert_eq!(err.id, id_from(&v.id), "{}", v.name);
    }
}

#[test]
fn unknown_server_type_is_refused() {
    let e = decode_server_message(Format::Json, br#"{"type":"party"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

// ---- the sources the vector files were generated from --------------------------------------

const CLIENT: &[(&str, &str, &str)] = &[
    (
        "auth",
        "auth with a numeric id",
        r#"{"cmd":"auth","id":1,"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"}"#,
    ),
    (
        "auth_no_id",
        "auth without id: no reply on success (the welcome follows)",
        r#"{"cmd":"auth","token":"t0k3n"}"#,
    ),
    (
        "join",
        "join with a numeric id",
        r#"{"cmd":"join","id":2,"room":"lobby"}"#,
    ),
    (
        "join_string_id",
        "join with a string id",
        r#"{"cmd":"join","id":"req-7","room":"chess:42"}"#,
    ),
    (
        "join_no_id",
        "join without id",
        r#"{"cmd":"join","room":"lobby"}"#,
    ),
    (
        "create",
        "create a private room of at most 50 members, and join it",
        r#"{"cmd":"create","id":1,"room":"team:42","private":true,"maxMembers":50}"#,
    ),
    (
        "create_defaults",
        "create a public room bound only by the server's limits",
        r#"{"cmd":"create","id":"c-1","room":"lobby-2"}"#,
    ),
    (
        "create_history",
        "create a room whose stream keeps its last 3 messages for at most 10 minutes",
        r#"{"cmd":"create","id":2,"room":"standup","historySize":3,"historyTtl":600}"#,
    ),
    (
        "create_history_none",
        "create a room that keeps no history (offsets still count)",
        r#"{"cmd":"create","id":3,"room":"ticker","maxMembers":10,"historySize":0}"#,
    ),
    (
        "leave",
        "leave with a numeric id",
        r#"{"cmd":"leave","id":3,"room":"lobby"}"#,
    ),
    (
        "leave_string_id",
        "leave with a string id",
        r#"{"cmd":"leave","id":"x","room":"lobby"}"#,
    ),
    (
        "publish",
        "publish an object",
        r#"{"cmd":"publish","id":4,"room":"lobby","event":"chat","data":{"text":"hi"}}"#,
    ),
    (
        "publish_echo",
        "publish delivered to the sender too",
        r#"{"cmd":"publish","id":5,"room":"lobby","event":"chat","data":{"text":"hi"},"echo":true}"#,
    ),
    (
        "publish_no_id",
        "publish without id; data null",
        r#"{"cmd":"publish","room":"lobby","event":"tick","data":null}"#,
    ),
    (
        "publish_nested",
        "publish nested data: arrays, floats, extreme integers",
        r#"{"cmd":"publish","id":"n1","room":"lobby","event":"state","data":{"a":[1,2.5,"x",null,true,false,{"b":[[-7]]}],"big":18446744073709551615,"neg":-9223372036854775808}}"#,
    ),
    (
        "publish_escapes",
        "strings needing escapes, and non-ASCII",
        r#"{"cmd":"publish","id":6,"room":"a\"b\\c","event":"line\nbreak\ttab\u0001","data":"quote \" backslash \\ control \u001f é 🎉"}"#,
    ),
    (
        "publish_binary",
        "publish binary values: MessagePack bin, in JSON {\"$binary\": standard base64}",
        r#"{"cmd":"publish","id":12,"room":"lobby","event":"photo","data":{"name":"a.png","bytes":{"$binary":"iVBORw0KGgo="},"thumbs":[{"$binary":""},{"$binary":"AP8="}]}}"#,
    ),
    (
        "publish_binary_lookalike",
        "objects that are not binary values: $binary among other keys",
        r#"{"cmd":"publish","id":13,"room":"lobby","event":"e","data":{"$binary":"AA==","type":0}}"#,
    ),
    (
        "publish_ephemeral",
        "an ephemeral publish (typing): delivered, not stored, no offset",
        r#"{"cmd":"publish","id":9,"room":"lobby","event":"status:typing","data":{"isTyping":true},"ephemeral":true}"#,
    ),
    (
        "publish_idem",
        "a publish with an idempotency key: a retry with the same key gets the first reply",
        r#"{"cmd":"publish","id":10,"room":"lobby","event":"chat","data":{"text":"hi"},"idem":"msg-7f3a"}"#,
    ),
    (
        "send",
        "send to a user",
        r#"{"cmd":"send","id":7,"to":"user-2","event":"dm","data":{"text":"psst"}}"#,
    ),
    (
        "send_echo",
        "send, echoed to the sender's own connection",
        r#"{"cmd":"send","id":"s-1","to":"user-2","event":"dm","data":[1,2,3],"echo":true}"#,
    ),
    (
        "send_idem",
        "a send with an idempotency key",
        r#"{"cmd":"send","id":11,"to":"user-2","event":"dm","data":"psst","idem":"dm-0042"}"#,
    ),
    (
        "send_no_id",
        "send without id",
        r#"{"cmd":"send","to":"user-2","event":"typing","data":true}"#,
    ),
    ("ping", "ping with a numeric id", r#"{"cmd":"ping","id":8}"#),
    (
        "ping_string_id",
        "ping with a string id",
        r#"{"cmd":"ping","id":"p"}"#,
    ),
    (
        "ping_no_id",
        "ping without id: no answer",
        r#"{"cmd":"ping"}"#,
    ),
    (
        "ping_max_id",
        "the largest numeric id",
        r#"{"cmd":"ping","id":18446744073709551615}"#,
    ),
    (
        "join_since",
        "join resuming the room's stream after the last event seen (epoch and offset)",
        r#"{"cmd":"join","id":2,"room":"lobby","since":{"epoch":"9f2c41aa07be13d5","offset":41}}"#,
    ),
    (
        "history_before",
        "the newest 50 stored events before offset 120 (scrolling back)",
        r#"{"cmd":"history","id":3,"room":"lobby","limit":50,"before":120}"#,
    ),
    (
        "history_after",
        "the oldest 100 stored events after offset 41 (catching up)",
        r#"{"cmd":"history","id":"h-1","room":"lobby","limit":100,"after":41}"#,
    ),
    (
        "history_defaults",
        "the newest stored events, as many as the server's default limit",
        r#"{"cmd":"history","id":4,"room":"lobby"}"#,
    ),
    (
        "join_presence",
        "join asking for the room's presence.join / presence.leave events",
        r#"{"cmd":"join","id":2,"room":"lobby","presence":true}"#,
    ),
    (
        "join_since_presence_off",
        "resume, and stop receiving the room's presence events",
        r#"{"cmd":"join","id":2,"room":"lobby","since":{"epoch":"9f2c41aa07be13d5","offset":41},"presence":false}"#,
    ),
    (
        "members",
        "the first page of a room's member users, as many as the server's default limit",
        r#"{"cmd":"members","id":5,"room":"lobby"}"#,
    ),
    (
        "members_after",
        "the next page: 2 users after \"bob\"",
        r#"{"cmd":"members","id":"m-2","room":"lobby","limit":2,"after":"bob"}"#,
    ),
    (
        "watch",
        "watch users' online/offline state",
        r#"{"cmd":"watch","id":9,"users":["bob","carol"]}"#,
    ),
    (
        "unwatch_no_id",
        "stop watching a user, without id",
        r#"{"cmd":"unwatch","users":["bob"]}"#,
    ),
    (
        "ack",
        "ack the user's private messages up to offset 12 of its stream",
        r#"{"cmd":"ack","id":9,"offset":12}"#,
    ),
    (
        "read",
        "mark room lobby read up to offset 41",
        r#"{"cmd":"read","id":10,"room":"lobby","offset":41}"#,
    ),
    (
        "create_presence_off",
        "create a room that announces no presence (the server's ROOM_PRESENCE otherwise)",
        r#"{"cmd":"create","id":23,"room":"quiet","presence":false}"#,
    ),
];

/// (name, description, json, data as MessagePack hex when it originates from a MessagePack client)
const SERVER: &[(&str, &str, &str, Option<&str>)] = &[
    ("welcome", "sent once the connection is authenticated", r#"{"type":"welcome","user":"u1","conn":"c-00000001","session":"s-9f2c","shard":3,"heartbeat":{"interval_ms":25000,"timeout_ms":20000},"limits":{"max_message_bytes":1048576,"rate_per_sec":50,"rate_burst":100,"max_rooms":100}}"#, None),
    ("reply", "reply to a command with a numeric id", r#"{"type":"reply","id":4}"#, None),
    ("reply_string_id", "reply to a command with a string id", r#"{"type":"reply","id":"req-7"}"#, None),
    ("reply_max_id", "reply with the largest numeric id", r#"{"type":"reply","id":18446744073709551615}"#, None),
    ("error", "error answering a command with an id", r#"{"type":"error","id":4,"code":"room.forbidden","message":"not a member of room \"lobby\""}"#, None),
    ("error_string_id", "error answering a command with a string id", r#"{"type":"error","id":"req-7","code":"bad_request","message":"room: expected a string"}"#, None),
    ("error_no_id", "error about a message with no (readable) id", r#"{"type":"error","code":"frame.too_large","message":"message larger than 1048576 bytes"}"#, None),
    ("event_room", "a room event published by a user", r#"{"type":"event","event":"chat","room":"lobby","from":"u1","data":{"text":"hi"}}"#, None),
    ("event_user", "an event sent to a user by another user (send)", r#"{"type":"event","event":"dm","from":"u2","data":"psst"}"#, None),
    ("event_backend", "an event pushed by the backend: no room, no from", r#"{"type":"event","event":"system","data":{"maintenance":true}}"#, None),
    ("event_backend_room", "a backend event to a room: no from", r#"{"type":"event","event":"score","room":"chess:42","data":[1,0]}"#, None),
    ("event_null_data", "an event without data", r#"{"type":"event","event":"tick","room":"lobby","from":"u1","data":null}"#, None),
    ("event_msgpack_origin", "data published by a MessagePack client (f32, int8, uint64): JSON receivers get it transcoded", r#"{"type":"event","event":"m","room":"lobby","from":"u3","data":{"t":2.5,"n":-3,"big":18446744073709551615}}"#, Some("83a174ca40200000a16ed0fda3626967cfffffffffffffffff")),
    ("event_msgpack_origin_nan", "MessagePack NaN becomes null in JSON", r#"{"type":"event","event":"m","data":[null,1]}"#, Some("92cb7ff800000000000001")),
    ("event_binary", "an event whose data holds a binary value (a MessagePack sender's bin): JSON receivers get {\"$binary\": base64}", r#"{"type":"event","event":"photo","room":"lobby","from":"u3","offset":43,"data":{"bytes":{"$binary":"iVBORw0KGgo="}}}"#, Some("81a56279746573c40889504e470d0a1a0a")),
    ("event_ephemeral", "an ephemeral room event (publish with ephemeral): no offset, never in history", r#"{"type":"event","event":"status:typing","room":"lobby","from":"u1","data":{"isTyping":true}}"#, None),
    ("event_offset", "a room event stored in the room's stream: its offset", r#"{"type":"event","event":"chat","room":"lobby","from":"u1","offset":42,"data":{"text":"hi"}}"#, None),
    ("reply_published", "reply to a publish whose event the room's stream stored: its offset (a retry with the same idem gets the same)", r#"{"type":"reply","id":4,"offset":42}"#, None),
    ("reply_joined", "reply to a join: the stream's epoch and offset when the member was added", r#"{"type":"reply","id":2,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":41}"#, None),
    ("reply_joined_recovered", "reply to a join with since: every missed event was replayed before it", r#"{"type":"reply","id":2,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":42,"recovered":true}"#, None),
    ("reply_joined_not_recovered", "reply to a join with since of another epoch: the missed events are lost", r#"{"type":"reply","id":2,"room":"lobby","epoch":"0c1d7e52b9a4f836","offset":3,"recovered":false}"#, None),
    ("reply_history", "reply to a history command: stored events, oldest first", r#"{"type":"reply","id":3,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":57,"messages":[{"offset":40,"at":1795000000000,"event":"chat","from":"alice","data":{"t":"hi"}},{"offset":41,"at":1795000000250,"event":"score","data":[1,0]}]}"#, None),
    ("reply_history_empty", "reply to a history command with no stored event in range", r#"{"type":"reply","id":4,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":0,"messages":[]}"#, None),
    ("reply_joined_presence", "reply to a join with presence: the connection receives the room's presence events", r#"{"type":"reply","id":2,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":41,"presence":true}"#, None),
    ("reply_joined_recovered_presence_off", "reply to a join with since and presence in a room that announces no presence", r#"{"type":"reply","id":2,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":42,"recovered":true,"presence":false}"#, None),
    ("reply_members", "reply to a members command: a full page, and where the next starts", r#"{"type":"reply","id":5,"room":"lobby","members":[{"user":"alice","connections":3},{"user":"bob","connections":1}],"next":"bob"}"#, None),
    ("reply_members_last", "reply to a members command: the last page", r#"{"type":"reply","id":"m-2","room":"lobby","members":[{"user":"carol","connections":1}]}"#, None),
    ("reply_watch", "reply to a watch command: each user's state now", r#"{"type":"reply","id":9,"users":[{"user":"bob","online":true},{"user":"carol","online":false}]}"#, None),
    ("event_presence_join", "a user's first connection joined the room (to members that asked for presence)", r#"{"type":"event","event":"presence.join","room":"lobby","data":{"user":"alice"}}"#, None),
    ("event_presence_leave", "a user's last connection left the room", r#"{"type":"event","event":"presence.leave","room":"lobby","data":{"user":"alice"}}"#, None),
    ("event_user_online", "a watched user connected (and was not within the grace period of a disconnect)", r#"{"type":"event","event":"user.online","data":{"user":"bob"}}"#, None),
    ("event_user_offline", "a watched user's last connection closed and none came back within the grace period", r#"{"type":"event","event":"user.offline","data":{"user":"bob"}}"#, None),
    ("error_watch_limit", "a watch past the connection's bound", r#"{"type":"error","id":9,"code":"watch.limit","message":"a connection may watch at most 100 users"}"#, None),
    ("reply_joined_read", "reply to a join by a user with a read marker in the room: unread = offset - read", r#"{"type":"reply","id":2,"room":"lobby","epoch":"9f2c41aa07be13d5","offset":57,"read":41}"#, None),
    ("event_private_with_offset", "a private message (send, REST push to a user) with its offset in the user's stream", r#"{"type":"event","event":"notification","from":"alice","offset":3,"data":{"n":1}}"#, None),
];

fn mp_map(fields: &[(&str, Vec<u8>)]) -> String {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, fields.len() as u32).unwrap();
    for (k, v) in fields {
        rmp::encode::write_str(&mut out, k).unwrap();
        out.extend_from_slice(v);
    }
    hex::encode(out)
}

fn mp_str(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_str(&mut out, s).unwrap();
    out
}

fn invalid_sources() -> Vec<Invalid> {
    let j = |name: &str, input: String, code: &str, id: Value| Invalid {
        name: name.into(),
        format: "json".into(),
        input: Some(input),
        input_hex: None,
        code: code.into(),
        id,
    };
    let m = |name: &str, input_hex: String, code: &str, id: Value| Invalid {
        name: name.into(),
        format: "msgpack".into(),
        input: None,
        input_hex: Some(input_hex),
        code: code.into(),
        id,
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let publish = |data: Vec<u8>| {
        mp_map(&[
            ("cmd", mp_str("publish")),
            ("id", vec![1]),
            ("room", mp_str("r")),
            ("event", mp_str("e")),
            ("data", data),
        ])
    };
    let mut deep_mp = vec![0x91; 65];
    deep_mp.push(0xc0);
    // The same request in both encodings: the text as given, MessagePack from its tree.
    let both = |name: &str, text: &str, id: u64| {
        let tree: Value = serde_json::from_str(text).unwrap();
        let mp = hex::encode(rmp_serde::to_vec(&tree).unwrap());
        [
            j(
                &format!("json_{name}"),
                text.into(),
                "bad_request",
                json!(id),
            ),
            m(&format!("msgpack_{name}"), mp, "bad_request", json!(id)),
        ]
    };
    // (name, request, its id): refused in both encodings.
    let long_idem = format!(
        r#"{{"cmd":"publish","id":18,"room":"lobby","event":"chat","idem":"{}"}}"#,
        "k".repeat(65)
    );
    let stream_commands: &[(&str, &str, u64)] = &[
        (
            "publish_ephemeral_not_boolean",
            r#"{"cmd":"publish","id":17,"room":"lobby","event":"status:typing","ephemeral":1}"#,
            17,
        ),
        ("publish_idem_too_long", &long_idem, 18),
        (
            "send_idem_empty",
            r#"{"cmd":"send","id":19,"to":"u","event":"dm","idem":""}"#,
            19,
        ),
        (
            "create_max_members_zero",
            r#"{"cmd":"create","id":20,"room":"r","maxMembers":0}"#,
            20,
        ),
        (
            "create_max_members_too_big",
            r#"{"cmd":"create","id":21,"room":"r","maxMembers":1000001}"#,
            21,
        ),
        (
            "create_private_not_boolean",
            r#"{"cmd":"create","id":22,"room":"r","private":"yes"}"#,
            22,
        ),
        (
            "create_history_size_too_big",
            r#"{"cmd":"create","id":30,"room":"r","historySize":10001}"#,
            30,
        ),
        (
            "create_history_size_negative",
            r#"{"cmd":"create","id":31,"room":"r","historySize":-1}"#,
            31,
        ),
        (
            "create_history_ttl_zero",
            r#"{"cmd":"create","id":32,"room":"r","historyTtl":0}"#,
            32,
        ),
        (
            "create_history_ttl_too_big",
            r#"{"cmd":"create","id":33,"room":"r","historyTtl":2592001}"#,
            33,
        ),
        (
            "create_history_ttl_not_integer",
            r#"{"cmd":"create","id":34,"room":"r","historyTtl":"1h"}"#,
            34,
        ),
        (
            "history_before_and_after",
            r#"{"cmd":"history","id":11,"room":"lobby","before":10,"after":2}"#,
            11,
        ),
        (
            "history_limit_zero",
            r#"{"cmd":"history","id":12,"room":"lobby","limit":0}"#,
            12,
        ),
        (
            "history_limit_too_big",
            r#"{"cmd":"history","id":13,"room":"lobby","limit":1001}"#,
            13,
        ),
        (
            "join_since_not_object",
            r#"{"cmd":"join","id":14,"room":"lobby","since":41}"#,
            14,
        ),
        (
            "join_since_missing_offset",
            r#"{"cmd":"join","id":15,"room":"lobby","since":{"epoch":"9f2c41aa07be13d5"}}"#,
            15,
        ),
        (
            "join_since_bad_epoch",
            r#"{"cmd":"join","id":16,"room":"lobby","since":{"epoch":"","offset":41}}"#,
            16,
        ),
        (
            "join_presence_not_boolean",
            r#"{"cmd":"join","id":17,"room":"lobby","presence":1}"#,
            17,
        ),
        (
            "members_limit_too_big",
            r#"{"cmd":"members","id":18,"room":"lobby","limit":1001}"#,
            18,
        ),
        (
            "members_after_not_string",
            r#"{"cmd":"members","id":19,"room":"lobby","after":5}"#,
            19,
        ),
        ("watch_users_missing", r#"{"cmd":"watch","id":20}"#, 20),
        (
            "watch_users_empty",
            r#"{"cmd":"watch","id":21,"users":[]}"#,
            21,
        ),
        (
            "watch_users_not_array",
            r#"{"cmd":"watch","id":22,"users":"bob"}"#,
            22,
        ),
        (
            "unwatch_user_not_string",
            r#"{"cmd":"unwatch","id":23,"users":["bob",7]}"#,
            23,
        ),
    ];
    let mut all = vec![
        j(
            "json_malformed",
            r#"{"cmd":"join","#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_trailing_data",
            r#"{"cmd":"ping"} {}"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_not_object",
            r#"["ping",1]"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_missing_cmd",
            r#"{"id":1,"room":"lobby"}"#.into(),
            "bad_request",
            json!(1),
        ),
        j(
            "json_cmd_not_string",
            r#"{"id":"a","cmd":1}"#.into(),
            "bad_request",
            json!("a"),
        ),
        j(
            "json_unknown_cmd",
            r#"{"cmd":"dance","id":7}"#.into(),
            "unknown_command",
            json!(7),
        ),
        j(
            "json_room_wrong_type",
            r#"{"cmd":"join","id":8,"room":42}"#.into(),
            "bad_request",
            json!(8),
        ),
        j(
            "json_room_empty",
            r#"{"cmd":"join","id":8,"room":""}"#.into(),
            "bad_request",
            json!(8),
        ),
        j(
            "json_room_too_long",
            format!(r#"{{"cmd":"join","id":9,"room":"{}"}}"#, "r".repeat(129)),
            "bad_request",
            json!(9),
        ),
        j(
            "json_token_missing",
            r#"{"cmd":"auth","id":2}"#.into(),
            "bad_request",
            json!(2),
        ),
        j(
            "json_echo_not_boolean",
            r#"{"cmd":"publish","id":3,"room":"r","event":"e","echo":"yes"}"#.into(),
            "bad_request",
            json!(3),
        ),
        j(
            "json_duplicate_field",
            r#"{"cmd":"join","room":"a","room":"b"}"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_negative_id",
            r#"{"cmd":"ping","id":-1}"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_float_id",
            r#"{"cmd":"ping","id":1.5}"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_null_id",
            r#"{"cmd":"ping","id":null}"#.into(),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_id_too_long",
            format!(r#"{{"cmd":"ping","id":"{}"}}"#, "i".repeat(65)),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_data_depth_65",
            format!(
                r#"{{"cmd":"publish","id":10,"room":"r","event":"e","data":{}}}"#,
                deep(65)
            ),
            "bad_request",
            json!(10),
        ),
        j(
            "json_data_number_out_of_range",
            r#"{"cmd":"publish","id":31,"room":"r","event":"e","data":1e400}"#.into(),
            "bad_request",
            json!(31),
        ),
        j(
            "json_data_lone_surrogate",
            r#"{"cmd":"send","id":32,"to":"u","event":"e","data":"\ud800"}"#.into(),
            "bad_request",
            json!(32),
        ),
        m(
            "msgpack_truncated",
            "82a3636d64a470696e67a2".into(),
            "bad_request",
            Value::Null,
        ),
        m(
            "msgpack_truncated_after_id",
            "83a2696407a3636d64a77075626c".into(),
            "bad_request",
            json!(7),
        ),
        m(
            "msgpack_not_map",
            "93a470696e670102".into(),
            "bad_request",
            Value::Null,
        ),
        m(
            "msgpack_trailing_bytes",
            format!("{}c0", mp_map(&[("cmd", mp_str("ping"))])),
            "bad_request",
            Value::Null,
        ),
        m(
            "msgpack_lying_array_length",
            "81a464617461dd7fffffff".into(),
            "bad_request",
            Value::Null,
        ),
        m(
            "msgpack_lying_map_length",
            "df7fffffffa3636d64".into(),
            "bad_request",
            Value::Null,
        ),
        m(
            "msgpack_unknown_cmd",
            mp_map(&[("cmd", mp_str("dance")), ("id", vec![7])]),
            "unknown_command",
            json!(7),
        ),
        m(
            "msgpack_room_wrong_type",
            mp_map(&[
                ("cmd", mp_str("join")),
                ("id", vec![8]),
                ("room", vec![0x2a]),
            ]),
            "bad_request",
            json!(8),
        ),
        m(
            "msgpack_negative_id",
            mp_map(&[("cmd", mp_str("ping")), ("id", vec![0xff])]),
            "bad_request",
            Value::Null,
        ),
        j(
            "json_binary_not_base64",
            r#"{"cmd":"publish","id":33,"room":"r","event":"e","data":{"img":{"$binary":"aGk"}}}"#
                .into(),
            "bad_request",
            json!(33),
        ),
        j(
            "json_binary_not_a_string",
            r#"{"cmd":"publish","id":34,"room":"r","event":"e","data":[{"$binary":42}]}"#.into(),
            "bad_request",
            json!(34),
        ),
        j(
            "json_data_11_binaries",
            format!(
                r#"{{"cmd":"publish","id":35,"room":"r","event":"e","data":[{}]}}"#,
                [r#"{"$binary":"AA=="}"#; 11].join(",")
            ),
            "bad_request",
            json!(35),
        ),
        m(
            "msgpack_binary_key_alone_in_data",
            publish([vec![0x81], mp_str("$binary"), mp_str("aGk=")].concat()),
            "bad_request",
            json!(1),
        ),
        m(
            "msgpack_data_11_bins",
            publish([vec![0x9b], [0xc4, 0x01, 0x00].repeat(11)].concat()),
            "bad_request",
            json!(1),
        ),
        m(
            "msgpack_ext_in_data",
            publish(vec![0xd4, 0x01, 0x00]),
            "bad_request",
            json!(1),
        ),
        m(
            "msgpack_non_string_key_in_data",
            publish(vec![0x81, 0x01, 0x02]),
            "bad_request",
            json!(1),
        ),
        m(
            "msgpack_data_depth_65",
            publish(deep_mp),
            "bad_request",
            json!(1),
        ),
    ];
    all.extend(
        stream_commands
            .iter()
            .flat_map(|(name, text, id)| both(name, text, *id)),
    );
    let too_many: Vec<String> = (0..1200).map(|i| format!("u{i}")).collect();
    all.extend(both(
        "watch_too_many_users",
        &json!({"cmd": "watch", "id": 24, "users": too_many}).to_string(),
        24,
    ));
    all
}

#[test]
#[ignore = "rewrites the vector files; run on purpose and review the diff"]
fn regenerate() {
    let client: Vec<Vector> = CLIENT
        .iter()
        .map(|(name, description, text)| {
            let req = decode_request(Format::Json, text.as_bytes()).unwrap();
            let json = String::from_utf8(encode_req(Format::Json, &req)).unwrap();
            assert_eq!(json, *text, "{name}: source is not in canonical form");
            Vector {
                name: (*name).into(),
                description: (*description).into(),
                json,
                msgpack_hex: hex::encode(encode_req(Format::MsgPack, &req)),
                data_msgpack_hex: None,
                logical: serde_json::from_str(text).unwrap(),
            }
        })
        .collect();
    let server: Vec<Vector> = SERVER
        .iter()
        .map(|(name, description, text, data_hex)| {
            let mut v = Vector {
                name: (*name).into(),
                description: (*description).into(),
                json: String::new(),
                msgpack_hex: String::new(),
                data_msgpack_hex: data_hex.map(Into::into),
                logical: serde_json::from_str(text).unwrap(),
            };
            let parts = ServerParts::new(&v);
            let entries = parts.entries();
            let logical = v.logical.clone();
            let (members, users) = (members(&logical), user_states(&logical));
            let msg = parts.message(&entries, &members, &users);
            v.json = String::from_utf8(encode_msg(Format::Json, &msg)).unwrap();
            assert_eq!(v.json, *text, "{name}: source is not in canonical form");
            v.msgpack_hex = hex::encode(encode_msg(Format::MsgPack, &msg));
            v
        })
        .collect();
    let write = |file: &str, value: String| std::fs::write(path(file), value + "\n").unwrap();
    write(
        "client.json",
        serde_json::to_string_pretty(&client).unwrap(),
    );
    write(
        "server.json",
        serde_json::to_string_pretty(&server).unwrap(),
    );
    write(
        "invalid.json",
        serde_json::to_string_pretty(&invalid_sources()).unwrap(),
    );
}
