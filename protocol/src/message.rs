//! The logical messages of protocol version 1, independent of their encoding.

use std::borrow::Cow;

use crate::error::{ErrorCode, ProtocolError};
use crate::format::Format;

/// Longest room name, event name or user id accepted in a command, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest string `id` accepted on a command, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Deepest nesting of arrays/maps accepted in a command's `data`.
pub const MAX_DEPTH: usize = 64;
/// Most binary values (MessagePack `bin`, JSON `{"$binary": …}`) one `data` may hold: what one
/// Socket.IO packet of the default parser may carry as attachments (socket.io-client's
/// `maxAttachments`), so every receiver can be sent every event.
pub const MAX_BINARIES: usize = 10;
/// Longest token accepted by the `auth` command, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;
/// Longest stream epoch accepted in a `join`'s `since`, in bytes.
pub const MAX_EPOCH_LEN: usize = 64;
/// Most messages one `history` command may ask for (its `limit`).
pub const MAX_HISTORY_LIMIT: u32 = 1000;
/// Most members one `members` command may ask for (its `limit`).
pub const MAX_MEMBERS_LIMIT: u32 = 1000;
/// Most users one `watch` or `unwatch` command may name (its `users`).
pub const MAX_WATCH_USERS: usize = 1000;
/// Longest idempotency key (`idem`) accepted on a `publish` or `send`, in bytes.
pub const MAX_IDEM_LEN: usize = 64;
/// Largest `maxMembers` a room may be created with (`create`, and REST).
pub const MAX_MEMBERS: u32 = 1_000_000;
/// Largest `historySize` a room may be created with (`create`, and REST): messages its stream
/// keeps.
pub const MAX_HISTORY_SIZE: u32 = 10_000;
/// Largest `historyTtl` a room may be created with (`create`, and REST), in seconds: 30 days.
pub const MAX_HISTORY_TTL: u32 = 30 * 24 * 3600;

/// A command's optional `id`: an unsigned integer or a short string, echoed back verbatim (same
/// type) in the one reply or error that answers the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Id<'a> {
    /// An unsigned integer id (0 ..= 2^64-1).
    Num(u64),
    /// A string id of at most [`MAX_ID_LEN`] bytes.
    Str(Cow<'a, str>),
}

impl Id<'_> {
    /// Copies the id out of the request buffer.
    pub fn into_owned(self) -> Id<'static> {
        match self {
            Id::Num(n) => Id::Num(n),
            Id::Str(s) => Id::Str(Cow::Owned(s.into_owned())),
        }
    }
}

/// A `data` value exactly as one sender encoded it: already validated (well-formed, at most
/// [`MAX_DEPTH`] deep, and inside wsgate's data model: JSON's, with string map keys, plus
/// binary values, at most [`MAX_BINARIES`]: MessagePack `bin`, JSON `{"$binary":"<base64>"}`;
/// no MessagePack ext), and carried as raw bytes. It is transcoded at most once per target encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawData<'a> {
    format: Format,
    bytes: &'a [u8],
}

