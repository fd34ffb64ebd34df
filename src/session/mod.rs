//! A client's session as its shard knows it: who it is, its deadlines, and its outbox of
//! encoded frames, which the hub's fan-out pushes into and a transport drains.
//!
//! A session lives on one shard thread only (`Rc`, `RefCell`, `Cell`): pushing a frame to a
//! local session takes no lock and no atomic beyond the frame's reference count. It does not
//! own its socket: a transport attaches to it ([`Session::attach`]) and detaches when the
//! socket is gone, and frames pushed meanwhile wait in the outbox, within its bound.

pub(crate) mod auth;
pub(crate) mod deadline;
pub(crate) mod grant;
pub(crate) mod namespace;
pub(crate) mod rate;

use std::cell::{Cell, RefCell, RefMut};
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use wsgate_protocol::{encode_server_message, Format, ServerMessage};

pub(crate) use deadline::Deadline;
pub(crate) use namespace::{recovery_offset, Asks, Namespaced, Route, Sent, UnknownAck};

use crate::reactor::Wake;
use crate::stats::ShardStats;
use crate::transport::engineio::NodeTag;
use crate::transport::outbound::{CloseRequest, Outbound, PushError, Queued};
use crate::transport::ws::frame;

/// One client session.
pub(crate) struct Session {
    /// Server-wide unique id: shard in the top byte, sequence below.
    pub(crate) id: u64,
    /// The wire format its frames are encoded in.
    pub(crate) format: Format,
    out: RefCell<Outbound>,
    /// The transport's wake-up, while one is attached.
    wake: Cell<Option<Wake>>,
    /// The authenticated user; `None` until authenticated. A `Cell` (taken and put back to
    /// be read), not a `RefCell`: 8 bytes less in every session.
    user: Cell<Option<Arc<str>>>,
    /// When the sweep closes the session, and why.
    pub(crate) deadline: Cell<Deadline>,
    /// Shard clock (ms) of the last frame received.
    pub(crate) last_seen_ms: Cell<u64>,
    /// Shard clock (ms) of the unanswered ping; 0 when none is outstanding.
    pub(crate) ping_sent_ms: Cell<u64>,
    /// Speaks Engine.IO: the sweep's heartbeat is Engine.IO's (a `2` packet every
    /// `ENGINEIO_PING_INTERVAL`, whatever the traffic; only a `3` answers it).
    pub(crate) engineio: Cell<bool>,
    /// The offset of its user's stream up to which its mailbox replay queued messages: the
    /// live copies of those are skipped.
    pub(crate) user_floor: Cell<u64>,
    /// A Socket.IO namespace socket: its carrier, namespace and parser ([`Namespaced`]). Its
    /// frames go into the carrier's outbox; its own outbox only records that it is closed.
    pub(crate) socketio: Option<Box<Namespaced>>,
    /// The rooms it is in, kept by its shard's hub (which changes them together with each
    /// room's members); `None` while in none, so that a connection in no room pays 8 bytes
    /// here (inside the allocation's size class) and no map entry anywhere.
    rooms: Cell<Option<Box<Rooms>>>,
}

/// A session's rooms (the same `Arc`s as the hub's room names). Most sessions are in one:
/// kept inline.
pub(crate) type Rooms = SmallVec<[Arc<str>; 1]>;

impl Session {
    /// Session `id` in `format`, seen at `now_ms`, with no transport attached yet.
    pub(crate) fn new(id: u64, format: Format, now_ms: u64) -> Self {
        Session {
            id,
            format,
            out: RefCell::default(),
            wake: Cell::new(None),
            user: Cell::new(None),
            deadline: Cell::new(Deadline::None),
            last_seen_ms: Cell::new(now_ms),
            ping_sent_ms: Cell::new(0),
            engineio: Cell::new(false),
            user_floor: Cell::new(0),
            socketio: None,
            rooms: Cell::new(None),
        }
    }

    /// A Socket.IO namespace socket `id`, carried by `namespaced.carrier`.
    pub(crate) fn namespaced(id: u64, namespaced: Namespaced, now_ms: u64) -> Self {
        Session {
            socketio: Some(Box::new(namespaced)),
            ..Session::new(id, Format::Json, now_ms)
        }
    }

