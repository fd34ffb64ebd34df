//! One WebSocket connection's task: reads frames, runs commands, writes its queue, and closes
//! with the right code. One task per connection, holding no buffer while idle.

use std::future::{poll_fn, Future};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use wsgate_protocol::{
    encode_server_message, CloseCode, ErrorCode, Format, Heartbeat, Id, Limits, ProtocolError,
    ServerMessage, Welcome,
};

use crate::auth::Identity;
use crate::handle::{ConnHandle, PushError};
use crate::rate::{RateLimit, TokenBucket};
use crate::router::opcode;
use crate::server::{ConnPermit, UserSlot};
use crate::shard::Shard;
use crate::stats::ShardStats;
use crate::transport::Transport;
use crate::ws::frame::{self, OpCode};
use crate::ws::reader::{Incoming, Reader};

/// How long, after writing its close frame, the server waits for the client's close frame.
/// (Writing the close frame itself may take up to the heartbeat timeout: a client that reads
/// nothing for that long is gone anyway.)
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A connection's task state.
pub(crate) struct Connection {
    pub(crate) shard: Rc<Shard>,
    pub(crate) handle: Rc<ConnHandle>,
    stream: Transport,
    reader: Reader,
    bucket: TokenBucket,
    /// Held while authenticated: one of the user's connection slots.
    user_slot: Option<UserSlot>,
    /// One of the server's connection slots.
    _permit: ConnPermit,
    /// An `/echo` connection: data messages go back unchanged instead of being run as commands.
    echo: bool,
    /// A close to request once the current command's answer is queued.
    pub(crate) close_after_answer: Option<(CloseCode, &'static str)>,
    /// A framing violation was seen: read and discard until the client goes.
    read_failed: bool,
    /// Our close frame is queued (or written).
    close_sent: bool,
    /// The client's close frame arrived.
    peer_closed: bool,
    /// Our close frame has left (so we only wait for the client's).
    close_written: bool,
    /// Bounds the closing handshake: set when a close is requested, reset when our close frame
    /// is written.
    close_deadline: Option<Pin<Box<Sleep>>>,
}

/// What a connection serves.
pub(crate) enum Role {
    /// The gateway protocol at `/ws`: commands in `format`, from `identity` when the handshake
    /// carried a token (otherwise `auth` must come within `AUTH_TIMEOUT`).
    Gateway {
        format: Format,
        identity: Option<(Identity, UserSlot)>,
    },
    /// `/echo` (`ECHO=true`): every data message is sent back unchanged, with its opcode. No
    /// auth, no commands, no rate limit; the same reader, queue, limits and close handshake.
    Echo,
}

/// What woke the connection.
enum Wake {
    Readable(io::Result<()>),
    Writable(io::Result<()>),
    Outbound,
    CloseDeadline,
}

/// Completes the upgrade, then serves the connection in a task of its own (so the upgrade's
/// state is not carried for the connection's whole life).
pub(crate) async fn run(shard: Rc<Shard>, upgrade: UpgradeFut, role: Role, permit: ConnPermit) {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
    };
    let upgraded = ws.into_inner().into_inner();
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => return tracing::error!("upgraded connection is not a TCP stream"),
    };
    let stream = Transport::Tcp(parts.io.into_inner());
    tokio::task::spawn_local(serve(shard, stream, parts.read_buf, role, permit));
}

/// Sets the connection up in `role` and returns the future that serves it until it closes.
///
/// Not an `async fn`: an `async fn` keeps its arguments in its future for the future's whole
/// life; this future holds only the connection (measured: 832 → 296 bytes per idle
/// connection's future, see BENCHMARKS.md).
pub(crate) fn serve(
    shard: Rc<Shard>,
    stream: Transport,
    already_read: Bytes,
    role: Role,
    permit: ConnPermit,
) -> impl Future<Output = ()> {
    let cfg = &shard.shared.config;
    let now = shard.now_ms();
    // An echo connection never speaks the gateway's formats; JSON only fills the field.
    let format = match &role {
        Role::Gateway { format, .. } => *format,
        Role::Echo => Format::Json,
    };
    let handle = Rc::new(ConnHandle::new(shard.next_conn_id(), format, now));
    let mut conn = Connection {
        reader: Reader::new(already_read, cfg.max_message_bytes),
        stream,
        bucket: TokenBucket::new(rate_limit(&shard), now),
        handle,
        user_slot: None,
        _permit: permit,
        echo: matches!(role, Role::Echo),
        close_after_answer: None,
        read_failed: false,
        close_sent: false,
        peer_closed: false,
        close_written: false,
        close_deadline: None,
        shard,
    };
    conn.shard.register(&conn.handle);
    match role {
        Role::Gateway {
            identity: Some((identity, slot)),
            ..
        } => conn.authenticate(identity, slot),
        Role::Gateway { identity: None, .. } => conn
            .handle
            .auth_deadline_ms
            .set(now + conn.shard.shared.config.auth_timeout.as_millis() as u64),
        // No auth deadline (the sweep only enforces a non-zero one): nothing to authenticate.
        Role::Echo => {}
    }
    async move {
        // A panic while serving one connection is contained: logged, the connection closed
        // with 1011, its state cleaned up; the shard and every other connection keep going.
        match AssertUnwindSafe(conn.serve()).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(conn = conn.handle.id, error = %e, "connection ended: I/O error");
            }
            Err(panic) => {
                ShardStats::inc(&conn.shard.stats().panics);
                tracing::error!(
                    conn = conn.handle.id,
                    panic = crate::panic::message(&*panic),
                    "panic while serving a connection; closing it with 1011"
                );
                let code = CloseCode::InternalError;
                conn.handle.close(code.as_u16(), code.reason(), true);
                let _ = conn.flush();
            }
        }
        conn.finish();
    }
}

