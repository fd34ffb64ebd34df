//! Turns the bytes of one connection into complete messages and control frames.
//!
//! No buffer is held while a connection is idle: a read buffer is allocated when the socket is
//! readable and released as soon as every byte in it has been consumed. Payloads are split off
//! the buffer without copying. A message over the size limit is never buffered: its bytes are
//! skipped as they arrive and the caller is told once, so it can answer `frame.too_large`.

use std::io;

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{self, FrameError, OpCode};
use crate::transport::socket::Socket;

/// First allocation when a socket becomes readable.
const READ_CHUNK: usize = 4096;
/// Most reserved at once for a frame's payload beyond the bytes that arrived: a header that
/// claims a large payload costs the sender the bytes, not just the header (growth doubles, so
/// a large frame still takes few reallocations).
const RESERVE_STEP: usize = 64 * 1024;

/// One thing read from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A complete data message (one frame, or fragments joined). Text is valid UTF-8.
    Message { text: bool, payload: Bytes },
    /// A ping, whose payload the pong must echo.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame: the code to echo (None when it sent no code).
    Close(Option<u16>),
    /// A message over the size limit was discarded.
    TooLarge,
}

/// A framing violation: the connection must be closed with the given code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
    #[error("protocol error: {0}")]
    Sequence(&'static str),
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
}

impl ReadError {
    /// The close code for this violation.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            ReadError::InvalidUtf8 => 1007,
            ReadError::Frame(_) | ReadError::Sequence(_) => 1002,
        }
    }
}

/// A message being assembled from fragments.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: Vec<u8>,
    /// Text only: `data[..checked]` is valid UTF-8 (what follows may be an incomplete
    /// character). Each fragment is checked as it arrives, so invalid text fails fast.
    checked: usize,
}

impl Fragments {
    /// Appends a fragment; a text message whose bytes so far cannot begin valid UTF-8 is an
    /// error at once, not when its last fragment arrives.
    fn push(&mut self, payload: &[u8]) -> Result<(), ReadError> {
        self.data.extend_from_slice(payload);
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            // An incomplete character at the end: the next fragment may finish it.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(ReadError::InvalidUtf8),
        }
        Ok(())
    }
}

/// Per-connection read state; a few words while idle.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: BytesMut,
    fragments: Option<Box<Fragments>>,
    /// Payload bytes of an oversized frame still to skip.
    discard: u64,
    /// Skipping the continuation frames of an oversized fragmented message.
    skipping: bool,
    max_message: usize,
}

