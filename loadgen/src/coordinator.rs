//! The coordinator: starts the workers (a thread for one, child processes for more), shows
//! progress, moves them through the phases together (connect, go, report), and adds up what
//! they report into a [`Summary`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::msg::{ChannelSink, Control, WorkerMsg, WorkerReport};
use crate::plan::{now_ns, RunPlan, WorkerPlan};
use crate::scenario::push;
use crate::stats::{merge_histogram, new_histogram, BurstStat, Counters, PushStats};
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

fn spawn(
    plans: Vec<WorkerPlan>,
    tx: &Sender<(u32, WorkerMsg)>,
    opts: &RunOptions,
) -> anyhow::Result<Vec<Handle>> {
    let mut handles = Vec::new();
    if plans.len() == 1 {
        for plan in plans {
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
            handles.push(Handle::Thread(ctx, join));
        }
        return Ok(handles);
    }
    let exe = match &opts.worker_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    for plan in plans {
        let w = plan.worker;
        let mut child = Command::new(&exe)
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
        handles.push(Handle::Process(child, stdin));
    }
    Ok(handles)
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

fn aggregate(
    plan: &RunPlan,
    finals: &[WorkerReport],
    series: Vec<TimePoint>,
    setup_secs: f64,
    rss: [Option<u64>; 3],
    push: Option<PushStats>,
) -> Summary {
    let mut counters = Counters::default();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut handshake = new_histogram();
    let mut latency = new_histogram();
    let rooms = plan.room_members().len();
    let mut acked = vec![0u64; rooms];
    let mut joined = vec![0u64; rooms];
    let mut published = 0u64;
    let mut first_connect = u64::MAX;
    let mut last_established = 0u64;
    let mut bursts: Vec<BurstStat> = Vec::new();
    let mut mismatches = 0;
    let (mut loadgen_rss, mut loadgen_open) = (0, 0);
    for f in finals {
        loadgen_rss += f.rss;
        loadgen_open += f.open_at_rss;
        counters.add(&f.counters);
        for (k, v) in &f.failures {
            *failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &f.error_codes {
            *error_codes.entry(k.clone()).or_default() += v;
        }
        merge_histogram(&mut handshake, &f.handshake);
        merge_histogram(&mut latency, &f.latency);
        for (i, v) in f.acked.iter().enumerate() {
            if let Some(a) = acked.get_mut(i) {
                *a += v;
            }
        }
        for (i, v) in f.joined.iter().enumerate() {
            if let Some(a) = joined.get_mut(i) {
                *a += v;
            }
        }
        published += f.published.iter().sum::<u64>();
        if f.first_connect_ns > 0 {
            first_connect = first_connect.min(f.first_connect_ns);
        }
        last_established = last_established.max(f.last_established_ns);
        verify::merge_bursts(&mut bursts, &f.bursts);
        mismatches += f.decode_mismatches;
    }
    let expected = verify::expected(plan, &acked, &joined, push.as_ref());
    let run_secs = plan.common.duration.as_secs_f64();
    Summary::new(Inputs {
        plan: plan.clone(),
        counters,
        failures,
        error_codes,
        handshake,
        latency,
        expected,
        published: push.as_ref().map_or(published, |p| p.sent),
        acked: push.as_ref().map_or(acked.iter().sum(), |p| p.ok),
        connect_secs: if last_established > first_connect && first_connect != u64::MAX {
            (last_established - first_connect) as f64 / 1e9
        } else {
            0.0
        },
        setup_secs,
        run_secs,
        rss,
        burst_rates: verify::burst_rates(&bursts),
        series,
        decode_mismatches: mismatches,
        loadgen_rss: (loadgen_rss, loadgen_open),
        push,
    })
}
