//! One worker: a single-threaded mio event loop driving thousands of connections, each a small
//! state machine (`Conn`, about 120 bytes). Reads go through one buffer shared by every
//! connection; a connection keeps bytes only for a partial frame or an unsent write, so an idle
//! connection owns no buffer at all.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use hdrhistogram::Histogram;
use jsonwebtoken::{EncodingKey, Header};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};
use wsgate_protocol::{
    decode_server_message, encode_request, Command, Id, OwnedServerMessage, RawData, Request,
};

use crate::payload;
use crate::plan::{now_ns, DecodeMode, PublishMode, Scenario, WireFormat, WorkerPlan};
use crate::stats::{
    encode_histogram, new_histogram, BurstStat, Control, Counters, WorkerMsg, WorkerReport,
};
use crate::ws::{self, opcode, Head};

/// The id of the one `join` each connection sends; publishes count up from 2.
const JOIN_ID: u64 = 1;
/// A closed-loop publish not received by every member after this long is given up (the loss
/// shows in the totals) so the loop goes on.
const CLOSED_LOOP_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long without a delivery ends the drain early.
const QUIET_NS: u64 = 300_000_000;
/// Progress messages are sent this often.
const PROGRESS_NS: u64 = 250_000_000;
/// In fast decode mode, one event in this many is also fully decoded and compared.
const VERIFY_EVERY: u64 = 64;

/// Where a worker's messages go: a channel (thread workers) or stdout (process workers).
pub trait Sink {
    /// Delivers one message to the coordinator.
    fn send(&mut self, msg: WorkerMsg);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not connected yet (or closed by churn and waiting).
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for `101`.
    Upgrading,
    /// Upgraded, waiting for `welcome`.
    Welcoming,
    /// `join` sent, waiting for its reply.
    Joining,
    /// Authenticated (and joined).
    Open,
    /// Failed or closed; counted once.
    Closed,
}

impl State {
    const fn handshaking(self) -> bool {
        matches!(
            self,
            State::Connecting | State::Upgrading | State::Welcoming | State::Joining
        )
    }

    const fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connect",
            State::Upgrading => "upgrade",
            State::Welcoming => "welcome",
            State::Joining => "join",
            State::Open => "open",
            State::Closed => "closed",
        }
    }
}

/// One connection's whole client-side state.
struct Conn {
    /// `None` once closed; an `Option` of a file descriptor costs no extra space.
    stream: Option<TcpStream>,
    state: State,
    /// The room this connection joins (scenarios with rooms).
    room: u32,
    /// Closed-loop publishes sent and not yet seen back.
    in_flight: u32,
    /// When the current connect started (handshake latency).
    started_ns: u64,
    /// Next publish id (and sequence number).
    next_id: u64,
    /// Bytes of a partial frame left over from the last read. Empty (unallocated) when idle.
    inbuf: Vec<u8>,
    /// Bytes the socket would not take yet. Empty (unallocated) when idle.
    outbuf: Vec<u8>,
    /// A fragmented message being reassembled (the server does not fragment; kept for RFC 6455).
    frag: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Setup,
    WaitGo,
    GoAt(u64),
    Run,
    Drain,
    Done,
}

/// A running worker.
pub struct Worker<S: Sink> {
    plan: WorkerPlan,
    format: WireFormat,
    sink: S,
    control: Receiver<Control>,
    poll: Poll,
    conns: Vec<Conn>,
    /// Room names, shared so a request can borrow one while `self` is mutated.
    rooms: std::rc::Rc<Vec<String>>,
    key: EncodingKey,
    exp: u64,
    rbuf: Vec<u8>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
    data: Vec<u8>,
    rng: u64,
    counters: Counters,
    failures: BTreeMap<String, u64>,
    error_codes: BTreeMap<String, u64>,
    handshake: Histogram<u64>,
    latency: Histogram<u64>,
    acked: Vec<u64>,
    published: Vec<u64>,
    joined: Vec<u64>,
    bursts: Vec<BurstStat>,
    decode_mismatches: u64,
    events_seen: u64,
    phase: Phase,
    next_start: usize,
    pending: u64,
    setup_start_ns: u64,
    first_connect_ns: u64,
    last_established_ns: u64,
    start_ns: u64,
    run_end_ns: u64,
    drain_start_ns: u64,
    last_rx_ns: u64,
    last_progress_ns: u64,
    last_timeout_scan_ns: u64,
    chat_sent: u64,
    chat_cursor: usize,
    churned: u64,
    next_burst_ns: u64,
    publishers: Vec<usize>,
    /// Closed loop: publishes not yet received by every local member of their room, by
    /// sequence number: (receivers still to go, send time).
    outstanding: std::collections::HashMap<u64, (u64, u64)>,
}

