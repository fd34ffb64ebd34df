//! A connection's outbound queue: encoded frames in order, bounded in bytes, drained by
//! vectored writes, with the close frame to send once they are out.
//!
//! The queue holds frames, not messages: the same `Bytes` may sit in thousands of queues (a
//! fan-out encodes once), and a frame is never copied into a queue.
//!
//! Ephemeral frames (typing and other transient state) give way to everything else: one is
//! queued only while the queue holds less than [`EPHEMERAL_SHARE`] of its bound, and queued
//! ones are dropped to make room for a durable frame before the queue counts as overflowing.
//! So a durable frame is never lost in favour of an ephemeral one, and ephemeral traffic
//! alone never makes a slow consumer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use wsgate_protocol::CloseCode;

/// Bookkeeping bytes counted per queued frame, so the byte bound also bounds the frame count.
pub(crate) const FRAME_OVERHEAD: usize = 64;
/// Most frames handed to one vectored write.
const MAX_IOVECS: usize = 64;
/// Ephemeral frames are queued only below `1 / EPHEMERAL_SHARE` of the byte bound (half).
pub(crate) const EPHEMERAL_SHARE: usize = 2;

/// A close the server wants to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

impl CloseRequest {
    /// A close with one of the server's codes and its standard reason.
    pub(crate) fn new(code: CloseCode) -> CloseRequest {
        CloseRequest::with_reason(code.as_u16(), code.reason())
    }

    /// A close with any valid code and reason (the peer's code echoed, a framing error's, a
    /// backend's kick reason).
    pub(crate) fn with_reason(code: u16, reason: &str) -> CloseRequest {
        CloseRequest {
            code,
            reason: reason.to_owned(),
        }
    }
}

/// What a close does with the frames already queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// They are written first, then the close frame (shutdown, kick, refused `auth`).
    Flush,
    /// They are dropped (slow consumer, heartbeat timeout, the client's own close, a panic);
    /// a partly written front frame is still finished, so the stream stays well-formed.
    Discard,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The connection is closing; the frame was dropped.
    Closing,
    /// The bound was passed: the queue was discarded and the connection is closing as a slow
    /// consumer (4002).
    SlowConsumer,
    /// An ephemeral frame was dropped: the queue holds [`EPHEMERAL_SHARE`] of its bound or
    /// more. Nothing else changes.
    Shed,
}

/// A frame accepted into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The queue was empty: the writer must be woken.
    pub(crate) was_empty: bool,
    /// Queued ephemeral frames dropped to make room for this one.
    pub(crate) shed: u32,
}

/// A queued frame, and whether it may be dropped for a durable one.
#[derive(Debug)]
struct Frame {
    bytes: Bytes,
    ephemeral: bool,
}

/// The outbound queue: frames in order, bounded in bytes.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    frames: VecDeque<Frame>,
    /// Queued bytes plus [`FRAME_OVERHEAD`] per frame.
    bytes: usize,
    /// The part of `bytes` that ephemeral frames hold.
    ephemeral_bytes: usize,
    /// A close to send once the queue is flushed (or at once, if the queue was discarded).
    close: Option<CloseRequest>,
    /// The close frame has been taken for writing (the connection stays closing).
    close_taken: bool,
    /// The front frame is partly written: it must be finished before anything else goes.
    front_partial: bool,
    /// Sweeps since a frame was last queued (saturating): the buffer is freed after enough.
    idle_sweeps: u8,
}

impl Outbound {
    /// Queues a durable frame. Past `max_bytes` the queued ephemeral frames are dropped first;
    /// if it still does not fit, the queue is discarded and a slow-consumer close requested:
    /// memory never grows without bound.
    pub(crate) fn push(&mut self, frame: Bytes, max_bytes: usize) -> Result<Pushed, PushError> {
        if self.close.is_some() {
            return Err(PushError::Closing);
        }
        let cost = frame.len() + FRAME_OVERHEAD;
        let mut shed = 0;
        if self.bytes + cost > max_bytes {
            shed = self.shed_ephemeral();
            if self.bytes + cost > max_bytes {
                self.discard();
                self.close = Some(CloseRequest::new(CloseCode::SlowConsumer));
                return Err(PushError::SlowConsumer);
            }
        }
        let was_empty = self.queue(frame, false);
        Ok(Pushed { was_empty, shed })
    }

