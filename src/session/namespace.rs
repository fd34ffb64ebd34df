//! A Socket.IO namespace socket as a session: what makes a session one (its carrier, its
//! namespace, its parser) and how a server message becomes its Socket.IO packet. Such a
//! session is a wsgate session like any other in the hub (its user, its rooms, fan-out to
//! it); it has no socket and no outbox of its own: its frames go into the Engine.IO session
//! that carries it, in order with that session's other frames.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{encode_server_message, Format, RawData, ServerMessage};

use super::Session;
use crate::transport::socketio;

/// Where the answer of the command a namespace socket is running goes.
#[derive(Clone, Debug, Default)]
pub(crate) enum Route {
    /// Nowhere: the client asked for none (errors still go to the error event).
    #[default]
    None,
    /// The client's ack callback of event `id`.
    Ack(u64),
    /// An event to the client (an event map's `reply`).
    Event(Arc<str>),
}

/// What makes a session a Socket.IO namespace socket.
pub(crate) struct Namespaced {
    /// The Engine.IO session that carries it: every frame goes into its outbox.
    pub(crate) carrier: Rc<Session>,
    /// The namespace (`/`, `/chat`).
    pub(crate) nsp: Arc<str>,
    /// The namespace's place in an event's cache of Socket.IO frames (`OutEvent`).
    pub(crate) slot: usize,
    /// `Json`: the default parser; `MsgPack`: socket.io-msgpack-parser.
    pub(crate) parser: Format,
    /// The event errors go to when no ack callback waits for them.
    pub(crate) error_event: Arc<str>,
    /// Where the answer of the command being run goes (commands run one at a time).
    pub(crate) route: RefCell<Route>,
}

impl Namespaced {
    /// `msg` (a reply, an error, an event for this socket alone) as this socket's packet:
    /// a reply or an error to the waiting ack callback (the native message is its one
    /// argument) or the `reply` event; an error no ack waits for to the error event; an event
    /// as itself. `None` for what a Socket.IO client is not sent (`welcome`: the `CONNECT`
    /// answer stands for it; a reply nobody waits for).
    pub(crate) fn packet(&self, msg: &ServerMessage<'_>) -> Option<Bytes> {
        let (parser, nsp) = (self.parser, &*self.nsp);
        if let ServerMessage::Event { event, data, .. } = msg {
            return socketio::event(parser, nsp, event, *data, None);
        }
        if matches!(msg, ServerMessage::Welcome(_)) {
            return None;
        }
        let mut native = Vec::with_capacity(96);
        encode_server_message(parser, msg, &mut native)
            .inspect_err(|e| tracing::error!(error = %e, "cannot encode a server message"))
            .ok()?;
        let native = RawData::trusted(parser, &native);
        let is_error = matches!(msg, ServerMessage::Error { .. });
        match &*self.route.borrow() {
            Route::Ack(id) => socketio::ack(parser, nsp, *id, native),
            Route::Event(name) if !is_error => socketio::event(parser, nsp, name, native, None),
            _ if is_error => socketio::event(parser, nsp, &self.error_event, native, None),
            _ => None,
        }
    }
}
