//! One worker's connections as wsgate clients: the handshake's last steps (`welcome`, `join`,
//! with `since` on a reconnect where offsets are checked), publishing, what each server message
//! means for the counters, the delivery account and the offset account, and the report those
//! add up to. It is the [`Handler`] the client layer is given. Natively or over Socket.IO
//! ([`crate::sio`]: the open packet, pings, the `CONNECT`, acks), the accounts are the same
//! code.

use std::collections::BTreeMap;
use std::rc::Rc;

use hdrhistogram::Histogram;
use wsgate_protocol::{
    decode_join_reply, decode_server_message, Command, Id, OwnedServerMessage, RawData, Request,
};

use crate::client::{Clients, Handler, State, JOIN_ID};
use crate::msg::WorkerReport;
use crate::offsets::Offsets;
use crate::payload;
use crate::plan::{now_ns, DecodeMode, Protocol, PublishMode, Scenario, WireFormat, WorkerPlan};
use crate::scenario::actions::Actions;
use crate::sio::{self, Incoming};
use crate::stats::{encode_histogram, new_histogram, Counters};
use crate::verify::{self, Deliveries};

/// Everything a worker counts about its connections, and how it talks to the server.
pub(crate) struct Session {
    protocol: Protocol,
    format: WireFormat,
    /// Socket.IO's messages (unused natively).
    sio: sio::Writer,
    decode: DecodeMode,
    /// Global index of the worker's first connection.
    first: u64,
    /// Size of each publish's `data` (0: the scenario does not publish).
    payload: usize,
    /// Whether connections join their room after `welcome` (fanout, chat, connect with rooms).
    joins: bool,
    /// Whether they join with `presence: true` (connect).
    presence: bool,
    /// Whether each sends its own user one private message once established (connect).
    mailbox: bool,
    /// Closed-loop fanout: each publish is awaited by the local members of its room.
    closed_loop: bool,
    /// Room names, shared so a request can borrow one while `self` is mutated.
    rooms: Rc<Vec<String>>,
    /// The `data` of the publish being sent (reused).
    data: Vec<u8>,
    pub(crate) counters: Counters,
    failures: BTreeMap<String, u64>,
    error_codes: BTreeMap<String, u64>,
    /// Connect start to `welcome` (ns).
    handshake: Histogram<u64>,
    pub(crate) deliveries: Deliveries,
    /// Each connection's position in its room's stream (chat), and the gaps and duplicates.
    offsets: Offsets,
    /// Handshakes in progress (bounded by `max_pending`).
    pub(crate) pending: u64,
    first_connect_ns: u64,
    last_established_ns: u64,
    /// Whether the setup ramp is still going (its last establishment is timed).
    pub(crate) ramping: bool,
}

impl Session {
    /// A session for `plan`'s connections in `rooms` rooms.
    pub(crate) fn new(plan: &WorkerPlan, rooms: u32) -> Self {
        let (payload, joins) = match plan.scenario {
            Scenario::Connect { rooms, .. } => (0, rooms > 0),
            Scenario::Push { payload, .. } => (payload, false),
            Scenario::Fanout { payload, .. } | Scenario::Chat { payload, .. } => (payload, true),
        };
        let closed_loop = matches!(
            plan.scenario,
            Scenario::Fanout {
                mode: PublishMode::Closed { .. },
                ..
            }
        );
        let (presence, mailbox) = match plan.scenario {
            Scenario::Connect {
                presence, mailbox, ..
            } => (presence, mailbox),
            _ => (false, false),
        };
        Session {
            presence,
            mailbox,
            protocol: plan.common.protocol,
            format: plan.common.format,
            sio: sio::Writer::default(),
            decode: plan.common.decode,
            first: plan.first,
            payload,
            joins,
            closed_loop,
            rooms: Rc::new((0..rooms).map(|r| format!("room-{r}")).collect()),
            data: Vec::with_capacity(1024),
            counters: Counters::default(),
            failures: BTreeMap::new(),
            error_codes: BTreeMap::new(),
            handshake: new_histogram(),
            deliveries: Deliveries::new(plan, rooms as usize),
            offsets: Offsets::new(
                plan.count as usize,
                matches!(plan.scenario, Scenario::Chat { .. }),
            ),
            pending: 0,
            first_connect_ns: 0,
            last_established_ns: 0,
            ramping: true,
        }
    }

    /// Starts connecting connection `idx` at `now`.
    pub(crate) fn start_connect(&mut self, clients: &mut Clients, idx: usize, now: u64) {
        if self.first_connect_ns == 0 {
            self.first_connect_ns = now;
        }
        self.pending += 1;
        clients.connect(idx, now, self);
    }