impl Reader {
    /// A reader that starts with bytes already read past the HTTP upgrade (usually none).
    pub(crate) fn new(already_read: Bytes, max_message: usize) -> Reader {
        let buf = if already_read.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&already_read[..])
        };
        Reader {
            buf,
            fragments: None,
            discard: 0,
            skipping: false,
            max_message,
        }
    }

    /// Reads what the socket has without waiting. `Ok(0)` is end of stream; `WouldBlock`
    /// means nothing was ready.
    pub(crate) fn read_from(&mut self, stream: &Socket) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() == 0 {
            self.buf.reserve(READ_CHUNK);
        }
        stream.try_read_buf(&mut self.buf)
    }

    /// Appends bytes as if read from the socket (the fuzz targets feed the reader this way).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet consumed (for tests and memory accounting).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything buffered (after a framing error, nothing more is parsed).
    pub(crate) fn discard_all(&mut self) {
        self.buf = BytesMut::new();
        self.fragments = None;
    }

    /// Frees the read buffer if it holds nothing: idle connections hold no buffer.
    pub(crate) fn release_if_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// The next complete item in the buffer, or `None` if more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            if self.discard > 0 {
                let n = self.discard.min(self.buf.len() as u64) as usize;
                self.buf.advance(n);
                self.discard -= n as u64;
                if self.discard > 0 {
                    return Ok(None);
                }
            }
            let Some(h) = frame::parse_header(&self.buf)? else {
                return Ok(None);
            };
            match h.opcode {
                OpCode::Continuation if self.fragments.is_none() && !self.skipping => {
                    return Err(ReadError::Sequence(
                        "continuation without a message to continue",
                    ))
                }
                OpCode::Text | OpCode::Binary if self.fragments.is_some() || self.skipping => {
                    return Err(ReadError::Sequence(
                        "new message inside a fragmented message",
                    ))
                }
                _ => {}
            }
            if !h.opcode.is_control() {
                let so_far = self.fragments.as_ref().map_or(0, |f| f.data.len()) as u64;
                if self.skipping || so_far + h.payload_len > self.max_message as u64 {
                    // Over the limit: skip this frame's payload without buffering it.
                    let newly_too_large = !self.skipping;
                    self.buf.advance(h.header_len);
                    self.discard = h.payload_len;
                    self.fragments = None;
                    self.skipping = !h.fin;
                    if newly_too_large {
                        return Ok(Some(Incoming::TooLarge));
                    }
                    continue;
                }
            }
            let total = h.header_len + h.payload_len as usize;
            if self.buf.len() < total {
                self.buf.reserve((total - self.buf.len()).min(RESERVE_STEP));
                return Ok(None);
            }
            let mut payload = self.buf.split_to(total);
            payload.advance(h.header_len);
            fastwebsockets::unmask(&mut payload, h.mask);
            let payload = payload.freeze();
            if let Some(item) = self.on_frame(h.fin, h.opcode, payload)? {
                return Ok(Some(item));
            }
        }
    }

    fn on_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<Option<Incoming>, ReadError> {
        Ok(match opcode {
            OpCode::Text | OpCode::Binary if fin => {
                let text = opcode == OpCode::Text;
                Some(message(text, text, payload)?)
            }
            OpCode::Text | OpCode::Binary => {
                let mut f = Box::new(Fragments {
                    text: opcode == OpCode::Text,
                    data: Vec::with_capacity(payload.len()),
                    checked: 0,
                });
                f.push(&payload)?;
                self.fragments = Some(f);
                None
            }
            OpCode::Continuation => {
                let Some(f) = self.fragments.as_mut() else {
                    return Ok(None); // a skipped message's continuation of length 0
                };
                f.push(&payload)?;
                if fin {
                    let f = self.fragments.take().map(|f| *f);
                    f.map(|f| {
                        if f.text && f.checked < f.data.len() {
                            return Err(ReadError::InvalidUtf8); // ends inside a character
                        }
                        message(false, f.text, f.data)
                    })
                    .transpose()?
                } else {
                    None
                }
            }
            OpCode::Ping => Some(Incoming::Ping(payload)),
            OpCode::Pong => Some(Incoming::Pong),
            OpCode::Close => Some(Incoming::Close(close_code(&payload)?)),
        })
    }
}

/// A complete message; `check`: whether its payload still needs a UTF-8 check.
fn message(check: bool, text: bool, payload: impl Into<Bytes>) -> Result<Incoming, ReadError> {
    let payload = payload.into();
    if check && std::str::from_utf8(&payload).is_err() {
        return Err(ReadError::InvalidUtf8);
    }
    Ok(Incoming::Message { text, payload })
}

