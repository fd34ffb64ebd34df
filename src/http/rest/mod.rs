//! The backend REST API under `/api/v1`: push to users, rooms and everyone, ask who is
//! connected, manage rooms. Every route needs an API key; every error has one JSON shape.

mod body;
mod push;
pub(crate) mod query;
mod rooms;

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

pub(crate) use body::Detail;

use super::error::APPLICATION_JSON;
use super::Body;
use crate::shard::Shard;

/// A REST failure: status, stable code, message and (for 400) every invalid field.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Detail>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 400 `bad_request` listing every invalid field.
    pub(crate) fn invalid(details: Vec<Detail>) -> Self {
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        let message = format!("invalid request: {}", fields.join(", "));
        ApiError {
            details,
            ..ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    /// 404 `room.not_found`.
    pub(crate) fn room_not_found(room: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "room.not_found",
            format!("room {room:?} not found"),
        )
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Wire<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "<[Detail]>::is_empty")]
            details: &'a [Detail],
        }
        let wire = Wire {
            error: Inner {
                code: self.code,
                message: &self.message,
                details: &self.details,
            },
        };
        json(self.status, &wire)
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal","message":"encoding failed"}}"#.to_vec()
    });
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, APPLICATION_JSON);
    res
}

/// The result of a REST handler.
pub(crate) type ApiResult = Result<Response<Body>, ApiError>;

/// Checks the API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub(crate) fn check_api_key<B>(shard: &Shard, req: &Request<B>) -> Result<(), ApiError> {
    let headers = req.headers();
    let offered = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim);
    let Some(offered) = offered.filter(|k| !k.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api_key.missing",
            "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
        ));
    };
    // Compare with every key, each in constant time, so timing tells nothing about any key.
    let ok = shard.shared.api_keys.iter().fold(false, |ok, key| {
        ok | constant_time_eq(key.as_bytes(), offered.as_bytes())
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api_key.invalid",
            "the API key is not valid",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs the handler for a matched `/api/v1` route.
pub(crate) async fn dispatch(
    shard: &Rc<Shard>,
    method: &str,
    template: &str,
    params: Vec<String>,
    req: Request<Incoming>,
) -> ApiResult {
    check_api_key(shard, &req)?;
    let p = |i: usize| params.get(i).cloned().unwrap_or_default();
    match (method, template) {
        ("POST", "/api/v1/push/users") => push::users(shard, req).await,
        ("POST", "/api/v1/push/rooms/{roomId}") => push::room(shard, req, p(0)).await,
        ("POST", "/api/v1/push/broadcast") => push::broadcast(shard, req).await,
        ("POST", "/api/v1/push/batch") => push::batch(shard, req).await,
        ("GET", "/api/v1/users") => query::users(shard, &req),
        ("GET", "/api/v1/users/{userId}") => query::user(shard, p(0)).await,
        ("DELETE", "/api/v1/users/{userId}/connections") => query::kick(shard, &req, p(0)).await,
        ("GET", "/api/v1/stats") => Ok(query::stats(shard)),
        ("GET", "/api/v1/rooms") => rooms::list(shard, &req),
        ("POST", "/api/v1/rooms") => rooms::create(shard, req).await,
        ("GET", "/api/v1/rooms/{roomId}") => rooms::get(shard, p(0)).await,
        ("DELETE", "/api/v1/rooms/{roomId}") => rooms::close(shard, p(0)).await,
        ("POST", "/api/v1/rooms/{roomId}/members") => rooms::add_member(shard, req, p(0)).await,
        ("DELETE", "/api/v1/rooms/{roomId}/members/{userId}") => {
            rooms::remove_member(shard, p(0), p(1)).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        )),
    }
}

/// The endpoints whose JSON bodies [`validate_body`] reads, by index.
pub(crate) const BODY_ENDPOINTS: [&str; 6] = [
    "POST /api/v1/push/users",
    "POST /api/v1/push/rooms/{roomId}",
    "POST /api/v1/push/broadcast",
    "POST /api/v1/push/batch",
    "POST /api/v1/rooms",
    "POST /api/v1/rooms/{roomId}/members",
];

/// What a body that passed validation holds: every name it gave, the raw `data` of each push
/// and the number of pushes (or other actions).
#[derive(Debug, Default)]
pub(crate) struct BodySummary {
    pub(crate) names: Vec<String>,
    pub(crate) data: Vec<Bytes>,
    pub(crate) actions: usize,
}

/// Runs the body validation of `BODY_ENDPOINTS[endpoint]` on `body`, exactly as its handler
/// does, without acting on the result. For the fuzzer (`crate::fuzzing`).
pub(crate) fn validate_body(endpoint: usize, body: &[u8]) -> Result<BodySummary, ApiError> {
    let mut out = BodySummary::default();
    let pushes = match endpoint {
        0 => vec![push::parse_users(body)?],
        1 => vec![push::parse_room(body, "r".into())?],
        2 => vec![push::parse_broadcast(body)?],
        3 => push::parse_batch(body)?,
        4 => {
            let (room, creator) = rooms::parse_create(body)?;
            out.names.extend([room].into_iter().chain(creator));
            out.actions = 1;
            return Ok(out);
        }
        _ => {
            out.names.push(rooms::parse_member(body)?);
            out.actions = 1;
            return Ok(out);
        }
    };
    out.actions = pushes.len();
    for p in pushes {
        let (names, data) = match p {
            push::Push::Users { users, event, data } => {
                (users.into_iter().chain([event]).collect(), data)
            }
            push::Push::Room {
                room,
                event,
                data,
                except,
            } => ([room, event].into_iter().chain(except).collect(), data),
            push::Push::Broadcast { event, data } => (vec![event], data),
        };
        out.names.extend::<Vec<String>>(names);
        out.data.extend(data);
    }
    Ok(out)
}

/// A `{name}` path parameter must be a valid name (1 to 128 bytes after decoding).
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > wsgate_protocol::MAX_NAME_LEN {
        return Err(ApiError::invalid(vec![Detail::new(
            field,
            "must be 1 to 128 bytes",
        )]));
    }
    Ok(())
}

/// `limit` (1 to 1000, default 100) and `cursor` query parameters.
pub(crate) fn page_params<B>(req: &Request<B>) -> Result<(usize, Option<String>), ApiError> {
    let query = req.uri().query().unwrap_or("");
    let limit = match crate::auth::query_param(query, "limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(vec![Detail::new(
                    "limit",
                    "must be an integer from 1 to 1000",
                )]))
            }
        },
    };
    let cursor = crate::auth::query_param(query, "cursor").filter(|c| !c.is_empty());
    Ok((limit, cursor))
}

/// The cursor of the next page: the last key of this one, when more follow.
pub(crate) fn next_cursor(more: bool, last: Option<&str>) -> Option<String> {
    last.filter(|_| more).map(str::to_owned)
}
