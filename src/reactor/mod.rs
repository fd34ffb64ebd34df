//! A shard's reactor: one `mio::Poll` and a slab of connection state machines, generic over
//! the machine ([`Machine`]); it knows sockets, readiness and turns, nothing of what the
//! machines serve.
//!
//! The poll's epoll descriptor is registered once in the shard's tokio runtime; after that a
//! connection costs one slab entry and no task. A socket event drives its machine
//! synchronously ([`Machine::step`]). Wake-ups that no socket event reports (frames queued by
//! a delivery, a close requested by the sweep, a close deadline, a finished piece of work) go
//! through [`Ready`]: the machine's slab token is queued once ([`Wake`]), and the reactor's
//! task drives it on its next turn. Work a machine hands back ([`Step::Run`]) is polled once
//! inline; if it must wait (another shard's full inbox), it finishes in a task that owns the
//! machine, and the machine is busy until then.

mod ready;

use std::any::Any;
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use mio::event::Source;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;

pub(crate) use ready::{Ready, Wake};

/// Most socket events taken from the poll per turn.
const EVENTS: usize = 1024;
/// Most connections driven per turn before the reactor yields to the shard's other tasks.
const DRIVES_PER_TURN: usize = 4096;

/// What the socket may do without blocking, as far as the reactor knows: set by its events,
/// cleared by the machine when a read or write would block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// Where a turn of a machine stopped.
pub(crate) enum Step<W> {
    /// Nothing to do until the socket is ready or the machine is woken.
    Wait,
    /// Work to run, which may have to wait (see [`Machine::run`]).
    Run(W),
    /// The machine is over.
    Done(io::Result<()>),
}

/// A connection's state machine, driven by the reactor.
pub(crate) trait Machine: Sized + 'static {
    /// What a turn may hand back to run outside the turn (a client's command).
    type Work: 'static;
    /// The socket the reactor watches.
    type Socket: Source;

    /// The socket, to register and deregister.
    fn socket(&mut self) -> &mut Self::Socket;
    /// One turn: everything the machine can do without blocking, given `io`.
    fn step(&mut self, io: &mut Readiness) -> Step<Self::Work>;
    /// Runs `work`; the machine is not driven until the future ends. A future that is not
    /// ready at its first poll finishes in a task of its own.
    fn run(&mut self, work: Self::Work) -> impl Future<Output = ()> + '_;
    /// The reactor is driving the machine: its [`Wake`] may queue it again.
    fn unmark(&self);
    /// A panic while driving the machine or running its work was caught; the machine is
    /// ended right after (with [`Machine::finish`]).
    fn on_panic(&mut self, panic: &(dyn Any + Send));
    /// The machine is over and out of the slab (its socket already deregistered).
    fn finish(self);
}

/// A machine's work that waits: it owns the machine until it ends, and gives it back with the
/// panic, if the work panicked.
type Busy<M> = Pin<Box<dyn Future<Output = (Box<M>, Option<Box<dyn Any + Send>>)>>>;

/// A slab entry: a machine, or none while it is busy.
struct Slot<M> {
    machine: Option<Box<M>>,
    io: Readiness,
}

/// One shard's reactor.
pub(crate) struct Reactor<M> {
    /// Registers and deregisters sockets (a clone of the poll's registry).
    registry: mio::Registry,
    /// The poll itself, until [`Reactor::run`] takes it.
    poll: RefCell<Option<mio::Poll>>,
    slots: RefCell<Slab<Slot<M>>>,
    ready: Rc<Ready>,
}

impl<M: Machine> Reactor<M> {
    /// A reactor with its own poll; fails only if the kernel refuses one.
    pub(crate) fn new() -> io::Result<Reactor<M>> {
        let poll = mio::Poll::new()?;
        Ok(Reactor {
            registry: poll.registry().try_clone()?,
            poll: RefCell::new(Some(poll)),
            slots: RefCell::new(Slab::new()),
            ready: Rc::default(),
        })
    }

    /// Builds a machine with the [`Wake`] of its slot, registers its socket and drives it a
    /// first time. `None` (the machine dropped unbuilt) if the socket cannot be registered.
    pub(crate) fn adopt(self: &Rc<Self>, build: impl FnOnce(Wake) -> M) -> Option<()> {
        let key = self.slots.borrow().vacant_key();
        let Ok(token) = u32::try_from(key) else {
            tracing::error!("connection slab full; dropping an upgraded connection");
            return None;
        };
        let mut machine = build(Wake::new(self.ready.clone(), token));
        let registered = self.registry.register(
            machine.socket(),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot register an upgraded connection");
            machine.finish();
            return None;
        }
        let inserted = self.slots.borrow_mut().insert(Slot {
            machine: Some(Box::new(machine)),
            // Assume both until the socket says otherwise: bytes may be waiting already.
            io: Readiness {
                readable: true,
                writable: true,
            },
        });
        debug_assert_eq!(inserted, key);
        self.drive(key);
        Some(())
    }

