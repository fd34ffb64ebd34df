//! A TCP proxy on a free loopback port in front of a real server (Redis), that a test can
//! stall (bytes stop flowing both ways and new connections wait, as over a partitioned or
//! very slow link), hold the server's answers only (requests reach it, answers wait), cut
//! (every connection reset) and heal. Nothing is answered in Redis's
//! place: what passes is the real server's bytes. In front of several servers it is a
//! round-robin TCP balancer: each new connection goes to the next one.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Proxy {
    pub port: u16,
    /// `true` while stalled.
    stalled: watch::Sender<bool>,
    /// `true` while the server's answers are held.
    held: watch::Sender<bool>,
    /// The connections' pumps: aborted by [`Proxy::cut`] and when dropped.
    pumps: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, flowing.
    pub async fn start(upstream: u16) -> Proxy {
        Proxy::round_robin(vec![upstream]).await
    }

    /// A proxy that sends each new connection to the next of `127.0.0.1:upstreams`, in turn.
    pub async fn round_robin(upstreams: Vec<u16>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stalled, _) = watch::channel(false);
        let (held, _) = watch::channel(false);
        let pumps = Arc::new(Mutex::new(JoinSet::new()));
        let (watch, set, hold) = (stalled.clone(), pumps.clone(), held.clone());
        let accept = tokio::spawn(async move {
            for turn in 0.. {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstreams[turn % upstreams.len()];
                let (flowing, answers) = (watch.subscribe(), hold.subscribe());
                set.lock()
                    .unwrap()
                    .spawn(connection(down, upstream, flowing, answers));
            }
        });
        Proxy {
            port,
            stalled,
            held,
            pumps,
            accept,
        }
    }

    /// Bytes stop flowing (what is read is held) and new connections wait.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Requests flow on to the server; its answers are held (as when a link dies just after
    /// the server ran a command).
    pub fn hold_answers(&self) {
        self.held.send_replace(true);
    }

    /// Bytes flow again, what was held first.
    pub fn heal(&self) {
        self.stalled.send_replace(false);
        self.held.send_replace(false);
    }

    /// Resets every connection through it (their sockets close): the client reconnects.
    pub fn cut(&self) {
        self.pumps.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn connection(
    down: TcpStream,
    upstream: u16,
    mut flowing: watch::Receiver<bool>,
    answers: watch::Receiver<bool>,
) {
    if flowing.wait_for(|s| !s).await.is_err() {
        return;
    }
    let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let requests = flowing.clone();
    tokio::select! {
        () = pump(down_r, up_w, requests, None) => {}
        () = pump(up_r, down_w, flowing, Some(answers)) => {}
    }
}

/// Copies `from` to `to`, holding what it read while stalled (or, for the server's side,
/// while `held` says its answers are held).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: watch::Receiver<bool>,
    mut held: Option<watch::Receiver<bool>>,
) {
    let mut buf = vec![0; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(held) = &mut held {
            if held.wait_for(|h| !h).await.is_err() {
                return;
            }
        }
        if flowing.wait_for(|s| !s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
