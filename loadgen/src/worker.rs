//! One worker: a single-threaded mio event loop driving thousands of connections through the
//! phases of a run (setup ramp, wait for go, measured phase, drain), and the entry point of a
//! worker process. The connections are in [`crate::client`], what they do in
//! [`crate::session`] and [`crate::scenario`].

use std::io::{self, BufRead, BufReader};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use anyhow::Context;
use mio::Events;

use crate::client::Clients;
use crate::msg::{Control, Sink, StdoutSink, WorkerMsg};
use crate::plan::{now_ns, WorkerPlan};
use crate::scenario::Driver;
use crate::session::{Ctx, Session};
use crate::sys;

/// How long without a delivery ends the drain early.
const QUIET_NS: u64 = 300_000_000;
/// Progress messages are sent this often.
const PROGRESS_NS: u64 = 250_000_000;
/// Handshake and closed-loop timeouts are looked for this often.
const TIMEOUT_SCAN_NS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connecting at the ramp rate.
    Setup,
    /// Every connection is established (or failed); waiting for `Go`.
    WaitGo,
    /// `Go` received: the measured phase starts at this time.
    GoAt(u64),
    /// The measured phase.
    Run,
    /// After the measured phase: waiting for deliveries in flight.
    Drain,
    /// Finished: report.
    Done,
}

/// A running worker.
pub struct Worker<S: Sink> {
    plan: WorkerPlan,
    sink: S,
    control: Receiver<Control>,
    clients: Clients,
    session: Session,
    driver: Driver,
    phase: Phase,
    /// The next connection the ramp starts.
    next_start: usize,
    setup_start_ns: u64,
    start_ns: u64,
    run_end_ns: u64,
    drain_start_ns: u64,
    last_progress_ns: u64,
    last_timeout_scan_ns: u64,
}

impl<S: Sink> Worker<S> {
    /// Prepares a worker (nothing is connected yet).
    pub fn new(plan: WorkerPlan, sink: S, control: Receiver<Control>) -> io::Result<Self> {
        sys::raise_fd_limit();
        let driver = Driver::new(&plan);
        let clients = Clients::new(
            &plan,
            |global| (driver.rooms() > 0).then(|| driver.room(global)),
            |global| driver.is_publisher(global),
        )?;
        let session = Session::new(&plan, driver.rooms());
        Ok(Worker {
            sink,
            control,
            clients,
            session,
            driver,
            phase: Phase::Setup,
            next_start: 0,
            setup_start_ns: now_ns(),
            start_ns: 0,
            run_end_ns: 0,
            drain_start_ns: 0,
            last_progress_ns: 0,
            last_timeout_scan_ns: 0,
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
            match self.clients.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                let readable = ev.is_readable() || ev.is_read_closed();
                self.clients
                    .on_event(ev.token().0, readable, &mut self.session);
            }
            self.on_controls();
            self.tick(now_ns());
            if self.phase == Phase::Done {
                break;
            }
        }
        let rss = sys::rss(std::process::id()).unwrap_or(0);
        let report = self.session.report(rss);
        self.sink.send(WorkerMsg::Final(Box::new(report)));
        self.clients.abort_all();
        Ok(())
    }

    /// Takes the coordinator's controls that have arrived.
    fn on_controls(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(Control::Go { start_ns }) => {
                    if self.phase == Phase::WaitGo || self.phase == Phase::Setup {
                        self.set_phase(Phase::GoAt(start_ns));
                    }
                }
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    self.set_phase(Phase::Done);
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.session.ramping = phase == Phase::Setup;
    }

    fn tick(&mut self, now: u64) {
        match self.phase {
            Phase::Setup => {
                self.ramp(now);
                if self.next_start == self.clients.conns.len() && self.session.pending == 0 {
                    self.set_phase(Phase::WaitGo);
                    self.sink.send(WorkerMsg::Ready {
                        counters: self.session.counters,
                    });
                }
            }
            Phase::WaitGo | Phase::Done => {}
            Phase::GoAt(start) => {
                if now >= start {
                    self.start_ns = start;
                    self.run_end_ns = start + self.plan.common.duration.as_nanos() as u64;
                    self.session.deliveries.start(start);
                    self.driver.start(start);
                    self.set_phase(Phase::Run);
                }
            }
            Phase::Run => self.run_tick(now),
            Phase::Drain => {
                if self.drained(now) {
                    self.set_phase(Phase::Done);
                }
            }
        }
        if now.saturating_sub(self.last_timeout_scan_ns) >= TIMEOUT_SCAN_NS {
            self.last_timeout_scan_ns = now;
            let limit = self.plan.common.connect_timeout.as_nanos() as u64;
            self.session.expire(&mut self.clients, now, limit);
        }
        if now.saturating_sub(self.last_progress_ns) >= PROGRESS_NS {
            self.last_progress_ns = now;
            self.sink.send(WorkerMsg::Progress {
                counters: self.session.counters,
            });
        }
    }

    /// The measured phase: the scenario sends what is due, until the end.
    fn run_tick(&mut self, now: u64) {
        if now >= self.run_end_ns {
            self.set_phase(Phase::Drain);
            self.drain_start_ns = now;
            return;
        }
        let elapsed = now.saturating_sub(self.start_ns) as f64 / 1e9;
        let mut ctx = Ctx {
            session: &mut self.session,
            clients: &mut self.clients,
        };
        self.driver.drive(&mut ctx, elapsed, now);
    }

    /// Whether the drain is over: quiet for a while, or out of time.
    fn drained(&self, now: u64) -> bool {
        let quiet_since = self.drain_start_ns.max(self.session.deliveries.last_rx_ns);
        self.driver.nothing_to_drain()
            || now.saturating_sub(quiet_since) >= QUIET_NS
            || now - self.drain_start_ns >= self.plan.common.drain.as_nanos() as u64
    }

    /// Starts connections at the ramp rate, bounded by the handshakes in progress.
    fn ramp(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.setup_start_ns) as f64 / 1e9;
        let allowed = (elapsed * self.plan.common.connect_rate) as usize + 1;
        let max_pending = u64::from(self.plan.common.max_pending.max(1));
        while self.next_start < self.clients.conns.len()
            && self.next_start < allowed
            && self.session.pending < max_pending
        {
            let idx = self.next_start;
            self.next_start += 1;
            self.session.start_connect(&mut self.clients, idx, now);
        }
    }
}

/// Runs a worker process: the plan is the first line of stdin, controls follow; messages go
/// to stdout as JSON lines.
pub fn worker_main() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let plan: WorkerPlan = serde_json::from_str(&line).context("worker plan")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    // The coordinator is gone: stop.
                    let _ = tx.send(Control::Stop);
                    return;
                }
                Ok(_) => {
                    if let Ok(c) = serde_json::from_str::<Control>(&line) {
                        let _ = tx.send(c);
                    }
                }
            }
        }
    });
    match Worker::new(plan, StdoutSink, rx).and_then(Worker::run) {
        Ok(()) => Ok(()),
        Err(e) => {
            StdoutSink.send(WorkerMsg::Fatal {
                error: e.to_string(),
            });
            Err(e.into())
        }
    }
}
