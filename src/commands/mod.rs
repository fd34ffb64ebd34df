//! Client commands: decoded in one place ([`dispatch`]), rate-limited, and run, one file per
//! command, each with an `apply`. A command with an `id` gets exactly one reply or error.

mod ack;
mod auth;
mod create;
mod history;
mod join;
mod leave;
mod members;
mod publish;
mod read;
mod send;
mod unwatch;
mod watch;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{
    decode_request, CloseCode, Command, ErrorCode, Id, ProtocolError, RawData, ServerMessage,
};

pub(crate) use ack::apply as ack;
pub(crate) use auth::authenticate;

use crate::cluster::{Begin, RoomOptions};
use crate::hub::{Delivery, Entry, HistoryOptions, OutEvent, Position, Report, Target};
use crate::node::permit::UserSlot;
use crate::node::Ctx;
use crate::session::grant::RoomGrant;
use crate::session::rate::{RateLimit, TokenBucket};
use crate::session::{Deadline, Session};
use crate::stats::ShardStats;
use crate::transport::outbound::{CloseRequest, Queued};

/// What a command answers with, beyond the plain `reply`.
pub(crate) enum Answer {
    /// A plain `reply`.
    Done,
    /// A `publish` or `send`: the event's offset when its room's stream stored it (the reply
    /// then carries it), else a plain `reply`.
    Published { offset: Option<u64> },
    /// A join: the room stream's position when the member was added, and for a resume
    /// whether everything missed was replayed.
    Joined {
        room: Arc<str>,
        position: Position,
        recovered: Option<bool>,
        /// The user's read marker in the room, if it has one.
        read: Option<u64>,
        presence: Option<bool>,
    },
    /// A history read.
    History {
        room: Arc<str>,
        position: Position,
        entries: Vec<Entry>,
    },
    /// A page of a room's member users, with their member connections; whether more follow.
    Members {
        room: Arc<str>,
        members: Vec<(Arc<str>, u32)>,
        more: bool,
    },
    /// Each watched user's state.
    Watching { states: Vec<(Arc<str>, bool)> },
}

/// What the gateway keeps per client connection, beside its session.
pub(crate) struct Client {
    bucket: TokenBucket,
    /// Ephemeral publishes' own bucket (`EPHEMERAL_RATE_PER_SEC`), taken after `bucket`.
    ephemeral_bucket: TokenBucket,
    /// Held while authenticated: one of the user's connection slots.
    user_slot: Option<UserSlot>,
    /// The token's `rooms` claim, if it restricts the rooms the user may join.
    grant: Option<Arc<RoomGrant>>,
    /// A close (code and reason) to request once the current command's answer is queued.
    close_after_answer: Option<(CloseCode, &'static str)>,
}

impl Client {
    /// A client of `session`, authenticated as `identity` when the handshake carried a token;
    /// otherwise it has `AUTH_TIMEOUT` to send `auth`.
    pub(crate) fn new(
        ctx: &Ctx,
        session: &Rc<Session>,
        identity: Option<(crate::session::auth::Identity, UserSlot)>,
    ) -> Client {
        let now = ctx.now_ms();
        let mut client = Client {
            bucket: TokenBucket::new(rate_limit(ctx), now),
            ephemeral_bucket: TokenBucket::new(ephemeral_rate_limit(ctx), now),
            user_slot: None,
            grant: None,
            close_after_answer: None,
        };
        match identity {
            Some((identity, slot)) => authenticate(ctx, session, &mut client, identity, slot),
            None => {
                let at_ms = now + ctx.config().auth_timeout.as_millis() as u64;
                session.deadline.set(Deadline::Auth { at_ms });
            }
        }
        client
    }

    fn is_authenticated(&self) -> bool {
        self.user_slot.is_some()
    }

    /// Takes one token from the rate limiter.
    fn take_token(&mut self, ctx: &Ctx) -> bool {
        counted(ctx, self.bucket.try_take(rate_limit(ctx), ctx.now_ms()))
    }