    /// `f` of the rooms it is in.
    pub(crate) fn rooms<R>(&self, f: impl FnOnce(&[Arc<str>]) -> R) -> R {
        let rooms = self.rooms.take();
        let out = f(rooms.as_deref().map_or(&[], Rooms::as_slice));
        self.rooms.set(rooms);
        out
    }

    /// Adds `room` to its rooms (the hub's, which checked it is not there yet).
    pub(crate) fn add_room(&self, room: Arc<str>) {
        let mut rooms = self.rooms.take().unwrap_or_default();
        rooms.push(room);
        self.rooms.set(Some(rooms));
    }

    /// Removes `room` from its rooms; whether it was there. The last one gone frees the list.
    pub(crate) fn remove_room(&self, room: &str) -> bool {
        let Some(mut rooms) = self.rooms.take() else {
            return false;
        };
        let found = rooms.iter().position(|r| &**r == room);
        if let Some(i) = found {
            rooms.swap_remove(i);
        }
        if !rooms.is_empty() {
            self.rooms.set(Some(rooms));
        }
        found.is_some()
    }

    /// Its rooms, now none (the hub's, when the session goes or its rooms close).
    pub(crate) fn take_rooms(&self) -> Rooms {
        self.rooms.take().map(|rooms| *rooms).unwrap_or_default()
    }

    /// Whether the ping sent at `ping_sent_ms` has gone unanswered for `timeout` ms at `now`
    /// (the sweep closes such a session; a request that finds one treats it as closed).
    pub(crate) fn ping_overdue(&self, now: u64, timeout: u64) -> bool {
        let sent = self.ping_sent_ms.get();
        sent != 0 && self.last_seen_ms.get() < sent && now.saturating_sub(sent) >= timeout
    }

    /// Whether it is a Socket.IO socket whose private messages ask for acks
    /// (`SOCKETIO_PRIVATE_ACKS`): their delivery is not their ack.
    pub(crate) fn asks_acks(&self) -> bool {
        self.socketio.as_ref().is_some_and(|n| n.asks.is_some())
    }

    /// The authenticated user.
    pub(crate) fn user(&self) -> Option<Arc<str>> {
        self.with_user(Option::clone)
    }

    /// Whether it is authenticated as `user`.
    pub(crate) fn is_user(&self, user: &str) -> bool {
        self.with_user(|u| u.as_deref() == Some(user))
    }

    /// `f` of its user.
    fn with_user<R>(&self, f: impl FnOnce(&Option<Arc<str>>) -> R) -> R {
        let user = self.user.take();
        let out = f(&user);
        self.user.set(user);
        out
    }

    /// Authenticates it as `user`.
    pub(crate) fn set_user(&self, user: Arc<str>) {
        self.user.set(Some(user));
    }

    /// A transport now carries the session: `wake` asks it for a turn.
    pub(crate) fn attach(&self, wake: Wake) {
        self.wake.set(Some(wake));
    }

    /// Hands the transport's wake-up over (to the session it moves to): nothing is woken here
    /// until another attaches.
    pub(crate) fn take_wake(&self) -> Option<Wake> {
        self.wake.take()
    }

    /// The transport is gone: nothing is woken until another attaches.
    pub(crate) fn detach(&self) {
        self.wake.set(None);
    }

    /// Queues a frame; `Ok` with how many queued ephemeral frames were dropped to make room
    /// for it (almost always 0). Past `max_bytes` the outbox is discarded and the session
    /// closes as a slow consumer (4002): memory never grows without bound.
    pub(crate) fn push(&self, frame: Bytes, max_bytes: usize) -> Result<u32, PushError> {
        match &self.socketio {
            None => self.push_own(frame, max_bytes),
            Some(_) if self.is_closing() => Err(PushError::Closing),
            // A carrier is an Engine.IO session, never a namespace socket: its own outbox.
            Some(n) => n.carrier.push_own(frame, max_bytes),
        }
    }