    /// Gives up on handshakes past `limit` ns and on closed-loop publishes awaited too long.
    pub(crate) fn expire(&mut self, clients: &mut Clients, now: u64, limit: u64) {
        for s in self.deliveries.expire(now) {
            *self
                .error_codes
                .entry("closed_loop_timeout".into())
                .or_default() += 1;
            complete(clients, self.first, s);
        }
        clients.expire_handshakes(now, limit, self);
    }

    /// The worker's final account; `rss` is its process's resident set size now.
    pub(crate) fn report(&mut self, rss: u64) -> WorkerReport {
        let d = &self.deliveries;
        WorkerReport {
            counters: self.counters,
            failures: std::mem::take(&mut self.failures),
            error_codes: std::mem::take(&mut self.error_codes),
            handshake: encode_histogram(&self.handshake),
            latency: encode_histogram(&d.latency),
            first_connect_ns: self.first_connect_ns,
            last_established_ns: self.last_established_ns,
            acked: d.acked.clone(),
            published: d.published.clone(),
            joined: d.joined.clone(),
            bursts: d.bursts.clone(),
            decode_mismatches: d.decode_mismatches,
            offsets: self.offsets.stats,
            rss,
            open_at_rss: self.counters.open,
        }
    }

    fn established(&mut self, clients: &mut Clients, idx: usize, now: u64) {
        clients.conns[idx].state = State::Open;
        if self.mailbox {
            // One private message to its own user: every user gets a user stream.
            let me = format!("u{}", self.first + idx as u64);
            let format = self.format.format();
            // The number 1 in either encoding.
            let one: &[u8] = if format.is_text() { b"1" } else { &[0x01] };
            // No id: no reply to count; an error would still be counted by its code.
            let req = Request {
                id: None,
                command: Command::Send {
                    to: me.as_str().into(),
                    event: "bench".into(),
                    data: RawData::trusted(format, one),
                    echo: true,
                    idem: None,
                },
            };
            clients.send_request(idx, &req, self);
        }
        self.pending = self.pending.saturating_sub(1);
        self.counters.established += 1;
        self.counters.open += 1;
        if self.ramping {
            self.last_established_ns = now;
        }
    }

    fn on_welcome(&mut self, clients: &mut Clients, idx: usize, now: u64) {
        let c = &clients.conns[idx];
        self.handshake
            .saturating_record(now.saturating_sub(c.started_ns));
        if !self.joins {
            return self.established(clients, idx, now);
        }
        clients.conns[idx].state = State::Joining;
        let rooms = self.rooms.clone();
        let room = rooms[clients.conns[idx].room as usize].as_str();
        if self.protocol == Protocol::SocketIo {
            let written = self.sio.join(self.format, JOIN_ID, room);
            return self.send_sio(clients, idx, written);
        }
        let req = Request {
            id: Some(Id::Num(JOIN_ID)),
            command: Command::Join {
                room: room.into(),
                since: self.offsets.since(idx),
                presence: self.presence.then_some(true),
            },
        };
        clients.send_request(idx, &req, self);
    }

    /// A reply (`payload`) to the command `id` of connection `idx`.
    fn on_reply(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        state: State,
        id: Id<'_>,
        payload: &[u8],
        now: u64,
    ) -> Result<(), String> {
        let room = clients.conns[idx].room as usize;
        if state == State::Joining && id == Id::Num(JOIN_ID) {
            if self.offsets.checks() {
                let reply = decode_join_reply(self.format.format(), payload)
                    .map_err(|_| "bad_message".to_string())?
                    .ok_or_else(|| "join_without_position".to_string())?;
                self.offsets
                    .joined(idx, &reply.epoch, reply.offset, reply.recovered);
            }
            self.deliveries.joined[room] += 1;
            self.established(clients, idx, now);
        } else if let Some(a) = self.deliveries.acked.get_mut(room) {
            *a += 1;
        }
        Ok(())
    }

    fn on_error(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        state: State,
        id: Option<Id<'_>>,
        code: &str,
    ) -> Result<(), String> {
        self.counters.errors += 1;
        *self.error_codes.entry(code.to_string()).or_default() += 1;
        if state == State::Joining && id == Some(Id::Num(JOIN_ID)) {
            return Err(format!("join_{code}"));
        }
        // A refused closed-loop publish will never be delivered: free its window slot now
        // instead of after the closed-loop timeout.
        if let Some(Id::Num(n)) = id {
            let s = verify::publish_seq(self.first + idx as u64, n);
            if self.deliveries.refused(s) {
                complete(clients, self.first, s);
            }
        }
        Ok(())
    }

