//! Engine.IO sessions across nodes (cluster mode over a real `redis-server`): a session's id
//! names the node holding it, and a long-polling request or a WebSocket upgrade that reaches
//! another node is forwarded there and answered as the owner answers, so a plain round-robin
//! balancer will do (the real socket.io-client behind a round-robin TCP balancer over three
//! nodes, tests/js/socketio.mjs `roundRobin`). What cannot be forwarded (the owner unknown or gone, a request already
//! forwarded once) is answered as an unknown session, and counted.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::cluster::{metric, node_with};
use common::eio::{eio_error, next_text, Answer, Eio};
use common::proxy::Proxy;
use common::redis::RedisServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A node of the cluster on `redis` serving the Engine.IO echo, connected to Redis.
async fn eio_node(redis: &RedisServer) -> TestServer {
    eio_node_with(redis, |_| {}).await
}

/// [`eio_node`], with `tweak` applied to its config.
async fn eio_node_with(redis: &RedisServer, tweak: impl FnOnce(&mut wsgate::Config)) -> TestServer {
    node_with(redis, |c| {
        c.echo = true;
        c.socketio = false;
        tweak(c);
    })
    .await
}

/// The value of a `kind` of `wsgate_cluster_forwarded_total` on `server`.
async fn forwarded(server: &TestServer, kind: &str) -> u64 {
    metric(
        server,
        &format!("wsgate_cluster_forwarded_total{{kind=\"{kind}\"}}"),
    )
    .await
}

/// A long-poll of session `sid` through `server`, held there (nothing is queued) when this
/// returns.
async fn held_poll(server: &TestServer, sid: &str) -> tokio::task::JoinHandle<Answer> {
    let (eio, sid) = (Eio::new(server), sid.to_owned());
    let held = tokio::spawn(async move { eio.poll(&sid).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "a long-poll with nothing queued waits");
    held
}

#[tokio::test]
async fn long_polling_works_through_any_node_and_refuses_as_the_owner_does() {
    let redis = RedisServer::start();
    let cors = |c: &mut wsgate::Config| c.cors_origin = Some("*".into());
    let (a, b, c) = (
        eio_node_with(&redis, cors).await,
        eio_node_with(&redis, cors).await,
        eio_node_with(&redis, cors).await,
    );
    let (at_a, at_b, at_c) = (Eio::new(&a), Eio::new(&b), Eio::new(&c));
    let (sid, _) = at_a.open().await;
    assert_eq!(
        sid.len(),
        33,
        "the shard, the node's tag, the slot, 18 random characters"
    );
    // POSTs on one node, long-polls on another: the echo comes back through each.
    for (i, (post, poll)) in [(&at_b, &at_c), (&at_c, &at_b), (&at_b, &at_b)]
        .into_iter()
        .enumerate()
    {
        let sent = format!("4hello {i}");
        let answer = post.post(&sid, sent.as_bytes()).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
        let answer = poll.poll(&sid).await;
        assert_eq!(answer.header("content-type"), "text/plain; charset=UTF-8");
        assert_eq!((answer.status, answer.body), (200, sent));
    }
    // The owner's CORS headers come back once.
    assert_eq!(at_b.post(&sid, b"4cors").await.body, "ok");
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let origin = [("origin", "https://app.example")];
    let answer = at_c.request("GET", &query, None, &origin).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "4cors"));
    let allowed: Vec<_> = answer
        .headers
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(allowed, ["https://app.example"]);
    assert_eq!(answer.header("access-control-allow-credentials"), "true");
    // Five through B, three through C; none through the owner.
    assert_eq!(forwarded(&b, "polling").await, 5);
    assert_eq!(forwarded(&c, "polling").await, 3);
    assert_eq!(forwarded(&a, "polling").await, 0);
    // A long-poll held through B, a second one through C: refused as Engine.IO refuses it
    // (400, no body), and the session ends, the first one answered with its close.
    let held = held_poll(&b, &sid).await;
    let second = at_c.poll(&sid).await;
    assert_eq!((second.status, second.body.as_str()), (400, ""));
    let first = held.await.unwrap();
    assert_eq!((first.status, first.body.as_str()), (200, "1"));
    let gone = at_b.poll(&sid).await;
    assert_eq!((gone.status, gone.body), (400, eio_error(1)));
    assert_eq!(metric(&b, "wsgate_cluster_forward_failures_total").await, 0);

    // A node no one knows: an unknown session, counted.
    let (sid, _) = at_a.open().await;
    let stranger = format!("{}zzzzzzzz{}", &sid[..2], &sid[10..]);
    assert_ne!(stranger, sid);
    let unknown = at_b.poll(&stranger).await;
    assert_eq!((unknown.status, unknown.body), (400, eio_error(1)));
    assert_eq!(metric(&b, "wsgate_cluster_forward_failures_total").await, 1);
    // A request forwarded already is never forwarded again.
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let looped = at_c
        .request("GET", &query, None, &[("x-wsgate-forwarded", "1")])
        .await;
    assert_eq!((looped.status, looped.body), (400, eio_error(1)));
    assert_eq!(metric(&c, "wsgate_cluster_forward_failures_total").await, 1);
    // The owner gone (its address still in Redis): an unknown session too.
    assert_eq!(at_b.post(&sid, b"4still there").await.body, "ok");
    a.handle.shutdown().await;
    let orphan = at_b.poll(&sid).await;
    assert_eq!((orphan.status, orphan.body), (400, eio_error(1)));
    assert_eq!(metric(&b, "wsgate_cluster_forward_failures_total").await, 2);
    b.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_abandoned_on_the_forwarding_node_ends_the_session_on_the_owner() {
    let redis = RedisServer::start();
    let (a, b, c) = (
        eio_node(&redis).await,
        eio_node(&redis).await,
        eio_node(&redis).await,
    );
    let (sid, _) = Eio::new(&a).open().await;
    let held = held_poll(&b, &sid).await;
    // Its client goes away (its connection closes), and so does the forwarded one: the owner
    // ends the session, as it does a long-poll abandoned on it (and as Node's server does),
    // instead of keeping it until its ping times out, and from every node it is unknown.
    held.abort();
    wait_for("the session ends with its forwarded long-poll", || {
        a.handle.stats().connections == 0
    })
    .await;
    let after = Eio::new(&a).post(&sid, b"4anyone?").await;
    assert_eq!((after.status, after.body), (400, eio_error(1)));
    let next = Eio::new(&c).poll(&sid).await;
    assert_eq!((next.status, next.body), (400, eio_error(1)));
    for server in [a, b, c] {
        server.handle.shutdown().await;
    }
}

