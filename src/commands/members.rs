//! `members`: a page of a room's member users, in user id order, each with its member
//! connections; members only, like `history`. The users are counted process-wide, so a user
//! with connections on several shards is listed once.

use std::rc::Rc;
use std::sync::Arc;

use wsgate_protocol::{ErrorCode, Id, Member, ProtocolError, ServerMessage};

use super::{not_member, Answer};
use crate::node::Ctx;
use crate::session::Session;

/// The page size of a `members` without `limit`.
pub(crate) const DEFAULT_MEMBERS_LIMIT: usize = 100;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    room: &str,
    limit: Option<u32>,
    after: Option<&str>,
) -> Result<Answer, ProtocolError> {
    let Some(room) = ctx.hub.membership(session, room) else {
        return Err(not_member(ErrorCode::RoomForbidden, room));
    };
    let limit = limit.map_or(DEFAULT_MEMBERS_LIMIT, |l| l as usize);
    // Cluster mode: counted on every node.
    if let Some(redis) = ctx.shared.backplane.redis() {
        let ((members, more), _) = redis.members_page(&room, after, limit).await?;
        return Ok(Answer::Members {
            room,
            members,
            more,
        });
    }
    // The session is a member: the room exists, unless it was closed this very moment.
    let (members, more) = ctx
        .shared
        .directory()
        .members_page(&room, after, limit)
        .unwrap_or_default();
    Ok(Answer::Members {
        room,
        members,
        more,
    })
}

/// Encodes the answer for this session alone.
pub(super) fn answer(
    ctx: &Ctx,
    session: &Session,
    id: Id<'_>,
    room: &str,
    members: &[(Arc<str>, u32)],
    more: bool,
) {
    let list: Vec<Member<'_>> = members
        .iter()
        .map(|(user, connections)| Member {
            user,
            connections: *connections,
        })
        .collect();
    let next = members.last().filter(|_| more).map(|(user, _)| &**user);
    ctx.send(
        session,
        &ServerMessage::Members {
            id,
            room,
            members: &list,
            next,
        },
    );
}
