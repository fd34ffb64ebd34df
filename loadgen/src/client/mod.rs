//! The client side of a worker's connections: one mio `Poll`, the connections, the read buffer
//! they share and the write buffers. It takes each connection through TCP connect, upgrade and
//! WebSocket frames (or, for Socket.IO over `--sio-transport polling`, Engine.IO long-polling:
//! [`polling`]) and gives whole messages to a [`Handler`]; it knows nothing of scenarios.

pub(crate) mod conn;
mod http;
mod polling;
mod ws;

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use mio::{Events, Interest, Poll, Token};
use wsgate_protocol::{encode_request, Request};

use conn::{connect, io_cause};
pub(crate) use conn::{Conn, State, JOIN_ID};
use ws::{opcode, Head};

use polling::Polling;

use crate::plan::{now_ns, Protocol, Target, Transport, WireFormat, WorkerPlan};

/// What is done with the connections' messages and failures (the worker's session). Generic
/// parameters, not `dyn`: the calls stay monomorphic on the hot path.
pub(crate) trait Handler {
    /// A whole text (`binary` false) or binary message arrived on connection `idx`
    /// (upgraded, not closed); `Err(cause)` fails the connection.
    fn on_message(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        payload: &[u8],
        binary: bool,
    ) -> Result<(), String>;
    /// Connection `idx` has just failed, in state `was`, because of `cause` (it is closed).
    fn on_failed(&mut self, was: State, cause: &str);
}

/// The claims of a loadgen token: user `u<global index>`.
#[derive(serde::Serialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Every connection of one worker.
pub(crate) struct Clients {
    poll: Poll,
    /// Indexed by the connection's local index, which is also its mio token.
    pub(crate) conns: Vec<Conn>,
    /// Long-polling: each session's sid and `POST` connection (whose mio token is its index
    /// plus `conns.len()`), beside `conns`; empty over WebSocket.
    polls: Vec<Polling>,
    /// WebSocket, or Socket.IO's long-polling.
    transport: Transport,
    /// The read buffer every connection shares (a connection keeps only a partial frame).
    rbuf: Vec<u8>,
    /// An encoded request, before framing.
    scratch: Vec<u8>,
    /// The frame (or upgrade request) being written.
    frame: Vec<u8>,
    /// xorshift64 state for masks and churn picks.
    rng: u64,
    format: WireFormat,
    /// Native: the token goes in the upgrade's query; Socket.IO: in the `CONNECT` (the
    /// session's), so the upgrade carries none.
    protocol: Protocol,
    /// The servers, indexed by each connection's `server` (`Common::servers`).
    targets: Vec<Target>,
    /// Source addresses to bind, round robin by global index (empty: the kernel chooses).
    source_addrs: Vec<IpAddr>,
    /// Global index of the first connection (users are `u<global>`).
    first: u64,
    key: EncodingKey,
    /// Expiry of every token (a day from the start).
    exp: u64,
}