    /// Takes one token from the ephemeral publishes' own limiter.
    fn take_ephemeral_token(&mut self, ctx: &Ctx) -> bool {
        let limit = ephemeral_rate_limit(ctx);
        counted(ctx, self.ephemeral_bucket.try_take(limit, ctx.now_ms()))
    }
}

/// Counts a refusal of a rate limiter.
fn counted(ctx: &Ctx, ok: bool) -> bool {
    if !ok {
        ShardStats::inc(&ctx.stats().rate_limited);
    }
    ok
}

fn rate_limit(ctx: &Ctx) -> RateLimit {
    let cfg = ctx.config();
    RateLimit {
        rate: cfg.rate_per_sec,
        burst: cfg.rate_burst,
    }
}

fn ephemeral_rate_limit(ctx: &Ctx) -> RateLimit {
    let cfg = ctx.config();
    RateLimit {
        rate: cfg.ephemeral_rate_per_sec,
        burst: cfg.ephemeral_rate_burst,
    }
}

/// Decodes one message and runs it. A command with an `id` gets exactly one reply or error.
pub(crate) async fn dispatch(
    ctx: &Ctx,
    session: &Rc<Session>,
    client: &mut Client,
    payload: Bytes,
) {
    let req = match decode_request(session.format, &payload) {
        Ok(req) => req,
        Err(e) => return send_error(ctx, session, e.id.as_ref(), &e.error),
    };
    if !client.take_token(ctx) {
        let e = ProtocolError::new(ErrorCode::RateLimited, "command rate limit exceeded");
        return send_error(ctx, session, req.id.as_ref(), &e);
    }
    let done = |r: Result<(), ProtocolError>| r.map(|()| Answer::Done);
    let result = match req.command {
        Command::Auth { token } => done(auth::apply(ctx, session, client, &token)),
        Command::Ping => Ok(Answer::Done),
        _ if !client.is_authenticated() => Err(ProtocolError::new(
            ErrorCode::AuthRequired,
            "authenticate first: send auth with a token",
        )),
        Command::Join {
            room,
            since,
            presence,
        } => join::apply(ctx, session, client, &room, since.as_ref(), presence).await,
        Command::Create {
            room,
            private,
            max_members,
            history_size,
            history_ttl,
            presence,
        } => {
            let options = RoomOptions {
                private,
                max_members,
                presence,
                history: HistoryOptions {
                    size: history_size,
                    ttl_secs: history_ttl,
                },
            };
            create::apply(ctx, session, client, &room, options).await
        }
        Command::Leave { room } => done(leave::apply(ctx, session, &room)),
        Command::History {
            room,
            limit,
            before,
            after,
        } => history::apply(ctx, session, &room, limit, before, after).await,
        Command::Members { room, limit, after } => {
            members::apply(ctx, session, &room, limit, after.as_deref()).await
        }
        Command::Watch { users } => watch::apply(ctx, session, &users).await,
        Command::Unwatch { users } => {
            unwatch::apply(ctx, session, &users);
            Ok(Answer::Done)
        }
        Command::Publish {
            ephemeral: true, ..
        } if !client.take_ephemeral_token(ctx) => Err(ProtocolError::new(
            ErrorCode::RateLimited,
            "ephemeral publish rate limit exceeded",
        )),
        Command::Publish {
            ref room,
            ref event,
            data,
            echo,
            ephemeral,
            ref idem,
        } => {
            let publish = publish::Publish {
                room,
                event,
                data,
                echo,
                ephemeral,
            };
            let run = || publish::apply(ctx, session, &payload, publish);
            once(ctx, session, idem.as_deref(), run).await
        }
        Command::Send {
            ref to,
            ref event,
            data,
            echo,
            ref idem,
        } => {
            let run = || send::apply(ctx, session, &payload, to, event, data, echo);
            once(ctx, session, idem.as_deref(), run).await
        }
        Command::Ack { offset } => ack::apply(ctx, session, offset)
            .await
            .map(|()| Answer::Done),
        Command::Read { room, offset } => read::apply(ctx, session, &room, offset).await,
    };
    match (result, req.id) {
        (Ok(answer), Some(id)) => answer_with(ctx, session, id, &answer),
        (Ok(_), None) => {}
        (Err(e), id) => send_error(ctx, session, id.as_ref(), &e),
    }
    if let Some((code, reason)) = client.close_after_answer.take() {
        session.close(
            CloseRequest::with_reason(code.as_u16(), reason),
            Queued::Flush,
        );
    }
}

/// Runs a `publish` or `send` once per idempotency key of the user's (`idem`): a retry, while
/// the first runs or within `IDEMPOTENCY_WINDOW` after it answered, gets the first answer and
/// delivers nothing. A first that failed is not remembered (it delivered nothing).
async fn once<F, Fut>(
    ctx: &Ctx,
    session: &Session,
    idem: Option<&str>,
    run: F,
) -> Result<Answer, ProtocolError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<u64>, ProtocolError>>,
{
    let published = |offset| Answer::Published { offset };
    let Some(key) = idem else {
        return run().await.map(published);
    };
    let scope = format!("u:{}", session.user().unwrap_or_default());
    match ctx.shared.idempotency.commands.begin(&scope, key).await {
        Begin::Done(offset) => Ok(published(offset)),
        Begin::Fresh(claim) => {
            let offset = run().await?;
            claim.finish(offset, std::mem::size_of::<Option<u64>>());
            Ok(published(offset))
        }
    }
}

/// Queues the answer to a command with `id`.
fn answer_with(ctx: &Ctx, session: &Session, id: Id<'_>, answer: &Answer) {
    match answer {
        Answer::Done | Answer::Published { offset: None } => {
            ctx.send(session, &ServerMessage::Reply { id });
        }
        Answer::Published {
            offset: Some(offset),
        } => ctx.send(
            session,
            &ServerMessage::Published {
                id,
                offset: *offset,
            },
        ),
        Answer::Joined {
            room,
            position,
            recovered,
            read,
            presence,
        } => ctx.send(
            session,
            &ServerMessage::Joined {
                id,
                room,
                epoch: &position.epoch_text(),
                offset: position.offset,
                recovered: *recovered,
                read: *read,
                presence: *presence,
            },
        ),
        Answer::History {
            room,
            position,
            entries,
        } => history::answer(ctx, session, id, room, position, entries),
        Answer::Members {
            room,
            members,
            more,
        } => members::answer(ctx, session, id, room, members, *more),
        Answer::Watching { states } => watch::answer(ctx, session, id, states),
    }
}

/// Queues an error for one session.
pub(crate) fn send_error(ctx: &Ctx, session: &Session, id: Option<&Id<'_>>, error: &ProtocolError) {
    ctx.send(
        session,
        &ServerMessage::Error {
            id: id.cloned(),
            code: error.code,
            message: &error.message,
        },
    );
}

/// A client's event on its way out: where it goes and how.
struct Outgoing<'a> {
    target: Target,
    event: &'a str,
    data: RawData<'a>,
    /// Deliver to the sending connection too.
    echo: bool,
    /// Not stored; dropped first under pressure.
    ephemeral: bool,
}

