//! Client-side WebSocket wire code (RFC 6455): the upgrade request, the response head, server
//! frames (never masked) and client frames (always masked). No buffer is owned here: callers pass
//! slices, so an idle connection holds none.

/// The fixed `Sec-WebSocket-Key`. The server only echoes its digest; a load generator gains
/// nothing from a fresh nonce per connection.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// WebSocket opcodes the client handles.
pub(crate) mod opcode {
    /// Continuation of a fragmented message.
    pub(crate) const CONTINUATION: u8 = 0x0;
    /// UTF-8 text (JSON connections).
    pub(crate) const TEXT: u8 = 0x1;
    /// Binary (MessagePack connections).
    pub(crate) const BINARY: u8 = 0x2;
    /// Close.
    pub(crate) const CLOSE: u8 = 0x8;
    /// Ping: answered with a pong carrying the same payload.
    pub(crate) const PING: u8 = 0x9;
    /// Pong.
    pub(crate) const PONG: u8 = 0xA;
}

/// Appends the HTTP upgrade request for `path_and_query` (which already carries the token and
/// format parameters) to `out`.
pub(crate) fn write_upgrade(out: &mut Vec<u8>, host: &str, path_and_query: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(KEY.as_bytes());
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

/// The outcome of looking at the start of a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// The head is not complete yet.
    Partial,
    /// `101 Switching Protocols`; the head is this many bytes long.
    Upgraded(usize),
    /// Any other status (or an unparsable status line: 0).
    Refused(u16),
}

/// Parses an HTTP response head from the start of `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 {
            Head::Refused(0)
        } else {
            Head::Partial
        };
    };
    let status = buf
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status == 101 && buf.starts_with(b"HTTP/1.1 ") {
        Head::Upgraded(end + 4)
    } else {
        Head::Refused(status)
    }
}

/// One frame from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// FIN bit: the last frame of a message.
    pub(crate) fin: bool,
    /// The opcode.
    pub(crate) opcode: u8,
    /// The (unmasked) payload.
    pub(crate) payload: &'a [u8],
}

/// Why a server frame was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// A server must not mask its frames (RFC 6455 section 5.1).
    #[error("masked server frame")]
    Masked,
    /// The payload is larger than the client accepts.
    #[error("frame of {0} bytes is too large")]
    TooLarge(u64),
}

/// Largest server frame accepted (the server's own message limit is 1 MiB by default).
pub(crate) const MAX_FRAME: u64 = 16 * 1024 * 1024;

/// Parses one frame from the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// frame and its length on the wire.
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    // Bounded by MAX_FRAME above, so the cast cannot truncate.
    let total = header + len as usize;
    let Some(payload) = buf.get(header..total) else {
        return Ok(None);
    };
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload,
    };
    Ok(Some((frame, total)))
}

/// Appends one masked client frame (FIN set) to `out`, masking with `key`.
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(l16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&l16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Appends a close frame with `code` to `out`.
pub(crate) fn write_close(out: &mut Vec<u8>, code: u16, key: [u8; 4]) {
    write_frame(out, opcode::CLOSE, &code.to_be_bytes(), key);
}

/// The close code carried by a close frame's payload (1005 when it has none).
pub(crate) fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        assert_eq!(parse_head(b"HTTP/1.1 101 Switching"), Head::Partial);
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        assert_eq!(parse_head(ok), Head::Upgraded(ok.len() - 2));
        assert_eq!(
            parse_head(b"HTTP/1.1 401 Unauthorized\r\n\r\n"),
            Head::Refused(401)
        );
    }

    #[test]
    fn frames_round_trip_through_unmasking() {
        let mut out = Vec::new();
        write_frame(&mut out, opcode::TEXT, &[7u8; 300], [1, 2, 3, 4]);
        assert_eq!(out[1], 0x80 | 126);
        // A server frame has no mask: strip it to reuse the parser.
        let mut server = vec![out[0], 126, out[2], out[3]];
        server.extend(
            out[8..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i & 3]),
        );
        let (frame, used) = parse_frame(&server).ok().flatten().expect("a frame");
        assert_eq!(used, server.len());
        assert!(frame.fin);
        assert_eq!(frame.payload, &[7u8; 300][..]);
        assert_eq!(parse_frame(&server[..100]), Ok(None));
        assert_eq!(parse_frame(&[0x81, 0x80]), Err(FrameError::Masked));
    }
}
