//! `create`: a room with options (`private`, `maxMembers`), made by the same path as
//! `POST /api/v1/rooms` with the user recorded as its creator (so it may always join it, private
//! or not); the creating connection then joins it, and the answer carries the room stream's
//! position like a `join`'s. Refused: a room outside the token's `rooms` claim
//! (`room.forbidden`), a room that exists (`room.conflict`), and at the room bounds
//! (`room.limit`: rooms per connection, rooms on the server, rooms the user created).

use std::rc::Rc;
use std::sync::Arc;

use wsgate_protocol::{ErrorCode, ProtocolError};

use super::join::{claim_allows, enter, refusal};
use super::{Answer, Client};
use crate::cluster::{Creator, RoomOptions};
use crate::hub::{JoinRefused, RoomRefused};
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    client: &Client,
    room: &str,
    options: RoomOptions,
) -> Result<Answer, ProtocolError> {
    claim_allows(client, room)?;
    // Checked first, so that a room is not made for a join that would be refused.
    if ctx.hub.at_room_limit(session) {
        return Err(refusal(ctx, JoinRefused::ConnectionLimit));
    }
    let creator = Creator::Client {
        user: session.user().unwrap_or_default(),
        max_rooms: ctx.config().max_rooms_created_per_user,
    };
    let name: Arc<str> = Arc::from(room);
    let (slot, _) = ctx.shared.store().reserve().await;
    let backplane = &ctx.shared.backplane;
    let info = backplane
        .create_room(&name, creator, options, slot)
        .map_err(|refused| not_created(ctx, room, refused))?;
    backplane
        .share_room(&name, &info)
        .await
        .map_err(|refused| not_created(ctx, room, refused))?;
    enter(ctx, session, room, None, None).await
}

fn not_created(ctx: &Ctx, room: &str, refused: RoomRefused) -> ProtocolError {
    match refused {
        RoomRefused::Exists => ProtocolError::new(
            ErrorCode::RoomConflict,
            format!("room {room:?} already exists"),
        ),
        RoomRefused::CreatorLimit => {
            let message = match ctx.config().max_rooms_created_per_user {
                0 => "this server lets no client create rooms".to_owned(),
                max => format!("a user may have created at most {max} rooms that are not closed"),
            };
            ProtocolError::new(ErrorCode::RoomLimit, message)
        }
        RoomRefused::TooManyRooms | RoomRefused::Full => refusal(ctx, JoinRefused::ServerLimit),
        RoomRefused::Unavailable => refusal(ctx, JoinRefused::Unavailable),
    }
}
