//! `send`: an event to every connection of one user, except the sender's (unless `echo`).

use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::{ProtocolError, RawData};

use super::emit;
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
) -> Result<(), ProtocolError> {
    let target = Target::User(Arc::from(to));
    emit(ctx, session, payload, target, event, data, echo).await
}
