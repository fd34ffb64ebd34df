//! What a client's event runs: a built-in (`wsgate:<command>`, its one argument the native
//! command's fields) or an event of the configured map (`[socketio]` in the configuration
//! file), written as the native command it stands for, in JSON, for `commands::dispatch`.
//! The command's reply and errors go where the event's [`Route`] says.

use bytes::Bytes;
use serde_json::{Map, Value};
use wsgate_protocol::socketio::{resolve_placeholders, Event, Payload};
use wsgate_protocol::{transcode, ErrorCode, Format, ProtocolError};

use crate::config::{EventMapping, MappedCommand};
use crate::session::Route;

/// The prefix of the built-in events.
pub(crate) const BUILTIN_PREFIX: &str = "wsgate:";

/// The native commands a built-in event may run (`wsgate:join` …).
const BUILTINS: &[&str] = &[
    "join", "leave", "publish", "send", "history", "members", "read", "ack", "create", "watch",
    "unwatch", "ping",
];

/// One command to run for a socket, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Job {
    /// The native command, in JSON, with its `id`.
    pub(crate) payload: Bytes,
    pub(crate) route: Route,
}

/// What the client's event `event` runs, given the event map `map` and the socket's error
/// route; an error (to answer) when it runs nothing or its payload does not fit.
pub(crate) fn translate(
    event: &Event<'_>,
    map: &[EventMapping],
    login_event: Option<&str>,
) -> Result<Job, ProtocolError> {
    let first = event.args.iter().next();
    // The argument as the native command reads it: a binary packet's placeholders become
    // wsgate's JSON for binary, `{"$binary": …}`.
    let argument = |p: Payload<'_>| {
        let mut value = json_value(p)?;
        // Only a binary packet has placeholders (socket.io's parser reconstructs those
        // alone): in another, an object of that shape is data like any other.
        if !event.args.attachments().is_empty() {
            resolve_placeholders(&mut value, event.args.attachments())
                .map_err(|e| bad(&e.to_string()))?;
        }
        Ok::<_, ProtocolError>(value)
    };
    let route = match event.id {
        Some(id) => Route::Ack(id),
        None => Route::None,
    };
    // The native id: the ack's (any number, when none waits: replies without a route go
    // nowhere).
    let id = event.id.unwrap_or(0);
    if let Some(command) = event.name.strip_prefix(BUILTIN_PREFIX) {
        if !BUILTINS.contains(&command) {
            return Err(unknown(&event.name));
        }
        let fields = match first {
            None => Map::new(),
            Some(p) => match argument(p)? {
                Value::Object(fields) => fields,
                _ => return Err(bad("the argument of a built-in event must be an object")),
            },
        };
        return Ok(Job {
            payload: native(command, id, fields)?,
            route,
        });
    }
    if Some(&*event.name) == login_event {
        let token = first.and_then(|p| p.str_field("token"));
        let Some(token) = token else {
            return Err(bad(
                "the login event's argument must be {\"token\": \"<jwt>\"}",
            ));
        };
        let mut fields = Map::new();
        fields.insert("token".into(), Value::String(token.into_owned()));
        return Ok(Job {
            payload: native("auth", id, fields)?,
            route,
        });
    }
    let Some(mapping) = map.iter().find(|m| m.event == event.name) else {
        return Err(unknown(&event.name));
    };
    let payload = match first {
        Some(p) => argument(p)?,
        None => Value::Null,
    };
    let route = match (&mapping.reply, event.id) {
        (_, Some(id)) => Route::Ack(id),
        (Some(reply), None) => Route::Event(reply.as_str().into()),
        (None, None) => Route::None,
    };
    Ok(Job {
        payload: native(
            mapping.command.name(),
            id,
            mapped(mapping, &event.name, &payload)?,
        )?,
        route,
    })
}

