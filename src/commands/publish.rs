//! `publish`: an event to every member of a room except the sender (unless `echo`); members
//! only. A stored event takes the room stream's next offset; an ephemeral one (typing) is
//! delivered without being stored, under its own rate limit (taken in `dispatch`).

use bytes::Bytes;
use wsgate_protocol::{ErrorCode, ProtocolError, RawData};

use super::{emit, not_member, Outgoing};
use crate::hub::Target;
use crate::node::Ctx;
use crate::session::Session;

/// A decoded `publish`.
pub(super) struct Publish<'a> {
    pub(super) room: &'a str,
    pub(super) event: &'a str,
    pub(super) data: RawData<'a>,
    pub(super) echo: bool,
    pub(super) ephemeral: bool,
}

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Session,
    payload: &Bytes,
    publish: Publish<'_>,
) -> Result<Option<u64>, ProtocolError> {
    let Some(room) = ctx.hub.membership(session, publish.room) else {
        return Err(not_member(ErrorCode::RoomForbidden, publish.room));
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
    let out = Outgoing {
        target: Target::Room(room),
        event: publish.event,
        data: publish.data,
        echo: publish.echo,
        ephemeral: publish.ephemeral,
    };
    emit(ctx, session, payload, out).await
}
