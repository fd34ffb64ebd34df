//! What a shard knows about one of its connections: the bounded outbound queue the routing code
//! pushes pre-encoded frames into, and the state the shard's sweeps and the connection share.
//!
//! A handle lives on one shard thread only (`Rc`, `RefCell`, `Cell`): pushing a frame to a local
//! connection takes no lock and no atomic beyond the frame's reference count.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use wsgate_protocol::{CloseCode, Format};

use crate::reactor::Ready;

/// Bookkeeping bytes counted per queued frame, so the byte bound also bounds the frame count.
pub(crate) const FRAME_OVERHEAD: usize = 64;
/// Most frames handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// A close the server wants to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The outbound queue: frames in order, bounded in bytes.
#[derive(Debug, Default)]
struct OutQueue {
    frames: VecDeque<Bytes>,
    /// Queued bytes plus [`FRAME_OVERHEAD`] per frame.
    bytes: usize,
    /// A close to send once the queue is flushed (or at once, if the queue was discarded).
    close: Option<CloseRequest>,
    /// The close frame has been taken for writing (the connection stays closing).
    close_taken: bool,
    /// The front frame is partly written: it must be finished before anything else goes.
    front_partial: bool,
    /// Sweeps since a frame was last queued (saturating): the buffer is freed after enough.
    idle_sweeps: u8,
}

impl OutQueue {
    /// Drops every queued frame except a partly written front frame, which must be finished
    /// for the stream to stay well-formed.
    fn discard(&mut self) {
        let keep = if self.front_partial {
            self.frames.pop_front()
        } else {
            None
        };
        self.frames.clear();
        self.bytes = 0;
        if let Some(front) = keep {
            self.bytes = front.len() + FRAME_OVERHEAD;
            self.frames.push_back(front);
        }
    }
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The connection is closing; the frame was dropped.
    Closing,
    /// The bound was passed: the connection is now closing as a slow consumer.
    SlowConsumer,
}

/// One connection as its shard sees it.
pub(crate) struct ConnHandle {
    /// Server-wide unique id: shard in the top byte, sequence below.
    pub(crate) id: u64,
    pub(crate) format: Format,
    out: RefCell<OutQueue>,
    /// The shard's reactor, told when the connection has something to do (`wake`).
    ready: Rc<Ready>,
    /// The connection's key in the reactor's slab.
    token: u32,
    /// Queued in `ready` and not yet driven: one entry per connection at most.
    marked: Cell<bool>,
    /// The authenticated user; `None` until authenticated.
    pub(crate) user: RefCell<Option<Arc<str>>>,
    /// Rooms this connection is in (at most `max_rooms_per_connection`).
    pub(crate) rooms: RefCell<Vec<Arc<str>>>,
    /// Shard clock (ms) at which the sweep closes the connection: before authentication, the
    /// auth deadline (4001); after, the token's expiry (4004). 0: none.
    pub(crate) deadline_ms: Cell<u64>,
    /// Shard clock (ms) of the last frame received.
    pub(crate) last_seen_ms: Cell<u64>,
    /// Shard clock (ms) of the unanswered ping; 0 when none is outstanding.
    pub(crate) ping_sent_ms: Cell<u64>,
}

impl ConnHandle {
    /// The handle of connection `id`, in slot `token` of the reactor that `ready` wakes.
    pub(crate) fn new(id: u64, format: Format, now_ms: u64, ready: Rc<Ready>, token: u32) -> Self {
        ConnHandle {
            id,
            format,
            out: RefCell::default(),
            ready,
            token,
            marked: Cell::new(false),
            user: RefCell::new(None),
            rooms: RefCell::new(Vec::new()),
            deadline_ms: Cell::new(0),
            last_seen_ms: Cell::new(now_ms),
            ping_sent_ms: Cell::new(0),
        }
    }

    /// The id as sent on the wire: `"<shard>.<sequence>"`.
    pub(crate) fn wire_id(&self) -> String {
        format!("{}.{}", self.id >> 56, self.id & ((1 << 56) - 1))
    }