#[tokio::test]
async fn a_session_upgrades_to_a_websocket_through_another_node() {
    let redis = RedisServer::start();
    let (a, b) = (eio_node(&redis).await, eio_node(&redis).await);
    let (sid, _) = Eio::new(&a).open().await;
    let at_b = Eio::new(&b);
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        b.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    assert_eq!(at_b.poll(&sid).await.body, "6");
    assert_eq!(at_b.post(&sid, b"4queued").await.status, 200);
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4over the websocket")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4queued");
    assert_eq!(next_text(&mut ws).await, "4over the websocket");
    assert_eq!(forwarded(&b, "websocket").await, 1);
    // Long-polling is over for the session, as on its own node.
    let refused = at_b.poll(&sid).await;
    assert_eq!((refused.status, refused.body), (400, eio_error(3)));
    // The forwarding node stops: the tunnel does not hold it up, and the WebSocket ends (the
    // client reconnects anywhere).
    tokio::time::timeout(WAIT, b.handle.shutdown())
        .await
        .expect("the forwarding node stops in time");
    let open = |m: &Option<Result<Message, _>>| {
        matches!(
            m,
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))
        )
    };
    while open(&tokio::time::timeout(WAIT, ws.next()).await.unwrap()) {}
    a.handle.shutdown().await;
}

