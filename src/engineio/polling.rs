//! Long-polling on the engine: the handshake, the long-poll `GET` (answered when frames are
//! queued or the heartbeat pings), the `POST` of packets, the probe check of an upgrade, and
//! the end of a session, with the refusals the Node server gives.

use std::rc::Rc;

use bytes::Bytes;
use tokio::sync::oneshot;
use wsgate_protocol::engineio::{decode_payload, HandshakeError, Packet, SEPARATOR};
use wsgate_protocol::{CloseCode, Format};

use super::{reason_of, CloseReason, Engine, Entry, Handler, Message, Polling, State};
use crate::node::permit::ConnPermit;
use crate::node::polling::{PollAnswer, PollKind, PollRequest};
use crate::reactor::Wake;
use crate::session::Session;
use crate::stats::ShardStats;
use crate::transport::engineio::{Handshake, Local, Sid};
use crate::transport::outbound::{CloseRequest, Queued};

/// What a `POST`'s packets asked for, once they are all handled.
enum Outcome {
    /// Nothing more: answer `ok`.
    Ok,
    /// The client closed the session: `ok`, then the session ends.
    Closed,
    /// A packet broke the protocol: `ok` still (as Node answers), and the session ends.
    Broken(CloseReason),
}

impl<H: Handler> Engine<H> {
    /// Serves one request.
    pub(super) fn handle(&self, request: PollRequest) {
        let PollRequest { kind, respond } = request;
        match kind {
            PollKind::Open { handshake, permit } => self.open_polling(&handshake, permit, respond),
            PollKind::Get(sid) => self.get(sid, respond),
            PollKind::Post(sid, body) => self.post(sid, body, respond),
            // Any session may be asked for: the WebSocket of one that cannot be upgraded (it is
            // upgraded already, or being upgraded) is accepted and closed, as Node does.
            PollKind::Probe(sid) => {
                let answer = match self.live_key(sid) {
                    Ok(_) | Err(HandshakeError::BadRequest) => PollAnswer::Ok,
                    Err(refused) => PollAnswer::Refused(refused),
                };
                let _ = respond.send(answer);
            }
            PollKind::Abandoned(sid) => self.abandoned(sid),
        }
    }

    /// The client of `sid`'s long-poll went away before its answer: a session whose pending
    /// `GET` is that one (its answer can no longer be sent) ends with "transport error". One
    /// answered meanwhile, or whose next `GET` already waits, goes on.
    fn abandoned(&self, sid: Sid) {
        let Ok(key) = self.polling_key(sid) else {
            return;
        };
        let gone = self.with_polling(key, |_, polling| {
            polling
                .pending
                .as_ref()
                .is_some_and(oneshot::Sender::is_closed)
        });
        if gone == Some(true) {
            self.finish(key, CloseReason::TransportError);
        }
    }

    /// The handshake: a new session, answered with its open packet (and whatever its handler
    /// queued on opening).
    fn open_polling(
        &self,
        handshake: &Handshake,
        permit: ConnPermit,
        respond: oneshot::Sender<PollAnswer>,
    ) {
        let ctx = &self.ctx;
        if ctx.shared.shutdown.is_fired() {
            let _ = respond.send(PollAnswer::Refused(HandshakeError::Forbidden));
            return;
        }
        let session = Rc::new(Session::new(
            ctx.next_session_id(),
            Format::Json,
            ctx.now_ms(),
        ));
        session.engineio.set(true);
        let key = self.entries.borrow().vacant_key();
        let (Some(local), Ok(token)) = (Local::new(key), u32::try_from(key)) else {
            let _ = respond.send(PollAnswer::Refused(HandshakeError::Forbidden));
            return;
        };
        let sid = self.sid(local);
        session.attach(Wake::new(self.ready.clone(), token));
        ctx.hub.register(&session);
        ctx.push(&session, self.open_frame(sid, &["websocket"]));
        let app = H::open(ctx, &session, handshake);
        let _ = respond.send(PollAnswer::Payload(self.payload(&session, false)));
        let inserted = self.entries.borrow_mut().insert(Entry {
            local,
            session,
            state: State::Polling(Box::new(Polling {
                app,
                pending: None,
                upgrading: false,
                probing: false,
                _permit: permit,
            })),
        });
        debug_assert_eq!(inserted, key);
    }

