//! One event for one target as it travels between hubs, and the report that adds up what it
//! reached when someone waits for that (a REST push answering with counts).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::event::{OutEvent, Target};

/// What a delivery reached, added up by every hub without a lock; the last hub to report wakes
/// the waiter.
#[derive(Debug)]
pub(crate) struct Report {
    delivered: AtomicUsize,
    /// Per user of a [`Target::Users`] (or the one [`Target::User`]): found on some hub.
    found: Box<[AtomicBool]>,
    pending: AtomicUsize,
    done: Notify,
}

impl Report {
    /// A report awaiting `hubs` parts, tracking `users` target users.
    pub(crate) fn new(hubs: usize, users: usize) -> Arc<Report> {
        Arc::new(Report {
            delivered: AtomicUsize::new(0),
            found: (0..users).map(|_| AtomicBool::new(false)).collect(),
            pending: AtomicUsize::new(hubs),
            done: Notify::new(),
        })
    }

    /// `parts` more parts to wait for (before any is added: a delivery split in several).
    pub(crate) fn expect(&self, parts: usize) {
        self.pending.fetch_add(parts, Ordering::AcqRel);
    }

    /// One hub's part: `delivered` connections reached; `found(i)` for target users seen.
    pub(crate) fn add(&self, delivered: usize, found: impl IntoIterator<Item = usize>) {
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        for i in found {
            if let Some(f) = self.found.get(i) {
                f.store(true, Ordering::Relaxed);
            }
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every hub has reported; returns connections reached and, per target user,
    /// whether any connection was found.
    pub(crate) async fn wait(&self) -> (usize, Vec<bool>) {
        if self.pending.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let found = self
            .found
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect();
        (self.delivered.load(Ordering::Relaxed), found)
    }
}

/// One event for one target, as carried between hubs.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) target: Target,
    pub(crate) event: Arc<OutEvent>,
    /// A connection not to deliver to (the sender, unless it asked for an echo).
    pub(crate) exclude: Option<u64>,
    /// A user none of whose connections get it (a REST room push's `exceptUserId`).
    pub(crate) exclude_user: Option<Arc<str>>,
    /// Where to add up what it reached, when someone waits for that.
    pub(crate) report: Option<Arc<Report>>,
    /// For a [`Target::User`] that is one of a report's several users: its index there.
    pub(crate) index: usize,
    /// Not stored (no offset, no history, no replay) and dropped first for a recipient whose
    /// queue is filling (`transport::outbound`).
    pub(crate) ephemeral: bool,
}

impl Delivery {
    /// A delivery with no exclusions and no report.
    pub(crate) fn new(target: Target, event: Arc<OutEvent>) -> Delivery {
        Delivery {
            target,
            event,
            exclude: None,
            exclude_user: None,
            report: None,
            index: 0,
            ephemeral: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_add_up_and_wake_once_all_shards_reported() {
        let r = Report::new(2, 3);
        r.add(2, [0]);
        r.add(1, [2]);
        assert_eq!(r.wait().await, (3, vec![true, false, true]));
    }
}