/// Wraps the sender's event (its `data` a zero-copy slice of the message) and delivers it; it is
/// encoded at most once per format, by the first hub that needs that format.
/// Returns the offset the event got, when its room's stream stored it; an error when replies
/// wait for the fsync (`STORE_FSYNC=always`) and the write failed.
async fn emit(
    ctx: &Ctx,
    session: &Session,
    payload: &Bytes,
    out: Outgoing<'_>,
) -> Result<Option<u64>, ProtocolError> {
    let room = match &out.target {
        Target::Room(room) => Some(room.clone()),
        _ => None,
    };
    let ev = OutEvent::new(
        out.event,
        room,
        session.user(),
        owned(payload, out.data),
        out.data.format(),
    );
    let exclude = (!out.echo).then_some(session.id);
    // With `echo`, the sender gets its own event before the answer to its command: the
    // answer waits until every hub has delivered it.
    let report = out.echo.then(|| Report::new(ctx.hub.hubs(), 0));
    let delivery = Delivery {
        exclude,
        report: report.clone(),
        ephemeral: out.ephemeral,
        ..Delivery::new(out.target, ev)
    };
    let published = ctx.hub.deliver(delivery).await?;
    if published.waited {
        ShardStats::inc(&ctx.stats().commands_waited);
    }
    if let Some(report) = report {
        report.wait().await;
    }
    if let Some(durable) = published.durable {
        // `STORE_FSYNC=always`: the reply says the message is on disk.
        if durable.await.is_err() {
            return Err(ProtocolError::new(
                ErrorCode::Internal,
                "the message was delivered but could not be stored",
            ));
        }
    }
    Ok(published.offset)
}

fn not_member(code: ErrorCode, room: &str) -> ProtocolError {
    ProtocolError::new(code, format!("not a member of room {room:?}"))
}

/// `data` as owned bytes: a zero-copy slice of the received message when it lies inside it.
fn owned(payload: &Bytes, data: RawData<'_>) -> Bytes {
    let bytes = data.bytes();
    let inside = payload.as_ptr_range();
    if inside.start <= bytes.as_ptr() && bytes.as_ptr_range().end <= inside.end {
        payload.slice_ref(bytes)
    } else {
        Bytes::copy_from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use wsgate_protocol::Format;

    use super::*;
    use crate::config::Config;
    use crate::node::shutdown::ShutdownTrigger;
    use crate::node::Shared;
    use crate::session::auth::Verifier;

    /// A command's future is what the reactor allocates for every command a connection sends:
    /// it must not carry a Redis call's future inline (fred's are ~10 KB; with them every
    /// command allocated 12.6 KB in a release build, with or without Redis).
    #[test]
    fn a_commands_future_is_small() {
        let mut config = Config::for_tests();
        config.jwt_secret = Some("s".into());
        let verifier = Verifier::from_config(&config, None).unwrap();
        let (_trigger, shutdown) = ShutdownTrigger::new();
        let (shared, _handoffs) = Shared::new(config, verifier, Vec::new(), shutdown).unwrap();
        let ctx = Ctx::new(0, Arc::new(shared));
        let session = Rc::new(Session::new(ctx.next_session_id(), Format::Json, 0));
        let mut client = Client::new(&ctx, &session, None);
        let future = dispatch(&ctx, &session, &mut client, Bytes::new());
        let size = std::mem::size_of_val(&future);
        assert!(size <= 4096, "{size} bytes");
    }
}
