//! The Engine.IO endpoint (`ENGINEIO_PATH`, `?EIO=4&transport=polling|websocket[&sid=…]`):
//! the request checked in the Node server's order, sent to the engine of the session's shard
//! (the `sid` names it), and its answer written; WebSocket handshakes upgraded and handed to
//! that shard. Served while `ECHO=true` (the Engine.IO echo), like `/echo`. In cluster mode a
//! request whose `sid` names another node is forwarded there ([`forward`]).

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;
use wsgate_protocol::engineio::HandshakeError;
use wsgate_protocol::Format;

use super::token::{token_from_request, OfferedToken};
use super::url::query_param;
use super::{cors, forward, upgrade, Body};
use crate::node::permit::ConnPermit;
use crate::node::polling::{PollAnswer, PollKind, PollRequest};
use crate::node::{Ctx, Role};
use crate::transport::engineio::{Handshake, Sid};

/// Whether `path` is an Engine.IO endpoint, and it is served: ENGINEIO_PATH with Socket.IO
/// (or the echo, or the conformance mode), SOCKETIO_MSGPACK_PATH with Socket.IO (or the
/// conformance mode).
pub(super) fn is_endpoint(ctx: &Ctx, path: &str) -> bool {
    let cfg = ctx.config();
    let socketio = cfg.socketio || cfg.socketio_conformance;
    ((socketio || cfg.echo) && path == cfg.engineio_path())
        || (socketio && path == cfg.socketio_msgpack_path())
}

/// Serves one request of the endpoint, with its CORS headers.
pub(super) async fn handle(ctx: &Rc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let origin = cors::engineio_origin(
        ctx.config().cors_origin.as_deref(),
        req.headers().get(header::ORIGIN),
    );
    let preflight = origin.is_some() && req.method() == Method::OPTIONS;
    let mut res = if preflight {
        let requested = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        cors::engineio_preflight(requested)
    } else {
        serve(ctx, req).await
    };
    if let Some(origin) = origin {
        cors::decorate_credentials(&mut res, origin);
        if preflight {
            res.headers_mut().insert(header::VARY, cors::PREFLIGHT_VARY);
        }
    }
    res
}

/// Checks the request as the Node server's `verify` and `handshake` do (transport, then
/// `sid`, then the handshake's method and `EIO`), then serves it.
async fn serve(ctx: &Rc<Ctx>, mut req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
    let refuse = |e| refusal(e, upgrade);
    let websocket = match query_param(&query, "transport").as_deref() {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return refuse(HandshakeError::TransportUnknown),
    };
    if let Some(sid) = query_param(&query, "sid") {
        let Some(sid) = Sid::parse(&sid) else {
            return refuse(HandshakeError::SessionIdUnknown);
        };
        if let Some((redis, node)) = forward::owner(ctx, sid) {
            return forward::forward(ctx, req, redis, node, upgrade).await;
        }
        return match (websocket, upgrade) {
            (true, true) => take_over(ctx, &mut req, sid).await,
            (false, false) => poll(ctx, req, sid).await,
            // The transport named is not the request's.
            _ => refuse(HandshakeError::BadRequest),
        };
    }
    if req.method() != Method::GET {
        return refuse(HandshakeError::BadHandshakeMethod);
    }
    if websocket != upgrade {
        return refuse(HandshakeError::BadRequest);
    }
    if query_param(&query, "EIO").as_deref() != Some("4") {
        return refuse(HandshakeError::UnsupportedProtocolVersion);
    }
    let permit = match ConnPermit::acquire(&ctx.shared) {
        Some(permit) if !ctx.shared.shutdown.is_fired() => permit,
        _ => return refuse(HandshakeError::Forbidden),
    };
    let parser = if req.uri().path() == ctx.config().socketio_msgpack_path() {
        Format::MsgPack
    } else {
        Format::Json
    };
    let token = match token_from_request(&req) {
        OfferedToken::Token(t) => Some(t.into()),
        // Socket.IO's own CONNECT may carry one.
        OfferedToken::None | OfferedToken::Malformed(_) => None,
    };
    let handshake = Handshake { token, parser };
    if websocket {
        let role = Role::EngineIo {
            sid: None,
            handshake,
        };
        return upgrade::upgrade(ctx, &mut req, role, permit, ctx.shard);
    }
    let open = PollKind::Open { handshake, permit };
    reply(ask(ctx, ctx.shard, open).await)
}

/// A long-poll `GET` or a `POST` of packets, for long-polling session `sid`.
async fn poll(ctx: &Rc<Ctx>, req: Request<Incoming>, sid: Sid) -> Response<Body> {
    let kind = match *req.method() {
        Method::GET => PollKind::Get(sid),
        Method::POST => match read_payload(ctx, req).await {
            Ok(body) => PollKind::Post(sid, body),
            Err(refused) => return reply(PollAnswer::Refused(refused)),
        },
        // Node answers 500 here; a client's mistake is a 400.
        _ => return reply(PollAnswer::Refused(HandshakeError::BadRequest)),
    };
    if let PollKind::Get(sid) = kind {
        return reply(long_poll(ctx, sid).await);
    }
    reply(ask(ctx, sid.shard(), kind).await)
}

