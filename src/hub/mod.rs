//! A shard's hub: the one owner of which sessions it holds, which users they belong to and
//! which rooms they are in; and the local fan-out, which hands one encoded frame per wire
//! format to every recipient. Everything beyond this shard goes through the [`Backplane`] the
//! hub is given (the other shards today, other nodes with a cluster backplane).
//!
//! Only its shard's thread touches a hub (`RefCell`, `Rc`): no lock on the message path.

mod backplane;
mod delivery;
mod event;
mod fanout;
mod presence;
mod stream;

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::RandomState;
use indexmap::IndexMap;
use smallvec::SmallVec;
use wsgate_protocol::CloseCode;

pub(crate) use backplane::{
    Backplane, BackplaneError, JoinDone, JoinTicket, Joined, Mailbox, Published, RoomRefused, Task,
};
pub(crate) use delivery::{Delivery, Report};
#[cfg(test)]
pub(crate) use event::test_event;
pub(crate) use event::{OutEvent, Target};
pub(crate) use presence::{presence_event, Change, WatchRefused};
pub(crate) use stream::{
    Entry, HistoryOptions, Position, Query, Recovery, Stream, StreamLimits, Waiting,
    DEFAULT_HISTORY_LIMIT,
};

use crate::session::Session;
use crate::stats::ShardStats;
use crate::transport::outbound::{CloseRequest, PushError, Queued};

type Map<K, V> = HashMap<K, V, RandomState>;

/// The knobs a hub applies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// `MAX_OUTBOUND_BYTES`: a session's outbox bound.
    pub(crate) max_outbound_bytes: usize,
    /// `MAX_ROOMS_PER_CONNECTION`.
    pub(crate) max_rooms_per_connection: u32,
    /// `MAX_WATCHED_USERS`.
    pub(crate) max_watched_users: u32,
    /// Fault injection for the containment tests (`crate::testing`).
    #[cfg(feature = "testing")]
    pub(crate) faults: bool,
}

/// The shard's maps. Membership is kept in both directions, a session's rooms in the
/// session ([`Session::rooms`]) and a room's sessions in `rooms`, and the two change
/// together, here only: in [`Hub::join`] and [`Hub::leave`] (and [`Hub::unregister`],
/// [`Hub::close_room`]).
#[derive(Default)]
struct Registry {
    conns: Map<u64, Rc<Session>>,
    /// Most users hold one connection: kept inline, no allocation per user.
    users: Map<Arc<str>, SmallVec<[Rc<Session>; 1]>>,
    /// Members per room, in join order, each with whether it follows the room's presence
    /// events (so following costs no second map); `IndexMap` for dense iteration and O(1)
    /// removal. Join order is mostly the sessions' allocation order, so the fan-out walks
    /// them in address order: a plain hash map (16 bytes a member less) made
    /// `routing/shard/deliver_room_100` 19 – 59 % slower (2026-12-04, BENCHMARKS.md).
    rooms: Map<Arc<str>, Members>,
    /// The sessions watching each user; a user none here watches has no entry.
    watchers: Map<Arc<str>, IndexMap<Member, (), RandomState>>,
    /// The users each session watches (at most `max_watched_users`; the same `Arc`s as the
    /// keys of `watchers`); a session watching nobody has no entry.
    watching: Map<u64, Vec<Arc<str>>>,
}

/// A room's members here, each with whether it follows the room's presence events.
type Members = IndexMap<Member, bool, RandomState>;

/// A session as a map key: hashed and compared by its id, and looked up by it, so that a
/// room's (or a watched user's) map holds the session once and no id beside it.
#[derive(Clone)]
pub(super) struct Member(pub(super) Rc<Session>);

impl Hash for Member {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `u64` hashes: `Borrow<u64>` lookups must find it.
        self.0.id.hash(state);
    }
}

impl PartialEq for Member {
    fn eq(&self, other: &Member) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Member {}

impl Borrow<u64> for Member {
    fn borrow(&self) -> &u64 {
        &self.0.id
    }
}

/// Why a join was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// The session is in `MAX_ROOMS_PER_CONNECTION` rooms already.
    ConnectionLimit,
    /// The server holds `MAX_ROOMS` rooms.
    ServerLimit,
    /// The room holds its most member connections (`maxMembers`).
    RoomFull,
    /// The session ended before its join completed (or was never authenticated).
    Gone,
    /// Cluster mode: Redis did not answer (see [`BackplaneError`]).
    Unavailable,
}

