//! Cluster mode's half of the local backplane (`CLUSTER_REDIS_URL`): a stream's home is
//! Redis, which gives every offset, and this node keeps a copy of the streams of the rooms
//! and users it hosts, fed by its subscriptions.
//!
//! Order: a node delivers even its own events only as they come back from Redis, through
//! its copy of their stream (under the copy's lock, like a local append), so every node's
//! hubs see a stream in offset order, whoever published. What the sending node alone needs
//! (its report, the excluded connection) waits for the event under the publish's nonce.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Local, ShardMsg};
use crate::cluster::redis::{envelope, Channel, Head, Header, Kind, Pending, Redis};
use crate::cluster::streams::{message_event, stored_event, unix_ms, Streams};
use crate::hub::{
    BackplaneError, Delivery, Entry, JoinDone, JoinRefused, JoinTicket, Mailbox, OutEvent,
    Position, Published, Query, Recovery, Stream, StreamLimits, Target,
};
use crate::store::{decode_message, Message};

/// How long a join or a mailbox waits for this node's copy of a stream to catch up with
/// what Redis answered (events on their way here), at most.
const CATCH_UP: Duration = Duration::from_millis(200);

/// Most reads of a stream's head for one join or mailbox, when this node's copy of the stream
/// was made at a later head meanwhile (see [`ahead`]).
const HEAD_READS: u32 = 3;

impl Local {
    /// The link to Redis, in cluster mode.
    pub(crate) fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    /// Whether a member of `room` is on this node (its channel is needed).
    pub(crate) fn hosts_room(&self, room: &str) -> bool {
        self.directory.room(room).is_some_and(|r| r.members > 0)
    }

    /// Whether a connection of `user` is on this node.
    pub(crate) fn hosts_user(&self, user: &str) -> bool {
        self.directory.presence_of(user).1 > 0
    }

    /// Hands what arrived from Redis on `channel` to this node's hubs.
    pub(crate) async fn receive(&self, redis: &Redis, channel: &str, bytes: Bytes) {
        if redis.names.parse(channel) == Some(Channel::Rooms) {
            return self.receive_room_change(redis, &bytes).await;
        }
        let (Some(env), Some(channel)) = (envelope::decode(&bytes), redis.names.parse(channel))
        else {
            tracing::warn!(
                channel,
                "cluster: not an envelope of this deployment; ignored"
            );
            return;
        };
        let pending = if env.header.node == redis.node {
            redis.take_pending(env.header.nonce)
        } else {
            None
        };
        let Some(message) = decode_message(env.message) else {
            tracing::warn!(channel = ?channel, "cluster: an envelope without a message; ignored");
            return;
        };
        let exclude_user: Option<Arc<str>> = env.header.exclude_user.map(Arc::from);
        let ephemeral = env.header.ephemeral;
        match (channel, env.position) {
            (Channel::Room(room), None) if env.header.presence => {
                let target = Target::Presence(Arc::from(room));
                self.deliver_presence(target, exclude_user, message).await;
            }
            (Channel::Watch(user), None) => {
                let target = Target::Watchers(Arc::from(user));
                self.deliver_presence(target, None, message).await;
            }
            (Channel::Room(room), Some((epoch, offset))) => {
                let room: Arc<str> = Arc::from(room);
                self.fill_gap(redis, Kind::Room, &room, epoch, offset).await;
                let template = template(Target::Room(room.clone()), exclude_user, pending);
                let own = || self.room_limits(&room);
                let mirrored = Mirrored {
                    epoch,
                    offset,
                    message,
                };
                self.deliver_copy(&self.streams, &room, mirrored, template, own)
                    .await;
            }
            (Channel::User(user), Some((epoch, offset))) => {
                let user: Arc<str> = Arc::from(user);
                self.fill_gap(redis, Kind::User, &user, epoch, offset).await;
                let template = template(Target::User(user.clone()), exclude_user, pending);
                let mirrored = Mirrored {
                    epoch,
                    offset,
                    message,
                };
                self.deliver_copy(&self.users, &user, mirrored, template, || None)
                    .await;
            }
            (Channel::Room(room), None) => {
                let target = Target::Room(Arc::from(room));
                let (d, pending) = template(target, exclude_user, pending);
                let d = Delivery { ephemeral, ..d };
                self.deliver_plain((d, pending), message).await;
            }
            (Channel::Broadcast, None) => {
                let d = template(Target::Broadcast, exclude_user, pending);
                self.deliver_plain(d, message).await;
            }
            (channel, position) => {
                tracing::warn!(
                    ?channel,
                    ?position,
                    "cluster: an envelope out of place; ignored"
                );
            }
        }
    }

