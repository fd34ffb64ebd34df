//! `ack`: the user received its private messages up to an offset of its stream; they are not
//! delivered again. A user that acks gets at-least-once delivery: what it did not ack comes
//! again on its next connection. A Socket.IO socket's answers to private messages asking for
//! an ack (`SOCKETIO_PRIVATE_ACKS`) come here too.

use wsgate_protocol::ProtocolError;

use crate::node::Ctx;
use crate::session::Session;

pub(crate) async fn apply(ctx: &Ctx, session: &Session, offset: u64) -> Result<(), ProtocolError> {
    // Authenticated: the dispatcher checked.
    if let Some(user) = session.user() {
        ctx.hub.ack(&user, offset).await?;
    }
    Ok(())
}
