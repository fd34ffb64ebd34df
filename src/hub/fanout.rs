//! Local fan-out: a delivery handed to every recipient this hub holds, the same encoded frame
//! (one per wire format, shared `Bytes`) queued in each outbox.

use std::rc::Rc;

use super::{Backplane, Delivery, Hub, Target};
use crate::session::Session;
use crate::stats::ShardStats;
use crate::transport::outbound::PushError;

impl<B: Backplane> Hub<B> {
    /// Delivers to this hub's recipients and reports to the delivery's `report`, if any;
    /// returns how many sessions received the event.
    /// A panic while delivering is contained: logged, counted, and this hub's part of the
    /// delivery skipped (a REST report then misses this hub's counts).
    pub(crate) fn deliver_local(&self, d: &Delivery) -> usize {
        crate::panic::contain(self.stats(), self.id, "a delivery", || self.deliver_here(d))
            .unwrap_or(0)
    }

    fn deliver_here(&self, d: &Delivery) -> usize {
        #[cfg(feature = "testing")]
        if self.limits.faults {
            if let Target::Room(room) = &d.target {
                if &**room == crate::panic::PANIC_IN_SHARD {
                    panic!(
                        "injected fault: delivery to {}",
                        crate::panic::PANIC_IN_SHARD
                    );
                }
            }
        }
        let local = self.local.borrow();
        let stats = self.stats();
        let max = self.limits.max_outbound_bytes;
        let mut delivered = 0;
        // For a user that does not ack, a private message delivered counts as acked, unless
        // only Socket.IO sockets that ask for acks got it (their clients' answers ack it).
        let mut acked_by_delivery = false;
        // A private message's offset in its user's stream: a session whose mailbox replay
        // already queued it skips it.
        let user_offset = match (&d.target, d.event.offset()) {
            (Target::User(_), Some(offset)) => Some(offset),
            _ => None,
        };
        let mut push = |s: &Rc<Session>| {
            if Some(s.id) == d.exclude {
                return;
            }
            if user_offset.is_some_and(|o| o <= s.user_floor.get()) {
                return;
            }
            if let Some(except) = &d.exclude_user {
                if s.is_user(except) {
                    return;
                }
            }
            let Some(frames) = d.event.frame_for(s) else {
                return;
            };
            let pushed = if d.ephemeral {
                s.push_ephemeral(frames.frame, max)
            } else {
                frames.push(s, max)
            };
            if pushed.is_ok() && !s.asks_acks() {
                acked_by_delivery = true;
            }
            match pushed {
                Ok(0) => delivered += 1,
                Ok(shed) => {
                    delivered += 1;
                    ShardStats::add(&stats.ephemeral_dropped, u64::from(shed));
                }
                Err(PushError::SlowConsumer) => ShardStats::inc(&stats.slow_consumers),
                Err(PushError::Shed) => ShardStats::inc(&stats.ephemeral_dropped),
                Err(PushError::Closing) => {}
            }
        };
        // Which target users were seen matters only to a waiting report (REST pushes): no
        // allocation for the deliveries of `send`.
        let track = d.report.is_some();
        let mut found = Vec::new();
        match &d.target {
            Target::User(user) => {
                if let Some(sessions) = local.users.get(user) {
                    if track {
                        found.push(d.index);
                    }
                    sessions.iter().for_each(&mut push);
                }
            }
            Target::Users(users) => {
                for (i, user) in users.iter().enumerate() {
                    if let Some(sessions) = local.users.get(user) {
                        if track {
                            found.push(i);
                        }
                        sessions.iter().for_each(&mut push);
                    }
                }
            }
            Target::Room(room) => local
                .rooms
                .get(room)
                .into_iter()
                .flat_map(|members| members.keys())
                .for_each(|m| push(&m.0)),
            Target::Presence(room) => local
                .rooms
                .get(room)
                .into_iter()
                .flatten()
                .filter(|(_, follows)| **follows)
                .for_each(|(m, _)| push(&m.0)),
            Target::Watchers(user) => local
                .watchers
                .get(user)
                .into_iter()
                .flat_map(|watchers| watchers.keys())
                .for_each(|m| push(&m.0)),
            Target::Broadcast => local.users.values().flatten().for_each(&mut push),
        }
        if let (Target::User(user), Some(offset), true) =
            (&d.target, user_offset, acked_by_delivery)
        {
            drop(local);
            self.backplane.delivered(user, offset);
        }
        ShardStats::add(&stats.deliveries, delivered as u64);
        ShardStats::add(&stats.messages_out, delivered as u64);
        if let Some(report) = &d.report {
            report.add(delivered, found);
        }
        delivered
    }
}
