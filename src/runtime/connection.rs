//! One connection as the reactor drives it: a WebSocket wire ([`Wire`]) carrying a session,
//! in one of three roles: the gateway (commands), `/echo`, or Engine.IO (`crate::engineio`). It reads items, hands commands to
//! `crate::commands`, writes the session's outbox, and closes with the right code. It holds no
//! task and no buffer while idle.

use std::any::Any;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use wsgate_protocol::{CloseCode, ErrorCode, Format, ProtocolError};

use super::engineio::App as EioApp;
use crate::commands::{self, Client};
use crate::engineio::websocket::WebSocket;
use crate::engineio::{Engine, UPGRADE_TIMEOUT_MS};
use crate::node::permit::ConnPermit;
use crate::node::{Ctx, Handoff, Role};
use crate::reactor::{Machine, Readiness, Step, Wake};
use crate::session::{Deadline, Session};
use crate::stats::ShardStats;
use crate::transport::outbound::{CloseRequest, Queued};
use crate::transport::socket::Socket;
use crate::transport::ws::frame::{self, OpCode};
use crate::transport::ws::reader::Incoming;
use crate::transport::ws::wire::{Closing, Wire};

/// Most reads in one turn: a client that keeps its socket full waits its turn behind the
/// shard's other connections.
const READS_PER_TURN: u32 = 16;

/// What the connection serves.
enum App {
    /// Commands, from a client of the gateway.
    Gateway(Client),
    /// Every data message back unchanged.
    Echo,
    /// An Engine.IO session (or, until its `5`, the probe of a long-polling session's upgrade).
    EngineIo(WebSocket<EioApp>),
}

/// A connection's state.
pub(crate) struct Connection {
    ctx: Rc<Ctx>,
    session: Rc<Session>,
    wire: Wire,
    app: App,
    /// One of the server's connection slots.
    _permit: ConnPermit,
}

impl Connection {
    /// Sets the handed-off socket up in its role, woken through `wake`; an Engine.IO one with
    /// the shard's `engine`.
    pub(crate) fn new(
        ctx: Rc<Ctx>,
        engine: &Rc<Engine<EioApp>>,
        handoff: Handoff,
        wake: Wake,
    ) -> Connection {
        let Handoff {
            socket,
            already_read,
            role,
            permit,
        } = handoff;
        let now = ctx.now_ms();
        // An echo connection never speaks the gateway's formats; JSON only fills the field.
        let format = match &role {
            Role::Gateway { format, .. } => *format,
            Role::Echo | Role::EngineIo { .. } => Format::Json,
        };
        let session = Rc::new(Session::new(ctx.next_session_id(), format, now));
        session.attach(wake);
        ctx.hub.register(&session);
        if ctx.shared.shutdown.is_fired() {
            session.close(CloseRequest::new(CloseCode::GoingAway), Queued::Flush);
        }
        let mut max_message = ctx.config().max_message_bytes;
        let app = match role {
            Role::Gateway { identity, .. } => App::Gateway(Client::new(&ctx, &session, identity)),
            Role::Echo => App::Echo,
            Role::EngineIo { sid, handshake } => {
                max_message = ctx.config().engineio_max_payload;
                App::EngineIo(match sid {
                    None => WebSocket::open(engine, &session, &handshake),
                    Some(sid) => {
                        // A probe that does not upgrade in time is closed by the sweep.
                        let at_ms = now + UPGRADE_TIMEOUT_MS;
                        session.deadline.set(Deadline::Auth { at_ms });
                        WebSocket::probe(engine, &session, sid)
                    }
                })
            }
        };
        Connection {
            wire: Wire::new(socket, already_read, max_message),
            session,
            app,
            _permit: permit,
            ctx,
        }
    }

    fn advance(&mut self, io: &mut Readiness) -> io::Result<Step<Bytes>> {
        let mut reads = 0;
        loop {
            // Items are handled synchronously; a command is handed back to run.
            if let Some(payload) = self.next_command() {
                return Ok(Step::Run(payload));
            }
            self.wire.flush(&mut self.session.outbox(), io)?;
            if self.closing() {
                return Ok(Step::Done(Ok(())));
            }
            if !io.readable {
                return Ok(Step::Wait);
            }
            if reads == READS_PER_TURN {
                // More to read: queue a turn behind the shard's other connections.
                self.session.wake();
                return Ok(Step::Wait);
            }
            reads += 1;
            if !self.wire.read(io)? {
                return Ok(Step::Done(Ok(())));
            }
        }
    }

    /// Moves the closing handshake on; `true` once it is over (or abandoned at its deadline).
    fn closing(&mut self) -> bool {
        let (ctx, flush_grace) = (&self.ctx, self.ctx.config().heartbeat_timeout);
        let progress = self
            .wire
            .closing(&self.session.outbox(), || ctx.now_ms(), flush_grace);
        match progress {
            Closing::Open => false,
            Closing::Over => true,
            Closing::Waiting { arm } => {
                if let Some(after) = arm {
                    self.wake_after(after);
                }
                false
            }
        }
    }

    /// A timer wakes the connection `after` from now, to look at its closing deadline.
    fn wake_after(&self, after: Duration) {
        let session = Rc::downgrade(&self.session);
        tokio::task::spawn_local(async move {
            // One millisecond more: the shard clock counts whole milliseconds.
            tokio::time::sleep(after + Duration::from_millis(1)).await;
            if let Some(session) = session.upgrade() {
                session.wake();
            }
        });
    }

