//! The request envelope both codecs fill with raw field values, checked here into a [`Request`].

use std::borrow::Cow;

use crate::error::{DecodeError, ErrorCode, ProtocolError};
use crate::format::Format;
use crate::message::{
    Command, Id, RawData, Request, Since, MAX_EPOCH_LEN, MAX_HISTORY_LIMIT, MAX_HISTORY_SIZE,
    MAX_HISTORY_TTL, MAX_IDEM_LEN, MAX_ID_LEN, MAX_MEMBERS, MAX_MEMBERS_LIMIT, MAX_NAME_LEN,
    MAX_TOKEN_LEN, MAX_WATCH_USERS,
};

/// Longest prefix of an unknown `cmd` quoted back in the error message, in characters.
const MAX_QUOTED_CMD: usize = 64;

/// One field's value exactly as a codec found it, with the typed reads the envelope needs.
pub(crate) trait FieldValue<'a>: Copy {
    /// Reads an `id`: an unsigned integer or a string of at most [`MAX_ID_LEN`] bytes.
    /// Errors name the field (`id: ...`).
    fn id(self) -> Result<Id<'a>, ProtocolError>;
    /// Reads a string, borrowed from the input when it can be; the error is the reason
    /// (`expected a string`), without the field name.
    fn string(self) -> Result<Cow<'a, str>, &'static str>;
    /// Reads a boolean, `None` when the value is not one.
    fn boolean(self) -> Option<bool>;
    /// Reads an unsigned integer (0 ..= 2^64-1), `None` when the value is not one.
    fn uint(self) -> Option<u64>;
    /// Reads the known fields of a `since` object (unknown ones are skipped). Errors name the
    /// field (`since: expected an object`).
    fn since(self) -> Result<SinceFields<Self>, ProtocolError>;
    /// Checks a `data` value and wraps it. Errors name the field (`data: ...`).
    fn data(self) -> Result<RawData<'a>, ProtocolError>;
    /// Reads an array of at most `max` values, refusing a longer one before reading its items.
    fn list(self, max: usize) -> Result<Vec<Self>, ListError>;
}

/// Why a value is not a list the envelope accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListError {
    /// Not an array (or, in JSON, not well-formed).
    NotArray,
    /// More items than allowed.
    TooLong,
}

/// The known fields of a request, each as found (unknown fields are not kept).
pub(crate) struct Envelope<V> {
    pub(crate) id: Option<V>,
    pub(crate) cmd: Option<V>,
    pub(crate) token: Option<V>,
    pub(crate) room: Option<V>,
    pub(crate) event: Option<V>,
    pub(crate) to: Option<V>,
    pub(crate) data: Option<V>,
    pub(crate) echo: Option<V>,
    pub(crate) ephemeral: Option<V>,
    pub(crate) idem: Option<V>,
    pub(crate) private: Option<V>,
    pub(crate) max_members: Option<V>,
    pub(crate) history_size: Option<V>,
    pub(crate) history_ttl: Option<V>,
    pub(crate) since: Option<V>,
    pub(crate) limit: Option<V>,
    pub(crate) before: Option<V>,
    pub(crate) after: Option<V>,
    pub(crate) offset: Option<V>,
    pub(crate) presence: Option<V>,
    pub(crate) users: Option<V>,
}

/// The known fields of a `since` object, each as found.
pub(crate) struct SinceFields<V> {
    pub(crate) epoch: Option<V>,
    pub(crate) offset: Option<V>,
}

impl<V> Envelope<V> {
    /// An envelope with no field seen yet.
    pub(crate) const fn new() -> Self {
        Envelope {
            id: None,
            cmd: None,
            token: None,
            room: None,
            event: None,
            to: None,
            data: None,
            echo: None,
            ephemeral: None,
            idem: None,
            private: None,
            max_members: None,
            history_size: None,
            history_ttl: None,
            since: None,
            limit: None,
            before: None,
            after: None,
            offset: None,
            presence: None,
            users: None,
        }
    }
}

