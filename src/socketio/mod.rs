//! Socket.IO v5 on Engine.IO: the handler an Engine.IO session is given when it serves
//! `socket.io-client`. It decodes the session's messages into Socket.IO packets (the default
//! parser at `ENGINEIO_PATH`, socket.io-msgpack-parser at `SOCKETIO_MSGPACK_PATH`), connects
//! namespace sockets, and runs their events as wsgate commands.
//!
//! - **A namespace socket is a wsgate session** of its token's user ([`NspSocket`], with a
//!   `session::Namespaced` session): registered in the hub like any other, so the user's
//!   private messages, room events and REST pushes reach it as they reach native clients. It
//!   has no outbox of its own: its frames go into the Engine.IO session's, whatever transport
//!   carries it. An event is encoded once per (namespace, parser) and the same bytes go to
//!   every such socket (`hub::OutEvent::frame_for`). Several namespaces may share one
//!   Engine.IO session; each is its own session in the hub.
//! - **`CONNECT`** takes the JWT from `auth.token`, else the handshake's `Authorization:
//!   Bearer`, else its `?token=`. A refusal is a `CONNECT_ERROR` `{message, data: {code}}` with
//!   wsgate's error code, which fires the client's `connect_error`; a namespace not in
//!   `SOCKETIO_NAMESPACES` gets socket.io's `Invalid namespace`.
//! - **Events** ([`events`]): `wsgate:<command>` built-ins and the configured event map run
//!   the native commands; the answer goes to the ack callback, to the map's `reply` event, or
//!   (errors no ack waits for) to `SOCKETIO_ERROR_EVENT`. An event that is neither is an
//!   `unknown_command` error, never silence.
//! - **Acks from the server** (`SOCKETIO_PRIVATE_ACKS`): private messages ask the client for
//!   an ack (`hub::OutEvent::frame_for`, `session::Asks`); the client's `ACK` answers one, and
//!   acks the user's stream with the native `ack` ([`NspSocket::answered`]).
//! - A packet that is not Socket.IO ends the Engine.IO session (as socket.io's server does);
//!   everyone else goes on.

pub(crate) mod conformance;
mod events;
mod socket;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use smallvec::SmallVec;
use wsgate_protocol::socketio::{AttachmentLimits, Decoded, Decoder, Packet, Payload, SioError};
use wsgate_protocol::{CloseCode, ErrorCode, Format, ProtocolError, RawData};

use crate::commands::Client;
use crate::engineio::{CloseReason, Handler, Message};
use crate::node::detached::Detached;
use crate::node::permit::UserSlot;
use crate::node::Ctx;
use crate::session::auth::Identity;
use crate::session::{Asks, Deadline, Namespaced, Route, Session};
use crate::stats::ShardStats;
use crate::transport::engineio::Handshake;
use crate::transport::outbound::{CloseRequest, Queued};
use crate::transport::socketio as frames;
use events::translate;
use socket::NspSocket;

/// Binary attachments one packet of the default parser may carry (socket.io-parser's
/// `maxAttachments`; wsgate's data holds at most as many binary values).
const MAX_ATTACHMENTS: usize = wsgate_protocol::MAX_BINARIES;

/// The Socket.IO application of one Engine.IO session.
pub(crate) struct SocketIo {
    /// Kept apart from the sockets: the packet it decodes borrows it while it is handled.
    packets: Packets,
    sockets: Sockets,
}

/// One Engine.IO session's namespace sockets.
struct Sockets {
    parser: Format,
    /// The token the opening request offered (`Authorization: Bearer`, `?token=`).
    offered_token: Option<Box<str>>,
    /// Shared with the `CONNECT`s waiting for Redis (cluster mode), which add their socket.
    open: Opened,
}

/// An Engine.IO session's [`Open`]: inline, until a `CONNECT` waits for Redis (cluster mode's
/// recovery) and shares it with that wait, in an `Rc` (some 90 bytes more, only from then on:
/// an idle connection that never waited pays nothing for it).
enum Opened {
    Inline(Open),
    Shared(Rc<RefCell<Open>>),
}

impl Opened {
    fn read<R>(&self, f: impl FnOnce(&Open) -> R) -> R {
        match self {
            Opened::Inline(open) => f(open),
            Opened::Shared(open) => f(&open.borrow()),
        }
    }

