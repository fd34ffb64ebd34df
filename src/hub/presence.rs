//! Presence on one shard: which of its sessions follow a room's `presence.join` /
//! `presence.leave` events (a `join` with `presence: true`) and which users each session
//! watches (`watch`), and the presence events themselves. What changed is decided process-wide
//! (the backplane's directory counts members per user, and connections per user); each hub only
//! hands the events to its own followers.
//!
//! A session that follows nothing and watches nobody has no entry here: an idle connection
//! costs nothing.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::Format;

use super::{Backplane, Delivery, Hub, Member, OutEvent, Registry, Target};
use crate::session::Session;

/// A change of presence, decided process-wide, to announce to whoever follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// The user's first connection in the room joined it (a room that announces presence).
    Joined {
        room: &'a Arc<str>,
        user: &'a Arc<str>,
    },
    /// The user's last connection in the room left it.
    Left {
        room: &'a Arc<str>,
        user: &'a Arc<str>,
    },
    /// A watched user connected, and was not within the grace of a disconnect.
    Online(&'a Arc<str>),
    /// A watched user has had no connection for the grace period.
    Offline(&'a Arc<str>),
}

/// The event that announces `change`, for every hub: `{"user": …}` as its data, no `from`, no
/// offset (presence is not in the room's stream). The user's own connections do not get its
/// `presence.join` / `presence.leave`.
pub(crate) fn presence_event(change: Change<'_>) -> Delivery {
    let (name, room, user) = match change {
        Change::Joined { room, user } => ("presence.join", Some(room), user),
        Change::Left { room, user } => ("presence.leave", Some(room), user),
        Change::Online(user) => ("user.online", None, user),
        Change::Offline(user) => ("user.offline", None, user),
    };
    let data = serde_json::to_vec(&serde_json::json!({ "user": &**user }))
        .unwrap_or_else(|_| b"null".to_vec());
    let event = OutEvent::new(name, room.cloned(), None, Bytes::from(data), Format::Json);
    match room {
        Some(room) => Delivery {
            exclude_user: Some(user.clone()),
            ..Delivery::new(Target::Presence(room.clone()), event)
        },
        None => Delivery::new(Target::Watchers(user.clone()), event),
    }
}

/// Why a `watch` was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WatchRefused {
    /// The session would watch more than `MAX_WATCHED_USERS` users.
    Limit,
}

impl<B: Backplane> Hub<B> {
    /// Makes `session`, a member of `room`, follow the room's presence events or stop; whether
    /// it follows them now (never in a room that announces no presence, nor when it is not a
    /// member here).
    pub(crate) fn follow_presence(&self, session: &Session, room: &Arc<str>, on: bool) -> bool {
        let mut local = self.local.borrow_mut();
        let Some(follows) = local
            .rooms
            .get_mut(room)
            .and_then(|members| members.get_mut(&session.id))
        else {
            return false;
        };
        match (on, *follows) {
            (true, true) => true,
            // Counted before it is marked here: a change announced from then on finds it.
            (true, false) if self.backplane.follow(room) => {
                *follows = true;
                true
            }
            (true, false) => false,
            (false, true) => {
                *follows = false;
                self.backplane.unfollow(room);
                false
            }
            (false, false) => false,
        }
    }

    /// `session` watches `users` too (each counted once, whatever the repeats); each one's
    /// state now, in the order first named. Refused, with nothing changed, past
    /// `MAX_WATCHED_USERS`.
    pub(crate) fn watch(
        &self,
        session: &Rc<Session>,
        users: &[Cow<'_, str>],
    ) -> Result<Vec<(Arc<str>, bool)>, WatchRefused> {
        let mut local = self.local.borrow_mut();
        let watching = local
            .watching
            .get(&session.id)
            .map_or(&[][..], Vec::as_slice);
        let mut named: Vec<(Arc<str>, bool)> = Vec::with_capacity(users.len());
        for user in users {
            if named.iter().all(|(u, _)| **u != **user) {
                let already = watching.iter().any(|u| **u == **user);
                named.push((Arc::from(&**user), already));
            }
        }
        let new = named.iter().filter(|(_, already)| !already).count();
        if watching.len() + new > self.limits.max_watched_users as usize {
            return Err(WatchRefused::Limit);
        }
        let states = named
            .into_iter()
            .map(|(user, already)| {
                if already {
                    let online = self.backplane.online(&user);
                    return (user, online);
                }
                local
                    .watchers
                    .entry(user.clone())
                    .or_default()
                    .insert(Member(session.clone()), ());
                local
                    .watching
                    .entry(session.id)
                    .or_default()
                    .push(user.clone());
                let online = self.backplane.watch(&user);
                (user, online)
            })
            .collect();
        Ok(states)
    }

    /// `session` stops watching `users` (those it does not watch are ignored).
    pub(crate) fn unwatch(&self, session: &Session, users: &[Cow<'_, str>]) {
        let mut local = self.local.borrow_mut();
        let Some(watching) = local.watching.get_mut(&session.id) else {
            return;
        };
        let mut dropped = Vec::new();
        watching.retain(|u| {
            let keep = !users.iter().any(|named| **named == **u);
            if !keep {
                dropped.push(u.clone());
            }
            keep
        });
        if watching.is_empty() {
            local.watching.remove(&session.id);
        }
        for user in dropped {
            self.drop_watcher(&mut local, &user, session.id);
        }
    }

    /// Ends every watch of a session that is going away.
    pub(super) fn unwatch_all(&self, local: &mut Registry, session: u64) {
        for user in local.watching.remove(&session).unwrap_or_default() {
            self.drop_watcher(local, &user, session);
        }
    }

    fn drop_watcher(&self, local: &mut Registry, user: &str, session: u64) {
        if let Some(watchers) = local.watchers.get_mut(user) {
            watchers.swap_remove(&session);
            if watchers.is_empty() {
                local.watchers.remove(user);
            }
        }
        self.backplane.unwatch(user);
    }
}