    /// [`Engine::polling_key`], and a session whose ping went unanswered past
    /// `ENGINEIO_PING_TIMEOUT` ended now (the sweep would end it at its next pass): its
    /// deadline is the client's, to the millisecond.
    fn live_key(&self, sid: Sid) -> Result<usize, HandshakeError> {
        let key = self.polling_key(sid)?;
        let now = self.ctx.now_ms();
        let timeout = self.ctx.config().engineio_ping_timeout.as_millis() as u64;
        let overdue = self
            .entries
            .borrow()
            .get(key)
            .is_some_and(|e| e.session.ping_overdue(now, timeout));
        if overdue {
            // Counted as the sweep would have counted it.
            crate::stats::ShardStats::inc(&self.ctx.stats().heartbeat_timeouts);
            self.finish(key, CloseReason::PingTimeout);
            return Err(HandshakeError::SessionIdUnknown);
        }
        Ok(key)
    }

    /// The slab key of long-polling session `sid`, or the refusal of a request for it.
    fn polling_key(&self, sid: Sid) -> Result<usize, HandshakeError> {
        let key = self.key(sid).ok_or(HandshakeError::SessionIdUnknown)?;
        match self.entries.borrow().get(key).map(|e| &e.state) {
            Some(State::Polling(_)) => Ok(key),
            // Carried by a WebSocket: the transport does not match the session's.
            Some(State::WebSocket) => Err(HandshakeError::BadRequest),
            None => Err(HandshakeError::SessionIdUnknown),
        }
    }

    /// A long-poll: answered now if frames are queued (or an upgrade is probing), else when
    /// one is. A second one while one waits is refused and ends the session (as Node does).
    fn get(&self, sid: Sid, respond: oneshot::Sender<PollAnswer>) {
        let key = match self.live_key(sid) {
            Ok(key) => key,
            Err(refused) => return drop(respond.send(PollAnswer::Refused(refused))),
        };
        let overlap = self.with_polling(key, |session, polling| {
            if polling.pending.as_ref().is_some_and(|p| !p.is_closed()) {
                return Some(respond);
            }
            if !session.is_closing() && (session.outbox().has_output() || polling.probing) {
                let _ = respond.send(PollAnswer::Payload(self.payload(session, true)));
            } else {
                // A closing session is ended below, answering it.
                polling.pending = Some(respond);
            }
            None
        });
        match overlap {
            Some(Some(second)) => {
                let _ = second.send(PollAnswer::Overlap);
                self.finish(key, CloseReason::TransportError);
            }
            Some(None) => self.end_if_closing(key),
            None => {}
        }
    }

    /// Runs `f` on long-polling session `key`, if it is one.
    fn with_polling<R>(
        &self,
        key: usize,
        f: impl FnOnce(&Rc<Session>, &mut Polling<H>) -> R,
    ) -> Option<R> {
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(key) {
            Some(Entry {
                session,
                state: State::Polling(polling),
                ..
            }) => Some(f(session, polling)),
            _ => None,
        }
    }

    /// Ends long-polling session `key` if a close was requested (by the sweep, a slow
    /// consumer, shutdown).
    fn end_if_closing(&self, key: usize) {
        let code = self
            .entries
            .borrow()
            .get(key)
            .filter(|e| matches!(e.state, State::Polling(_)) && e.session.is_closing())
            .map(|e| e.session.close_code());
        if let Some(code) = code {
            self.finish(key, reason_of(code));
        }
    }