    fn write<R>(&mut self, f: impl FnOnce(&mut Open) -> R) -> R {
        match self {
            Opened::Inline(open) => f(open),
            Opened::Shared(open) => f(&mut open.borrow_mut()),
        }
    }

    /// The `Open` shared with a wait, shared from now on.
    fn share(&mut self) -> Rc<RefCell<Open>> {
        let shared = match self {
            Opened::Shared(open) => return open.clone(),
            Opened::Inline(open) => Rc::new(RefCell::new(std::mem::take(open))),
        };
        *self = Opened::Shared(shared.clone());
        shared
    }
}

/// An Engine.IO session's sockets, and the `CONNECT`s still waiting for their pid's record.
#[derive(Default)]
struct Open {
    /// A handful at most: one per namespace.
    sockets: SmallVec<[Rc<NspSocket>; 1]>,
    /// Cluster mode: namespaces whose `CONNECT` waits for Redis (see [`connect_recovering`]).
    waiting: SmallVec<[Arc<str>; 1]>,
    /// The Engine.IO session is over: a `CONNECT` still waiting ends with it.
    closed: bool,
}

impl Sockets {
    fn parser(&self) -> Format {
        self.parser
    }

    fn socket(&self, nsp: &str) -> Option<Rc<NspSocket>> {
        self.open
            .read(|open| open.sockets.iter().find(|s| s.nsp() == nsp).cloned())
    }

    /// A `CONNECT` to `nsp` with `auth`.
    fn connect(
        &mut self,
        ctx: &Rc<Ctx>,
        carrier: &Rc<Session>,
        nsp: &str,
        auth: Option<Payload<'_>>,
    ) {
        let parser = self.parser();
        let refuse = |message: &str, code: Option<ErrorCode>| {
            let data = code.map(|c| json!({ "code": c.as_str() }).to_string());
            let data = data
                .as_deref()
                .map(|d| RawData::trusted(Format::Json, d.as_bytes()));
            if let Some(frame) = frames::connect_error(parser, nsp, message, data) {
                ctx.push(carrier, frame);
            }
        };
        let Some((name, slot)) = ctx.shared.namespaces.resolve(nsp) else {
            return refuse("Invalid namespace", None);
        };
        let waiting = self
            .open
            .read(|open| open.waiting.iter().any(|w| **w == *nsp));
        if waiting || self.socket(nsp).is_some() {
            return refuse(
                "already connected to this namespace",
                Some(ErrorCode::BadRequest),
            );
        }
        // A client reconnecting asks for its socket back with its pid and last offset.
        let asked = auth.and_then(|a| {
            let pid = a.str_field("pid")?.into_owned();
            Some((pid, a.str_field("offset").map(|o| o.into_owned())))
        });
        let identity = match self.identify(ctx, auth) {
            Ok(identity) => identity,
            Err(e) => return refuse(&e.message, Some(e.code)),
        };
        let connect = Connect {
            carrier: carrier.clone(),
            parser,
            nsp: name,
            slot,
            identity,
        };
        let asked = asked.filter(|_| ctx.shared.detached.enabled());
        let user = connect.identity.as_ref().map(|(i, _)| i.user.clone());
        let restored = match (asked, user, ctx.shared.backplane.redis()) {
            // Cluster mode: the socket may have been kept by any node, in Redis; the answer
            // waits for it (and nothing of the namespace comes before the answer).
            (Some((pid, offset)), Some(user), Some(_)) => {
                let open = self.open.share();
                open.borrow_mut().waiting.push(connect.nsp.clone());
                let ctx = ctx.clone();
                let asked = Asked { pid, offset, user };
                tokio::task::spawn_local(connect_recovering(ctx, open, connect, asked));
                return;
            }
            (Some((pid, offset)), Some(user), None) => {
                restore(ctx, &pid, offset.as_deref(), &user, &connect.nsp)
            }
            _ => None,
        };
        let socket = connect.finish(ctx, restored);
        self.open.write(|open| open.sockets.push(socket));
    }

