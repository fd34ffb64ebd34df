//! The durable store over the real server: what survives a clean restart (room definitions,
//! who was let in, history, stream positions, so resume still recovers), and what survives
//! `kill -9` of the real binary: everything acknowledged with `STORE_FSYNC=always`, and with
//! an fsync interval everything acknowledged before the last fsync; after a crash a stream
//! has a new epoch and its offsets go on past every offset handed out before, never reused.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wsgate::config::StoreKind;

fn on_disk(dir: &std::path::Path) -> impl FnOnce(&mut wsgate::Config) + '_ {
    move |c| {
        c.api_keys = Some(API_KEY.into());
        c.store = StoreKind::Disk;
        c.data_dir = dir.to_path_buf();
    }
}

/// Publishes `n` events to `room` with echo, returning the offsets they got.
async fn publish(c: &mut Client, room: &str, n: u64, id: u64) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in 0..n {
        c.send(json!({"cmd": "publish", "id": id + i, "room": room, "event": "m", "data": {"i": i}, "echo": true}))
            .await;
        let ev = c.recv().await;
        assert_eq!(ev["type"], "event", "{ev}");
        offsets.push(ev["offset"].as_u64().unwrap());
        let r = c.recv().await;
        assert_eq!(r["type"], "reply", "{r}");
    }
    offsets
}

fn history_offsets(body: &Value) -> Vec<u64> {
    offsets(&body["messages"])
}

#[tokio::test]
async fn a_clean_restart_keeps_rooms_history_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (epoch, vault_epoch) = {
        let server = start_server(on_disk(dir.path()));
        let api = Api::new(&server);
        let (s, _) = api
            .post(
                "/api/v1/rooms",
                json!({"roomId": "vault", "private": true, "maxMembers": 5}),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = api
            .post("/api/v1/rooms/vault/members", json!({"userId": "ann"}))
            .await;
        assert_eq!(s, 200);
        let mut ann = server.client("ann", Fmt::Json).await;
        let joined = ann.call(json!({"cmd": "join", "room": "lobby"}), 1).await;
        let epoch = joined["epoch"].as_str().unwrap().to_owned();
        assert_eq!(publish(&mut ann, "lobby", 5, 10).await, [1, 2, 3, 4, 5]);
        let joined = ann.call(json!({"cmd": "join", "room": "vault"}), 2).await;
        assert_eq!(joined["type"], "reply", "{joined}");
        let vault_epoch = joined["epoch"].as_str().unwrap().to_owned();
        assert_eq!(publish(&mut ann, "vault", 2, 20).await, [1, 2]);
        ann.close().await;
        server.handle.shutdown().await;
        (epoch, vault_epoch)
    };

    let server = start_server(on_disk(dir.path()));
    let api = Api::new(&server);
    let (s, room) = api.get("/api/v1/rooms/vault").await;
    assert_eq!(s, 200, "{room}");
    assert_eq!(
        (&room["private"], &room["maxMembers"]),
        (&json!(true), &json!(5))
    );
    let (s, body) = api.get("/api/v1/rooms/lobby/messages?limit=10").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(history_offsets(&body), [1, 2, 3, 4, 5]);
    assert_eq!(
        body["epoch"],
        json!(epoch),
        "a clean restart keeps the epoch"
    );
    assert_eq!(body["messages"][0]["data"], json!({"i": 0}));

    // Resume across the restart: nothing was lost, so it recovers.
    let mut ben = server.client("ben", Fmt::MsgPack).await;
    ben.send(
        json!({"cmd": "join", "id": 1, "room": "lobby", "since": {"epoch": epoch, "offset": 3}}),
    )
    .await;
    for offset in [4, 5] {
        let ev = ben.recv().await;
        assert_eq!(
            (ev["offset"].as_u64(), &ev["data"]["i"]),
            (Some(offset), &json!(offset - 1))
        );
    }
    let r = ben.recv().await;
    assert_eq!(
        (r["type"].as_str(), &r["recovered"]),
        (Some("reply"), &json!(true)),
        "{r}"
    );
    assert_eq!(publish(&mut ben, "lobby", 1, 5).await, [6], "offsets go on");

    // Who was let into the private room is kept too.
    let r = ben.call(json!({"cmd": "join", "room": "vault"}), 7).await;
    assert_eq!(code(&r), "room.forbidden", "{r}");
    let mut ann = server.client("ann", Fmt::Json).await;
    let r = ann.call(json!({"cmd": "join", "room": "vault"}), 1).await;
    assert_eq!(
        (r["epoch"].as_str(), r["offset"].as_u64()),
        (Some(&*vault_epoch), Some(2))
    );
    server.handle.shutdown().await;

    // A closed room is gone after the next restart as well.
    let server = start_server(on_disk(dir.path()));
    let api = Api::new(&server);
    let (s, _) = api.delete("/api/v1/rooms/vault").await;
    assert_eq!(s, 200);
    server.handle.shutdown().await;
    let server = start_server(on_disk(dir.path()));
    let (s, _) = Api::new(&server).get("/api/v1/rooms/vault").await;
    assert_eq!(s, 404);
}

