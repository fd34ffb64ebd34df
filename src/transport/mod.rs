//! Transports: the byte streams under sessions and the wire protocols spoken on them. A
//! transport imports nothing above it: it is handed an outbox to drain and returns what it
//! read.
//!
//! - [`socket`]: the non-blocking TCP or Unix socket the reactor watches;
//! - [`outbound`]: the bounded queue of encoded frames a session fills and a transport drains;
//! - [`ws`]: WebSocket (RFC 6455): frames, the reader, the wire state with its closing
//!   handshake, and taking over a socket after hyper's upgrade;
//! - [`engineio`]: Engine.IO v4's session ids and its long-polling wire, which writes the same
//!   outbox frames as WebSocket without their headers;
//! - [`socketio`]: Socket.IO v5 packets as outbox frames (events, acks, `CONNECT` answers).

pub(crate) mod engineio;
pub(crate) mod outbound;
pub(crate) mod socket;
pub(crate) mod socketio;
pub(crate) mod ws;
