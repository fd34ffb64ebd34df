//! Engine.IO v4 long-polling on the client side, as `--sio-transport polling` speaks it: the
//! handshake `GET` (its open packet gives the sid), then exactly one long-poll `GET`
//! outstanding at a time on the session's connection (the next leaves when the last is
//! answered), each answer's packets (split at `\x1e`, `b<base64>` decoded) given to the
//! [`Handler`] one by one; what the session sends (the `CONNECT`, pongs, events) is queued and
//! goes out `\x1e`-joined in one `POST` at a time on a second keep-alive connection, opened
//! with the first `POST` and reopened when the server closed it while idle. Never upgraded.

use std::io::{self, Read};

use wsgate_protocol::engineio::{self, Packet, SEPARATOR};

use super::conn::{connect, io_cause};
use super::http::{self, Response};
use super::{Clients, Conn, Handler, State};

/// Most bytes queued for the next `POST` (the servers' default `maxPayload` is 1 MB): past
/// it the session has fallen too far behind and fails (`post_queue_full`).
const MAX_QUEUE: usize = 1_000_000;

/// Where a session's `POST` connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Post {
    /// No connection (none yet, or the server closed it while idle).
    Closed,
    /// TCP connect in progress; the queue goes out once connected.
    Connecting,
    /// Connected, no `POST` in flight.
    Ready,
    /// A `POST` awaits its answer (`retried`: it was sent again once already).
    Waiting { retried: bool },
}

/// What a long-polling session keeps beyond its [`Conn`] (which is its `GET` connection).
pub(crate) struct Polling {
    /// The session id from the open packet (empty before it), in every later request.
    sid: Box<str>,
    /// The connection the `POST`s go out on.
    post: Conn,
    state: Post,
    /// Packets for the next `POST`, `\x1e`-joined. Empty (unallocated) when idle.
    queue: Vec<u8>,
    /// The body of the `POST` in flight, kept to send it again, once, when the server closed
    /// the idle connection just as it went out. Empty (unallocated) when idle.
    sent: Vec<u8>,
}

impl Polling {
    /// A session not started.
    pub(crate) fn new() -> Self {
        Polling {
            sid: Box::from(""),
            post: Conn::new(0, 0), // its server is the session's (`conns[idx].server`)
            state: Post::Closed,
            queue: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Drops the `POST` connection and everything queued (the session failed or closed).
    pub(crate) fn reset(&mut self) {
        *self = Polling::new();
    }

    /// The `POST` connection, to abort it.
    pub(crate) fn post_stream(&mut self) -> Option<mio::net::TcpStream> {
        self.post.stream.take()
    }
}

/// The sid of an open packet (`0{"sid":…}`), the first packet of the handshake's answer.
fn sid_of(payload: &[u8]) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Open {
        sid: Box<str>,
    }
    let first = payload.split(|&b| b == SEPARATOR).next()?;
    let json = first.strip_prefix(b"0")?;
    serde_json::from_slice::<Open>(json).ok().map(|o| o.sid)
}

impl Clients {
    /// Sends the handshake `GET` on connection `idx` (just connected).
    pub(super) fn send_handshake<H: Handler>(&mut self, idx: usize, h: &mut H) {
        self.frame.clear();
        let target = &self.targets[usize::from(self.conns[idx].server)];
        http::write_get(&mut self.frame, &target.host, &target.path, "");
        self.conns[idx].state = State::Upgrading;
        self.send_frame(idx, h);
    }

    /// Handles every whole response at the start of `bytes`, read on the `GET` connection of
    /// `idx`: the handshake's, then long-polls'; each answered one is followed by the next
    /// long-poll. Returns the bytes used.
    pub(super) fn process_polling<H: Handler>(
        &mut self,
        idx: usize,
        bytes: &[u8],
        h: &mut H,
    ) -> Result<usize, String> {
        let mut pos = 0;
        loop {
            let Some(Response { status, body }) =
                http::parse_response(&bytes[pos..]).map_err(|e| e.cause().to_string())?
            else {
                return Ok(pos);
            };
            let payload = &bytes[pos + body.start..pos + body.end];
            pos += body.end;
            if status != 200 {
                return Err(format!("http_{status}"));
            }
            if self.conns[idx].state == State::Upgrading {
                self.polls[idx].sid = sid_of(payload).ok_or("bad_open")?;
                self.conns[idx].state = State::Welcoming;
            }
            self.deliver(idx, payload, h)?;
            if self.conns[idx].stream.is_none() {
                return Ok(pos);
            }
            self.frame.clear();
            let sid = &self.polls[idx].sid;
            let target = &self.targets[usize::from(self.conns[idx].server)];
            http::write_get(&mut self.frame, &target.host, &target.path, sid);
            self.send_frame(idx, h);
        }
    }