/// The real binary with its store in `dir`, killed with SIGKILL when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
}

impl Binary {
    fn start(dir: &std::path::Path, fsync: &str) -> Binary {
        Binary::start_with(dir, fsync, &[])
    }

    fn start_with(dir: &std::path::Path, fsync: &str, args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["--host", "127.0.0.1", "--port", "0", "--shards", "2"])
            .args(["--jwt-secret", SECRET, "--api-keys", API_KEY])
            .args(["--store", "disk", "--store-fsync", fsync])
            .args([
                "--room-history-size",
                "1000",
                "--room-history-bytes",
                "1048576",
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = common::binary::listening(&mut child);
        Binary { child, addr }
    }

    fn server(&self) -> Remote {
        Remote { addr: self.addr }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn metric(server: &Remote, name: &str) -> u64 {
    let (_, text) = server.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn history(server: &Remote, room: &str) -> Value {
    let (s, body) = Api::new(server)
        .get(&format!("/api/v1/rooms/{room}/messages?limit=1000"))
        .await;
    assert_eq!(s, 200, "{body}");
    body
}

#[tokio::test]
async fn kill_9_loses_nothing_acknowledged_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(dir.path(), "always");
    let server = bin.server();
    let mut ann = server.client("ann", Fmt::Json).await;
    let joined = ann.call(json!({"cmd": "join", "room": "r"}), 1).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let acked = publish(&mut ann, "r", 40, 10).await;
    // One more sent and never waited for: the crash may or may not keep it.
    ann.send(json!({"cmd": "publish", "id": 99, "room": "r", "event": "m", "data": 0}))
        .await;
    bin.kill_9();

    let bin = Binary::start(dir.path(), "always");
    let server = bin.server();
    let body = history(&server, "r").await;
    let kept = history_offsets(&body);
    assert!(
        kept.starts_with(&acked),
        "every acknowledged message: {kept:?}"
    );
    assert!(kept.len() <= 41, "{kept:?}");
    assert_ne!(
        body["epoch"],
        json!(epoch),
        "after a crash the epoch changes"
    );
    let mut ben = server.client("ben", Fmt::MsgPack).await;
    ben.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    let next = publish(&mut ben, "r", 1, 2).await[0];
    assert!(next > 41, "an offset never handed out before: {next}");
}

#[tokio::test]
async fn kill_9_under_load_keeps_what_was_acknowledged_before_the_last_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(dir.path(), "5ms");
    let server = bin.server();
    let mut ann = server.client("ann", Fmt::Json).await;
    ann.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    let before = publish(&mut ann, "r", 50, 10).await;
    // Everything so far is acknowledged; wait until the store says it is on disk.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&server, "wsgate_store_queued").await > 0
        || metric(&server, "wsgate_store_unsynced").await > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never synced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(metric(&server, "wsgate_store_fsyncs_total").await > 0);
    // Then load, and the crash in the middle of it.
    let mut seen = *before.last().unwrap();
    for i in 0..400u64 {
        ann.send(json!({"cmd": "publish", "id": 1000 + i, "room": "r", "event": "m", "data": i, "echo": true}))
            .await;
    }
    for _ in 0..100 {
        let m = ann.recv().await;
        if let Some(o) = m["offset"].as_u64() {
            seen = seen.max(o);
        }
    }
    bin.kill_9();

    let bin = Binary::start(dir.path(), "5ms");
    let server = bin.server();
    let kept = history_offsets(&history(&server, "r").await);
    assert!(
        kept.starts_with(&before),
        "acknowledged before the fsync: {kept:?}"
    );
    let expected: Vec<u64> = (1..=kept.len() as u64).collect();
    assert_eq!(kept, expected, "what survives is a prefix, without holes");
    let mut ben = server.client("ben", Fmt::Json).await;
    ben.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    let next = publish(&mut ben, "r", 1, 2).await[0];
    assert!(
        next > seen,
        "offset {next} after {seen} was seen before the crash"
    );
}

#[tokio::test]
async fn kill_9_with_writes_still_queued_never_gives_an_offset_twice() {
    // An hour between rounds: the writer only drains when its queue is half full (32 of
    // 64), so the last messages are still queued, and lost, when the process is killed.
    let dir = tempfile::tempdir().unwrap();
    let small_queue = ["--store-queue-capacity", "64"];
    let bin = Binary::start_with(dir.path(), "1h", &small_queue);
    let server = bin.server();
    let mut ann = server.client("ann", Fmt::Json).await;
    let joined = ann.call(json!({"cmd": "join", "room": "r"}), 1).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let seen = publish(&mut ann, "r", 40, 10).await;
    bin.kill_9();

    let bin = Binary::start_with(dir.path(), "1h", &small_queue);
    let server = bin.server();
    let body = history(&server, "r").await;
    let kept = history_offsets(&body);
    assert!(
        !kept.is_empty() && kept.len() < 40,
        "a drained part survives: {kept:?}"
    );
    assert!(seen.starts_with(&kept), "{kept:?}");
    assert_ne!(body["epoch"], json!(epoch));
    let mut ben = server.client("ben", Fmt::Json).await;
    ben.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    let next = publish(&mut ben, "r", 1, 2).await[0];
    assert!(
        next > 40,
        "offsets up to 40 were handed out before the crash; got {next}"
    );
}

#[tokio::test]
async fn binary_data_survives_a_clean_restart_in_both_encodings() {
    use tokio_tungstenite::tungstenite::Message;
    use wsgate_protocol::{Command, Format, Id, RawData, Request};
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start_server(on_disk(dir.path()));
        // A MessagePack sender's bin, and a JSON sender's `$binary`.
        let mut mp = server.client("mo", Fmt::MsgPack).await;
        mp.ok(json!({"cmd": "join", "room": "pics"}), 1).await;
        let req = Request {
            id: Some(Id::Num(2)),
            command: Command::Publish {
                room: "pics".into(),
                event: "bin".into(),
                data: RawData::trusted(Format::MsgPack, &[0x91, 0xc4, 0x02, 0xca, 0xfe]),
                echo: false,
                ephemeral: false,
                idem: None,
            },
        };
        let mut out = Vec::new();
        wsgate_protocol::encode_request(Format::MsgPack, &req, &mut out).unwrap();
        mp.send_raw(Message::binary(out)).await;
        let r = mp.recv().await;
        assert_eq!(r["type"], "reply", "{r}");
        let mut js = server.client("jo", Fmt::Json).await;
        js.ok(json!({"cmd": "join", "room": "pics"}), 1).await;
        let data = json!({"$binary": "AAEC"});
        let publish = json!({"cmd": "publish", "room": "pics", "event": "json", "data": data});
        js.ok(publish, 2).await;
        mp.close().await;
        js.close().await;
        server.handle.shutdown().await;
    }
    let server = start_server(on_disk(dir.path()));
    let (s, body) = Api::new(&server)
        .get("/api/v1/rooms/pics/messages?limit=10")
        .await;
    assert_eq!(s, 200, "{body}");
    let data: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(
        data,
        [&json!([{"$binary": "yv4="}]), &json!({"$binary": "AAEC"})],
        "{body}"
    );
    // A MessagePack reader gets bin for both.
    let mut mp = server.client("mo", Fmt::MsgPack).await;
    mp.ok(json!({"cmd": "join", "room": "pics"}), 1).await;
    mp.send(json!({"cmd": "history", "id": 2, "room": "pics"}))
        .await;
    let raw = mp.recv_bytes().await;
    let has = |bin: &[u8]| raw.windows(bin.len()).any(|w| w == bin);
    assert!(
        has(&[0xc4, 0x02, 0xca, 0xfe]) && has(&[0xc4, 0x03, 0, 1, 2]),
        "{raw:02x?}"
    );
    mp.close().await;
    server.handle.shutdown().await;
}

/// On disk in `dir`, rooms keeping 1,000 messages and 4 MiB, `STORE_IDLE_FLUSH` `idle`.
fn long_history(dir: &std::path::Path, idle: Duration) -> impl FnOnce(&mut wsgate::Config) + '_ {
    move |c| {
        on_disk(dir)(c);
        c.room_history_size = 1000;
        c.room_history_bytes = 4 << 20;
        c.store_idle_flush = idle;
    }
}