    /// An event arrived on connection `idx` (in `state`): the publish `ts` (send time and
    /// sequence) if it is the loadgen's own, at `offset` of its room's stream if it has one.
    fn on_event(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        state: State,
        ts: Option<(u64, u64)>,
        offset: Option<u64>,
        now: u64,
    ) {
        self.counters.received += 1;
        self.offsets.event(idx, offset, state == State::Joining);
        let Some((t, s)) = ts else {
            return;
        };
        if let Some(done) = self.deliveries.deliver(t, s, now) {
            complete(clients, self.first, done);
        }
    }

    /// Reads an event's `(t, s)` in place and, where offsets are checked, its offset; `None`
    /// when the message does not have that shape (then decode it fully).
    fn read_fast(&self, msg: &[u8]) -> Option<((u64, u64), Option<u64>)> {
        if self.protocol == Protocol::SocketIo {
            return payload::read_fast_sio(self.format, msg).map(|ts| (ts, None));
        }
        let ts = payload::read_fast(self.format, msg, self.payload)?;
        if !self.offsets.checks() {
            return Some((ts, None));
        }
        let offset = payload::read_offset(self.format, msg, self.payload)?;
        Some((ts, Some(offset)))
    }

    /// Publishes one event from connection `idx` to its room.
    fn publish(&mut self, clients: &mut Clients, idx: usize, now: u64, echo: bool) {
        let global = self.first + idx as u64;
        let (room, id) = {
            let c = &mut clients.conns[idx];
            if c.state != State::Open {
                return;
            }
            let id = c.next_id;
            c.next_id += 1;
            c.in_flight = c.in_flight.saturating_add(1);
            (c.room as usize, id)
        };
        let seq = verify::publish_seq(global, id);
        self.data.clear();
        payload::write(self.format, now, seq, self.payload, &mut self.data);
        let data = std::mem::take(&mut self.data);
        let rooms = self.rooms.clone();
        let room_name = rooms[room].as_str();
        match self.protocol {
            Protocol::Native => {
                let req = Request {
                    id: Some(Id::Num(id)),
                    command: Command::Publish {
                        room: room_name.into(),
                        event: "bench".into(),
                        data: RawData::trusted(self.format.format(), &data),
                        echo,
                        ephemeral: false,
                        idem: None,
                    },
                };
                clients.send_request(idx, &req, self);
            }
            Protocol::SocketIo => {
                let written = self
                    .sio
                    .publish(self.format, id, room_name, "bench", &data, echo);
                self.send_sio(clients, idx, written);
            }
        }
        self.data = data;
        self.deliveries.published[room] += 1;
        self.counters.sent += 1;
        if self.closed_loop {
            // Every member of the room is in this worker (the CLI insists on one worker).
            let receivers = self.deliveries.joined[room].saturating_sub(u64::from(!echo));
            if receivers == 0 {
                complete(clients, self.first, seq);
            } else {
                self.deliveries.expect(seq, receivers, now);
            }
        }
    }

    /// Sends the Socket.IO message just `written` on connection `idx` (or fails it).
    fn send_sio(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        written: Result<(), wsgate_protocol::EncodeError>,
    ) {
        let sio = std::mem::take(&mut self.sio);
        match written {
            Ok(()) => {
                let binary = self.format == WireFormat::Msgpack;
                clients.send_message(idx, binary, sio.message(), self);
            }
            Err(_) => clients.fail(idx, "encode", self),
        }
        self.sio = sio;
    }

    /// A native server message (not read fast: `fast` is its fast read if it had one).
    fn on_native(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        state: State,
        payload: &[u8],
        fast: Option<((u64, u64), Option<u64>)>,
        now: u64,
    ) -> Result<(), String> {
        let msg = decode_server_message(self.format.format(), payload)
            .map_err(|_| "bad_message".to_string())?;
        match msg {
            OwnedServerMessage::Welcome { .. } if state == State::Welcoming => {
                self.on_welcome(clients, idx, now)
            }
            OwnedServerMessage::Welcome { .. } => return Err("unexpected_welcome".into()),
            OwnedServerMessage::Reply { id } => {
                self.on_reply(clients, idx, state, id, payload, now)?
            }
            OwnedServerMessage::Error { id, code, .. } => {
                self.on_error(clients, idx, state, id, &code)?
            }
            OwnedServerMessage::Event { data, offset, .. } => {
                let ts = payload::read_value(&data);
                // The fast read has an offset only where offsets are checked.
                let read = offset.filter(|_| self.offsets.checks());
                self.deliveries.compare(fast, ts.map(|ts| (ts, read)));
                self.on_event(clients, idx, state, ts, offset, now);
            }
        }
        Ok(())
    }

