//! Client side: a decoded server message, as a JSON tree whatever its encoding, into an
//! [`OwnedServerMessage`] (or a [`JoinReply`], for a client that keeps stream positions).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::ProtocolError;
use crate::message::{Heartbeat, Id, JoinReply, Limits, OwnedServerMessage};

/// Reads a server message from its tree form.
pub(crate) fn from_value(value: Value) -> Result<OwnedServerMessage, ProtocolError> {
    let Value::Object(mut obj) = value else {
        return Err(ProtocolError::bad_request("expected an object"));
    };
    let kind = string(&mut obj, "type")?;
    let msg = match kind.as_str() {
        "welcome" => {
            let heartbeat = object(&mut obj, "heartbeat")?;
            let limits = object(&mut obj, "limits")?;
            OwnedServerMessage::Welcome {
                user: string(&mut obj, "user")?,
                conn: string(&mut obj, "conn")?,
                session: string(&mut obj, "session")?,
                shard: number(&obj, "shard")?,
                heartbeat: Heartbeat {
                    interval_ms: number(&heartbeat, "interval_ms")?,
                    timeout_ms: number(&heartbeat, "timeout_ms")?,
                },
                limits: Limits {
                    max_message_bytes: number(&limits, "max_message_bytes")?,
                    rate_per_sec: number(&limits, "rate_per_sec")?,
                    rate_burst: number(&limits, "rate_burst")?,
                    max_rooms: number(&limits, "max_rooms")?,
                },
            }
        }
        // A `join`'s or `history`'s reply carries more fields; they are not kept.
        "reply" => OwnedServerMessage::Reply {
            id: id(obj.remove("id")).and_then(|id| id.ok_or_else(|| missing("id")))?,
        },
        "error" => OwnedServerMessage::Error {
            id: id(obj.remove("id"))?,
            code: string(&mut obj, "code")?,
            message: string(&mut obj, "message")?,
        },
        "event" => OwnedServerMessage::Event {
            event: string(&mut obj, "event")?,
            room: optional_string(&mut obj, "room")?,
            from: optional_string(&mut obj, "from")?,
            offset: obj
                .contains_key("offset")
                .then(|| number(&obj, "offset"))
                .transpose()?,
            data: obj.remove("data").unwrap_or(Value::Null),
        },
        other => {
            return Err(ProtocolError::bad_request(format!(
                "unknown message type `{}`",
                other.chars().take(64).collect::<String>()
            )))
        }
    };
    Ok(msg)
}

/// Reads a `join`'s reply from its tree form: `None` for any other message (one that is not a
/// reply, a reply without `epoch`, or a `history`'s reply, which has `messages`).
pub(crate) fn join_reply_from_value(value: Value) -> Result<Option<JoinReply>, ProtocolError> {
    let Value::Object(mut obj) = value else {
        return Err(ProtocolError::bad_request("expected an object"));
    };
    if string(&mut obj, "type")? != "reply"
        || !obj.contains_key("epoch")
        || obj.contains_key("messages")
    {
        return Ok(None);
    }
    let recovered = match obj.remove("recovered") {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(ProtocolError::bad_request("recovered: expected a boolean")),
    };
    Ok(Some(JoinReply {
        id: id(obj.remove("id")).and_then(|id| id.ok_or_else(|| missing("id")))?,
        room: string(&mut obj, "room")?,
        epoch: string(&mut obj, "epoch")?,
        offset: number(&obj, "offset")?,
        recovered,
    }))
}

fn missing(field: &str) -> ProtocolError {
    ProtocolError::bad_request(format!("{field}: missing"))
}

fn string(obj: &mut Map<String, Value>, field: &str) -> Result<String, ProtocolError> {
    optional_string(obj, field)?.ok_or_else(|| missing(field))
}

fn optional_string(
    obj: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ProtocolError> {
    match obj.remove(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProtocolError::bad_request(format!(
            "{field}: expected a string"
        ))),
    }
}

fn object(obj: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, ProtocolError> {
    match obj.remove(field) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ProtocolError::bad_request(format!(
            "{field}: expected an object"
        ))),
        None => Err(missing(field)),
    }
}

fn number<T: TryFrom<u64>>(obj: &Map<String, Value>, field: &str) -> Result<T, ProtocolError> {
    obj.get(field)
        .ok_or_else(|| missing(field))?
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            ProtocolError::bad_request(format!("{field}: expected an unsigned integer in range"))
        })
}

fn id(value: Option<Value>) -> Result<Option<Id<'static>>, ProtocolError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Id::Str(Cow::Owned(s)))),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(Id::Num(n)))
            .ok_or_else(|| ProtocolError::bad_request("id: expected an unsigned integer")),
        Some(_) => Err(ProtocolError::bad_request(
            "id: expected an unsigned integer or a string",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::{decode_join_reply, encode_server_message, Format, Id, JoinReply, ServerMessage};

    fn encoded(format: Format, msg: &ServerMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_server_message(format, msg, &mut out).unwrap();
        out
    }

    #[test]
    fn a_join_reply_keeps_its_position_in_both_encodings() {
        for format in [Format::Json, Format::MsgPack] {
            for recovered in [None, Some(true), Some(false)] {
                let msg = ServerMessage::Joined {
                    id: Id::Num(1),
                    room: "lobby",
                    epoch: "9f2c41aa07be13d5",
                    offset: 42,
                    recovered,
                    read: Some(7),
                    presence: recovered,
                };
                let reply = decode_join_reply(format, &encoded(format, &msg)).unwrap();
                let expected = JoinReply {
                    id: Id::Num(1),
                    room: "lobby".into(),
                    epoch: "9f2c41aa07be13d5".into(),
                    offset: 42,
                    recovered,
                };
                assert_eq!(reply, Some(expected), "{format:?}");
            }
            let others = [
                ServerMessage::Reply { id: Id::Num(2) },
                ServerMessage::History {
                    id: Id::Num(3),
                    room: "lobby",
                    epoch: "9f2c41aa07be13d5",
                    offset: 42,
                    messages: &[],
                },
            ];
            for msg in others {
                let reply = decode_join_reply(format, &encoded(format, &msg)).unwrap();
                assert_eq!(reply, None, "{format:?} {msg:?}");
            }
        }
    }

    #[test]
    fn a_join_reply_with_a_bad_field_is_refused() {
        let bad = |s: &str| decode_join_reply(Format::Json, s.as_bytes()).unwrap_err();
        let e = bad(r#"{"type":"reply","id":1,"room":"r","epoch":"e","offset":-1}"#);
        assert!(e.message.starts_with("offset: "), "{e}");
        let e = bad(r#"{"type":"reply","id":1,"room":"r","epoch":"e","offset":1,"recovered":1}"#);
        assert!(e.message.starts_with("recovered: "), "{e}");
        let e = bad(r#"{"type":"reply","room":"r","epoch":"e","offset":1}"#);
        assert!(e.message.starts_with("id: "), "{e}");
    }
}