impl<'a> RawData<'a> {
    /// Validates `bytes` as one complete value in `format` and wraps it.
    pub fn validate(format: Format, bytes: &'a [u8]) -> Result<RawData<'a>, ProtocolError> {
        crate::transcode::validate(format, bytes)?;
        Ok(RawData { format, bytes })
    }

    /// Wraps bytes the caller has already validated (e.g. copied from a [`RawData`] earlier).
    pub const fn trusted(format: Format, bytes: &'a [u8]) -> RawData<'a> {
        RawData { format, bytes }
    }

    /// `null`, in the given encoding: the `data` of a command that carried none.
    pub const fn null(format: Format) -> RawData<'static> {
        match format {
            Format::Json => RawData {
                format,
                bytes: b"null",
            },
            Format::MsgPack => RawData {
                format,
                bytes: &[0xc0],
            },
        }
    }

    /// The encoding of [`RawData::bytes`].
    pub const fn format(&self) -> Format {
        self.format
    }

    /// The raw encoded value.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Where a client left a stream: the stream's epoch and the last offset it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since<'a> {
    /// The stream's epoch, as the `join` reply or a `history` reply gave it: 1 to
    /// [`MAX_EPOCH_LEN`] bytes.
    pub epoch: Cow<'a, str>,
    /// The offset of the last event the client saw.
    pub offset: u64,
}

/// Every `cmd` of protocol version 1 (what [`Command::name`] can answer).
pub const COMMANDS: &[&str] = &[
    "auth", "join", "leave", "create", "publish", "send", "history", "ack", "read", "members",
    "watch", "unwatch", "ping",
];

/// One client command: one variant per `cmd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `auth`: authenticate with a token (when none came with the handshake).
    Auth {
        /// The JWT.
        token: Cow<'a, str>,
    },
    /// `join`: become a member of a room.
    Join {
        /// The room name.
        room: Cow<'a, str>,
        /// Resume: replay the room's events after this position before the reply.
        since: Option<Since<'a>>,
        /// `true`: this connection receives the room's `presence.join` / `presence.leave`
        /// events; `false`: it stops; `None`: unchanged (none for a new member).
        presence: Option<bool>,
    },
    /// `create`: create a room with options and join it.
    Create {
        /// The room name.
        room: Cow<'a, str>,
        /// Only its creator, the users the backend lets in and users whose token's `rooms`
        /// claim matches may join (default false).
        private: bool,
        /// Most member connections, 1 to [`MAX_MEMBERS`] (`None`: only the server's bounds).
        max_members: Option<u32>,
        /// Messages the room's stream keeps, 0 to [`MAX_HISTORY_SIZE`] (`None`: the server's
        /// default).
        history_size: Option<u32>,
        /// Age in seconds past which the room's messages are dropped, 1 to
        /// [`MAX_HISTORY_TTL`] (`None`: the server's default).
        history_ttl: Option<u32>,
        /// Whether the room announces presence (`None`: the server's `ROOM_PRESENCE`).
        presence: Option<bool>,
    },
    /// `leave`: stop being a member of a room.
    Leave {
        /// The room name.
        room: Cow<'a, str>,
    },
    /// `publish`: send an event to every member of a room.
    Publish {
        /// The room name.
        room: Cow<'a, str>,
        /// The free-form event name receivers see.
        event: Cow<'a, str>,
        /// The opaque payload (`null` when absent).
        data: RawData<'a>,
        /// Deliver to the sending connection too (default false).
        echo: bool,
        /// Deliver without storing (default false): no offset, not in history, never
        /// replayed, dropped first for a recipient whose queue is filling (typing and
        /// other transient state), under its own rate limit.
        ephemeral: bool,
        /// An idempotency key (1 to [`MAX_IDEM_LEN`] bytes): a retry with the same key gets
        /// the first answer and publishes nothing again.
        idem: Option<Cow<'a, str>>,
    },
    /// `send`: send an event to every connection of one user.
    Send {
        /// The receiving user id.
        to: Cow<'a, str>,
        /// The free-form event name receivers see.
        event: Cow<'a, str>,
        /// The opaque payload (`null` when absent).
        data: RawData<'a>,
        /// Deliver to the sending connection too, if it belongs to `to` (default false).
        echo: bool,
        /// An idempotency key, as for `publish`.
        idem: Option<Cow<'a, str>>,
    },
    /// `history`: read a room's stored events, oldest first.
    History {
        /// The room name.
        room: Cow<'a, str>,
        /// Most events to return, 1 to [`MAX_HISTORY_LIMIT`] (`None`: the server's default).
        limit: Option<u32>,
        /// Only events with a smaller offset: the newest `limit` of them.
        before: Option<u64>,
        /// Only events with a larger offset: the oldest `limit` of them.
        after: Option<u64>,
    },
    /// `ack`: the user's private messages up to `offset` of its stream were received; they
    /// are not delivered again.
    Ack {
        /// The last offset of the user's stream received.
        offset: u64,
    },
    /// `read`: the user read a room up to `offset`: its read marker, kept for unread counts
    /// and told to the room's members as a `read` event.
    Read {
        /// The room name.
        room: Cow<'a, str>,
        /// The last offset of the room's stream read.
        offset: u64,
    },
    /// `members`: a page of a room's member users, in user id order.
    Members {
        /// The room name.
        room: Cow<'a, str>,
        /// Most users to return, 1 to [`MAX_MEMBERS_LIMIT`] (`None`: the server's default).
        limit: Option<u32>,
        /// Only users whose id sorts after this one (the `next` of the previous page).
        after: Option<Cow<'a, str>>,
    },
    /// `watch`: receive `user.online` / `user.offline` events of these users.
    Watch {
        /// The user ids, 1 to [`MAX_WATCH_USERS`] of them.
        users: Vec<Cow<'a, str>>,
    },
    /// `unwatch`: stop receiving them.
    Unwatch {
        /// The user ids, 1 to [`MAX_WATCH_USERS`] of them.
        users: Vec<Cow<'a, str>>,
    },
    /// `ping`: an application-level ping, answered by a reply.
    Ping,
}

