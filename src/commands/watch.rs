//! `watch`: receive `user.online` / `user.offline` events of some users, at most
//! `MAX_WATCHED_USERS` per connection; the answer gives each one's state now. Online means
//! connected, or within `PRESENCE_GRACE` of its last connection closing.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use wsgate_protocol::{ErrorCode, Id, ProtocolError, ServerMessage, UserState};

use super::Answer;
use crate::hub::WatchRefused;
use crate::node::Ctx;
use crate::session::Session;

/// Cluster mode: each state is read from Redis once this node is subscribed to the user's
/// changes (a change from then on reaches the watcher); if Redis does not answer, the watch
/// stays and the answer is `cluster.unavailable`.
pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    users: &[Cow<'_, str>],
) -> Result<Answer, ProtocolError> {
    match ctx.hub.watch(session, users) {
        Ok(mut states) => {
            if let Some(redis) = ctx.shared.backplane.redis() {
                for (user, online) in &mut states {
                    redis.watch_subscribed(user).await?;
                    *online = redis.user_presence(user).await?.0;
                }
            }
            Ok(Answer::Watching { states })
        }
        Err(WatchRefused::Limit) => {
            let max = ctx.config().max_watched_users;
            Err(ProtocolError::new(
                ErrorCode::WatchLimit,
                format!("a connection may watch at most {max} users"),
            ))
        }
    }
}

/// Encodes the answer for this session alone.
pub(super) fn answer(ctx: &Ctx, session: &Session, id: Id<'_>, states: &[(Arc<str>, bool)]) {
    let users: Vec<UserState<'_>> = states
        .iter()
        .map(|(user, online)| UserState {
            user,
            online: *online,
        })
        .collect();
    ctx.send(session, &ServerMessage::Watching { id, users: &users });
}
