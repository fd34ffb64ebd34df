//! The WebSocket handshake at `/ws`: format negotiation, the token, the connection limits, and
//! the upgrade. Every refusal is an HTTP error with a JSON body, before any upgrade.

use std::rc::Rc;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Method, Request, Response, StatusCode};
use wsgate_protocol::{ErrorCode, Format};

use super::{json_error, Body};
use crate::auth::{query_param, token_from_request, OfferedToken};
use crate::server::{ConnPermit, UserSlot};
use crate::shard::Shard;
use crate::stats::ShardStats;

pub(super) fn handle(shard: &Rc<Shard>, mut req: Request<Incoming>) -> Response<Body> {
    let shared = &shard.shared;
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut res = json_error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadRequest.as_str(),
            "/ws expects a WebSocket upgrade (GET with Upgrade: websocket)",
        );
        res.headers_mut().insert(
            hyper::header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
        return res;
    }
    if shared.shutdown.is_fired() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server.shutting_down",
            "the server is shutting down",
        );
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
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerFull.as_str(),
            "the server holds its maximum number of connections",
        );
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
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
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
    tokio::task::spawn_local(crate::connection::run(
        shard.clone(),
        upgrade,
        format,
        identity,
        permit,
    ));
    let mut response = response.map(|_| Full::default());
    if by_header {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(format.subprotocol()),
        );
    }
    response
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
