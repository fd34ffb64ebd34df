//! One client connection: its state in the handshake, the bytes it keeps (only for a partial
//! frame or an unsent write), and its socket's non-blocking connect, write and flush.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Socket, Type};

/// The id of the one `join` each connection sends; publishes count up from 2.
pub(crate) const JOIN_ID: u64 = 1;

/// Where a connection is, from TCP connect to open (or closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not connected yet (or closed by churn and waiting).
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for `101` (long-polling: the handshake `GET` sent,
    /// waiting for its answer).
    Upgrading,
    /// Upgraded, waiting for `welcome` (Socket.IO: for the Engine.IO open packet; over
    /// long-polling it came with the handshake's answer).
    Welcoming,
    /// Socket.IO: `CONNECT` sent with the token, waiting for its answer.
    Authenticating,
    /// `join` sent, waiting for its reply.
    Joining,
    /// Authenticated (and joined).
    Open,
    /// Failed or closed; counted once.
    Closed,
}

impl State {
    /// Between the TCP connect and open: counted against the handshakes in progress.
    pub(crate) const fn handshaking(self) -> bool {
        matches!(
            self,
            State::Connecting
                | State::Upgrading
                | State::Welcoming
                | State::Authenticating
                | State::Joining
        )
    }

    /// The step's name in a failure cause (`timeout_upgrade`).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connect",
            State::Upgrading => "upgrade",
            State::Welcoming => "welcome",
            State::Authenticating => "auth",
            State::Joining => "join",
            State::Open => "open",
            State::Closed => "closed",
        }
    }
}

/// One connection's whole client-side state (about 120 bytes).
pub(crate) struct Conn {
    /// `None` once closed; an `Option` of a file descriptor costs no extra space.
    pub(crate) stream: Option<TcpStream>,
    pub(crate) state: State,
    /// The room this connection joins (scenarios with rooms).
    pub(crate) room: u32,
    /// The server it connects to: an index into the worker's servers (`Common::servers`).
    pub(crate) server: u16,
    /// Closed-loop publishes sent and not yet seen back.
    pub(crate) in_flight: u32,
    /// When the current connect started (handshake latency).
    pub(crate) started_ns: u64,
    /// Next publish id (and sequence number).
    pub(crate) next_id: u64,
    /// Bytes of a partial frame left over from the last read. Empty (unallocated) when idle.
    pub(crate) inbuf: Vec<u8>,
    /// Bytes the socket would not take yet. Empty (unallocated) when idle.
    pub(crate) outbuf: Vec<u8>,
    /// A fragmented message being reassembled, after its opcode (the server does not
    /// fragment; kept for RFC 6455).
    pub(crate) frag: Vec<u8>,
}

impl Conn {
    /// A connection to server `server` that will join `room`, not connected yet.
    pub(crate) fn new(room: u32, server: u16) -> Self {
        Conn {
            stream: None,
            state: State::Idle,
            room,
            server,
            in_flight: 0,
            started_ns: 0,
            next_id: JOIN_ID + 1,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            frag: Vec::new(),
        }
    }

    /// Publishes this connection has sent (its ids count up from `JOIN_ID + 1`).
    pub(crate) fn published(&self) -> u64 {
        self.next_id - JOIN_ID - 1
    }

    /// Writes `bytes`, queueing what the socket would not take (behind what is queued
    /// already); `Err(cause)` when the socket failed.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if !self.outbuf.is_empty() {
            self.outbuf.extend_from_slice(bytes);
            return Ok(());
        }
        let mut written = 0;
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(0) => return Err("write_zero".into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_cause("write", &e)),
            }
        }
        if written < bytes.len() {
            self.outbuf.extend_from_slice(&bytes[written..]);
        }
        Ok(())
    }

    /// Writes what is queued, as far as the socket takes it.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut written = 0;
        while written < self.outbuf.len() {
            match stream.write(&self.outbuf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_cause("write", &e)),
            }
        }
        if written == self.outbuf.len() {
            self.outbuf = Vec::new();
        } else {
            self.outbuf.drain(..written);
        }
        Ok(())
    }

    /// Whether the TCP connect in progress has completed (`Ok(false)`: not yet).
    pub(crate) fn connected(&self) -> Result<bool, String> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(false);
        };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Err(io_cause("connect", &e)),
        }
        match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(io_cause("connect", &e)),
        }
    }
}

/// Opens a non-blocking TCP connection, bound to `source` first when given.
pub(crate) fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// A failure cause for an I/O error in `op` (`connect_refused`, `read_reset`, ...).
pub(crate) fn io_cause(op: &str, e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(nix::libc::ECONNREFUSED) => "refused".to_string(),
        Some(nix::libc::EADDRNOTAVAIL) | Some(nix::libc::EADDRINUSE) => "no_ports".to_string(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => "fd_limit".to_string(),
        Some(nix::libc::ECONNRESET) => "reset".to_string(),
        Some(nix::libc::ETIMEDOUT) => "timed_out".to_string(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    };
    format!("{op}_{what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_small() {
        // The per-connection budget is 1 KiB of loadgen memory; the state itself must stay a
        // small fraction of it.
        assert!(
            std::mem::size_of::<Conn>() <= 128,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}
