//! The local backplane: the other shards of this process, each reached through its bounded,
//! lock-free inbox; the process-wide [`Directory`]; and the rooms' [`Streams`].
//!
//! Every message into an inbox first reserves a slot ([`Local::reserve`]), so a room event can
//! be handed to every inbox under its stream's lock without waiting there: the order in which
//! a stream's events enter the inboxes is their offset order. An inbox is drained by its
//! shard's inbox loop, which never sends anything itself, so reservations always come free.

mod presence;
mod remote;
mod rooms;

pub(crate) use rooms::room_closed_event;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, Notify};

use super::directory::{Creator, Directory, RoomInfo, RoomOptions};
use super::reads::Reads;
use super::redis::{Kind, Redis};
use super::streams::{stored_event, unix_ms, Round, Streams};
use crate::hub::{
    presence_event, Backplane, BackplaneError, Change, Delivery, Entry, Hub, JoinDone, JoinTicket,
    Mailbox, Position, Published, Query, RoomRefused, StreamLimits, Target, Task,
};
use crate::queue::Bounded;
use crate::store::{Slot, Store};

/// What travels through a shard's inbox. Handling one never sends to another inbox.
pub(crate) enum ShardMsg {
    /// An event to deliver to this shard's recipients.
    Deliver(Delivery),
    /// Work to run on this shard's hub.
    Run(Task<Local>),
    /// A join to complete at its place in its room's stream.
    Join(JoinTicket),
}

/// A shard's inbox: bounded, lock-free, with a wake-up for the shard.
struct Inbox {
    queue: Bounded<ShardMsg>,
    /// Wakes the shard's inbox task.
    ready: Notify,
}

/// Most rounds of loading one mailbox (see [`Backplane::load_mailbox`]): two suffice unless
/// the user's last connection leaves meanwhile.
const MAILBOX_ROUNDS: usize = 4;

/// Every shard's inbox, the directory and the streams.
pub(crate) struct Local {
    inboxes: Box<[Inbox]>,
    directory: Directory,
    streams: Streams,
    /// Every user's stream: its private messages until acknowledged.
    users: Streams,
    /// Every user's read markers.
    reads: Reads,
    /// Where the streams and the directory write what must survive a restart.
    store: Arc<Store>,
    /// Cluster mode: the link to Redis, the home of every stream (see `remote.rs`).
    redis: Option<Arc<Redis>>,
    /// Presence events a full inbox could not take (logged at the first and every 1024th, so a
    /// mass disconnect into stalled shards cannot flood the log).
    presence_dropped: AtomicU64,
}

/// What a [`Local`] is made of besides its inboxes.
pub(crate) struct Parts {
    pub(crate) directory: Directory,
    pub(crate) streams: Streams,
    pub(crate) users: Streams,
    pub(crate) reads: Reads,
    pub(crate) store: Arc<Store>,
    pub(crate) redis: Option<Arc<Redis>>,
}

impl Local {
    /// Inboxes of `capacity` messages for `shards` shards, and `parts`.
    pub(crate) fn new(shards: usize, capacity: usize, parts: Parts) -> Local {
        let Parts {
            directory,
            streams,
            users,
            reads,
            store,
            redis,
        } = parts;
        let inboxes = (0..shards)
            .map(|_| Inbox {
                queue: Bounded::new(capacity),
                ready: Notify::new(),
            })
            .collect();
        Local {
            inboxes,
            directory,
            streams,
            users,
            reads,
            store,
            redis,
            presence_dropped: AtomicU64::new(0),
        }
    }

    /// The process-wide directory.
    pub(crate) fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The rooms' streams.
    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The users' read markers.
    pub(crate) fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The users' streams.
    pub(crate) fn user_streams(&self) -> &Streams {
        &self.users
    }

