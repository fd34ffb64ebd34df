//! `join`: become a member of a room; idempotent, bounded per connection and per server. The
//! answer carries the room stream's position at the join; with `since` (a position the client
//! saw before), the messages it missed are replayed first, in order.

use std::rc::Rc;

use wsgate_protocol::{ErrorCode, ProtocolError, Since};

use super::Answer;
use crate::hub::JoinRefused;
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    room: &str,
    since: Option<&Since<'_>>,
) -> Result<Answer, ProtocolError> {
    let since = since.map(|s| (&*s.epoch, s.offset));
    let (position, recovered) = ctx
        .hub
        .join_at_position(session, room, since)
        .await
        .map_err(|refused| refusal(ctx, refused))?;
    Ok(Answer::Joined {
        room: room.into(),
        position,
        recovered,
    })
}

fn refusal(ctx: &Ctx, refused: JoinRefused) -> ProtocolError {
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
        JoinRefused::Gone => ProtocolError::new(ErrorCode::Internal, "the connection ended"),
    }
}
