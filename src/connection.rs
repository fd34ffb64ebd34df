//! One WebSocket connection's state machine: reads frames, runs commands, writes its queue, and
//! closes with the right code. The shard's reactor (`reactor.rs`) drives it when its socket is
//! ready or it has something to do; it holds no task and no buffer while idle.

use std::any::Any;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use hyper_util::rt::TokioIo;
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

/// Most reads in one turn: a client that keeps its socket full waits its turn behind the
/// shard's other connections.
const READS_PER_TURN: u32 = 16;

/// A connection's state.
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
    /// Shard clock (ms) past which the closing handshake is abandoned; 0 when none runs. Set
    /// when a close is requested, reset when our close frame is written.
    close_deadline_ms: u64,
    /// A close to request once the current command's answer is queued.
    pub(crate) close_after_answer: Option<(CloseCode, &'static str)>,
    /// An `/echo` connection: data messages go back unchanged instead of being run as commands.
    echo: bool,
    /// A framing violation was seen: read and discard until the client goes.
    read_failed: bool,
    /// Our close frame is queued (or written).
    close_sent: bool,
    /// The client's close frame arrived.
    peer_closed: bool,
    /// Our close frame has left (so we only wait for the client's).
    close_written: bool,
}

/// What the socket may do without blocking, as far as the reactor knows: set by its events,
/// cleared when a read or write would block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// Where a turn of the connection stopped.
pub(crate) enum Step {
    /// Nothing to do until the socket is ready or the connection is woken.
    Wait,
    /// A command to run (its answer may wait on another shard).
    Dispatch(Bytes),
    /// The connection is over.
    Done(io::Result<()>),
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

/// Completes the upgrade, then hands the socket to the shard's reactor (so neither the
/// upgrade's state nor a task is kept for the connection's life).
pub(crate) async fn run(shard: Rc<Shard>, upgrade: UpgradeFut, role: Role, permit: ConnPermit) {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
    };
    let upgraded = ws.into_inner().into_inner();
    let parts = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => return tracing::error!("upgraded connection is not a TCP stream"),
    };
    let stream = match parts.io.into_inner().into_std() {
        Ok(stream) => mio::net::TcpStream::from_std(stream),
        Err(e) => return tracing::warn!(error = %e, "cannot take over an upgraded socket"),
    };
    crate::reactor::adopt(&shard, Transport::Tcp(stream), parts.read_buf, role, permit);
}

fn rate_limit(shard: &Shard) -> RateLimit {
    let cfg = &shard.shared.config;
    RateLimit {
        rate: cfg.rate_per_sec,
        burst: cfg.rate_burst,
    }
}

impl Connection {
    /// Sets the connection up in `role`, in slot `token` of its shard's reactor.
    pub(crate) fn new(
        shard: Rc<Shard>,
        stream: Transport,
        already_read: Bytes,
        role: Role,
        permit: ConnPermit,
        token: u32,
    ) -> Connection {
        let cfg = &shard.shared.config;
        let now = shard.now_ms();
        // An echo connection never speaks the gateway's formats; JSON only fills the field.
        let format = match &role {
            Role::Gateway { format, .. } => *format,
            Role::Echo => Format::Json,
        };
        let ready = shard.reactor.ready.clone();
        let handle = Rc::new(ConnHandle::new(
            shard.next_conn_id(),
            format,
            now,
            ready,
            token,
        ));
        let mut conn = Connection {
            reader: Reader::new(already_read, cfg.max_message_bytes),
            stream,
            bucket: TokenBucket::new(rate_limit(&shard), now),
            handle,
            user_slot: None,
            _permit: permit,
            close_deadline_ms: 0,
            close_after_answer: None,
            echo: matches!(role, Role::Echo),
            read_failed: false,
            close_sent: false,
            peer_closed: false,
            close_written: false,
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
                .deadline_ms
                .set(now + conn.shard.shared.config.auth_timeout.as_millis() as u64),
            // No auth deadline (the sweep only enforces a non-zero one): nothing to authenticate.
            Role::Echo => {}
        }
        conn
    }

