//! User streams over the real server: private messages (`send`, REST pushes to users) carry
//! their offset in the user's stream; what a user with no connection misses waits in its
//! mailbox and comes on its next connection, in order, before anything live (the REST answer
//! says `queued`); a client that acks gets at-least-once (what it did not ack comes again),
//! one that never acks is not sent anything twice; the mailbox is bounded; it survives a
//! restart. And read markers: `read`, the `read` field of `join` replies, unread counts over
//! REST and opt-in `read` events.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wsgate::config::StoreKind;

const BOTH: [Fmt; 2] = [Fmt::Json, Fmt::MsgPack];

/// A private message's offset and `data`.
fn private(ev: &Value) -> (u64, Value) {
    assert_eq!(ev["type"], "event", "{ev}");
    assert!(ev.get("room").is_none(), "a private message: {ev}");
    (ev["offset"].as_u64().unwrap(), ev["data"].clone())
}

/// Nothing more arrives within a short while.
async fn quiet(c: &mut Client) {
    let got = tokio::time::timeout(Duration::from_millis(300), c.next_message()).await;
    assert!(got.is_err(), "nothing more expected, got {got:?}");
}

#[tokio::test]
async fn an_offline_user_gets_its_mailbox_first_on_its_next_connection() {
    let server = start_api_server(|_| {});
    let api = Api::new(&server);
    for fmt in BOTH {
        let bob = format!("bob-{}", fmt.query());
        let (s, body) = api
            .post(
                "/api/v1/push/users",
                json!({"userId": bob, "event": "notification", "data": {"n": 1}}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            body,
            json!({"delivered": 0, "offline": [bob], "queued": [bob]})
        );
        let mut ann = server.client("ann", fmt).await;
        ann.ok(
            json!({"cmd": "send", "to": bob, "event": "dm", "data": {"n": 2}}),
            1,
        )
        .await;

        let mut b = server.client(&bob, fmt).await;
        assert_eq!(private(&b.recv().await), (1, json!({"n": 1})));
        let ev = b.recv().await;
        assert_eq!(
            (ev["event"].as_str(), ev["from"].as_str()),
            (Some("dm"), Some("ann"))
        );
        assert_eq!(private(&ev), (2, json!({"n": 2})));
        // Then live, with the next offset.
        ann.ok(
            json!({"cmd": "send", "to": bob, "event": "dm", "data": {"n": 3}}),
            2,
        )
        .await;
        assert_eq!(private(&b.recv().await), (3, json!({"n": 3})));

        // A client that does not ack got them: its next connection is not sent them again.
        b.close().await;
        let mut b = server.client(&bob, fmt).await;
        quiet(&mut b).await;
        let (_, body) = api
            .post(
                "/api/v1/push/users",
                json!({"userIds": [bob, "nobody"], "event": "n", "data": 4}),
            )
            .await;
        assert_eq!(
            body,
            json!({"delivered": 1, "offline": ["nobody"], "queued": ["nobody"]})
        );
        assert_eq!(private(&b.recv().await), (4, json!(4)));
    }
}

#[tokio::test]
async fn a_client_that_acks_gets_again_what_it_did_not_ack() {
    let server = start_server(|_| {});
    for fmt in BOTH {
        let bob = format!("acker-{}", fmt.query());
        let mut ann = server.client("ann", fmt).await;
        let mut b = server.client(&bob, fmt).await;
        // From its first ack on (here before any message), the user's messages wait for acks.
        b.ok(json!({"cmd": "ack", "offset": 0}), 9).await;
        for n in 1..=4 {
            ann.ok(
                json!({"cmd": "send", "to": bob, "event": "dm", "data": n}),
                n,
            )
            .await;
        }
        for n in 1..=4 {
            assert_eq!(private(&b.recv().await).0, n);
        }
        b.ok(json!({"cmd": "ack", "offset": 1}), 10).await;
        b.close().await;

        let mut b = server.client(&bob, fmt).await;
        let again: Vec<u64> = [b.recv().await, b.recv().await, b.recv().await]
            .iter()
            .map(|e| private(e).0)
            .collect();
        assert_eq!(again, [2, 3, 4], "what was not acked comes again, in order");
        // An ack past the end only acks what there is.
        b.ok(json!({"cmd": "ack", "offset": 99}), 11).await;
        b.close().await;
        let mut b = server.client(&bob, fmt).await;
        quiet(&mut b).await;
        ann.ok(
            json!({"cmd": "send", "to": bob, "event": "dm", "data": 5}),
            5,
        )
        .await;
        assert_eq!(private(&b.recv().await).0, 5, "offsets go on after the ack");
    }
}

#[tokio::test]
async fn the_mailbox_is_bounded_and_keeps_the_newest() {
    let server = start_api_server(|c| c.user_stream_size = 3);
    let api = Api::new(&server);
    for n in 1..=5 {
        let (s, _) = api
            .post(
                "/api/v1/push/users",
                json!({"userId": "away", "event": "n", "data": n}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let mut b = server.client("away", Fmt::Json).await;
    let got: Vec<u64> = [b.recv().await, b.recv().await, b.recv().await]
        .iter()
        .map(|e| private(e).0)
        .collect();
    assert_eq!(got, [3, 4, 5], "the oldest two were pushed out");
    quiet(&mut b).await;
}

#[tokio::test]
async fn ack_refusals() {
    let server = start_server(|_| {});
    let mut c = server.client("ann", Fmt::Json).await;
    for (cmd, why) in [
        (json!({"cmd": "ack", "id": 1}), "offset: missing"),
        (
            json!({"cmd": "ack", "id": 2, "offset": -1}),
            "offset: expected an unsigned integer",
        ),
        (
            json!({"cmd": "read", "id": 3, "room": "r"}),
            "offset: missing",
        ),
        (
            json!({"cmd": "read", "id": 4, "offset": 1}),
            "room: missing",
        ),
    ] {
        c.send(cmd).await;
        let e = c.recv().await;
        assert_eq!(code(&e), "bad_request", "{e}");
        assert_eq!(e["message"], why, "{e}");
    }
    // A user with no stream acks nothing, and that is fine.
    c.ok(json!({"cmd": "ack", "offset": 5}), 5).await;
    // Before auth: auth.required.
    let url = server.url("format=json");
    let mut anon = Client::connect(&url, Fmt::Json).await.unwrap();
    anon.send(json!({"cmd": "ack", "id": 1, "offset": 1})).await;
    assert_eq!(code(&anon.recv().await), "auth.required");
}

#[tokio::test]
async fn read_markers_give_unread_counts_and_opt_in_receipts() {
    let server = start_api_server(|c| c.read_receipts = true);
    let api = Api::new(&server);
    let mut ann = server.client("ann", Fmt::Json).await;
    let mut ben = server.client("ben", Fmt::MsgPack).await;
    ann.ok(json!({"cmd": "join", "room": "lobby"}), 1).await;
    let j = ben.call(json!({"cmd": "join", "room": "lobby"}), 1).await;
    assert!(j.get("read").is_none(), "no marker yet: {j}");
    for n in 0..5 {
        ann.ok(
            json!({"cmd": "publish", "room": "lobby", "event": "m", "data": n}),
            10 + n,
        )
        .await;
    }
    for _ in 0..5 {
        ben.recv().await;
    }
    ben.ok(json!({"cmd": "read", "room": "lobby", "offset": 3}), 2)
        .await;
    let receipt = ann.recv().await;
    assert_eq!(
        receipt,
        json!({"type": "event", "event": "read", "room": "lobby", "from": "ben", "data": {"offset": 3}})
    );
    // Never back; never past the end.
    ben.ok(json!({"cmd": "read", "room": "lobby", "offset": 2}), 3)
        .await;
    ann.recv().await;
    let (s, body) = api.get("/api/v1/users/ben/unread").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"userId": "ben", "rooms": [{"roomId": "lobby", "read": 3, "offset": 5, "unread": 2}], "mailbox": null})
    );
    ben.ok(json!({"cmd": "read", "room": "lobby", "offset": 99}), 4)
        .await;
    ann.recv().await;
    let (_, body) = api.get("/api/v1/users/ben/unread").await;
    assert_eq!(body["rooms"][0]["read"], 5, "{body}");
    // A later join says where the user read up to.
    let mut ben2 = server.client("ben", Fmt::Json).await;
    let j = ben2.call(json!({"cmd": "join", "room": "lobby"}), 1).await;
    assert_eq!(
        (j["offset"].as_u64(), j["read"].as_u64()),
        (Some(5), Some(5)),
        "{j}"
    );
    // Members only.
    let mut eve = server.client("eve", Fmt::Json).await;
    let e = eve
        .call(json!({"cmd": "read", "room": "lobby", "offset": 1}), 1)
        .await;
    assert_eq!(code(&e), "room.forbidden", "{e}");
}

#[tokio::test]
async fn without_read_receipts_nobody_is_told() {
    let server = start_server(|_| {});
    let mut ann = server.client("ann", Fmt::Json).await;
    let mut ben = server.client("ben", Fmt::Json).await;
    ann.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    ben.ok(json!({"cmd": "join", "room": "r"}), 1).await;
    ann.ok(json!({"cmd": "publish", "room": "r", "event": "m"}), 2)
        .await;
    ben.recv().await;
    ben.ok(json!({"cmd": "read", "room": "r", "offset": 1}), 2)
        .await;
    quiet(&mut ann).await;
}

#[tokio::test]
async fn mailboxes_acks_and_read_markers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = |c: &mut wsgate::Config| {
        c.api_keys = Some(API_KEY.into());
        c.store = StoreKind::Disk;
        c.data_dir = dir.path().to_path_buf();
    };
    {
        let server = start_server(on_disk);
        let mut ann = server.client("ann", Fmt::Json).await;
        ann.ok(json!({"cmd": "join", "room": "r"}), 1).await;
        ann.ok(json!({"cmd": "publish", "room": "r", "event": "m"}), 2)
            .await;
        ann.ok(json!({"cmd": "publish", "room": "r", "event": "m"}), 3)
            .await;
        ann.ok(json!({"cmd": "read", "room": "r", "offset": 1}), 4)
            .await;
        // Bob acks: then what he does not ack waits for him across the restart.
        let mut bob = server.client("bob", Fmt::Json).await;
        ann.ok(
            json!({"cmd": "send", "to": "bob", "event": "dm", "data": 1}),
            5,
        )
        .await;
        assert_eq!(private(&bob.recv().await).0, 1);
        bob.ok(json!({"cmd": "ack", "offset": 1}), 1).await;
        ann.ok(
            json!({"cmd": "send", "to": "bob", "event": "dm", "data": 2}),
            6,
        )
        .await;
        assert_eq!(private(&bob.recv().await).0, 2);
        bob.close().await;
        // Carol is offline: hers waits in her mailbox.
        ann.ok(
            json!({"cmd": "send", "to": "carol", "event": "dm", "data": 9}),
            7,
        )
        .await;
        ann.close().await;
        server.handle.shutdown().await;
    }
    let server = start_server(on_disk);
    let mut bob = server.client("bob", Fmt::MsgPack).await;
    assert_eq!(
        private(&bob.recv().await),
        (2, json!(2)),
        "not acked: again"
    );
    quiet(&mut bob).await;
    let mut carol = server.client("carol", Fmt::Json).await;
    let ev = carol.recv().await;
    assert_eq!(
        (private(&ev), ev["from"].as_str()),
        ((1, json!(9)), Some("ann"))
    );
    let mut ann = server.client("ann", Fmt::Json).await;
    let j = ann.call(json!({"cmd": "join", "room": "r"}), 1).await;
    assert_eq!(
        (j["offset"].as_u64(), j["read"].as_u64()),
        (Some(2), Some(1)),
        "{j}"
    );
    ann.ok(
        json!({"cmd": "send", "to": "carol", "event": "dm", "data": 10}),
        2,
    )
    .await;
    assert_eq!(
        private(&carol.recv().await).0,
        2,
        "offsets go on after a restart"
    );
}