impl<'a, V: FieldValue<'a>> Envelope<V> {
    /// The request's id when present and valid: what an error about the rest can carry.
    pub(crate) fn valid_id(&self) -> Option<Id<'a>> {
        self.id.and_then(|v| v.id().ok())
    }

    /// Checks the fields into a request. The id is read first, so that any later error
    /// carries it.
    pub(crate) fn into_request(self, format: Format) -> Result<Request<'a>, DecodeError<'a>> {
        let id = match self.id {
            None => None,
            Some(v) => Some(v.id().map_err(|error| DecodeError { id: None, error })?),
        };
        match self.command(format) {
            Ok(command) => Ok(Request { id, command }),
            Err(error) => Err(DecodeError { id, error }),
        }
    }

    fn command(&self, format: Format) -> Result<Command<'a>, ProtocolError> {
        let cmd = self
            .cmd
            .ok_or_else(|| ProtocolError::bad_request("cmd: missing"))?
            .string()
            .map_err(|why| field_error("cmd", why))?;
        // `data`, when present, must be valid whatever the command.
        let data = match self.data {
            Some(v) => v.data()?,
            None => RawData::null(format),
        };
        let command = match &*cmd {
            "auth" => Command::Auth {
                token: name(self.token, "token", MAX_TOKEN_LEN)?,
            },
            "join" => Command::Join {
                room: name(self.room, "room", MAX_NAME_LEN)?,
                since: self.since.map(since).transpose()?,
                presence: flag(self.presence, "presence")?,
            },
            "create" => Command::Create {
                room: name(self.room, "room", MAX_NAME_LEN)?,
                private: switch(self.private, "private")?,
                max_members: bounded(self.max_members, "maxMembers", 1, MAX_MEMBERS)?,
                history_size: bounded(self.history_size, "historySize", 0, MAX_HISTORY_SIZE)?,
                history_ttl: bounded(self.history_ttl, "historyTtl", 1, MAX_HISTORY_TTL)?,
                presence: flag(self.presence, "presence")?,
            },
            "leave" => Command::Leave {
                room: name(self.room, "room", MAX_NAME_LEN)?,
            },
            "publish" => Command::Publish {
                room: name(self.room, "room", MAX_NAME_LEN)?,
                event: name(self.event, "event", MAX_NAME_LEN)?,
                data,
                echo: switch(self.echo, "echo")?,
                ephemeral: switch(self.ephemeral, "ephemeral")?,
                idem: self.idem()?,
            },
            "send" => Command::Send {
                to: name(self.to, "to", MAX_NAME_LEN)?,
                event: name(self.event, "event", MAX_NAME_LEN)?,
                data,
                echo: switch(self.echo, "echo")?,
                idem: self.idem()?,
            },
            "history" => self.history()?,
            "ack" => Command::Ack {
                offset: required_uint(self.offset, "offset")?,
            },
            "read" => Command::Read {
                room: name(self.room, "room", MAX_NAME_LEN)?,
                offset: required_uint(self.offset, "offset")?,
            },
            "members" => Command::Members {
                room: name(self.room, "room", MAX_NAME_LEN)?,
                limit: limit(self.limit, MAX_MEMBERS_LIMIT)?,
                after: self
                    .after
                    .map(|v| name(Some(v), "after", MAX_NAME_LEN))
                    .transpose()?,
            },
            "watch" => Command::Watch {
                users: users(self.users)?,
            },
            "unwatch" => Command::Unwatch {
                users: users(self.users)?,
            },
            "ping" => Command::Ping,
            other => {
                let quoted: String = other.chars().take(MAX_QUOTED_CMD).collect();
                return Err(ProtocolError::new(
                    ErrorCode::UnknownCommand,
                    format!("unknown command `{quoted}`"),
                ));
            }
        };
        Ok(command)
    }

    /// The optional idempotency key: 1 to [`MAX_IDEM_LEN`] bytes.
    fn idem(&self) -> Result<Option<Cow<'a, str>>, ProtocolError> {
        self.idem
            .map(|v| name(Some(v), "idem", MAX_IDEM_LEN))
            .transpose()
    }

    fn history(&self) -> Result<Command<'a>, ProtocolError> {
        let room = name(self.room, "room", MAX_NAME_LEN)?;
        let limit = limit(self.limit, MAX_HISTORY_LIMIT)?;
        let before = uint(self.before, "before")?;
        let after = uint(self.after, "after")?;
        if before.is_some() && after.is_some() {
            return Err(field_error("before, after", "give one, not both"));
        }
        Ok(Command::History {
            room,
            limit,
            before,
            after,
        })
    }
}

