//! Cluster mode's presence on the local backplane's side (`CLUSTER_REDIS_URL`): what this
//! node hosts, marked for Redis as it changes (`crate::cluster::redis::presence` syncs it),
//! and the presence changes Redis publishes, delivered to this node's followers and watchers.

use std::sync::Arc;

use super::{Local, ShardMsg};
use crate::hub::{Delivery, Target};
use crate::store::Message;

impl Local {
    /// `user`'s connections here changed: marked for Redis.
    pub(super) fn presence_user(&self, user: &Arc<str>) {
        if let Some(redis) = &self.redis {
            redis.presence.user_changed(user);
        }
    }

    /// Whether a connection here watches `user` (its watch channel is needed).
    pub(crate) fn watches_user(&self, user: &str) -> bool {
        self.directory.is_watched(user)
    }

    /// Cluster mode: the users with member connections of `room` here (none otherwise).
    pub(super) fn members_here(&self, room: &str) -> Vec<Arc<str>> {
        if self.redis.is_none() {
            return Vec::new();
        }
        let page = self.directory.members_page(room, None, usize::MAX);
        page.map(|(users, _)| users.into_iter().map(|(u, _)| u).collect())
            .unwrap_or_default()
    }

    /// The room was closed here with `users`' members: counted out in Redis too.
    pub(super) fn members_gone(&self, room: &str, users: Vec<Arc<str>>) {
        let Some(redis) = &self.redis else { return };
        let room: Arc<str> = Arc::from(room);
        for user in users {
            redis.presence.member_changed(&room, &user);
        }
    }

    /// Marks everything this node hosts for Redis again (Redis lost it, or the other nodes
    /// took this one for dead).
    pub(crate) fn resync_presence(&self) {
        let Some(redis) = &self.redis else { return };
        let mut cursor: Option<Arc<str>> = None;
        loop {
            let (page, more) = self.directory.users_page(cursor.as_deref(), 1000);
            for (user, _) in &page {
                redis.presence.user_changed(user);
            }
            cursor = page.last().map(|(u, _)| u.clone());
            if !more {
                break;
            }
        }
        for (room, user) in self.directory.memberships() {
            redis.presence.member_changed(&room, &user);
        }
    }

    /// Hands a presence change that came from Redis (`presence.*` of `room`, or `user.*` of
    /// a watched user) to every hub, which gives it to its followers or watchers.
    pub(super) async fn deliver_presence(
        &self,
        target: Target,
        exclude: Option<Arc<str>>,
        message: Message,
    ) {
        let event = crate::cluster::streams::message_event(message);
        let d = Delivery {
            exclude_user: exclude,
            ephemeral: true,
            ..Delivery::new(target, event)
        };
        for shard in 0..self.inboxes.len() {
            self.send(shard, ShardMsg::Deliver(d.clone())).await;
        }
    }
}
