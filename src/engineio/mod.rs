//! Engine.IO v4 sessions on a shard: the engine that owns them, serves their long-polling
//! requests, and hands them to a WebSocket on upgrade; it knows nothing of Socket.IO.
//!
//! An Engine.IO session is a wsgate [`Session`] (registered in the shard's hub, so fan-out,
//! the sweep's heartbeat and timeouts, and shutdown treat it as any other) whose socket may
//! change with every request:
//!
//! - **Long-polling** ([`polling`]): the session is attached to the engine's own wake-up list
//!   ([`Ready`]), not to a socket. Idle (no `GET` pending), it costs its session and one slab
//!   entry: no task, no buffer. A pending `GET` is a oneshot sender in its entry; a frame
//!   queued to the session wakes the entry through the session's wake seam, and the engine
//!   answers the `GET` with the queued frames ([`crate::transport::engineio::polling`]). A
//!   `POST` is decoded and its messages handed to the handler in order.
//! - **WebSocket** ([`websocket`]): the runtime's connection machine carries the session and
//!   its handler, and this engine only keeps the `sid` so that long-polling requests for it
//!   are refused.
//! - **Upgrade**: a WebSocket with the `sid` probes (`2probe` → `3probe`, every pending or new
//!   `GET` answered at once, `6` when nothing is queued), then `5` moves the session, its
//!   outbox and its handler to the WebSocket. One outbox, drained by one transport at a time,
//!   in order: nothing is lost, doubled or reordered across the switch.
//!
//! Requests reach the engine of the session's shard (the `sid` names it) through the node's
//! queues; upgraded sockets through the shard's hand-off. Everything here runs on that shard's
//! thread.
//!
//! # The handler seam
//!
//! The engine is generic over its [`Handler`] ([`handler`]): it calls `open`, `message` and
//! `close`, and the handler answers by queueing frames to the session. The runtime gives it an
//! enum of applications (`runtime::engineio::App`): today the Engine.IO [`echo`] (`ECHO=true`).
//! The Socket.IO layer plugs in as a second variant of that enum, with its own `Handler`
//! implementation: it decodes Socket.IO packets from `Message`s and queues `42[...]` text
//! frames (encoded once per wire format), nothing in this module changes.

pub(crate) mod echo;
pub(crate) mod handler;
mod polling;
pub(crate) mod websocket;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use slab::Slab;
use tokio::sync::{mpsc, oneshot};
use wsgate_protocol::engineio::Open;
use wsgate_protocol::CloseCode;

pub(crate) use handler::{CloseReason, Handler, Message};

use crate::node::permit::ConnPermit;
use crate::node::polling::{PollAnswer, PollRequest};
use crate::node::Ctx;
use crate::reactor::Ready;
use crate::session::Session;
use crate::transport::engineio::{Handshake, Local, NodeTag, Sid};
use crate::transport::ws::frame::{self, OpCode};

/// How long a WebSocket that probes an upgrade may take to send `5` (Node's `upgradeTimeout`).
pub(crate) const UPGRADE_TIMEOUT_MS: u64 = 10_000;

/// One shard's Engine.IO sessions.
pub(crate) struct Engine<H> {
    ctx: Rc<Ctx>,
    /// Every session of this shard's engine, by slab key (a polling session's wake token, and
    /// the slot its session id names: no map from ids).
    entries: RefCell<Slab<Entry<H>>>,
    /// Wake-ups of long-polling sessions (frames queued, a close requested).
    ready: Rc<Ready>,
    /// Cluster mode: this node, as its session ids name it (other nodes forward to it).
    node: Option<NodeTag>,
}

/// One session.
struct Entry<H> {
    /// Its id, as this engine keeps it.
    local: Local,
    session: Rc<Session>,
    state: State<H>,
}

/// Which transport carries a session.
enum State<H> {
    /// Long-polling: the engine holds the handler. Boxed: most sessions are (or become)
    /// WebSockets, and every slab entry is as large as its largest state.
    Polling(Box<Polling<H>>),
    /// A WebSocket (from the start, or upgraded): the connection holds the handler.
    WebSocket,
}

