//! The slots that bound connections: one of the server's `MAX_CONNECTIONS` ([`ConnPermit`],
//! taken before the upgrade) and one of its user's `MAX_CONNECTIONS_PER_USER` ([`UserSlot`]).
//! Both are released when dropped, so no path can leak one. A user's slots are also its
//! presence: its first is announced online to its watchers, its last starts the grace.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;

/// One slot of `max_connections`, released on drop.
pub(crate) struct ConnPermit(Arc<Shared>);

impl ConnPermit {
    /// Takes a slot, unless the server is full.
    pub(crate) fn acquire(shared: &Arc<Shared>) -> Option<ConnPermit> {
        let max = shared.config.max_connections;
        shared
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnPermit(shared.clone()))
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of a user's `max_connections_per_user` slots, released on drop.
pub(crate) struct UserSlot {
    shared: Arc<Shared>,
    user: Arc<str>,
}

impl UserSlot {
    /// Takes a slot for `user`, unless it holds the maximum already.
    pub(crate) fn acquire(shared: &Arc<Shared>, user: &Arc<str>) -> Option<UserSlot> {
        shared.backplane.connect(user).then(|| UserSlot {
            shared: shared.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.shared.backplane.disconnect(&self.user);
    }
}
