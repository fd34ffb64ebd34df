//! `join`: become a member of a room; idempotent, bounded per connection and per server.

use std::rc::Rc;

use wsgate_protocol::{ErrorCode, ProtocolError};

use crate::hub::JoinRefused;
use crate::node::Ctx;
use crate::session::Session;

pub(super) fn apply(ctx: &Ctx, session: &Rc<Session>, room: &str) -> Result<(), ProtocolError> {
    ctx.hub
        .join(session, room)
        .map_err(|refused| match refused {
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
        })
}
