//! The coordinator: starts the workers (a thread for one, child processes for more), shows
//! progress, moves them through the phases together (connect, go, report), and adds up what
//! they report into a [`Summary`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::msg::{ChannelSink, Control, WorkerMsg, WorkerReport};
use crate::plan::{now_ns, RunPlan, Scenario, WorkerPlan};
use crate::scenario::push;
use crate::stats::{merge_histogram, new_histogram, BurstStat, Counters, OffsetStats, PushStats};
use crate::summary::{Inputs, Summary, TimePoint};
use crate::sys;
use crate::verify;
use crate::worker::Worker;

/// The hidden first argument that turns the binary into a worker process.
pub const WORKER_ARG: &str = "__worker";

/// Options of the coordinator itself (not sent to workers).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show the live progress line on stderr.
    pub progress: bool,
    /// The server's pid, to read its RSS.
    pub server_pid: Option<u32>,
    /// The binary to re-execute as worker processes (default: this executable).
    pub worker_exe: Option<std::path::PathBuf>,
}

enum Handle {
    Thread(Sender<Control>, std::thread::JoinHandle<()>),
    Process(Child, ChildStdin),
}

impl Handle {
    fn control(&mut self, c: Control) {
        match self {
            Handle::Thread(tx, _) => {
                let _ = tx.send(c);
            }
            Handle::Process(_, stdin) => {
                if let Ok(line) = serde_json::to_string(&c) {
                    let _ = writeln!(stdin, "{line}");
                    let _ = stdin.flush();
                }
            }
        }
    }

