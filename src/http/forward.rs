//! Cluster mode: an Engine.IO request whose `sid` names another node is forwarded to that
//! node over plain HTTP/1.1, and its answer (status, headers, body) given back as it is; a
//! WebSocket upgrade with such a `sid` is forwarded too, then its bytes copied both ways.
//! The owner's address comes from Redis ([`crate::cluster::redis::addresses`]).
//!
//! Bounded: at most `CLUSTER_FORWARD_MAX` forwarded at once (past it 503, as Engine.IO's
//! `Forbidden`); the connect to the owner waits at most `CLUSTER_TIMEOUT`; a `POST`'s body
//! streams through (the owner applies `ENGINEIO_MAX_PAYLOAD` and `BODY_TIMEOUT`), and an
//! answer is read up to twice `ENGINEIO_MAX_PAYLOAD`. A forwarded request carries
//! [`FORWARDED`], and is never forwarded again. Whatever goes wrong (owner unknown, gone,
//! unreachable) is answered as an unknown session, so that the client starts over.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wsgate_protocol::engineio::HandshakeError;

use super::engineio::refusal;
use super::Body;
use crate::cluster::redis::addresses::ForwardPermit;
use crate::cluster::redis::Redis;
use crate::node::Ctx;
use crate::transport::engineio::{NodeTag, Sid};

/// The header that marks a forwarded request.
pub(super) const FORWARDED: HeaderName = HeaderName::from_static("x-wsgate-forwarded");

/// Headers of one hop only, not passed on (an upgrade keeps `connection` and `upgrade`).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    HeaderName::from_static("keep-alive"),
];

/// The link and the node holding session `sid`, if it is another node (cluster mode).
pub(super) fn owner(ctx: &Ctx, sid: Sid) -> Option<(&Arc<Redis>, NodeTag)> {
    let redis = ctx.shared.backplane.redis()?;
    let node = sid.node().filter(|node| *node != redis.tag)?;
    Some((redis, node))
}

/// Forwards `req` (a WebSocket upgrade if `upgrade`) to node `node` and answers with its
/// answer.
pub(super) async fn forward(
    ctx: &Rc<Ctx>,
    mut req: Request<Incoming>,
    redis: &Arc<Redis>,
    node: NodeTag,
    upgrade: bool,
) -> Response<Body> {
    let stats = &redis.stats;
    let unknown = || {
        stats.forward_failures.fetch_add(1, Ordering::Relaxed);
        refusal(HandshakeError::SessionIdUnknown, upgrade)
    };
    // Forwarded once already (the node named is not the one the forwarder found at its
    // address), or forwarding is off.
    if req.headers().contains_key(&FORWARDED) || !redis.addresses.forwards() {
        return unknown();
    }
    let Some(permit) = redis.forward_permit() else {
        stats.forward_failures.fetch_add(1, Ordering::Relaxed);
        return busy(upgrade);
    };
    let cfg = ctx.config();
    let Some(sender) = connect(redis, node, cfg.cluster_timeout).await else {
        return unknown();
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if !upgrade {
        strip(&mut parts.headers);
        // One request per connection (no pool yet): the owner need not wait for another.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    parts
        .headers
        .insert(FORWARDED, HeaderValue::from_static("1"));
    let request = Request::from_parts(parts, body);
    // A long-poll is answered within a ping interval; its answer is bounded. The exchange runs
    // in this request's future, never detached: when the client goes away, hyper drops it and
    // closes the connection to the owner, which then lets go of the long-poll as it would of
    // its own (its answer is not written into a connection nobody reads).
    let deadline = cfg.engineio_ping_interval + cfg.engineio_ping_timeout + cfg.cluster_timeout;
    let limit = 2 * cfg.engineio_max_payload + 4096;
    let answer = tokio::time::timeout(deadline, exchange(sender, request, limit, upgrade)).await;
    let Ok(Some((mut res, owner_upgrade))) = answer else {
        return unknown();
    };
    let kind = match upgrade {
        true => &stats.forwarded_websocket,
        false => &stats.forwarded_polling,
    };
    kind.fetch_add(1, Ordering::Relaxed);
    if let (Some(client), Some(owner)) = (client_upgrade, owner_upgrade) {
        tokio::task::spawn_local(tunnel(client, owner, permit));
    } else {
        strip(res.headers_mut());
        res.headers_mut().remove(header::CONTENT_LENGTH);
    }
    res
}

/// An HTTP/1.1 connection to node `node`, made within `timeout`; `None` if it is not known
/// or cannot be reached (then its address is read again next time).
async fn connect(
    redis: &Redis,
    node: NodeTag,
    timeout: Duration,
) -> Option<hyper::client::conn::http1::SendRequest<Incoming>> {
    let addr = redis.address_of(node).await?;
    let handshake = async {
        let stream = TcpStream::connect(&*addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()
    };
    let Ok(Some((sender, conn))) = tokio::time::timeout(timeout, handshake).await else {
        tracing::debug!(node = node.as_str(), %addr, "cluster: cannot reach a session's node");
        redis.forget_address(node);
        return None;
    };
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "cluster: a forwarded request's connection failed");
        }
    });
    Some(sender)
}

/// Sends `request` and reads the answer: its body (at most `limit` bytes), or, for an
/// accepted upgrade, the owner's side of it.
async fn exchange(
    mut sender: hyper::client::conn::http1::SendRequest<Incoming>,
    request: Request<Incoming>,
    limit: usize,
    upgrade: bool,
) -> Option<(Response<Body>, Option<OnUpgrade>)> {
    let mut res = sender.send_request(request).await.ok()?;
    if upgrade && res.status() == StatusCode::SWITCHING_PROTOCOLS {
        let owner = hyper::upgrade::on(&mut res);
        let (parts, _) = res.into_parts();
        return Some((
            Response::from_parts(parts, Full::new(Bytes::new())),
            Some(owner),
        ));
    }
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, limit).collect().await.ok()?.to_bytes();
    Some((Response::from_parts(parts, Full::new(body)), None))
}

/// Copies an upgraded WebSocket's bytes between the client and the owner until either side
/// closes (or this node stops), holding its forwarding slot.
async fn tunnel(client: OnUpgrade, owner: OnUpgrade, _permit: ForwardPermit) {
    let (Ok(client), Ok(owner)) = tokio::join!(client, owner) else {
        return;
    };
    let (mut client, mut owner) = (TokioIo::new(client), TokioIo::new(owner));
    let _ = tokio::io::copy_bidirectional(&mut client, &mut owner).await;
}

/// Takes out the headers of one hop.
fn strip(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `CLUSTER_FORWARD_MAX` requests are forwarded already: 503, with Engine.IO's `Forbidden`.
fn busy(upgrade: bool) -> Response<Body> {
    let mut res = refusal(HandshakeError::Forbidden, upgrade);
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res
}