    /// A Socket.IO server message (not read fast: `fast` is its fast read if it had one): the
    /// open packet is answered with the `CONNECT`, a ping with a pong, the `CONNECT`'s answer
    /// is the native `welcome`, an ack a reply or an error.
    #[allow(clippy::too_many_arguments)]
    fn on_sio(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        state: State,
        payload: &[u8],
        binary: bool,
        fast: Option<((u64, u64), Option<u64>)>,
        now: u64,
    ) -> Result<(), String> {
        match sio::read(self.format, payload, binary)? {
            Incoming::Open if state == State::Welcoming => {
                clients.conns[idx].state = State::Authenticating;
                let token = clients.token(idx).ok_or("token")?;
                let written = self.sio.connect(self.format, &token);
                self.send_sio(clients, idx, written);
            }
            Incoming::Open => return Err("unexpected_open".into()),
            Incoming::Ping => clients.send_message(idx, false, sio::PONG, self),
            Incoming::Connected if state == State::Authenticating => {
                self.on_welcome(clients, idx, now)
            }
            Incoming::Connected => return Err("unexpected_connect".into()),
            Incoming::Ack { id, error: None } => {
                self.on_reply(clients, idx, state, Id::Num(id), payload, now)?
            }
            Incoming::Ack {
                id,
                error: Some(code),
            } => self.on_error(clients, idx, state, Some(Id::Num(id)), &code)?,
            Incoming::Event { ts } => {
                self.deliveries.compare(fast, ts.map(|ts| (ts, None)));
                self.on_event(clients, idx, state, ts, None, now);
            }
            Incoming::Nothing => {}
        }
        Ok(())
    }

    /// Closes connection `idx` normally and reconnects it at once.
    fn churn(&mut self, clients: &mut Clients, idx: usize, now: u64) {
        clients.close(idx, self);
        self.counters.open = self.counters.open.saturating_sub(1);
        self.counters.reconnects += 1;
        self.start_connect(clients, idx, now);
    }
}

impl Handler for Session {
    fn on_message(
        &mut self,
        clients: &mut Clients,
        idx: usize,
        payload: &[u8],
        binary: bool,
    ) -> Result<(), String> {
        let now = now_ns();
        let state = clients.conns[idx].state;
        let fast = if state == State::Open && self.decode == DecodeMode::Fast {
            self.read_fast(payload)
        } else {
            None
        };
        if let Some((ts, offset)) = fast {
            if !self.deliveries.spot_check() {
                self.on_event(clients, idx, state, Some(ts), offset, now);
                return Ok(());
            }
        }
        match self.protocol {
            Protocol::Native => self.on_native(clients, idx, state, payload, fast, now),
            Protocol::SocketIo => self.on_sio(clients, idx, state, payload, binary, fast, now),
        }
    }

    fn on_failed(&mut self, was: State, cause: &str) {
        if was.handshaking() {
            self.pending = self.pending.saturating_sub(1);
        }
        if was == State::Open {
            self.counters.open = self.counters.open.saturating_sub(1);
        }
        self.counters.failed += 1;
        *self.failures.entry(cause.to_string()).or_default() += 1;
    }
}

/// A closed-loop publish has reached everyone (or timed out): its publisher may go on.
fn complete(clients: &mut Clients, first: u64, s: u64) {
    let local = verify::publisher(s).wrapping_sub(first) as usize;
    if let Some(c) = clients.conns.get_mut(local) {
        c.in_flight = c.in_flight.saturating_sub(1);
    }
}

/// A session and its connections together: what a scenario drives.
pub(crate) struct Ctx<'a> {
    pub(crate) session: &'a mut Session,
    pub(crate) clients: &'a mut Clients,
}

impl Actions for Ctx<'_> {
    fn len(&self) -> usize {
        self.clients.conns.len()
    }

    fn is_open(&self, idx: usize) -> bool {
        self.clients.conns[idx].state == State::Open
    }

    fn published(&self, idx: usize) -> u64 {
        self.clients.conns[idx].published()
    }

    fn in_flight(&self, idx: usize) -> u32 {
        self.clients.conns[idx].in_flight
    }

    fn publish(&mut self, idx: usize, now: u64, echo: bool) {
        self.session.publish(self.clients, idx, now, echo);
    }

    fn churn(&mut self, idx: usize, now: u64) {
        self.session.churn(self.clients, idx, now);
    }

    fn rand(&mut self) -> u64 {
        self.clients.next_rand()
    }
}