    fn finish(self) {
        match self {
            Handle::Thread(_, join) => {
                let _ = join.join();
            }
            Handle::Process(mut child, stdin) => {
                drop(stdin);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts the workers: one thread for a single plan, else one child process a plan.
fn spawn(
    plans: Vec<WorkerPlan>,
    tx: &Sender<(u32, WorkerMsg)>,
    opts: &RunOptions,
) -> anyhow::Result<Vec<Handle>> {
    if plans.len() == 1 {
        return plans.into_iter().map(|p| spawn_thread(p, tx)).collect();
    }
    let exe = match &opts.worker_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    plans
        .into_iter()
        .map(|p| spawn_process(p, &exe, tx))
        .collect()
}

/// Runs a worker on a thread of this process, its messages on a channel.
fn spawn_thread(plan: WorkerPlan, tx: &Sender<(u32, WorkerMsg)>) -> anyhow::Result<Handle> {
    let (ctx, crx) = mpsc::channel();
    let sink = ChannelSink {
        worker: plan.worker,
        tx: tx.clone(),
    };
    let err_tx = tx.clone();
    let w = plan.worker;
    let join = std::thread::Builder::new()
        .name(format!("worker-{w}"))
        .spawn(move || {
            if let Err(e) = Worker::new(plan, sink, crx).and_then(Worker::run) {
                let _ = err_tx.send((
                    w,
                    WorkerMsg::Fatal {
                        error: e.to_string(),
                    },
                ));
            }
        })?;
    Ok(Handle::Thread(ctx, join))
}

/// Runs a worker as a child process of `exe`: the plan on its stdin, its messages read from
/// its stdout by a thread.
fn spawn_process(
    plan: WorkerPlan,
    exe: &std::path::Path,
    tx: &Sender<(u32, WorkerMsg)>,
) -> anyhow::Result<Handle> {
    let w = plan.worker;
    let mut child = Command::new(exe)
        .arg(WORKER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting worker process {}", exe.display()))?;
    let mut stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    writeln!(stdin, "{}", serde_json::to_string(&plan)?)?;
    stdin.flush()?;
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<WorkerMsg>(&line) {
                Ok(msg) => {
                    if tx.send((w, msg)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send((
                        w,
                        WorkerMsg::Fatal {
                            error: format!("bad worker output: {e}"),
                        },
                    ));
                }
            }
        }
    });
    Ok(Handle::Process(child, stdin))
}

struct Live {
    progress: Vec<Counters>,
    ready: Vec<bool>,
    finals: Vec<Option<WorkerReport>>,
    series: Vec<TimePoint>,
    last_point: Instant,
    last_received: u64,
    last_established: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Live {
    fn total(&self) -> Counters {
        let mut t = Counters::default();
        for c in &self.progress {
            t.add(c);
        }
        t
    }

    fn on_msg(&mut self, w: u32, msg: WorkerMsg) -> anyhow::Result<()> {
        let w = w as usize;
        match msg {
            WorkerMsg::Progress { counters } => self.progress[w] = counters,
            WorkerMsg::Ready { counters } => {
                self.progress[w] = counters;
                self.ready[w] = true;
            }
            WorkerMsg::Final(r) => {
                self.progress[w] = r.counters;
                self.finals[w] = Some(*r);
            }
            WorkerMsg::Fatal { error } => bail!("worker {w} failed: {error}"),
        }
        Ok(())
    }

    fn tick(&mut self, phase: &str) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_point).as_secs_f64();
        if dt >= 0.5 {
            let t = self.total();
            self.series.push(TimePoint {
                t: now.duration_since(self.started).as_secs_f64(),
                open: t.open,
                connects_per_sec: (t.established - self.last_established) as f64 / dt,
                deliveries_per_sec: (t.received - self.last_received) as f64 / dt,
            });
            self.last_received = t.received;
            self.last_established = t.established;
            self.last_point = now;
        }
        if let Some(bar) = &self.bar {
            let t = self.total();
            let rate = self.series.last().map_or(0.0, |p| p.deliveries_per_sec);
            bar.set_message(format!(
                "{phase:<8} open {:>7}  failed {:>5}  sent {:>9}  received {:>11}  {:>10.0} deliveries/s",
                t.open, t.failed, t.sent, t.received, rate
            ));
            bar.tick();
        }
    }

    fn pump(
        &mut self,
        rx: &Receiver<(u32, WorkerMsg)>,
        phase: &str,
        until: impl Fn(&Live) -> bool,
        deadline: Instant,
    ) -> anyhow::Result<bool> {
        while !until(self) {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok((w, msg)) => self.on_msg(w, msg)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("all workers exited"),
            }
            self.tick(phase);
        }
        Ok(true)
    }
}

/// Runs a whole plan and returns its summary.
pub fn run(plan: &RunPlan, opts: &RunOptions) -> anyhow::Result<Summary> {
    let plans = plan.split();
    let n = plans.len();
    let rss_before = opts.server_pid.and_then(sys::rss);
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let mut handles = spawn(plans, &tx, opts)?;
    drop(tx);
    let bar = opts.progress.then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut live = Live {
        progress: vec![Counters::default(); n],
        ready: vec![false; n],
        finals: vec![None; n],
        series: Vec::new(),
        last_point: started,
        last_received: 0,
        last_established: 0,
        started,
        bar,
    };
    let c = &plan.common;
    let ramp = Duration::from_secs_f64(plan.connections as f64 / c.connect_rate.max(1.0));
    let setup_deadline = Instant::now() + ramp + c.connect_timeout + Duration::from_secs(30);
    let result = (|| -> anyhow::Result<Summary> {
        let all_ready = live.pump(
            &rx,
            "connect",
            |l| l.ready.iter().all(|r| *r),
            setup_deadline,
        )?;
        if !all_ready {
            bail!("workers did not finish connecting before the setup deadline");
        }
        let setup_secs = started.elapsed().as_secs_f64();
        let rss_ready = opts.server_pid.and_then(sys::rss);
        let start_ns = now_ns() + 200_000_000;
        for h in &mut handles {
            h.control(Control::Go { start_ns });
        }
        let senders = push::start(plan, start_ns);
        let run_deadline = Instant::now()
            + Duration::from_millis(200)
            + c.duration
            + c.drain
            + Duration::from_secs(30);
        let all_final = live.pump(
            &rx,
            "run",
            |l| l.finals.iter().all(Option::is_some),
            run_deadline,
        )?;
        if !all_final {
            bail!("workers did not report before the run deadline");
        }
        let rss_after = opts.server_pid.and_then(sys::rss);
        let push = push::join(senders);
        let finals: Vec<WorkerReport> = live.finals.iter_mut().filter_map(Option::take).collect();
        Ok(aggregate(
            plan,
            &finals,
            std::mem::take(&mut live.series),
            setup_secs,
            [rss_before, rss_ready, rss_after],
            push,
        ))
    })();
    if let Some(bar) = &live.bar {
        bar.finish_and_clear();
    }
    for h in &mut handles {
        h.control(Control::Stop);
    }
    for h in handles {
        h.finish();
    }
    result
}

/// The workers' final reports, added up.
struct Totals {
    counters: Counters,
    failures: BTreeMap<String, u64>,
    error_codes: BTreeMap<String, u64>,
    handshake: Histogram<u64>,
    latency: Histogram<u64>,
    acked: Vec<u64>,
    joined: Vec<u64>,
    published: u64,
    /// Earliest first connect (`u64::MAX`: none).
    first_connect: u64,
    last_established: u64,
    bursts: Vec<BurstStat>,
    mismatches: u64,
    offsets: OffsetStats,
    /// Workers' RSS, and the connections open when each was read.
    loadgen_rss: (u64, u64),
}

impl Totals {
    fn new(rooms: usize) -> Self {
        Totals {
            counters: Counters::default(),
            failures: BTreeMap::new(),
            error_codes: BTreeMap::new(),
            handshake: new_histogram(),
            latency: new_histogram(),
            acked: vec![0; rooms],
            joined: vec![0; rooms],
            published: 0,
            first_connect: u64::MAX,
            last_established: 0,
            bursts: Vec::new(),
            mismatches: 0,
            offsets: OffsetStats::default(),
            loadgen_rss: (0, 0),
        }
    }