    /// After this node subscribed again: delivers what `name`'s stream got in Redis past this
    /// node's copy of it, if it keeps one.
    pub(crate) async fn resync(&self, redis: &Redis, kind: Kind, name: &str) {
        if self.streams_of(kind).position_of(name).is_none() {
            return;
        }
        if let Ok(head) = redis.head(kind, name, None, 0).await {
            let name: Arc<str> = Arc::from(name);
            let Position { epoch, offset } = head.position;
            self.fill_gap(redis, kind, &name, epoch, offset + 1).await;
        }
    }

    /// Fetches from Redis what this node's copy of `name`'s stream lacks before `offset`
    /// (messages that never arrived: the link was down, or lagged), and delivers it first.
    /// An event of another epoch (Redis lost the stream and it began again at 1) lacks what
    /// its new epoch holds before it: publishes Redis ran while this node resubscribed.
    async fn fill_gap(&self, redis: &Redis, kind: Kind, name: &Arc<str>, epoch: u64, offset: u64) {
        let streams = self.streams_of(kind);
        let Some(copy) = streams.position_of(name) else {
            return;
        };
        let after = if copy.epoch == epoch { copy.offset } else { 0 };
        if offset <= after + 1 {
            return;
        }
        let missing = offset - after - 1;
        redis.stats.gaps.fetch_add(missing, Relaxed);
        let fetched = redis.head(kind, name, Some(after), missing as usize).await;
        let mut got = 0;
        if let Ok(head) = fetched {
            if head.position.epoch == epoch {
                for (o, bytes) in head.messages.into_iter().filter(|(o, _)| *o < offset) {
                    let Some(message) = decode_message(&bytes) else {
                        continue;
                    };
                    let target = match kind {
                        Kind::Room => Target::Room(name.clone()),
                        Kind::User => Target::User(name.clone()),
                    };
                    let mirrored = Mirrored {
                        epoch,
                        offset: o,
                        message,
                    };
                    let own = || match kind {
                        Kind::Room => self.room_limits(name),
                        Kind::User => None,
                    };
                    let template = template(target, None, None);
                    self.deliver_copy(streams, name, mirrored, template, own)
                        .await;
                    got += 1;
                }
            }
        }
        let lost = missing.saturating_sub(got);
        if lost > 0 {
            redis.stats.lost.fetch_add(lost, Relaxed);
        }
    }

    fn streams_of(&self, kind: Kind) -> &Streams {
        match kind {
            Kind::Room => &self.streams,
            Kind::User => &self.users,
        }
    }

    /// Keeps a sequenced event in this node's copy of its stream and hands it to every hub,
    /// unless the copy had it already.
    async fn deliver_copy(
        &self,
        streams: &Streams,
        name: &Arc<str>,
        m: Mirrored,
        template: (Delivery, Option<Pending>),
        own: impl FnOnce() -> Option<StreamLimits>,
    ) {
        let (template, pending) = template;
        for shard in 0..self.inboxes.len() {
            self.reserve(shard).await;
        }
        let at = m.message.at;
        let event = message_event(m.message);
        let delivered = streams.mirror(name, m.epoch, m.offset, &event, at, own, |event| {
            for shard in 0..self.inboxes.len() {
                let d = Delivery {
                    event: event.clone(),
                    ..template.clone()
                };
                self.push_reserved(shard, ShardMsg::Deliver(d));
            }
        });
        if !delivered {
            for inbox in self.inboxes.iter() {
                inbox.queue.release();
            }
            if let Some(pending) = pending {
                pending.abandon();
            }
        }
    }

    /// Hands an event outside any stream to every hub.
    async fn deliver_plain(&self, template: (Delivery, Option<Pending>), message: Message) {
        let (d, _) = template;
        let d = Delivery {
            event: message_event(message),
            ..d
        };
        for shard in 0..self.inboxes.len() {
            self.send(shard, ShardMsg::Deliver(d.clone())).await;
        }
    }