impl Command<'_> {
    /// The `cmd` string of this command.
    pub const fn name(&self) -> &'static str {
        match self {
            Command::Auth { .. } => "auth",
            Command::Join { .. } => "join",
            Command::Create { .. } => "create",
            Command::Leave { .. } => "leave",
            Command::Publish { .. } => "publish",
            Command::Send { .. } => "send",
            Command::History { .. } => "history",
            Command::Ack { .. } => "ack",
            Command::Read { .. } => "read",
            Command::Members { .. } => "members",
            Command::Watch { .. } => "watch",
            Command::Unwatch { .. } => "unwatch",
            Command::Ping => "ping",
        }
    }

    /// The idempotency key of a `publish` or `send`, if it has one.
    pub fn idem(&self) -> Option<&str> {
        match self {
            Command::Publish { idem, .. } | Command::Send { idem, .. } => idem.as_deref(),
            _ => None,
        }
    }

    /// The optional integer fields of a `history` (or the `limit` of a `members`) that are
    /// set, with their keys, in the order the encoders write them (none for another command).
    pub(crate) fn history_bounds(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let (limit, before, after) = match self {
            Command::History {
                limit,
                before,
                after,
                ..
            } => (limit.map(u64::from), *before, *after),
            Command::Members { limit, .. } => (limit.map(u64::from), None, None),
            _ => (None, None, None),
        };
        [("limit", limit), ("before", before), ("after", after)]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
    }

    /// The optional integer options of a `create` that are set, with their keys, in the order
    /// the encoders write them (none for another command).
    pub(crate) fn room_options(&self) -> impl Iterator<Item = (&'static str, u32)> {
        let (max_members, history_size, history_ttl) = match self {
            Command::Create {
                max_members,
                history_size,
                history_ttl,
                ..
            } => (*max_members, *history_size, *history_ttl),
            _ => (None, None, None),
        };
        [
            ("maxMembers", max_members),
            ("historySize", history_size),
            ("historyTtl", history_ttl),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
    }
}

/// A decoded client message: a command and its optional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The optional id; a command with one gets exactly one reply or error carrying it.
    pub id: Option<Id<'a>>,
    /// The command.
    pub command: Command<'a>,
}

/// Heartbeat settings announced in `welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often the server sends a WebSocket ping.
    pub interval_ms: u64,
    /// How long after a ping the server waits for a pong (or any frame) before closing.
    pub timeout_ms: u64,
}

/// Limits announced in `welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u64,
    /// Sustained commands per second per connection.
    pub rate_per_sec: u32,
    /// Burst of commands allowed above the sustained rate.
    pub rate_burst: u32,
    /// Most rooms one connection may be in.
    pub max_rooms: u32,
}

/// The `welcome` message sent once a connection is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// The user id (the token's `sub`).
    pub user: &'a str,
    /// This connection's id, unique in the server.
    pub conn: &'a str,
    /// The session id (the token's `sid` claim, else generated).
    pub session: &'a str,
    /// The shard serving this connection.
    pub shard: u32,
    /// Heartbeat settings.
    pub heartbeat: Heartbeat,
    /// Limits.
    pub limits: Limits,
}

/// One message of a history answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry<'a> {
    /// Its offset in the room's stream.
    pub offset: u64,
    /// When the server accepted it, in Unix milliseconds.
    pub at: u64,
    /// The event name.
    pub event: &'a str,
    /// The sending user, for events sent by a user.
    pub from: Option<&'a str>,
    /// The opaque payload.
    pub data: RawData<'a>,
}

/// One member user of a room, in a `members` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The user id.
    pub user: &'a str,
    /// The user's connections that are members of the room.
    pub connections: u32,
}

/// One watched user's state, in a `watch` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserState<'a> {
    /// The user id.
    pub user: &'a str,
    /// Online as watchers are told: connected, or its last connection closed less than the
    /// server's grace period ago.
    pub online: bool,
}