/// Checks the id limits shared by both codecs on an already-read string id.
pub(crate) fn string_id(s: Cow<'_, str>) -> Result<Id<'_>, ProtocolError> {
    if s.len() > MAX_ID_LEN {
        return Err(ProtocolError::bad_request(format!(
            "id: longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(Id::Str(s))
}

/// The error for an id of the wrong type.
pub(crate) fn id_type_error() -> ProtocolError {
    ProtocolError::bad_request("id: expected an unsigned integer or a string")
}

/// A required, non-empty string field of at most `max` bytes.
fn name<'a, V: FieldValue<'a>>(
    value: Option<V>,
    field: &'static str,
    max: usize,
) -> Result<Cow<'a, str>, ProtocolError> {
    let s = value
        .ok_or_else(|| field_error(field, "missing"))?
        .string()
        .map_err(|why| field_error(field, why))?;
    if s.is_empty() {
        return Err(field_error(field, "empty"));
    }
    if s.len() > max {
        return Err(ProtocolError::bad_request(format!(
            "{field}: longer than {max} bytes"
        )));
    }
    Ok(s)
}

/// An optional boolean switch (`echo`, `ephemeral`, `private`), false when absent.
fn switch<'a, V: FieldValue<'a>>(value: Option<V>, field: &str) -> Result<bool, ProtocolError> {
    Ok(flag(value, field)?.unwrap_or(false))
}

/// An optional boolean field.
fn flag<'a, V: FieldValue<'a>>(
    value: Option<V>,
    field: &str,
) -> Result<Option<bool>, ProtocolError> {
    value
        .map(|v| {
            v.boolean()
                .ok_or_else(|| field_error(field, "expected a boolean"))
        })
        .transpose()
}

/// An optional page size: 1 to `max`.
fn limit<'a, V: FieldValue<'a>>(value: Option<V>, max: u32) -> Result<Option<u32>, ProtocolError> {
    bounded(value, "limit", 1, max)
}

/// An optional unsigned integer from `min` to `max` (`limit`, `maxMembers`, `historySize`).
fn bounded<'a, V: FieldValue<'a>>(
    value: Option<V>,
    field: &str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ProtocolError> {
    uint(value, field)?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| field_error(field, &format!("expected {min} to {max}")))
        })
        .transpose()
}

/// The required `users` of `watch` / `unwatch`: 1 to [`MAX_WATCH_USERS`] user ids, each
/// checked like any name (errors name the item: `users[2]: empty`).
fn users<'a, V: FieldValue<'a>>(value: Option<V>) -> Result<Vec<Cow<'a, str>>, ProtocolError> {
    let items = value
        .ok_or_else(|| field_error("users", "missing"))?
        .list(MAX_WATCH_USERS)
        .map_err(|e| match e {
            ListError::NotArray => field_error("users", "expected an array of strings"),
            ListError::TooLong => {
                field_error("users", &format!("more than {MAX_WATCH_USERS} users"))
            }
        })?;
    if items.is_empty() {
        return Err(field_error("users", "empty"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            name(Some(v), "users", MAX_NAME_LEN).map_err(|e| {
                let why = e.message.strip_prefix("users: ").unwrap_or(&e.message);
                field_error(&format!("users[{i}]"), why)
            })
        })
        .collect()
}

/// A `since` object: a stream epoch and an offset, both required.
fn since<'a, V: FieldValue<'a>>(value: V) -> Result<Since<'a>, ProtocolError> {
    let fields = value.since()?;
    Ok(Since {
        epoch: name(fields.epoch, "since.epoch", MAX_EPOCH_LEN)?,
        offset: required_uint(fields.offset, "since.offset")?,
    })
}

/// A required unsigned integer field.
fn required_uint<'a, V: FieldValue<'a>>(
    value: Option<V>,
    field: &str,
) -> Result<u64, ProtocolError> {
    uint(value, field)?.ok_or_else(|| field_error(field, "missing"))
}

/// An optional unsigned integer field.
fn uint<'a, V: FieldValue<'a>>(
    value: Option<V>,
    field: &str,
) -> Result<Option<u64>, ProtocolError> {
    value
        .map(|v| {
            v.uint()
                .ok_or_else(|| field_error(field, "expected an unsigned integer"))
        })
        .transpose()
}

fn field_error(field: &str, why: &str) -> ProtocolError {
    ProtocolError::bad_request(format!("{field}: {why}"))
}