    /// Appends `d`'s event to `name`'s stream in Redis, which publishes it to the nodes
    /// hosting its recipients (this one included, which delivers it as it comes back).
    pub(super) async fn publish_copy(
        &self,
        redis: &Redis,
        kind: Kind,
        name: &str,
        d: Delivery,
    ) -> Result<Published, BackplaneError> {
        let (nonce, elsewhere) = self.expect(redis, kind, name, &d);
        let header = Header {
            node: redis.node,
            nonce,
            ephemeral: false,
            presence: false,
            exclude_user: d.exclude_user.as_deref(),
        };
        let keep = match kind {
            Kind::Room => {
                self.room_limits(name)
                    .unwrap_or(*self.streams.defaults())
                    .size
            }
            Kind::User => self.users.defaults().size,
        };
        let message = d.event.stored(unix_ms());
        match redis
            .publish_stream(kind, name, &header, &message, keep)
            .await
        {
            Ok((_, offset, nodes)) => {
                if let Some(report) = elsewhere {
                    // Some node hosts the user: it is online, somewhere.
                    let found = (nodes > 0).then_some(d.index);
                    report.add(0, found);
                    for _ in 1..self.inboxes.len() {
                        report.add(0, []);
                    }
                }
                Ok(Published {
                    offset: Some(offset),
                    ..Published::default()
                })
            }
            Err(e) => {
                drop(redis.take_pending(nonce));
                Err(e)
            }
        }
    }

    /// Publishes an event outside any stream (ephemeral room events, broadcasts) to the
    /// nodes hosting its recipients.
    pub(super) async fn publish_plain(
        &self,
        redis: &Redis,
        d: Delivery,
    ) -> Result<(), BackplaneError> {
        let (channel, nonce) = match &d.target {
            Target::Room(room) => {
                let (nonce, elsewhere) = self.expect(redis, Kind::Room, room, &d);
                // Nothing here waits for what other nodes reached.
                if let Some(report) = elsewhere {
                    for _ in 0..self.inboxes.len() {
                        report.add(0, []);
                    }
                }
                (redis.names.channel(Kind::Room, room), nonce)
            }
            // Every node hears broadcasts, this one too.
            _ => (
                redis.names.broadcast(),
                redis.expect(d.exclude, d.report.clone(), d.index, self.inboxes.len()),
            ),
        };
        let header = Header {
            node: redis.node,
            nonce,
            ephemeral: d.ephemeral,
            presence: false,
            exclude_user: d.exclude_user.as_deref(),
        };
        let message = d.event.stored(unix_ms());
        let published = redis.publish_plain(channel, &header, &message).await;
        if published.is_err() {
            drop(redis.take_pending(nonce));
        }
        published
    }

    /// Keeps what this node needs of `d` until its event comes back, if it will (this node
    /// hosts the stream's recipients). Otherwise no hub here reports: the report is
    /// returned, for the caller to give it this node's parts, counting no connection.
    fn expect(
        &self,
        redis: &Redis,
        kind: Kind,
        name: &str,
        d: &Delivery,
    ) -> (u64, Option<Arc<crate::hub::Report>>) {
        let parts = self.inboxes.len();
        if redis.is_subscribed(kind, name) {
            let nonce = redis.expect(d.exclude, d.report.clone(), d.index, parts);
            return (nonce, None);
        }
        (redis.expect(None, None, 0, parts), d.report.clone())
    }

    /// Cluster mode's join: subscribed to the room's channel first, then placed in this
    /// node's copy of the stream at or after where Redis answered, with the messages after
    /// the client's position from Redis and the copy.
    pub(super) async fn join_copy(
        &self,
        redis: &Redis,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
        presence: Option<bool>,
    ) -> oneshot::Receiver<JoinDone> {
        let (done, answer) = oneshot::channel();
        let mut done = Some(done);
        let limits = self.room_limits(room).unwrap_or(*self.streams.defaults());
        let limit = if since.is_some() { limits.size + 1 } else { 0 };
        let refuse = |done: Option<oneshot::Sender<JoinDone>>| {
            if let Some(done) = done {
                let _ = done.send(Err(JoinRefused::Unavailable));
            }
        };
        if self.subscribe(redis, Kind::Room, room).await.is_err() {
            refuse(done.take());
            return answer;
        }
        for read in 1..=HEAD_READS {
            let Ok(head) = redis
                .head(Kind::Room, room, since.map(|s| s.1), limit)
                .await
            else {
                refuse(done.take());
                return answer;
            };
            self.catch_up(&self.streams, room, head.position).await;
            self.reserve(hub).await;
            let own = || self.room_limits(room);
            let placed = self.streams.with_head(room, head.position, own, |stream| {
                let recovery = since.map(|(epoch, offset)| recover(&head, stream, epoch, offset));
                if matches!(recovery, Some(None)) && read < HEAD_READS && ahead(stream, &head) {
                    return false;
                }
                let Some(done) = done.take() else {
                    return false;
                };
                let ticket = JoinTicket {
                    session,
                    room: room.clone(),
                    position: stream.position(),
                    recovery,
                    presence,
                    done,
                };
                self.push_reserved(hub, ShardMsg::Join(ticket));
                true
            });
            if placed {
                break;
            }
            self.release(hub);
        }
        answer
    }