    /// The user a `CONNECT` with `auth` is of, with its connection slot: its token's (`auth`'s,
    /// else the opening request's), or none yet when the login event authenticates later;
    /// else why it is refused.
    fn identify(
        &self,
        ctx: &Ctx,
        auth: Option<Payload<'_>>,
    ) -> Result<Option<(Identity, UserSlot)>, ProtocolError> {
        let token = auth
            .and_then(|a| a.str_field("token"))
            .map(|t| t.into_owned())
            .or_else(|| self.offered_token.as_deref().map(str::to_owned));
        let identity = match token {
            Some(token) => ctx.shared.verifier.verify(&token).inspect_err(|_| {
                ShardStats::inc(&ctx.stats().auth_failures);
            })?,
            // Authentication may come later, with the login event.
            None if ctx.config().socketio_file.login_event.is_some() => return Ok(None),
            None => {
                ShardStats::inc(&ctx.stats().auth_failures);
                let msg = "a token is required: io(url, { auth: { token } })";
                return Err(ProtocolError::new(ErrorCode::AuthRequired, msg));
            }
        };
        match UserSlot::acquire(&ctx.shared, &identity.user) {
            Some(slot) => Ok(Some((identity, slot))),
            None => {
                let msg = "this user holds its maximum number of connections";
                Err(ProtocolError::new(ErrorCode::UserConnectionLimit, msg))
            }
        }
    }

    /// Ends the socket of `nsp` (the client's `DISCONNECT`, or its logout event).
    fn disconnect(&mut self, ctx: &Ctx, nsp: &str) {
        let socket = self.open.write(|open| {
            // A CONNECT still waiting for Redis is dropped when its answer comes.
            open.waiting.retain(|w| **w != *nsp);
            let at = open.sockets.iter().position(|s| s.nsp() == nsp)?;
            Some(open.sockets.swap_remove(at))
        });
        if let Some(socket) = socket {
            end(ctx, &socket);
        }
    }

    fn packet(&mut self, ctx: &Rc<Ctx>, carrier: &Rc<Session>, packet: Packet<'_>) {
        match packet {
            Packet::Connect { nsp, auth } => self.connect(ctx, carrier, nsp, auth),
            Packet::Disconnect { nsp } => self.disconnect(ctx, nsp),
            Packet::Event(event) => {
                // socket.io ignores packets for a namespace the client is not connected to.
                let Some(socket) = self.socket(event.nsp) else {
                    return;
                };
                let file = &ctx.config().socketio_file;
                if Some(&*event.name) == file.logout_event.as_deref() {
                    if let Some(frame) = frames::disconnect(self.parser(), event.nsp) {
                        ctx.push(carrier, frame);
                    }
                    return self.disconnect(ctx, event.nsp);
                }
                match translate(&event, &file.events, file.login_event.as_deref()) {
                    Ok(job) => socket.run(ctx, job),
                    Err(e) => {
                        let route = event.id.map_or(Route::None, Route::Ack);
                        socket.answer_error(ctx, route, &e);
                    }
                }
            }
            // The answer to a private message asking for an ack (SOCKETIO_PRIVATE_ACKS).
            Packet::Ack { nsp, id, .. } => match self.socket(nsp) {
                Some(socket) => socket.answered(ctx, id),
                None => ShardStats::inc(&ctx.stats().socketio_unknown_acks),
            },
            // A client's CONNECT_ERROR means nothing here.
            Packet::ConnectError { .. } => {}
        }
    }
}

/// A `CONNECT` accepted, its socket not made yet.
struct Connect {
    carrier: Rc<Session>,
    parser: Format,
    nsp: Arc<str>,
    /// The namespace's place in an event's cache of frames.
    slot: usize,
    identity: Option<(Identity, UserSlot)>,
}