    /// Queues a frame. Past `max_bytes` the queue is discarded and the connection closes as a
    /// slow consumer (4002): memory never grows without bound.
    pub(crate) fn push(&self, frame: Bytes, max_bytes: usize) -> Result<(), PushError> {
        let mut q = self.out.borrow_mut();
        if q.close.is_some() {
            return Err(PushError::Closing);
        }
        let cost = frame.len() + FRAME_OVERHEAD;
        if q.bytes + cost > max_bytes {
            q.discard();
            q.close = Some(close_request(CloseCode::SlowConsumer));
            drop(q);
            self.wake();
            return Err(PushError::SlowConsumer);
        }
        let was_empty = q.frames.is_empty();
        q.idle_sweeps = 0;
        q.bytes += cost;
        q.frames.push_back(frame);
        drop(q);
        // A non-empty queue is flushed when the socket turns writable: no wake-up needed.
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Asks the connection to close with `code`. With `discard`, queued frames are dropped;
    /// otherwise they are flushed first. A second close is a no-op.
    pub(crate) fn close(&self, code: u16, reason: &str, discard: bool) {
        let mut q = self.out.borrow_mut();
        if q.close.is_some() {
            return;
        }
        if discard {
            q.discard();
        }
        q.close = Some(CloseRequest {
            code,
            reason: reason.to_owned(),
        });
        drop(q);
        self.wake();
    }

    /// Whether a close has been requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.out.borrow().close.is_some()
    }

    /// Whether frames wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.borrow().frames.is_empty()
    }

    /// Asks the reactor to drive the connection (once, however often this is called before).
    pub(crate) fn wake(&self) {
        if !self.marked.replace(true) {
            self.ready.mark(self.token);
        }
    }

    /// The reactor is driving the connection: later wake-ups queue it again.
    pub(crate) fn unmark(&self) {
        self.marked.set(false);
    }

    /// Frees the queue's buffer once it has been empty and unused for `after_sweeps` calls, so
    /// an idle connection holds none (a queue keeps its capacity otherwise). Called by the
    /// sweep, not per write: a busy connection, or one that gets bursts a few seconds apart,
    /// keeps its buffer instead of growing it anew (and faulting its pages back in) each time.
    pub(crate) fn release_idle_queue(&self, after_sweeps: u8) {
        let mut q = self.out.borrow_mut();
        if !q.frames.is_empty() || q.frames.capacity() == 0 {
            return;
        }
        q.idle_sweeps = q.idle_sweeps.saturating_add(1);
        if q.idle_sweeps >= after_sweeps {
            q.frames = VecDeque::new();
        }
    }

    /// Writes as much of the queue as `write` accepts, in vectored writes of up to
    /// [`MAX_IOVECS`] frames: frames queued while a write was in flight leave together.
    /// Returns when the queue is empty or `write` would block.
    pub(crate) fn flush_with(
        &self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<()> {
        let mut q = self.out.borrow_mut();
        while !q.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = q.frames.len().min(MAX_IOVECS);
            for (slot, frame) in slices.iter_mut().zip(q.frames.iter()) {
                *slot = IoSlice::new(frame);
            }
            let mut written = match write(&slices[..n]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            q.bytes -= written;
            while written > 0 {
                let Some(front) = q.frames.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    q.frames.pop_front();
                    q.bytes -= FRAME_OVERHEAD;
                    q.front_partial = false;
                } else {
                    front.advance(written);
                    written = 0;
                    q.front_partial = true;
                }
            }
        }
        Ok(())
    }

    /// Takes the pending close once the queue is empty: the frame to write last.
    pub(crate) fn take_close(&self) -> Option<CloseRequest> {
        let mut q = self.out.borrow_mut();
        if q.frames.is_empty() && !q.close_taken {
            q.close_taken = q.close.is_some();
            q.close.clone()
        } else {
            None
        }
    }

    /// Queues the close frame itself, bypassing the bound (it is at most 127 bytes).
    pub(crate) fn push_final(&self, frame: Bytes) {
        let mut q = self.out.borrow_mut();
        q.bytes += frame.len() + FRAME_OVERHEAD;
        q.frames.push_back(frame);
    }
}

