//! `send`: an event to every connection of one user, except the sender's (unless `echo`).

use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{ProtocolError, RawData};

use super::{emit, Outgoing};
use crate::hub::Target;
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Session,
    payload: &Bytes,
    to: &str,
    event: &str,
    data: RawData<'_>,
    echo: bool,
) -> Result<Option<u64>, ProtocolError> {
    let out = Outgoing {
        target: Target::User(Arc::from(to)),
        event,
        data,
        echo,
        ephemeral: false,
    };
    emit(ctx, session, payload, out).await
}
