//! One namespace socket: its session (a wsgate session of its user, carried by the Engine.IO
//! session), its client state, and the commands its events run, one at a time and in the order
//! they came, in a task that exists only while there are some.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use wsgate_protocol::{ErrorCode, ProtocolError};

use super::events::Job;
use crate::commands::{self, Client};
use crate::node::Ctx;
use crate::session::{Asks, Route, Session, UnknownAck};
use crate::stats::ShardStats;

/// Most commands a socket may have waiting; past it an event is refused with `rate.limited`
/// (a client sending faster than its commands complete).
const MAX_PENDING: usize = 256;

/// One namespace socket.
pub(crate) struct NspSocket {
    pub(crate) session: Rc<Session>,
    /// The id it recovered (`socket.id` as its client knew it); `None`: its session's own
    /// ([`Ctx::wire_id`], derived, not kept).
    recovered_sid: Option<Box<str>>,
    /// Its private id for connection state recovery (sent in the `CONNECT` answer as 32 hex
    /// digits), if on.
    pub(crate) pid: Option<[u8; 16]>,
    /// Its client state; taken out while a command runs (so no borrow spans an await), and
    /// gone once the socket is closed.
    client: RefCell<Option<Client>>,
    jobs: RefCell<VecDeque<Job>>,
    /// Whether the task running its commands exists.
    running: Cell<bool>,
    closed: Cell<bool>,
}

impl NspSocket {
    /// A socket of `session`, with `client`: `recovered_sid` to its client if it recovered
    /// one, else its session's id.
    pub(crate) fn new(
        session: Rc<Session>,
        recovered_sid: Option<Box<str>>,
        pid: Option<[u8; 16]>,
        client: Client,
    ) -> Rc<NspSocket> {
        Rc::new(NspSocket {
            session,
            recovered_sid,
            pid,
            client: RefCell::new(Some(client)),
            jobs: RefCell::default(),
            running: Cell::new(false),
            closed: Cell::new(false),
        })
    }

    /// Its id as the client knows it (`socket.id`): the one it recovered, or its session's.
    pub(crate) fn sid(&self, ctx: &Ctx) -> String {
        match &self.recovered_sid {
            Some(sid) => sid.to_string(),
            None => ctx.wire_id(self.session.id),
        }
    }

    /// The namespace's name.
    pub(crate) fn nsp(&self) -> &str {
        self.session.socketio.as_deref().map_or("/", |n| &n.nsp)
    }

    /// Queues `job` behind the socket's other commands, and starts their task if it is not
    /// running; refused past [`MAX_PENDING`].
    pub(crate) fn run(self: &Rc<Self>, ctx: &Rc<Ctx>, job: Job) {
        if self.closed.get() {
            return;
        }
        if self.jobs.borrow().len() >= MAX_PENDING {
            let e = ProtocolError::new(
                ErrorCode::RateLimited,
                "too many commands waiting: wait for their answers",
            );
            return self.answer_error(ctx, job.route, &e);
        }
        self.jobs.borrow_mut().push_back(job);
        if !self.running.replace(true) {
            tokio::task::spawn_local(drain(ctx.clone(), self.clone()));
        }
    }

    /// The client answered the private message asked for with ack `id`: its user's stream is
    /// acked up to where the answers allow ([`Asks`]), by the native `ack`, one at a time (an
    /// ack covers every answer before it). An id it was not asked, or no longer remembers, is
    /// ignored and counted (`socketioUnknownAcks`).
    pub(crate) fn answered(self: Rc<Self>, ctx: &Rc<Ctx>, id: u64) {
        let Some(asks) = self.asks() else {
            return ShardStats::inc(&ctx.stats().socketio_unknown_acks);
        };
        let answer = asks.borrow_mut().answer(id);
        match answer {
            Err(UnknownAck) => ShardStats::inc(&ctx.stats().socketio_unknown_acks),
            Ok(None) => {}
            Ok(Some(offset)) => {
                tokio::task::spawn_local(ack_private(ctx.clone(), self, offset));
            }
        }
    }

    /// What it was asked to ack, with `SOCKETIO_PRIVATE_ACKS`.
    fn asks(&self) -> Option<&RefCell<Asks>> {
        self.session.socketio.as_ref()?.asks.as_deref()
    }

    /// Answers an error the socket's commands did not produce (an event that runs nothing).
    pub(crate) fn answer_error(&self, ctx: &Ctx, route: Route, e: &ProtocolError) {
        self.with_route(route, || commands::send_error(ctx, &self.session, None, e));
    }

    /// Runs `f` with the socket's answers going to `route`.
    fn with_route<R>(&self, route: Route, f: impl FnOnce() -> R) -> R {
        let Some(n) = &self.session.socketio else {
            return f();
        };
        let before = n.route.replace(route);
        let r = f();
        *n.route.borrow_mut() = before;
        r
    }

    /// The socket is over: no more commands run, and its client (with the user's connection
    /// slot) is dropped now, or by its task after the command it is running.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.jobs.borrow_mut().clear();
        drop(self.client.borrow_mut().take());
    }
}

/// A pid as the client is given it: 32 hex digits.
pub(crate) fn pid_text(pid: &[u8; 16]) -> String {
    pid.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pid the client sent back, if it is one this server could have made.
pub(crate) fn parse_pid(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut pid = [0u8; 16];
    for (i, b) in pid.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(pid)
}

/// Acks `socket`'s user's stream up to `offset`, then up to where the answers that came
/// meanwhile allow, until they allow no more.
async fn ack_private(ctx: Rc<Ctx>, socket: Rc<NspSocket>, mut offset: u64) {
    let Some(asks) = socket.asks() else {
        return;
    };
    loop {
        // Not written (cluster mode, Redis unreachable): the message comes again on the
        // next connection, as one never acked.
        let _ = commands::ack(&ctx, &socket.session, offset).await;
        match asks.borrow_mut().acked() {
            Some(next) => offset = next,
            None => break,
        }
    }
}

/// Runs `socket`'s commands in order until none is left.
async fn drain(ctx: Rc<Ctx>, socket: Rc<NspSocket>) {
    loop {
        let job = socket.jobs.borrow_mut().pop_front();
        let Some(job) = job else { break };
        let client = socket.client.borrow_mut().take();
        let Some(mut client) = client else { break };
        if let Some(n) = &socket.session.socketio {
            *n.route.borrow_mut() = job.route;
        }
        commands::dispatch(&ctx, &socket.session, &mut client, job.payload).await;
        if let Some(n) = &socket.session.socketio {
            *n.route.borrow_mut() = Route::None;
        }
        if socket.closed.get() {
            break;
        }
        *socket.client.borrow_mut() = Some(client);
    }
    socket.running.set(false);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pids_read_back_from_their_text_only() {
        let pid: [u8; 16] = rand::random();
        assert_eq!(parse_pid(&pid_text(&pid)), Some(pid));
        assert_eq!(parse_pid("xyz"), None);
        assert_eq!(parse_pid(&"g".repeat(32)), None);
        assert_eq!(parse_pid(&"é".repeat(16)), None, "not ASCII");
    }
}