    /// One turn: handles what is buffered, writes what the socket takes, moves the closing
    /// handshake on, and reads while the socket has bytes, until it must wait.
    pub(crate) fn step(&mut self, io: &mut Readiness) -> Step {
        match self.advance(io) {
            Ok(step) => step,
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn advance(&mut self, io: &mut Readiness) -> io::Result<Step> {
        let mut reads = 0;
        loop {
            // Items are handled synchronously; a command is handed back to run.
            if let Some(payload) = self.next_command() {
                return Ok(Step::Dispatch(payload));
            }
            self.flush(io)?;
            if self.closing()? {
                return Ok(Step::Done(Ok(())));
            }
            if !io.readable {
                return Ok(Step::Wait);
            }
            if reads == READS_PER_TURN {
                // More to read: queue a turn behind the shard's other connections.
                self.handle.wake();
                return Ok(Step::Wait);
            }
            reads += 1;
            if !self.read(io)? {
                return Ok(Step::Done(Ok(())));
            }
        }
    }

    /// Moves the closing handshake on; `true` once it is over (or abandoned at its deadline).
    ///
    /// Closing counts from the close request, not from when our close frame is queued: a
    /// client that never reads would otherwise hold a frame unflushed (a slow consumer's
    /// half-written one, a kicked client's queue) and the connection for ever.
    fn closing(&mut self) -> io::Result<bool> {
        if !self.close_sent && !self.handle.is_closing() {
            return Ok(false);
        }
        if self.close_sent && !self.handle.has_output() && !self.close_written {
            if self.peer_closed {
                return Ok(true);
            }
            self.close_written = true;
            if self.read_failed {
                // Failing the connection (RFC 6455 §7.1.7): the server closes TCP as soon as
                // its close frame is out, and waits for no close frame (it could not read
                // one). The rest is read and dropped until EOF.
                self.stream.shutdown_write();
            }
            self.arm_deadline(CLOSE_GRACE);
        } else if self.close_deadline_ms == 0 {
            let grace = self.shard.shared.config.heartbeat_timeout.max(CLOSE_GRACE);
            self.arm_deadline(grace);
        }
        Ok(self.shard.now_ms() >= self.close_deadline_ms)
    }

    /// Abandons the closing handshake `after` from now: a timer wakes the connection then.
    fn arm_deadline(&mut self, after: Duration) {
        self.close_deadline_ms = self.shard.now_ms() + after.as_millis() as u64;
        let handle = Rc::downgrade(&self.handle);
        tokio::task::spawn_local(async move {
            // One millisecond more: the shard clock counts whole milliseconds.
            tokio::time::sleep(after + Duration::from_millis(1)).await;
            if let Some(handle) = handle.upgrade() {
                handle.wake();
            }
        });
    }

    /// A panic while serving the connection was caught (by the reactor): it is closed with
    /// 1011, and the shard and every other connection keep going.
    pub(crate) fn on_panic(&mut self, panic: &(dyn Any + Send)) {
        ShardStats::inc(&self.shard.stats().panics);
        tracing::error!(
            conn = self.handle.id,
            panic = crate::panic::message(panic),
            "panic while serving a connection; closing it with 1011"
        );
        let code = CloseCode::InternalError;
        self.handle.close(code.as_u16(), code.reason(), true);
        let mut io = Readiness {
            readable: false,
            writable: true,
        };
        let _ = self.flush(&mut io);
    }

    /// Reads once. `Ok(false)` at end of stream.
    fn read(&mut self, io: &mut Readiness) -> io::Result<bool> {
        match self.reader.read_from(&self.stream) {
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
    fn flush(&mut self, io: &mut Readiness) -> io::Result<()> {
        loop {
            if io.writable && self.handle.has_output() {
                let stream = &self.stream;
                self.handle
                    .flush_with(|slices| stream.try_write_vectored(slices))?;
                // Frames left means the write would block: wait for the socket.
                io.writable = !self.handle.has_output();
            }
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

    /// Arms the sweep's deadline for a token that stops being valid at `expires_at` (seconds
    /// since the epoch, leeway included), or disarms it: no expiry, or `CLOSE_ON_TOKEN_EXPIRY`
    /// off. The deadline is on the shard's monotonic clock, so a wall-clock step after this
    /// moves it no more.
    pub(crate) fn set_expiry(&self, expires_at: Option<u64>) {
        let deadline = match expires_at {
            Some(at) if self.shard.shared.config.close_on_token_expiry => {
                let now_unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let left = at.saturating_mul(1000).saturating_sub(now_unix_ms);
                self.shard.now_ms().saturating_add(left)
            }
            _ => 0,
        };
        self.handle.deadline_ms.set(deadline);
    }

    /// Marks the connection authenticated as `identity` and sends `welcome`.
    pub(crate) fn authenticate(&mut self, identity: Identity, slot: UserSlot) {
        self.user_slot = Some(slot);
        self.set_expiry(identity.expires_at);
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

    /// Leaves every room and the shard's maps, and stops watching the socket; the socket closes
    /// and the slots are released as the connection drops.
    pub(crate) fn finish(mut self) {
        self.shard.reactor.deregister(&mut self.stream);
        let rooms = std::mem::take(&mut *self.handle.rooms.borrow_mut());
        for room in &rooms {
            self.shard.leave_local(room, self.handle.id);
            self.shard.shared.directory.remove_member(room);
        }
        self.shard.unregister(&self.handle);
    }
}
