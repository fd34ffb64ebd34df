//! `read`: the user read a room up to an offset of its stream: its read marker moves there
//! (never back), is kept (in the store too), and comes back in every `join` reply as `read`,
//! so the room's unread count is `offset - read`. With `READ_RECEIPTS`, the room's other
//! members get a `read` event (not stored in the stream). Members only.

use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{ErrorCode, Format, ProtocolError};

use super::{not_member, Answer};
use crate::cluster::reads::{MarkRefused, MAX_MARKERS_PER_USER};
use crate::hub::{Delivery, OutEvent, Target};
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Session,
    room: &str,
    offset: u64,
) -> Result<Answer, ProtocolError> {
    let Some(room) = ctx.hub.membership(session, room) else {
        return Err(not_member(ErrorCode::RoomForbidden, room));
    };
    let Some(user) = session.user() else {
        return Err(not_member(ErrorCode::RoomForbidden, &room));
    };
    let backplane = &ctx.shared.backplane;
    // Nobody reads past the stream's end.
    let last = backplane
        .streams()
        .peek(&room, |s| s.position().offset)
        .unwrap_or(0);
    let (slot, _) = ctx.shared.store().reserve().await;
    let marker = backplane
        .reads()
        .mark(&user, &room, offset.min(last), slot)
        .map_err(|MarkRefused::Limit| {
            ProtocolError::new(
                ErrorCode::RoomLimit,
                format!("read markers are kept in at most {MAX_MARKERS_PER_USER} rooms per user"),
            )
        })?;
    if ctx.config().read_receipts {
        let data = Bytes::from(format!(r#"{{"offset":{marker}}}"#));
        let event = OutEvent::new("read", Some(room.clone()), Some(user), data, Format::Json);
        let delivery = Delivery {
            exclude: Some(session.id),
            ..Delivery::new(Target::Room(Arc::clone(&room)), event)
        };
        ctx.hub.deliver_unsequenced(delivery).await?;
    }
    Ok(Answer::Done)
}
