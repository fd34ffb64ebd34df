//! A shard's I/O reactor: the sockets of its WebSocket connections registered in one
//! `mio::Poll` of the shard's own (itself one file descriptor in the shard's tokio runtime), and
//! a slab of connection state machines driven by readiness.
//!
//! An idle connection costs its state machine, its `ConnHandle` and its socket: no tokio task,
//! no per-socket registration in tokio (measured: see BENCHMARKS.md, "Idle memory"). A
//! connection runs in a task only while one of its commands waits on another shard (a full
//! inbox); then it is *busy*, its slot empty, and events for it are kept in the slot until the
//! command ends.
//!
//! Wake-ups that no socket event reports (frames queued by a delivery, a close requested by the
//! sweep, a close deadline, a finished command) go through [`Ready`]: the connection's slab
//! token is queued once, and the reactor's task drives it on its next turn.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;

use crate::connection::{Connection, Readiness, Role, Step};
use crate::server::ConnPermit;
use crate::shard::Shard;
use crate::stats::ShardStats;
use crate::transport::Transport;

/// Most socket events taken from the poll per turn.
const EVENTS: usize = 1024;
/// Most connections driven per turn before the reactor yields to the shard's other tasks.
const DRIVES_PER_TURN: usize = 4096;

/// Connections waiting to be driven without a socket event.
#[derive(Default)]
pub(crate) struct Ready {
    tokens: RefCell<Vec<u32>>,
    /// The reactor's task, parked while nothing is ready.
    waker: Cell<Option<Waker>>,
}

impl Ready {
    /// Queues `token` (at most once per connection: its handle keeps the flag) and wakes the
    /// reactor.
    pub(crate) fn mark(&self, token: u32) {
        self.tokens.borrow_mut().push(token);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn is_empty(&self) -> bool {
        self.tokens.borrow().is_empty()
    }

    /// Moves the queued tokens into `batch` (which must be empty), keeping its capacity here.
    pub(crate) fn take_into(&self, batch: &mut Vec<u32>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut *self.tokens.borrow_mut(), batch);
    }
}

/// A slab entry: a connection, or none while it is busy.
struct Slot {
    conn: Option<Box<Connection>>,
    io: Readiness,
}

/// A command's run that may wait: it owns the connection until it ends, and gives it back with
/// the panic, if the command panicked.
type Busy = Pin<Box<dyn Future<Output = (Box<Connection>, Option<Box<dyn Any + Send>>)>>>;

/// One shard's reactor.
pub(crate) struct Reactor {
    /// Registers and deregisters sockets (a clone of the poll's registry).
    registry: mio::Registry,
    /// The poll itself, until [`run`] takes it.
    poll: RefCell<Option<mio::Poll>>,
    slots: RefCell<Slab<Slot>>,
    pub(crate) ready: Rc<Ready>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        let poll = mio::Poll::new()?;
        Ok(Reactor {
            registry: poll.registry().try_clone()?,
            poll: RefCell::new(Some(poll)),
            slots: RefCell::new(Slab::new()),
            ready: Rc::default(),
        })
    }

    /// Stops watching a connection's socket (before it is closed).
    pub(crate) fn deregister(&self, stream: &mut Transport) {
        if let Err(e) = self.registry.deregister(stream) {
            tracing::debug!(error = %e, "deregistering a socket failed");
        }
    }
}

/// Takes a freshly upgraded socket into `shard`'s reactor and serves it in `role` from now on.
pub(crate) fn adopt(
    shard: &Rc<Shard>,
    mut stream: Transport,
    already_read: Bytes,
    role: Role,
    permit: ConnPermit,
) {
    let reactor = &shard.reactor;
    let key = reactor.slots.borrow().vacant_key();
    let Ok(token) = u32::try_from(key) else {
        return tracing::error!("connection slab full; dropping an upgraded connection");
    };
    if let Err(e) = reactor.registry.register(
        &mut stream,
        Token(key),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        return tracing::warn!(error = %e, "cannot register an upgraded connection");
    }
    let conn = Connection::new(shard.clone(), stream, already_read, role, permit, token);
    let inserted = reactor.slots.borrow_mut().insert(Slot {
        conn: Some(Box::new(conn)),
        // Assume both until the socket says otherwise: bytes may be waiting already.
        io: Readiness {
            readable: true,
            writable: true,
        },
    });
    debug_assert_eq!(inserted, key);
    drive(shard, key);
}

/// Runs `token`'s connection until it must wait for its socket, another shard, or a timer.
pub(crate) fn drive(shard: &Rc<Shard>, token: usize) {
    let taken = {
        let mut slots = shard.reactor.slots.borrow_mut();
        slots
            .get_mut(token)
            .and_then(|slot| slot.conn.take().map(|conn| (conn, slot.io)))
    };
    // Gone, or busy: a busy connection is driven again when its command ends.
    let Some((mut conn, mut io)) = taken else {
        return;
    };
    conn.handle.unmark();
    loop {
        let step = match std::panic::catch_unwind(AssertUnwindSafe(|| conn.step(&mut io))) {
            Ok(step) => step,
            Err(panic) => {
                conn.on_panic(&*panic);
                Step::Done(Ok(()))
            }
        };
        match step {
            Step::Wait => return put_back(shard, token, conn, io),
            Step::Done(result) => return remove(shard, token, *conn, result),
            Step::Dispatch(payload) => {
                let mut busy = run_command(conn, payload);
                let waker = Waker::noop();
                match busy.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready((back, panic)) => {
                        conn = back;
                        if let Some(panic) = panic {
                            conn.on_panic(&*panic);
                            return remove(shard, token, *conn, Ok(()));
                        }
                    }
                    Poll::Pending => {
                        // The command waits on another shard: finish it in a task (which polls
                        // it again, with its own waker), then carry on from where it stopped.
                        ShardStats::inc(&shard.stats().commands_waited);
                        if let Some(slot) = shard.reactor.slots.borrow_mut().get_mut(token) {
                            slot.io = io;
                        }
                        let shard = shard.clone();
                        tokio::task::spawn_local(async move {
                            let (conn, panic) = busy.await;
                            resume(&shard, token, conn, panic);
                        });
                        return;
                    }
                }
            }
        }
    }
}