/// A message from the server, borrowed: what the server encodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// `welcome`: sent once, after authentication.
    Welcome(Welcome<'a>),
    /// `reply`: a command with an `id` succeeded.
    Reply {
        /// The command's id.
        id: Id<'a>,
    },
    /// `reply` to a `join` with an id: where the room's stream stood when the member was added.
    Joined {
        /// The command's id.
        id: Id<'a>,
        /// The room joined.
        room: &'a str,
        /// The stream's epoch.
        epoch: &'a str,
        /// The stream's offset when the member was added: every later event of the room
        /// carries a larger one.
        offset: u64,
        /// For a `join` with `since`: whether every event after it was replayed (false: the
        /// epoch differs or the events are no longer stored). `None` for a plain `join`.
        recovered: Option<bool>,
        /// The user's read marker in the room (the last offset it marked read with `read`),
        /// when it has one: the room's unread count is `offset - read`.
        read: Option<u64>,
        /// For a `join` with `presence`: whether the connection now receives the room's
        /// presence events (false: it did not ask, or the room announces none). `None` for a
        /// `join` without `presence`.
        presence: Option<bool>,
    },
    /// `reply` to a `publish` (with an id) whose event the room's stream stored.
    Published {
        /// The command's id.
        id: Id<'a>,
        /// The event's offset in the room's stream.
        offset: u64,
    },
    /// `reply` to a `history` command with an id.
    History {
        /// The command's id.
        id: Id<'a>,
        /// The room.
        room: &'a str,
        /// The stream's epoch.
        epoch: &'a str,
        /// The stream's current offset (that of its newest event, 0 for none yet).
        offset: u64,
        /// The events, oldest first.
        messages: &'a [HistoryEntry<'a>],
    },
    /// `reply` to a `members` command with an id: a page of the room's member users.
    Members {
        /// The command's id.
        id: Id<'a>,
        /// The room.
        room: &'a str,
        /// The users, in id order.
        members: &'a [Member<'a>],
        /// When more follow: the `after` of the next page (the last user of this one).
        next: Option<&'a str>,
    },
    /// `reply` to a `watch` command with an id: the state of each user named.
    Watching {
        /// The command's id.
        id: Id<'a>,
        /// Each user named, once, in the order first named.
        users: &'a [UserState<'a>],
    },
    /// `error`: a command failed (with its id when it had one and it could be read).
    Error {
        /// The command's id, if any.
        id: Option<Id<'a>>,
        /// The stable code.
        code: ErrorCode,
        /// What went wrong, for humans.
        message: &'a str,
    },
    /// `event`: an event from a user, a room or the backend.
    Event {
        /// The free-form event name chosen by the sender.
        event: &'a str,
        /// The room it was published to, for room events.
        room: Option<&'a str>,
        /// The sending user, for events sent by a user.
        from: Option<&'a str>,
        /// The event's offset in the room's stream, for room events the stream stored.
        offset: Option<u64>,
        /// The opaque payload.
        data: RawData<'a>,
    },
}

/// The stream position a `join` or `history` reply carries.
pub(crate) struct Position<'m, 'a> {
    pub(crate) id: &'m Id<'a>,
    pub(crate) room: &'a str,
    pub(crate) epoch: &'a str,
    pub(crate) offset: u64,
}

impl<'a> ServerMessage<'a> {
    /// The stream position of a `join` or `history` reply (`None` for another message).
    pub(crate) fn position(&self) -> Option<Position<'_, 'a>> {
        match self {
            ServerMessage::Joined {
                id,
                room,
                epoch,
                offset,
                ..
            }
            | ServerMessage::History {
                id,
                room,
                epoch,
                offset,
                ..
            } => Some(Position {
                id,
                room,
                epoch,
                offset: *offset,
            }),
            _ => None,
        }
    }
}

/// A message from the server, owned: what a client decodes. `data` is parsed into a JSON tree,
/// whatever the encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedServerMessage {
    /// `welcome`.
    Welcome {
        /// See [`Welcome::user`].
        user: String,
        /// See [`Welcome::conn`].
        conn: String,
        /// See [`Welcome::session`].
        session: String,
        /// See [`Welcome::shard`].
        shard: u32,
        /// See [`Welcome::heartbeat`].
        heartbeat: Heartbeat,
        /// See [`Welcome::limits`].
        limits: Limits,
    },
    /// `reply` (extra fields, such as a `join`'s `epoch` or a `history`'s `messages`, are not
    /// kept; [`crate::decode_join_reply`] reads a `join`'s).
    Reply {
        /// The command's id.
        id: Id<'static>,
    },
    /// `error`.
    Error {
        /// The command's id, if any.
        id: Option<Id<'static>>,
        /// The code as sent (kept as a string so unknown future codes survive).
        code: String,
        /// The message.
        message: String,
    },
    /// `event`.
    Event {
        /// The event name.
        event: String,
        /// The room, for room events.
        room: Option<String>,
        /// The sender, for user events.
        from: Option<String>,
        /// The offset in the room's stream, for stored room events.
        offset: Option<u64>,
        /// The payload.
        data: serde_json::Value,
    },
}

/// A `join`'s reply as a client reads it, with the stream position that
/// [`OwnedServerMessage::Reply`] leaves out (see [`crate::decode_join_reply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinReply {
    /// The command's id.
    pub id: Id<'static>,
    /// The room joined.
    pub room: String,
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's offset when the member was added.
    pub offset: u64,
    /// For a `join` with `since`: whether every event after it was replayed. `None` for a
    /// plain `join`.
    pub recovered: Option<bool>,
}

impl OwnedServerMessage {
    /// The error code, if this is an error with a code this crate knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            OwnedServerMessage::Error { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }
}