/// `wsgate_store_mailbox_loads_total` on `/metrics`.
async fn mailbox_loads(server: &TestServer) -> u64 {
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("wsgate_store_mailbox_loads_total "))
        .unwrap_or_else(|| panic!("no mailbox loads counter in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A server with the disk store in `dir`.
fn disk_server(dir: &std::path::Path) -> TestServer {
    let dir = dir.to_path_buf();
    start_server(move |c| {
        c.api_keys = Some(API_KEY.into());
        c.store = StoreKind::Disk;
        c.data_dir = dir;
        (c.rate_per_sec, c.rate_burst) = (100_000, 100_000);
        c.user_stream_size = 1000;
    })
}

/// Receives private messages until offset `last`; returns their offsets and data in order.
async fn private_until(c: &mut Client, last: u64) -> Vec<(u64, Value)> {
    let mut got = Vec::new();
    while got.last().map(|(o, _)| *o) < Some(last) {
        got.push(private(&c.recv().await));
    }
    got
}

#[tokio::test]
async fn an_offline_users_mailbox_is_loaded_from_disk_in_order_while_messages_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let server = disk_server(dir.path());
    for fmt in BOTH {
        let bob = format!("bob-{}", fmt.query());
        let loads = mailbox_loads(&server).await;
        let mut ann = server.client("ann", fmt).await;
        for n in 1..=100 {
            let dm = json!({"cmd": "send", "to": bob, "event": "dm", "data": n});
            ann.ok(dm, n).await;
        }
        assert_eq!(mailbox_loads(&server).await, loads, "nothing loaded yet");
        // Bob connects while Ann keeps sending: what waited on disk comes first, then what
        // came meanwhile, then live, with no gap and no duplicate.
        let sending = async {
            for n in 101..=300 {
                let dm = json!({"cmd": "send", "to": bob, "event": "dm", "data": n});
                ann.ok(dm, n).await;
            }
        };
        let receiving = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut b = server.client(&bob, fmt).await;
            let got = private_until(&mut b, 300).await;
            (b, got)
        };
        let ((), (mut b, got)) = tokio::join!(sending, receiving);
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (1..=300).collect::<Vec<_>>(), "{fmt:?}");
        assert!(got.iter().all(|(o, d)| *d == json!(o)), "{fmt:?}");
        quiet(&mut b).await;
        assert!(
            mailbox_loads(&server).await > loads,
            "the mailbox came from the store"
        );
        // Delivered, so acknowledged (bob never acks): the next connection gets nothing.
        b.close().await;
        let mut b = server.client(&bob, fmt).await;
        quiet(&mut b).await;
    }
}