    /// Queues an ephemeral frame if the queue holds less than [`EPHEMERAL_SHARE`] of
    /// `max_bytes` with it; otherwise drops it ([`PushError::Shed`]); `Ok(true)` if the queue
    /// was empty.
    pub(crate) fn push_ephemeral(
        &mut self,
        frame: Bytes,
        max_bytes: usize,
    ) -> Result<bool, PushError> {
        if self.close.is_some() {
            return Err(PushError::Closing);
        }
        if self.bytes + frame.len() + FRAME_OVERHEAD > max_bytes / EPHEMERAL_SHARE {
            return Err(PushError::Shed);
        }
        Ok(self.queue(frame, true))
    }

    /// Appends a frame that fits; whether the queue was empty.
    fn queue(&mut self, bytes: Bytes, ephemeral: bool) -> bool {
        let was_empty = self.frames.is_empty();
        if self.frames.capacity() == 0 {
            // Room for one frame only, not the four a first push would take: most
            // connections queue one frame at a time (a welcome, a reply), and a small buffer,
            // freed once idle, leaves no holes in the allocator's pages that keep them
            // resident (measured: ~180 B per idle connection; BENCHMARKS.md). A busy
            // connection grows it by doubling as before.
            self.frames.reserve_exact(1);
        }
        let cost = bytes.len() + FRAME_OVERHEAD;
        self.idle_sweeps = 0;
        self.bytes += cost;
        if ephemeral {
            self.ephemeral_bytes += cost;
        }
        self.frames.push_back(Frame { bytes, ephemeral });
        was_empty
    }

    /// Drops every queued ephemeral frame but a partly written front one; how many.
    fn shed_ephemeral(&mut self) -> u32 {
        if self.ephemeral_bytes == 0 {
            return 0;
        }
        let before = self.frames.len();
        let keep_front = self.front_partial;
        let mut index = 0;
        self.frames.retain(|f| {
            let keep = !f.ephemeral || (index == 0 && keep_front);
            index += 1;
            keep
        });
        self.recount();
        (before - self.frames.len()) as u32
    }

    /// Counts the queued bytes anew from the frames.
    fn recount(&mut self) {
        let cost = |f: &Frame| f.bytes.len() + FRAME_OVERHEAD;
        self.bytes = self.frames.iter().map(cost).sum();
        self.ephemeral_bytes = self.frames.iter().filter(|f| f.ephemeral).map(cost).sum();
    }

    /// Requests a close; `false` if one was requested already (a second close is a no-op).
    pub(crate) fn close(&mut self, close: CloseRequest, queued: Queued) -> bool {
        if self.close.is_some() {
            return false;
        }
        if queued == Queued::Discard {
            self.discard();
        }
        self.close = Some(close);
        true
    }