/// A command's run as a future that owns the connection; a panic inside is caught and handed
/// back with it.
fn run_command(mut conn: Box<Connection>, payload: Bytes) -> Busy {
    Box::pin(async move {
        let panic = AssertUnwindSafe(crate::cmd::dispatch(&mut conn, payload))
            .catch_unwind()
            .await
            .err();
        (conn, panic)
    })
}

/// A busy connection's command ended: back into its slot, and on.
fn resume(
    shard: &Rc<Shard>,
    token: usize,
    mut conn: Box<Connection>,
    panic: Option<Box<dyn Any + Send>>,
) {
    if let Some(panic) = panic {
        conn.on_panic(&*panic);
        return remove(shard, token, *conn, Ok(()));
    }
    if let Some(slot) = shard.reactor.slots.borrow_mut().get_mut(token) {
        slot.conn = Some(conn);
    }
    drive(shard, token);
}

fn put_back(shard: &Shard, token: usize, conn: Box<Connection>, io: Readiness) {
    if let Some(slot) = shard.reactor.slots.borrow_mut().get_mut(token) {
        slot.conn = Some(conn);
        slot.io = io;
    }
}

fn remove(shard: &Shard, token: usize, conn: Connection, result: io::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(conn = conn.handle.id, error = %e, "connection ended: I/O error");
    }
    let _ = shard.reactor.slots.borrow_mut().try_remove(token);
    conn.finish();
}

/// A socket event: note the readiness, and drive the connection unless it is busy.
fn on_event(shard: &Rc<Shard>, event: &mio::event::Event) {
    let token = event.token().0;
    let idle = {
        let mut slots = shard.reactor.slots.borrow_mut();
        let Some(slot) = slots.get_mut(token) else {
            return;
        };
        // An error or a hang-up is reported by the next read or write.
        let broken = event.is_error() || event.is_read_closed() || event.is_write_closed();
        let was = slot.io;
        slot.io.readable |= event.is_readable() || broken;
        slot.io.writable |= event.is_writable() || broken;
        // Only news is worth a turn: a socket that was writable already (most of them: every
        // ACK from the peer reports write space) has nothing waiting on it.
        let news = (slot.io.readable && !was.readable) || (slot.io.writable && !was.writable);
        news && slot.conn.is_some()
    };
    if idle {
        drive(shard, token);
    }
}

/// The reactor's task: waits for socket events or marked connections and drives them. Runs
/// for the shard's life; at the end, [`drop_all`] drops what is left.
pub(crate) async fn run(shard: Rc<Shard>) {
    let Some(poll) = shard.reactor.poll.borrow_mut().take() else {
        return tracing::error!(shard = shard.id, "the reactor runs once");
    };
    // SAFETY: a `mio::Poll` owns its epoll file descriptor for its whole life and always
    // returns that same descriptor from `as_raw_fd`; the `AsyncFd` owns the poll.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            return tracing::error!(shard = shard.id, error = %e, "cannot register the reactor")
        }
    };
    let ready = shard.reactor.ready.clone();
    let mut events = Events::with_capacity(EVENTS);
    let mut batch = Vec::new();
    loop {
        poll_fn(|cx| {
            if !ready.is_empty() {
                return Poll::Ready(());
            }
            ready.waker.set(Some(cx.waker().clone()));
            fd.poll_read_ready(cx).map(|_| ())
        })
        .await;
        let mut more = poll_events(&shard, &mut fd, &mut events);
        for event in events.iter() {
            on_event(&shard, event);
        }
        let mut driven = 0;
        loop {
            ready.take_into(&mut batch);
            if batch.is_empty() {
                break;
            }
            driven += batch.len();
            for token in batch.drain(..) {
                drive(&shard, token as usize);
            }
            if driven >= DRIVES_PER_TURN {
                more = true;
                break;
            }
        }
        if more {
            tokio::task::yield_now().await;
        }
    }
}

/// Takes the events the poll has now. Returns whether more may be waiting (a full batch).
fn poll_events(shard: &Shard, fd: &mut AsyncFd<mio::Poll>, events: &mut Events) -> bool {
    events.clear();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    // Readiness is cleared only after a poll that came back short, under the guard taken before
    // it: an event arriving meanwhile keeps the fd ready (tokio's tick check).
    let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready_mut(&mut cx) else {
        return false;
    };
    match guard.get_inner_mut().poll(events, Some(Duration::ZERO)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
        Err(e) => {
            tracing::error!(shard = shard.id, error = %e, "polling the reactor failed");
            return true;
        }
    }
    let full = events.iter().count() >= EVENTS;
    if !full {
        guard.clear_ready();
    }
    full
}

/// Drops every connection still held (the shard is ending): their sockets close.
pub(crate) fn drop_all(shard: &Shard) {
    let slots: Vec<Slot> = shard.reactor.slots.borrow_mut().drain().collect();
    for slot in slots {
        if let Some(conn) = slot.conn {
            (*conn).finish();
        }
    }
}
