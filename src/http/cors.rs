//! CORS for browser callers of the REST API and of Engine.IO long-polling: off unless
//! `CORS_ORIGIN` is set.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::Body;

/// Adds `Access-Control-Allow-Origin` (and `Vary: Origin`) to a response.
pub(super) fn decorate(res: &mut Response<Body>, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The answer to a preflight `OPTIONS`.
pub(super) fn preflight(origin: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    decorate(&mut res, origin);
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, x-api-key, content-type, idempotency-key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    res
}

/// The origin an Engine.IO answer allows, with credentials (cookies, `Authorization`): the
/// configured one, or with `*` the request's own `Origin` (browsers refuse `*` with
/// credentials); `None` when CORS is off.
pub(super) fn engineio_origin(
    configured: Option<&str>,
    requested: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    match (configured?, requested) {
        ("*", Some(origin)) => Some(origin.clone()),
        (configured, _) => HeaderValue::from_str(configured).ok(),
    }
}

/// Adds the Engine.IO CORS headers (as socket.io's `cors: { origin, credentials: true }`).
pub(super) fn decorate_credentials(res: &mut Response<Body>, origin: HeaderValue) {
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to an Engine.IO preflight `OPTIONS` (204, the methods of the `cors` package
/// socket.io uses, the requested headers allowed); [`decorate_credentials`] adds the origin.
pub(super) fn engineio_preflight(requested_headers: Option<&HeaderValue>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
    );
    if let Some(requested) = requested_headers {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

/// The `Vary` of a preflight answer.
pub(super) const PREFLIGHT_VARY: HeaderValue =
    HeaderValue::from_static("Origin, Access-Control-Request-Headers");
