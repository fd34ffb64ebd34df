//! The wsgate native wire protocol, version 1: one logical schema carried as JSON (text frames)
//! or MessagePack (binary frames). See `PROTOCOL.md` beside this crate for the specification.
//!
//! The server side decodes [`Request`]s and encodes [`ServerMessage`]s; the client side (tests,
//! the loadgen, other clients) encodes requests and decodes server messages. A client's `data`
//! value is never parsed into a tree: it is validated and carried as raw bytes ([`RawData`]),
//! and transcoded once when it crosses from one encoding to the other.

mod client;
pub mod engineio;
mod envelope;
mod error;
mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod json;
mod message;
mod msgpack;
pub mod socketio;
mod transcode;

pub use error::{CloseCode, DecodeError, EncodeError, ErrorCode, ProtocolError};
pub use format::Format;
pub use message::{
    Command, Heartbeat, HistoryEntry, Id, JoinReply, Limits, Member, OwnedServerMessage, RawData,
    Request, ServerMessage, Since, UserState, Welcome, COMMANDS, MAX_BINARIES, MAX_DEPTH,
    MAX_EPOCH_LEN, MAX_HISTORY_LIMIT, MAX_HISTORY_SIZE, MAX_HISTORY_TTL, MAX_IDEM_LEN, MAX_ID_LEN,
    MAX_MEMBERS, MAX_MEMBERS_LIMIT, MAX_NAME_LEN, MAX_TOKEN_LEN, MAX_WATCH_USERS,
};
pub use transcode::transcode;

/// Decodes one client request (the payload of one text or binary WebSocket message).
///
/// On failure the error still carries the request's `id` when it could be read, so the server
/// can answer with an error that names it.
pub fn decode_request(format: Format, payload: &[u8]) -> Result<Request<'_>, DecodeError<'_>> {
    match format {
        Format::Json => json::decode_request(payload),
        Format::MsgPack => msgpack::decode_request(payload),
    }
}

/// Appends the encoding of a server message to `out`.
///
/// `data` of an event arriving in the other encoding is transcoded here.
pub fn encode_server_message(
    format: Format,
    msg: &ServerMessage<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    restore_on_error(out, |out| match format {
        Format::Json => json::encode_server_message(msg, out),
        Format::MsgPack => msgpack::encode_server_message(msg, out),
    })
}

/// Appends the encoding of a client request to `out` (client side: tests, loadgen).
pub fn encode_request(
    format: Format,
    req: &Request<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    restore_on_error(out, |out| match format {
        Format::Json => json::encode_request(req, out),
        Format::MsgPack => msgpack::encode_request(req, out),
    })
}

/// Decodes one server message (client side: tests, loadgen).
pub fn decode_server_message(
    format: Format,
    payload: &[u8],
) -> Result<OwnedServerMessage, ProtocolError> {
    match format {
        Format::Json => json::decode_server_message(payload),
        Format::MsgPack => msgpack::decode_server_message(payload),
    }
}

/// Decodes a `join`'s reply with its stream position (client side: the loadgen's resume
/// check); `Ok(None)` for any other server message, a `history`'s reply included.
/// [`decode_server_message`] reads the same reply as [`OwnedServerMessage::Reply`], its id only.
pub fn decode_join_reply(
    format: Format,
    payload: &[u8],
) -> Result<Option<JoinReply>, ProtocolError> {
    let tree = match format {
        Format::Json => json::decode_server_tree(payload)?,
        Format::MsgPack => msgpack::decode_server_tree(payload)?,
    };
    client::join_reply_from_value(tree)
}

/// Runs an encoder; on error `out` is left as it was.
pub(crate) fn restore_on_error(
    out: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}