    /// A `POST`: its packets, in order, to the handler, and `ok`; the session ends at the
    /// first packet that breaks the protocol (413 and the end for a body over
    /// `ENGINEIO_MAX_PAYLOAD`).
    fn post(&self, sid: Sid, body: Option<Bytes>, respond: oneshot::Sender<PollAnswer>) {
        let key = match self.live_key(sid) {
            Ok(key) => key,
            Err(refused) => return drop(respond.send(PollAnswer::Refused(refused))),
        };
        let Some(body) = body else {
            let _ = respond.send(PollAnswer::TooLarge);
            return self.finish(key, CloseReason::TransportError);
        };
        let outcome = self.with_polling(key, |session, polling| {
            self.packets(session, &mut polling.app, &body)
        });
        let Some(outcome) = outcome else {
            return;
        };
        match outcome {
            Outcome::Ok => drop(respond.send(PollAnswer::Ok)),
            Outcome::Closed => {
                let _ = respond.send(PollAnswer::Ok);
                self.finish(key, CloseReason::ClientClose);
            }
            Outcome::Broken(reason) => {
                let _ = respond.send(PollAnswer::Ok);
                self.finish(key, reason);
            }
        }
    }

    /// Handles the packets of a `POST` body, until one ends the session.
    fn packets(&self, session: &Rc<Session>, app: &mut H, body: &[u8]) -> Outcome {
        for packet in decode_payload(body) {
            if matches!(packet, Ok(Packet::Text(_) | Packet::Binary(_))) {
                ShardStats::inc(&self.ctx.stats().messages_in);
            }
            match packet {
                Ok(Packet::Text(text)) => app.message(&self.ctx, session, Message::Text(text)),
                Ok(Packet::Binary(bytes)) => {
                    let message = Message::Binary(Bytes::from(bytes));
                    app.message(&self.ctx, session, message);
                }
                Ok(Packet::Pong(false)) => session.last_seen_ms.set(self.ctx.now_ms()),
                Ok(Packet::Noop) => {}
                Ok(Packet::Close) => return Outcome::Closed,
                // A ping from the client (v4 heartbeats go the other way), a probe, an upgrade
                // or an open over long-polling.
                Ok(_) => return Outcome::Broken(CloseReason::TransportError),
                Err(_) => return Outcome::Broken(CloseReason::ParseError),
            }
            if session.is_closing() {
                break;
            }
        }
        Outcome::Ok
    }

    /// A long-polling session was woken: a frame was queued (answer the pending `GET`), or a
    /// close was requested (end it).
    pub(super) fn drive(&self, key: usize) {
        self.with_polling(key, |session, polling| {
            session.unmark();
            if session.is_closing() {
                return;
            }
            let waiting = polling.pending.take_if(|p| !p.is_closed());
            if let Some(respond) = waiting {
                if session.outbox().has_output() || polling.probing {
                    let _ = respond.send(PollAnswer::Payload(self.payload(session, true)));
                } else {
                    polling.pending = Some(respond);
                }
            }
        });
        self.end_if_closing(key);
    }

    /// Ends long-polling session `key`: the pending `GET` gets what is queued and the close
    /// packet (`6` alone when the client closed), the hub forgets the session, the handler
    /// hears the close.
    fn finish(&self, key: usize, reason: CloseReason) {
        let Some(entry) = self.entries.borrow_mut().try_remove(key) else {
            return;
        };
        let State::Polling(polling) = entry.state else {
            return;
        };
        let session = entry.session;
        if let Some(respond) = polling.pending {
            let payload = if reason == CloseReason::ClientClose {
                Bytes::from_static(b"6")
            } else {
                let mut body = self.payload(&session, false).to_vec();
                if !body.is_empty() {
                    body.push(SEPARATOR);
                }
                body.push(b'1');
                Bytes::from(body)
            };
            let _ = respond.send(PollAnswer::Payload(payload));
        }
        let close = CloseRequest::with_reason(CloseCode::Normal.as_u16(), reason.as_str());
        session.close(close, Queued::Discard);
        session.detach();
        self.ctx.hub.unregister(&session);
        polling.app.close(&self.ctx, &session, reason);
    }
}
