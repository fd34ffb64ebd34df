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
    /// With `SOCKETIO_PRIVATE_ACKS`: the private messages it was asked to ack.
    pub(crate) asks: Option<Box<RefCell<Asks>>>,
}

/// The private messages a socket was sent asking for an ack (`SOCKETIO_PRIVATE_ACKS`), by ack
/// id, so that the client's answer acks its user's stream up to the message's offset, as a
/// native `ack` does. Acks of a stream are cumulative, so the stream is acked up to the last
/// message of the oldest run of answered ones: a message the client has not answered holds
/// back the acks of those after it (they come again on the next connection too).
///
/// Bounded: it remembers the last `window` asks (`USER_STREAM_SIZE`: a user's stream keeps no
/// more messages). Past it the oldest is forgotten, answered or not: by then its stream has
/// let go of its message (the `window` later messages pushed it out), so acking past it loses
/// nothing the stream still holds; its answer, if one comes, is an unknown id.
#[derive(Debug)]
pub(crate) struct Asks {
    window: usize,
    /// The ack id of `waiting`'s front: ids are consecutive, the next is `first + len`.
    first: u64,
    /// The offsets of the messages asked for, oldest first; [`ANSWERED`] set once answered.
    waiting: VecDeque<u64>,
    /// The offset up to which the answers ack the stream.
    ackable: u64,
    /// The offset up to which acks were sent (or are on their way).
    sent: u64,
    /// An ack is on its way: the next waits for it (one at a time, each covering all the
    /// answers before it).
    sending: bool,
}

/// The bit of an ask's offset that says it was answered (offsets stay far below it).
const ANSWERED: u64 = 1 << 63;

/// Why an answer acks nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownAck;

impl Asks {
    /// No asks yet; at most `window` remembered.
    pub(crate) fn new(window: usize) -> Asks {
        Asks {
            window: window.max(1),
            first: 0,
            waiting: VecDeque::new(),
            ackable: 0,
            sent: 0,
            sending: false,
        }
    }

    /// The ack id for the private message at `offset`, being queued to the socket.
    pub(crate) fn ask(&mut self, offset: u64) -> u64 {
        if self.waiting.len() >= self.window {
            self.waiting.pop_front();
            self.first += 1;
            self.settle();
        }
        self.waiting.push_back(offset);
        self.first + self.waiting.len() as u64 - 1
    }

    /// The client answered ack `id`: `Ok` with the offset to ack the stream up to if that
    /// moved and no ack is on its way (the caller sends it, then calls [`Asks::acked`]);
    /// [`UnknownAck`] for an id never asked, answered before, or forgotten.
    pub(crate) fn answer(&mut self, id: u64) -> Result<Option<u64>, UnknownAck> {
        let i = id.checked_sub(self.first).ok_or(UnknownAck)?;
        let ask = usize::try_from(i)
            .ok()
            .and_then(|i| self.waiting.get_mut(i))
            .ok_or(UnknownAck)?;
        if *ask & ANSWERED != 0 {
            return Err(UnknownAck);
        }
        *ask |= ANSWERED;
        self.settle();
        Ok(self.next_ack())
    }

    /// The ack sent last was made: the next to send, if answers moved the stream's point
    /// meanwhile.
    pub(crate) fn acked(&mut self) -> Option<u64> {
        self.sending = false;
        self.next_ack()
    }

    /// The offset to ack up to now, unless an ack is on its way or it was acked already;
    /// marks it sent.
    fn next_ack(&mut self) -> Option<u64> {
        if self.sending || self.ackable <= self.sent {
            return None;
        }
        self.sending = true;
        self.sent = self.ackable;
        Some(self.ackable)
    }

    /// Drops the answered asks at the front: the stream may be acked up to the last.
    fn settle(&mut self) {
        while let Some(&ask) = self.waiting.front() {
            if ask & ANSWERED == 0 {
                break;
            }
            self.waiting.pop_front();
            self.first += 1;
            self.ackable = self.ackable.max(ask & !ANSWERED);
        }
    }

    /// How many asks it remembers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
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
    fn answers_ack_up_to_the_oldest_unanswered_ask_one_ack_at_a_time() {
        let mut asks = Asks::new(8);
        let ids: Vec<u64> = [3, 4, 6, 9].map(|offset| asks.ask(offset)).to_vec();
        assert_eq!(ids, [0, 1, 2, 3], "consecutive ids from 0");
        // 4 answered before 3: held back.
        assert_eq!(asks.answer(1), Ok(None));
        assert_eq!(asks.answer(0), Ok(Some(4)), "3 and 4");
        // While that ack is on its way, 6 and 9 are answered: one ack after it covers both.
        assert_eq!(asks.answer(2), Ok(None));
        assert_eq!(asks.answer(3), Ok(None));
        assert_eq!(asks.acked(), Some(9));
        assert_eq!(asks.acked(), None);
        assert_eq!(asks.len(), 0);
        assert_eq!(asks.answer(3), Err(UnknownAck), "answered before");
        assert_eq!(asks.answer(4), Err(UnknownAck), "never asked");
        assert_eq!(asks.ask(10), 4);
        assert_eq!(asks.answer(4), Ok(Some(10)));
    }

    #[test]
    fn asks_past_the_window_forget_the_oldest() {
        let mut asks = Asks::new(4);
        for offset in 1..=10 {
            asks.ask(offset);
            assert!(asks.len() <= 4, "bounded");
        }
        // Ids 0..=5 (offsets 1..=6) were forgotten, unanswered.
        for id in 0..6 {
            assert_eq!(asks.answer(id), Err(UnknownAck), "id {id}");
        }
        assert_eq!(asks.answer(6), Ok(Some(7)));
        assert_eq!(asks.acked(), None);
        assert_eq!(asks.answer(9), Ok(None), "8 and 9 unanswered");
        assert_eq!(asks.answer(7), Ok(Some(8)));
        assert_eq!(asks.answer(8), Ok(None), "an ack is on its way");
        assert_eq!(asks.acked(), Some(10));
        // An answered ask pushed out of the window lets those after it through later.
        let mut asks = Asks::new(2);
        asks.ask(1);
        asks.ask(2);
        assert_eq!(asks.answer(1), Ok(None), "1 holds it back");
        asks.ask(3);
        // 1 forgotten, 2 (answered) goes with it: the next answer acks through 3.
        assert_eq!(asks.answer(2), Ok(Some(3)));
    }

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
