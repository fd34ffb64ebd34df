//! The byte stream under a connection: a TCP socket from the listener, or one end of a Unix
//! socket pair (how the fuzzer and tests feed the real connection code without a network). An
//! enum, not a generic, so the connection code is compiled once. Non-blocking `mio` sockets:
//! the shard's reactor (`crate::reactor`) reports their readiness.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};
use mio::event::Source;
use mio::net::TcpStream;
#[cfg(feature = "testing")]
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

/// A connection's socket.
#[derive(Debug)]
pub(crate) enum Socket {
    /// Accepted by a shard's listener.
    Tcp(TcpStream),
    /// Handed to a shard directly (see `crate::testing`; test builds only).
    #[cfg(feature = "testing")]
    Unix(UnixStream),
}

impl Socket {
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Socket::Tcp(s) => socket2::SockRef::from(s),
            #[cfg(feature = "testing")]
            Socket::Unix(s) => socket2::SockRef::from(s),
        }
    }

    /// Reads what the socket has into `buf`'s spare capacity without waiting; `WouldBlock`
    /// when nothing is ready.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
        let n = self.sock().recv(spare)?;
        // SAFETY: `recv` initialized the first `n` bytes of the spare capacity.
        #[allow(unsafe_code)]
        unsafe {
            buf.advance_mut(n);
        }
        Ok(n)
    }

    /// Writes what the socket takes now, in one vectored write.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).write_vectored(bufs),
            #[cfg(feature = "testing")]
            Socket::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    /// Sends FIN after the bytes already written (`shutdown(SHUT_WR)`). An error means the
    /// socket is gone already, which is what was wanted.
    pub(crate) fn shutdown_write(&self) {
        let _ = self.sock().shutdown(std::net::Shutdown::Write);
    }
}

impl Socket {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Socket::Tcp(s) => s,
            #[cfg(feature = "testing")]
            Socket::Unix(s) => s,
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.source().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.source().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.source().deregister(registry)
    }
}