    /// Runs `token`'s machine until it must wait for its socket, its work, or a wake-up.
    fn drive(self: &Rc<Self>, token: usize) {
        let taken = {
            let mut slots = self.slots.borrow_mut();
            slots
                .get_mut(token)
                .and_then(|slot| slot.machine.take().map(|m| (m, slot.io)))
        };
        // Gone, or busy: a busy machine is driven again when its work ends.
        let Some((mut machine, mut io)) = taken else {
            return;
        };
        machine.unmark();
        loop {
            let step = match std::panic::catch_unwind(AssertUnwindSafe(|| machine.step(&mut io))) {
                Ok(step) => step,
                Err(panic) => {
                    machine.on_panic(&*panic);
                    Step::Done(Ok(()))
                }
            };
            match step {
                Step::Wait => return self.put_back(token, machine, io),
                Step::Done(result) => return self.remove(token, *machine, result),
                Step::Run(work) => {
                    let mut busy = run(machine, work);
                    let waker = Waker::noop();
                    match busy.as_mut().poll(&mut Context::from_waker(waker)) {
                        Poll::Ready((back, panic)) => {
                            machine = back;
                            if let Some(panic) = panic {
                                machine.on_panic(&*panic);
                                return self.remove(token, *machine, Ok(()));
                            }
                        }
                        Poll::Pending => return self.wait_for(token, busy, io),
                    }
                }
            }
        }
    }

    /// The work must wait: finish it in a task (which polls it again, with its own waker),
    /// then carry on from where it stopped.
    fn wait_for(self: &Rc<Self>, token: usize, busy: Busy<M>, io: Readiness) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(token) {
            slot.io = io;
        }
        let reactor = self.clone();
        tokio::task::spawn_local(async move {
            let (mut machine, panic) = busy.await;
            if let Some(panic) = panic {
                machine.on_panic(&*panic);
                return reactor.remove(token, *machine, Ok(()));
            }
            if let Some(slot) = reactor.slots.borrow_mut().get_mut(token) {
                slot.machine = Some(machine);
            }
            reactor.drive(token);
        });
    }

    fn put_back(&self, token: usize, machine: Box<M>, io: Readiness) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(token) {
            slot.machine = Some(machine);
            slot.io = io;
        }
    }

    fn remove(&self, token: usize, mut machine: M, result: io::Result<()>) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended: I/O error");
        }
        let _ = self.slots.borrow_mut().try_remove(token);
        if let Err(e) = self.registry.deregister(machine.socket()) {
            tracing::debug!(error = %e, "deregistering a socket failed");
        }
        machine.finish();
    }

    /// A socket event: note the readiness, and drive the machine unless it is busy.
    fn on_event(self: &Rc<Self>, event: &mio::event::Event) {
        let token = event.token().0;
        let idle = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(token) else {
                return;
            };
            // An error or a hang-up is reported by the next read or write.
            let broken = event.is_error() || event.is_read_closed() || event.is_write_closed();
            let was = slot.io;
            slot.io.readable |= event.is_readable() || broken;
            slot.io.writable |= event.is_writable() || broken;
            // Only news is worth a turn: a socket that was writable already (most of them:
            // every ACK from the peer reports write space) has nothing waiting on it.
            let news = (slot.io.readable && !was.readable) || (slot.io.writable && !was.writable);
            news && slot.machine.is_some()
        };
        if idle {
            self.drive(token);
        }
    }

    /// The reactor's task: waits for socket events or woken machines and drives them. Runs
    /// for the shard's life; at the end, [`Reactor::drop_all`] drops what is left.
    pub(crate) async fn run(self: Rc<Self>) {
        let Some(poll) = self.poll.borrow_mut().take() else {
            return tracing::error!("the reactor runs once");
        };
        // SAFETY: a `mio::Poll` owns its epoll file descriptor for its whole life and always
        // returns that same descriptor from `as_raw_fd`; the `AsyncFd` owns the poll.
        #[allow(unsafe_code)]
        let registered =
            unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
        let mut fd = match registered {
            Ok(fd) => fd,
            Err(e) => return tracing::error!(error = %e, "cannot register the reactor"),
        };
        let ready = self.ready.clone();
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
            let mut more = poll_events(&mut fd, &mut events);
            for event in events.iter() {
                self.on_event(event);
            }
            let mut driven = 0;
            loop {
                ready.take_into(&mut batch);
                if batch.is_empty() {
                    break;
                }
                driven += batch.len();
                for token in batch.drain(..) {
                    self.drive(token as usize);
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

    /// Ends every machine still held (the shard is ending): their sockets close.
    pub(crate) fn drop_all(&self) {
        let slots: Vec<Slot<M>> = self.slots.borrow_mut().drain().collect();
        for slot in slots {
            if let Some(machine) = slot.machine {
                (*machine).finish();
            }
        }
    }
}

/// A machine's work as a future that owns the machine; a panic inside is caught and handed
/// back with it.
fn run<M: Machine>(mut machine: Box<M>, work: M::Work) -> Busy<M> {
    Box::pin(async move {
        let panic = AssertUnwindSafe(machine.run(work))
            .catch_unwind()
            .await
            .err();
        (machine, panic)
    })
}

/// Takes the events the poll has now. Returns whether more may be waiting (a full batch).
fn poll_events(fd: &mut AsyncFd<mio::Poll>, events: &mut Events) -> bool {
    events.clear();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    // Readiness is cleared only after a poll that came back short, under the guard taken
    // before it: an event arriving meanwhile keeps the fd ready (tokio's tick check).
    let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready_mut(&mut cx) else {
        return false;
    };
    match guard.get_inner_mut().poll(events, Some(Duration::ZERO)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
        Err(e) => {
            tracing::error!(error = %e, "polling the reactor failed");
            return true;
        }
    }
    let full = events.iter().count() >= EVENTS;
    if !full {
        guard.clear_ready();
    }
    full
}
