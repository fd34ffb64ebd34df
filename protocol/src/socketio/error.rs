//! Why a Socket.IO packet was refused: one variant per broken rule, each with a stable code.

/// A Socket.IO packet (or attachment sequence) that could not be decoded.
///
/// Socket.IO has no error reply for a malformed packet: the reference server closes the
/// Engine.IO connection, and so should wsgate. [`SioError::code`] names the rule for logs and
/// metrics (PROTOCOL.md, "Socket.IO packet errors").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SioError {
    /// The packet type is missing or not one of the parser's types (`0`-`6` for the default
    /// parser, `0`-`4` for the msgpack parser).
    #[error("packet type: expected 0-6 (default parser) or 0-4 (msgpack parser)")]
    BadType,
    /// A binary packet's attachment count is not 1 or more decimal digits followed by `-`.
    #[error("attachments: expected a count of at least 1 followed by `-`")]
    BadAttachments,
    /// A binary packet announced more attachments than the decoder accepts.
    #[error("attachments: more than {max}")]
    TooManyAttachments {
        /// The decoder's [`Limits::max_attachments`](super::Limits::max_attachments).
        max: usize,
    },
    /// A binary packet (its text and its attachments) adds up to more bytes than the decoder
    /// accepts.
    #[error("a binary packet: more than {max} bytes with its attachments")]
    AttachmentsTooLarge {
        /// The decoder's [`Limits::max_attachment_bytes`](super::Limits::max_attachment_bytes).
        max: usize,
    },
    /// A `{"_placeholder":true,"num":k}` whose `num` is not an attachment's index.
    #[error("placeholder: `num` is not the index of an attachment")]
    BadPlaceholder,
    /// A binary message arrived when no binary packet was waiting for attachments (or, with
    /// the msgpack parser, a text message arrived: it only uses binary messages).
    #[error("a binary message that no packet announced")]
    UnexpectedBinary,
    /// A text message arrived while a binary packet still waited for attachments (or a text
    /// message reached the msgpack parser).
    #[error("a text message where a binary one was expected")]
    UnexpectedText,
    /// The namespace is not a string starting with `/` and free of `,`.
    #[error("namespace: expected a string starting with `/`, without `,`")]
    BadNamespace,
    /// The ack id is not a non-negative integer of at most 2^64-1.
    #[error("ack id: expected an unsigned integer of at most 2^64-1")]
    BadId,
    /// An `ACK` without an ack id.
    #[error("ack id: missing in an ACK")]
    MissingId,
    /// The payload is not well-formed JSON (default parser).
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// The message is not one well-formed MessagePack map (msgpack parser).
    #[error("malformed MessagePack: {0}")]
    BadMsgPack(String),
    /// The payload is well-formed but cannot be carried: nested too deep, or a number or
    /// string that does not transcode.
    #[error("{0}")]
    BadData(String),
    /// `CONNECT` data that is not an object.
    #[error("CONNECT: data must be an object, or absent")]
    BadConnect,
    /// `EVENT` data that is not a non-empty array whose first element is a string.
    #[error("EVENT: data must be a non-empty array whose first element is the event name")]
    BadEvent,
    /// An `EVENT` named by one of the names socket.io reserves for itself.
    #[error("EVENT: `{0}` is a reserved event name")]
    ReservedEvent(&'static str),
    /// `ACK` data that is not an array.
    #[error("ACK: data must be an array")]
    BadAck,
    /// `CONNECT_ERROR` data that is not an object or a string.
    #[error("CONNECT_ERROR: data must be an object or a string")]
    BadConnectError,
    /// A `DISCONNECT` with data.
    #[error("DISCONNECT: no data allowed")]
    UnexpectedData,
}

impl SioError {
    /// The stable code of this error, in the `area.rule` form of the native codes.
    pub const fn code(&self) -> &'static str {
        match self {
            SioError::BadType => "sio.bad_type",
            SioError::BadAttachments => "sio.bad_attachments",
            SioError::TooManyAttachments { .. } => "sio.too_many_attachments",
            SioError::AttachmentsTooLarge { .. } => "sio.attachments_too_large",
            SioError::BadPlaceholder => "sio.bad_placeholder",
            SioError::UnexpectedBinary => "sio.unexpected_binary",
            SioError::UnexpectedText => "sio.unexpected_text",
            SioError::BadNamespace => "sio.bad_namespace",
            SioError::BadId => "sio.bad_id",
            SioError::MissingId => "sio.missing_id",
            SioError::BadJson(_) => "sio.bad_json",
            SioError::BadMsgPack(_) => "sio.bad_msgpack",
            SioError::BadData(_) => "sio.bad_data",
            SioError::BadConnect => "sio.bad_connect",
            SioError::BadEvent => "sio.bad_event",
            SioError::ReservedEvent(_) => "sio.reserved_event",
            SioError::BadAck => "sio.bad_ack",
            SioError::BadConnectError => "sio.bad_connect_error",
            SioError::UnexpectedData => "sio.unexpected_data",
        }
    }
}

/// Every [`SioError::code`], for documentation and tests.
pub const CODES: [&str; 19] = [
    "sio.bad_type",
    "sio.bad_attachments",
    "sio.too_many_attachments",
    "sio.attachments_too_large",
    "sio.bad_placeholder",
    "sio.unexpected_binary",
    "sio.unexpected_text",
    "sio.bad_namespace",
    "sio.bad_id",
    "sio.missing_id",
    "sio.bad_json",
    "sio.bad_msgpack",
    "sio.bad_data",
    "sio.bad_connect",
    "sio.bad_event",
    "sio.reserved_event",
    "sio.bad_ack",
    "sio.bad_connect_error",
    "sio.unexpected_data",
];

/// The event names socket.io's parsers refuse in an `EVENT`: its own lifecycle events.
pub(crate) const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Refuses a reserved event name.
pub(crate) fn check_event_name(name: &str) -> Result<(), SioError> {
    match RESERVED_EVENTS.iter().find(|r| **r == name) {
        Some(reserved) => Err(SioError::ReservedEvent(reserved)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_namespaced() {
        let all = [
            SioError::BadType,
            SioError::BadAttachments,
            SioError::TooManyAttachments { max: 1 },
            SioError::AttachmentsTooLarge { max: 1 },
            SioError::BadPlaceholder,
            SioError::UnexpectedBinary,
            SioError::UnexpectedText,
            SioError::BadNamespace,
            SioError::BadId,
            SioError::MissingId,
            SioError::BadJson(String::new()),
            SioError::BadMsgPack(String::new()),
            SioError::BadData(String::new()),
            SioError::BadConnect,
            SioError::BadEvent,
            SioError::ReservedEvent("connect"),
            SioError::BadAck,
            SioError::BadConnectError,
            SioError::UnexpectedData,
        ];
        let codes: Vec<_> = all.iter().map(SioError::code).collect();
        assert_eq!(codes, CODES);
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        assert_eq!(
            check_event_name("disconnect"),
            Err(SioError::ReservedEvent("disconnect"))
        );
        assert_eq!(check_event_name("disconnect "), Ok(()));
    }
}
