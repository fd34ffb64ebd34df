//! Client-side HTTP/1.1 wire code for Engine.IO long-polling: the `GET` and `POST` requests
//! (keep-alive, the session's `sid` in the query) and the server's responses, whose bodies
//! must have a `Content-Length` (both servers give one; a chunked or unbounded body is
//! refused). No buffer is owned here: callers pass slices.

use std::ops::Range;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Largest response body accepted (a long-poll answer carries every packet queued since the
/// last one).
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// Appends `GET <path>[&sid=<sid>]`: the handshake without a sid, a long-poll with one.
pub(crate) fn write_get(out: &mut Vec<u8>, host: &str, path: &str, sid: &str) {
    request_line(out, "GET", path, sid);
    host_header(out, host);
    out.extend_from_slice(b"\r\n");
}

/// Appends `POST <path>&sid=<sid>` carrying `body` (packets joined by `\x1e`).
pub(crate) fn write_post(out: &mut Vec<u8>, host: &str, path: &str, sid: &str, body: &[u8]) {
    request_line(out, "POST", path, sid);
    host_header(out, host);
    out.extend_from_slice(b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn request_line(out: &mut Vec<u8>, method: &str, path: &str, sid: &str) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if !sid.is_empty() {
        out.extend_from_slice(b"&sid=");
        out.extend_from_slice(sid.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

fn host_header(out: &mut Vec<u8>, host: &str) {
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One whole response at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// Where the body is; its end is the response's length.
    pub(crate) body: Range<usize>,
}

/// Why a response was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    /// Not an HTTP/1.1 status line, or a head past [`MAX_HEAD`].
    #[error("bad response head")]
    BadHead,
    /// No `Content-Length` (a chunked body, or one that ends with the connection).
    #[error("response without Content-Length")]
    NoLength,
    /// A body past [`MAX_BODY`].
    #[error("response body too large")]
    TooLarge,
}

impl ResponseError {
    /// The failure cause of a connection that got it.
    pub(crate) const fn cause(&self) -> &'static str {
        match self {
            ResponseError::BadHead => "http_bad_head",
            ResponseError::NoLength => "http_no_length",
            ResponseError::TooLarge => "http_too_large",
        }
    }
}

/// Parses one response from the start of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<Response>, ResponseError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(ResponseError::BadHead)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ResponseError::BadHead)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ResponseError::BadHead)?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ResponseError::BadHead);
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ResponseError::NoLength);
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.trim().parse().map_err(|_| ResponseError::BadHead)?;
            length = Some(n);
        }
    }
    let length = length.ok_or(ResponseError::NoLength)?;
    if length > MAX_BODY {
        return Err(ResponseError::TooLarge);
    }
    let start = end + 4;
    if buf.len() < start + length {
        return Ok(None);
    }
    Ok(Some(Response {
        status,
        body: start..start + length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_sid_and_the_body() {
        let mut out = Vec::new();
        write_get(
            &mut out,
            "127.0.0.1:9",
            "/socket.io/?EIO=4&transport=polling",
            "",
        );
        assert_eq!(
            out,
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"
        );
        out.clear();
        write_post(
            &mut out,
            "h",
            "/p/?EIO=4&transport=polling",
            "abc",
            b"3\x1e40",
        );
        assert_eq!(
            out,
            &b"POST /p/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: h\r\n\
               Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 4\r\n\r\n3\x1e40"[..]
        );
    }

    #[test]
    fn responses_end_at_their_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\n2\x1e42xHTTP/1.1";
        let head = r.len() - 13;
        assert_eq!(
            parse_response(r),
            Ok(Some(Response {
                status: 200,
                body: head..head + 5
            }))
        );
        assert_eq!(&r[head..head + 5], b"2\x1e42x");
        assert_eq!(parse_response(&r[..head + 4]), Ok(None));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nConte"), Ok(None));
        let empty = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(empty),
            Ok(Some(Response {
                status: 400,
                body: empty.len()..empty.len()
            }))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ResponseError::NoLength)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ResponseError::NoLength)
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Err(ResponseError::BadHead)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(ResponseError::TooLarge)
        );
    }
}
