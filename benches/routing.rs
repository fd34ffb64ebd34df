//! Routing lookups: a shard's room and user maps (lookup alone, and a whole local delivery to
//! a room of 100 members or to one user's connections), and the server-wide directory's
//! lookups behind the REST API. Keys rotate over every room and user, as requests would.
//! See BENCHMARKS.md, "Hot-path benches (criterion)".

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wsgate::testing::bench::{room_name, user_name, Directory, Event, ShardMaps};

/// (users, rooms): one connection per user, each in one room: 100 members per room.
const SIZES: [(usize, usize); 2] = [(10_000, 100), (100_000, 1_000)];

/// Cycles through `keys`, one per call.
fn cycle<'a, T>(keys: &'a [T]) -> impl FnMut() -> &'a T + 'a {
    let mut i = 0;
    move || {
        i = (i + 1) % keys.len();
        &keys[i]
    }
}

fn shard(c: &mut Criterion) {
    let event = Event::chat_64();
    let mut group = c.benchmark_group("routing/shard");
    for (users, rooms) in SIZES {
        let maps = ShardMaps::new(users, 1, rooms, 1);
        let size = format!("{users}u_{rooms}r");
        let room_keys: Vec<String> = (0..rooms).map(room_name).collect();
        let user_keys: Vec<String> = (0..users).map(user_name).collect();
        let missing: Vec<String> = (0..rooms).map(|i| format!("absent-{i}")).collect();
        assert_eq!(maps.room_members(&room_keys[1]), users / rooms);

        let mut next = cycle(&room_keys);
        group.bench_function(BenchmarkId::new("room_lookup", &size), |b| {
            b.iter(|| maps.room_members(black_box(next())))
        });
        let mut next = cycle(&missing);
        group.bench_function(BenchmarkId::new("room_lookup_miss", &size), |b| {
            b.iter(|| maps.room_members(black_box(next())))
        });
        let mut next = cycle(&user_keys);
        group.bench_function(BenchmarkId::new("user_lookup", &size), |b| {
            b.iter(|| maps.user_conns(black_box(next())))
        });
        let room_arcs: Vec<Arc<str>> = room_keys.iter().map(|r| Arc::from(r.as_str())).collect();
        let user_arcs: Vec<Arc<str>> = user_keys.iter().map(|u| Arc::from(u.as_str())).collect();
        let publisher = Some(maps.conn_id(0));
        let mut next = cycle(&room_arcs);
        group.bench_function(BenchmarkId::new("deliver_room_100", &size), |b| {
            b.iter(|| maps.deliver_room(black_box(next()), &event, publisher))
        });
        let mut next = cycle(&user_arcs);
        group.bench_function(BenchmarkId::new("deliver_user", &size), |b| {
            b.iter(|| maps.deliver_user(black_box(next()), &event))
        });
    }
    group.finish();
}

fn directory(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/directory");
    for (users, rooms) in SIZES {
        let dir = Directory::new(users, 1, rooms, (users / rooms) as u32);
        let size = format!("{users}u_{rooms}r");
        let room_keys: Vec<String> = (0..rooms).map(room_name).collect();
        let user_keys: Vec<String> = (0..users).map(user_name).collect();
        let room_arcs: Vec<Arc<str>> = room_keys.iter().map(|r| Arc::from(r.as_str())).collect();
        assert_eq!(dir.room(&room_keys[1]), Some((users / rooms) as u32));

        let mut next = cycle(&room_keys);
        group.bench_function(BenchmarkId::new("room", &size), |b| {
            b.iter(|| dir.room(black_box(next())))
        });
        let mut next = cycle(&user_keys);
        group.bench_function(BenchmarkId::new("connections_of", &size), |b| {
            b.iter(|| dir.connections_of(black_box(next())))
        });
        // Pages of 100 after a cursor in the first half, as a client paging through.
        let mut next = cycle(&user_keys[..users / 2]);
        group.bench_function(BenchmarkId::new("users_page_100", &size), |b| {
            b.iter(|| dir.users_page(Some(black_box(next())), 100))
        });
        group.bench_function(BenchmarkId::new("rooms_page_100", &size), |b| {
            b.iter(|| dir.rooms_page(black_box(None::<&str>), 100))
        });
        let mut i = 0;
        group.bench_function(BenchmarkId::new("join_leave", &size), |b| {
            b.iter(|| {
                i = (i + 1) % rooms;
                dir.join_leave(black_box(&room_arcs[i]))
            })
        });
    }
    group.finish();
}

criterion_group!(routing, shard, directory);
criterion_main!(routing);
