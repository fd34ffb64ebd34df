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

use super::{json_error, Body};
use crate::auth::{query_param, token_from_request, OfferedToken};
use crate::connection::Role;
use crate::server::{ConnPermit, UserSlot};
use crate::shard::Shard;
use crate::stats::ShardStats;

pub(super) fn handle(shard: &Rc<Shard>, mut req: Request<Incoming>) -> Response<Body> {
    let shared = &shard.shared;
    if let Some(refused) = refuse_early(shard, &req) {
        return refused;
    }
    let (format, by_header) = match negotiate_format(&req) {
        Ok(f) => f,
        Err(msg) => {
            return json_error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest.as_str(), msg)
        }
    };
    let identity = match token_from_request(&req) {
        OfferedToken::None if shared.config.require_handshake_token => {
            ShardStats::inc(&shard.stats().auth_failures);
            let msg = "a token is required: Authorization: Bearer <jwt> or ?token=<jwt>";
            return json_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthRequired.as_str(),
                msg,
            );
        }
        OfferedToken::None => None,
        OfferedToken::Malformed(msg) => {
            ShardStats::inc(&shard.stats().auth_failures);
            return json_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthInvalid.as_str(),
                msg,
            );
        }
        OfferedToken::Token(token) => match shared.verifier.verify(&token) {
            Ok(identity) => Some(identity),
            Err(e) => {
                ShardStats::inc(&shard.stats().auth_failures);
                return json_error(StatusCode::UNAUTHORIZED, e.code.as_str(), &e.message);
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
                    ErrorCode::UserConnectionLimit.as_str(),
                    "this user holds its maximum number of connections",
                )
            }
        },
    };
    let role = Role::Gateway { format, identity };
    let mut response = upgrade(shard, &mut req, role, permit);
    if by_header && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(format.subprotocol()),
        );
    }
    response
}

/// `GET /echo`: an upgrade with no token and no format, counted against `MAX_CONNECTIONS`.
pub(super) fn echo(shard: &Rc<Shard>, mut req: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = refuse_early(shard, &req) {
        return refused;
    }
    let Some(permit) = ConnPermit::acquire(&shard.shared) else {
        return server_full();
    };
    upgrade(shard, &mut req, Role::Echo, permit)
}

/// Refuses what is not a WebSocket upgrade (426), and any upgrade during shutdown (503).
fn refuse_early(shard: &Shard, req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(req) {
        let msg = format!(
            "{} expects a WebSocket upgrade (GET with Upgrade: websocket)",
            req.uri().path()
        );
        let mut res = json_error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadRequest.as_str(),
            &msg,
        );
        res.headers_mut().insert(
            hyper::header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
        return Some(res);
    }
    if shard.shared.shutdown.is_fired() {
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server.shutting_down",
            "the server is shutting down",
        ));
    }
    None
}

fn server_full() -> Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerFull.as_str(),
        "the server holds its maximum number of connections",
    )
}

/// Answers the handshake (101) and hands the socket to the shard's reactor once the upgrade
/// completes.
fn upgrade(
    shard: &Rc<Shard>,
    req: &mut Request<Incoming>,
    role: Role,
    permit: ConnPermit,
) -> Response<Body> {
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(e) => {
            let msg = format!("invalid WebSocket handshake: {e}");
            return json_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest.as_str(),
                &msg,
            );
        }
    };
    tokio::task::spawn_local(crate::connection::run(shard.clone(), upgrade, role, permit));
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
