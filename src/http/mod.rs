//! The HTTP side of the port: hyper 1.x serving the WebSocket upgrade at `/ws` and the REST
//! surface, with bounded request heads and a deadline for them (slowloris).

mod cors;
mod error;
mod metrics;
pub(crate) mod rest;
pub(crate) mod routes;
mod upgrade;

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

pub(crate) use error::json_error;

use crate::shard::Shard;

/// The response body type of every route.
pub(crate) type Body = Full<Bytes>;

/// hyper's smallest allowed read buffer bound.
const HYPER_MIN_BUF: usize = 8192;

/// Serves one TCP connection: HTTP/1.1 requests until it upgrades or closes.
pub(crate) async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let cfg = &shard.shared.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(HYPER_MIN_BUF))
        .max_headers(cfg.max_headers);
    let svc_shard = shard.clone();
    let service = service_fn(move |req| {
        let shard = svc_shard.clone();
        async move { Ok::<_, Infallible>(route(&shard, req).await) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(shard = shard.id, error = %e, "HTTP connection ended with an error");
    }
}

async fn route(shard: &Rc<Shard>, req: Request<Incoming>) -> Response<Body> {
    let origin = shard.shared.config.cors_origin.clone();
    if let (Some(origin), &Method::OPTIONS) = (&origin, req.method()) {
        return cors::preflight(origin);
    }
    let mut res = dispatch(shard, req).await;
    if let Some(origin) = origin {
        cors::decorate(&mut res, &origin);
    }
    res
}

async fn dispatch(shard: &Rc<Shard>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    // `/echo` is for conformance tests: off by default and not in ROUTES (nor the OpenAPI
    // document), so without ECHO=true it is a 404 like any unknown path.
    if path == "/echo" && shard.shared.config.echo {
        return upgrade::echo(shard, req);
    }
    let method = req.method().as_str().to_owned();
    let matched = routes::ROUTES.iter().find_map(|(m, t)| {
        (*m == method)
            .then(|| routes::match_template(t, &path).map(|p| (*t, p)))
            .flatten()
    });
    let Some((template, params)) = matched else {
        let allowed = routes::allowed_methods(&path);
        if allowed.is_empty() {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {path}"),
            );
        }
        let mut res = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{method} is not allowed on {path}"),
        );
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            res.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return res;
    };
    let decoded: Option<Vec<String>> = params
        .into_iter()
        .map(crate::auth::percent_decode_path)
        .collect();
    let Some(params) = decoded else {
        let details = vec![rest::Detail::new(
            "path",
            "a path parameter is not valid UTF-8",
        )];
        return rest::ApiError::invalid(details).into_response();
    };
    match template {
        "/ws" => upgrade::handle(shard, req),
        "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#),
        "/readyz" if shard.shared.shutdown.is_fired() => {
            json(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false}"#)
        }
        "/readyz" => json(StatusCode::OK, r#"{"ready":true}"#),
        "/metrics" => {
            if shard.shared.config.metrics_require_api_key {
                if let Err(e) = rest::check_api_key(shard, &req) {
                    return e.into_response();
                }
            }
            let mut res = Response::new(Full::new(Bytes::from(metrics::render(shard))));
            res.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            res
        }
        "/api/v1/openapi.yaml" => {
            let mut res = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            res.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            res
        }
        _ => {
            let started = std::time::Instant::now();
            let res = match rest::dispatch(shard, &method, template, params, req).await {
                Ok(res) => res,
                Err(e) => e.into_response(),
            };
            shard.stats().rest_latency.record(started.elapsed());
            res
        }
    }
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
