//! The HTTP side of the port: hyper 1.x serving the WebSocket upgrade at `/ws`, the Engine.IO
//! endpoint, and the REST surface, with bounded request heads and a deadline for them (slowloris). One route table
//! ([`routes`]) binds each method and path to its handler.

mod cors;
mod engineio;
mod error;
mod forward;
mod metrics;
pub(crate) mod rest;
pub(crate) mod routes;
pub(crate) mod token;
mod upgrade;
pub(crate) mod url;

use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

pub(crate) use error::{json_error, HttpCode};

use crate::node::Ctx;
use routes::Handler;

/// The response body type of every route.
pub(crate) type Body = Full<Bytes>;

/// hyper's smallest allowed read buffer bound.
const HYPER_MIN_BUF: usize = 8192;

/// Serves one TCP connection: HTTP/1.1 requests until it upgrades or closes.
pub(crate) async fn serve(ctx: Rc<Ctx>, stream: TcpStream) {
    let cfg = ctx.config();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(HYPER_MIN_BUF))
        .max_headers(cfg.max_headers);
    let svc_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move { Ok::<_, Infallible>(answer(&ctx, req).await) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(shard = ctx.shard, error = %e, "HTTP connection ended with an error");
    }
}

async fn answer(ctx: &Rc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    // Engine.IO answers with its own errors and its own CORS (with credentials).
    if engineio::is_endpoint(ctx, req.uri().path()) {
        return engineio::handle(ctx, req).await;
    }
    let origin = ctx.config().cors_origin.clone();
    if let (Some(origin), &Method::OPTIONS) = (&origin, req.method()) {
        return cors::preflight(origin);
    }
    let mut res = respond(ctx, req).await;
    if let Some(origin) = origin {
        cors::decorate(&mut res, &origin);
    }
    res
}

/// Finds the request's route in the table and runs its handler.
async fn respond(ctx: &Rc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    // `/echo` is for conformance tests: off by default and not in the route table (nor the
    // OpenAPI document), so without ECHO=true it is a 404 like any unknown path.
    if path == "/echo" && ctx.config().echo {
        return upgrade::echo(ctx, req);
    }
    let method = req.method().as_str().to_owned();
    let (handler, params) = match routes::find(&method, &path) {
        Ok(found) => found,
        Err(allowed) => return unrouted(&method, &path, &allowed),
    };
    let decoded: Option<Vec<String>> = params.into_iter().map(url::percent_decode_path).collect();
    let Some(params) = decoded else {
        let details = vec![rest::Detail::new(
            "path",
            "a path parameter is not valid UTF-8",
        )];
        return rest::ApiError::invalid(details).into_response();
    };
    match handler {
        Handler::Upgrade => upgrade::handle(ctx, req),
        Handler::Health => json(StatusCode::OK, r#"{"status":"ok"}"#),
        Handler::Ready if ctx.shared.shutdown.is_fired() => {
            json(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false}"#)
        }
        // Degraded (Redis unreachable) is still ready: every node shares the Redis, so taking
        // them out of rotation helps no one, and what needs no Redis is still served.
        Handler::Ready => match ctx.shared.backplane.redis() {
            Some(redis) if !redis.is_up() => json(
                StatusCode::OK,
                r#"{"ready":true,"degraded":"cluster: Redis unreachable"}"#,
            ),
            _ => json(StatusCode::OK, r#"{"ready":true}"#),
        },
        Handler::Metrics => {
            if ctx.config().metrics_require_api_key {
                if let Err(e) = rest::check_api_key(ctx, &req) {
                    return e.into_response();
                }
            }
            let body = Bytes::from(metrics::render(ctx));
            with_type(Response::new(Full::new(body)), "text/plain; version=0.0.4")
        }
        Handler::OpenApi => {
            let body = Bytes::from_static(OPENAPI.as_bytes());
            with_type(Response::new(Full::new(body)), "application/yaml")
        }
        api => {
            let started = std::time::Instant::now();
            let res = match rest::handle(ctx, api, params, req).await {
                Ok(res) => res,
                Err(e) => e.into_response(),
            };
            ctx.stats().rest_latency.record(started.elapsed());
            res
        }
    }
}

/// 404 for an unknown path; 405 with `Allow` for a known path and another method.
fn unrouted(method: &str, path: &str, allowed: &[&str]) -> Response<Body> {
    if allowed.is_empty() {
        return json_error(
            StatusCode::NOT_FOUND,
            HttpCode::NotFound,
            &format!("no route for {path}"),
        );
    }
    let mut res = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        HttpCode::MethodNotAllowed,
        &format!("{method} is not allowed on {path}"),
    );
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        res.headers_mut().insert(hyper::header::ALLOW, v);
    }
    res
}

fn with_type(mut res: Response<Body>, content_type: &'static str) -> Response<Body> {
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    res
}

/// The OpenAPI description of this surface, served at `/api/v1/openapi.yaml`.
pub(crate) const OPENAPI: &str = include_str!("../../protocol/openapi.yaml");

/// A JSON response with a static body.
fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, error::APPLICATION_JSON);
    res
}
