//! Range reads of one stream: its last 50 messages, the 50 after an offset, its first 50.

use std::time::{Duration, Instant};

use crate::stats::Samples;
use crate::store::{Result, Store};
use crate::workload::{matches, Rng};

/// How many messages one read asks for.
pub const PAGE: usize = 50;

/// The reads wsgate makes of a stream.
#[derive(Clone, Copy)]
pub enum Query {
    /// `history` without a cursor: the newest page.
    Last,
    /// Resume or `history after`: the page after a random offset.
    After,
    /// The oldest page still kept (after expiry, this starts past the deleted messages).
    First,
}

impl Query {
    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Query::Last => "last 50",
            Query::After => "50 after a random offset",
            Query::First => "first 50 (oldest kept)",
        }
    }
}

/// What one timed run of reads measured.
pub struct ReadRun {
    /// Reads per second, one thread.
    pub per_s: f64,
    /// Latency of one read (a read transaction or snapshot, the range, the copies).
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
    /// Reads that returned fewer than [`PAGE`] messages or a wrong one (should be 0).
    pub wrong: u64,
}

/// Reads random streams of `0..streams`, whose live offsets are `live.0..live.1`, for `secs`.
pub fn run<S: Store>(
    store: &S,
    q: Query,
    streams: u32,
    live: (u64, u64),
    secs: f64,
    seed: u64,
) -> Result<ReadRun> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(PAGE);
    let mut lat = Samples::with_capacity(1 << 18);
    let mut wrong = 0;
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < budget {
        let stream = rng.below(u64::from(streams)) as u32;
        let c = Instant::now();
        let first = match q {
            Query::Last => {
                store.last(stream, PAGE, &mut out)?;
                None
            }
            Query::After => {
                let from = live.0 + rng.below(live.1 - live.0 - PAGE as u64 + 1);
                store.after(stream, from, PAGE, &mut out)?;
                Some(from)
            }
            Query::First => {
                store.after(stream, 0, PAGE, &mut out)?;
                Some(live.0)
            }
        };
        lat.push(c.elapsed());
        n += 1;
        let ok = out.len() == PAGE
            && match first {
                Some(from) => matches(&out[0], stream, from),
                None => matches(&out[0], stream, live.1 - 1),
            };
        if !ok {
            wrong += 1;
        }
    }
    Ok(ReadRun {
        per_s: n as f64 / t0.elapsed().as_secs_f64(),
        p50: lat.quantile(0.50),
        p99: lat.quantile(0.99),
        wrong,
    })
}
