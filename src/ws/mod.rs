//! The WebSocket wire layer: frame headers and the per-connection reader.

pub(crate) mod frame;
pub(crate) mod reader;