/// The native command's fields for a mapped event with `payload` as its argument.
fn mapped(
    m: &EventMapping,
    event: &str,
    payload: &Value,
) -> Result<Map<String, Value>, ProtocolError> {
    let mut fields = Map::new();
    let string_at = |path: &Option<String>, what: &str| -> Result<Value, ProtocolError> {
        let path = path.as_deref().unwrap_or("$");
        match pick(payload, path) {
            Some(Value::String(s)) => Ok(Value::String(s.clone())),
            _ => Err(bad(&format!("{what}: expected a string at {path}"))),
        }
    };
    match m.command {
        MappedCommand::Join
        | MappedCommand::Leave
        | MappedCommand::History
        | MappedCommand::Members
        | MappedCommand::Create => {
            fields.insert("room".into(), string_at(&m.room, "room")?);
        }
        MappedCommand::Read => {
            fields.insert("room".into(), string_at(&m.room, "room")?);
            if let Some(offset) = pick(payload, "$.offset") {
                fields.insert("offset".into(), offset.clone());
            }
        }
        MappedCommand::Publish | MappedCommand::Send => {
            let (key, path) = match m.command {
                MappedCommand::Publish => ("room", &m.room),
                _ => ("to", &m.to),
            };
            fields.insert(key.into(), string_at(path, key)?);
            let emit = m.emit.as_deref().unwrap_or(event);
            fields.insert("event".into(), Value::String(emit.into()));
            let data_path = m.data.as_deref().unwrap_or("$");
            let data = pick(payload, data_path).cloned().unwrap_or(Value::Null);
            fields.insert("data".into(), data);
            if m.echo {
                fields.insert("echo".into(), Value::Bool(true));
            }
            if m.ephemeral && m.command == MappedCommand::Publish {
                fields.insert("ephemeral".into(), Value::Bool(true));
            }
        }
        MappedCommand::Ping => {}
    }
    Ok(fields)
}

/// The value at `path` (`$`, or `$.name`) of `payload`.
fn pick<'v>(payload: &'v Value, path: &str) -> Option<&'v Value> {
    match path.strip_prefix("$.") {
        Some(field) => payload.get(field),
        None if path == "$" => Some(payload),
        None => None,
    }
}

/// An argument as a JSON value (MessagePack transcoded first: its `bin` becomes
/// `{"$binary": …}`).
fn json_value(p: Payload<'_>) -> Result<Value, ProtocolError> {
    let data = p.data()?;
    let mut json = Vec::with_capacity(data.bytes().len() + 8);
    transcode(data, Format::Json, &mut json)
        .map_err(|_| bad("an argument could not be read as JSON data"))?;
    serde_json::from_slice(&json).map_err(|_| bad("an argument could not be read as JSON data"))
}

/// The native command `command` with `id` and `fields`, in JSON.
fn native(command: &str, id: u64, mut fields: Map<String, Value>) -> Result<Bytes, ProtocolError> {
    if fields.contains_key("cmd") || fields.contains_key("id") {
        return Err(bad("`cmd` and `id` come from the event, not its argument"));
    }
    fields.insert("cmd".into(), Value::String(command.into()));
    fields.insert("id".into(), Value::from(id));
    serde_json::to_vec(&Value::Object(fields))
        .map(Bytes::from)
        .map_err(|_| ProtocolError::new(ErrorCode::Internal, "a command could not be written"))
}

fn unknown(event: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::UnknownCommand,
        format!(
            "no command for event {event:?}: emit a wsgate: built-in or map the event in the [socketio] table"
        ),
    )
}

