//! The seam above Engine.IO: the [`Handler`] an engine is given, which hears a session open,
//! its messages and its close, and answers by queueing frames ([`text`], [`binary`]).

use std::rc::Rc;

use bytes::Bytes;

use crate::node::Ctx;
use crate::session::Session;
use crate::transport::engineio::Handshake;
use crate::transport::ws::frame::{self, OpCode};

/// One Engine.IO message from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A text message (the packet's data, after its `4`).
    Text(&'a str),
    /// A binary message (a WebSocket binary frame, or a polling `b<base64>` decoded).
    Binary(Bytes),
}

/// Why a session ended, as Engine.IO names its close reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client sent a close packet (`1`).
    ClientClose,
    /// The WebSocket carrying the session closed.
    TransportClose,
    /// No pong within `ENGINEIO_PING_TIMEOUT` of a ping.
    PingTimeout,
    /// The client sent what is not an Engine.IO packet.
    ParseError,
    /// The client broke a transport rule: a second concurrent long-poll, a payload or a
    /// message over `ENGINEIO_MAX_PAYLOAD`.
    TransportError,
    /// The server closed the session (shutdown, a slow consumer, a handler's close).
    ServerClose,
}

impl CloseReason {
    /// The reason as Engine.IO's servers spell it.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "transport close",
            CloseReason::TransportClose => "transport close",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::TransportError => "transport error",
            CloseReason::ServerClose => "forced close",
        }
    }
}

/// What serves an Engine.IO session: the application above the transport. The engine calls
/// it, on the session's shard thread, in the order things happen: [`Handler::open`] once,
/// [`Handler::message`] for each message in the order the client sent them, whatever
/// transport carried them, and [`Handler::close`] once.
///
/// A handler answers by queueing frames to the session ([`Ctx::push`], or a fan-out): a text
/// frame whose payload is a whole Engine.IO packet (`4…` for a message: build it with
/// [`text`], or once for many recipients with `frame::build`), or a binary frame of raw
/// message bytes ([`binary`]). The engine carries them over the session's current transport,
/// in order, across an upgrade. To end the session it calls `Session::close`.
///
/// Implemented by an enum of applications (monomorphic: no `dyn` per message); the engine
/// never names what is above it.
pub(crate) trait Handler: Sized + 'static {
    /// A session opened, over either transport; the open packet is queued already.
    fn open(ctx: &Rc<Ctx>, session: &Rc<Session>, handshake: &Handshake) -> Self;
    /// A message from the client.
    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>);
    /// The session is over (its frames are gone with it).
    fn close(self, ctx: &Rc<Ctx>, session: &Rc<Session>, reason: CloseReason);
}

/// A text message as an outbox frame: a WebSocket text frame of `4` and `text`.
pub(crate) fn text(text: &[u8]) -> Bytes {
    packet(b'4', text)
}

/// A binary message as an outbox frame: a WebSocket binary frame of its bytes.
pub(crate) fn binary(bytes: &[u8]) -> Bytes {
    frame::data(OpCode::Binary, bytes)
}

/// A packet of type `digit` with `data`, as an outbox frame (a WebSocket text frame).
pub(crate) fn packet(digit: u8, data: &[u8]) -> Bytes {
    let built = frame::build(OpCode::Text, 1 + data.len(), |out| {
        out.push(digit);
        out.extend_from_slice(data);
        Ok::<(), std::convert::Infallible>(())
    });
    match built {
        Ok(frame) => frame,
        Err(never) => match never {},
    }
}