/// A long-poll `GET`, sent to the session's engine and waited for; if hyper drops this future
/// first (its connection closed: the client went away), the engine is told.
async fn long_poll(ctx: &Ctx, sid: Sid) -> PollAnswer {
    let Some(answer) = send(ctx, sid.shard(), PollKind::Get(sid)) else {
        return unanswered();
    };
    let mut waiting = Abandon {
        ctx,
        sid,
        answer: Some(answer),
    };
    let answer = match waiting.answer.as_mut() {
        Some(answer) => answer.await.ok(),
        None => None,
    };
    waiting.answer = None;
    answer.unwrap_or_else(unanswered)
}

/// A long-poll's wait: dropped unanswered, it lets go of its answer first (so the engine,
/// whichever thread it runs on, finds the `GET` closed) and then tells the engine.
struct Abandon<'a> {
    ctx: &'a Ctx,
    sid: Sid,
    /// The answer still awaited; `None` once it came.
    answer: Option<oneshot::Receiver<PollAnswer>>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.answer.take().is_some() {
            // No answer is sent: the receiver goes at once.
            let _ = send(self.ctx, self.sid.shard(), PollKind::Abandoned(self.sid));
        }
    }
}

/// A `POST`'s body: `Ok(None)` when it is over `ENGINEIO_MAX_PAYLOAD` (read no further);
/// refused if it does not arrive whole within `BODY_TIMEOUT`.
async fn read_payload(ctx: &Ctx, req: Request<Incoming>) -> Result<Option<Bytes>, HandshakeError> {
    let cfg = ctx.config();
    let max = cfg.engineio_max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let collect = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(cfg.body_timeout, collect).await {
        Ok(Ok(collected)) => Ok(Some(collected.to_bytes())),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
        _ => Err(HandshakeError::BadRequest),
    }
}

/// A WebSocket handshake with `sid`: upgraded, and handed to the session's shard to probe,
/// if long-polling session `sid` is there to be upgraded.
async fn take_over(ctx: &Rc<Ctx>, req: &mut Request<Incoming>, sid: Sid) -> Response<Body> {
    match ask(ctx, sid.shard(), PollKind::Probe(sid)).await {
        PollAnswer::Ok => {}
        PollAnswer::Refused(refused) => return refusal(refused, true),
        _ => return refusal(HandshakeError::BadRequest, true),
    }
    let Some(permit) = ConnPermit::acquire(&ctx.shared) else {
        return refusal(HandshakeError::Forbidden, true);
    };
    let role = Role::EngineIo {
        sid: Some(sid),
        handshake: Handshake::default(),
    };
    upgrade::upgrade(ctx, req, role, permit, sid.shard())
}

/// Sends `kind` to shard `shard`'s engine and waits for its answer (a long-poll: [`long_poll`]).
async fn ask(ctx: &Ctx, shard: usize, kind: PollKind) -> PollAnswer {
    match send(ctx, shard, kind) {
        Some(answer) => answer.await.unwrap_or_else(|_| unanswered()),
        None => unanswered(),
    }
}

/// Sends `kind` to shard `shard`'s engine: where its answer will come, `None` if the shard
/// is gone.
fn send(ctx: &Ctx, shard: usize, kind: PollKind) -> Option<oneshot::Receiver<PollAnswer>> {
    let (respond, answer) = oneshot::channel();
    ctx.shared
        .send_poll(shard, PollRequest { kind, respond })
        .then_some(answer)
}

/// The answer when the engine gives none: its shard is gone, or the session ended without
/// answering.
fn unanswered() -> PollAnswer {
    PollAnswer::Refused(HandshakeError::SessionIdUnknown)
}

/// The HTTP answer of the engine's answer.
fn reply(answer: PollAnswer) -> Response<Body> {
    let (status, content_type, body) = match answer {
        PollAnswer::Payload(payload) => (StatusCode::OK, "text/plain; charset=UTF-8", payload),
        PollAnswer::Ok => (StatusCode::OK, "text/html", Bytes::from_static(b"ok")),
        PollAnswer::Refused(refused) => return refusal(refused, false),
        PollAnswer::TooLarge => return empty(StatusCode::PAYLOAD_TOO_LARGE),
        PollAnswer::Overlap => return empty(StatusCode::BAD_REQUEST),
    };
    let mut res = with(status, content_type, body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A status with no body (as Node ends these refusals).
fn empty(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

/// A refusal as the Node server writes it: JSON `{"code","message"}` for a plain request;
/// for a WebSocket handshake, 400 with the message as text (its `abortUpgrade`).
pub(super) fn refusal(refused: HandshakeError, upgrade: bool) -> Response<Body> {
    if upgrade {
        let body = Bytes::from_static(refused.message().as_bytes());
        let mut res = with(StatusCode::BAD_REQUEST, "text/html", body);
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let status = StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::BAD_REQUEST);
    with(status, "application/json", Bytes::from(refused.body()))
}

fn with(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
