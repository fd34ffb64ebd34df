//! Stable wire error codes, WebSocket close codes, and the codec's error types.

use std::borrow::Cow;

use crate::message::Id;

/// A stable error code sent in `error` messages (and in REST JSON errors).
///
/// The string form ([`ErrorCode::as_str`]) is part of the protocol: it never changes meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A command other than `auth`/`ping` arrived before the connection authenticated.
    AuthRequired,
    /// The token is missing, malformed, badly signed, of a refused algorithm, or has a wrong
    /// audience/issuer.
    AuthInvalid,
    /// The token's `exp` is in the past (or its `nbf` in the future), beyond the leeway.
    AuthExpired,
    /// `auth` on a connection that is already authenticated.
    AuthAlready,
    /// The room does not exist.
    RoomNotFound,
    /// The connection may not do this in this room (e.g. `publish` without being a member).
    RoomForbidden,
    /// `leave` of a room the connection is not in.
    RoomNotJoined,
    /// Creating a room that exists (`create`, REST `POST /api/v1/rooms`).
    RoomConflict,
    /// A limit on rooms was reached: rooms per connection, or rooms on the server.
    RoomLimit,
    /// The user already holds the maximum number of connections.
    UserConnectionLimit,
    /// A `watch` would take the connection past the most users it may watch.
    WatchLimit,
    /// The server holds the maximum number of connections.
    ServerFull,
    /// A message exceeded the maximum message size; it was discarded.
    FrameTooLarge,
    /// The connection's command rate exceeded its token bucket; the command was not executed.
    RateLimited,
    /// The message could not be decoded, or a field is missing, of the wrong type or invalid.
    BadRequest,
    /// The `cmd` is not one this server knows.
    UnknownCommand,
    /// An internal error; the command may not have been executed.
    Internal,
    /// Cluster mode: what the command needs goes through Redis, which did not answer in time
    /// (or this node has `CLUSTER_BUFFER` commands toward it in flight): it was not done.
    ClusterUnavailable,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::AuthRequired,
        ErrorCode::AuthInvalid,
        ErrorCode::AuthExpired,
        ErrorCode::AuthAlready,
        ErrorCode::RoomNotFound,
        ErrorCode::RoomForbidden,
        ErrorCode::RoomNotJoined,
        ErrorCode::RoomConflict,
        ErrorCode::RoomLimit,
        ErrorCode::UserConnectionLimit,
        ErrorCode::WatchLimit,
        ErrorCode::ServerFull,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::Internal,
        ErrorCode::ClusterUnavailable,
    ];

    /// The stable wire string of this code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthRequired => "auth.required",
            ErrorCode::AuthInvalid => "auth.invalid",
            ErrorCode::AuthExpired => "auth.expired",
            ErrorCode::AuthAlready => "auth.already",
            ErrorCode::RoomNotFound => "room.not_found",
            ErrorCode::RoomForbidden => "room.forbidden",
            ErrorCode::RoomNotJoined => "room.not_joined",
            ErrorCode::RoomConflict => "room.conflict",
            ErrorCode::RoomLimit => "room.limit",
            ErrorCode::UserConnectionLimit => "user.connection_limit",
            ErrorCode::WatchLimit => "watch.limit",
            ErrorCode::ServerFull => "server.full",
            ErrorCode::FrameTooLarge => "frame.too_large",
            ErrorCode::RateLimited => "rate.limited",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::Internal => "internal",
            ErrorCode::ClusterUnavailable => "cluster.unavailable",
        }
    }

    /// Parses a wire string back into a code (client side).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every WebSocket close code the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1000: normal closure (the client closed, or the server answered a client's close).
    Normal = 1000,
    /// 1001: the server is shutting down.
    GoingAway = 1001,
    /// 1002: the client broke the WebSocket framing rules (RFC 6455).
    ProtocolError = 1002,
    /// 1007: a text message was not valid UTF-8.
    InvalidPayload = 1007,
    /// 1008: policy violation: `auth` command with a refused token.
    PolicyViolation = 1008,
    /// 1009: message too big: a message over the server's `max_message_bytes` (after a
    /// `frame.too_large` error).
    MessageTooBig = 1009,
    /// 1011: an internal error while serving this connection.
    InternalError = 1011,
    /// 4000: no pong (nor any other frame) arrived within the heartbeat timeout.
    HeartbeatTimeout = 4000,
    /// 4001: no successful `auth` command within the authentication timeout.
    AuthTimeout = 4001,
    /// 4002: the connection's outbound queue passed its byte bound: a slow consumer.
    SlowConsumer = 4002,
    /// 4003: the connection was closed by the backend (REST); the reason says why.
    Kicked = 4003,
    /// 4004: the token the connection authenticated with expired (`exp` plus the leeway) and
    /// no fresher one was sent with `auth`.
    TokenExpired = 4004,
}

impl CloseCode {
    /// Every close code, for documentation and tests.
    pub const ALL: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::HeartbeatTimeout,
        CloseCode::AuthTimeout,
        CloseCode::SlowConsumer,
        CloseCode::Kicked,
        CloseCode::TokenExpired,
    ];

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The short reason text the server sends with this code.
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal closure",
            CloseCode::GoingAway => "going away",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::AuthTimeout => "auth timeout",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::Kicked => "kicked",
            CloseCode::TokenExpired => "token expired",
        }
    }
}

/// A protocol-level error: a stable code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// The stable code.
    pub code: ErrorCode,
    /// What exactly was wrong, for humans (e.g. naming the field).
    pub message: Cow<'static, str>,
}

impl ProtocolError {
    /// Makes an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` error.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError::new(ErrorCode::BadRequest, message)
    }
}

/// A request that could not be decoded; `id` is set when the request's `id` could be read, so
/// the error reply can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError<'a> {
    /// The request's id, when it could be read.
    pub id: Option<Id<'a>>,
    /// What was wrong.
    pub error: ProtocolError,
}

/// Encoding failed: only possible when transcoding `data` that cannot be represented in the
/// target format (validation at decode time rules this out for data the server accepted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("encode error: {0}")]
pub struct EncodeError(pub String);
