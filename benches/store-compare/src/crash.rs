//! `kill -9` of a writer: a child process appends and reports each commit; the parent kills
//! it, reopens the store and checks that every reported message is there, with no gap.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::{Result, Store};
use crate::workload::{matches, Batch, Rng};

/// Streams the child writes to; message `i` goes to stream `i % STREAMS` at offset
/// `i / STREAMS`, so the messages of any prefix of the run are known.
pub const STREAMS: u32 = 1000;

/// Messages per commit in the child.
pub const BATCH: u64 = 16;

/// The child gives up on its own after this, should the parent fail to kill it.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

/// The child: appends to the store in `dir` until killed, printing after each commit the
/// number of messages committed so far.
pub fn child<S: Store>(dir: &Path, durable: bool) -> Result<()> {
    let store = S::open(dir)?;
    let mut rng = Rng::new(7);
    let mut batch = Batch::with_capacity(BATCH as usize);
    let mut out = std::io::stdout().lock();
    let t0 = Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < CHILD_LIMIT {
        batch.clear();
        for j in i..i + BATCH {
            batch.push(
                (j % u64::from(STREAMS)) as u32,
                j / u64::from(STREAMS),
                &mut rng,
            );
        }
        store.append(batch.items(), durable)?;
        i += BATCH;
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}

/// What one kill and recovery showed.
pub struct CrashRun {
    /// Messages the child reported as committed before it died.
    pub reported: u64,
    /// Messages found after reopening.
    pub present: u64,
    /// Reported messages missing after reopening.
    pub lost: u64,
    /// Offsets out of sequence (a gap, or a message after one) or values that do not match.
    pub broken: u64,
    /// The present messages are a whole number of batches (a commit is all or nothing).
    pub atomic: bool,
    /// How long the reopen of the killed store took.
    pub reopen: Duration,
}

/// Spawns this program as a child writing to a new store under `base`, kills it with SIGKILL
/// after `after`, and checks what survived.
pub fn run<S: Store>(base: &Path, durable: bool, after: Duration) -> Result<CrashRun> {
    let dir = tempfile::Builder::new().prefix("crash-").tempdir_in(base)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("crash-child")
        .arg(S::NAME)
        .arg(dir.path())
        .arg(if durable { "durable" } else { "none" })
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child without stdout")?;
    // Read while the child writes, so that a full pipe never slows it down.
    let reader = std::thread::spawn(move || {
        let mut last = 0u64;
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            // A line is whole only with its newline: the child prints it after the commit.
            if let Some(n) = line.strip_suffix('\n').and_then(|l| l.parse().ok()) {
                last = n;
            }
            line.clear();
        }
        last
    });
    std::thread::sleep(after);
    child.kill()?;
    child.wait()?;
    let reported = reader.join().map_err(|_| "reader thread panicked")?;

    let t = Instant::now();
    let store = S::open(dir.path())?;
    let reopen = t.elapsed();
    let mut next = vec![0u64; STREAMS as usize];
    let mut broken = 0u64;
    let mut present = 0u64;
    store.scan(&mut |stream, offset, value| {
        present += 1;
        match next.get_mut(stream as usize) {
            Some(n) if *n == offset && matches(value, stream, offset) => *n += 1,
            _ => broken += 1,
        }
    })?;
    // With no gap in any stream, the present messages must be exactly the first `present`
    // of the run: check each stream's count against that.
    let s = u64::from(STREAMS);
    for (stream, n) in next.iter().enumerate() {
        let want = present / s + u64::from((stream as u64) < present % s);
        if *n != want {
            broken += 1;
        }
    }
    Ok(CrashRun {
        reported,
        present,
        lost: reported.saturating_sub(present),
        broken,
        atomic: present.is_multiple_of(BATCH),
        reopen,
    })
}
