//! A shard: one thread with its own single-threaded runtime that owns a set of connections.
//!
//! Each shard accepts on its own `SO_REUSEPORT` listener (the kernel spreads connections over
//! shards; no cross-thread hand-off at accept), keeps its connections, users and room members
//! in plain local maps, delivers events to them, and drains its inbox of deliveries from other
//! shards. Only the directory (connect, join, leave) and the inboxes are shared.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use indexmap::IndexMap;
use smallvec::SmallVec;
use tokio::net::TcpListener;
use tokio::task::LocalSet;
use wsgate_protocol::CloseCode;

use crate::handle::{ConnHandle, PushError};
use crate::panic::{Faults, PANIC_IN_SHARD};
use crate::reactor::Reactor;
use crate::router::{Delivery, OutEvent, Report, ShardMsg, Target, Task};
use crate::server::Shared;
use crate::shutdown::Shutdown;
use crate::stats::ShardStats;
use crate::ws::frame::{self, OpCode};

type Map<K, V> = HashMap<K, V, RandomState>;

/// The shard's own view of its connections. Only its thread touches it.
#[derive(Default)]
struct Local {
    conns: Map<u64, Rc<ConnHandle>>,
    /// Most users hold one connection: kept inline, no allocation per user.
    users: Map<Arc<str>, SmallVec<[Rc<ConnHandle>; 1]>>,
    /// Members per room, in join order; `IndexMap` for dense iteration and O(1) removal.
    rooms: Map<Arc<str>, IndexMap<u64, Rc<ConnHandle>, RandomState>>,
}

/// One shard.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    started: Instant,
    next_seq: Cell<u64>,
    local: RefCell<Local>,
    /// The connections' sockets and state machines.
    pub(crate) reactor: Reactor,
    /// The ping frame, encoded once and shared by every connection.
    ping: Bytes,
}

impl Shard {
    /// Shard `id` of `shared`, not yet serving (`spawn` runs it; the benches drive it directly).
    /// Fails only if the kernel refuses the reactor's poll.
    pub(crate) fn new(id: usize, shared: Arc<Shared>) -> std::io::Result<Shard> {
        Ok(Shard {
            id,
            shared,
            started: Instant::now(),
            next_seq: Cell::new(1),
            local: RefCell::default(),
            reactor: Reactor::new()?,
            ping: frame::control(OpCode::Ping, b""),
        })
    }

