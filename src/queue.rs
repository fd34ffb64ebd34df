//! A bounded, lock-free queue whose senders first reserve a slot: a shard's inbox and the
//! store's write queue. Reserving before taking a lock lets a sender push under that lock
//! without ever waiting there (the order of pushes is then the lock's order), and a full queue
//! makes senders wait instead of dropping or growing.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

/// A queue of at most its capacity of `T`, with slots reserved ahead of pushes.
pub(crate) struct Bounded<T> {
    queue: ArrayQueue<T>,
    /// Slots not reserved by a sender (at most the queue's capacity).
    free: AtomicUsize,
    /// Wakes senders waiting for room in a full queue.
    space: Notify,
}

impl<T> Bounded<T> {
    /// An empty queue of `capacity` (at least 1) items.
    pub(crate) fn new(capacity: usize) -> Bounded<T> {
        let capacity = capacity.max(1);
        Bounded {
            queue: ArrayQueue::new(capacity),
            free: AtomicUsize::new(capacity),
            space: Notify::new(),
        }
    }

    /// The most items it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Items queued now.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes one slot if one is free.
    pub(crate) fn try_reserve(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes one slot, waiting while the queue is full (`on_wait` runs before each wait, to
    /// wake whoever drains it). Returns whether it had to wait.
    pub(crate) async fn reserve(&self, on_wait: impl Fn()) -> bool {
        let mut waited = false;
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            // Register before trying, so a drain between the try and the wait is not missed.
            space.as_mut().enable();
            if self.try_reserve() {
                return waited;
            }
            waited = true;
            on_wait();
            space.await;
        }
    }

    /// Gives back a slot reserved and not used.
    pub(crate) fn release(&self) {
        self.free.fetch_add(1, Ordering::AcqRel);
        self.space.notify_waiters();
    }

    /// Queues an item in a slot reserved before. Slots never outnumber the capacity, so this
    /// fails only on a bug; the item comes back then.
    pub(crate) fn push_reserved(&self, item: T) -> Result<(), T> {
        self.queue.push(item)
    }

    /// Takes the next item, freeing its slot (call [`Bounded::drained`] after a run of pops).
    pub(crate) fn pop(&self) -> Option<T> {
        let item = self.queue.pop()?;
        self.free.fetch_add(1, Ordering::AcqRel);
        Some(item)
    }

    /// Tells waiting senders that there is room.
    pub(crate) fn drained(&self) {
        self.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_makes_the_sender_wait_without_loss() {
        let q = std::sync::Arc::new(Bounded::new(1));
        assert!(!q.reserve(|| ()).await);
        assert!(q.push_reserved(1).is_ok());
        let q2 = q.clone();
        let sender = tokio::spawn(async move {
            let waited = q2.reserve(|| ()).await;
            assert!(q2.push_reserved(2).is_ok());
            waited
        });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "waits for a slot");
        assert_eq!(q.pop(), Some(1));
        q.drained();
        assert!(sender.await.unwrap_or(false), "it waited");
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_released_slot_can_be_taken_again() {
        let q: Bounded<u8> = Bounded::new(1);
        assert!(q.try_reserve());
        assert!(!q.try_reserve());
        q.release();
        assert!(q.try_reserve());
    }
}
