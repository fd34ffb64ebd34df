//! `publish`: an event to every member of a room except the sender (unless `echo`); members
//! only.

use bytes::Bytes;
use wsgate_protocol::{ErrorCode, ProtocolError, RawData};

use super::{emit, not_member};
use crate::hub::Target;
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Session,
    payload: &Bytes,
    room: &str,
    event: &str,
    data: RawData<'_>,
    echo: bool,
) -> Result<(), ProtocolError> {
    let Some(room) = ctx.hub.membership(session, room) else {
        return Err(not_member(ErrorCode::RoomForbidden, room));
    };
    #[cfg(feature = "testing")]
    if ctx.config().faults == crate::panic::Faults::On
        && &*room == crate::panic::PANIC_IN_CONNECTION
    {
        panic!(
            "injected fault: publish to {}",
            crate::panic::PANIC_IN_CONNECTION
        );
    }
    emit(ctx, session, payload, Target::Room(room), event, data, echo).await
}
