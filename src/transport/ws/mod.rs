//! WebSocket (RFC 6455): frame headers, the per-connection reader, the wire state of one
//! connection (reading, flushing, the closing handshake), and the hand-off after the upgrade.

pub(crate) mod frame;
pub(crate) mod reader;
pub(crate) mod upgrade;
pub(crate) mod wire;