    /// Whether a close has been requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.close.is_some()
    }

    /// The code of the requested close, if one was requested.
    pub(crate) fn close_code(&self) -> Option<u16> {
        self.close.as_ref().map(|c| c.code)
    }

    /// Whether frames wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        !self.frames.is_empty()
    }

    /// Drops every queued frame except a partly written front frame, which must be finished
    /// for the stream to stay well-formed.
    fn discard(&mut self) {
        let keep = if self.front_partial {
            self.frames.pop_front()
        } else {
            None
        };
        self.frames.clear();
        self.frames.extend(keep);
        self.recount();
    }

    /// Frees the buffer once the queue has been empty and unused for `after_sweeps` calls, so
    /// an idle connection holds none (a queue keeps its capacity otherwise). Called by the
    /// sweep, not per write: a busy connection, or one that gets bursts a few seconds apart,
    /// keeps its buffer instead of growing it anew (and faulting its pages back in) each time.
    pub(crate) fn release_idle(&mut self, after_sweeps: u8) {
        if !self.frames.is_empty() || self.frames.capacity() == 0 {
            return;
        }
        self.idle_sweeps = self.idle_sweeps.saturating_add(1);
        if self.idle_sweeps >= after_sweeps {
            self.frames = VecDeque::new();
        }
    }

    /// Writes as much of the queue as `write` accepts, in vectored writes of up to
    /// [`MAX_IOVECS`] frames: frames queued while a write was in flight leave together.
    /// Returns when the queue is empty or `write` would block.
    pub(crate) fn flush_with(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<()> {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.frames.len().min(MAX_IOVECS);
            for (slot, frame) in slices.iter_mut().zip(self.frames.iter()) {
                *slot = IoSlice::new(&frame.bytes);
            }
            let mut written = match write(&slices[..n]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.bytes -= written;
            while written > 0 {
                let Some(front) = self.frames.front_mut() else {
                    break;
                };
                let len = front.bytes.len();
                let taken = written.min(len);
                if front.ephemeral {
                    self.ephemeral_bytes -= taken;
                }
                if written >= len {
                    written -= len;
                    if front.ephemeral {
                        self.ephemeral_bytes -= FRAME_OVERHEAD;
                    }
                    self.frames.pop_front();
                    self.bytes -= FRAME_OVERHEAD;
                    self.front_partial = false;
                } else {
                    front.bytes.advance(written);
                    written = 0;
                    self.front_partial = true;
                }
            }
        }
        Ok(())
    }

    /// Takes the pending close once the queue is empty: the frame to write last.
    pub(crate) fn take_close(&mut self) -> Option<CloseRequest> {
        if self.frames.is_empty() && !self.close_taken {
            self.close_taken = self.close.is_some();
            self.close.clone()
        } else {
            None
        }
    }

    /// Queues the close frame itself, bypassing the bound (it is at most 127 bytes).
    pub(crate) fn push_final(&mut self, frame: Bytes) {
        self.bytes += frame.len() + FRAME_OVERHEAD;
        self.frames.push_back(Frame {
            bytes: frame,
            ephemeral: false,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One write of `n` bytes, then the socket would block.
    fn write_partly(q: &mut Outbound, n: usize) {
        let mut first = true;
        q.flush_with(|_| {
            if std::mem::take(&mut first) {
                Ok(n)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
        })
        .unwrap();
    }

    /// Writes everything queued, a frame at a time; the bytes written.
    fn drain(q: &mut Outbound) -> Vec<u8> {
        let mut wire = Vec::new();
        q.flush_with(|s| {
            wire.extend_from_slice(&s[0]);
            Ok(s[0].len())
        })
        .unwrap();
        wire
    }

    #[test]
    fn bound_turns_into_slow_consumer_close() {
        let mut q = Outbound::default();
        let frame = Bytes::from(vec![0u8; 100]);
        assert!(q.push(frame.clone(), 400).is_ok());
        assert!(q.push(frame.clone(), 400).is_ok());
        assert_eq!(q.push(frame.clone(), 400), Err(PushError::SlowConsumer));
        assert!(!q.has_output());
        assert_eq!(q.take_close().unwrap().code, 4002);
        assert_eq!(q.push(frame, 400), Err(PushError::Closing));
    }

    #[test]
    fn flush_writes_frames_together_and_handles_partial_writes() {
        let mut q = Outbound::default();
        for f in [&b"abc"[..], b"de", b"fgh"] {
            q.push(Bytes::copy_from_slice(f), 10_000).unwrap();
        }
        let mut wire = Vec::new();
        let mut calls = 0;
        q.flush_with(|slices| {
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
        assert!(!q.has_output());
        assert_eq!(q.bytes, 0);
    }

    #[test]
    fn discarding_keeps_a_partly_written_front_frame() {
        let mut q = Outbound::default();
        q.push(Bytes::from_static(b"abcdef"), 10_000).unwrap();
        q.push(Bytes::from_static(b"ghi"), 10_000).unwrap();
        write_partly(&mut q, 2);
        // "ab" went out; the rest of "abcdef" must still go, "ghi" may be dropped.
        q.close(CloseRequest::new(CloseCode::SlowConsumer), Queued::Discard);
        assert_eq!(drain(&mut q), b"cdef");
        assert_eq!(q.take_close().unwrap().code, 4002);
    }

    #[test]
    fn an_idle_queue_gives_its_buffer_back_after_enough_idle_sweeps() {
        let mut q = Outbound::default();
        let capacity = |q: &Outbound| q.frames.capacity();
        q.push(Bytes::from_static(b"abc"), 10_000).unwrap();
        for _ in 0..5 {
            q.release_idle(3);
        }
        assert!(capacity(&q) > 0, "a queued frame keeps it");
        q.flush_with(|s| Ok(s[0].len())).unwrap();
        q.release_idle(3);
        q.release_idle(3);
        assert!(capacity(&q) > 0, "two idle sweeps of three: kept");
        // A frame queued (and written) in between starts the count again.
        q.push(Bytes::from_static(b"abc"), 10_000).unwrap();
        q.flush_with(|s| Ok(s[0].len())).unwrap();
        q.release_idle(3);
        q.release_idle(3);
        assert!(capacity(&q) > 0, "the count restarted");
        q.release_idle(3);
        assert_eq!(capacity(&q), 0, "three idle sweeps: freed");
    }

    #[test]
    fn ephemeral_frames_fill_half_the_bound_and_give_way_to_durable_ones() {
        let mut q = Outbound::default();
        let frame = Bytes::from(vec![0u8; 36]); // 100 bytes with the overhead
        assert!(q.push(frame.clone(), 400).is_ok());
        assert_eq!(q.push_ephemeral(frame.clone(), 400), Ok(false));
        assert_eq!(
            q.push_ephemeral(frame.clone(), 400),
            Err(PushError::Shed),
            "a third would pass half of 400"
        );
        assert!(!q.is_closing(), "shedding closes nothing");
        assert_eq!(
            q.push(frame.clone(), 400),
            Ok(Pushed {
                was_empty: false,
                shed: 0
            })
        );
        assert_eq!(q.push(frame.clone(), 400).map(|p| p.shed), Ok(0));
        // Full with 3 durable and 1 ephemeral: the ephemeral one makes room.
        assert_eq!(q.push(frame.clone(), 400).map(|p| p.shed), Ok(1));
        assert_eq!((q.frames.len(), q.bytes, q.ephemeral_bytes), (4, 400, 0));
        assert_eq!(q.push(frame, 400), Err(PushError::SlowConsumer));
    }

    #[test]
    fn a_partly_written_ephemeral_front_frame_is_kept_when_shedding() {
        let mut q = Outbound::default();
        q.push_ephemeral(Bytes::from_static(b"abcdef"), 1_000)
            .unwrap();
        q.push_ephemeral(Bytes::from(vec![1u8; 36]), 1_000).unwrap();
        q.push(Bytes::from(vec![2u8; 200]), 1_000).unwrap();
        write_partly(&mut q, 2);
        // 432 queued; 664 more only fit once the second ephemeral frame is dropped.
        let pushed = q.push(Bytes::from(vec![3u8; 600]), 1_000);
        assert_eq!(pushed.map(|p| p.shed), Ok(1));
        assert_eq!(q.frames.len(), 3, "the front frame is being written: kept");
        let wire = drain(&mut q);
        assert_eq!(&wire[..4], b"cdef");
        assert_eq!(wire.len(), 4 + 200 + 600);
        assert_eq!((q.bytes, q.ephemeral_bytes), (0, 0));
    }

    #[test]
    fn second_close_is_a_no_op() {
        let mut q = Outbound::default();
        q.close(CloseRequest::new(CloseCode::GoingAway), Queued::Flush);
        q.close(CloseRequest::new(CloseCode::SlowConsumer), Queued::Discard);
        assert_eq!(q.take_close().unwrap().code, 1001);
    }
}
