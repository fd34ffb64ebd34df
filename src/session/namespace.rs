//! A Socket.IO namespace socket as a session: what makes a session one (its carrier, its
//! namespace, its parser) and how a server message becomes its Socket.IO packet. Such a
//! session is a wsgate session like any other in the hub (its user, its rooms, fan-out to
//! it); it has no socket and no outbox of its own: its frames go into the Engine.IO session
//! that carries it, in order with that session's other frames.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{
    encode_server_message, Format, ProtocolError, RawData, ServerMessage, MAX_BINARIES,
};

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
    /// With connection state recovery (`SOCKETIO_RECOVERY`): what it was sent (made with
    /// its first room event: a quiet socket holds none).
    pub(crate) sent: Option<RefCell<Option<Box<Sent>>>>,
}

/// Room events a socket with recovery remembers having been queued, so that a client that
/// reconnects with the offset of the last event it received resumes each room exactly after
/// what it received: the last [`SENT_RING`] in the order they were queued, and each room's
/// last.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// (room, offset), oldest first.
    pub(crate) ring: VecDeque<(Arc<str>, u64)>,
    /// Each room's last offset queued.
    pub(crate) last: Vec<(Arc<str>, u64)>,
}

/// Room events a socket remembers in order (a client that lost more than these in flight
/// resumes with `recovered: false`).
pub(crate) const SENT_RING: usize = 64;

impl Sent {
    /// Room `room`'s event at `offset` was queued.
    pub(crate) fn record(&mut self, room: &Arc<str>, offset: u64) {
        if self.ring.len() == SENT_RING {
            self.ring.pop_front();
        }
        self.ring.push_back((room.clone(), offset));
        match self.last.iter_mut().find(|(r, _)| r == room) {
            Some((_, last)) => *last = offset,
            None => self.last.push((room.clone(), offset)),
        }
    }

    /// Where each of `rooms` resumes (the offset after which to replay), for a client whose
    /// last event received was `last_seen` (`offset.tag`, see [`recovery_offset`]); `None`
    /// when that event is not among those remembered. A room with no event queued resumes
    /// at `positions`' offset (its stream's at the disconnect).
    pub(crate) fn resume_points(
        &self,
        last_seen: &str,
        positions: &[(Arc<str>, u64)],
    ) -> Option<Vec<(Arc<str>, u64)>> {
        let (offset, tag) = last_seen.split_once('.')?;
        let offset: u64 = offset.parse().ok()?;
        let k = self
            .ring
            .iter()
            .rposition(|(r, o)| *o == offset && room_tag(r) == tag)?;
        let after = self.ring.iter().skip(k + 1);
        Some(
            positions
                .iter()
                .map(|(room, at_disconnect)| {
                    // The first event of the room queued after the last one received was
                    // lost; without one, everything queued for the room was received.
                    let lost = after.clone().find(|(r, _)| r == room).map(|(_, o)| o - 1);
                    let queued = self.last.iter().find(|(r, _)| r == room).map(|(_, o)| *o);
                    (room.clone(), lost.or(queued).unwrap_or(*at_disconnect))
                })
                .collect(),
        )
    }
}

/// The recovery offset a room event carries as its last argument: `<offset>.<tag>`, the tag
/// naming its room (FNV-1a of the name, 8 hex digits) so that the offset alone names a
/// position in one of the socket's rooms.
pub(crate) fn recovery_offset(room: &str, offset: u64) -> String {
    format!("{offset}.{}", room_tag(room))
}

fn room_tag(room: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in room.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
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
        let is_error = matches!(msg, ServerMessage::Error { .. });
        let packet = self.answer(&RawData::trusted(parser, &native), is_error);
        let awaited = !matches!(&*self.route.borrow(), Route::None);
        if packet.is_some() || is_error || !awaited {
            return packet;
        }
        // An answer one packet cannot carry: more binary values (attachments) than
        // socket.io-client takes in one, gathered from many events (a history). Its error
        // goes where it would have gone.
        let e = ProtocolError::bad_request(format!(
            "the answer holds more than {MAX_BINARIES} binary values, more than one Socket.IO packet carries: ask for fewer (limit)"
        ));
        let error = ServerMessage::Error {
            id: None,
            code: e.code,
            message: &e.message,
        };
        let mut native = Vec::with_capacity(128);
        encode_server_message(parser, &error, &mut native).ok()?;
        self.answer(&RawData::trusted(parser, &native), true)
    }

    /// The packet of a native answer (`data`, in the socket's parser's format) by the route.
    fn answer(&self, data: &RawData<'_>, is_error: bool) -> Option<Bytes> {
        let (parser, nsp) = (self.parser, &*self.nsp);
        match &*self.route.borrow() {
            Route::Ack(id) => socketio::ack(parser, nsp, *id, *data),
            Route::Event(name) if !is_error => socketio::event(parser, nsp, name, *data, None),
            _ if is_error => socketio::event(parser, nsp, &self.error_event, *data, None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resume_points_follow_what_was_queued_after_the_last_event_received() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut sent = Sent::default();
        for (room, offset) in [(&a, 1), (&b, 7), (&a, 2), (&b, 8), (&a, 3)] {
            sent.record(room, offset);
        }
        let at = [(a.clone(), 3), (b.clone(), 9), (c.clone(), 40)];
        // The client got a@2: b@8 and a@3 were lost; c had nothing queued.
        let got = sent.resume_points(&recovery_offset("a", 2), &at).unwrap();
        assert_eq!(got, vec![(a.clone(), 2), (b.clone(), 7), (c.clone(), 40)]);
        // It got everything: each room from its last queued.
        let got = sent.resume_points(&recovery_offset("a", 3), &at).unwrap();
        assert_eq!(got, vec![(a.clone(), 3), (b.clone(), 8), (c, 40)]);
        assert!(sent.resume_points(&recovery_offset("b", 99), &at).is_none());
        assert!(sent.resume_points("garbage", &at).is_none());
        for i in 0..SENT_RING as u64 {
            sent.record(&b, 100 + i);
        }
        assert!(
            sent.resume_points(&recovery_offset("a", 3), &at).is_none(),
            "fell out of the ring"
        );
    }
}
