//! Fan-out: events encoded once per wire format and handed, as shared `Bytes`, to every
//! recipient; across shards through each shard's bounded lock-free inbox.
//!
//! A message for a user or a room is offered to every shard: the sender's own shard delivers
//! it at once, every other shard receives an `Arc` of the same event in its inbox and delivers
//! to its own connections. No global map is locked on the message path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;
use wsgate_protocol::{encode_server_message, Format, RawData, ServerMessage};

use crate::ws::frame::{self, OpCode};

/// An event on its way to recipients: its parts, and its complete WebSocket frame in each
/// format, each encoded at most once, by the first shard that needs it.
#[derive(Debug)]
pub(crate) struct OutEvent {
    event: Box<str>,
    room: Option<Arc<str>>,
    from: Option<Arc<str>>,
    /// The sender's `data`, validated, in `data_format`.
    data: Bytes,
    data_format: Format,
    frames: [OnceLock<Option<Bytes>>; 2],
}

impl OutEvent {
    pub(crate) fn new(
        event: &str,
        room: Option<Arc<str>>,
        from: Option<Arc<str>>,
        data: Bytes,
        data_format: Format,
    ) -> Arc<OutEvent> {
        Arc::new(OutEvent {
            event: event.into(),
            room,
            from,
            data,
            data_format,
            frames: [OnceLock::new(), OnceLock::new()],
        })
    }

    /// The complete frame for `format`, encoded on first use. `None` only if `data` cannot be
    /// transcoded, which validation at decode time rules out.
    pub(crate) fn frame(&self, format: Format) -> Option<&Bytes> {
        self.frames[format.index()]
            .get_or_init(|| {
                let msg = ServerMessage::Event {
                    event: &self.event,
                    room: self.room.as_deref(),
                    from: self.from.as_deref(),
                    data: RawData::trusted(self.data_format, &self.data),
                };
                let hint = 48 + self.event.len() + self.data.len();
                frame::build(opcode(format), hint, |out| {
                    encode_server_message(format, &msg, out)
                })
                .map_err(|e| tracing::error!(error = %e, "event could not be encoded"))
                .ok()
            })
            .as_ref()
    }
}

/// The frame opcode that carries a format's messages.
pub(crate) const fn opcode(format: Format) -> OpCode {
    if format.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    }
}

/// Who an event goes to.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// Every connection of one user.
    User(Arc<str>),
    /// Every connection of each of these users.
    Users(Arc<[Arc<str>]>),
    /// Every member of one room.
    Room(Arc<str>),
    /// Every authenticated connection.
    Broadcast,
}

/// What a delivery reached, added up by every shard without a lock; the last shard to report
/// wakes the waiter (a REST push answering with counts).
#[derive(Debug)]
pub(crate) struct Report {
    delivered: AtomicUsize,
    /// Per user of a [`Target::Users`] (or the one [`Target::User`]): found on some shard.
    found: Box<[AtomicBool]>,
    pending: AtomicUsize,
    done: Notify,
}

impl Report {
    pub(crate) fn new(shards: usize, users: usize) -> Arc<Report> {
        Arc::new(Report {
            delivered: AtomicUsize::new(0),
            found: (0..users).map(|_| AtomicBool::new(false)).collect(),
            pending: AtomicUsize::new(shards),
            done: Notify::new(),
        })
    }

    /// One shard's part: `delivered` connections reached; `found(i)` for target users seen.
    pub(crate) fn add(&self, delivered: usize, found: impl IntoIterator<Item = usize>) {
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        for i in found {
            if let Some(f) = self.found.get(i) {
                f.store(true, Ordering::Relaxed);
            }
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every shard has reported; returns connections reached and, per target
    /// user, whether any connection was found.
    pub(crate) async fn wait(&self) -> (usize, Vec<bool>) {
        if self.pending.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let found = self
            .found
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect();
        (self.delivered.load(Ordering::Relaxed), found)
    }
}

/// One event for one target, as carried between shards.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) target: Target,
    pub(crate) event: Arc<OutEvent>,
    /// A connection not to deliver to (the sender, unless it asked for an echo).
    pub(crate) exclude: Option<u64>,
    /// A user none of whose connections get it (a REST room push's `exceptUserId`).
    pub(crate) exclude_user: Option<Arc<str>>,
    /// Where to add up what it reached, when someone waits for that.
    pub(crate) report: Option<Arc<Report>>,
}

impl Delivery {
    /// A delivery with no exclusions and no report.
    pub(crate) fn new(target: Target, event: Arc<OutEvent>) -> Delivery {
        Delivery {
            target,
            event,
            exclude: None,
            exclude_user: None,
            report: None,
        }
    }
}

/// Work run on a shard with access to its connections (REST queries and administration).
pub(crate) type Task = Box<dyn FnOnce(&std::rc::Rc<crate::shard::Shard>) + Send>;

/// What travels through a shard's inbox.
pub(crate) enum ShardMsg {
    /// An event to deliver to this shard's recipients.
    Deliver(Delivery),
    /// Work to run on this shard.
    Run(Task),
}

/// A shard's inbox: bounded, lock-free, with wake-ups for the shard and for waiting senders.
struct Inbox {
    queue: ArrayQueue<ShardMsg>,
    /// Wakes the shard's inbox task.
    ready: Notify,
    /// Wakes senders waiting for room in a full inbox.
    space: Notify,
}

/// Every shard's inbox.
pub(crate) struct Router {
    inboxes: Box<[Inbox]>,
}

impl Router {
    pub(crate) fn new(shards: usize, capacity: usize) -> Router {
        let inboxes = (0..shards)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity),
                ready: Notify::new(),
                space: Notify::new(),
            })
            .collect();
        Router { inboxes }
    }

    /// Number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Hands a delivery to shard `shard`. A full inbox makes the sender wait: nothing accepted
    /// is dropped, and backpressure reaches the sender instead of memory growing.
    pub(crate) async fn send(&self, shard: usize, mut delivery: ShardMsg) {
        let inbox = &self.inboxes[shard];
        loop {
            let space = inbox.space.notified();
            tokio::pin!(space);
            // Register before trying, so a drain between the try and the wait is not missed.
            space.as_mut().enable();
            match self.try_send(shard, delivery) {
                Ok(()) => return,
                Err(back) => {
                    delivery = back;
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

    /// Waits until shard `shard`'s inbox may hold deliveries.
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(data: &'static [u8], format: Format) -> Arc<OutEvent> {
        OutEvent::new(
            "chat",
            Some("r".into()),
            Some("alice".into()),
            Bytes::from_static(data),
            format,
        )
    }

    #[test]
    fn encodes_once_per_format_and_shares_the_bytes() {
        let ev = event(br#"{"a":1}"#, Format::Json);
        let a = ev.frame(Format::Json).unwrap().clone();
        let b = ev.frame(Format::Json).unwrap().clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same allocation is shared");
        assert_eq!(a[0], 0x81);
        let m = ev.frame(Format::MsgPack).unwrap();
        assert_eq!(m[0], 0x82);
    }

    #[tokio::test]
    async fn reports_add_up_and_wake_once_all_shards_reported() {
        let r = Report::new(2, 3);
        r.add(2, [0]);
        r.add(1, [2]);
        assert_eq!(r.wait().await, (3, vec![true, false, true]));
    }

    #[tokio::test]
    async fn a_full_inbox_makes_the_sender_wait_without_loss() {
        let router = Arc::new(Router::new(1, 2));
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