/// A long-polling session's transport state.
struct Polling<H> {
    app: H,
    /// The `GET` waiting for packets.
    pending: Option<oneshot::Sender<PollAnswer>>,
    /// A WebSocket with this `sid` is open to upgrade the session (at most one at a time).
    upgrading: bool,
    /// That WebSocket sent `2probe`: `GET`s are answered at once (`6` if nothing is queued).
    probing: bool,
    /// One of the server's connection slots, held while long-polling carries the session.
    _permit: ConnPermit,
}

impl<H: Handler> Engine<H> {
    /// Shard `ctx`'s engine, with no session.
    pub(crate) fn new(ctx: Rc<Ctx>) -> Rc<Engine<H>> {
        let node = ctx.shared.backplane.redis().map(|redis| redis.tag);
        Rc::new(Engine {
            ctx,
            node,
            entries: RefCell::new(Slab::new()),
            ready: Rc::default(),
        })
    }

    /// Serves long-polling requests and wake-ups for the shard's life.
    pub(crate) async fn run(self: Rc<Self>, mut requests: mpsc::UnboundedReceiver<PollRequest>) {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = self.ready.wait() => {}
                request = requests.recv() => match request {
                    Some(request) => {
                        let ctx = &self.ctx;
                        crate::panic::contain(ctx.stats(), ctx.shard, "an Engine.IO request", || {
                            self.handle(request);
                        });
                    }
                    None => return,
                },
            }
            loop {
                self.ready.take_into(&mut batch);
                if batch.is_empty() {
                    break;
                }
                for key in batch.drain(..) {
                    let ctx = &self.ctx;
                    crate::panic::contain(ctx.stats(), ctx.shard, "an Engine.IO wake-up", || {
                        self.drive(key as usize);
                    });
                }
                tokio::task::yield_now().await;
            }
        }
    }

    /// A new session over a WebSocket (no `sid` in the request): its open packet is queued
    /// first. Returns its id and its handler, which the connection keeps; `None` (the session
    /// is to be closed) past the slots a session id can name, which `MAX_CONNECTIONS` keeps
    /// out of reach.
    pub(crate) fn open_websocket(
        &self,
        session: &Rc<Session>,
        handshake: &Handshake,
    ) -> Option<(Sid, H)> {
        session.engineio.set(true);
        let mut entries = self.entries.borrow_mut();
        let slot = entries.vacant_entry();
        let local = Local::new(slot.key())?;
        slot.insert(Entry {
            local,
            session: session.clone(),
            state: State::WebSocket,
        });
        drop(entries);
        let sid = self.sid(local);
        self.ctx.push(session, self.open_frame(sid, &[]));
        let app = H::open(&self.ctx, session, handshake);
        Some((sid, app))
    }

    /// A WebSocket with `sid` opened to upgrade the session: `false` (it is to be closed, as
    /// Node closes it) when there is no long-polling session `sid`, or another WebSocket is
    /// upgrading it already.
    pub(crate) fn begin_upgrade(&self, sid: Sid) -> bool {
        let key = self.key(sid);
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = key.and_then(|k| entries.get_mut(k)) else {
            return false;
        };
        match &mut entry.state {
            State::Polling(polling) if !polling.upgrading && !entry.session.is_closing() => {
                polling.upgrading = true;
                true
            }
            _ => false,
        }
    }

    /// A WebSocket with `sid` sent `2probe`: while it probes, `GET`s are answered at once (the
    /// pending one now). `false` if there is no long-polling session `sid` to upgrade.
    pub(crate) fn probe(&self, sid: Sid) -> bool {
        let key = self.key(sid);
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = key.and_then(|k| entries.get_mut(k)) else {
            return false;
        };
        let State::Polling(polling) = &mut entry.state else {
            return false;
        };
        if entry.session.is_closing() || !polling.upgrading {
            return false;
        }
        polling.probing = true;
        if let Some(respond) = polling.pending.take() {
            let _ = respond.send(PollAnswer::Payload(self.payload(&entry.session, true)));
        }
        true
    }

    /// The probing WebSocket of `sid` went away before `5`: long-polling goes on as before.
    pub(crate) fn probe_over(&self, sid: Sid) {
        let key = self.key(sid);
        let mut entries = self.entries.borrow_mut();
        if let Some(entry) = key.and_then(|k| entries.get_mut(k)) {
            if let State::Polling(polling) = &mut entry.state {
                polling.upgrading = false;
                polling.probing = false;
            }
        }
    }

    /// The probing WebSocket of `sid` sent `5`: the session, its outbox and its handler are
    /// the WebSocket's from now on (a `GET` still pending gets `6`; later ones are refused).
    /// `None` if the session is gone (or not long-polling).
    pub(crate) fn upgrade(&self, sid: Sid) -> Option<(Rc<Session>, H)> {
        let key = self.key(sid)?;
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get_mut(key)?;
        if entry.session.is_closing() || !matches!(entry.state, State::Polling(_)) {
            return None;
        }
        let State::Polling(polling) = std::mem::replace(&mut entry.state, State::WebSocket) else {
            return None;
        };
        let Polling { app, pending, .. } = *polling;
        if let Some(respond) = pending {
            let _ = respond.send(PollAnswer::Payload(noop()));
        }
        // The engine's wake-up goes; the connection attaches its own.
        entry.session.detach();
        Some((entry.session.clone(), app))
    }

    /// The WebSocket carrying `sid` is over: the id is forgotten.
    pub(crate) fn remove(&self, sid: Sid) {
        if let Some(key) = self.key(sid) {
            self.entries.borrow_mut().try_remove(key);
        }
    }

    /// The slab key of `sid`, if it names a session of this engine.
    fn key(&self, sid: Sid) -> Option<usize> {
        let key = sid.local.slot as usize;
        let entries = self.entries.borrow();
        entries
            .get(key)
            .is_some_and(|e| e.local.is(&sid.local))
            .then_some(key)
    }

    /// The id of this shard's (and node's) session `local`.
    fn sid(&self, local: Local) -> Sid {
        Sid::new(self.ctx.shard, self.node, local)
    }

    /// The open packet of session `sid`, as an outbox frame.
    fn open_frame(&self, sid: Sid, upgrades: &[&str]) -> Bytes {
        let cfg = self.ctx.config();
        let text = sid.text();
        let open = Open {
            sid: text.as_str(),
            upgrades,
            ping_interval: cfg.engineio_ping_interval.as_millis() as u64,
            ping_timeout: cfg.engineio_ping_timeout.as_millis() as u64,
            max_payload: cfg.engineio_max_payload as u64,
        };
        let built = frame::build(OpCode::Text, 160, |out| {
            open.encode(out);
            Ok::<(), std::convert::Infallible>(())
        });
        match built {
            Ok(frame) => frame,
            Err(never) => match never {},
        }
    }

    /// The frames queued to `session` as one payload, bounded by `ENGINEIO_MAX_PAYLOAD`; `6`
    /// when none is and `noop_if_empty`.
    fn payload(&self, session: &Session, noop_if_empty: bool) -> Bytes {
        let mut body = Vec::new();
        let max = self.ctx.config().engineio_max_payload;
        crate::transport::engineio::polling::drain(&mut session.outbox(), max, &mut body);
        if body.is_empty() && noop_if_empty {
            return noop();
        }
        Bytes::from(body)
    }
}

/// The noop payload, `6`.
fn noop() -> Bytes {
    Bytes::from_static(b"6")
}

/// Why a session that was asked to close (not by this engine) ended, from its close code.
pub(crate) fn reason_of(code: Option<u16>) -> CloseReason {
    match code {
        None => CloseReason::TransportClose,
        Some(code) if code == CloseCode::HeartbeatTimeout.as_u16() => CloseReason::PingTimeout,
        Some(code) if code == CloseCode::GoingAway.as_u16() => CloseReason::ServerClose,
        Some(code) if code >= 4000 || code == CloseCode::InternalError.as_u16() => {
            CloseReason::ServerClose
        }
        Some(_) => CloseReason::TransportClose,
    }
}