impl<S: Sink> Worker<S> {
    /// Prepares a worker (nothing is connected yet).
    pub fn new(plan: WorkerPlan, sink: S, control: Receiver<Control>) -> io::Result<Self> {
        raise_fd_limit();
        let count = usize::try_from(plan.count).map_err(io::Error::other)?;
        let (rooms, publishers_total) = match plan.scenario {
            Scenario::Connect | Scenario::Push { .. } => (0, 0),
            Scenario::Fanout {
                rooms, publishers, ..
            } => (rooms.max(1), u64::from(publishers)),
            Scenario::Chat { rooms, .. } => (rooms.max(1), 0),
        };
        let mut conns = Vec::with_capacity(count);
        let mut publishers = Vec::new();
        for local in 0..count {
            let global = plan.first + local as u64;
            let room = match plan.scenario {
                Scenario::Connect | Scenario::Push { .. } => 0,
                Scenario::Fanout { .. } if global < publishers_total => {
                    publishers.push(local);
                    (global % u64::from(rooms)) as u32
                }
                Scenario::Fanout { .. } => ((global - publishers_total) % u64::from(rooms)) as u32,
                Scenario::Chat { .. } => (global % u64::from(rooms)) as u32,
            };
            conns.push(Conn {
                stream: None,
                state: State::Idle,
                room,
                in_flight: 0,
                started_ns: 0,
                next_id: JOIN_ID + 1,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                frag: Vec::new(),
            });
        }
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 24 * 3600;
        let rooms_n = rooms as usize;
        Ok(Worker {
            format: plan.common.format,
            key: EncodingKey::from_secret(plan.common.jwt_secret.as_bytes()),
            exp,
            sink,
            control,
            poll: Poll::new()?,
            conns,
            rooms: std::rc::Rc::new((0..rooms).map(|r| format!("room-{r}")).collect()),
            rbuf: vec![0; 64 * 1024],
            scratch: Vec::with_capacity(1024),
            frame: Vec::with_capacity(1024),
            data: Vec::with_capacity(1024),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (u64::from(plan.worker) + 1).wrapping_mul(now_ns() | 1),
            counters: Counters::default(),
            failures: BTreeMap::new(),
            error_codes: BTreeMap::new(),
            handshake: new_histogram(),
            latency: new_histogram(),
            acked: vec![0; rooms_n],
            published: vec![0; rooms_n],
            joined: vec![0; rooms_n],
            bursts: Vec::new(),
            decode_mismatches: 0,
            events_seen: 0,
            phase: Phase::Setup,
            next_start: 0,
            pending: 0,
            setup_start_ns: now_ns(),
            first_connect_ns: 0,
            last_established_ns: 0,
            start_ns: 0,
            run_end_ns: 0,
            drain_start_ns: 0,
            last_rx_ns: 0,
            last_progress_ns: 0,
            last_timeout_scan_ns: 0,
            chat_sent: 0,
            chat_cursor: 0,
            churned: 0,
            next_burst_ns: 0,
            publishers,
            outstanding: std::collections::HashMap::new(),
            plan,
        })
    }

