//! The WebSocket handshake at `/ws`: format negotiation, the token, the connection limits, and
//! the upgrade; and at `/echo` (`ECHO=true`), the same upgrade without auth or format. Every
//! refusal is an HTTP error with a JSON body, before any upgrade. No extension is negotiated
//! (no `Sec-WebSocket-Extensions` in the answer): frames with reserved bits set are refused.

use std::rc::Rc;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Method, Request, Response, StatusCode};
use wsgate_protocol::{ErrorCode, Format};

use super::token::{token_from_request, OfferedToken};
use super::url::query_param;
use super::{json_error, Body, HttpCode};
use crate::node::permit::{ConnPermit, UserSlot};
use crate::node::{Ctx, Handoff, Role};
use crate::stats::ShardStats;

pub(super) fn handle(ctx: &Rc<Ctx>, mut req: Request<Incoming>) -> Response<Body> {
    let shared = &ctx.shared;
    if let Some(refused) = refuse_early(ctx, &req) {
        return refused;
    }
    let (format, by_header) = match negotiate_format(&req) {
        Ok(f) => f,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg),
    };
    let identity = match token_from_request(&req) {
        OfferedToken::None if shared.config.require_handshake_token => {
            ShardStats::inc(&ctx.stats().auth_failures);
            let msg = "a token is required: Authorization: Bearer <jwt> or ?token=<jwt>";
            return json_error(StatusCode::UNAUTHORIZED, ErrorCode::AuthRequired, msg);
        }
        OfferedToken::None => None,
        OfferedToken::Malformed(msg) => {
            ShardStats::inc(&ctx.stats().auth_failures);
            return json_error(StatusCode::UNAUTHORIZED, ErrorCode::AuthInvalid, msg);
        }
        OfferedToken::Token(token) => match shared.verifier.verify(&token) {
            Ok(identity) => Some(identity),
            Err(e) => {
                ShardStats::inc(&ctx.stats().auth_failures);
                return json_error(StatusCode::UNAUTHORIZED, e.code, &e.message);
            }
        },
    };
    let Some(permit) = ConnPermit::acquire(shared) else {
        return server_full();
    };
    let identity = match identity {
        None => None,
        Some(identity) => match UserSlot::acquire(shared, &identity.user) {
            Some(slot) => Some((identity, slot)),
            None => {
                return json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::UserConnectionLimit,
                    "this user holds its maximum number of connections",
                )
            }
        },
    };
    let role = Role::Gateway { format, identity };
    let mut response = upgrade(ctx, &mut req, role, permit, ctx.shard);
    if by_header && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(format.subprotocol()),
        );
    }
    response
}

/// `GET /echo`: an upgrade with no token and no format, counted against `MAX_CONNECTIONS`.
pub(super) fn echo(ctx: &Rc<Ctx>, mut req: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = refuse_early(ctx, &req) {
        return refused;
    }
    let Some(permit) = ConnPermit::acquire(&ctx.shared) else {
        return server_full();
    };
    upgrade(ctx, &mut req, Role::Echo, permit, ctx.shard)
}

/// Refuses what is not a WebSocket upgrade (426), and any upgrade during shutdown (503).
fn refuse_early(ctx: &Ctx, req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(req) {
        let msg = format!(
            "{} expects a WebSocket upgrade (GET with Upgrade: websocket)",
            req.uri().path()
        );
        let mut res = json_error(StatusCode::UPGRADE_REQUIRED, ErrorCode::BadRequest, &msg);
        res.headers_mut().insert(
            hyper::header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
        return Some(res);
    }
    if ctx.shared.shutdown.is_fired() {
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            HttpCode::ShuttingDown,
            "the server is shutting down",
        ));
    }
    None
}

fn server_full() -> Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerFull,
        "the server holds its maximum number of connections",
    )
}

/// Answers the handshake (101) and hands the socket to shard `shard`'s reactor once the
/// upgrade completes (so neither the upgrade's state nor a task is kept for the connection's
/// life): this shard's, or the one that owns the Engine.IO session the socket takes over.
pub(super) fn upgrade(
    ctx: &Rc<Ctx>,
    req: &mut Request<Incoming>,
    role: Role,
    permit: ConnPermit,
    shard: usize,
) -> Response<Body> {
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(e) => {
            let msg = format!("invalid WebSocket handshake: {e}");
            return json_error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &msg);
        }
    };
    let ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        if let Some((socket, already_read)) =
            crate::transport::ws::upgrade::take_over(upgrade).await
        {
            let handoff = Handoff {
                socket,
                already_read,
                role,
                permit,
            };
            ctx.shared.hand_off(shard, handoff);
        }
    });
    response.map(|_| Full::default())
}

/// The connection's format: the first known `Sec-WebSocket-Protocol` token (echoed back), else
/// `?format=`, else JSON. Returns whether the header chose it.
fn negotiate_format<B>(req: &Request<B>) -> Result<(Format, bool), &'static str> {
    let offered = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|t| Format::from_subprotocol(t.trim()));
    if let Some(format) = offered {
        return Ok((format, true));
    }
    match query_param(req.uri().query().unwrap_or(""), "format") {
        None => Ok((Format::Json, false)),
        Some(v) => Format::from_query(&v)
            .map(|f| (f, false))
            .ok_or("format must be json or msgpack"),
    }
}