/// A close request with the code's standard reason.
pub(crate) fn close_request(code: CloseCode) -> CloseRequest {
    CloseRequest {
        code: code.as_u16(),
        reason: code.reason().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bound_turns_into_slow_consumer_close() {
        let h = ConnHandle::new(1, Format::Json, 0, Rc::default(), 0);
        let frame = Bytes::from(vec![0u8; 100]);
        assert!(h.push(frame.clone(), 400).is_ok());
        assert!(h.push(frame.clone(), 400).is_ok());
        assert_eq!(h.push(frame.clone(), 400), Err(PushError::SlowConsumer));
        assert!(!h.has_output());
        assert_eq!(h.take_close().unwrap().code, 4002);
        assert_eq!(h.push(frame, 400), Err(PushError::Closing));
    }

    #[test]
    fn flush_writes_frames_together_and_handles_partial_writes() {
        let h = ConnHandle::new(1, Format::Json, 0, Rc::default(), 0);
        for f in [&b"abc"[..], b"de", b"fgh"] {
            h.push(Bytes::copy_from_slice(f), 10_000).unwrap();
        }
        let mut wire = Vec::new();
        let mut calls = 0;
        h.flush_with(|slices| {
            calls += 1;
            // Accept at most 4 bytes per call, like a socket with a small buffer.
            let mut n = 0;
            for s in slices {
                let take = s.len().min(4 - n);
                wire.extend_from_slice(&s[..take]);
                n += take;
                if n == 4 {
                    break;
                }
            }
            Ok(n)
        })
        .unwrap();
        assert_eq!(wire, b"abcdefgh");
        assert_eq!(calls, 2);
        assert!(!h.has_output());
        assert_eq!(h.out.borrow().bytes, 0);
    }

    #[test]
    fn discarding_keeps_a_partly_written_front_frame() {
        let h = ConnHandle::new(1, Format::Json, 0, Rc::default(), 0);
        h.push(Bytes::from_static(b"abcdef"), 10_000).unwrap();
        h.push(Bytes::from_static(b"ghi"), 10_000).unwrap();
        let mut first = true;
        h.flush_with(|_| {
            if std::mem::take(&mut first) {
                Ok(2)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
        })
        .unwrap();
        // "ab" went out; the rest of "abcdef" must still go, "ghi" may be dropped.
        h.close(4002, "slow consumer", true);
        let mut wire = Vec::new();
        h.flush_with(|s| {
            wire.extend_from_slice(&s[0]);
            Ok(s[0].len())
        })
        .unwrap();
        assert_eq!(wire, b"cdef");
        assert_eq!(h.take_close().unwrap().code, 4002);
    }

    #[test]
    fn a_connection_is_queued_for_a_turn_once_until_driven() {
        let ready = Rc::new(Ready::default());
        let h = ConnHandle::new(1, Format::Json, 0, ready.clone(), 7);
        let frame = Bytes::from_static(b"x");
        h.push(frame.clone(), 10_000).unwrap();
        h.close(1000, "", false);
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
    fn an_idle_queue_gives_its_buffer_back_after_enough_idle_sweeps() {
        let h = ConnHandle::new(1, Format::Json, 0, Rc::default(), 0);
        let capacity = |h: &ConnHandle| h.out.borrow().frames.capacity();
        h.push(Bytes::from_static(b"abc"), 10_000).unwrap();
        for _ in 0..5 {
            h.release_idle_queue(3);
        }
        assert!(capacity(&h) > 0, "a queued frame keeps it");
        h.flush_with(|s| Ok(s[0].len())).unwrap();
        h.release_idle_queue(3);
        h.release_idle_queue(3);
        assert!(capacity(&h) > 0, "two idle sweeps of three: kept");
        // A frame queued (and written) in between starts the count again.
        h.push(Bytes::from_static(b"abc"), 10_000).unwrap();
        h.flush_with(|s| Ok(s[0].len())).unwrap();
        h.release_idle_queue(3);
        h.release_idle_queue(3);
        assert!(capacity(&h) > 0, "the count restarted");
        h.release_idle_queue(3);
        assert_eq!(capacity(&h), 0, "three idle sweeps: freed");
    }

    #[test]
    fn second_close_is_a_no_op() {
        let h = ConnHandle::new(1, Format::Json, 0, Rc::default(), 0);
        h.close(1001, "going away", false);
        h.close(4002, "slow", true);
        assert_eq!(h.take_close().unwrap().code, 1001);
    }
}