impl Connect {
    /// Makes the socket, `restored` or new: the `CONNECT` answer first (the client drops what
    /// comes for a namespace before it), then its registration, its mailbox and its rooms.
    fn finish(self, ctx: &Rc<Ctx>, restored: Option<Restored>) -> Rc<NspSocket> {
        let Connect {
            carrier,
            parser,
            nsp,
            slot,
            identity,
        } = self;
        let recovery = ctx.shared.detached.enabled();
        let namespaced = Namespaced {
            carrier: carrier.clone(),
            nsp: nsp.clone(),
            slot,
            parser,
            error_event: ctx.socketio_error_event.clone(),
            route: Default::default(),
            sent: recovery.then(Default::default),
            asks: ctx.config().socketio_private_acks.then(|| {
                let window = ctx.config().user_stream_size;
                Box::new(RefCell::new(Asks::new(window)))
            }),
        };
        let session = Rc::new(Session::namespaced(
            ctx.next_session_id(),
            namespaced,
            ctx.now_ms(),
        ));
        let (recovered_sid, pid, joins) = match restored {
            Some(r) => (Some(r.sid), Some(r.pid), r.joins),
            None => (None, recovery.then(rand::random), Vec::new()),
        };
        let recovered = recovered_sid.is_some();
        let sid = recovered_sid.unwrap_or_else(|| ctx.wire_id(session.id));
        // The same pid again tells the client it recovered.
        let pid_text = pid.as_ref().map(socket::pid_text);
        if let Some(frame) = frames::connect(parser, &nsp, &sid, pid_text.as_deref()) {
            ctx.push(&carrier, frame);
        }
        ctx.hub.register(&session);
        let user = identity.as_ref().map(|(i, _)| i.user.clone());
        // Authenticates (and queues the user's mailbox) when the CONNECT carried a token.
        let client = Client::new(ctx, &session, identity);
        let file = &ctx.config().socketio_file;
        if let (Some(event), Some(user)) = (&file.connected_event, user) {
            let data = json!({ "userId": &*user, "socketId": sid }).to_string();
            let data = RawData::trusted(Format::Json, data.as_bytes());
            if let Some(frame) = frames::event(parser, &nsp, event, data, None) {
                ctx.push(&session, frame);
            }
        }
        let recovered_sid = recovered.then(|| sid.into_boxed_str());
        let socket = NspSocket::new(session, recovered_sid, pid, client);
        // Back in its rooms, each from where the client left it: what it missed comes first.
        for (room, epoch, after) in joins {
            let join = json!({"cmd": "join", "id": 0, "room": &*room,
                "since": {"epoch": epoch, "offset": after}});
            let job = events::Job {
                payload: join.to_string().into_bytes().into(),
                route: Route::None,
            };
            socket.run(ctx, job);
        }
        // Connected: the Engine.IO session's connect deadline is met.
        if matches!(carrier.deadline.get(), Deadline::Connect { .. }) {
            carrier.deadline.set(Deadline::None);
        }
        socket
    }
}

/// What a reconnecting client asked for: its socket under `pid`, from after `offset` (the
/// last event it received), for the token's `user`.
struct Asked {
    pid: String,
    offset: Option<String>,
    user: Arc<str>,
}

/// Cluster mode's `CONNECT` with a pid: the socket's record taken from Redis (whichever node
/// kept it), checked against Redis's streams, then the socket made, recovered or new. Redis
/// not answering within `CLUSTER_TIMEOUT`: a new socket. Nothing if the Engine.IO session
/// ended or the client left the namespace meanwhile.
async fn connect_recovering(ctx: Rc<Ctx>, open: Rc<RefCell<Open>>, connect: Connect, asked: Asked) {
    let restored = restore_remote(&ctx, &asked, &connect.nsp).await;
    let mut o = open.borrow_mut();
    let before = o.waiting.len();
    o.waiting.retain(|w| *w != connect.nsp);
    let gone = o.closed || o.waiting.len() == before;
    drop(o);
    let redis = ctx.shared.backplane.redis();
    if gone {
        // Kept again, for the client's next CONNECT.
        if let (Some((_, record)), Some(redis)) = (restored, redis) {
            redis.keep_socket(&asked.pid, record.to_vec());
        }
        return;
    }
    if let (Some(_), Some(redis)) = (&restored, redis) {
        redis.stats.socketio_recovered.fetch_add(1, Relaxed);
    }
    let socket = connect.finish(&ctx, restored.map(|(r, _)| r));
    open.borrow_mut().sockets.push(socket);
}

/// A detached socket given back: its id and pid, and its rooms' joins (room, epoch, the
/// offset after which to replay).
struct Restored {
    sid: String,
    pid: [u8; 16],
    joins: Vec<(Arc<str>, String, u64)>,
}

