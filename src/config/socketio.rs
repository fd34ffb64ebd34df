//! The `[socketio]` table of the configuration file: an app's own event names, mapped to
//! wsgate's built-in commands, so that its `socket.io-client` code runs unchanged.
//!
//! ```toml
//! [socketio]
//! connected_event = "connected"        # seed 001: sent to a socket once it is connected
//! login_event = "auth:login"           # seed 004: authenticates with {token} after connect
//! logout_event = "auth:logout"         # seed 004: ends the socket
//!
//! [[socketio.events]]
//! event = "chat:room:join"             # what the client emits
//! command = "join"                     # the built-in it runs
//! room = "$"                           # the room: the payload itself ($) or a field ($.roomId)
//! reply = "chat:room:joined"           # sent to the sender once it succeeded
//!
//! [[socketio.events]]
//! event = "chat:message"
//! command = "publish"
//! room = "$.roomId"                    # receivers get ["chat:message", <the payload>]
//! ```

use serde::Deserialize;

/// The `[socketio]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SocketIoFile {
    /// An event sent to a socket as soon as it is connected and authenticated, with
    /// `{"userId", "socketId"}` (seed 001's `connected`). Default: none.
    pub connected_event: Option<String>,
    /// An event that authenticates a socket after it connected, with `{"token": "<jwt>"}`
    /// (seed 004's `auth:login`): with it, a `CONNECT` without a token is accepted and the
    /// socket has `AUTH_TIMEOUT` to send it. Default: none (the token must come with the
    /// `CONNECT`).
    pub login_event: Option<String>,
    /// An event that ends the socket, as a `DISCONNECT` would (seed 004's `auth:logout`).
    /// Default: none.
    pub logout_event: Option<String>,
    /// Client events that run a built-in command.
    #[serde(default)]
    pub events: Vec<EventMapping>,
}

/// One client event and the built-in command it runs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventMapping {
    /// The event the client emits.
    pub event: String,
    /// The command it runs.
    pub command: MappedCommand,
    /// Where the room comes from (`join`, `leave`, `publish`, `history`, `members`, `read`,
    /// `create`): `$` for the payload itself (a string), `$.name` for a field of it.
    pub room: Option<String>,
    /// Where the receiving user comes from (`send`), as `room`.
    pub to: Option<String>,
    /// Where the data comes from (`publish`, `send`). Default: `$`, the payload itself.
    pub data: Option<String>,
    /// The event name receivers see (`publish`, `send`). Default: the client's own.
    pub emit: Option<String>,
    /// Publish ephemerally (not stored, shed first: typing indicators). Default: false.
    #[serde(default)]
    pub ephemeral: bool,
    /// The sender receives its own publish too. Default: false.
    #[serde(default)]
    pub echo: bool,
    /// An event sent to the sender once the command succeeded, with wsgate's reply as its
    /// data; its failures go to the error event. Default: none (the ack callback, if any,
    /// gets the reply).
    pub reply: Option<String>,
}

/// The built-in commands an event map may run.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MappedCommand {
    /// `join` a room.
    Join,
    /// `leave` a room.
    Leave,
    /// `publish` to a room.
    Publish,
    /// `send` to a user.
    Send,
    /// Read a room's `history`.
    History,
    /// A room's `members`.
    Members,
    /// Mark a room `read` (to its current offset when the payload names none).
    Read,
    /// `create` a room (and join it).
    Create,
    /// `ping`: nothing but the reply (seed 001's `message` → `messageReceived`).
    Ping,
}

impl MappedCommand {
    /// The native command's name.
    pub fn name(self) -> &'static str {
        match self {
            MappedCommand::Join => "join",
            MappedCommand::Leave => "leave",
            MappedCommand::Publish => "publish",
            MappedCommand::Send => "send",
            MappedCommand::History => "history",
            MappedCommand::Members => "members",
            MappedCommand::Read => "read",
            MappedCommand::Create => "create",
            MappedCommand::Ping => "ping",
        }
    }
}