#[tokio::test]
async fn socket_io_clients_work_behind_a_round_robin_balancer() {
    let redis = RedisServer::start();
    let nodes = [
        node_with(&redis, |_| {}).await,
        node_with(&redis, |_| {}).await,
        node_with(&redis, |_| {}).await,
    ];
    let balancer = Proxy::round_robin(nodes.iter().map(|n| n.addr.port()).collect()).await;
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    let tokens = json!({"alice": token("alice"), "bob": token("bob"), "carol": token("carol")});
    let args = json!({"tokens": tokens, "apiKey": API_KEY, "nodes": urls});
    let url = format!("http://127.0.0.1:{}", balancer.port);
    let run = node::run("socketio.mjs", &[&url, "roundRobin", &args.to_string()]).await;
    let v = run.verdict();
    assert!(run.success, "{v}\n{}", run.stderr);
    assert_eq!(v["joins"], json!(["reply", "reply", "reply"]), "{v}");
    for (n, round) in [(1, &v["before"]), (2, &v["after"])] {
        assert_eq!(round["published"], "reply", "{v}");
        assert_eq!(round["chat"], json!([{"n": n}, {"n": n}]), "{v}");
        assert_eq!(round["notes"], json!([{"n": n}, {"n": n}]), "{v}");
    }
    assert_eq!(v["carolTransport"], "websocket", "{v}");
    assert_eq!(v["own"], "reply", "{v}");
    assert_eq!(v["fromAlice"], json!({"from": "alice"}), "{v}");
    // Requests did land on other nodes than their sessions', and were forwarded; so was
    // carol's upgrade (her handshake, CONNECT, long-poll and probe take turns over the three
    // nodes, alice's long-poll held meanwhile: the probe's connection is not her handshake's).
    let (mut polling, mut websocket) = (0, 0);
    for n in &nodes {
        polling += forwarded(n, "polling").await;
        websocket += forwarded(n, "websocket").await;
        assert_eq!(metric(n, "wsgate_cluster_forward_failures_total").await, 0);
    }
    assert!(polling >= 4, "{polling} long-polling requests forwarded");
    assert_eq!(
        websocket, 1,
        "carol's upgrade went through a node that does not hold her"
    );
    for server in nodes {
        server.handle.shutdown().await;
    }
}

#[tokio::test]
async fn forwarding_is_bounded_and_bodies_keep_the_owners_bound() {
    let redis = RedisServer::start();
    let small = |c: &mut wsgate::Config| c.engineio_max_payload = 1000;
    let a = eio_node_with(&redis, small).await;
    let b = eio_node_with(&redis, |c| {
        small(c);
        c.cluster_forward_max = 1;
    })
    .await;
    let off = eio_node_with(&redis, |c| c.cluster_forward_max = 0).await;
    let (at_a, at_b) = (Eio::new(&a), Eio::new(&b));
    let (sid, _) = at_a.open().await;
    // A node with CLUSTER_FORWARD_MAX=0 forwards nothing: an unknown session, as before.
    let refused = Eio::new(&off).poll(&sid).await;
    assert_eq!((refused.status, refused.body), (400, eio_error(1)));
    assert_eq!(
        metric(&off, "wsgate_cluster_forward_failures_total").await,
        1
    );
    off.handle.shutdown().await;
    // A long-poll held through B takes its one slot: the next request through B is refused.
    let held = held_poll(&b, &sid).await;
    let busy = at_b.post(&sid, b"4refused").await;
    assert_eq!((busy.status, busy.body), (503, eio_error(4)));
    assert_eq!(metric(&b, "wsgate_cluster_forward_failures_total").await, 1);
    // The owner itself is not bounded so; what it echoes answers the held long-poll.
    assert_eq!(at_a.post(&sid, b"4direct").await.body, "ok");
    assert_eq!(held.await.unwrap().body, "4direct");
    // The slot is free again; a body over the owner's ENGINEIO_MAX_PAYLOAD is refused by the
    // owner (413, and the session ends), streamed to it, not buffered here.
    let mut big = b"4".to_vec();
    big.resize(2000, b'x');
    let answer = at_b.post(&sid, &big).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    let gone = at_b.poll(&sid).await;
    assert_eq!((gone.status, gone.body), (400, eio_error(1)));
    assert_eq!(forwarded(&b, "polling").await, 3);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test]
async fn a_node_listening_on_every_address_is_not_forwarded_to_without_an_advertised_one() {
    let redis = RedisServer::start();
    let a = eio_node_with(&redis, |c| c.host = "0.0.0.0".parse().unwrap()).await;
    let b = eio_node(&redis).await;
    // Both beat; only B's address is in Redis, the one its listener has.
    let beats = || redis.cli(&["ZCARD", "wsgate:{n}:beats"]);
    wait_for("both nodes beat", || {
        beats().is_some_and(|n| n.trim() == "2")
    })
    .await;
    let addresses = redis.cli(&["KEYS", "wsgate:{n}:addr:*"]).unwrap();
    assert_eq!(addresses.lines().count(), 1, "{addresses}");
    let key = addresses.lines().next().unwrap();
    assert_eq!(redis.cli(&["GET", key]).unwrap().trim(), b.addr.to_string());
    let (sid, _) = Eio::new(&a).open().await;
    let answer = Eio::new(&b).poll(&sid).await;
    assert_eq!((answer.status, answer.body), (400, eio_error(1)));
    assert_eq!(metric(&b, "wsgate_cluster_forward_failures_total").await, 1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}
