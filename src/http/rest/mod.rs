//! The backend REST API under `/api/v1`: push to users, rooms and everyone, ask who is
//! connected, manage rooms. Every route needs an API key; every error has one JSON shape.

mod body;
mod push;
pub(crate) mod query;
mod rooms;

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

pub(crate) use body::Detail;

use wsgate_protocol::ErrorCode;

use super::error::{Code, HttpCode, APPLICATION_JSON};
#[cfg(feature = "testing")]
use super::routes;
use super::routes::Handler;
use super::Body;
use crate::cluster::Begin;
use crate::hub::BackplaneError;
use crate::node::Ctx;

/// A REST failure: status, stable code, message and (for 400) every invalid field.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: Code,
    message: String,
    details: Vec<Detail>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Code>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
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
            ..ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
        }
    }

    /// 503 `cluster.unavailable`: what was asked needed Redis, which did not answer; it was
    /// not done.
    pub(crate) fn unavailable(e: BackplaneError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ClusterUnavailable,
            format!("not done: {e}"),
        )
    }

    /// 404 `room.not_found`.
    pub(crate) fn room_not_found(room: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::RoomNotFound,
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
                code: self.code.as_str(),
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
pub(crate) fn check_api_key<B>(ctx: &Ctx, req: &Request<B>) -> Result<(), ApiError> {
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
            HttpCode::ApiKeyMissing,
            "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
        ));
    };
    // Compare with every key, each in constant time, so timing tells nothing about any key.
    let ok = ctx.shared.api_keys.iter().fold(false, |ok, key| {
        ok | constant_time_eq(key.as_bytes(), offered.as_bytes())
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            HttpCode::ApiKeyInvalid,
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

/// Runs the handler of a matched `/api/v1` route.
pub(crate) async fn handle(
    ctx: &Rc<Ctx>,
    handler: Handler,
    params: Vec<String>,
    req: Request<Incoming>,
) -> ApiResult {
    check_api_key(ctx, &req)?;
    let p = |i: usize| params.get(i).cloned().unwrap_or_default();
    match handler {
        Handler::PushUsers | Handler::PushRoom | Handler::PushBroadcast | Handler::PushBatch => {
            // The key and the body are checked before the key is looked up: an invalid
            // request is refused whatever a key remembers.
            let key = idempotency_key(&req)?;
            let pushes = push::read(ctx, req, handler, p(0)).await?;
            once(ctx, key, pushes).await
        }
        Handler::ListUsers => query::users(ctx, &req).await,
        Handler::GetUser => query::user(ctx, p(0)).await,
        Handler::UserUnread => query::unread(ctx, p(0)),
        Handler::KickUser => query::kick(ctx, &req, p(0)).await,
        Handler::Stats => query::stats(ctx).await,
        Handler::ListRooms => rooms::list(ctx, &req).await,
        Handler::CreateRoom => rooms::create(ctx, req).await,
        Handler::GetRoom => rooms::get(ctx, p(0)).await,
        Handler::CloseRoom => rooms::close(ctx, p(0)).await,
        Handler::RoomMessages => rooms::messages(ctx, &req, p(0)).await,
        Handler::AddMember => rooms::add_member(ctx, req, p(0)).await,
        Handler::RemoveMember => rooms::remove_member(ctx, p(0), p(1)).await,
        Handler::ListMembers => rooms::members(ctx, &req, p(0)).await,
        Handler::UserPresence => query::presence(ctx, p(0)).await,
        Handler::Upgrade
        | Handler::Health
        | Handler::Ready
        | Handler::Metrics
        | Handler::OpenApi => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            HttpCode::NotFound,
            "no such route",
        )),
    }
}