    /// [`Session::push`] into this session's own outbox: the native path, kept apart (and
    /// not recursive) so that the fan-out's loop inlines it.
    #[inline]
    fn push_own(&self, frame: Bytes, max_bytes: usize) -> Result<u32, PushError> {
        let pushed = self.out.borrow_mut().push(frame, max_bytes);
        match pushed {
            // A non-empty outbox is flushed when the socket turns writable: no wake-up needed.
            Ok(pushed) => {
                if pushed.was_empty {
                    self.wake_own();
                }
                Ok(pushed.shed)
            }
            Err(PushError::SlowConsumer) => {
                self.wake_own();
                Err(PushError::SlowConsumer)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues an ephemeral frame, unless the outbox is filling ([`PushError::Shed`]: the frame
    /// is dropped and nothing else changes; it never makes a slow consumer).
    pub(crate) fn push_ephemeral(&self, frame: Bytes, max_bytes: usize) -> Result<u32, PushError> {
        match &self.socketio {
            None => self.push_ephemeral_own(frame, max_bytes),
            Some(_) if self.is_closing() => Err(PushError::Closing),
            Some(n) => n.carrier.push_ephemeral_own(frame, max_bytes),
        }
    }

    /// [`Session::push_ephemeral`] into this session's own outbox.
    #[inline]
    fn push_ephemeral_own(&self, frame: Bytes, max_bytes: usize) -> Result<u32, PushError> {
        let was_empty = self.out.borrow_mut().push_ephemeral(frame, max_bytes)?;
        if was_empty {
            self.wake_own();
        }
        Ok(0)
    }

    /// Encodes `msg` for this session alone and queues it.
    pub(crate) fn send(&self, msg: &ServerMessage<'_>, max_bytes: usize) -> Result<u32, PushError> {
        if let Some(n) = &self.socketio {
            return match n.packet(msg) {
                Some(frame) => self.push(frame, max_bytes),
                None => Ok(0),
            };
        }
        let format = self.format;
        let built = frame::build(frame::opcode_for(format), 96, |out| {
            encode_server_message(format, msg, out)
        });
        match built {
            Ok(frame) => self.push(frame, max_bytes),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a server message");
                Ok(0)
            }
        }
    }

    /// Asks the session to close; what happens to queued frames is `queued`'s. A second close
    /// is a no-op.
    pub(crate) fn close(&self, close: CloseRequest, queued: Queued) {
        if let Some(n) = &self.socketio {
            // A namespace socket the server ends (a token's expiry, a slow consumer) ends its
            // Engine.IO session: its handler then ends every socket it carries.
            if self.out.borrow_mut().close(close.clone(), Queued::Discard) {
                n.carrier.close(close, queued);
            }
            return;
        }
        if self.out.borrow_mut().close(close, queued) {
            self.wake();
        }
    }

    /// Whether a close has been requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.out.borrow().is_closing()
    }

    /// The close code requested, if a close was.
    pub(crate) fn close_code(&self) -> Option<u16> {
        self.out.borrow().close_code()
    }

    /// The outbox, for the transport that drains it (never held across a push).
    pub(crate) fn outbox(&self) -> RefMut<'_, Outbound> {
        self.out.borrow_mut()
    }

    /// Asks the attached transport for a turn (once, however often this is called before).
    pub(crate) fn wake(&self) {
        match &self.socketio {
            None => self.wake_own(),
            Some(n) => n.carrier.wake_own(),
        }
    }

    /// [`Session::wake`] of this session's own transport.
    #[inline]
    fn wake_own(&self) {
        if let Some(wake) = self.wake.take() {
            wake.wake();
            self.wake.set(Some(wake));
        }
    }

    /// The transport is being driven: later wake-ups queue it again.
    pub(crate) fn unmark(&self) {
        if let Some(wake) = self.wake.take() {
            wake.unmark();
            self.wake.set(Some(wake));
        }
    }

    /// Queues a frame for this session alone and counts it in `stats` (a frame out, or the slow
    /// consumer it made).
    pub(crate) fn push_counted(&self, frame: Bytes, max_bytes: usize, stats: &ShardStats) {
        count(stats, self.push(frame, max_bytes));
    }

    /// Encodes `msg` for this session alone, queues it, and counts it in `stats`.
    pub(crate) fn send_counted(
        &self,
        msg: &ServerMessage<'_>,
        max_bytes: usize,
        stats: &ShardStats,
    ) {
        count(stats, self.send(msg, max_bytes));
    }

    /// Frees the outbox's buffer once it has been empty for `after_sweeps` sweeps.
    pub(crate) fn release_idle_queue(&self, after_sweeps: u8) {
        self.out.borrow_mut().release_idle(after_sweeps);
    }
}

/// Session id `id` as sent on the wire (`welcome`'s `conn`, Socket.IO's `socket.id`):
/// `"<shard>.<sequence>"`, after `"<node>."` in cluster mode so that it is unique in the cluster.
pub(crate) fn wire_id(id: u64, node: Option<NodeTag>) -> String {
    let local = id & ((1 << 56) - 1);
    match node {
        Some(tag) => format!("{}.{}.{local}", tag.as_str(), id >> 56),
        None => format!("{}.{local}", id >> 56),
    }
}

/// Counts what one push to one session did.
pub(crate) fn count(stats: &ShardStats, pushed: Result<u32, PushError>) {
    match pushed {
        Ok(shed) => {
            ShardStats::inc(&stats.messages_out);
            ShardStats::add(&stats.ephemeral_dropped, u64::from(shed));
        }
        Err(PushError::SlowConsumer) => ShardStats::inc(&stats.slow_consumers),
        Err(PushError::Shed) => ShardStats::inc(&stats.ephemeral_dropped),
        Err(PushError::Closing) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::rc::Rc;

    use super::*;
    use crate::reactor::Ready;
    use wsgate_protocol::CloseCode;

    #[test]
    fn a_shared_session_stays_in_its_allocation_size_class() {
        // `Rc<Session>` is one allocation per connection: its box (two counts and the
        // session) stays at 216 bytes. Measured (BENCHMARKS.md, 2026-12-04): 8 bytes more,
        // the same size class on paper, cost 15 - 30 bytes of RSS per idle connection.
        assert!(
            std::mem::size_of::<Session>() + 2 * std::mem::size_of::<usize>() <= 216,
            "{} bytes",
            std::mem::size_of::<Session>()
        );
    }

    #[test]
    fn its_rooms_are_freed_with_the_last_one() {
        let s = Session::new(1, Format::Json, 0);
        assert_eq!(s.rooms(<[_]>::len), 0);
        assert!(!s.remove_room("a"));
        s.add_room("a".into());
        s.add_room("b".into());
        assert!(s.remove_room("a"));
        assert!(!s.remove_room("a"));
        assert_eq!(s.rooms(<[_]>::to_vec), vec![Arc::<str>::from("b")]);
        assert!(s.remove_room("b"));
        assert!(s.rooms.take().is_none(), "no empty list is kept");
        s.add_room("c".into());
        assert_eq!(s.take_rooms().as_slice(), &[Arc::<str>::from("c")]);
        assert_eq!(s.rooms(<[_]>::len), 0);
    }

    #[test]
    fn a_connection_is_queued_for_a_turn_once_until_driven() {
        let ready = Rc::new(Ready::default());
        let h = Session::new(1, Format::Json, 0);
        h.attach(Wake::new(ready.clone(), 7));
        let frame = Bytes::from_static(b"x");
        h.push(frame.clone(), 10_000).unwrap();
        h.close(CloseRequest::new(CloseCode::Normal), Queued::Flush);
        h.wake();
        let mut batch = Vec::new();
        ready.take_into(&mut batch);
        assert_eq!(batch, [7], "three wake-ups, one entry");
        // Driven: the next wake-up queues it again.
        h.unmark();
        h.wake();
        batch.clear();
        ready.take_into(&mut batch);
        assert_eq!(batch, [7]);
    }

    #[test]
    fn a_detached_session_keeps_frames_and_wakes_nothing() {
        let ready = Rc::new(Ready::default());
        let h = Session::new(1, Format::Json, 0);
        h.attach(Wake::new(ready.clone(), 3));
        h.detach();
        h.push(Bytes::from_static(b"x"), 10_000).unwrap();
        assert!(
            h.outbox().has_output(),
            "the frame waits for the next transport"
        );
        let mut batch = Vec::new();
        ready.take_into(&mut batch);
        assert!(batch.is_empty(), "no stale slot is woken");
        h.attach(Wake::new(ready.clone(), 4));
        h.wake();
        ready.take_into(&mut batch);
        assert_eq!(batch, [4]);
    }
}