/// One shard's hub.
pub(crate) struct Hub<B> {
    /// The shard's index.
    pub(crate) id: usize,
    backplane: Arc<B>,
    stats: Arc<ShardStats>,
    limits: Limits,
    local: RefCell<Registry>,
}

impl<B: Backplane> Hub<B> {
    /// Shard `id`'s hub, reaching the others through `backplane`.
    pub(crate) fn new(
        id: usize,
        backplane: Arc<B>,
        stats: Arc<ShardStats>,
        limits: Limits,
    ) -> Self {
        Hub {
            id,
            backplane,
            stats,
            limits,
            local: RefCell::default(),
        }
    }

    /// Hubs a delivery reaches (what a report waits for).
    pub(crate) fn hubs(&self) -> usize {
        self.backplane.hubs()
    }

    /// The shard's counters.
    pub(crate) fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// Adds a session.
    pub(crate) fn register(&self, session: &Rc<Session>) {
        self.local
            .borrow_mut()
            .conns
            .insert(session.id, session.clone());
        ShardStats::inc(&self.stats.connections);
        ShardStats::inc(&self.stats.connections_total);
    }

    /// Records that `session` is authenticated as `user`.
    pub(crate) fn add_user(&self, user: &Arc<str>, session: &Rc<Session>) {
        self.local
            .borrow_mut()
            .users
            .entry(user.clone())
            .or_default()
            .push(session.clone());
    }

    /// Removes a session from every map: its user, its rooms (the directory counts them out).
    pub(crate) fn unregister(&self, session: &Session) {
        let mut local = self.local.borrow_mut();
        if local.conns.remove(&session.id).is_none() {
            return;
        }
        let user = session.user();
        if let Some(user) = &user {
            if let Some(list) = local.users.get_mut(user) {
                list.retain(|s| s.id != session.id);
                if list.is_empty() {
                    local.users.remove(user);
                }
            }
        }
        for room in session.take_rooms() {
            if remove_member(&mut local.rooms, &room, session.id) {
                self.backplane.unfollow(&room);
            }
            if let Some(user) = &user {
                self.backplane.remove_member(&room, user);
            }
        }
        self.unwatch_all(&mut local, session.id);
        ShardStats::dec(&self.stats.connections);
    }

    /// Makes `session` a member of `room` (idempotent), within the per-connection and
    /// server-wide room bounds.
    pub(crate) fn join(&self, session: &Rc<Session>, room: &str) -> Result<(), JoinRefused> {
        let mut local = self.local.borrow_mut();
        let Registry { conns, rooms, .. } = &mut *local;
        if !conns.contains_key(&session.id) {
            return Ok(());
        }
        let Some(user) = session.user() else {
            return Err(JoinRefused::Gone);
        };
        let (member, count) = session.rooms(|joined| {
            let member = joined.iter().any(|r| &**r == room);
            (member, joined.len())
        });
        if member {
            return Ok(());
        }
        if count >= self.limits.max_rooms_per_connection as usize {
            return Err(JoinRefused::ConnectionLimit);
        }
        let name = shared_name(rooms, room);
        self.backplane
            .add_member(&name, &user)
            .map_err(|refused| match refused {
                RoomRefused::Full => JoinRefused::RoomFull,
                RoomRefused::TooManyRooms
                | RoomRefused::Exists
                | RoomRefused::CreatorLimit
                | RoomRefused::Unavailable => JoinRefused::ServerLimit,
            })?;
        rooms
            .entry(name.clone())
            .or_default()
            .insert(Member(session.clone()), false);
        session.add_room(name);
        Ok(())
    }

    /// Ends `session`'s membership of `room`; whether it was a member.
    pub(crate) fn leave(&self, session: &Session, room: &str) -> bool {
        let mut local = self.local.borrow_mut();
        if !session.remove_room(room) {
            return false;
        }
        if remove_member(&mut local.rooms, room, session.id) {
            self.backplane.unfollow(room);
        }
        if let Some(user) = session.user() {
            self.backplane.remove_member(room, &user);
        }
        true
    }

    /// The room's shared name if `session` is a member of it.
    pub(crate) fn membership(&self, session: &Session, room: &str) -> Option<Arc<str>> {
        session.rooms(|joined| joined.iter().find(|r| &***r == room).cloned())
    }

