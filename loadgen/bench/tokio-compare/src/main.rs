//! The alternative design, measured: one tokio task per connection holding a
//! tokio-tungstenite WebSocketStream, idle (reading, answering pings).
use futures_util::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};

#[derive(serde::Serialize)]
struct Claims {
    sub: String,
    exp: u64,
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let port: u16 = std::env::args().nth(2).unwrap().parse().unwrap();
    let key = EncodingKey::from_secret(b"s");
    let before = rss();
    let mut sem = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for i in 0..n {
        let token = encode(
            &Header::default(),
            &Claims {
                sub: format!("t{i}"),
                exp: 4_000_000_000,
            },
            &key,
        )
        .unwrap();
        let url = format!("ws://127.0.0.1:{port}/ws?token={token}");
        let tx = tx.clone();
        sem.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let _welcome = ws.next().await;
            tx.send(()).unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        }));
        if i % 500 == 499 {
            for _ in 0..500 {
                rx.recv().await;
            }
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = rss();
    println!(
        "tokio-tungstenite: {n} connections, RSS {} -> {} bytes, {} bytes/connection",
        before,
        after,
        (after - before) / n as u64
    );
}
