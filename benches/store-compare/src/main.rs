//! redb against fjall on wsgate's stream workload; prints Markdown tables (see RESULTS.md).
//!
//! `store-compare [--runs N] [--secs S] [--dir DIR] [--phase append|full|crash]...`
//!
//! Default: 3 runs of 1 s per measurement, the data in new directories under the system's
//! temporary directory (it must be on the real disk, not tmpfs), every phase.

mod append;
mod crash;
mod fjall_store;
mod full;
mod read;
mod redb_store;
mod stats;
mod store;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fjall_store::Fjall;
use redb_store::Redb;
use stats::{latency, rate, runs, size};
use store::{Result, Store};

/// Stream counts of the fresh-store appends.
const APPEND_STREAMS: [u32; 2] = [1_000, 100_000];
/// Messages per commit of the fresh-store appends.
const APPEND_BATCHES: [usize; 4] = [1, 16, 256, 4096];

struct Args {
    runs: usize,
    secs: f64,
    dir: PathBuf,
    phases: Vec<String>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        runs: 3,
        secs: 1.0,
        dir: std::env::temp_dir(),
        phases: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value()?.parse()?,
            "--secs" => a.secs = value()?.parse()?,
            "--dir" => a.dir = value()?.into(),
            "--phase" => a.phases.push(value()?),
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    if a.phases.is_empty() {
        a.phases = vec!["append".into(), "full".into(), "crash".into()];
    }
    Ok(a)
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("crash-child") {
        let (store, dir, mode) = match &argv[2..] {
            [s, d, m] => (s.as_str(), Path::new(d), m == "durable"),
            _ => return Err("crash-child STORE DIR durable|none".into()),
        };
        return match store {
            "redb" => crash::child::<Redb>(dir, mode),
            "fjall" => crash::child::<Fjall>(dir, mode),
            _ => Err(format!("unknown store {store}").into()),
        };
    }
    let a = parse()?;
    println!(
        "runs per measurement: {}, {} s each; data under {}\n",
        a.runs,
        a.secs,
        a.dir.display()
    );
    for p in &a.phases {
        println!("load average before the {p} phase: {}\n", loadavg());
        match p.as_str() {
            "append" => appends(&a)?,
            "full" => full_store(&a)?,
            "crash" => crashes(&a)?,
            _ => return Err(format!("unknown phase {p}").into()),
        }
    }
    println!("load average at the end: {}", loadavg());
    Ok(())
}

/// The machine's 1, 5 and 15 minute load averages: other work on the machine shows here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn appends(a: &Args) -> Result<()> {
    println!("## Appends into a fresh store, one commit per batch\n");
    println!("Runs are listed in order (run 1 / run 2 / run 3). Write amplification: bytes the process wrote to storage (`/proc/self/io`) per byte of key and value.\n");
    println!(
        "| durability | streams | batch | store | msgs/s | commit p50 | commit p99 | write amp |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for durable in [true, false] {
        for streams in APPEND_STREAMS {
            for batch in APPEND_BATCHES {
                eprintln!("append durable={durable} streams={streams} batch={batch}");
                let mut r = [Vec::new(), Vec::new()];
                // Alternate the stores run by run, so that drift of the machine hits both.
                for run in 0..a.runs {
                    let seed = run as u64;
                    r[0].push(append::fresh::<Redb>(
                        &a.dir, streams, batch, durable, a.secs, seed,
                    )?);
                    r[1].push(append::fresh::<Fjall>(
                        &a.dir, streams, batch, durable, a.secs, seed,
                    )?);
                }
                let mode = if durable {
                    "durable (fsync)"
                } else {
                    "none (no fsync)"
                };
                for (name, runs_) in [(Redb::NAME, &r[0]), (Fjall::NAME, &r[1])] {
                    println!(
                        "| {mode} | {streams} | {batch} | {name} | {} | {} | {} | {} |",
                        runs(runs_, |x| rate(x.msgs_per_s)),
                        runs(runs_, |x| latency(x.p50)),
                        runs(runs_, |x| latency(x.p99)),
                        runs(runs_, |x| x
                            .write_amp
                            .map_or("n/a".into(), |w| format!("{w:.1}"))),
                    );
                }
            }
        }
    }
    println!();
    Ok(())
}

