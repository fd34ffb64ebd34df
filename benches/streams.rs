//! The write path a room stream adds to each publish (the bucket lock, the next offset, the
//! event at that offset, its place in the history ring, the trim), in memory and with the
//! durable store (its value encoded, its write queued, the writer thread keeping up), and a
//! `history` read.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wsgate::testing::bench::StreamWrites;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("streams");
    for size in [100, 1000] {
        let stream = StreamWrites::new(size);
        for _ in 0..size {
            stream.append();
        }
        group.bench_function(format!("append/history_{size}"), |b| {
            b.iter(|| black_box(stream.append()))
        });
        group.bench_function(format!("read_newest_50/history_{size}"), |b| {
            b.iter(|| black_box(stream.read_newest(50)))
        });
    }
    // With the store on disk: the shard's part and the writer's, sustained (see
    // `StreamWrites::on_disk`). The data directory must be on a real disk.
    let dir = std::env::temp_dir().join(format!("wsgate-bench-streams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stream = StreamWrites::on_disk(100, &dir);
    group.bench_function("append_disk/history_100", |b| {
        b.iter(|| black_box(stream.append()))
    });
    group.finish();
    drop(stream);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(streams, append);
criterion_main!(streams);
