//! The Socket.IO protocol's reference server (`SOCKETIO_CONFORMANCE=true`): what the
//! protocol's own test suite (`test-suite/` of socketio/socket.io-protocol) expects at
//! `http://localhost:3000/socket.io/`, written with wsgate's Socket.IO decoder and frame
//! builders. Its README's server, in full:
//!
//! ```js
//! const io = new Server(3000, { pingInterval: 300, pingTimeout: 200, maxPayload: 1000000, connectTimeout: 1000 });
//! io.on("connection", (socket) => {
//!   socket.emit("auth", socket.handshake.auth);
//!   socket.on("message", (...args) => socket.emit("message-back", ...args));
//!   socket.on("message-with-ack", (...args) => { const ack = args.pop(); ack(...args); });
//! });
//! io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));
//! ```
//!
//! The Engine.IO knobs (ENGINEIO_PING_*, ENGINEIO_MAX_PAYLOAD) are the run's
//! (conformance/socketio/run.sh sets them); the rest is fixed here. No auth, no hub: a socket
//! is a namespace name, and nothing reaches it but its own answers.

use std::rc::Rc;
use std::time::Duration;

use wsgate_protocol::socketio::{Event, Packet, Payload};
use wsgate_protocol::{Format, RawData};

use crate::engineio::{CloseReason, Handler, Message};
use crate::node::Ctx;
use crate::session::{Deadline, Session};
use crate::transport::engineio::Handshake;
use crate::transport::socketio as frames;

/// The namespaces a client may connect to; any other gets `Invalid namespace`.
const NAMESPACES: [&str; 2] = ["/", "/custom"];

/// How long a session may go without a `CONNECT` before it is closed (socket.io's
/// `connectTimeout`, as the suite's reference server sets it).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The sweep's period in this mode. Its pings and the connect timeout must be exact to a few
/// milliseconds, as the reference server's timers are: the suite's heartbeat cases answer
/// three pings without a `CONNECT`, the third due 900 ms after the open and the connect
/// timeout at 1 s, and a sweep period of 50 ms (the default for a 200 ms ping timeout) would
/// send each ping up to a period late, and the third after the timeout.
pub(crate) const SWEEP_PERIOD: Duration = Duration::from_millis(5);

/// The reference server for one Engine.IO session.
pub(crate) struct Conformance {
    /// Kept apart from the sockets: the packet it decodes borrows it while it is handled.
    packets: super::Packets,
    sockets: Sockets,
}

/// One Engine.IO session's namespace sockets.
struct Sockets {
    parser: Format,
    /// Whether the client is connected to each of [`NAMESPACES`].
    connected: [bool; NAMESPACES.len()],
}

impl Sockets {
    fn connect(&mut self, ctx: &Ctx, carrier: &Rc<Session>, nsp: &str, auth: Option<Payload<'_>>) {
        let parser = self.parser;
        let Some(at) = NAMESPACES.iter().position(|n| *n == nsp) else {
            let refused = frames::connect_error(parser, nsp, "Invalid namespace", None);
            return push(ctx, carrier, refused);
        };
        self.connected[at] = true;
        carrier.deadline.set(Deadline::None);
        let sid = ctx.wire_id(ctx.next_session_id());
        push(ctx, carrier, frames::connect(parser, nsp, &sid, None));
        // `socket.handshake.auth`: the CONNECT's payload, or an empty object.
        let empty = match parser {
            Format::Json => RawData::trusted(Format::Json, b"{}"),
            Format::MsgPack => RawData::trusted(Format::MsgPack, b"\x80"),
        };
        let auth = auth.and_then(|a| a.data().ok()).unwrap_or(empty);
        push(ctx, carrier, frames::event(parser, nsp, "auth", auth, None));
    }

    fn event(&self, ctx: &Ctx, carrier: &Rc<Session>, event: &Event<'_>) {
        // Only the main namespace has handlers; events for a namespace the client is not
        // connected to are dropped, as socket.io drops them.
        if !self.connected[0] || event.nsp != NAMESPACES[0] {
            return;
        }
        let args = event.args;
        let answer = match (&*event.name, event.id) {
            ("message", _) => frames::event_args(self.parser, event.nsp, "message-back", args),
            ("message-with-ack", Some(id)) => frames::ack_args(self.parser, event.nsp, id, args),
            _ => return,
        };
        // A binary answer carries its attachments.
        push(ctx, carrier, answer);
    }
}

/// Queues `frame` (`None`: it could not be encoded, which was logged).
fn push(ctx: &Ctx, carrier: &Rc<Session>, frame: Option<bytes::Bytes>) {
    if let Some(frame) = frame {
        ctx.push(carrier, frame);
    }
}

impl Handler for Conformance {
    fn open(ctx: &Rc<Ctx>, session: &Rc<Session>, handshake: &Handshake) -> Conformance {
        let at_ms = ctx.now_ms() + CONNECT_TIMEOUT.as_millis() as u64;
        session.deadline.set(Deadline::Connect { at_ms });
        Conformance {
            packets: super::Packets::new(handshake.parser),
            sockets: Sockets {
                parser: handshake.parser,
                connected: [false; NAMESPACES.len()],
            },
        }
    }

    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>) {
        let sockets = &mut self.sockets;
        self.packets
            .decode(ctx, session, &message, |packet| match packet {
                Packet::Connect { nsp, auth } => sockets.connect(ctx, session, nsp, auth),
                Packet::Disconnect { nsp } => {
                    if let Some(at) = NAMESPACES.iter().position(|n| *n == nsp) {
                        sockets.connected[at] = false;
                    }
                }
                Packet::Event(event) => sockets.event(ctx, session, &event),
                // The server asks for no acks; a client's CONNECT_ERROR means nothing.
                Packet::Ack { .. } | Packet::ConnectError { .. } => {}
            });
    }

    fn close(self, _: &Rc<Ctx>, _: &Rc<Session>, _: CloseReason) {}
}
