//! Client commands: decoded in one place and dispatched, one function per command.

use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{decode_request, CloseCode, Command, ErrorCode, ProtocolError, RawData};

use crate::connection::Connection;
use crate::directory::RoomRefused;
use crate::panic::{Faults, PANIC_IN_CONNECTION};
use crate::router::{Delivery, OutEvent, Target};
use crate::server::UserSlot;
use crate::stats::ShardStats;

/// Decodes one message and runs it. A command with an `id` gets exactly one reply or error.
pub(crate) async fn dispatch(conn: &mut Connection, payload: Bytes) {
    let req = match decode_request(conn.handle.format, &payload) {
        Ok(req) => req,
        Err(e) => return conn.send_error(e.id.as_ref(), &e.error),
    };
    if !conn.take_token() {
        let e = ProtocolError::new(ErrorCode::RateLimited, "command rate limit exceeded");
        return conn.send_error(req.id.as_ref(), &e);
    }
    let result = match req.command {
        Command::Auth { token } => auth(conn, &token),
        Command::Ping => Ok(()),
        _ if !conn.is_authenticated() => Err(ProtocolError::new(
            ErrorCode::AuthRequired,
            "authenticate first: send auth with a token",
        )),
        Command::Join { room } => join(conn, &room),
        Command::Leave { room } => leave(conn, &room),
        Command::Publish {
            room,
            event,
            data,
            echo,
        } => publish(conn, &payload, &room, &event, data, echo).await,
        Command::Send {
            to,
            event,
            data,
            echo,
        } => send(conn, &payload, &to, &event, data, echo).await,
    };
    match (result, req.id) {
        (Ok(()), Some(id)) => conn.send_reply(id),
        (Ok(()), None) => {}
        (Err(e), id) => conn.send_error(id.as_ref(), &e),
    }
    if let Some((code, reason)) = conn.close_after_answer.take() {
        conn.handle.close(code.as_u16(), reason, false);
    }
}

/// `auth`: verifies the token; on failure the error is followed by a close with 1008. On an
/// authenticated connection it refreshes the token instead (see [`refresh`]).
fn auth(conn: &mut Connection, token: &str) -> Result<(), ProtocolError> {
    if conn.is_authenticated() {
        return refresh(conn, token);
    }
    let shared = conn.shard.shared.clone();
    let refused = |conn: &mut Connection, e: ProtocolError| {
        conn.close_after_answer = Some((CloseCode::PolicyViolation, e.code.as_str()));
        e
    };
    let identity = match shared.verifier.verify(token) {
        Ok(identity) => identity,
        Err(e) => {
            ShardStats::inc(&conn.shard.stats().auth_failures);
            return Err(refused(conn, e));
        }
    };
    let Some(slot) = UserSlot::acquire(&shared, &identity.user) else {
        let max = shared.config.max_connections_per_user;
        let e = ProtocolError::new(
            ErrorCode::UserConnectionLimit,
            format!("user already holds {max} connections"),
        );
        return Err(refused(conn, e));
    };
    conn.authenticate(identity, slot);
    Ok(())
}

/// `auth` again: a valid token for the same user moves the connection's expiry to the new
/// token's. A refused token, or one for another user, is an error and changes nothing: the
/// connection stays open until the token it has expires.
fn refresh(conn: &mut Connection, token: &str) -> Result<(), ProtocolError> {
    let identity = conn.shard.shared.verifier.verify(token).inspect_err(|_| {
        ShardStats::inc(&conn.shard.stats().auth_failures);
    })?;
    if conn.handle.user.borrow().as_deref() != Some(&*identity.user) {
        return Err(ProtocolError::new(
            ErrorCode::AuthAlready,
            "already authenticated as another user",
        ));
    }
    conn.set_expiry(identity.expires_at);
    Ok(())
}

/// `join`: idempotent; bounded per connection and per server.
fn join(conn: &mut Connection, room: &str) -> Result<(), ProtocolError> {
    let handle = &conn.handle;
    if handle.rooms.borrow().iter().any(|r| &**r == room) {
        return Ok(());
    }
    let max = conn.shard.shared.config.max_rooms_per_connection;
    if handle.rooms.borrow().len() >= max as usize {
        return Err(ProtocolError::new(
            ErrorCode::RoomLimit,
            format!("a connection may be in at most {max} rooms"),
        ));
    }
    let room = conn.shard.room_name(room);
    conn.shard
        .shared
        .directory
        .add_member(&room)
        .map_err(|_: RoomRefused| {
            ProtocolError::new(ErrorCode::RoomLimit, "the server's room limit is reached")
        })?;
    conn.shard.join_local(&room, handle);
    handle.rooms.borrow_mut().push(room);
    Ok(())
}

/// `leave`: only a room the connection is in.
fn leave(conn: &mut Connection, room: &str) -> Result<(), ProtocolError> {
    let handle = &conn.handle;
    let removed = {
        let mut rooms = handle.rooms.borrow_mut();
        rooms
            .iter()
            .position(|r| &**r == room)
            .map(|i| rooms.swap_remove(i))
    };
    let Some(room) = removed else {
        return Err(not_member(ErrorCode::RoomNotJoined, room));
    };
    conn.shard.leave_local(&room, handle.id);
    conn.shard.shared.directory.remove_member(&room);
    Ok(())
}

/// `publish`: members only; reaches every member except the sender unless `echo`.
async fn publish(
    conn: &mut Connection,
    payload: &Bytes,
    room: &str,
    event: &str,
    data: RawData<'_>,
    echo: bool,
) -> Result<(), ProtocolError> {
    let member = conn
        .handle
        .rooms
        .borrow()
        .iter()
        .find(|r| &***r == room)
        .cloned();
    let Some(room) = member else {
        return Err(not_member(ErrorCode::RoomForbidden, room));
    };
    if conn.shard.shared.config.faults == Faults::On && &*room == PANIC_IN_CONNECTION {
        panic!("injected fault: publish to {PANIC_IN_CONNECTION}");
    }
    emit(
        conn,
        payload,
        Target::Room(room.clone()),
        Some(room),
        event,
        data,
        echo,
    )
    .await;
    Ok(())
}

/// `send`: reaches every connection of user `to`, except the sender unless `echo`.
async fn send(
    conn: &mut Connection,
    payload: &Bytes,
    to: &str,
    event: &str,
    data: RawData<'_>,
    echo: bool,
) -> Result<(), ProtocolError> {
    emit(
        conn,
        payload,
        Target::User(Arc::from(to)),
        None,
        event,
        data,
        echo,
    )
    .await;
    Ok(())
}

/// Wraps the sender's event (its `data` a zero-copy slice of the message) and routes it; it is
/// encoded at most once per format, by the first shard that needs that format.
async fn emit(
    conn: &Connection,
    payload: &Bytes,
    target: Target,
    room: Option<Arc<str>>,
    event: &str,
    data: RawData<'_>,
    echo: bool,
) {
    let ev = OutEvent::new(
        event,
        room,
        conn.user(),
        owned(payload, data),
        data.format(),
    );
    let exclude = (!echo).then_some(conn.handle.id);
    conn.shard
        .route(Delivery {
            exclude,
            ..Delivery::new(target, ev)
        })
        .await;
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