/// The socket kept on this node under `pid` for `user` in `nsp`, if the client's `offset` (the
/// last event it received) places it in every room's stream, and each stream still has what
/// came after.
fn restore(ctx: &Ctx, pid: &str, offset: Option<&str>, user: &str, nsp: &str) -> Option<Restored> {
    let pid_bytes = socket::parse_pid(pid)?;
    let d = ctx.shared.detached.take(pid)?;
    let joins = resume(&d, offset, user, nsp)?;
    let streams = ctx.shared.backplane.streams();
    let covered = joins.iter().all(|(room, epoch, after)| {
        streams.peek(room, |s| s.since(epoch, *after).is_some()) == Some(true)
    });
    covered.then_some(Restored {
        sid: d.sid,
        pid: pid_bytes,
        joins,
    })
}

/// [`restore`] in cluster mode: the socket's record taken from Redis (`GETDEL`: no other node
/// gets it), each room's stream checked in Redis; with the record, to keep it again if the
/// socket cannot be made after all.
async fn restore_remote(ctx: &Ctx, asked: &Asked, nsp: &str) -> Option<(Restored, Bytes)> {
    let pid = socket::parse_pid(&asked.pid)?;
    let backplane = &ctx.shared.backplane;
    let redis = backplane.redis()?;
    let record = redis.take_socket(&asked.pid).await.ok()??;
    let d = Detached::decode(&record)?;
    if *d.user != *asked.user || &*d.nsp != nsp {
        // Another user's or namespace's pid: kept again for its own client.
        redis.keep_socket(&asked.pid, record.to_vec());
        return None;
    }
    let joins = resume(&d, asked.offset.as_deref(), &asked.user, nsp)?;
    let checks = joins
        .iter()
        .map(|(room, epoch, after)| backplane.covers(room, epoch, *after));
    let covered = futures_util::future::join_all(checks).await;
    if !covered.into_iter().all(|c| c) {
        return None;
    }
    let restored = Restored {
        sid: d.sid,
        pid,
        joins,
    };
    Some((restored, record))
}

/// Where `d`'s rooms resume for `user` in `nsp` whose last event received was `offset`:
/// (room, epoch, the offset after which to replay); `None` if another user's or namespace's,
/// or if the client's offset is not among those remembered.
fn resume(
    d: &Detached,
    offset: Option<&str>,
    user: &str,
    nsp: &str,
) -> Option<Vec<(Arc<str>, String, u64)>> {
    if &*d.user != user || &*d.nsp != nsp {
        return None;
    }
    let positions: Vec<(Arc<str>, u64)> =
        d.rooms.iter().map(|(r, _, at)| (r.clone(), *at)).collect();
    let points = match offset {
        Some(offset) => d.sent.resume_points(offset, &positions)?,
        // Nothing received yet: fine only if nothing was sent.
        None if d.sent.ring.is_empty() => positions,
        None => return None,
    };
    let joins = points.into_iter().zip(&d.rooms);
    Some(
        joins
            .map(|((room, after), (_, epoch, _))| (room, epoch.clone(), after))
            .collect(),
    )
}

/// Keeps `socket` for recovery (its connection went away without a `DISCONNECT`).
fn detach(ctx: &Ctx, socket: &NspSocket) {
    let (Some(pid), Some(n), Some(user)) = (
        &socket.pid,
        socket.session.socketio.as_deref(),
        socket.session.user(),
    ) else {
        return;
    };
    let Some(sent) = &n.sent else { return };
    let streams = ctx.shared.backplane.streams();
    let rooms = ctx
        .hub
        .session_rooms(&socket.session)
        .into_iter()
        .filter_map(|room| {
            let p = streams.peek(&room, |s| s.position())?;
            Some((room, p.epoch_text(), p.offset))
        })
        .collect();
    let detached = Detached {
        sid: socket.sid(ctx),
        user,
        nsp: n.nsp.clone(),
        rooms,
        sent: sent.borrow_mut().take().map(|s| *s).unwrap_or_default(),
    };
    match ctx.shared.backplane.redis() {
        // Cluster mode: its one home is Redis, where any node finds it. (A copy kept here too
        // could be stale, recovered by another node since, and recover a socket twice.)
        Some(redis) => redis.keep_socket(&socket::pid_text(pid), detached.encode()),
        None => ctx.shared.detached.keep(socket::pid_text(pid), detached),
    }
}

/// Ends `socket`: out of the hub, its commands dropped, its user's slot freed.
fn end(ctx: &Ctx, socket: &NspSocket) {
    ctx.hub.unregister(&socket.session);
    socket.close();
}