fn rate_limit(shard: &Shard) -> RateLimit {
    let cfg = &shard.shared.config;
    RateLimit {
        rate: cfg.rate_per_sec,
        burst: cfg.rate_burst,
    }
}

impl Connection {
    async fn serve(&mut self) -> io::Result<()> {
        loop {
            self.flush()?;
            // Closing counts from the close request, not from when our close frame is queued:
            // a client that never reads would otherwise hold a frame unflushed (a slow
            // consumer's half-written one, a kicked client's queue) and the connection for ever.
            if self.close_sent || self.handle.is_closing() {
                if self.close_sent && !self.handle.has_output() && !self.close_written {
                    if self.peer_closed {
                        return Ok(());
                    }
                    self.close_written = true;
                    if self.read_failed {
                        // Failing the connection (RFC 6455 §7.1.7): the server closes TCP as
                        // soon as its close frame is out, and waits for no close frame (it
                        // could not read one). The rest is read and dropped until EOF.
                        self.stream.shutdown_write();
                    }
                    self.close_deadline = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                } else if self.close_deadline.is_none() {
                    let grace = self.shard.shared.config.heartbeat_timeout.max(CLOSE_GRACE);
                    self.close_deadline = Some(Box::pin(tokio::time::sleep(grace)));
                }
            }
            let want_write = self.handle.has_output();
            let handle = self.handle.clone();
            // One poll over every wake-up source. `poll_*_ready` use the socket's own waker
            // slots, so the task stores no waiter per source (smaller idle connections than
            // `select!` over `readable()`/`writable()` futures).
            let wake = poll_fn(|cx| {
                if let Some(deadline) = self.close_deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::CloseDeadline);
                    }
                }
                if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                    return Poll::Ready(Wake::Readable(r));
                }
                if want_write {
                    if let Poll::Ready(r) = self.stream.poll_write_ready(cx) {
                        return Poll::Ready(Wake::Writable(r));
                    }
                    // A close requested meanwhile (slow consumer, heartbeat) starts the deadline.
                    if self.close_deadline.is_none() && handle.poll_close(cx).is_ready() {
                        return Poll::Ready(Wake::Outbound);
                    }
                } else if !self.close_sent && handle.poll_outbound(cx).is_ready() {
                    return Poll::Ready(Wake::Outbound);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Readable(r) => {
                    r?;
                    if !self.read()? {
                        return Ok(());
                    }
                    // Items are handled synchronously; only a command's dispatch is a future,
                    // boxed, so an idle connection's task carries none of this state.
                    while let Some(payload) = self.next_command() {
                        Box::pin(crate::cmd::dispatch(self, payload)).await;
                    }
                }
                Wake::Writable(r) => r?,
                Wake::Outbound => {}
                Wake::CloseDeadline => return Ok(()),
            }
        }
    }

    /// Reads once. `Ok(false)` at end of stream.
    fn read(&mut self) -> io::Result<bool> {
        match self.reader.read_from(&self.stream) {
            Ok(0) => Ok(false),
            Ok(_) => {
                if self.read_failed {
                    self.reader.discard_all();
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.reader.release_if_idle();
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Handles buffered items until one is a command to run (returned) or none is left.
    fn next_command(&mut self) -> Option<Bytes> {
        while !self.read_failed {
            match self.reader.next() {
                Ok(Some(item)) => {
                    if let Some(command) = self.on_incoming(item) {
                        return Some(command);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(conn = self.handle.id, error = %e, "closing on a framing error");
                    self.read_failed = true;
                    self.reader.discard_all();
                    self.handle.close(e.close_code(), &e.to_string(), false);
                }
            }
        }
        self.reader.release_if_idle();
        None
    }

    /// Handles one item; a data message that is a command is returned, to be dispatched.
    fn on_incoming(&mut self, item: Incoming) -> Option<Bytes> {
        self.handle.last_seen_ms.set(self.shard.now_ms());
        match item {
            Incoming::Message { text, payload } => {
                ShardStats::inc(&self.shard.stats().messages_in);
                if self.handle.is_closing() {
                    return None; // after a close, data is ignored
                }
                if self.echo {
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    self.push(frame::data(opcode, &payload));
                    return None;
                }
                if text != self.handle.format.is_text() {
                    let msg = if text {
                        "this connection speaks MessagePack: send binary frames"
                    } else {
                        "this connection speaks JSON: send text frames"
                    };
                    self.send_error(None, &ProtocolError::bad_request(msg));
                    return None;
                }
                return Some(payload);
            }
            Incoming::Ping(payload) => self.push(frame::control(OpCode::Pong, &payload)),
            Incoming::Pong => {}
            Incoming::Close(code) => {
                self.peer_closed = true;
                self.handle.close(code.unwrap_or(1000), "", true);
            }
            Incoming::TooLarge if self.echo => {
                // An echo peer cannot send the message back, and has no error message to
                // send: close with 1009 (message too big, RFC 6455 §7.4.1).
                self.handle.close(1009, "message too big", false);
            }
            Incoming::TooLarge => {
                let max = self.shard.shared.config.max_message_bytes;
                let msg = format!("message larger than {max} bytes discarded");
                self.send_error(None, &ProtocolError::new(ErrorCode::FrameTooLarge, msg));
            }
        }
        None
    }

    /// Writes what the socket takes now; queues the close frame once the queue is empty.
    fn flush(&mut self) -> io::Result<()> {
        loop {
            let stream = &self.stream;
            self.handle
                .flush_with(|slices| stream.try_write_vectored(slices))?;
            if self.handle.has_output() || self.close_sent {
                return Ok(());
            }
            match self.handle.take_close() {
                Some(close) => {
                    self.handle
                        .push_final(frame::close(close.code, &close.reason));
                    self.close_sent = true;
                }
                None => return Ok(()),
            }
        }
    }

    /// Queues a frame for this connection only.
    pub(crate) fn push(&self, frame: Bytes) {
        let max = self.shard.shared.config.max_outbound_bytes;
        match self.handle.push(frame, max) {
            Ok(()) => ShardStats::inc(&self.shard.stats().messages_out),
            Err(PushError::SlowConsumer) => ShardStats::inc(&self.shard.stats().slow_consumers),
            Err(PushError::Closing) => {}
        }
    }

    /// Encodes and queues a message for this connection only.
    pub(crate) fn send(&self, msg: &ServerMessage<'_>) {
        let format = self.handle.format;
        match frame::build(opcode(format), 96, |out| {
            encode_server_message(format, msg, out)
        }) {
            Ok(frame) => self.push(frame),
            Err(e) => tracing::error!(error = %e, "cannot encode a server message"),
        }
    }

    pub(crate) fn send_error(&self, id: Option<&Id<'_>>, error: &ProtocolError) {
        self.send(&ServerMessage::Error {
            id: id.cloned(),
            code: error.code,
            message: &error.message,
        });
    }

    pub(crate) fn send_reply(&self, id: Id<'_>) {
        self.send(&ServerMessage::Reply { id });
    }

    /// Takes one token from the rate limiter.
    pub(crate) fn take_token(&mut self) -> bool {
        let ok = self
            .bucket
            .try_take(rate_limit(&self.shard), self.shard.now_ms());
        if !ok {
            ShardStats::inc(&self.shard.stats().rate_limited);
        }
        ok
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.user_slot.is_some()
    }

    /// The authenticated user.
    pub(crate) fn user(&self) -> Option<std::sync::Arc<str>> {
        self.handle.user.borrow().clone()
    }

    /// Marks the connection authenticated as `identity` and sends `welcome`.
    pub(crate) fn authenticate(&mut self, identity: Identity, slot: UserSlot) {
        self.user_slot = Some(slot);
        self.handle.auth_deadline_ms.set(0);
        *self.handle.user.borrow_mut() = Some(identity.user.clone());
        self.shard.add_user(&identity.user, &self.handle);
        let session = identity.session.unwrap_or_else(|| {
            let bytes: [u8; 16] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        });
        let cfg = &self.shard.shared.config;
        let conn = self.handle.wire_id();
        self.send(&ServerMessage::Welcome(Welcome {
            user: &identity.user,
            conn: &conn,
            session: &session,
            shard: self.shard.id as u32,
            heartbeat: Heartbeat {
                interval_ms: cfg.heartbeat_interval.as_millis() as u64,
                timeout_ms: cfg.heartbeat_timeout.as_millis() as u64,
            },
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes as u64,
                rate_per_sec: cfg.rate_per_sec,
                rate_burst: cfg.rate_burst,
                max_rooms: cfg.max_rooms_per_connection,
            },
        }));
    }

    /// Leaves every room and the shard's maps; the slots are released as the task ends.
    fn finish(self) {
        let rooms = std::mem::take(&mut *self.handle.rooms.borrow_mut());
        for room in &rooms {
            self.shard.leave_local(room, self.handle.id);
            self.shard.shared.directory.remove_member(room);
        }
        self.shard.unregister(&self.handle);
    }
}