    /// Handles buffered items until one is a command to run (returned) or none is left.
    fn next_command(&mut self) -> Option<Bytes> {
        loop {
            match self.wire.next() {
                Ok(Some(item)) => {
                    if let Some(command) = self.on_incoming(item) {
                        return Some(command);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(conn = self.session.id, error = %e, "closing on a framing error");
                    let close = CloseRequest::with_reason(e.close_code(), &e.to_string());
                    self.session.close(close, Queued::Flush);
                }
            }
        }
    }

    /// Handles one item; a data message that is a command is returned, to be run.
    fn on_incoming(&mut self, item: Incoming) -> Option<Bytes> {
        let (ctx, session) = (&self.ctx, &self.session);
        if !session.engineio.get() {
            // Any frame proves liveness; an Engine.IO session's heartbeat is its pongs only.
            session.last_seen_ms.set(ctx.now_ms());
        }
        match item {
            Incoming::Message { text, payload } => {
                ShardStats::inc(&ctx.stats().messages_in);
                if session.is_closing() {
                    return None; // after a close, data is ignored
                }
                if let App::EngineIo(eio) = &mut self.app {
                    if let Some(polling) = eio.on_message(ctx, session, text, payload) {
                        self.carry(polling);
                    }
                    return None;
                }
                if matches!(self.app, App::Echo) {
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    ctx.push(session, frame::data(opcode, &payload));
                    return None;
                }
                if text != session.format.is_text() {
                    let msg = if text {
                        "this connection speaks MessagePack: send binary frames"
                    } else {
                        "this connection speaks JSON: send text frames"
                    };
                    commands::send_error(ctx, session, None, &ProtocolError::bad_request(msg));
                    return None;
                }
                return Some(payload);
            }
            Incoming::Ping(payload) => ctx.push(session, frame::control(OpCode::Pong, &payload)),
            Incoming::Pong => {}
            Incoming::Close(code) => {
                let close = CloseRequest::with_reason(code.unwrap_or(1000), "");
                session.close(close, Queued::Discard);
            }
            Incoming::TooLarge if matches!(self.app, App::EngineIo(_)) => {
                if let App::EngineIo(eio) = &mut self.app {
                    eio.too_large(session);
                }
            }
            Incoming::TooLarge if matches!(self.app, App::Echo) => {
                // An echo peer cannot send the message back, and has no error message to
                // send: close with 1009 (message too big, RFC 6455 §7.4.1).
                session.close(CloseRequest::new(CloseCode::MessageTooBig), Queued::Flush);
            }
            Incoming::TooLarge => {
                // The error, then close 1009: reading and discarding oversized messages would
                // let one client make the server read without end.
                let max = ctx.config().max_message_bytes;
                let msg = format!("message larger than {max} bytes: closing");
                let e = ProtocolError::new(ErrorCode::FrameTooLarge, msg);
                commands::send_error(ctx, session, None, &e);
                session.close(CloseRequest::new(CloseCode::MessageTooBig), Queued::Flush);
            }
        }
        None
    }

    /// The upgrade's `5`: from now on the connection carries the long-polling session
    /// `polling` (its outbox, in order, and its place in the hub) instead of the probe's own.
    fn carry(&mut self, polling: Rc<Session>) {
        let probe = std::mem::replace(&mut self.session, polling);
        if let Some(wake) = probe.take_wake() {
            self.session.attach(wake);
        }
        self.ctx.hub.unregister(&probe);
        // What the long-polling side left queued goes out next.
        self.session.wake();
    }
}

impl Machine for Connection {
    type Work = Bytes;
    type Socket = Socket;

    fn socket(&mut self) -> &mut Socket {
        self.wire.socket()
    }

    /// One turn: handles what is buffered, writes what the socket takes, moves the closing
    /// handshake on, and reads while the socket has bytes, until it must wait.
    fn step(&mut self, io: &mut Readiness) -> Step<Bytes> {
        self.advance(io).unwrap_or_else(|e| Step::Done(Err(e)))
    }

    /// Runs a command (one that waits, for room in a full inbox or for its room stream's
    /// turn, finishes in a task of its own; see `crate::reactor`).
    async fn run(&mut self, payload: Bytes) {
        let Connection {
            ctx, session, app, ..
        } = self;
        if let App::Gateway(client) = app {
            commands::dispatch(ctx, session, client, payload).await;
        }
    }

    fn unmark(&self) {
        self.session.unmark();
    }

    /// A panic while serving the connection was caught: it is closed with 1011, and the shard
    /// and every other connection keep going.
    fn on_panic(&mut self, panic: &(dyn Any + Send)) {
        ShardStats::inc(&self.ctx.stats().panics);
        tracing::error!(
            conn = self.session.id,
            panic = crate::panic::message(panic),
            "panic while serving a connection; closing it with 1011"
        );
        let close = CloseRequest::new(CloseCode::InternalError);
        self.session.close(close, Queued::Discard);
        let mut io = Readiness {
            readable: false,
            writable: true,
        };
        let _ = self.wire.flush(&mut self.session.outbox(), &mut io);
    }

    /// Leaves every room and the hub's maps; the socket closes and the slots are released as
    /// the connection drops.
    fn finish(self) {
        self.session.detach();
        self.ctx.hub.unregister(&self.session);
        if let App::EngineIo(eio) = self.app {
            eio.finish(&self.ctx, &self.session);
        }
    }
}