fn bad(message: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadRequest, message.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wsgate_protocol::socketio::Args;
    use wsgate_protocol::RawData;

    use super::*;

    fn event<'a>(name: &'a str, arg: &'a [u8], id: Option<u64>) -> Event<'a> {
        Event {
            nsp: "/",
            name: name.into(),
            args: Args::one(RawData::trusted(Format::Json, arg)),
            id,
            offset: None,
        }
    }

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn mapping(text: &str) -> Vec<EventMapping> {
        #[derive(serde::Deserialize)]
        struct F {
            events: Vec<EventMapping>,
        }
        toml::from_str::<F>(text).unwrap().events
    }

    #[test]
    fn builtins_run_the_native_command_with_the_ack_id() {
        let job = translate(
            &event("wsgate:join", br#"{"room":"r"}"#, Some(7)),
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            json(&job.payload),
            serde_json::json!({"cmd":"join","id":7,"room":"r"})
        );
        assert!(matches!(job.route, Route::Ack(7)));
        let e = translate(&event("wsgate:nope", b"{}", None), &[], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        let e = translate(&event("wsgate:join", b"\"r\"", None), &[], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = translate(&event("wsgate:join", br#"{"cmd":"x"}"#, None), &[], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "no smuggled cmd");
        let e = translate(&event("chat", b"{}", None), &[], None).unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::UnknownCommand,
            "neither built in nor mapped"
        );
    }

    #[test]
    fn mapped_events_take_their_fields_from_the_payload() {
        let map = mapping(
            r#"
            [[events]]
            event = "chat:room:join"
            command = "join"
            room = "$"
            reply = "chat:room:joined"
            [[events]]
            event = "chat:message"
            command = "publish"
            room = "$.roomId"
            [[events]]
            event = "status:typing"
            command = "publish"
            room = "$.roomId"
            ephemeral = true
            "#,
        );
        let job = translate(&event("chat:room:join", b"\"room-123\"", None), &map, None).unwrap();
        assert_eq!(
            json(&job.payload),
            serde_json::json!({"cmd":"join","id":0,"room":"room-123"})
        );
        assert!(matches!(&job.route, Route::Event(e) if &**e == "chat:room:joined"));
        let msg = br#"{"content":"hi","roomId":"room-123"}"#;
        let job = translate(&event("chat:message", msg, Some(3)), &map, None).unwrap();
        assert_eq!(
            json(&job.payload),
            serde_json::json!({"cmd":"publish","id":3,"room":"room-123","event":"chat:message",
                "data":{"content":"hi","roomId":"room-123"}})
        );
        let typing = br#"{"roomId":"r","isTyping":true}"#;
        let job = translate(&event("status:typing", typing, None), &map, None).unwrap();
        assert_eq!(json(&job.payload)["ephemeral"], true);
        let e = translate(
            &event("chat:message", br#"{"content":"x"}"#, None),
            &map,
            None,
        );
        assert_eq!(e.unwrap_err().code, ErrorCode::BadRequest, "no roomId");
    }

    #[test]
    fn a_binary_packets_placeholders_become_binary_values() {
        let attachments = [Bytes::from_static(&[0, 1, 255]), Bytes::from_static(b"hi")];
        let arg = br#"[{"room":"r","event":"e","data":{"img":{"_placeholder":true,"num":0},"l":[{"_placeholder":true,"num":1}]}}]"#;
        let ev = Event {
            nsp: "/",
            name: "wsgate:publish".into(),
            args: Args::from_array(Format::Json, arg)
                .unwrap()
                .with_attachments(&attachments),
            id: Some(2),
            offset: None,
        };
        let job = translate(&ev, &[], None).unwrap();
        assert_eq!(
            json(&job.payload),
            serde_json::json!({"cmd":"publish","id":2,"room":"r","event":"e",
                "data":{"img":{"$binary":"AAH/"},"l":[{"$binary":"aGk="}]}})
        );
        // MessagePack bin (the msgpack parser) reads the same.
        let mp = b"\x83\xa4room\xa1r\xa5event\xa1e\xa4data\x81\xa3img\xc4\x03\x00\x01\xff";
        let ev = Event {
            args: Args::one(RawData::trusted(Format::MsgPack, mp)),
            ..ev
        };
        let job = translate(&ev, &[], None).unwrap();
        assert_eq!(
            json(&job.payload)["data"],
            serde_json::json!({"img":{"$binary":"AAH/"}})
        );
    }

    #[test]
    fn outside_a_binary_packet_a_placeholder_shape_is_plain_data() {
        let arg = br#"{"room":"r","event":"e","data":{"_placeholder":true,"num":2}}"#;
        let job = translate(&event("wsgate:publish", arg, Some(3)), &[], None).unwrap();
        assert_eq!(
            json(&job.payload)["data"],
            serde_json::json!({"_placeholder":true,"num":2})
        );
    }

    #[test]
    fn the_login_event_is_the_auth_command() {
        let job = translate(
            &event("auth:login", br#"{"token":"t.k.n"}"#, None),
            &[],
            Some("auth:login"),
        )
        .unwrap();
        assert_eq!(
            json(&job.payload),
            serde_json::json!({"cmd":"auth","id":0,"token":"t.k.n"})
        );
    }
}