    /// Milliseconds since the shard started, plus one (so 0 can mean "never").
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.id]
    }

    /// A server-wide unique connection id: the shard in the top byte.
    pub(crate) fn next_conn_id(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        ((self.id as u64) << 56) | seq
    }

    /// Adds a connection. During shutdown it is told to close at once.
    pub(crate) fn register(&self, handle: &Rc<ConnHandle>) {
        self.local
            .borrow_mut()
            .conns
            .insert(handle.id, handle.clone());
        ShardStats::inc(&self.stats().connections);
        ShardStats::inc(&self.stats().connections_total);
        if self.shared.shutdown.is_fired() {
            let code = CloseCode::GoingAway;
            handle.close(code.as_u16(), code.reason(), false);
        }
    }

    /// Removes a connection from every local map.
    pub(crate) fn unregister(&self, handle: &ConnHandle) {
        let mut local = self.local.borrow_mut();
        local.conns.remove(&handle.id);
        if let Some(user) = handle.user.borrow().as_ref() {
            if let Some(list) = local.users.get_mut(user) {
                list.retain(|h| h.id != handle.id);
                if list.is_empty() {
                    local.users.remove(user);
                }
            }
        }
        for room in handle.rooms.borrow().iter() {
            remove_member(&mut local.rooms, room, handle.id);
        }
        ShardStats::dec(&self.stats().connections);
    }

    /// Records that `handle` is authenticated as `user`.
    pub(crate) fn add_user(&self, user: &Arc<str>, handle: &Rc<ConnHandle>) {
        self.local
            .borrow_mut()
            .users
            .entry(user.clone())
            .or_default()
            .push(handle.clone());
    }

    /// The shard's existing `Arc` for a room name, so members share one allocation.
    pub(crate) fn room_name(&self, room: &str) -> Arc<str> {
        match self.local.borrow().rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        }
    }

    /// This shard's members of `room`: the room lookup of a delivery (for the benches).
    pub(crate) fn room_len(&self, room: &str) -> usize {
        self.local.borrow().rooms.get(room).map_or(0, IndexMap::len)
    }

    /// This shard's connections of `user`: the user lookup of a delivery (for the benches).
    pub(crate) fn user_len(&self, user: &str) -> usize {
        self.local.borrow().users.get(user).map_or(0, |c| c.len())
    }

    pub(crate) fn join_local(&self, room: &Arc<str>, handle: &Rc<ConnHandle>) {
        let mut local = self.local.borrow_mut();
        local
            .rooms
            .entry(room.clone())
            .or_default()
            .insert(handle.id, handle.clone());
    }

    pub(crate) fn leave_local(&self, room: &str, conn: u64) {
        remove_member(&mut self.local.borrow_mut().rooms, room, conn);
    }

    /// Delivers to this shard's recipients and reports to the delivery's `report`, if any;
    /// returns how many connections received the event.
    /// A panic while delivering is contained: logged, counted, and this shard's part of the
    /// delivery skipped (a REST report then misses this shard's counts).
    pub(crate) fn deliver_local(&self, d: &Delivery) -> usize {
        crate::panic::contain(self.stats(), self.id, "a delivery", || self.deliver(d)).unwrap_or(0)
    }

    fn deliver(&self, d: &Delivery) -> usize {
        if self.shared.config.faults == Faults::On {
            if let Target::Room(room) = &d.target {
                if &**room == PANIC_IN_SHARD {
                    panic!("injected fault: delivery to {PANIC_IN_SHARD}");
                }
            }
        }
        let local = self.local.borrow();
        let max = self.shared.config.max_outbound_bytes;
        let mut delivered = 0;
        let mut push = |h: &Rc<ConnHandle>| {
            if Some(h.id) == d.exclude {
                return;
            }
            if let Some(except) = &d.exclude_user {
                if h.user.borrow().as_deref() == Some(&**except) {
                    return;
                }
            }
            let Some(frame) = d.event.frame(h.format) else {
                return;
            };
            match h.push(frame.clone(), max) {
                Ok(()) => delivered += 1,
                Err(PushError::SlowConsumer) => ShardStats::inc(&self.stats().slow_consumers),
                Err(PushError::Closing) => {}
            }
        };
        // Which target users were seen matters only to a waiting report (REST pushes): no
        // allocation for the deliveries of `send`.
        let track = d.report.is_some();
        let mut found = Vec::new();
        match &d.target {
            Target::User(user) => {
                if let Some(conns) = local.users.get(user) {
                    if track {
                        found.push(0);
                    }
                    conns.iter().for_each(&mut push);
                }
            }
            Target::Users(users) => {
                for (i, user) in users.iter().enumerate() {
                    if let Some(conns) = local.users.get(user) {
                        if track {
                            found.push(i);
                        }
                        conns.iter().for_each(&mut push);
                    }
                }
            }
            Target::Room(room) => {
                local
                    .rooms
                    .get(room)
                    .into_iter()
                    .flatten()
                    .for_each(|(_, h)| push(h));
            }
            Target::Broadcast => local.users.values().flatten().for_each(&mut push),
        }
        let stats = self.stats();
        ShardStats::add(&stats.deliveries, delivered as u64);
        ShardStats::add(&stats.messages_out, delivered as u64);
        if let Some(report) = &d.report {
            report.add(delivered, found);
        }
        delivered
    }

    /// Delivers everywhere: here at once, and through every other shard's inbox.
    pub(crate) async fn route(&self, d: Delivery) {
        self.deliver_local(&d);
        let router = &self.shared.router;
        for shard in (0..router.shards()).filter(|&s| s != self.id) {
            router.send(shard, ShardMsg::Deliver(d.clone())).await;
        }
    }

    /// Runs `f` on every shard (here directly, elsewhere through the inboxes) and collects
    /// the results, in no particular order.
    pub(crate) async fn gather<T: Send + 'static>(
        &self,
        f: impl Fn(&Shard) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let router = &self.shared.router;
        let f = Arc::new(f);
        let results = Arc::new(Mutex::new(Vec::with_capacity(router.shards())));
        let countdown = Report::new(router.shards(), 0);
        for shard in (0..router.shards()).filter(|&s| s != self.id) {
            let (f, results, countdown) = (f.clone(), results.clone(), countdown.clone());
            let task: Task = Box::new(move |shard: &Rc<Shard>| {
                let value = f(shard);
                lock(&results).push(value);
                countdown.add(0, []);
            });
            router.send(shard, ShardMsg::Run(task)).await;
        }
        let value = f(self);
        lock(&results).push(value);
        countdown.add(0, []);
        countdown.wait().await;
        let mut out = lock(&results);
        std::mem::take(&mut *out)
    }

    /// This shard's connections of `user`.
    fn conns_of(&self, user: &str) -> Vec<Rc<ConnHandle>> {
        self.local
            .borrow()
            .users
            .get(user)
            .map(|conns| conns.to_vec())
            .unwrap_or_default()
    }

    /// Rooms any local connection of `user` is in.
    pub(crate) fn rooms_of(&self, user: &str) -> Vec<Arc<str>> {
        let mut rooms: Vec<Arc<str>> = self
            .conns_of(user)
            .iter()
            .flat_map(|h| h.rooms.borrow().clone())
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// Distinct users among this shard's members of `room`.
    pub(crate) fn users_in(&self, room: &str) -> Vec<Arc<str>> {
        let local = self.local.borrow();
        let mut users: Vec<Arc<str>> = local
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|(_, h)| h.user.borrow().clone())
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// Closes every local connection of `user` with 4003 and `reason`; returns how many.
    pub(crate) fn kick(&self, user: &str, reason: &str) -> usize {
        let conns = self.conns_of(user);
        for h in &conns {
            h.close(CloseCode::Kicked.as_u16(), reason, false);
        }
        conns.len()
    }

    /// Adds every local connection of `user` to `room` (up to each connection's room limit);
    /// returns how many were added.
    pub(crate) fn add_to_room(&self, user: &str, room: &Arc<str>) -> usize {
        let max = self.shared.config.max_rooms_per_connection as usize;
        let mut added = 0;
        for h in self.conns_of(user) {
            let joined = h.rooms.borrow().iter().any(|r| r == room);
            if joined || h.rooms.borrow().len() >= max {
                continue;
            }
            if self.shared.directory.add_member(room).is_err() {
                continue;
            }
            self.join_local(room, &h);
            h.rooms.borrow_mut().push(room.clone());
            added += 1;
        }
        added
    }

    /// Removes every local connection of `user` from `room`; returns how many.
    pub(crate) fn remove_from_room(&self, user: &str, room: &str) -> usize {
        let mut removed = 0;
        for h in self.conns_of(user) {
            if self.drop_membership(&h, room) {
                self.shared.directory.remove_member(room);
                removed += 1;
            }
        }
        removed
    }

    /// Closes `room` here: members get `event` (`room.closed`) and are removed. The directory
    /// entry is already gone. Returns how many connections were removed.
    pub(crate) fn close_room(&self, room: &str, event: &Arc<OutEvent>) -> usize {
        let members: Vec<Rc<ConnHandle>> = match self.local.borrow_mut().rooms.remove(room) {
            Some(members) => members.into_values().collect(),
            None => return 0,
        };
        let max = self.shared.config.max_outbound_bytes;
        for h in &members {
            h.rooms.borrow_mut().retain(|r| &**r != room);
            if let Some(frame) = event.frame(h.format) {
                if h.push(frame.clone(), max) == Err(PushError::SlowConsumer) {
                    ShardStats::inc(&self.stats().slow_consumers);
                }
            }
        }
        members.len()
    }

    /// Removes `room` from one connection's rooms and the local map; whether it was a member.
    fn drop_membership(&self, h: &Rc<ConnHandle>, room: &str) -> bool {
        let pos = h.rooms.borrow().iter().position(|r| &**r == room);
        match pos {
            Some(i) => {
                h.rooms.borrow_mut().swap_remove(i);
                self.leave_local(room, h.id);
                true
            }
            None => false,
        }
    }

    /// Closes every connection (flushing what is queued first).
    fn close_all(&self, code: CloseCode) {
        for h in self.local.borrow().conns.values() {
            h.close(code.as_u16(), code.reason(), false);
        }
    }

    fn connection_count(&self) -> usize {
        self.local.borrow().conns.len()
    }

    /// One pass of the timers: auth deadlines, pings to idle connections, heartbeat timeouts;
    /// and the outbound buffers of connections that queued nothing for `release_after` passes.
    fn sweep(&self, release_after: u8) {
        let now = self.now_ms();
        let cfg = &self.shared.config;
        let interval = cfg.heartbeat_interval.as_millis() as u64;
        let timeout = cfg.heartbeat_timeout.as_millis() as u64;
        for h in self.local.borrow().conns.values() {
            h.release_idle_queue(release_after);
            if h.is_closing() {
                continue;
            }
            let deadline = h.deadline_ms.get();
            if deadline != 0 {
                // Awaiting `auth`: only its deadline applies (no ping yet).
                let authenticated = h.user.borrow().is_some();
                if now >= deadline {
                    let code = if authenticated {
                        ShardStats::inc(&self.stats().tokens_expired);
                        CloseCode::TokenExpired
                    } else {
                        CloseCode::AuthTimeout
                    };
                    h.close(code.as_u16(), code.reason(), false);
                    continue;
                }
                if !authenticated {
                    continue;
                }
            }
            let ping = h.ping_sent_ms.get();
            let seen = h.last_seen_ms.get();
            if ping != 0 && seen < ping {
                if now - ping >= timeout {
                    ShardStats::inc(&self.stats().heartbeat_timeouts);
                    let code = CloseCode::HeartbeatTimeout;
                    h.close(code.as_u16(), code.reason(), true);
                }
            } else if now.saturating_sub(seen) >= interval {
                // Only idle connections are pinged: any frame received proves liveness.
                h.ping_sent_ms.set(now);
                if h.push(self.ping.clone(), cfg.max_outbound_bytes) == Err(PushError::SlowConsumer)
                {
                    ShardStats::inc(&self.stats().slow_consumers);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remove_member(
    rooms: &mut Map<Arc<str>, IndexMap<u64, Rc<ConnHandle>, RandomState>>,
    room: &str,
    conn: u64,
) {
    if let Some(members) = rooms.get_mut(room) {
        members.swap_remove(&conn);
        if members.is_empty() {
            rooms.remove(room);
        }
    }
}

/// Starts shard `id` on its own thread, serving `listener` until shutdown.
pub(crate) fn spawn(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wsgate-shard-{id}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "cannot build the shard runtime");
                    return;
                }
            };
            let shard = match Shard::new(id, shared) {
                Ok(shard) => Rc::new(shard),
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "cannot create the shard's reactor");
                    return;
                }
            };
            LocalSet::new().block_on(&runtime, run(shard.clone(), listener));
            // Connections still open past the shutdown deadline close with their sockets.
            crate::reactor::drop_all(&shard);
        })
}

