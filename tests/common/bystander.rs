//! The bystander: a well-behaved client that keeps receiving while a case attacks the server
//! next to it, and checks that it still receives fresh messages after the attack.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

use super::{token, wait_for, Api, Client, Fmt, TestServer};

/// Who feeds the bystander. Cases whose attacker joins room `watch` use `Rest`, so that the
/// attacker receives no ticks in between its answers.
#[derive(Clone, Copy)]
pub enum Feed {
    /// A well-behaved client publishing to room `watch`.
    Room,
    /// The backend, pushing to user `watcher` over REST.
    Rest,
}

/// A client (`watcher`, MessagePack, in room `watch`) fed a numbered `tick` every 20 ms, in a
/// task of its own, for the whole test: each tick must arrive, in order, within [`WAIT`](super::WAIT).
pub struct Bystander {
    ticks: Arc<AtomicU64>,
    /// Events other than ticks that reached the watcher (an attacker's, in room `watch`).
    others: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Bystander {
    /// A bystander whose clients authenticate with [`token`].
    pub async fn start(server: &TestServer, feed: Feed) -> Bystander {
        Self::start_with(server, feed, token).await
    }

    /// A bystander whose clients authenticate with tokens from `mint`.
    pub async fn start_with(
        server: &TestServer,
        feed: Feed,
        mint: fn(&str) -> String,
    ) -> Bystander {
        let mut watcher = server
            .client_with_token(&mint("watcher"), Fmt::MsgPack)
            .await;
        watcher.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
        let mut feeder = match feed {
            Feed::Room => {
                let mut f = server.client_with_token(&mint("feeder"), Fmt::Json).await;
                f.ok(json!({"cmd": "join", "room": "watch"}), 1).await;
                Some(f)
            }
            Feed::Rest => None,
        };
        let api = Api::new(server);
        let ticks = Arc::new(AtomicU64::new(0));
        let others = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, o, s) = (ticks.clone(), others.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !s.load(Relaxed) {
                match feeder.as_mut() {
                    Some(f) => publish_tick(f, i).await,
                    None => {
                        let push = json!({"userId": "watcher", "event": "tick", "data": i});
                        let (status, body) = api.post("/api/v1/push/users", push).await;
                        assert_eq!((status, &body["delivered"]), (200, &json!(1)), "{body}");
                    }
                }
                loop {
                    let m = watcher.recv().await;
                    if m["event"] == "tick" {
                        assert_eq!(m["data"], i, "ticks arrive in order, none lost");
                        break;
                    }
                    o.fetch_add(1, Relaxed);
                }
                i += 1;
                t.store(i, Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            watcher.close().await;
            if let Some(f) = feeder {
                f.close().await;
            }
        });
        let b = Bystander {
            ticks,
            others,
            stop,
            task,
        };
        b.fresh().await;
        b
    }

    /// Waits until the watcher receives a tick sent after this call.
    pub async fn fresh(&self) {
        let target = self.ticks.load(Relaxed) + 2;
        wait_for("the bystander receives a fresh tick", || {
            self.ticks.load(Relaxed) >= target || self.task.is_finished()
        })
        .await;
        assert!(!self.task.is_finished(), "the bystander's task ended early");
    }

    pub fn others(&self) -> u64 {
        self.others.load(Relaxed)
    }

    /// Checks a fresh tick arrives, stops, and returns how many non-tick events arrived.
    pub async fn finish(self) -> u64 {
        self.fresh().await;
        self.stop.store(true, Relaxed);
        self.task.await.unwrap();
        self.others.load(Relaxed)
    }
}

/// Publishes tick `i` to room `watch` and waits for the reply (skipping events on the way).
async fn publish_tick(feeder: &mut Client, i: u64) {
    let cmd = json!({"cmd": "publish", "id": i, "room": "watch", "event": "tick", "data": i});
    feeder.send(cmd).await;
    loop {
        let m = feeder.recv().await;
        if m["type"] == "event" {
            continue;
        }
        assert_eq!((&m["type"], &m["id"]), (&json!("reply"), &json!(i)), "{m}");
        return;
    }
}