    /// Runs the worker to the end and sends its final report.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(4096);
        self.setup_start_ns = now_ns();
        loop {
            let timeout = match self.phase {
                Phase::Run | Phase::Drain | Phase::Setup | Phase::GoAt(_) => {
                    Duration::from_millis(1)
                }
                _ => Duration::from_millis(20),
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                self.on_event(ev.token().0, ev.is_readable() || ev.is_read_closed());
            }
            loop {
                match self.control.try_recv() {
                    Ok(Control::Go { start_ns }) => {
                        if self.phase == Phase::WaitGo || self.phase == Phase::Setup {
                            self.phase = Phase::GoAt(start_ns);
                        }
                    }
                    Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                        self.phase = Phase::Done;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.tick(now_ns());
            if self.phase == Phase::Done {
                break;
            }
        }
        let report = self.report();
        self.sink.send(WorkerMsg::Final(Box::new(report)));
        // Abortive close (RST): the client side would otherwise keep every connection in
        // TIME_WAIT for a minute, holding its ephemeral port, and back-to-back runs would run
        // out of ports.
        for c in &mut self.conns {
            if let Some(stream) = c.stream.take() {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
        Ok(())
    }

    fn report(&mut self) -> WorkerReport {
        WorkerReport {
            counters: self.counters,
            failures: std::mem::take(&mut self.failures),
            error_codes: std::mem::take(&mut self.error_codes),
            handshake: encode_histogram(&self.handshake),
            latency: encode_histogram(&self.latency),
            first_connect_ns: self.first_connect_ns,
            last_established_ns: self.last_established_ns,
            acked: self.acked.clone(),
            published: self.published.clone(),
            joined: self.joined.clone(),
            bursts: self.bursts.clone(),
            decode_mismatches: self.decode_mismatches,
            rss: crate::coordinator::server_rss(std::process::id()).unwrap_or(0),
            open_at_rss: self.counters.open,
        }
    }

    fn tick(&mut self, now: u64) {
        match self.phase {
            Phase::Setup => {
                self.ramp(now);
                if self.next_start == self.conns.len() && self.pending == 0 {
                    self.phase = Phase::WaitGo;
                    self.sink.send(WorkerMsg::Ready {
                        counters: self.counters,
                    });
                }
            }
            Phase::WaitGo | Phase::Done => {}
            Phase::GoAt(start) => {
                if now >= start {
                    self.start_ns = start;
                    self.run_end_ns = start + self.plan.common.duration.as_nanos() as u64;
                    self.next_burst_ns = start;
                    self.phase = Phase::Run;
                }
            }
            Phase::Run => {
                if now >= self.run_end_ns {
                    self.phase = Phase::Drain;
                    self.drain_start_ns = now;
                } else {
                    self.drive(now);
                }
            }
            Phase::Drain => {
                let quiet_since = self.drain_start_ns.max(self.last_rx_ns);
                let done = matches!(self.plan.scenario, Scenario::Connect)
                    || now.saturating_sub(quiet_since) >= QUIET_NS
                    || now - self.drain_start_ns >= self.plan.common.drain.as_nanos() as u64;
                if done {
                    self.phase = Phase::Done;
                }
            }
        }
        if now.saturating_sub(self.last_timeout_scan_ns) >= 100_000_000 {
            self.last_timeout_scan_ns = now;
            self.scan_timeouts(now);
        }
        if now.saturating_sub(self.last_progress_ns) >= PROGRESS_NS {
            self.last_progress_ns = now;
            self.sink.send(WorkerMsg::Progress {
                counters: self.counters,
            });
        }
    }

    /// Starts connections at the ramp rate, bounded by the handshakes in progress.
    fn ramp(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.setup_start_ns) as f64 / 1e9;
        let allowed = (elapsed * self.plan.common.connect_rate) as usize + 1;
        let max_pending = u64::from(self.plan.common.max_pending.max(1));
        while self.next_start < self.conns.len()
            && self.next_start < allowed
            && self.pending < max_pending
        {
            let idx = self.next_start;
            self.next_start += 1;
            self.start_connect(idx, now);
        }
    }

    fn scan_timeouts(&mut self, now: u64) {
        if !self.outstanding.is_empty() {
            let stale: Vec<u64> = self
                .outstanding
                .iter()
                .filter(|(_, (_, sent))| now.saturating_sub(*sent) > CLOSED_LOOP_TIMEOUT_NS)
                .map(|(s, _)| *s)
                .collect();
            for s in stale {
                self.outstanding.remove(&s);
                *self
                    .error_codes
                    .entry("closed_loop_timeout".into())
                    .or_default() += 1;
                self.complete(s);
            }
        }
        let limit = self.plan.common.connect_timeout.as_nanos() as u64;
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if c.state.handshaking() && now.saturating_sub(c.started_ns) > limit {
                let cause = format!("timeout_{}", c.state.name());
                self.fail(idx, &cause);
            }
        }
    }

    fn start_connect(&mut self, idx: usize, now: u64) {
        if self.first_connect_ns == 0 {
            self.first_connect_ns = now;
        }
        let c = &mut self.conns[idx];
        c.started_ns = now;
        c.state = State::Connecting;
        c.in_flight = 0;
        self.pending += 1;
        let global = self.plan.first + idx as u64;
        let addrs = &self.plan.common.source_addrs;
        let source = (!addrs.is_empty()).then(|| addrs[(global % addrs.len() as u64) as usize]);
        match connect(self.plan.common.target.addr, source) {
            Ok(mut stream) => {
                let reg = self.poll.registry().register(
                    &mut stream,
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                );
                self.conns[idx].stream = Some(stream);
                if let Err(e) = reg {
                    self.fail(idx, &io_cause("register", &e));
                }
            }
            Err(e) => self.fail(idx, &io_cause("connect", &e)),
        }
    }

    fn on_event(&mut self, idx: usize, readable: bool) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.state == State::Connecting {
            let Some(stream) = c.stream.as_ref() else {
                return;
            };
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.fail(idx, &io_cause("connect", &e));
                    return;
                }
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.fail(idx, &io_cause("connect", &e));
                    return;
                }
            }
            self.send_upgrade(idx);
        } else {
            self.flush(idx);
        }
        if readable && self.conns[idx].stream.is_some() {
            self.on_readable(idx);
        }
    }

    fn send_upgrade(&mut self, idx: usize) {
        let global = self.plan.first + idx as u64;
        let claims = Claims {
            sub: format!("u{global}"),
            exp: self.exp,
        };
        let token = match jsonwebtoken::encode(&Header::default(), &claims, &self.key) {
            Ok(t) => t,
            Err(_) => {
                self.fail(idx, "token");
                return;
            }
        };
        let target = &self.plan.common.target;
        let sep = if target.path.contains('?') { '&' } else { '?' };
        let path = format!(
            "{}{sep}token={token}&format={}",
            target.path,
            self.format.as_str()
        );
        self.frame.clear();
        ws::write_upgrade(&mut self.frame, &target.host, &path);
        self.conns[idx].state = State::Upgrading;
        self.send_frame(idx);
    }

    /// Writes `self.frame` to connection `idx` (or queues what the socket would not take).
    fn send_frame(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if !c.outbuf.is_empty() {
            c.outbuf.extend_from_slice(&self.frame);
            return;
        }
        let mut written = 0;
        while written < self.frame.len() {
            match stream.write(&self.frame[written..]) {
                Ok(0) => {
                    self.fail(idx, "write_zero");
                    return;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, &io_cause("write", &e));
                    return;
                }
            }
        }
        if written < self.frame.len() {
            c.outbuf.extend_from_slice(&self.frame[written..]);
        }
    }

    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        let mut written = 0;
        while written < c.outbuf.len() {
            match stream.write(&c.outbuf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, &io_cause("write", &e));
                    return;
                }
            }
        }
        if written == c.outbuf.len() {
            c.outbuf = Vec::new();
        } else {
            c.outbuf.drain(..written);
        }
    }

    fn on_readable(&mut self, idx: usize) {
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
        loop {
            if filled == buf.len() {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            let Some(stream) = self.conns[idx].stream.as_mut() else {
                filled = 0;
                break;
            };
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.fail(idx, "eof");
                    filled = 0;
                    break;
                }
                Ok(n) => {
                    // A short read drained the socket: with edge-triggered readiness, more
                    // data raises a new event, so the read that would block is not needed.
                    let drained = n < buf.len() - filled;
                    filled += n;
                    match self.process(idx, &buf[..filled]) {
                        Ok(used) => {
                            buf.copy_within(used..filled, 0);
                            filled -= used;
                        }
                        Err(cause) => {
                            self.fail(idx, &cause);
                            filled = 0;
                            break;
                        }
                    }
                    if self.conns[idx].stream.is_none() {
                        filled = 0;
                        break;
                    }
                    if drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, &io_cause("read", &e));
                    filled = 0;
                    break;
                }
            }
        }
        if filled > 0 {
            self.conns[idx].inbuf = buf[..filled].to_vec();
        }
        if buf.len() > 1024 * 1024 {
            buf.truncate(64 * 1024);
            buf.shrink_to_fit();
        }
        self.rbuf = buf;
    }

    /// Handles every complete frame at the start of `bytes`; returns the bytes used.
    fn process(&mut self, idx: usize, bytes: &[u8]) -> Result<usize, String> {
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
                opcode::TEXT | opcode::BINARY if frame.fin => {
                    self.on_message(idx, frame.payload)?
                }
                opcode::TEXT | opcode::BINARY => {
                    self.conns[idx].frag = frame.payload.to_vec();
                }
                opcode::CONTINUATION => {
                    let c = &mut self.conns[idx];
                    c.frag.extend_from_slice(frame.payload);
                    if frame.fin {
                        let msg = std::mem::take(&mut c.frag);
                        self.on_message(idx, &msg)?;
                    }
                }
                opcode::PING => {
                    self.frame.clear();
                    let key = self.mask();
                    ws::write_frame(&mut self.frame, opcode::PONG, frame.payload, key);
                    self.send_frame(idx);
                }
                opcode::PONG => {}
                opcode::CLOSE => {
                    let code = ws::close_code(frame.payload);
                    self.frame.clear();
                    let key = self.mask();
                    ws::write_close(&mut self.frame, code, key);
                    self.send_frame(idx);
                    return Err(format!("closed_{code}"));
                }
                other => return Err(format!("opcode_{other}")),
            }
            if self.conns[idx].stream.is_none() {
                return Ok(pos);
            }
        }
    }

    fn on_message(&mut self, idx: usize, payload: &[u8]) -> Result<(), String> {
        let now = now_ns();
        let state = self.conns[idx].state;
        let size = self.payload_size();
        let fast = if state == State::Open && self.plan.common.decode == DecodeMode::Fast {
            payload::read_fast(self.format, payload, size)
        } else {
            None
        };
        if let Some((t, s)) = fast {
            self.events_seen += 1;
            if !self.events_seen.is_multiple_of(VERIFY_EVERY) {
                self.on_delivery(t, s, now);
                return Ok(());
            }
        }
        let msg = decode_server_message(self.format.format(), payload)
            .map_err(|_| "bad_message".to_string())?;
        match msg {
            OwnedServerMessage::Welcome { .. } if state == State::Welcoming => {
                let c = &self.conns[idx];
                self.handshake
                    .saturating_record(now.saturating_sub(c.started_ns));
                if matches!(
                    self.plan.scenario,
                    Scenario::Connect | Scenario::Push { .. }
                ) {
                    self.established(idx, now);
                } else {
                    self.conns[idx].state = State::Joining;
                    let rooms = self.rooms.clone();
                    let room = rooms[self.conns[idx].room as usize].as_str();
                    let req = Request {
                        id: Some(Id::Num(JOIN_ID)),
                        command: Command::Join { room: room.into() },
                    };
                    self.send_request(idx, &req);
                }
            }
            OwnedServerMessage::Welcome { .. } => return Err("unexpected_welcome".into()),
            OwnedServerMessage::Reply { id } => {
                let room = self.conns[idx].room as usize;
                if state == State::Joining && id == Id::Num(JOIN_ID) {
                    self.joined[room] += 1;
                    self.established(idx, now);
                } else if let Some(a) = self.acked.get_mut(room) {
                    *a += 1;
                }
            }
            OwnedServerMessage::Error { id, code, .. } => {
                self.counters.errors += 1;
                *self.error_codes.entry(code.clone()).or_default() += 1;
                if state == State::Joining && id == Some(Id::Num(JOIN_ID)) {
                    return Err(format!("join_{code}"));
                }
                // A refused closed-loop publish will never be delivered: free its window slot
                // now instead of after CLOSED_LOOP_TIMEOUT_NS.
                if let Some(Id::Num(n)) = id {
                    let s = publish_seq(self.plan.first + idx as u64, n);
                    if self.outstanding.remove(&s).is_some() {
                        self.complete(s);
                    }
                }
            }
            OwnedServerMessage::Event { data, .. } => {
                let full = payload::read_value(&data);
                if let Some(f) = fast {
                    if full != Some(f) {
                        self.decode_mismatches += 1;
                    }
                }
                match full {
                    Some((t, s)) => self.on_delivery(t, s, now),
                    None => self.counters.received += 1,
                }
            }
        }
        Ok(())
    }

    fn on_delivery(&mut self, t: u64, s: u64, now: u64) {
        self.counters.received += 1;
        self.last_rx_ns = now;
        self.latency.saturating_record(now.saturating_sub(t));
        if let Scenario::Fanout {
            mode: PublishMode::Burst { interval_ms, .. },
            ..
        } = self.plan.scenario
        {
            if self.start_ns > 0 && t >= self.start_ns {
                let b = ((t - self.start_ns) / (interval_ms.max(1) * 1_000_000)) as usize;
                if b < 100_000 {
                    if self.bursts.len() <= b {
                        self.bursts.resize(b + 1, BurstStat::default());
                    }
                    let st = &mut self.bursts[b];
                    st.received += 1;
                    st.first_sent_ns = if st.first_sent_ns == 0 {
                        t
                    } else {
                        st.first_sent_ns.min(t)
                    };
                    st.last_received_ns = st.last_received_ns.max(now);
                }
            }
        }
        if let Some(left) = self.outstanding.get_mut(&s) {
            left.0 = left.0.saturating_sub(1);
            if left.0 == 0 {
                self.outstanding.remove(&s);
                self.complete(s);
            }
        }
    }

    /// A closed-loop publish has reached everyone (or timed out): its publisher may go on.
    fn complete(&mut self, s: u64) {
        let local = (s >> 32).wrapping_sub(self.plan.first) as usize;
        if let Some(c) = self.conns.get_mut(local) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    fn established(&mut self, idx: usize, now: u64) {
        self.conns[idx].state = State::Open;
        self.pending = self.pending.saturating_sub(1);
        self.counters.established += 1;
        self.counters.open += 1;
        if self.phase == Phase::Setup {
            self.last_established_ns = now;
        }
    }

    fn fail(&mut self, idx: usize, cause: &str) {
        let c = &mut self.conns[idx];
        if c.state == State::Closed {
            return;
        }
        if c.state.handshaking() {
            self.pending = self.pending.saturating_sub(1);
        }
        if c.state == State::Open {
            self.counters.open = self.counters.open.saturating_sub(1);
        }
        c.state = State::Closed;
        c.stream = None;
        c.inbuf = Vec::new();
        c.outbuf = Vec::new();
        c.frag = Vec::new();
        self.counters.failed += 1;
        *self.failures.entry(cause.to_string()).or_default() += 1;
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift64: masks need no cryptographic strength against our own server.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    fn send_request(&mut self, idx: usize, req: &Request<'_>) {
        self.scratch.clear();
        if encode_request(self.format.format(), req, &mut self.scratch).is_err() {
            self.fail(idx, "encode");
            return;
        }
        let op = match self.format {
            WireFormat::Json => opcode::TEXT,
            WireFormat::Msgpack => opcode::BINARY,
        };
        self.frame.clear();
        let key = self.mask();
        ws::write_frame(&mut self.frame, op, &self.scratch, key);
        self.send_frame(idx);
    }

    fn payload_size(&self) -> usize {
        match self.plan.scenario {
            Scenario::Fanout { payload, .. }
            | Scenario::Chat { payload, .. }
            | Scenario::Push { payload, .. } => payload,
            Scenario::Connect => 0,
        }
    }

    /// Publishes one event from connection `idx` to its room.
    fn publish(&mut self, idx: usize, now: u64, echo: bool) {
        let global = self.plan.first + idx as u64;
        let (room, id) = {
            let c = &mut self.conns[idx];
            if c.state != State::Open {
                return;
            }
            let id = c.next_id;
            c.next_id += 1;
            c.in_flight = c.in_flight.saturating_add(1);
            (c.room as usize, id)
        };
        let size = self.payload_size();
        self.data.clear();
        payload::write(
            self.format,
            now,
            publish_seq(global, id),
            size,
            &mut self.data,
        );
        let data = std::mem::take(&mut self.data);
        let rooms = self.rooms.clone();
        let req = Request {
            id: Some(Id::Num(id)),
            command: Command::Publish {
                room: rooms[room].as_str().into(),
                event: "bench".into(),
                data: RawData::trusted(self.format.format(), &data),
                echo,
            },
        };
        self.send_request(idx, &req);
        self.data = data;
        self.published[room] += 1;
        self.counters.sent += 1;
        if let Scenario::Fanout {
            mode: PublishMode::Closed { .. },
            ..
        } = self.plan.scenario
        {
            // Every member of the room is in this worker (the CLI insists on one worker).
            let receivers = self.joined[room].saturating_sub(u64::from(!echo));
            let s = publish_seq(global, id);
            if receivers == 0 {
                self.complete(s);
            } else {
                self.outstanding.insert(s, (receivers, now));
            }
        }
    }

    /// The measured phase: publish (and churn) on schedule.
    fn drive(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.start_ns) as f64 / 1e9;
        match self.plan.scenario.clone() {
            Scenario::Connect | Scenario::Push { .. } => {}
            Scenario::Fanout {
                publishers,
                mode,
                echo,
                ..
            } => match mode {
                PublishMode::Rate { per_sec } => {
                    let per_pub = per_sec / f64::from(publishers.max(1));
                    let due = (elapsed * per_pub) as u64 + 1;
                    for i in 0..self.publishers.len() {
                        let idx = self.publishers[i];
                        let mut budget = 1000;
                        while self.conns[idx].state == State::Open
                            && self.conns[idx].next_id - JOIN_ID - 1 < due
                            && budget > 0
                        {
                            self.publish(idx, now, echo);
                            budget -= 1;
                        }
                    }
                }
                PublishMode::Closed { window } => {
                    for i in 0..self.publishers.len() {
                        let idx = self.publishers[i];
                        while self.conns[idx].state == State::Open
                            && self.conns[idx].in_flight < window.max(1)
                        {
                            self.publish(idx, now, echo);
                        }
                    }
                }
                PublishMode::Burst { size, interval_ms } => {
                    if now >= self.next_burst_ns {
                        self.next_burst_ns += interval_ms.max(1) * 1_000_000;
                        for i in 0..self.publishers.len() {
                            let idx = self.publishers[i];
                            for _ in 0..size {
                                self.publish(idx, now_ns(), echo);
                            }
                        }
                    }
                }
            },
            Scenario::Chat {
                rate_per_user,
                churn_per_sec,
                ..
            } => {
                let n = self.conns.len();
                if n == 0 {
                    return;
                }
                let due = (elapsed * rate_per_user * n as f64) as u64;
                let mut budget = 10_000;
                while self.chat_sent < due && budget > 0 {
                    let idx = self.chat_cursor % n;
                    self.chat_cursor += 1;
                    self.chat_sent += 1;
                    budget -= 1;
                    self.publish(idx, now, false);
                }
                let share = n as f64 / self.plan.total.max(1) as f64;
                let churn_due = (elapsed * churn_per_sec * share) as u64;
                while self.churned < churn_due {
                    self.churned += 1;
                    let idx = (self.next_rand() % n as u64) as usize;
                    if self.conns[idx].state == State::Open {
                        self.churn(idx, now);
                    }
                }
            }
        }
    }

    fn next_rand(&mut self) -> u64 {
        let m = self.mask();
        self.rng.wrapping_add(u64::from(u32::from_le_bytes(m)))
    }

    /// Closes connection `idx` normally and reconnects it at once.
    fn churn(&mut self, idx: usize, now: u64) {
        self.frame.clear();
        let key = self.mask();
        ws::write_close(&mut self.frame, 1000, key);
        self.send_frame(idx);
        let c = &mut self.conns[idx];
        c.stream = None;
        c.inbuf = Vec::new();
        c.outbuf = Vec::new();
        c.state = State::Idle;
        self.counters.open = self.counters.open.saturating_sub(1);
        self.counters.reconnects += 1;
        self.start_connect(idx, now);
    }
}

#[derive(serde::Serialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Opens a non-blocking TCP connection, bound to `source` first when given.
/// The key of one publish, also carried in its payload: the publishing connection's global
/// index in the high 32 bits, the request id in the low 32.
fn publish_seq(global: u64, id: u64) -> u64 {
    (global << 32) | (id & 0xffff_ffff)
}

fn connect(target: SocketAddr, source: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
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

fn io_cause(op: &str, e: &io::Error) -> String {
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

/// Raises this process's open-file soft limit to its hard limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The open-file hard limit of this process (what one worker can hold).
pub fn fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(_, hard)| hard)
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