    /// Gives each packet of a long-poll's `payload` to the handler: text as it is, `b<base64>`
    /// decoded as a binary message.
    fn deliver<H: Handler>(&mut self, idx: usize, payload: &[u8], h: &mut H) -> Result<(), String> {
        for packet in payload.split(|&b| b == SEPARATOR) {
            if packet.first() == Some(&b'b') {
                let text = std::str::from_utf8(packet).map_err(|_| "bad_message")?;
                let Ok(Packet::Binary(bytes)) = engineio::decode_packet(text, true) else {
                    return Err("bad_message".into());
                };
                h.on_message(self, idx, &bytes, true)?;
            } else {
                h.on_message(self, idx, packet, false)?;
            }
            if self.conns[idx].stream.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Queues one packet of session `idx` for its next `POST` (text as it is, `binary` as
    /// `b<base64>`), and sends it now when no `POST` is in flight.
    pub(super) fn queue_packet<H: Handler>(
        &mut self,
        idx: usize,
        binary: bool,
        payload: &[u8],
        h: &mut H,
    ) {
        let p = &mut self.polls[idx];
        if !p.queue.is_empty() {
            p.queue.push(SEPARATOR);
        }
        if binary {
            engineio::encode_binary(payload, &mut p.queue);
        } else {
            p.queue.extend_from_slice(payload);
        }
        if p.queue.len() > MAX_QUEUE {
            return self.fail(idx, "post_queue_full", h);
        }
        match p.state {
            Post::Closed => self.open_post(idx, h),
            Post::Ready => self.send_post(idx, h),
            Post::Connecting | Post::Waiting { .. } => {}
        }
    }

    /// Opens the `POST` connection of session `idx` (its token is `idx + conns.len()`).
    fn open_post<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let token = mio::Token(idx + self.conns.len());
        match connect(self.target(idx).addr, self.source(idx)) {
            Ok(mut stream) => {
                let reg = self.poll.registry().register(
                    &mut stream,
                    token,
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                );
                let p = &mut self.polls[idx];
                p.post.stream = Some(stream);
                p.state = Post::Connecting;
                if let Err(e) = reg {
                    self.fail(idx, &format!("post_{}", io_cause("register", &e)), h);
                }
            }
            Err(e) => self.fail(idx, &format!("post_{}", io_cause("connect", &e)), h),
        }
    }

    /// Sends the `POST` of session `idx`: the one in flight again after a reconnect, else
    /// what is queued (nothing to send: the connection stays ready).
    fn send_post<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let p = &mut self.polls[idx];
        let retried = !p.sent.is_empty();
        if !retried {
            if p.queue.is_empty() {
                p.state = Post::Ready;
                return;
            }
            p.sent = std::mem::take(&mut p.queue);
        }
        self.frame.clear();
        let target = &self.targets[usize::from(self.conns[idx].server)];
        http::write_post(&mut self.frame, &target.host, &target.path, &p.sid, &p.sent);
        p.state = Post::Waiting { retried };
        if let Err(cause) = p.post.write(&self.frame) {
            self.fail(idx, &format!("post_{cause}"), h);
        }
    }

    /// Handles a readiness event of the `POST` connection of session `idx`.
    pub(super) fn on_post_event<H: Handler>(&mut self, idx: usize, readable: bool, h: &mut H) {
        let Some(p) = self.polls.get_mut(idx) else {
            return;
        };
        if p.post.stream.is_none() {
            return;
        }
        if p.state == Post::Connecting {
            match p.post.connected() {
                Ok(true) => self.send_post(idx, h),
                Ok(false) => return,
                Err(cause) => return self.fail(idx, &format!("post_{cause}"), h),
            }
        } else if let Err(cause) = p.post.flush() {
            return self.fail(idx, &format!("post_{cause}"), h);
        }
        if readable && self.polls[idx].post.stream.is_some() {
            self.read_post(idx, h);
        }
    }

    /// Reads the `POST` connection of session `idx` (through the shared buffer) and handles
    /// its answers (`ok`); the next `POST` leaves once the last is answered.
    fn read_post<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let mut buf = std::mem::take(&mut self.rbuf);
        let read = read_all(&mut self.polls[idx].post, &mut buf);
        let answered = match &read {
            Ok((filled, _)) => self.post_answers(idx, &buf[..*filled]),
            Err(cause) => Err(format!("post_{cause}")),
        };
        self.rbuf = buf;
        match (answered, read) {
            (Err(cause), _) => self.fail(idx, &cause, h),
            (Ok(()), Ok((_, true))) => self.post_closed(idx, h),
            (Ok(()), _) => {
                if self.polls[idx].state == Post::Ready {
                    self.send_post(idx, h);
                }
            }
        }
    }

