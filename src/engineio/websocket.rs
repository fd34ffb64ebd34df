//! Engine.IO over a WebSocket: what the connection machine hands over of each data message
//! (a packet in a text frame, a binary message in a binary frame), the probe and the switch of
//! an upgrade, and the end of the session.

use std::rc::Rc;

use bytes::Bytes;
use wsgate_protocol::engineio::{decode_packet, Packet};
use wsgate_protocol::CloseCode;

use super::handler::packet;
use super::{reason_of, CloseReason, Engine, Handler, Message};
use crate::node::Ctx;
use crate::session::Session;
use crate::transport::engineio::{Handshake, Sid};
use crate::transport::outbound::{CloseRequest, Queued};

/// The WebSocket close code of a session ended for a packet that is not Engine.IO's.
const PARSE_ERROR_CLOSE: u16 = 1002;

/// An Engine.IO session on a WebSocket connection, or the probe of an upgrade.
pub(crate) struct WebSocket<H> {
    engine: Rc<Engine<H>>,
    /// `None` for a session the engine had no slot for (closed at once).
    sid: Option<Sid>,
    /// The handler; `None` while the connection probes (long-polling still carries the
    /// session, and holds it).
    app: Option<H>,
    /// Why the session ended, when the engine ended it itself.
    reason: Option<CloseReason>,
    /// This connection is the one upgrading long-polling session `sid` (not one refused
    /// because another is, or the session is upgraded already).
    upgrading: bool,
}

impl<H: Handler> WebSocket<H> {
    /// A new session carried by this connection's `session` (its open packet queued first).
    pub(crate) fn open(
        engine: &Rc<Engine<H>>,
        session: &Rc<Session>,
        handshake: &Handshake,
    ) -> WebSocket<H> {
        let opened = engine.open_websocket(session, handshake);
        if opened.is_none() {
            // 1013: try again later.
            session.close(CloseRequest::with_reason(1013, ""), Queued::Discard);
        }
        let (sid, app) = opened.unzip();
        WebSocket {
            engine: engine.clone(),
            sid,
            app,
            reason: None,
            upgrading: false,
        }
    }

    /// The probe of an upgrade of long-polling session `sid`: until `5`, the connection's own
    /// `session` carries only the probe's answer. Closed at once (as Node does) when there is
    /// no such session to upgrade, or another WebSocket is upgrading it.
    pub(crate) fn probe(engine: &Rc<Engine<H>>, session: &Session, sid: Sid) -> WebSocket<H> {
        let upgrading = engine.begin_upgrade(sid);
        if !upgrading {
            session.close(CloseRequest::with_reason(1000, ""), Queued::Discard);
        }
        WebSocket {
            engine: engine.clone(),
            sid: Some(sid),
            app: None,
            reason: None,
            upgrading,
        }
    }

    /// Handles one data message from the client; returns the long-polling session once `5`
    /// made this connection its transport (the connection carries it from now on).
    pub(crate) fn on_message(
        &mut self,
        ctx: &Rc<Ctx>,
        session: &Rc<Session>,
        text: bool,
        payload: Bytes,
    ) -> Option<Rc<Session>> {
        let Some(app) = &mut self.app else {
            return self.on_probe_message(ctx, session, text, &payload);
        };
        if !text {
            app.message(ctx, session, Message::Binary(payload));
            return None;
        }
        // The frame reader let only valid UTF-8 through as text.
        let text = std::str::from_utf8(&payload).unwrap_or("");
        match decode_packet(text, false) {
            Ok(Packet::Text(text)) => app.message(ctx, session, Message::Text(text)),
            Ok(Packet::Pong(false)) => session.last_seen_ms.set(ctx.now_ms()),
            Ok(Packet::Noop) => {}
            Ok(Packet::Close) => {
                self.reason = Some(CloseReason::ClientClose);
                session.close(CloseRequest::with_reason(1000, ""), Queued::Discard);
            }
            Ok(_) => self.fail(session, CloseReason::TransportError),
            Err(_) => self.fail(session, CloseReason::ParseError),
        }
        None
    }

    /// A message while probing: `2probe` is answered `3probe`, `5` switches; anything else
    /// ends the probe (as Node's `maybeUpgrade` does).
    fn on_probe_message(
        &mut self,
        ctx: &Rc<Ctx>,
        session: &Rc<Session>,
        text: bool,
        payload: &[u8],
    ) -> Option<Rc<Session>> {
        let packet = std::str::from_utf8(payload)
            .ok()
            .filter(|_| text)
            .and_then(|t| decode_packet(t, false).ok());
        match packet {
            Some(Packet::Ping(true))
                if self.upgrading && self.sid.is_some_and(|sid| self.engine.probe(sid)) =>
            {
                ctx.push(session, packet_frame_probe());
                None
            }
            Some(Packet::Upgrade) if self.upgrading => {
                match self.sid.and_then(|s| self.engine.upgrade(s)) {
                    Some((polling, app)) => {
                        self.app = Some(app);
                        Some(polling)
                    }
                    None => {
                        session.close(CloseRequest::with_reason(1000, ""), Queued::Discard);
                        None
                    }
                }
            }
            _ => {
                session.close(
                    CloseRequest::with_reason(PARSE_ERROR_CLOSE, "upgrade failed"),
                    Queued::Discard,
                );
                None
            }
        }
    }

    /// A message over `ENGINEIO_MAX_PAYLOAD`: the session ends with 1009.
    pub(crate) fn too_large(&mut self, session: &Session) {
        self.reason = Some(CloseReason::TransportError);
        session.close(CloseRequest::new(CloseCode::MessageTooBig), Queued::Discard);
    }

    /// The client broke the protocol: the session ends.
    fn fail(&mut self, session: &Session, reason: CloseReason) {
        self.reason = Some(reason);
        session.close(
            CloseRequest::with_reason(PARSE_ERROR_CLOSE, reason.as_str()),
            Queued::Discard,
        );
    }

    /// The connection is over: the session ends with it (a probe that never switched leaves
    /// the long-polling session as it was).
    pub(crate) fn finish(self, ctx: &Rc<Ctx>, session: &Rc<Session>) {
        let Some(app) = self.app else {
            if let Some(sid) = self.sid.filter(|_| self.upgrading) {
                self.engine.probe_over(sid);
            }
            return;
        };
        if let Some(sid) = self.sid {
            self.engine.remove(sid);
        }
        let reason = self
            .reason
            .unwrap_or_else(|| reason_of(session.close_code()));
        app.close(ctx, session, reason);
    }
}

/// The answer to the probe, `3probe`.
fn packet_frame_probe() -> Bytes {
    packet(b'3', b"probe")
}