    /// This shard's sessions of `user`.
    fn sessions_of(&self, user: &str) -> Vec<Rc<Session>> {
        self.local
            .borrow()
            .users
            .get(user)
            .map(|s| s.to_vec())
            .unwrap_or_default()
    }

    /// The rooms `session` is in.
    pub(crate) fn session_rooms(&self, session: &Session) -> Vec<Arc<str>> {
        session.rooms(<[_]>::to_vec)
    }

    /// Rooms any local session of `user` is in.
    pub(crate) fn rooms_of(&self, user: &str) -> Vec<Arc<str>> {
        let local = self.local.borrow();
        let mut rooms: Vec<Arc<str>> = Vec::new();
        for s in local.users.get(user).into_iter().flatten() {
            s.rooms(|joined| rooms.extend(joined.iter().cloned()));
        }
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// This shard's members of `room`: the room lookup of a delivery (for the benches).
    #[cfg(feature = "testing")]
    pub(crate) fn room_len(&self, room: &str) -> usize {
        self.local.borrow().rooms.get(room).map_or(0, IndexMap::len)
    }

    /// This shard's sessions of `user`: the user lookup of a delivery (for the benches).
    #[cfg(feature = "testing")]
    pub(crate) fn user_len(&self, user: &str) -> usize {
        self.local.borrow().users.get(user).map_or(0, |c| c.len())
    }

    /// Closes every local session of `user` with 4003 and `reason`; returns how many.
    pub(crate) fn kick(&self, user: &str, reason: &str) -> usize {
        let sessions = self.sessions_of(user);
        for s in &sessions {
            let close = CloseRequest::with_reason(CloseCode::Kicked.as_u16(), reason);
            s.close(close, Queued::Flush);
        }
        sessions.len()
    }

    /// Adds every local session of `user` to `room` (up to each one's room limit, and the
    /// server's); returns how many were added.
    pub(crate) fn add_to_room(&self, user: &str, room: &str) -> usize {
        self.sessions_of(user)
            .iter()
            .filter(|s| self.membership(s, room).is_none() && self.join(s, room).is_ok())
            .count()
    }

    /// Removes every local session of `user` from `room`; returns how many.
    pub(crate) fn remove_from_room(&self, user: &str, room: &str) -> usize {
        self.sessions_of(user)
            .iter()
            .filter(|s| self.leave(s, room))
            .count()
    }

    /// Closes `room` here: members get `event` (`room.closed`) and are removed. The directory
    /// entry is already gone. Returns how many sessions were removed.
    pub(crate) fn close_room(&self, room: &str, event: &Arc<OutEvent>) -> usize {
        let members: Vec<Rc<Session>> = {
            let mut local = self.local.borrow_mut();
            // The directory's entry, and its count of followers, is gone already.
            let Some(members) = local.rooms.remove(room) else {
                return 0;
            };
            let members: Vec<Rc<Session>> = members.into_keys().map(|m| m.0).collect();
            for s in &members {
                s.remove_room(room);
            }
            members
        };
        for s in &members {
            if let Some(frames) = event.frame_for(s) {
                if frames.push(s, self.limits.max_outbound_bytes) == Err(PushError::SlowConsumer) {
                    ShardStats::inc(&self.stats.slow_consumers);
                }
            }
        }
        members.len()
    }

    /// Calls `f` with every session (for the sweep and shutdown). `f` must not call back into
    /// the hub.
    pub(crate) fn for_each_session(&self, mut f: impl FnMut(&Rc<Session>)) {
        for session in self.local.borrow().conns.values() {
            f(session);
        }
    }

    /// Sessions held now.
    pub(crate) fn session_count(&self) -> usize {
        self.local.borrow().conns.len()
    }

    /// Joins `session` to `room` at a known position of its stream, resuming from `since`
    /// (epoch, offset) when given: the messages the client missed are queued to it, in order,
    /// before any later one, and the answer says whether all of them could be.
    pub(crate) async fn join_at_position(
        &self,
        session: &Rc<Session>,
        room: &str,
        since: Option<(&str, u64)>,
        presence: Option<bool>,
    ) -> JoinDone {
        let name = self.room_name(room);
        let joined = self.membership(session, room).is_some();
        if !joined && self.room_count_of(session) >= self.limits.max_rooms_per_connection as usize {
            return Err(JoinRefused::ConnectionLimit);
        }
        let done = self
            .backplane
            .join_stream(self.id, session.id, &name, since, presence)
            .await;
        done.await.unwrap_or(Err(JoinRefused::Gone))
    }

    /// Completes a join that came along its stream's ordered path (see [`JoinTicket`]): the
    /// member is added, then the messages it missed are queued to it.
    pub(crate) fn complete_join(&self, ticket: JoinTicket) {
        let JoinTicket {
            session,
            room,
            position,
            recovery,
            presence,
            done,
        } = ticket;
        let found = self.local.borrow().conns.get(&session).cloned();
        let result = match found {
            None => Err(JoinRefused::Gone),
            Some(session) => {
                let already = self.membership(&session, &room).is_some();
                let joined = if already {
                    Ok(None)
                } else {
                    self.join(&session, &room).map(|()| {
                        recovery.map(|missed| match missed {
                            Some(events) => {
                                self.replay(&session, &events);
                                true
                            }
                            None => false,
                        })
                    })
                };
                joined.map(|recovered| Joined {
                    position,
                    recovered,
                    presence: presence.map(|on| self.follow_presence(&session, &room, on)),
                })
            }
        };
        // The command may have ended with its connection: nobody to tell, nothing to undo
        // (the membership goes with the session).
        let _ = done.send(result);
    }

    /// Queues stream events to one session, as the live fan-out would.
    fn replay(&self, session: &Session, events: &[Arc<OutEvent>]) {
        replay(session, events, self.limits.max_outbound_bytes, &self.stats);
    }

    /// The stream of `room`: its position and the kept messages `query` asks for.
    pub(crate) async fn history(
        &self,
        room: &str,
        query: Query,
    ) -> Result<(Position, Vec<Entry>), BackplaneError> {
        let name = self.room_name(room);
        self.backplane.history(&name, query).await
    }

    /// The shard's existing `Arc` for a room name.
    fn room_name(&self, room: &str) -> Arc<str> {
        shared_name(&self.local.borrow().rooms, room)
    }

    /// Whether `session` is in `MAX_ROOMS_PER_CONNECTION` rooms already.
    pub(crate) fn at_room_limit(&self, session: &Session) -> bool {
        self.room_count_of(session) >= self.limits.max_rooms_per_connection as usize
    }

    /// Rooms `session` is in.
    fn room_count_of(&self, session: &Session) -> usize {
        session.rooms(<[_]>::len)
    }

    /// Delivers everywhere, through the backplane to every hub (this one included), so that
    /// a sender's events reach each recipient in the order sent. A room event goes through the
    /// room's stream: it gets the stream's next offset, and every hub sees the room's events in
    /// offset order (and is written to the store, see [`Published`]); an ephemeral one does
    /// not (no offset, not kept). A private message goes through its user's stream likewise, one per target user.
    pub(crate) async fn deliver(&self, d: Delivery) -> Result<Published, BackplaneError> {
        match &d.target {
            Target::Room(room) if !d.ephemeral => {
                let room = room.clone();
                self.backplane.publish_stream(&room, d).await
            }
            Target::User(user) => {
                let user = user.clone();
                self.backplane.publish_user(&user, d).await
            }
            Target::Users(users) => {
                let users = users.clone();
                if let Some(report) = &d.report {
                    // One delivery per user, each reported by every hub.
                    report.expect(self.hubs() * users.len().saturating_sub(1));
                }
                let mut all = Published::default();
                for (index, user) in users.iter().enumerate() {
                    let one = Delivery {
                        target: Target::User(user.clone()),
                        index,
                        ..d.clone()
                    };
                    let published = self.backplane.publish_user(user, one).await?;
                    all.waited |= published.waited;
                    // Each user's stream gave its own offset: none is the push's.
                    // One writer, in queue order: the last write's fsync covers the others.
                    all.durable = published.durable.or(all.durable);
                }
                Ok(all)
            }
            Target::Room(_) | Target::Broadcast | Target::Presence(_) | Target::Watchers(_) => {
                Ok(Published {
                    waited: self.backplane.publish(d).await?,
                    ..Published::default()
                })
            }
        }
    }

    /// Delivers an event that is not part of any stream (no offset, never replayed), through
    /// every hub in order like the rest: receipts, and other ephemeral events.
    pub(crate) async fn deliver_unsequenced(&self, d: Delivery) -> Result<bool, BackplaneError> {
        self.backplane.publish(d).await
    }

    /// Queues `user`'s messages not yet acknowledged to `session` (which just authenticated),
    /// before any live one; their live copies still on their way are skipped. When some are
    /// only in the store (an offline user's mailbox), they are loaded in a task of their own
    /// while the session goes on, and every live private message waits behind them: the
    /// session skips those until the load's answer, which holds them.
    pub(crate) fn replay_mailbox(&self, session: &Rc<Session>, user: &Arc<str>) {
        let Some(mailbox) = self.backplane.mailbox(user) else {
            return;
        };
        if !mailbox.stored {
            let max = self.limits.max_outbound_bytes;
            return deliver_mailbox(&*self.backplane, session, user, mailbox, max, &self.stats);
        }
        session.user_floor.set(u64::MAX);
        let (backplane, stats) = (self.backplane.clone(), self.stats.clone());
        let max = self.limits.max_outbound_bytes;
        let (weak, user) = (Rc::downgrade(session), user.clone());
        tokio::task::spawn_local(async move {
            let mailbox = backplane.load_mailbox(&user).await;
            // No await from the answer on: no live message is handled before this.
            let Some(session) = weak.upgrade() else {
                return;
            };
            match mailbox {
                Some(mailbox) => {
                    deliver_mailbox(&*backplane, &session, &user, mailbox, max, &stats);
                }
                None => session.user_floor.set(0),
            }
        });
    }

    /// `user` acknowledged its messages up to `offset`.
    pub(crate) async fn ack(
        &self,
        user: &Arc<str>,
        offset: u64,
    ) -> Result<Position, BackplaneError> {
        self.backplane.ack(user, offset).await
    }

    /// Runs `f` on every hub (this one included, through the backplane, after what was
    /// published before) and collects the results, in no particular order.
    pub(crate) async fn gather<T: Send + 'static>(
        &self,
        f: impl Fn(&Hub<B>) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let hubs = self.backplane.hubs();
        let results = Arc::new(Mutex::new(Vec::with_capacity(hubs)));
        let countdown = Report::new(hubs, 0);
        let task: Task<B> = {
            let (results, countdown) = (results.clone(), countdown.clone());
            Arc::new(move |hub: &Hub<B>| {
                let value = f(hub);
                lock(&results).push(value);
                countdown.add(0, []);
            })
        };
        self.backplane.run_everywhere(task).await;
        countdown.wait().await;
        let mut out = lock(&results);
        std::mem::take(&mut *out)
    }
}