impl Clients {
    /// The connections of `plan`, none connected yet, connection `i` (global) in `room(i)`
    /// (`None`: the scenario has no rooms) and a publisher where `publisher(i)`; each goes to
    /// the server `Common::server_of` picks.
    pub(crate) fn new(
        plan: &WorkerPlan,
        room: impl Fn(u64) -> Option<u32>,
        publisher: impl Fn(u64) -> bool,
    ) -> io::Result<Self> {
        let count = usize::try_from(plan.count).map_err(io::Error::other)?;
        let targets = plan.common.servers();
        if targets.len() > usize::from(u16::MAX) {
            return Err(io::Error::other("too many servers"));
        }
        let conns = (0..count)
            .map(|local| {
                let global = plan.first + local as u64;
                let r = room(global);
                let server = plan.common.server_of(global, r, publisher(global));
                Conn::new(r.unwrap_or(0), server as u16)
            })
            .collect();
        let transport = plan.common.transport;
        let polls = match transport {
            Transport::Polling => (0..count).map(|_| Polling::new()).collect(),
            Transport::Websocket => Vec::new(),
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 24 * 3600;
        Ok(Clients {
            poll: Poll::new()?,
            conns,
            polls,
            transport,
            rbuf: vec![0; 64 * 1024],
            scratch: Vec::with_capacity(1024),
            frame: Vec::with_capacity(1024),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (u64::from(plan.worker) + 1).wrapping_mul(now_ns() | 1),
            format: plan.common.format,
            protocol: plan.common.protocol,
            targets,
            source_addrs: plan.common.source_addrs.clone(),
            first: plan.first,
            key: EncodingKey::from_secret(plan.common.jwt_secret.as_bytes()),
            exp,
        })
    }

    /// Waits up to `timeout` for socket events.
    pub(crate) fn poll(&mut self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        self.poll.poll(events, Some(timeout))
    }

    /// Starts the TCP connect of connection `idx` at `now`.
    pub(crate) fn connect<H: Handler>(&mut self, idx: usize, now: u64, h: &mut H) {
        let c = &mut self.conns[idx];
        c.started_ns = now;
        c.state = State::Connecting;
        c.in_flight = 0;
        match connect(self.target(idx).addr, self.source(idx)) {
            Ok(mut stream) => {
                let reg = self.poll.registry().register(
                    &mut stream,
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                );
                self.conns[idx].stream = Some(stream);
                if let Err(e) = reg {
                    self.fail(idx, &io_cause("register", &e), h);
                }
            }
            Err(e) => self.fail(idx, &io_cause("connect", &e), h),
        }
    }

    /// The server connection `idx` connects to.
    fn target(&self, idx: usize) -> &Target {
        &self.targets[usize::from(self.conns[idx].server)]
    }

    /// The source address connection `idx` binds: round robin by global index (`None`: the
    /// kernel chooses).
    fn source(&self, idx: usize) -> Option<IpAddr> {
        let global = self.first + idx as u64;
        let addrs = &self.source_addrs;
        (!addrs.is_empty()).then(|| addrs[(global % addrs.len() as u64) as usize])
    }

    /// Handles a readiness event of the socket with mio token `token`: connection `token`, or
    /// (long-polling) the `POST` connection of session `token - conns.len()`.
    pub(crate) fn on_event<H: Handler>(&mut self, token: usize, readable: bool, h: &mut H) {
        let idx = token;
        if let Some(session) = idx.checked_sub(self.conns.len()) {
            return self.on_post_event(session, readable, h);
        }
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.state == State::Connecting {
            match c.connected() {
                Ok(true) if self.transport == Transport::Polling => self.send_handshake(idx, h),
                Ok(true) => self.send_upgrade(idx, h),
                Ok(false) => return,
                Err(cause) => return self.fail(idx, &cause, h),
            }
        } else if let Err(cause) = c.flush() {
            return self.fail(idx, &cause, h);
        }
        if readable && self.conns[idx].stream.is_some() {
            self.on_readable(idx, h);
        }
    }

    /// A fresh HS256 token for the user of connection `idx`, `u<global index>`.
    pub(crate) fn token(&self, idx: usize) -> Option<String> {
        let claims = Claims {
            sub: format!("u{}", self.first + idx as u64),
            exp: self.exp,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.key).ok()
    }

    /// Sends the upgrade request; natively with a fresh token (and the format) in its query.
    fn send_upgrade<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let target = self.target(idx);
        let path = match self.protocol {
            Protocol::SocketIo => target.path.clone(),
            Protocol::Native => {
                let Some(token) = self.token(idx) else {
                    return self.fail(idx, "token", h);
                };
                let sep = if target.path.contains('?') { '&' } else { '?' };
                format!(
                    "{}{sep}token={token}&format={}",
                    target.path,
                    self.format.as_str()
                )
            }
        };
        self.frame.clear();
        let host = &self.targets[usize::from(self.conns[idx].server)].host;
        ws::write_upgrade(&mut self.frame, host, &path);
        self.conns[idx].state = State::Upgrading;
        self.send_frame(idx, h);
    }

    /// Writes `self.frame` to connection `idx` (or queues what the socket would not take).
    fn send_frame<H: Handler>(&mut self, idx: usize, h: &mut H) {
        if let Err(cause) = self.conns[idx].write(&self.frame) {
            self.fail(idx, &cause, h);
        }
    }