    /// Creates a room (see [`Directory::create_room`]); a stream it already has (say, of a
    /// room of that name made by a join) keeps to the new room's history options from now on.
    pub(crate) fn create_room(
        &self,
        room: &Arc<str>,
        creator: Creator,
        options: RoomOptions,
        slot: Slot<'_>,
    ) -> Result<RoomInfo, RoomRefused> {
        let info = self.directory.create_room(room, creator, options, slot)?;
        self.streams.set_limits(room, || self.room_limits(room));
        Ok(info)
    }

    /// Closes a room (see [`Directory::close_room`]); a stream it leaves behind keeps to the
    /// server's defaults again, as a room a join makes of that name would.
    pub(crate) fn close_room(&self, room: &str, slot: Slot<'_>) -> bool {
        let members = self.members_here(room);
        let closed = self.directory.close_room(room, slot);
        self.members_gone(room, members);
        if closed {
            self.streams.set_limits(room, || self.room_limits(room));
        }
        closed
    }

    /// The limits `room`'s stream keeps to instead of the server's defaults, if the room
    /// has its own. Asked under the stream's bucket lock (see `streams.rs`), so that whoever
    /// changes them last also sets them last.
    fn room_limits(&self, room: &str) -> Option<StreamLimits> {
        self.directory.history(room)?.own(self.streams.defaults())
    }