#[tokio::test]
async fn a_user_that_acks_gets_its_spilled_and_held_messages_on_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = disk_server(dir.path());
    let mut ann = server.client("ann", Fmt::Json).await;
    let send = |n: u64| json!({"cmd": "send", "to": "bob", "event": "dm", "data": n});
    let mut phone = server.client("bob", Fmt::MsgPack).await;
    ann.ok(send(1), 1).await;
    assert_eq!(private(&phone.recv().await).0, 1);
    phone.ok(json!({"cmd": "ack", "offset": 1}), 1).await;
    ann.ok(send(2), 2).await;
    assert_eq!(private(&phone.recv().await).0, 2);
    // Not acked, and the phone goes: 2 is let go to the store, 3 and 4 go straight there.
    phone.close().await;
    ann.ok(send(3), 3).await;
    ann.ok(send(4), 4).await;
    let mut laptop = server.client("bob", Fmt::Json).await;
    let got = private_until(&mut laptop, 4).await;
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [2, 3, 4]);
    // The laptop stays: 5 is held in memory; a second connection gets the stored 2..4 and
    // the held 5, in order, still unacknowledged.
    ann.ok(send(5), 5).await;
    assert_eq!(private(&laptop.recv().await).0, 5);
    let mut tablet = server.client("bob", Fmt::Json).await;
    let got = private_until(&mut tablet, 5).await;
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    laptop.ok(json!({"cmd": "ack", "offset": 4}), 1).await;
    laptop.close().await;
    tablet.close().await;
    let mut phone = server.client("bob", Fmt::MsgPack).await;
    assert_eq!(private(&phone.recv().await), (5, json!(5)));
    quiet(&mut phone).await;
}
