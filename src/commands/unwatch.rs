//! `unwatch`: stop receiving some users' `user.online` / `user.offline` events (a user not
//! watched is not an error).

use std::borrow::Cow;

use crate::node::Ctx;
use crate::session::Session;

pub(super) fn apply(ctx: &Ctx, session: &Session, users: &[Cow<'_, str>]) {
    ctx.hub.unwatch(session, users);
}