/// An Engine.IO session's Socket.IO decoding: a decoder is made for each message and kept
/// between messages only while a binary packet waits for its attachments, so an idle
/// connection holds none.
pub(super) struct Packets {
    parser: Format,
    waiting: Option<Box<Decoder>>,
}

impl Packets {
    pub(super) fn new(parser: Format) -> Packets {
        Packets {
            parser,
            waiting: None,
        }
    }

    /// Hands the Socket.IO packet in `message` to `handle`: none while a binary packet
    /// waits for attachments, and none when it is not Socket.IO, which closes the Engine.IO
    /// session (as socket.io's server does).
    pub(super) fn decode(
        &mut self,
        ctx: &Ctx,
        session: &Session,
        message: &Message<'_>,
        handle: impl FnOnce(Packet<'_>),
    ) {
        let mut fresh = None;
        let decoder = match self.waiting.as_deref_mut() {
            Some(waiting) => waiting,
            None => fresh.insert(Decoder::new(self.parser, limits(ctx))),
        };
        let decoded = match message {
            Message::Text(text) => decoder.text(text),
            Message::Binary(bytes) => decoder.binary(bytes),
        };
        let awaiting = match decoded {
            Ok(Decoded::Packet(packet)) => {
                handle(packet);
                false
            }
            Ok(Decoded::NeedAttachments { .. }) => true,
            Err(SioError::AttachmentsTooLarge { .. }) => {
                // A binary packet past MAX_MESSAGE_BYTES with its attachments: as one message.
                session.close(CloseRequest::new(CloseCode::MessageTooBig), Queued::Flush);
                false
            }
            Err(e) => {
                tracing::debug!(conn = session.id, error = %e, code = e.code(), "closing on a bad Socket.IO packet");
                let close = CloseRequest::with_reason(CloseCode::ProtocolError.as_u16(), e.code());
                session.close(close, Queued::Flush);
                false
            }
        };
        match (awaiting, fresh) {
            (true, Some(fresh)) => self.waiting = Some(Box::new(fresh)),
            (false, _) => self.waiting = None,
            (true, None) => {}
        }
    }
}

/// The decoder's bounds: attachments per packet, and the bytes of a binary packet with them,
/// which `MAX_MESSAGE_BYTES` bounds as it bounds any one message.
fn limits(ctx: &Ctx) -> AttachmentLimits {
    AttachmentLimits {
        max_attachments: MAX_ATTACHMENTS,
        max_bytes: ctx.config().max_message_bytes,
    }
}

impl Handler for SocketIo {
    fn open(ctx: &Rc<Ctx>, session: &Rc<Session>, handshake: &Handshake) -> SocketIo {
        // socket.io's connectTimeout: a session that connects no namespace in time is closed.
        let timeout = ctx.config().socketio_connect_timeout;
        if !timeout.is_zero() {
            let at_ms = ctx.now_ms() + timeout.as_millis() as u64;
            session.deadline.set(Deadline::Connect { at_ms });
        }
        SocketIo {
            packets: Packets::new(handshake.parser),
            sockets: Sockets {
                parser: handshake.parser,
                offered_token: handshake.token.clone(),
                open: Opened::Inline(Open::default()),
            },
        }
    }

    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>) {
        let size = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
        };
        if size > ctx.config().max_message_bytes {
            // One rule on every transport: a message over MAX_MESSAGE_BYTES closes its
            // connection (as socket.io's maxHttpBufferSize does).
            let close = CloseRequest::new(CloseCode::MessageTooBig);
            return session.close(close, Queued::Flush);
        }
        let sockets = &mut self.sockets;
        self.packets.decode(ctx, session, &message, |packet| {
            sockets.packet(ctx, session, packet)
        });
    }

    fn close(mut self, ctx: &Rc<Ctx>, _: &Rc<Session>, _: CloseReason) {
        let sockets = self.sockets.open.write(|open| {
            open.closed = true;
            std::mem::take(&mut open.sockets)
        });
        for socket in &sockets {
            // The connection went away under the socket (whatever the reason: socket.io keeps
            // a socket for recovery unless its namespace was left): keep it for its client.
            detach(ctx, socket);
            end(ctx, socket);
        }
    }
}
