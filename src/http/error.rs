//! The one JSON error shape of every HTTP answer: `{"error":{"code","message"}}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use wsgate_protocol::ErrorCode;

use super::Body;

/// Codes only the HTTP surface answers with (the protocol's own are [`ErrorCode`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpCode {
    /// No such route (404).
    NotFound,
    /// The path exists, the method does not (405).
    MethodNotAllowed,
    /// No API key (401).
    ApiKeyMissing,
    /// An API key that is not configured (403).
    ApiKeyInvalid,
    /// The body did not arrive within `BODY_TIMEOUT` (408).
    BodyTimeout,
    /// The body is over `MAX_BODY_BYTES` (413).
    BodyTooLarge,
    /// An upgrade during shutdown (503).
    ShuttingDown,
}

/// The stable code of an HTTP error: one of the protocol's, or one of HTTP's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    Wire(ErrorCode),
    Http(HttpCode),
}

impl Code {
    /// The stable string on the wire.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Code::Wire(code) => code.as_str(),
            Code::Http(code) => match code {
                HttpCode::NotFound => "not_found",
                HttpCode::MethodNotAllowed => "method_not_allowed",
                HttpCode::ApiKeyMissing => "api_key.missing",
                HttpCode::ApiKeyInvalid => "api_key.invalid",
                HttpCode::BodyTimeout => "body.timeout",
                HttpCode::BodyTooLarge => "body.too_large",
                HttpCode::ShuttingDown => "server.shutting_down",
            },
        }
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Code {
        Code::Wire(code)
    }
}

impl From<HttpCode> for Code {
    fn from(code: HttpCode) -> Code {
        Code::Http(code)
    }
}

pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// An error response with a stable code.
pub(crate) fn json_error(
    status: StatusCode,
    code: impl Into<Code>,
    message: &str,
) -> Response<Body> {
    let code = code.into().as_str();
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"encoding failed"}}"#.to_vec());
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, APPLICATION_JSON);
    res
}
