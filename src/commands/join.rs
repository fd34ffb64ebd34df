//! `join`: become a member of a room; idempotent, bounded per connection and per server, and
//! only where the user may go: a public room (made by the join unless `ROOMS_REQUIRE_CREATE`),
//! or a private one it was let into, and with a `rooms` claim in its token, only rooms the
//! claim matches. The answer carries the room stream's position at the join; with `since` (a
//! position the client saw before), the messages it missed are replayed first, in order. With
//! `presence`, the connection starts (or stops) following the room's presence events.

use std::rc::Rc;

use wsgate_protocol::{ErrorCode, ProtocolError, Since};

use super::{Answer, Client};
use crate::cluster::directory::Access;
use crate::hub::JoinRefused;
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    client: &Client,
    room: &str,
    since: Option<&Since<'_>>,
    presence: Option<bool>,
) -> Result<Answer, ProtocolError> {
    may_join(ctx, session, client, room)?;
    let since = since.map(|s| (&*s.epoch, s.offset));
    enter(ctx, session, room, since, presence).await
}

/// Joins `session` to `room` at its stream's place (resuming from `since`), once the checks
/// passed: the answer a `join` (and a `create`) gives.
pub(super) async fn enter(
    ctx: &Ctx,
    session: &Rc<Session>,
    room: &str,
    since: Option<(&str, u64)>,
    presence: Option<bool>,
) -> Result<Answer, ProtocolError> {
    let joined = ctx
        .hub
        .join_at_position(session, room, since, presence)
        .await
        .map_err(|refused| refusal(ctx, refused))?;
    let read = session
        .user()
        .and_then(|user| ctx.shared.backplane.reads().marker(&user, room));
    Ok(Answer::Joined {
        room: room.into(),
        position: joined.position,
        recovered: joined.recovered,
        presence: joined.presence,
        read,
    })
}

/// The room permissions (docs/security.md, "Rooms").
fn may_join(
    ctx: &Ctx,
    session: &Session,
    client: &Client,
    room: &str,
) -> Result<(), ProtocolError> {
    let granted = claim_allows(client, room)?;
    let user = session.user().unwrap_or_default();
    match ctx.shared.directory().access(room, &user) {
        Access::Missing if ctx.config().rooms_require_create => Err(ProtocolError::new(
            ErrorCode::RoomNotFound,
            format!("room {room:?} does not exist"),
        )),
        Access::Missing | Access::Public => Ok(()),
        Access::Private { allowed } if allowed || granted => Ok(()),
        Access::Private { .. } => Err(forbidden(room, "a private room you were not let into")),
    }
}

/// Whether the token's `rooms` claim lets the user into `room`: `Ok(true)` when it names it,
/// `Ok(false)` without a claim, `room.forbidden` when the claim leaves it out.
pub(super) fn claim_allows(client: &Client, room: &str) -> Result<bool, ProtocolError> {
    match client.grant.as_deref() {
        Some(grant) if !grant.allows(room) => Err(forbidden(
            room,
            "your token's rooms claim does not include it",
        )),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

fn forbidden(room: &str, why: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::RoomForbidden, format!("room {room:?}: {why}"))
}

pub(super) fn refusal(ctx: &Ctx, refused: JoinRefused) -> ProtocolError {
    match refused {
        JoinRefused::ConnectionLimit => {
            let max = ctx.config().max_rooms_per_connection;
            ProtocolError::new(
                ErrorCode::RoomLimit,
                format!("a connection may be in at most {max} rooms"),
            )
        }
        JoinRefused::ServerLimit => {
            ProtocolError::new(ErrorCode::RoomLimit, "the server's room limit is reached")
        }
        JoinRefused::RoomFull => {
            ProtocolError::new(ErrorCode::RoomLimit, "the room holds its most members")
        }
        JoinRefused::Gone => ProtocolError::new(ErrorCode::Internal, "the connection ended"),
        JoinRefused::Unavailable => crate::hub::BackplaneError::Unreachable.into(),
    }
}