/// Pushes 200 events of 8 KiB to a new room `room` (about 1.6 MiB written).
async fn fill_write_buffer(api: &Api, room: &str) {
    let (s, _) = api.post("/api/v1/rooms", json!({"roomId": room})).await;
    assert_eq!(s, 201);
    let data = "x".repeat(8192);
    for _ in 0..200 {
        let (s, r) = api
            .post(
                &format!("/api/v1/push/rooms/{room}"),
                json!({"event": "m", "data": data}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
}

#[tokio::test]
async fn an_idle_store_flushes_its_write_buffers_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(long_history(dir.path(), Duration::from_millis(300)));
    let api = Api::new(&server);
    fill_write_buffer(&api, "big").await;
    // Written, then idle: the buffers go to the store's files and are freed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&server, "wsgate_store_write_buffer_bytes").await >= 1 << 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle store kept its write buffers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, body) = api.get("/api/v1/rooms/big/messages?limit=1000").await;
    assert_eq!(s, 200);
    let got = offsets(&body["messages"]);
    assert_eq!(
        got,
        (1..=200).collect::<Vec<_>>(),
        "read back from the files"
    );
    // And the writer dropped what it knew of the room's stream, read back on the next write.
    while metric(&server, "wsgate_store_cached_streams").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle writer kept its streams"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, r) = api
        .post("/api/v1/push/rooms/big", json!({"event": "m", "data": 201}))
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, body) = api.get("/api/v1/rooms/big/messages?after=199").await;
    assert_eq!(offsets(&body["messages"]), [200, 201], "the next offset");
    server.handle.shutdown().await;

    // And after a restart, everything is still there.
    let server = start_server(long_history(dir.path(), Duration::ZERO));
    let api = Api::new(&server);
    let (s, body) = api.get("/api/v1/rooms/big/messages?limit=1000").await;
    assert_eq!(s, 200);
    assert_eq!(offsets(&body["messages"]), (1..=201).collect::<Vec<_>>());
}

#[tokio::test]
async fn with_idle_flush_off_the_write_buffers_stay_until_fjall_flushes_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(long_history(dir.path(), Duration::ZERO));
    let api = Api::new(&server);
    fill_write_buffer(&api, "big").await;
    // The writer commits within milliseconds; the buffer holds what it wrote.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&server, "wsgate_store_write_buffer_bytes").await < 1 << 20 {
        assert!(tokio::time::Instant::now() < deadline, "nothing buffered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        metric(&server, "wsgate_store_write_buffer_bytes").await >= 1 << 20,
        "flushed while off"
    );
}