fn full_store(a: &Args) -> Result<()> {
    eprintln!("full store");
    let r = full::run::<Redb>(&a.dir, a.runs, a.secs)?;
    let f = full::run::<Fjall>(&a.dir, a.runs, a.secs)?;
    let both = [(Redb::NAME, &r), (Fjall::NAME, &f)];
    println!(
        "## The full store: {} messages over {} streams\n",
        u64::from(full::STREAMS) * full::PER_STREAM,
        full::STREAMS
    );
    println!(
        "### Load (durable commits of {} messages, then a close)\n",
        full::LOAD_BATCH
    );
    println!("| store | load time | msgs/s | write amp | disk after load (apparent / allocated) |");
    println!("|---|---|---|---|---|");
    for (name, x) in both {
        let msgs = (u64::from(full::STREAMS) * full::PER_STREAM) as f64;
        println!(
            "| {name} | {:.2} s | {} | {} | {} / {} |",
            x.load.as_secs_f64(),
            rate(msgs / x.load.as_secs_f64()),
            x.load_amp.map_or("n/a".into(), |w| format!("{w:.1}")),
            size(x.disk_loaded.0),
            size(x.disk_loaded.1),
        );
    }
    println!();
    reads_table("Range reads (one thread, warm page cache)", &both, |x| {
        &x.reads
    });
    println!("### Reopen (what a restart costs; warm page cache)\n");
    println!("| store | close | open + first read |");
    println!("|---|---|---|");
    for (name, x) in both {
        println!(
            "| {name} | {} | {} |",
            runs(&x.reopens, |o| latency(o.close)),
            runs(&x.reopens, |o| latency(o.open)),
        );
    }
    println!(
        "\n### TTL expiry: each run deletes the {} oldest messages of every stream (100k), in durable commits of {} streams\n",
        full::EXPIRE_STEP,
        full::EXPIRE_CHUNK
    );
    println!(
        "| store | time per 100k deleted | deleted | bytes written | allocated on disk after |"
    );
    println!("|---|---|---|---|---|");
    for (name, x) in both {
        println!(
            "| {name} | {} | {} | {} | {} |",
            runs(&x.expires, |e| latency(e.time)),
            runs(&x.expires, |e| e.deleted.to_string()),
            runs(&x.expires, |e| e.written.map_or("n/a".into(), size)),
            runs(&x.expires, |e| size(e.disk_after)),
        );
    }
    println!();
    reads_table(
        "Range reads after the expiry (the oldest 30 of each stream deleted)",
        &both,
        |x| &x.reads_after,
    );
    println!(
        "### Appends into the full store (durable, batches of {}, {} streams, {} s runs)\n",
        full::FULL_APPEND_BATCH,
        full::STREAMS,
        a.secs * full::FULL_APPEND_STRETCH
    );
    println!("| store | msgs/s | commit p50 | commit p99 | write amp |");
    println!("|---|---|---|---|---|");
    for (name, x) in both {
        println!(
            "| {name} | {} | {} | {} | {} |",
            runs(&x.appends, |r| rate(r.msgs_per_s)),
            runs(&x.appends, |r| latency(r.p50)),
            runs(&x.appends, |r| latency(r.p99)),
            runs(&x.appends, |r| r
                .write_amp
                .map_or("n/a".into(), |w| format!("{w:.1}"))),
        );
    }
    println!("\n### Disk usage at the end (after a close; apparent / allocated)\n");
    println!("| store | after load (1M messages) | at the end | messages at the end |");
    println!("|---|---|---|---|");
    for (name, x) in both {
        println!(
            "| {name} | {} / {} | {} / {} | {} |",
            size(x.disk_loaded.0),
            size(x.disk_loaded.1),
            size(x.disk_end.0),
            size(x.disk_end.1),
            x.msgs_end
        );
    }
    println!();
    Ok(())
}

fn reads_table(
    title: &str,
    both: &[(&str, &full::Full); 2],
    pick: impl Fn(&full::Full) -> &Vec<Vec<read::ReadRun>>,
) {
    println!("### {title}\n");
    println!("| query | store | reads/s | p50 | p99 | wrong |");
    println!("|---|---|---|---|---|---|");
    for (qi, q) in full::QUERIES.iter().enumerate() {
        for (name, x) in both {
            let rs = &pick(x)[qi];
            println!(
                "| {} | {name} | {} | {} | {} | {} |",
                q.label(),
                runs(rs, |r| rate(r.per_s)),
                runs(rs, |r| latency(r.p50)),
                runs(rs, |r| latency(r.p99)),
                rs.iter().map(|r| r.wrong).sum::<u64>(),
            );
        }
    }
    println!();
}

fn crashes(a: &Args) -> Result<()> {
    println!(
        "## kill -9 of a writer (batches of {} over {} streams), reopen, check\n",
        crash::BATCH,
        crash::STREAMS
    );
    println!("| durability | store | run | killed after | reported committed | present | lost | broken | whole batches | reopen |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for durable in [true, false] {
        for run in 0..a.runs {
            let after = Duration::from_millis(700 + 250 * run as u64);
            eprintln!("crash durable={durable} run={run}");
            let r = crash::run::<Redb>(&a.dir, durable, after)?;
            let f = crash::run::<Fjall>(&a.dir, durable, after)?;
            for (name, c) in [(Redb::NAME, r), (Fjall::NAME, f)] {
                println!(
                    "| {} | {name} | {} | {} ms | {} | {} | {} | {} | {} | {} |",
                    if durable { "durable" } else { "none" },
                    run + 1,
                    after.as_millis(),
                    c.reported,
                    c.present,
                    c.lost,
                    c.broken,
                    if c.atomic { "yes" } else { "no" },
                    latency(c.reopen),
                );
            }
        }
    }
    println!();
    Ok(())
}
