//! The local backplane: the other shards of this process, each reached through its bounded,
//! lock-free inbox; the process-wide [`Directory`]; and the rooms' [`Streams`].
//!
//! Every message into an inbox first reserves a slot ([`Local::reserve`]), so a room event can
//! be handed to every inbox under its stream's lock without waiting there: the order in which
//! a stream's events enter the inboxes is their offset order. An inbox is drained by its
//! shard's inbox loop, which never sends anything itself, so reservations always come free.

use std::sync::Arc;

use tokio::sync::{oneshot, Notify};

use super::directory::Directory;
use super::reads::Reads;
use super::streams::{unix_ms, Streams};
use crate::hub::{
    Backplane, Delivery, Entry, Hub, JoinDone, JoinTicket, OutEvent, Position, Published, Query,
    RoomRefused, Task,
};
use crate::queue::Bounded;
use crate::store::Store;

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
}

impl Local {
    /// Inboxes of `capacity` messages for `shards` shards, an empty directory, no streams.
    pub(crate) fn new(
        shards: usize,
        capacity: usize,
        directory: Directory,
        streams: Streams,
        users: Streams,
        reads: Reads,
        store: Arc<Store>,
    ) -> Local {
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

    /// Appends `delivery`'s event to `streams`' stream `name` and hands it to every inbox,
    /// all under the stream's lock.
    async fn append_everywhere(
        &self,
        streams: &Streams,
        name: &Arc<str>,
        delivery: Delivery,
    ) -> Published {
        let (writes, mut waited) = streams.reserve().await;
        for shard in 0..self.inboxes.len() {
            waited |= self.reserve(shard).await;
        }
        let appended = streams.append(name, writes, &delivery.event, unix_ms(), |event| {
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
}

impl Backplane for Local {
    fn hubs(&self) -> usize {
        self.inboxes.len()
    }

    async fn publish(&self, delivery: Delivery) -> bool {
        let mut waited = false;
        for shard in 0..self.inboxes.len() {
            waited |= self.send(shard, ShardMsg::Deliver(delivery.clone())).await;
        }
        waited
    }

    async fn run_everywhere(&self, task: Task<Self>) {
        for shard in 0..self.inboxes.len() {
            self.send(shard, ShardMsg::Run(task.clone())).await;
        }
    }

    async fn publish_stream(&self, room: &Arc<str>, delivery: Delivery) -> Published {
        self.append_everywhere(&self.streams, room, delivery).await
    }

    async fn publish_user(&self, user: &Arc<str>, delivery: Delivery) -> Published {
        self.append_everywhere(&self.users, user, delivery).await
    }

    fn mailbox(&self, user: &str) -> Option<(Position, Vec<Arc<OutEvent>>, bool)> {
        self.users
            .peek(user, |s| (s.position(), s.unacked(), s.acked().1))
    }

    fn delivered(&self, user: &Arc<str>, offset: u64) {
        self.users.delivered(user, offset);
    }

    async fn ack(&self, user: &Arc<str>, offset: u64) -> Position {
        let (writes, _) = self.users.reserve().await;
        self.users.ack(user, offset, writes)
    }

    async fn join_stream(
        &self,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
    ) -> oneshot::Receiver<JoinDone> {
        let (done, answer) = oneshot::channel();
        let (head, _) = self.store.reserve().await;
        self.reserve(hub).await;
        self.streams.with(room, head, |stream| {
            let ticket = JoinTicket {
                session,
                room: room.clone(),
                position: stream.position(),
                recovery: since.map(|(epoch, offset)| stream.since(epoch, offset)),
                done,
            };
            self.push_reserved(hub, ShardMsg::Join(ticket));
        });
        answer
    }

    async fn history(&self, room: &Arc<str>, query: Query) -> (Position, Vec<Entry>) {
        let (head, _) = self.store.reserve().await;
        self.streams.with(room, head, |stream| {
            (stream.position(), stream.read(&query))
        })
    }

    fn add_member(&self, room: &Arc<str>) -> Result<(), RoomRefused> {
        self.directory.add_member(room)
    }

    fn remove_member(&self, room: &str) {
        self.directory.remove_member(room);
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

    #[tokio::test]
    async fn a_full_inbox_makes_the_sender_wait_without_loss() {
        let limits = crate::hub::StreamLimits {
            size: 1,
            bytes: 1,
            ttl_ms: 1,
        };
        let store = Arc::new(Store::memory());
        let router = Arc::new(Local::new(
            1,
            2,
            Directory::new(1, 1),
            Streams::new(crate::store::Kind::Room, limits, 1, store.clone()),
            Streams::new(crate::store::Kind::User, limits, 1, store.clone()),
            Reads::new(1),
            store,
        ));
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
