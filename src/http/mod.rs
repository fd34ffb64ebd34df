//! The HTTP side of the port: hyper 1.x serving the WebSocket upgrade at `/ws` and the REST
//! surface, with bounded request heads and a deadline for them (slowloris).

mod error;
mod upgrade;

use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
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
        async move { Ok::<_, Infallible>(route(&shard, req)) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(shard = shard.id, error = %e, "HTTP connection ended with an error");
    }
}

fn route(shard: &Rc<Shard>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (_, "/ws") => upgrade::handle(shard, req),
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") if shard.shared.shutdown.is_fired() => {
            json(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false}"#)
        }
        (&Method::GET, "/readyz") => json(StatusCode::OK, r#"{"ready":true}"#),
        (_, path) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {path}"),
        ),
    }
}

/// A JSON response with a static body.
fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, error::APPLICATION_JSON);
    res
}