async fn run(shard: Rc<Shard>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id, error = %e, "cannot register the listener");
            return;
        }
    };
    tokio::task::spawn_local(crate::reactor::run(shard.clone()));
    tokio::task::spawn_local(inbox_loop(shard.clone()));
    tokio::task::spawn_local(sweep_loop(shard.clone()));
    let mut shutdown: Shutdown = shard.shared.shutdown.clone();
    // Until shutdown, and while connections drain after it, HTTP is still answered: `/readyz`
    // says false and upgrades get 503 `server.shutting_down`. The listener closes with the drain.
    tokio::select! {
        () = accept_loop(&shard, &listener) => {}
        () = async {
            shutdown.wait().await;
            drain(&shard).await;
        } => {}
    }
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    loop {
        let accepted = listener.accept().await;
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(crate::http::serve(shard.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors or memory: back off and keep serving, never crash.
                if is_resource_exhaustion(&e) {
                    tracing::warn!(shard = shard.id, error = %e, "accept failed; backing off 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    tracing::debug!(shard = shard.id, error = %e, "accept failed");
                }
            }
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Delivers what other shards send; yields every 256 deliveries so connections keep running.
async fn inbox_loop(shard: Rc<Shard>) {
    let router = &shard.shared.router;
    loop {
        router.wait_ready(shard.id).await;
        let mut n = 0u32;
        while let Some(msg) = router.pop(shard.id) {
            match msg {
                ShardMsg::Deliver(d) => {
                    shard.deliver_local(&d);
                }
                ShardMsg::Run(task) => {
                    crate::panic::contain(shard.stats(), shard.id, "a shard task", || task(&shard));
                }
            }
            n += 1;
            if n.is_multiple_of(256) {
                router.drained(shard.id);
                tokio::task::yield_now().await;
            }
        }
        router.drained(shard.id);
    }
}

/// How long a connection's empty outbound queue keeps its buffer after the last frame queued:
/// long enough that bursts a few seconds apart reuse it (growing it anew costs copies and page
/// faults), short enough that idle connections hold none (see BENCHMARKS.md, "Bursts").
const QUEUE_RELEASE_AFTER: Duration = Duration::from_secs(5);

/// Runs [`Shard::sweep`] at a period fine enough for the configured timeouts.
async fn sweep_loop(shard: Rc<Shard>) {
    let cfg = &shard.shared.config;
    let finest = cfg
        .heartbeat_interval
        .min(cfg.heartbeat_timeout)
        .min(cfg.auth_timeout)
        / 4;
    let period = finest.clamp(Duration::from_millis(5), Duration::from_secs(1));
    let release_after = (QUEUE_RELEASE_AFTER.as_millis() / period.as_millis()).clamp(1, 255) as u8;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_collect = Instant::now();
    loop {
        tick.tick().await;
        crate::panic::contain(shard.stats(), shard.id, "the sweep", || {
            shard.sweep(release_after)
        });
        if last_collect.elapsed() >= Duration::from_secs(1) {
            crate::alloc::collect();
            last_collect = Instant::now();
        }
    }
}

/// Graceful shutdown of one shard: close everyone with 1001 after flushing, then wait for the
/// connections to finish, up to the shutdown deadline.
async fn drain(shard: &Rc<Shard>) {
    shard.close_all(CloseCode::GoingAway);
    let deadline = Instant::now() + shard.shared.config.shutdown_timeout;
    while shard.connection_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = shard.connection_count();
    if left > 0 {
        tracing::warn!(
            shard = shard.id,
            connections = left,
            "shutdown deadline passed; dropping"
        );
    }
}
