//! One WebSocket connection's wire state: the socket, the frame reader, and the closing
//! handshake (RFC 6455 §7). It reads items, writes an outbox, and says when the connection is
//! over; what the items mean is its caller's business.

use std::io;
use std::time::Duration;

use bytes::Bytes;

use super::frame;
use super::reader::{Incoming, ReadError, Reader};
use crate::reactor::Readiness;
use crate::transport::outbound::Outbound;
use crate::transport::socket::Socket;

/// How long, after writing its close frame, the server waits for the client's close frame.
/// (Writing the close frame itself may take up to the heartbeat timeout: a client that reads
/// nothing for that long is gone anyway.)
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where the closing handshake stands after [`Wire::closing`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// No close requested, none sent.
    Open,
    /// Closing, not over yet; with a deadline just armed, the caller must be woken `after`
    /// from now to look again.
    Waiting { arm: Option<Duration> },
    /// Over (both close frames exchanged, or the deadline passed): drop the connection.
    Over,
}

/// A WebSocket connection on the wire.
pub(crate) struct Wire {
    socket: Socket,
    reader: Reader,
    /// Shard clock (ms) past which the closing handshake is abandoned; 0 when none runs. Set
    /// when a close is requested, reset when our close frame is written.
    close_deadline_ms: u64,
    /// A framing violation was seen: read and discard until the client goes.
    read_failed: bool,
    /// Our close frame is queued (or written).
    close_sent: bool,
    /// The client's close frame arrived.
    peer_closed: bool,
    /// Our close frame has left (so we only wait for the client's).
    close_written: bool,
}

impl Wire {
    /// The wire of `socket`, whose first bytes (read past the handshake) are `already_read`;
    /// messages over `max_message` bytes are skipped and reported.
    pub(crate) fn new(socket: Socket, already_read: Bytes, max_message: usize) -> Wire {
        Wire {
            socket,
            reader: Reader::new(already_read, max_message),
            close_deadline_ms: 0,
            read_failed: false,
            close_sent: false,
            peer_closed: false,
            close_written: false,
        }
    }

    /// The socket, for the reactor to register.
    pub(crate) fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// The next complete item. A framing violation is returned once, as `Err`: the caller
    /// must close with its code; what the client sends after it is read and dropped.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        if self.read_failed {
            return Ok(None);
        }
        match self.reader.next() {
            Ok(Some(item)) => {
                if matches!(item, Incoming::Close(_)) {
                    self.peer_closed = true;
                }
                Ok(Some(item))
            }
            Ok(None) => {
                self.reader.release_if_idle();
                Ok(None)
            }
            Err(e) => {
                self.read_failed = true;
                self.reader.discard_all();
                self.reader.release_if_idle();
                Err(e)
            }
        }
    }

    /// Reads once. `Ok(false)` at end of stream.
    pub(crate) fn read(&mut self, io: &mut Readiness) -> io::Result<bool> {
        match self.reader.read_from(&self.socket) {
            Ok(0) => Ok(false),
            Ok(_) => {
                if self.read_failed {
                    self.reader.discard_all();
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                self.reader.release_if_idle();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Writes what the socket takes now; queues the close frame once the outbox is empty.
    pub(crate) fn flush(&mut self, out: &mut Outbound, io: &mut Readiness) -> io::Result<()> {
        loop {
            if io.writable && out.has_output() {
                let socket = &self.socket;
                out.flush_with(|slices| socket.try_write_vectored(slices))?;
                // Frames left means the write would block: wait for the socket.
                io.writable = !out.has_output();
            }
            if out.has_output() || self.close_sent {
                return Ok(());
            }
            match out.take_close() {
                Some(close) => {
                    out.push_final(frame::close(close.code, &close.reason));
                    self.close_sent = true;
                }
                None => return Ok(()),
            }
        }
    }

    /// Moves the closing handshake on, given the outbox and the shard clock (read only once a
    /// close is under way); `flush_grace` is how long a requested close may take to get its
    /// frame out (the heartbeat timeout).
    ///
    /// Closing counts from the close request, not from when our close frame is queued: a
    /// client that never reads would otherwise hold a frame unflushed (a slow consumer's
    /// half-written one, a kicked client's queue) and the connection for ever.
    pub(crate) fn closing(
        &mut self,
        out: &Outbound,
        now_ms: impl FnOnce() -> u64,
        flush_grace: Duration,
    ) -> Closing {
        if !self.close_sent && !out.is_closing() {
            return Closing::Open;
        }
        let now_ms = now_ms();
        let mut arm = None;
        if self.close_sent && !out.has_output() && !self.close_written {
            if self.peer_closed {
                return Closing::Over;
            }
            self.close_written = true;
            if self.read_failed {
                // Failing the connection (RFC 6455 §7.1.7): the server closes TCP as soon as
                // its close frame is out, and waits for no close frame (it could not read
                // one). The rest is read and dropped until EOF.
                self.socket.shutdown_write();
            }
            arm = Some(CLOSE_GRACE);
        } else if self.close_deadline_ms == 0 {
            arm = Some(flush_grace.max(CLOSE_GRACE));
        }
        if let Some(after) = arm {
            self.close_deadline_ms = now_ms + after.as_millis() as u64;
        }
        if now_ms >= self.close_deadline_ms {
            Closing::Over
        } else {
            Closing::Waiting { arm }
        }
    }
}