    /// Encodes `req` and sends it on connection `idx` in one masked frame.
    pub(crate) fn send_request<H: Handler>(&mut self, idx: usize, req: &Request<'_>, h: &mut H) {
        self.scratch.clear();
        if encode_request(self.format.format(), req, &mut self.scratch).is_err() {
            return self.fail(idx, "encode", h);
        }
        let scratch = std::mem::take(&mut self.scratch);
        self.send_message(idx, self.format == WireFormat::Msgpack, &scratch, h);
        self.scratch = scratch;
    }

    /// Sends `payload` on connection `idx` as one masked text (or `binary`) frame.
    pub(crate) fn send_message<H: Handler>(
        &mut self,
        idx: usize,
        binary: bool,
        payload: &[u8],
        h: &mut H,
    ) {
        if self.transport == Transport::Polling {
            return self.queue_packet(idx, binary, payload, h);
        }
        let op = if binary { opcode::BINARY } else { opcode::TEXT };
        self.frame.clear();
        let key = self.mask();
        ws::write_frame(&mut self.frame, op, payload, key);
        self.send_frame(idx, h);
    }

    /// Closes connection `idx` normally (close 1000; a long-polling session's connections are
    /// dropped) and leaves it idle, to be reconnected.
    pub(crate) fn close<H: Handler>(&mut self, idx: usize, h: &mut H) {
        if let Some(p) = self.polls.get_mut(idx) {
            p.reset();
        } else {
            self.frame.clear();
            let key = self.mask();
            ws::write_close(&mut self.frame, 1000, key);
            self.send_frame(idx, h);
        }
        let c = &mut self.conns[idx];
        c.stream = None;
        c.inbuf = Vec::new();
        c.outbuf = Vec::new();
        c.state = State::Idle;
    }

    /// Fails connection `idx` (once): closes it, frees its buffers and tells the handler.
    pub(crate) fn fail<H: Handler>(&mut self, idx: usize, cause: &str, h: &mut H) {
        let c = &mut self.conns[idx];
        if c.state == State::Closed {
            return;
        }
        let was = c.state;
        c.state = State::Closed;
        c.stream = None;
        c.inbuf = Vec::new();
        c.outbuf = Vec::new();
        c.frag = Vec::new();
        if let Some(p) = self.polls.get_mut(idx) {
            p.reset();
        }
        h.on_failed(was, cause);
    }

