//! The full store: about 1M messages over 10,000 streams; its load, range reads, restart,
//! TTL expiry, disk usage, and appends into it once it is full.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::append::{self, AppendRun, Streams};
use crate::read::{self, Query, ReadRun};
use crate::stats::{disk_usage, written_bytes};
use crate::store::{Result, Store};
use crate::workload::{Batch, Rng, VALUE_LEN};

/// Streams in the full store.
pub const STREAMS: u32 = 10_000;
/// Messages per stream in the full store (offsets `0..PER_STREAM`).
pub const PER_STREAM: u64 = 100;
/// Messages per durable commit while loading.
pub const LOAD_BATCH: u64 = 4096;
/// Offsets each expiry run deletes from every stream (10 × 10,000 streams = 100k messages).
pub const EXPIRE_STEP: u64 = 10;
/// Streams per expiry commit (a sweeper would not hold one huge transaction).
pub const EXPIRE_CHUNK: u32 = 1000;
/// Messages per commit in the appends into the full store.
pub const FULL_APPEND_BATCH: usize = 256;
/// The appends into the full store run this many times longer than the other runs, so that
/// each run spans the LSM's flushes and compactions rather than falling between them.
pub const FULL_APPEND_STRETCH: f64 = 3.0;

/// The queries measured, in table order.
pub const QUERIES: [Query; 3] = [Query::Last, Query::After, Query::First];

/// One reopen: closing the store and opening it again.
pub struct Reopen {
    /// Dropping the open store (fjall persists its journal and stops its workers).
    pub close: Duration,
    /// Opening it and reading the last page of one stream.
    pub open: Duration,
}

/// One expiry run.
pub struct Expire {
    /// Wall time for deleting 100k messages (10 durable commits).
    pub time: Duration,
    /// How many the store says it deleted.
    pub deleted: u64,
    /// Bytes written to storage during the run.
    pub written: Option<u64>,
    /// Allocated bytes on disk after the run.
    pub disk_after: u64,
}

/// Everything measured on one store.
pub struct Full {
    /// Time to load 1M messages in durable commits of [`LOAD_BATCH`].
    pub load: Duration,
    /// Bytes written to storage per payload byte during the load.
    pub load_amp: Option<f64>,
    /// (apparent, allocated) bytes on disk after the load and a close.
    pub disk_loaded: (u64, u64),
    /// Per query in [`QUERIES`], its runs.
    pub reads: Vec<Vec<ReadRun>>,
    /// The reopens.
    pub reopens: Vec<Reopen>,
    /// The expiry runs.
    pub expires: Vec<Expire>,
    /// Per query, its runs after the expiry.
    pub reads_after: Vec<Vec<ReadRun>>,
    /// Appends into the full store.
    pub appends: Vec<AppendRun>,
    /// (apparent, allocated) after everything and a close.
    pub disk_end: (u64, u64),
    /// Messages the store holds at the end (the appends add a different number to each).
    pub msgs_end: u64,
}

/// Loads the store: message `i` goes to stream `i % STREAMS` at offset `i / STREAMS`.
fn load<S: Store>(store: &S) -> Result<(Duration, Option<f64>)> {
    let total = u64::from(STREAMS) * PER_STREAM;
    let mut rng = Rng::new(1);
    let mut batch = Batch::with_capacity(LOAD_BATCH as usize);
    let io0 = written_bytes();
    let t = Instant::now();
    let mut i = 0;
    while i < total {
        batch.clear();
        for j in i..(i + LOAD_BATCH).min(total) {
            batch.push(
                (j % u64::from(STREAMS)) as u32,
                j / u64::from(STREAMS),
                &mut rng,
            );
        }
        store.append(batch.items(), true)?;
        i += LOAD_BATCH;
    }
    let time = t.elapsed();
    let amp = match (io0, written_bytes()) {
        (Some(a), Some(b)) => Some((b - a) as f64 / (total * (VALUE_LEN as u64 + 12)) as f64),
        _ => None,
    };
    Ok((time, amp))
}

fn read_all<S: Store>(
    store: &S,
    live: (u64, u64),
    runs: usize,
    secs: f64,
) -> Result<Vec<Vec<ReadRun>>> {
    let mut all = Vec::new();
    for (qi, q) in QUERIES.into_iter().enumerate() {
        let mut v = Vec::new();
        for r in 0..runs {
            v.push(read::run(
                store,
                q,
                STREAMS,
                live,
                secs,
                (qi * 10 + r) as u64,
            )?);
        }
        all.push(v);
    }
    Ok(all)
}

fn reopen<S: Store>(dir: &Path, store: S) -> Result<(S, Reopen)> {
    let t = Instant::now();
    drop(store);
    let close = t.elapsed();
    let t = Instant::now();
    let store = S::open(dir)?;
    let mut out = Vec::new();
    store.last(0, read::PAGE, &mut out)?;
    let open = t.elapsed();
    if out.len() != read::PAGE {
        return Err("reopened store lost messages".into());
    }
    Ok((store, Reopen { close, open }))
}

/// Runs every measurement of the full store in a new directory under `base`.
pub fn run<S: Store>(base: &Path, runs: usize, secs: f64) -> Result<Full> {
    let dir = tempfile::Builder::new().prefix("full-").tempdir_in(base)?;
    let store = S::open(dir.path())?;
    eprintln!("  {}: loading 1M messages", S::NAME);
    let (load, load_amp) = load(&store)?;
    let (mut store, _) = reopen(dir.path(), store)?;
    let disk_loaded = disk_usage(dir.path());

    eprintln!("  {}: range reads", S::NAME);
    let reads = read_all(&store, (0, PER_STREAM), runs, secs)?;

    eprintln!("  {}: reopen", S::NAME);
    let mut reopens = Vec::new();
    for _ in 0..runs {
        let (s, r) = reopen(dir.path(), store)?;
        store = s;
        reopens.push(r);
    }

    eprintln!("  {}: expiry", S::NAME);
    let mut expires = Vec::new();
    for r in 0..runs as u64 {
        let below = EXPIRE_STEP * (r + 1);
        let io0 = written_bytes();
        let t = Instant::now();
        let mut deleted = 0;
        let mut first = 0;
        while first < STREAMS {
            let end = (first + EXPIRE_CHUNK).min(STREAMS);
            deleted += store.expire(first..end, below)?;
            first = end;
        }
        let time = t.elapsed();
        let written = match (io0, written_bytes()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        expires.push(Expire {
            time,
            deleted,
            written,
            disk_after: disk_usage(dir.path()).1,
        });
    }

    eprintln!("  {}: range reads after expiry", S::NAME);
    let live = (EXPIRE_STEP * runs as u64, PER_STREAM);
    let reads_after = read_all(&store, live, runs, secs / 2.0)?;

    eprintln!("  {}: appends into the full store", S::NAME);
    let mut streams = Streams::new(STREAMS, PER_STREAM, 99);
    let mut appends = Vec::new();
    for _ in 0..runs {
        appends.push(append::run(
            &store,
            &mut streams,
            FULL_APPEND_BATCH,
            true,
            secs * FULL_APPEND_STRETCH,
        )?);
    }
    let (store, _) = reopen(dir.path(), store)?;
    drop(store);
    let disk_end = disk_usage(dir.path());
    let kept = u64::from(STREAMS) * (PER_STREAM - EXPIRE_STEP * runs as u64);
    let msgs_end = kept + appends.iter().map(|a| a.msgs).sum::<u64>();
    Ok(Full {
        load,
        load_amp,
        disk_loaded,
        reads,
        reopens,
        expires,
        reads_after,
        appends,
        disk_end,
        msgs_end,
    })
}
