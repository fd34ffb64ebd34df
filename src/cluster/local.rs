//! The local backplane: the other shards of this process, each reached through its bounded,
//! lock-free inbox; and the process-wide [`Directory`].

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use super::directory::Directory;
use crate::hub::{Backplane, Delivery, Hub, RoomRefused, Task};

/// What travels through a shard's inbox.
pub(crate) enum ShardMsg {
    /// An event to deliver to this shard's recipients.
    Deliver(Delivery),
    /// Work to run on this shard's hub.
    Run(Task<Local>),
}

/// A shard's inbox: bounded, lock-free, with wake-ups for the shard and for waiting senders.
struct Inbox {
    queue: ArrayQueue<ShardMsg>,
    /// Wakes the shard's inbox task.
    ready: Notify,
    /// Wakes senders waiting for room in a full inbox.
    space: Notify,
}

/// Every shard's inbox, and the directory.
pub(crate) struct Local {
    inboxes: Box<[Inbox]>,
    directory: Directory,
}

impl Local {
    /// Inboxes of `capacity` messages for `shards` shards, and an empty directory.
    pub(crate) fn new(shards: usize, capacity: usize, directory: Directory) -> Local {
        let inboxes = (0..shards)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity),
                ready: Notify::new(),
                space: Notify::new(),
            })
            .collect();
        Local { inboxes, directory }
    }

    /// The process-wide directory.
    pub(crate) fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Hands a message to shard `shard`. A full inbox makes the sender wait: nothing accepted
    /// is dropped, and backpressure reaches the sender instead of memory growing.
    pub(crate) async fn send(&self, shard: usize, mut msg: ShardMsg) {
        let inbox = &self.inboxes[shard];
        loop {
            let space = inbox.space.notified();
            tokio::pin!(space);
            // Register before trying, so a drain between the try and the wait is not missed.
            space.as_mut().enable();
            match self.try_send(shard, msg) {
                Ok(()) => return,
                Err(back) => {
                    msg = back;
                    inbox.ready.notify_one();
                    space.await;
                }
            }
        }
    }

    /// Hands a message to shard `shard` if its inbox has room, from any thread; gives it back
    /// otherwise.
    pub(crate) fn try_send(&self, shard: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        let inbox = &self.inboxes[shard];
        inbox.queue.push(msg)?;
        inbox.ready.notify_one();
        Ok(())
    }

    /// Waits until shard `shard`'s inbox may hold messages.
    pub(crate) async fn wait_ready(&self, shard: usize) {
        let inbox = &self.inboxes[shard];
        if inbox.queue.is_empty() {
            inbox.ready.notified().await;
        }
    }

    /// Takes the next message from shard `shard`'s inbox.
    pub(crate) fn pop(&self, shard: usize) -> Option<ShardMsg> {
        self.inboxes[shard].queue.pop()
    }

    /// Tells senders waiting on shard `shard`'s inbox that there is room.
    pub(crate) fn drained(&self, shard: usize) {
        self.inboxes[shard].space.notify_waiters();
    }

    fn others(&self, from: usize) -> impl Iterator<Item = usize> {
        (0..self.inboxes.len()).filter(move |&s| s != from)
    }
}

impl Backplane for Local {
    fn hubs(&self) -> usize {
        self.inboxes.len()
    }

    async fn publish(&self, from: usize, delivery: Delivery) {
        for shard in self.others(from) {
            self.send(shard, ShardMsg::Deliver(delivery.clone())).await;
        }
    }

    async fn run_on_others(&self, from: usize, task: Task<Self>) {
        for shard in self.others(from) {
            self.send(shard, ShardMsg::Run(task.clone())).await;
        }
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
        let router = Arc::new(Local::new(1, 2, Directory::new(1, 1)));
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