/// Validates a received close payload (RFC 6455 §5.5.1, §7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Sequence("close payload of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !frame::is_valid_close_code(code) {
                return Err(ReadError::Sequence("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ReadError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A masked client frame.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn reader_with(bytes: &[u8], max: usize) -> Reader {
        Reader::new(Bytes::copy_from_slice(bytes), max)
    }

    #[test]
    fn whole_and_fragmented_messages() {
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x02, b"ab"));
        bytes.extend(client_frame(0x89, b"p")); // ping between fragments
        bytes.extend(client_frame(0x80, b"cd"));
        let mut r = reader_with(&bytes, 100);
        let text = Incoming::Message {
            text: true,
            payload: Bytes::from_static(b"hello"),
        };
        assert_eq!(r.next().unwrap(), Some(text));
        assert_eq!(
            r.next().unwrap(),
            Some(Incoming::Ping(Bytes::from_static(b"p")))
        );
        let bin = Incoming::Message {
            text: false,
            payload: Bytes::from_static(b"abcd"),
        };
        assert_eq!(r.next().unwrap(), Some(bin));
        assert_eq!(r.next().unwrap(), None);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_header_claiming_a_large_payload_reserves_one_step_not_the_payload() {
        let frame = client_frame(0x82, &vec![7u8; 1 << 20]);
        // The header alone: 8 MiB allowed, 1 MiB claimed.
        let mut r = reader_with(&frame[..14], 8 << 20);
        assert_eq!(r.next().unwrap(), None);
        assert!(r.buf.capacity() <= 2 * RESERVE_STEP, "{}", r.buf.capacity());
        // As the payload arrives the buffer grows, and the message comes out whole.
        for chunk in frame[14..].chunks(50_000) {
            assert_eq!(r.next().unwrap(), None);
            r.feed(chunk);
        }
        match r.next().unwrap() {
            Some(Incoming::Message {
                text: false,
                payload,
            }) => assert_eq!(payload.len(), 1 << 20),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_frame_is_skipped_and_reported_once() {
        let mut bytes = client_frame(0x82, &[0u8; 300]);
        bytes.extend(client_frame(0x81, b"ok"));
        let mut r = reader_with(&bytes, 100);
        assert_eq!(r.next().unwrap(), Some(Incoming::TooLarge));
        let ok = Incoming::Message {
            text: true,
            payload: Bytes::from_static(b"ok"),
        };
        assert_eq!(r.next().unwrap(), Some(ok));
    }

    #[test]
    fn fragments_adding_up_past_the_limit_are_skipped() {
        let mut bytes = client_frame(0x01, &[b'a'; 60]);
        bytes.extend(client_frame(0x00, &[b'b'; 60]));
        bytes.extend(client_frame(0x00, &[b'c'; 60]));
        bytes.extend(client_frame(0x80, &[b'd'; 60]));
        bytes.extend(client_frame(0x81, b"next"));
        let mut r = reader_with(&bytes, 100);
        assert_eq!(r.next().unwrap(), Some(Incoming::TooLarge));
        let next = Incoming::Message {
            text: true,
            payload: Bytes::from_static(b"next"),
        };
        assert_eq!(r.next().unwrap(), Some(next));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = client_frame(0x81, b"hello world");
        let mut r = reader_with(&bytes[..5], 100);
        assert_eq!(r.next().unwrap(), None);
        r.buf.extend_from_slice(&bytes[5..]);
        assert!(matches!(
            r.next().unwrap(),
            Some(Incoming::Message { text: true, .. })
        ));
    }

    #[test]
    fn rule_breakers_are_errors_with_close_codes() {
        let mut r = reader_with(&client_frame(0x81, &[0xff, 0xfe]), 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1007);
        let mut r = reader_with(&client_frame(0x80, b"x"), 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1002);
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x81, b"b"));
        let mut r = reader_with(&bytes, 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1002);
        let mut r = reader_with(&client_frame(0x88, &[0x03, 0xE8, 0xff]), 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1007);
        let mut r = reader_with(&client_frame(0x88, &[0x03]), 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1002);
        let mut r = reader_with(&client_frame(0x88, &1005u16.to_be_bytes()), 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1002);
    }

    #[test]
    fn fragmented_text_is_checked_fragment_by_fragment() {
        // "é" (C3 A9) split across fragments is valid.
        let mut bytes = client_frame(0x01, b"a\xc3");
        bytes.extend(client_frame(0x80, b"\xa9"));
        let mut r = reader_with(&bytes, 100);
        let text = Incoming::Message {
            text: true,
            payload: Bytes::from("aé"),
        };
        assert_eq!(r.next().unwrap(), Some(text));
        // An invalid fragment fails at once, before the message's last fragment arrives.
        let mut bytes = client_frame(0x01, b"ok");
        bytes.extend(client_frame(0x00, b"\xc3\x28"));
        let mut r = reader_with(&bytes, 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1007);
        // A message that ends inside a character is invalid.
        let mut bytes = client_frame(0x01, b"ok");
        bytes.extend(client_frame(0x80, b"\xe2\x82"));
        let mut r = reader_with(&bytes, 100);
        assert_eq!(r.next().unwrap_err().close_code(), 1007);
    }

    #[test]
    fn close_codes_are_read() {
        let mut r = reader_with(&client_frame(0x88, &[0x03, 0xE8, b'b', b'y']), 100);
        assert_eq!(r.next().unwrap(), Some(Incoming::Close(Some(1000))));
        let mut r = reader_with(&client_frame(0x88, b""), 100);
        assert_eq!(r.next().unwrap(), Some(Incoming::Close(None)));
    }

    #[test]
    fn idle_reader_holds_no_buffer() {
        let mut r = reader_with(&client_frame(0x81, b"hi"), 100);
        assert!(r.next().unwrap().is_some());
        r.release_if_idle();
        assert_eq!(r.buf.capacity(), 0);
    }
}
