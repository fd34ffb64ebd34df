//! `leave`: end the membership of a room the connection is in.

use wsgate_protocol::{ErrorCode, ProtocolError};

use super::not_member;
use crate::node::Ctx;
use crate::session::Session;

pub(super) fn apply(ctx: &Ctx, session: &Session, room: &str) -> Result<(), ProtocolError> {
    if ctx.hub.leave(session, room) {
        Ok(())
    } else {
        Err(not_member(ErrorCode::RoomNotJoined, room))
    }
}