/// Runs validated pushes once per `Idempotency-Key` (scoped by the request's path): a retry,
/// while the first runs or within `IDEMPOTENCY_WINDOW` after it answered, gets the first
/// answer (status and body) and delivers nothing. An error answer is not kept (it delivered
/// nothing).
///
/// The pushes run as a task of their own: a client that gives up (a timeout, a closed
/// connection) does not stop them half-way, so what they delivered gets its answer remembered
/// and a retry does not deliver it twice.
async fn once(ctx: &Rc<Ctx>, key: Option<(String, String)>, pushes: push::Pushes) -> ApiResult {
    let claim = match key {
        None => None,
        Some((scope, key)) => match ctx.shared.idempotency.rest.begin(&scope, &key).await {
            Begin::Done((status, body)) => return Ok(remembered(status, body)),
            Begin::Fresh(claim) => Some(claim),
        },
    };
    let task_ctx = ctx.clone();
    let task = tokio::task::spawn_local(async move {
        let res = push::run(&task_ctx, pushes).await?;
        let Some(claim) = claim else {
            return Ok(res);
        };
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        claim.finish((parts.status.as_u16(), body.clone()), body.len());
        Ok(Response::from_parts(parts, Full::new(body)))
    });
    task.await.unwrap_or_else(|e| {
        // A panic in the push: contained in its task, reported and counted.
        tracing::error!(error = %e, "a REST push failed");
        crate::stats::ShardStats::inc(&ctx.stats().panics);
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the push failed",
        ))
    })
}

/// The `Idempotency-Key` header, if given (1 to 64 visible ASCII characters, once), with its
/// scope: the request's path.
fn idempotency_key<B>(req: &Request<B>) -> Result<Option<(String, String)>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if body::is_key(key) && values.next().is_none() => {
            Ok(Some((format!("r:{}", req.uri().path()), key.to_owned())))
        }
        _ => Err(ApiError::invalid(vec![Detail::new(
            "Idempotency-Key",
            format!("{} (one header)", body::KEY_RULE),
        )])),
    }
}

/// A remembered answer, as it was first given.
fn remembered(status: u16, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    res.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, APPLICATION_JSON);
    res
}

/// `"METHOD path"` of each route that takes a body, in table order: the fuzzer's endpoints.
#[cfg(feature = "testing")]
pub(crate) fn body_endpoints() -> Vec<String> {
    routes::body_routes()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// What a body that passed validation holds: every name it gave, the raw `data` of each push
/// and the number of pushes (or other actions).
#[cfg(feature = "testing")]
#[derive(Debug, Default)]
pub(crate) struct BodySummary {
    pub(crate) names: Vec<String>,
    pub(crate) data: Vec<Bytes>,
    pub(crate) actions: usize,
}

/// Runs the body validation of the `endpoint`-th route that takes a body ([`body_endpoints`])
/// on `body`, exactly as its handler does, without acting on the result. For the fuzzer
/// (`crate::testing`).
#[cfg(feature = "testing")]
pub(crate) fn validate_body(endpoint: usize, body: &[u8]) -> Result<BodySummary, ApiError> {
    let mut out = BodySummary::default();
    let Some(route) = routes::body_routes().nth(endpoint) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            HttpCode::NotFound,
            "no such endpoint",
        ));
    };
    let pushes = match route.handler {
        Handler::PushUsers => vec![push::parse_users(body)?],
        Handler::PushRoom => vec![push::parse_room(body, "r".into())?],
        Handler::PushBroadcast => vec![push::parse_broadcast(body)?],
        Handler::PushBatch => push::parse_batch(body)?
            .into_iter()
            .map(|item| item.push)
            .collect(),
        Handler::CreateRoom => {
            let create = rooms::parse_create(body)?;
            out.names
                .extend([create.room].into_iter().chain(create.creator));
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
                ..
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
    let limit = page_limit(query).map_err(|d| ApiError::invalid(vec![d]))?;
    let cursor = super::url::query_param(query, "cursor").filter(|c| !c.is_empty());
    Ok((limit, cursor))
}

/// A page's `limit` query parameter: 1 to 1000, default 100.
pub(crate) fn page_limit(query: &str) -> Result<usize, Detail> {
    match super::url::query_param(query, "limit").map(|v| v.parse::<usize>()) {
        None => Ok(100),
        Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(Detail::new("limit", "must be an integer from 1 to 1000")),
    }
}

/// The cursor of the next page: the last key of this one, when more follow.
pub(crate) fn next_cursor(more: bool, last: Option<&str>) -> Option<String> {
    last.filter(|_| more).map(str::to_owned)
}
