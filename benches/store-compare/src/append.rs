//! Group-committed appends: one writer thread, one commit per batch, for a bounded time.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::stats::{written_bytes, Samples};
use crate::store::{Result, Store};
use crate::workload::{Batch, Rng, VALUE_LEN};

/// What one timed run of appends measured.
pub struct AppendRun {
    /// Messages committed in the run.
    pub msgs: u64,
    /// Messages committed per second of the run.
    pub msgs_per_s: f64,
    /// Commit latency (the store's call only, batch building excluded).
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
    /// Bytes the process wrote to storage per byte of message payload (keys and values),
    /// background work done during the run included; `None` without `/proc/self/io`.
    pub write_amp: Option<f64>,
}

/// Where the next message of each stream goes; streams are picked at random, as a gateway's
/// traffic would spread over its rooms and users.
pub struct Streams {
    next: Vec<u64>,
    rng: Rng,
}

impl Streams {
    /// `count` streams, each starting at offset `first`.
    pub fn new(count: u32, first: u64, seed: u64) -> Self {
        Streams {
            next: vec![first; count as usize],
            rng: Rng::new(seed),
        }
    }

    /// Fills `batch` with `n` messages, each to a random stream at its next offset.
    pub fn fill(&mut self, batch: &mut Batch, n: usize) {
        batch.clear();
        let count = self.next.len() as u64;
        for _ in 0..n {
            let s = self.rng.below(count) as usize;
            let offset = self.next[s];
            self.next[s] += 1;
            batch.push(s as u32, offset, &mut self.rng);
        }
    }
}

/// Appends batches of `batch` messages over `streams` to `store` for `secs`, one commit per
/// batch (durable or not).
pub fn run<S: Store>(
    store: &S,
    streams: &mut Streams,
    batch: usize,
    durable: bool,
    secs: f64,
) -> Result<AppendRun> {
    let mut b = Batch::with_capacity(batch);
    let mut lat = Samples::with_capacity(1 << 16);
    let budget = Duration::from_secs_f64(secs);
    let io0 = written_bytes();
    let t0 = Instant::now();
    let mut msgs = 0u64;
    while t0.elapsed() < budget {
        streams.fill(&mut b, batch);
        let c = Instant::now();
        store.append(b.items(), durable)?;
        lat.push(c.elapsed());
        msgs += batch as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let payload = msgs * (VALUE_LEN as u64 + 12);
    let write_amp = match (io0, written_bytes()) {
        (Some(a), Some(b)) => Some((b - a) as f64 / payload as f64),
        _ => None,
    };
    Ok(AppendRun {
        msgs,
        msgs_per_s: msgs as f64 / elapsed,
        p50: lat.quantile(0.50),
        p99: lat.quantile(0.99),
        write_amp,
    })
}

/// One run on a fresh store in a new directory under `base`.
pub fn fresh<S: Store>(
    base: &Path,
    streams: u32,
    batch: usize,
    durable: bool,
    secs: f64,
    seed: u64,
) -> Result<AppendRun> {
    let dir = tempfile::Builder::new()
        .prefix("append-")
        .tempdir_in(base)?;
    let store = S::open(dir.path())?;
    let mut s = Streams::new(streams, 0, seed);
    let r = run(&store, &mut s, batch, durable, secs)?;
    drop(store);
    Ok(r)
}
