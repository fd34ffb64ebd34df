//! The token a WebSocket handshake offers: `Authorization: Bearer` first, then `?token=`.

use super::url::query_param;

/// What a handshake offers as a token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OfferedToken {
    /// No `Authorization` header and no `token` query parameter: the client must `auth`.
    None,
    /// A token to verify.
    Token(String),
    /// A token was offered but is empty or not a Bearer token.
    Malformed(&'static str),
}

/// The token in a handshake: `Authorization: Bearer` first, then the `token` query parameter.
pub(crate) fn token_from_request<B>(req: &hyper::Request<B>) -> OfferedToken {
    if let Some(v) = req.headers().get(hyper::header::AUTHORIZATION) {
        let bearer = v
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim);
        return match bearer {
            Some(t) if !t.is_empty() => OfferedToken::Token(t.to_owned()),
            _ => OfferedToken::Malformed("Authorization must be 'Bearer <token>'"),
        };
    }
    match query_param(req.uri().query().unwrap_or(""), "token") {
        None => OfferedToken::None,
        Some(t) if t.is_empty() => OfferedToken::Malformed("empty token query parameter"),
        Some(t) => OfferedToken::Token(t),
    }
}
