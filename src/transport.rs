//! The byte stream under a WebSocket connection: a TCP socket from the listener, or one end of
//! a Unix socket pair (how the fuzzer and tests feed the real connection code without a
//! network). An enum, not a generic, so the connection code is compiled once.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::net::{TcpStream, UnixStream};

/// A connection's socket.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Accepted by a shard's listener.
    Tcp(TcpStream),
    /// Handed to a shard directly (see `crate::fuzzing`).
    Unix(UnixStream),
}

impl Transport {
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(s) => s.poll_read_ready(cx),
            Transport::Unix(s) => s.poll_read_ready(cx),
        }
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(s) => s.poll_write_ready(cx),
            Transport::Unix(s) => s.poll_write_ready(cx),
        }
    }

    /// Reads what the socket has without waiting; `WouldBlock` when nothing is ready.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_read_buf(buf),
            Transport::Unix(s) => s.try_read_buf(buf),
        }
    }

    /// Writes what the socket takes now, in one vectored write.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_write_vectored(bufs),
            Transport::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    /// Sends FIN after the bytes already written (`shutdown(SHUT_WR)`). An error means the
    /// socket is gone already, which is what was wanted.
    pub(crate) fn shutdown_write(&self) {
        let sock = match self {
            Transport::Tcp(s) => socket2::SockRef::from(s),
            Transport::Unix(s) => socket2::SockRef::from(s),
        };
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
}