    fn add(&mut self, f: &WorkerReport) {
        self.loadgen_rss.0 += f.rss;
        self.loadgen_rss.1 += f.open_at_rss;
        self.counters.add(&f.counters);
        for (k, v) in &f.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &f.error_codes {
            *self.error_codes.entry(k.clone()).or_default() += v;
        }
        merge_histogram(&mut self.handshake, &f.handshake);
        merge_histogram(&mut self.latency, &f.latency);
        add_per_room(&mut self.acked, &f.acked);
        add_per_room(&mut self.joined, &f.joined);
        self.published += f.published.iter().sum::<u64>();
        if f.first_connect_ns > 0 {
            self.first_connect = self.first_connect.min(f.first_connect_ns);
        }
        self.last_established = self.last_established.max(f.last_established_ns);
        verify::merge_bursts(&mut self.bursts, &f.bursts);
        self.mismatches += f.decode_mismatches;
        self.offsets.add(&f.offsets);
    }

    /// First connect to last setup connection established (s).
    fn connect_secs(&self) -> f64 {
        if self.last_established > self.first_connect && self.first_connect != u64::MAX {
            (self.last_established - self.first_connect) as f64 / 1e9
        } else {
            0.0
        }
    }
}

/// Adds one worker's per-room figures to the run's (rooms the run does not have are ignored).
fn add_per_room(into: &mut [u64], from: &[u64]) {
    for (a, v) in into.iter_mut().zip(from) {
        *a += v;
    }
}

fn aggregate(
    plan: &RunPlan,
    finals: &[WorkerReport],
    series: Vec<TimePoint>,
    setup_secs: f64,
    rss: [Option<u64>; 3],
    push: Option<PushStats>,
) -> Summary {
    let mut t = Totals::new(plan.room_members().len());
    for f in finals {
        t.add(f);
    }
    let connect_secs = t.connect_secs();
    Summary::new(Inputs {
        plan: plan.clone(),
        expected: verify::expected(plan, &t.acked, &t.joined, push.as_ref()),
        published: push.as_ref().map_or(t.published, |p| p.sent),
        acked: push.as_ref().map_or(t.acked.iter().sum(), |p| p.ok),
        counters: t.counters,
        failures: t.failures,
        error_codes: t.error_codes,
        handshake: t.handshake,
        latency: t.latency,
        connect_secs,
        setup_secs,
        run_secs: plan.common.duration.as_secs_f64(),
        rss,
        burst_rates: verify::burst_rates(&t.bursts),
        series,
        decode_mismatches: t.mismatches,
        offsets: matches!(plan.scenario, Scenario::Chat { .. }).then_some(t.offsets),
        loadgen_rss: t.loadgen_rss,
        push,
    })
}
