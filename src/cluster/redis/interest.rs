//! Which channels this node is subscribed to: those of the rooms and users it hosts (and the
//! broadcast channel), never a pattern. A channel is wanted when a local member or connection
//! appears and subscribed in a batch with the others wanted meanwhile; it is let go, in a
//! batch too, once nothing local needs it and it was not wanted for [`LINGER`], so that a
//! member leaving and joining again does not churn subscriptions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fred::clients::SubscriberClient;
use fred::interfaces::PubsubInterface;
use fred::util::group_by_hash_slot;
use tokio::sync::{oneshot, Notify};

use super::ClusterStats;

/// How long a channel stays subscribed after it was last wanted, at least.
const LINGER: Duration = Duration::from_secs(2);

/// How often channels nothing needs are looked for.
const SWEEP: Duration = Duration::from_secs(1);

/// Most channels in one SSUBSCRIBE or SUNSUBSCRIBE.
const BATCH: usize = 512;

/// A channel's state.
#[derive(Debug)]
struct Channel {
    subscribed: bool,
    /// Who waits for the subscription to be confirmed.
    waiters: Vec<oneshot::Sender<bool>>,
    wanted: Instant,
}

/// The channels, and the wake-up of the loop that subscribes.
#[derive(Debug, Default)]
pub(super) struct Interest {
    channels: Mutex<HashMap<String, Channel>>,
    wake: Notify,
}

impl Interest {
    /// Wants `channel` (and tells `done` once it is subscribed, or that it could not be).
    /// Returns whether the channel was neither subscribed nor waited for: only the first of
    /// concurrent waiters sees `true`, which is when a copy of its stream made while the
    /// node was not subscribed is stale (the others may already be placed in a new one).
    pub(super) fn want(&self, channel: String, done: Option<oneshot::Sender<bool>>) -> bool {
        let mut channels = lock(&self.channels);
        let entry = channels.entry(channel).or_insert_with(|| Channel {
            subscribed: false,
            waiters: Vec::new(),
            wanted: Instant::now(),
        });
        entry.wanted = Instant::now();
        match (entry.subscribed, done) {
            (true, Some(done)) => {
                let _ = done.send(true);
                false
            }
            (true, None) => false,
            (false, done) => {
                let first = entry.waiters.is_empty();
                entry.waiters.extend(done);
                drop(channels);
                self.wake.notify_one();
                first
            }
        }
    }

    /// The channels subscribed now.
    pub(super) fn subscribed(&self) -> Vec<String> {
        lock(&self.channels)
            .iter()
            .filter(|(_, c)| c.subscribed)
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub(super) fn is_subscribed(&self, channel: &str) -> bool {
        lock(&self.channels)
            .get(channel)
            .is_some_and(|c| c.subscribed)
    }

    /// The loop: subscribes what is wanted, and every [`SWEEP`] lets go of what `needed`
    /// says nothing local needs.
    pub(super) async fn run(
        &self,
        subscriber: &SubscriberClient,
        stats: &ClusterStats,
        needed: impl Fn(&str) -> bool,
    ) {
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = sweep.tick() => self.let_go(subscriber, &needed).await,
            }
            self.subscribe(subscriber).await;
            let count = lock(&self.channels)
                .values()
                .filter(|c| c.subscribed)
                .count();
            stats.channels.store(count as u64, Ordering::Relaxed);
        }
    }

    async fn subscribe(&self, subscriber: &SubscriberClient) {
        let wanted: Vec<String> = lock(&self.channels)
            .iter()
            .filter(|(_, c)| !c.subscribed)
            .map(|(name, _)| name.clone())
            .collect();
        for batch in wanted.chunks(BATCH) {
            let ok = ssubscribe(subscriber, batch.iter().map(String::as_str))
                .await
                .is_ok();
            let mut channels = lock(&self.channels);
            for name in batch {
                if let Some(channel) = channels.get_mut(name) {
                    channel.subscribed |= ok;
                    for done in channel.waiters.drain(..) {
                        let _ = done.send(ok);
                    }
                }
            }
            if !ok {
                // Still wanted: tried again on the next wake-up or sweep.
                tracing::warn!(channels = batch.len(), "cluster: SSUBSCRIBE failed");
            }
        }
    }

    async fn let_go(&self, subscriber: &SubscriberClient, needed: &impl Fn(&str) -> bool) {
        let idle: Vec<String> = lock(&self.channels)
            .iter()
            .filter(|(_, c)| c.waiters.is_empty() && c.wanted.elapsed() > LINGER)
            .map(|(name, _)| name.clone())
            .collect();
        let unneeded: Vec<String> = idle.into_iter().filter(|name| !needed(name)).collect();
        for batch in unneeded.chunks(BATCH) {
            {
                let mut channels = lock(&self.channels);
                for name in batch {
                    // Wanted again meanwhile: kept.
                    if channels
                        .get(name)
                        .is_some_and(|c| c.wanted.elapsed() > LINGER)
                    {
                        channels.remove(name);
                    }
                }
            }
            // A failure leaves the subscription in Redis; its events find no member here.
            for (_, group) in
                group_by_hash_slot(batch.iter().map(String::as_str)).unwrap_or_default()
            {
                let _ = subscriber.sunsubscribe(Vec::from(group)).await;
            }
        }
    }
}

/// `SSUBSCRIBE`s `channels`, one command per hash slot: on a Redis Cluster a command's
/// channels must share a slot (the shard that serves it).
pub(super) async fn ssubscribe<T>(
    subscriber: &SubscriberClient,
    channels: impl IntoIterator<Item = T>,
) -> Result<(), fred::error::Error>
where
    T: TryInto<fred::types::Key>,
    T::Error: Into<fred::error::Error>,
{
    for (_, group) in group_by_hash_slot(channels)? {
        subscriber.ssubscribe(Vec::from(group)).await?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_concurrent_waiters_finds_a_channel_unwanted() {
        let interest = Interest::default();
        let waiter = || oneshot::channel::<bool>().0;
        assert!(interest.want("a".into(), Some(waiter())));
        assert!(
            !interest.want("a".into(), Some(waiter())),
            "one waits already"
        );
        assert!(!interest.want("a".into(), None));
        // Wanted without a waiter (a connection appeared), then waited for: the first waiter.
        let _ = interest.want("b".into(), None);
        assert!(interest.want("b".into(), Some(waiter())));
        lock(&interest.channels)
            .get_mut("a")
            .expect("wanted above")
            .subscribed = true;
        assert!(!interest.want("a".into(), Some(waiter())), "subscribed");
    }
}