    /// Handles the whole answers at the start of `bytes` (a partial one is kept on the `POST`
    /// connection of session `idx`): each must be a `200` to the `POST` in flight.
    fn post_answers(&mut self, idx: usize, bytes: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        while let Some(Response { status, body }) =
            http::parse_response(&bytes[pos..]).map_err(|e| format!("post_{}", e.cause()))?
        {
            pos += body.end;
            let p = &mut self.polls[idx];
            if !matches!(p.state, Post::Waiting { .. }) {
                return Err("post_unexpected_answer".into());
            }
            if status != 200 {
                return Err(format!("post_http_{status}"));
            }
            p.state = Post::Ready;
            p.sent = Vec::new();
        }
        if pos < bytes.len() {
            self.polls[idx].post.inbuf = bytes[pos..].to_vec();
        }
        Ok(())
    }

    /// The server closed the `POST` connection of session `idx`: while idle it is reopened
    /// with the next `POST`; with a `POST` in flight and no answer begun, the `POST` is sent
    /// again once on a new connection (the server closed the idle connection as it left);
    /// else the session fails (`post_eof`).
    fn post_closed<H: Handler>(&mut self, idx: usize, h: &mut H) {
        let p = &mut self.polls[idx];
        p.post.stream = None;
        let partial = !std::mem::take(&mut p.post.inbuf).is_empty();
        p.post.outbuf = Vec::new();
        match p.state {
            Post::Waiting { retried: false } if !partial => self.open_post(idx, h),
            Post::Waiting { .. } => self.fail(idx, "post_eof", h),
            Post::Closed | Post::Connecting | Post::Ready => {
                p.state = Post::Closed;
                if !p.queue.is_empty() {
                    self.open_post(idx, h);
                }
            }
        }
    }
}

/// Reads all `conn` has into `buf`, after the partial answer it kept: `(bytes, closed)`,
/// `closed` when the server ended (or reset) the connection. Reads until the socket would
/// block, so that an end right after an answer is seen with it.
fn read_all(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<(usize, bool), String> {
    let kept = std::mem::take(&mut conn.inbuf);
    if buf.len() < kept.len() + 4096 {
        buf.resize(kept.len() + 4096, 0);
    }
    buf[..kept.len()].copy_from_slice(&kept);
    let mut filled = kept.len();
    let Some(stream) = conn.stream.as_mut() else {
        return Ok((filled, true));
    };
    loop {
        if filled == buf.len() {
            let len = buf.len() * 2;
            buf.resize(len, 0);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((filled, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok((filled, true)),
            Err(e) => return Err(io_cause("read", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_packet_gives_the_sid() {
        let open =
            br#"0{"sid":"ulFCKv0s5OBNa2L7AAAA","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(sid_of(open).as_deref(), Some("ulFCKv0s5OBNa2L7AAAA"));
        let mut more = open.to_vec();
        more.extend_from_slice(b"\x1e40{\"sid\":\"x\"}");
        assert_eq!(sid_of(&more).as_deref(), Some("ulFCKv0s5OBNa2L7AAAA"));
        assert_eq!(sid_of(b"40{\"sid\":\"x\"}"), None);
        assert_eq!(sid_of(b"0{}"), None);
    }

    #[test]
    fn a_polling_session_is_small() {
        // Beside its `Conn`: the POST connection's, the sid and two empty buffers.
        let size = std::mem::size_of::<Polling>();
        assert!(size <= 200, "{size}");
    }
}