/// Queues a stream's `events` to `session`, each in its format, counted in `stats`.
fn replay(session: &Session, events: &[Arc<OutEvent>], max_bytes: usize, stats: &ShardStats) {
    for event in events {
        let Some(frames) = event.frame_for(session) else {
            continue;
        };
        crate::session::count(stats, frames.push(session, max_bytes));
    }
}

/// Queues `user`'s `mailbox` to `session`; the live copies of its messages are skipped from
/// now on, and for a user that does not ack, the delivery acknowledges them (unless `session`
/// is a Socket.IO socket that asks for acks).
fn deliver_mailbox<B: Backplane>(
    backplane: &B,
    session: &Session,
    user: &Arc<str>,
    mailbox: Mailbox,
    max_bytes: usize,
    stats: &ShardStats,
) {
    let Mailbox {
        position,
        manual,
        events,
        ..
    } = mailbox;
    session.user_floor.set(position.offset);
    replay(session, &events, max_bytes, stats);
    // A socket that asks for acks acks them itself.
    if !manual && !events.is_empty() && !session.asks_acks() {
        backplane.delivered(user, position.offset);
    }
}

/// The existing `Arc` of a room name when the room has members here, so members (and the
/// room's stream) share one allocation.
fn shared_name(rooms: &Map<Arc<str>, Members>, room: &str) -> Arc<str> {
    match rooms.get_key_value(room) {
        Some((name, _)) => name.clone(),
        None => Arc::from(room),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes session `conn` out of `room`'s members here; whether it followed the room's
/// presence events (the directory's count of followers is then one too many).
fn remove_member(rooms: &mut Map<Arc<str>, Members>, room: &str, conn: u64) -> bool {
    let Some(members) = rooms.get_mut(room) else {
        return false;
    };
    let followed = members.swap_remove(&conn).unwrap_or(false);
    if members.is_empty() {
        rooms.remove(room);
    }
    followed
}