    /// Fails every connection still handshaking `limit` ns after its connect started.
    pub(crate) fn expire_handshakes<H: Handler>(&mut self, now: u64, limit: u64, h: &mut H) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if c.state.handshaking() && now.saturating_sub(c.started_ns) > limit {
                let cause = format!("timeout_{}", c.state.name());
                self.fail(idx, &cause, h);
            }
        }
    }

    /// Drops every connection with an abortive close (RST): the client side would otherwise
    /// keep every connection in TIME_WAIT for a minute, holding its ephemeral port, and
    /// back-to-back runs would run out of ports.
    pub(crate) fn abort_all(&mut self) {
        let gets = self.conns.iter_mut().filter_map(|c| c.stream.take());
        let posts = self.polls.iter_mut().filter_map(Polling::post_stream);
        for stream in gets.chain(posts) {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }

    /// A fresh mask key.
    fn mask(&mut self) -> [u8; 4] {
        // xorshift64: masks need no cryptographic strength against our own server.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    /// A pseudo-random number (churn picks), from the same generator as the masks.
    pub(crate) fn next_rand(&mut self) -> u64 {
        let m = self.mask();
        self.rng.wrapping_add(u64::from(u32::from_le_bytes(m)))
    }

    /// Reads what connection `idx` has, through the shared buffer, and handles every whole
    /// frame; a partial frame is kept on the connection.
    fn on_readable<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let mut buf = std::mem::take(&mut self.rbuf);
        let mut filled = 0;
        {
            let c = &mut self.conns[idx];
            if !c.inbuf.is_empty() {
                let n = c.inbuf.len();
                if buf.len() < n + 4096 {
                    buf.resize(n + 4096, 0);
                }
                buf[..n].copy_from_slice(&c.inbuf);
                filled = n;
                c.inbuf = Vec::new();
            }
        }
        let filled = self.read_loop(idx, &mut buf, filled, h);
        if filled > 0 {
            self.conns[idx].inbuf = buf[..filled].to_vec();
        }
        if buf.len() > 1024 * 1024 {
            buf.truncate(64 * 1024);
            buf.shrink_to_fit();
        }
        self.rbuf = buf;
    }

    /// Reads into `buf` (holding `filled` bytes already) until the socket is drained and
    /// handles the frames; returns the bytes of a partial frame left at the start of `buf`.
    fn read_loop<H: Handler>(
        &mut self,
        idx: usize,
        buf: &mut Vec<u8>,
        mut filled: usize,
        h: &mut H,
    ) -> usize {
        loop {
            if filled == buf.len() {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            let Some(stream) = self.conns[idx].stream.as_mut() else {
                return 0;
            };
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.fail(idx, "eof", h);
                    return 0;
                }
                Ok(n) => {
                    // A short read drained the socket: with edge-triggered readiness, more
                    // data raises a new event, so the read that would block is not needed.
                    let drained = n < buf.len() - filled;
                    filled += n;
                    match self.process(idx, &buf[..filled], h) {
                        Ok(used) => {
                            buf.copy_within(used..filled, 0);
                            filled -= used;
                        }
                        Err(cause) => {
                            self.fail(idx, &cause, h);
                            return 0;
                        }
                    }
                    if self.conns[idx].stream.is_none() {
                        return 0;
                    }
                    if drained {
                        return filled;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return filled,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, &io_cause("read", &e), h);
                    return 0;
                }
            }
        }
    }

    /// Handles every complete frame at the start of `bytes`; returns the bytes used.
    fn process<H: Handler>(
        &mut self,
        idx: usize,
        bytes: &[u8],
        h: &mut H,
    ) -> Result<usize, String> {
        if self.transport == Transport::Polling {
            return self.process_polling(idx, bytes, h);
        }
        let mut pos = 0;
        if self.conns[idx].state == State::Upgrading {
            match ws::parse_head(bytes) {
                Head::Partial => return Ok(0),
                Head::Refused(status) => return Err(format!("http_{status}")),
                Head::Upgraded(n) => {
                    pos = n;
                    self.conns[idx].state = State::Welcoming;
                }
            }
        }
        loop {
            let Some((frame, used)) = ws::parse_frame(&bytes[pos..]).map_err(|e| match e {
                ws::FrameError::Masked => "frame_masked".to_string(),
                ws::FrameError::TooLarge(_) => "frame_too_large".to_string(),
            })?
            else {
                return Ok(pos);
            };
            pos += used;
            match frame.opcode {
                op @ (opcode::TEXT | opcode::BINARY) if frame.fin => {
                    h.on_message(self, idx, frame.payload, op == opcode::BINARY)?
                }
                op @ (opcode::TEXT | opcode::BINARY) => {
                    // The opcode first (text or binary), then the payload as it arrives.
                    let frag = &mut self.conns[idx].frag;
                    *frag = Vec::with_capacity(1 + frame.payload.len());
                    frag.push(op);
                    frag.extend_from_slice(frame.payload);
                }
                opcode::CONTINUATION => {
                    let c = &mut self.conns[idx];
                    c.frag.extend_from_slice(frame.payload);
                    if frame.fin {
                        let msg = std::mem::take(&mut c.frag);
                        if let Some((&op, payload)) = msg.split_first() {
                            h.on_message(self, idx, payload, op == opcode::BINARY)?;
                        }
                    }
                }
                op => self.on_control(idx, op, frame.payload, h)?,
            }
            if self.conns[idx].stream.is_none() {
                return Ok(pos);
            }
        }
    }

    /// Answers a ping with a pong and a close with a close (then fails the connection).
    fn on_control<H: Handler>(
        &mut self,
        idx: usize,
        op: u8,
        payload: &[u8],
        h: &mut H,
    ) -> Result<(), String> {
        match op {
            opcode::PING => {
                self.frame.clear();
                let key = self.mask();
                ws::write_frame(&mut self.frame, opcode::PONG, payload, key);
                self.send_frame(idx, h);
                Ok(())
            }
            opcode::PONG => Ok(()),
            opcode::CLOSE => {
                let code = ws::close_code(payload);
                self.frame.clear();
                let key = self.mask();
                ws::write_close(&mut self.frame, code, key);
                self.send_frame(idx, h);
                Err(format!("closed_{code}"))
            }
            other => Err(format!("opcode_{other}")),
        }
    }
}