    /// Appends `delivery`'s event to `streams`' stream `name` and hands it to every inbox,
    /// all under the stream's lock; a stream it makes keeps to the limits `own` answers.
    async fn append_everywhere(
        &self,
        streams: &Streams,
        name: &Arc<str>,
        own: impl FnOnce() -> Option<StreamLimits>,
        delivery: Delivery,
    ) -> Published {
        let (writes, mut waited) = streams.reserve().await;
        for shard in 0..self.inboxes.len() {
            waited |= self.reserve(shard).await;
        }
        let now = unix_ms();
        let appended = streams.append(name, writes, &delivery.event, now, own, |event| {
            let delivery = Delivery {
                event: event.clone(),
                ..delivery.clone()
            };
            for shard in 0..self.inboxes.len() {
                self.push_reserved(shard, ShardMsg::Deliver(delivery.clone()));
            }
        });
        Published {
            waited,
            offset: appended.event.offset(),
            durable: appended.durable,
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Takes one slot of shard `shard`'s inbox, waiting while it is full: nothing accepted is
    /// dropped, and backpressure reaches the sender instead of memory growing. Returns whether
    /// it had to wait.
    async fn reserve(&self, shard: usize) -> bool {
        let inbox = &self.inboxes[shard];
        inbox.queue.reserve(|| inbox.ready.notify_one()).await
    }

    /// Gives back a slot reserved and not used.
    fn release(&self, shard: usize) {
        self.inboxes[shard].queue.release();
    }

    /// Queues a message in a slot reserved before.
    fn push_reserved(&self, shard: usize, msg: ShardMsg) {
        let inbox = &self.inboxes[shard];
        if inbox.queue.push_reserved(msg).is_err() {
            // Slots never outnumber the queue's capacity: a bug, reported, never silent.
            tracing::error!(
                shard,
                "an inbox was full despite a reserved slot; message dropped"
            );
        }
        inbox.ready.notify_one();
    }

    /// Hands a message to shard `shard`, waiting for room; returns whether it waited.
    pub(crate) async fn send(&self, shard: usize, msg: ShardMsg) -> bool {
        let waited = self.reserve(shard).await;
        self.push_reserved(shard, msg);
        waited
    }

    /// Waits until shard `shard`'s inbox may hold messages.
    pub(crate) async fn wait_ready(&self, shard: usize) {
        let inbox = &self.inboxes[shard];
        if inbox.queue.is_empty() {
            inbox.ready.notified().await;
        }
    }

    /// Takes the next message from shard `shard`'s inbox, freeing its slot.
    pub(crate) fn pop(&self, shard: usize) -> Option<ShardMsg> {
        self.inboxes[shard].queue.pop()
    }

    /// Tells senders waiting on shard `shard`'s inbox that there is room.
    pub(crate) fn drained(&self, shard: usize) {
        self.inboxes[shard].queue.drained();
    }

    /// Counts a connection of `user` (see [`Directory::add_connection`]), announcing it online
    /// to its watchers.
    pub(crate) fn connect(&self, user: &Arc<str>) -> bool {
        if let Some(redis) = &self.redis {
            redis.want(Kind::User, user);
        }
        let added = self
            .directory
            .add_connection(user, |change| self.announce(change));
        if added {
            self.presence_user(user);
        }
        added
    }

    /// Counts a connection of `user` fewer; its last starts the grace, and lets its stream
    /// spill to the store.
    pub(crate) fn disconnect(&self, user: &str) {
        let last = self
            .directory
            .remove_connection(user, Instant::now(), |change| self.announce(change));
        if let Some(redis) = &self.redis {
            redis.presence.user_changed(&Arc::from(user));
        }
        if last {
            match &self.redis {
                // The next connection reads the mailbox from Redis.
                Some(_) => self.users.drop_copy(user),
                None => self.users.spill(user),
            }
        }
    }

    /// Announces offline the users whose grace is over (the sweep calls it).
    pub(crate) fn expire_graces(&self) {
        self.directory
            .expire_graces(Instant::now(), |change| self.announce(change));
    }

    /// Hands a presence change to every hub, called under the directory lock that decided it,
    /// so that every hub receives the changes of a room or a user in the order they happened.
    /// It never waits: a hub whose inbox is full (`SHARD_INBOX_CAPACITY` messages queued) misses
    /// the change, which is logged. Presence is ephemeral: a client catches up with `members`
    /// or `watch`.
    fn announce(&self, change: Change<'_>) {
        if self.redis.is_some() {
            // Cluster mode: decided in Redis, delivered as it comes back (`presence.rs`).
            return;
        }
        let delivery = presence_event(change);
        for shard in 0..self.inboxes.len() {
            if self.inboxes[shard].queue.try_reserve() {
                self.push_reserved(shard, ShardMsg::Deliver(delivery.clone()));
            } else {
                let dropped = self.presence_dropped.fetch_add(1, Ordering::Relaxed);
                if dropped.is_multiple_of(1024) {
                    tracing::warn!(
                        shard,
                        event = delivery.event.name(),
                        dropped = dropped + 1,
                        "a shard's inbox is full: a presence event is dropped there"
                    );
                }
            }
        }
    }
}

impl Backplane for Local {
    fn hubs(&self) -> usize {
        self.inboxes.len()
    }

    async fn publish(&self, delivery: Delivery) -> Result<bool, BackplaneError> {
        if let Some(redis) = &self.redis {
            if matches!(delivery.target, Target::Room(_) | Target::Broadcast) {
                return self.publish_plain(redis, delivery).await.map(|()| false);
            }
        }
        let mut waited = false;
        for shard in 0..self.inboxes.len() {
            waited |= self.send(shard, ShardMsg::Deliver(delivery.clone())).await;
        }
        Ok(waited)
    }

    async fn run_everywhere(&self, task: Task<Self>) {
        for shard in 0..self.inboxes.len() {
            self.send(shard, ShardMsg::Run(task.clone())).await;
        }
    }

    async fn publish_stream(
        &self,
        room: &Arc<str>,
        delivery: Delivery,
    ) -> Result<Published, BackplaneError> {
        if let Some(redis) = &self.redis {
            return self.publish_copy(redis, Kind::Room, room, delivery).await;
        }
        let own = || self.room_limits(room);
        Ok(self
            .append_everywhere(&self.streams, room, own, delivery)
            .await)
    }

    async fn publish_user(
        &self,
        user: &Arc<str>,
        delivery: Delivery,
    ) -> Result<Published, BackplaneError> {
        let published = match &self.redis {
            Some(redis) => self.publish_copy(redis, Kind::User, user, delivery).await?,
            None => {
                self.append_everywhere(&self.users, user, || None, delivery)
                    .await
            }
        };
        // The offset is the recipient's (in its event), not an answer for the sender.
        Ok(Published {
            offset: None,
            ..published
        })
    }

    fn mailbox(&self, user: &str) -> Option<Mailbox> {
        if self.redis.is_some() {
            // Always read from Redis, in the load.
            return (self.users.defaults().size > 0).then(|| Mailbox {
                position: Position {
                    epoch: 0,
                    offset: 0,
                },
                manual: false,
                events: Vec::new(),
                stored: true,
            });
        }
        let (position, manual, waiting) = self.users.mailbox(user)?;
        Some(Mailbox {
            position,
            manual,
            stored: waiting.spilled.is_some(),
            events: waiting.held,
        })
    }

    async fn load_mailbox(&self, user: &Arc<str>) -> Option<Mailbox> {
        if let Some(redis) = &self.redis {
            return self.mailbox_copy(redis, user).await;
        }
        let mut events = Vec::new();
        let mut after = 0;
        // Round one wakes the stream, so what comes after its load is held in memory and
        // round two ends it; more rounds only if the user's stream spilled again meanwhile.
        for _ in 0..MAILBOX_ROUNDS {
            let (slot, _) = self.store.reserve().await;
            match self.users.load_round(user, after, slot)? {
                Round::Done {
                    position,
                    manual,
                    held,
                } => {
                    events.extend(held);
                    return Some(Mailbox {
                        position,
                        manual,
                        events,
                        stored: false,
                    });
                }
                Round::Load { last, wait, .. } => {
                    let loaded = wait.await.unwrap_or_default();
                    let fresh = loaded.into_iter().filter(|(o, _)| *o > after && *o <= last);
                    events.extend(fresh.map(|(o, m)| stored_event(o, m)));
                    after = last;
                }
            }
        }
        // Out of rounds: what was loaded, and a position up to it only, so that nothing
        // after it counts as delivered; the rest waits for the next connection.
        let (position, manual, _) = self.users.mailbox(user)?;
        Some(Mailbox {
            position: Position {
                offset: after,
                ..position
            },
            manual,
            events,
            stored: false,
        })
    }

    fn delivered(&self, user: &Arc<str>, offset: u64) {
        self.users.delivered(user, offset);
        if let Some(redis) = &self.redis {
            redis.delivered(user, offset);
        }
    }

    async fn ack(&self, user: &Arc<str>, offset: u64) -> Result<Position, BackplaneError> {
        let remote = match &self.redis {
            Some(redis) => Some(redis.ack(user, offset, true).await?),
            None => None,
        };
        let (writes, _) = self.users.reserve().await;
        let position = self.users.ack(user, offset, writes);
        Ok(remote.unwrap_or(position))
    }

    async fn join_stream(
        &self,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
        presence: Option<bool>,
    ) -> oneshot::Receiver<JoinDone> {
        if let Some(redis) = &self.redis {
            return self
                .join_copy(redis, hub, session, room, since, presence)
                .await;
        }
        let (done, answer) = oneshot::channel();
        let (head, _) = self.store.reserve().await;
        self.reserve(hub).await;
        let own = || self.room_limits(room);
        self.streams.with(room, head, own, |stream| {
            let ticket = JoinTicket {
                session,
                room: room.clone(),
                position: stream.position(),
                recovery: since.map(|(epoch, offset)| stream.since(epoch, offset)),
                presence,
                done,
            };
            self.push_reserved(hub, ShardMsg::Join(ticket));
        });
        answer
    }

    async fn history(
        &self,
        room: &Arc<str>,
        query: Query,
    ) -> Result<(Position, Vec<Entry>), BackplaneError> {
        if let Some(redis) = &self.redis {
            return self.history_copy(redis, room, query).await;
        }
        let (head, _) = self.store.reserve().await;
        let own = || self.room_limits(room);
        Ok(self.streams.with(room, head, own, |stream| {
            (stream.position(), stream.read(&query))
        }))
    }

    fn add_member(&self, room: &Arc<str>, user: &Arc<str>) -> Result<(), RoomRefused> {
        self.directory
            .add_member(room, user, |change| self.announce(change))?;
        if let Some(redis) = &self.redis {
            redis.want(Kind::Room, room);
            redis.presence.member_changed(room, user);
        }
        Ok(())
    }

    fn remove_member(&self, room: &str, user: &str) {
        self.directory
            .remove_member(room, user, |change| self.announce(change));
        if let Some(redis) = &self.redis {
            redis
                .presence
                .member_changed(&Arc::from(room), &Arc::from(user));
        }
    }

    fn follow(&self, room: &str) -> bool {
        self.directory.follow(room)
    }

    fn unfollow(&self, room: &str) {
        self.directory.unfollow(room);
    }

    fn watch(&self, user: &Arc<str>) -> bool {
        if let Some(redis) = &self.redis {
            redis.want_watch(user);
        }
        self.directory.watch(user)
    }

    fn unwatch(&self, user: &str) {
        self.directory.unwatch(user);
    }

    fn online(&self, user: &str) -> bool {
        self.directory.presence_of(user).0
    }
}

/// A shard's hub on the local backplane.
pub(crate) type LocalHub = Hub<Local>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wsgate_protocol::Format;

    use super::*;
    use crate::hub::{test_event as event, Target};

    /// A backplane of `shards` inboxes of `capacity`, with no grace, tiny streams and no store.
    fn local(shards: usize, capacity: usize, max_per_user: u32) -> Local {
        let rules = super::super::PresenceRules {
            grace: std::time::Duration::ZERO,
            rooms_default: true,
            max_leaving: 1,
        };
        let limits = crate::hub::StreamLimits {
            size: 1,
            bytes: 1,
            ttl_ms: 1,
        };
        let store = Arc::new(Store::memory());
        Local::new(
            shards,
            capacity,
            Parts {
                directory: Directory::new(max_per_user, 1, rules),
                streams: Streams::new(crate::store::Kind::Room, limits, 1, store.clone()),
                users: Streams::new(crate::store::Kind::User, limits, 1, store.clone()),
                reads: Reads::new(1),
                store,
                redis: None,
            },
        )
    }

    #[tokio::test]
    async fn a_presence_event_never_waits_for_a_full_inbox() {
        let local = local(2, 1, 2);
        let bob: Arc<str> = "bob".into();
        local.directory().watch(&bob);
        let filler = Delivery::new(Target::User("u".into()), event(b"1", Format::Json));
        local.send(0, ShardMsg::Deliver(filler)).await;
        assert!(local.connect(&bob), "not held up by shard 0's full inbox");
        let name = |msg: Option<ShardMsg>| match msg {
            Some(ShardMsg::Deliver(d)) => d.event.name().to_owned(),
            _ => String::new(),
        };
        assert_eq!(name(local.pop(1)), "user.online");
        assert_eq!(name(local.pop(0)), "chat", "only the filler");
        assert!(local.pop(0).is_none(), "dropped there");
        assert_eq!(local.presence_dropped.load(Ordering::Relaxed), 1);
        local.disconnect("bob");
        assert_eq!(name(local.pop(0)), "user.offline", "room again: delivered");
        assert_eq!(name(local.pop(1)), "user.offline");
    }

    #[tokio::test]
    async fn a_full_inbox_makes_the_sender_wait_without_loss() {
        let router = Arc::new(local(1, 2, 1));
        let d = Delivery::new(Target::User("u".into()), event(b"1", Format::Json));
        router.send(0, ShardMsg::Deliver(d.clone())).await;
        router.send(0, ShardMsg::Deliver(d.clone())).await;
        let r2 = router.clone();
        let d2 = ShardMsg::Deliver(d.clone());
        let sender = tokio::spawn(async move { r2.send(0, d2).await });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished());
        assert!(router.pop(0).is_some());
        router.drained(0);
        sender.await.unwrap();
        assert!(router.pop(0).is_some());
        assert!(router.pop(0).is_some());
        assert!(router.pop(0).is_none());
    }
}
