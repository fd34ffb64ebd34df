//! Fan-out of one pre-encoded event frame to N connections of one shard, in one process:
//! the cost per recipient of wsgate's own queueing (`ConnHandle::push`, the vectored flush,
//! the wake-up and re-park), and the same with the frame really written to N sockets, so the
//! kernel's share is visible. See BENCHMARKS.md, "Hot-path benches (criterion)".

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use wsgate::testing::bench::{Event, Handles, Sockets, Transport};
use wsgate_protocol::Format;

/// Most socket pairs at once: each takes two descriptors, and the process may hold 20,000.
const MAX_SOCKET_PAIRS: usize = 9_000;

fn queue(c: &mut Criterion) {
    let frame = Event::chat_64().frame(Format::Json).unwrap();

    // Push, then every connection flushes into an in-memory sink and parks again.
    let mut group = c.benchmark_group("fanout/queue");
    for n in [1, 100, 1_000, 10_000] {
        let handles = Handles::new(n, Format::Json);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let pushed = handles.push_all(black_box(&frame));
                (pushed, handles.flush_all())
            })
        });
        assert_eq!(handles.push_all(&frame), n);
        assert_eq!(handles.flush_all(), n * frame.len());
    }
    group.finish();

    // The push alone (the shard's loop over the recipients); the flush is not timed.
    let mut group = c.benchmark_group("fanout/push");
    for n in [100, 1_000, 10_000] {
        let handles = Handles::new(n, Format::Json);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(handles.push_all(black_box(&frame)));
                    timed += start.elapsed();
                    handles.flush_all();
                }
                timed
            })
        });
    }
    group.finish();
}

/// Pushes `frames` frames to each of `n` connections and lets each write them with one
/// `writev` to its own socket; reading the peers' ends is not timed.
fn sockets(c: &mut Criterion, transport: Transport, name: &str, cases: &[(usize, usize)]) {
    let frame = Event::chat_64().frame(Format::Json).unwrap();
    let mut group = c.benchmark_group(name);
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for &(n, frames) in cases {
        let n = n.min(MAX_SOCKET_PAIRS);
        let mut socks = Sockets::new(n, transport, Format::Json).unwrap();
        let expected = n * frames * frame.len();
        group.throughput(Throughput::Elements((n * frames) as u64));
        let id = if frames == 1 {
            BenchmarkId::from_parameter(n)
        } else {
            BenchmarkId::new(format!("{frames}_frames_per_writev"), n)
        };
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let sent = socks.push_and_flush(&frame, frames).unwrap();
                    timed += start.elapsed();
                    assert_eq!(sent, expected, "a socket buffer filled up");
                    let mut read = 0;
                    while read < sent {
                        read += socks.drain().unwrap();
                    }
                }
                timed
            })
        });
        drop(socks);
    }
    group.finish();
}

fn unix(c: &mut Criterion) {
    let cases = [(1, 1), (100, 1), (1_000, 1), (9_000, 1), (1_000, 16)];
    sockets(c, Transport::Unix, "fanout/unix", &cases);
}

fn tcp(c: &mut Criterion) {
    let cases = [(1, 1), (100, 1), (1_000, 1), (9_000, 1), (1_000, 16)];
    sockets(c, Transport::Tcp, "fanout/tcp", &cases);
}

criterion_group!(fanout, queue, unix, tcp);
criterion_main!(fanout);
