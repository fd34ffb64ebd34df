//! The two wire encodings and how a connection chooses one.

/// A connection's wire encoding, chosen once at the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON in text frames. The default.
    Json,
    /// MessagePack in binary frames.
    MsgPack,
}

impl Format {
    /// Both formats, in [`Format::index`] order.
    pub const ALL: [Format; 2] = [Format::Json, Format::MsgPack];

    /// The `Sec-WebSocket-Protocol` value that selects this format.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Format::Json => "wsgate.v1.json",
            Format::MsgPack => "wsgate.v1.msgpack",
        }
    }

    /// Parses a `Sec-WebSocket-Protocol` token (exact, case-sensitive).
    pub fn from_subprotocol(token: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.subprotocol() == token)
    }

    /// Parses a `?format=` query value: `json` or `msgpack`.
    pub fn from_query(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::MsgPack),
            _ => None,
        }
    }

    /// 0 for JSON, 1 for MessagePack: an index into per-format caches.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether messages in this format travel in text frames (else binary frames).
    pub const fn is_text(self) -> bool {
        matches!(self, Format::Json)
    }
}