    /// Whether `room`'s stream in Redis, of `epoch`, still holds every event after `after`
    /// (none trimmed, not begun again): what a Socket.IO socket recovered on this node
    /// replays with its join. `false` when Redis does not answer.
    pub(crate) async fn covers(&self, room: &str, epoch: &str, after: u64) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        match redis.head(Kind::Room, room, Some(after), 1).await {
            Ok(head) => holds_after(&head, epoch, after),
            Err(_) => false,
        }
    }

    /// Subscribes to `name`'s channel and waits for Redis to confirm it. A copy of the
    /// stream made while this node was not subscribed may lack what came meanwhile: it is let
    /// go, and made again from what Redis answers.
    /// Only the first of concurrent waiters lets it go, before Redis confirms: the others may
    /// be placed in the copy made after, which must stay.
    async fn subscribe(&self, redis: &Redis, kind: Kind, name: &str) -> Result<(), BackplaneError> {
        redis
            .subscribed(kind, name, || self.streams_of(kind).drop_copy(name))
            .await
    }

    /// Waits (a little) until this node's copy of `name`'s stream has what Redis answered
    /// with `head`: the events between are on their way here.
    async fn catch_up(&self, streams: &Streams, name: &str, head: Position) {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while let Some(copy) = streams.position_of(name) {
            // Past the deadline the copy is moved to Redis's head by `with_head`: what was
            // on its way is skipped as already there, and the answer covers it.
            if copy.epoch != head.epoch
                || copy.offset >= head.offset
                || tokio::time::Instant::now() >= deadline
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Cluster mode's history: read from Redis, within the room's age bound.
    pub(super) async fn history_copy(
        &self,
        redis: &Redis,
        room: &Arc<str>,
        query: Query,
    ) -> Result<(Position, Vec<Entry>), BackplaneError> {
        let (position, messages) = redis
            .read(room, query.after, query.before, query.limit)
            .await?;
        let ttl = self
            .room_limits(room)
            .unwrap_or(*self.streams.defaults())
            .ttl_ms;
        let now = unix_ms();
        let entries = messages
            .into_iter()
            .filter_map(|(offset, bytes)| {
                let m = decode_message(&bytes)?;
                (now.saturating_sub(m.at) <= ttl).then(|| Entry {
                    offset,
                    at: m.at,
                    event: stored_event(offset, m),
                })
            })
            .collect();
        let none = Position {
            epoch: 0,
            offset: 0,
        };
        Ok((position.unwrap_or(none), entries))
    }

    /// Cluster mode's mailbox: subscribed to the user's channel first, then what Redis keeps
    /// past the user's ack, and what this node's copy got since.
    pub(super) async fn mailbox_copy(&self, redis: &Redis, user: &Arc<str>) -> Option<Mailbox> {
        let limit = self.users.defaults().size + 1;
        let mut start = None;
        let mut read = 0;
        loop {
            read += 1;
            let head = async {
                if read == 1 {
                    self.subscribe(redis, Kind::User, user).await?;
                }
                // What this node's copy holds from here on came while the connection loads:
                // live messages it skips, which the answer must hold even if another device
                // acked them.
                start = self.users.position_of(user);
                redis.head(Kind::User, user, None, limit).await
            };
            let head = match head.await {
                Ok(head) => head,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "cluster: a mailbox could not be read; it waits for the next connection");
                    return None;
                }
            };
            self.catch_up(&self.users, user, head.position).await;
            let mailbox = self.users.with_head(
                user,
                head.position,
                || None,
                |stream| {
                    // Made by another connection at a later head: what lies between is read again.
                    if read < HEAD_READS && ahead(stream, &head) {
                        return None;
                    }
                    stream.wake();
                    let position = stream.position();
                    let mut events: BTreeMap<u64, Arc<OutEvent>> = head
                        .messages
                        .iter()
                        .filter(|(o, _)| *o > head.acked && *o <= position.offset)
                        .filter_map(|(o, bytes)| {
                            Some((*o, stored_event(*o, decode_message(bytes)?)))
                        })
                        .collect();
                    let after = match start {
                        Some(start) if start.epoch == position.epoch => start.offset,
                        _ => 0,
                    };
                    let arrived = Query {
                        limit: usize::MAX,
                        before: None,
                        after: Some(after),
                    };
                    let arrived = stream.read(&arrived).into_iter();
                    events.extend(arrived.map(|e| (e.offset, e.event)));
                    let events = events.into_values().collect();
                    Some(Mailbox {
                        position,
                        manual: head.manual,
                        events,
                        stored: false,
                    })
                },
            );
            if mailbox.is_some() {
                return mailbox;
            }
        }
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// A sequenced event as it arrived.
struct Mirrored {
    epoch: u64,
    offset: u64,
    message: Message,
}

/// The delivery of an arrived event (its event set later), with what its sending node kept.
fn template(
    target: Target,
    exclude_user: Option<Arc<str>>,
    pending: Option<Pending>,
) -> (Delivery, Option<Pending>) {
    let placeholder = OutEvent::new("", None, None, Bytes::new(), wsgate_protocol::Format::Json);
    let mut d = Delivery {
        exclude_user,
        ..Delivery::new(target, placeholder)
    };
    if let Some(p) = &pending {
        d.exclude = p.exclude;
        d.report = p.report.clone();
        d.index = p.index;
    }
    (d, pending)
}

/// The messages after `offset` of `epoch` for a member placed at `stream`'s position: from
/// what Redis answered (`head`), then from this node's copy; `None` if they cannot all be.
fn recover(head: &Head, stream: &Stream, epoch: &str, offset: u64) -> Recovery {
    let position = stream.position();
    if epoch != position.epoch_text() || head.position.epoch != position.epoch {
        return None;
    }
    if offset > position.offset.max(head.position.offset) {
        return None;
    }
    let mut events = Vec::new();
    let mut next = offset + 1;
    for (o, bytes) in &head.messages {
        if *o < next {
            continue;
        }
        if *o != next || *o > position.offset {
            break;
        }
        events.push(stored_event(*o, decode_message(bytes)?));
        next += 1;
    }
    if next <= position.offset {
        events.extend(stream.since(epoch, next - 1)?);
    }
    Some(events)
}

/// Whether this node's copy `stream` is past what Redis answered with `head` and lacks what
/// lies between (another join or connection made it at a later head meanwhile): the head is
/// read again.
fn ahead(stream: &Stream, head: &Head) -> bool {
    let position = stream.position();
    position.epoch == head.position.epoch
        && position.offset > head.position.offset
        && stream
            .since(&position.epoch_text(), head.position.offset)
            .is_none()
}

/// Whether `head` (read with the first message after `after`) shows its stream, of `epoch`,
/// holding every event after `after`.
fn holds_after(head: &Head, epoch: &str, after: u64) -> bool {
    let position = head.position;
    if position.epoch_text() != epoch || after > position.offset {
        return false;
    }
    after == position.offset || head.messages.first().is_some_and(|(o, _)| *o == after + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_what_came_after_a_point_in_its_epoch_unless_trimmed() {
        let head = |offset, first: Option<u64>| Head {
            position: Position { epoch: 255, offset },
            acked: 0,
            manual: false,
            messages: first.map(|o| (o, Bytes::new())).into_iter().collect(),
        };
        let epoch = "00000000000000ff";
        assert!(holds_after(&head(9, Some(5)), epoch, 4));
        assert!(holds_after(&head(9, None), epoch, 9), "nothing came after");
        assert!(!holds_after(&head(9, Some(7)), epoch, 4), "5 and 6 trimmed");
        assert!(!holds_after(&head(9, None), epoch, 4), "all trimmed");
        assert!(
            !holds_after(&head(9, Some(5)), "0000000000000001", 4),
            "another epoch"
        );
        assert!(!holds_after(&head(3, None), epoch, 4), "past the head");
    }

    #[test]
    fn a_copy_made_at_a_later_head_is_ahead_of_an_earlier_read() {
        let limits = StreamLimits {
            size: 100,
            bytes: 1 << 20,
            ttl_ms: 60_000,
        };
        let head = |offset| Head {
            position: Position { epoch: 7, offset },
            acked: 0,
            manual: false,
            messages: Vec::new(),
        };
        // Another join made the copy at Redis's head 10; then 11 and 12 arrived.
        let mut copy = Stream::new(7, 1_000);
        copy.jump(Position {
            epoch: 7,
            offset: 10,
        });
        for _ in 0..2 {
            let ev = crate::hub::test_event(b"1", wsgate_protocol::Format::Json)
                .sequenced(copy.next_offset());
            copy.append(ev, 1_000, &limits);
        }
        assert!(ahead(&copy, &head(8)), "9 and 10 are not in the copy");
        assert!(!ahead(&copy, &head(10)), "the copy holds all after 10");
        assert!(!ahead(&copy, &head(12)), "at the head");
        assert!(
            !ahead(&copy, &head(13)),
            "behind the head: caught up, not read again"
        );
        let other = Head {
            position: Position {
                epoch: 8,
                offset: 2,
            },
            ..head(0)
        };
        assert!(!ahead(&copy, &other), "another epoch: the copy jumps");
    }
}
