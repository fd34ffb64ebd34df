//! The local backplane: the other shards of this process, each reached through its bounded,
//! lock-free inbox; the process-wide [`Directory`]; and the rooms' [`Streams`].
//!
//! Every message into an inbox first reserves a slot ([`Local::reserve`]), so a room event can
//! be handed to every inbox under its stream's lock without waiting there: the order in which
//! a stream's events enter the inboxes is their offset order. An inbox is drained by its
//! shard's inbox loop, which never sends anything itself, so reservations always come free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use tokio::sync::{oneshot, Notify};

use super::directory::Directory;
use super::streams::{unix_ms, Streams};
use crate::hub::{
    Backplane, Delivery, Entry, Hub, JoinDone, JoinTicket, Position, Query, RoomRefused, Task,
};

/// What travels through a shard's inbox. Handling one never sends to another inbox.
pub(crate) enum ShardMsg {
    /// An event to deliver to this shard's recipients.
    Deliver(Delivery),
    /// Work to run on this shard's hub.
    Run(Task<Local>),
    /// A join to complete at its place in its room's stream.
    Join(JoinTicket),
}

/// A shard's inbox: bounded, lock-free, with wake-ups for the shard and for waiting senders.
struct Inbox {
    queue: ArrayQueue<ShardMsg>,
    /// Slots not reserved by a sender (at most the queue's capacity).
    free: AtomicUsize,
    /// Wakes the shard's inbox task.
    ready: Notify,
    /// Wakes senders waiting for room in a full inbox.
    space: Notify,
}

/// Every shard's inbox, the directory and the streams.
pub(crate) struct Local {
    inboxes: Box<[Inbox]>,
    directory: Directory,
    streams: Streams,
}

impl Local {
    /// Inboxes of `capacity` messages for `shards` shards, an empty directory, no streams.
    pub(crate) fn new(
        shards: usize,
        capacity: usize,
        directory: Directory,
        streams: Streams,
    ) -> Local {
        let inboxes = (0..shards)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity),
                free: AtomicUsize::new(capacity),
                ready: Notify::new(),
                space: Notify::new(),
            })
            .collect();
        Local {
            inboxes,
            directory,
            streams,
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

    /// Takes one slot of shard `shard`'s inbox if one is free.
    fn try_reserve(&self, shard: usize) -> bool {
        self.inboxes[shard]
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes one slot of shard `shard`'s inbox, waiting while it is full: nothing accepted is
    /// dropped, and backpressure reaches the sender instead of memory growing. Returns whether
    /// it had to wait.
    async fn reserve(&self, shard: usize) -> bool {
        let inbox = &self.inboxes[shard];
        let mut waited = false;
        loop {
            let space = inbox.space.notified();
            tokio::pin!(space);
            // Register before trying, so a drain between the try and the wait is not missed.
            space.as_mut().enable();
            if self.try_reserve(shard) {
                return waited;
            }
            waited = true;
            inbox.ready.notify_one();
            space.await;
        }
    }

    /// Queues a message in a slot reserved before.
    fn push_reserved(&self, shard: usize, msg: ShardMsg) {
        let inbox = &self.inboxes[shard];
        if inbox.queue.push(msg).is_err() {
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
        let inbox = &self.inboxes[shard];
        let msg = inbox.queue.pop()?;
        inbox.free.fetch_add(1, Ordering::AcqRel);
        Some(msg)
    }

    /// Tells senders waiting on shard `shard`'s inbox that there is room.
    pub(crate) fn drained(&self, shard: usize) {
        self.inboxes[shard].space.notify_waiters();
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

    async fn publish_stream(&self, room: &Arc<str>, delivery: Delivery) -> (bool, u64) {
        let mut waited = false;
        for shard in 0..self.inboxes.len() {
            waited |= self.reserve(shard).await;
        }
        let now = unix_ms();
        let limits = *self.streams.limits();
        let offset = self.streams.with(room, |stream| {
            let offset = stream.next_offset();
            let event = delivery.event.sequenced(offset);
            stream.append(event.clone(), now, &limits);
            let delivery = Delivery { event, ..delivery };
            for shard in 0..self.inboxes.len() {
                self.push_reserved(shard, ShardMsg::Deliver(delivery.clone()));
            }
            offset
        });
        (waited, offset)
    }

    async fn join_stream(
        &self,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
    ) -> oneshot::Receiver<JoinDone> {
        let (done, answer) = oneshot::channel();
        self.reserve(hub).await;
        self.streams.with(room, |stream| {
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
        self.streams
            .with(room, |stream| (stream.position(), stream.read(&query)))
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
        let router = Arc::new(Local::new(
            1,
            2,
            Directory::new(1, 1),
            Streams::new(limits, 1),
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
