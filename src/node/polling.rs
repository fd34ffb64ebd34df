//! Engine.IO long-polling requests on their way to the shard that owns their session, and the
//! answers that come back (through a oneshot channel: a long-poll's answer may wait).

use bytes::Bytes;
use tokio::sync::oneshot;
use wsgate_protocol::engineio::HandshakeError;

use super::permit::ConnPermit;
use crate::transport::engineio::{Handshake, Sid};

/// One HTTP request of the Engine.IO endpoint, for the engine of the session's shard.
pub(crate) struct PollRequest {
    /// What is asked.
    pub(crate) kind: PollKind,
    /// Where the answer goes (a dropped receiver means the client went away).
    pub(crate) respond: oneshot::Sender<PollAnswer>,
}

/// What a [`PollRequest`] asks.
pub(crate) enum PollKind {
    /// The handshake `GET` without `sid`: a new long-polling session, holding one of the
    /// server's connection slots for its life.
    Open {
        handshake: Handshake,
        permit: ConnPermit,
    },
    /// A long-poll `GET`: the packets queued, or the next ones.
    Get(Sid),
    /// A `POST` of packets; `None` when its body was over `ENGINEIO_MAX_PAYLOAD` (the session
    /// is closed).
    Post(Sid, Option<Bytes>),
    /// A WebSocket with this `sid` asks to take the session over: may it?
    Probe(Sid),
    /// The long-poll `GET` of `sid` lost its client before it was answered (the HTTP
    /// connection closed): the session ends, as Node's does ("transport error"), instead of
    /// lingering until its ping times out. No answer is sent.
    Abandoned(Sid),
}

/// The answer to a [`PollRequest`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PollAnswer {
    /// 200 with a payload (`text/plain; charset=UTF-8`).
    Payload(Bytes),
    /// 200 `ok` (a `POST`), or a probe allowed.
    Ok,
    /// An Engine.IO refusal (400 or 403 with its JSON body).
    Refused(HandshakeError),
    /// 413 with no body: a `POST` over `ENGINEIO_MAX_PAYLOAD`; the session is closed.
    TooLarge,
    /// 400 with no body: a second long-poll while one waits; the session is closed.
    Overlap,
}
