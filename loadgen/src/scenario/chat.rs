//! The `chat` scenario's driving logic: every connection is a user in room `i % rooms`
//! publishing at a per-user rate (round robin over the worker's users), while connections are
//! dropped and reconnected at the churn rate (and resume their room's stream where they left
//! it). Publishes are echoed, so each user receives its room's whole stream and can check that
//! no offset is missing or repeated.

use super::actions::Actions;

/// Publishes one pass of the loop may send (the worker goes back to its sockets after it).
const PUBLISH_BUDGET: u32 = 10_000;

/// A chat run, in one worker.
pub(crate) struct Chat {
    rooms: u32,
    rate_per_user: f64,
    /// Disconnect/reconnect cycles per second, all workers together.
    churn_per_sec: f64,
    /// Connections in the whole run (this worker churns its share of the rate).
    total: u64,
    /// Publishes sent so far.
    sent: u64,
    /// The next user to publish (modulo the worker's connections).
    cursor: usize,
    /// Connections churned so far.
    churned: u64,
}

impl Chat {
    /// A chat over `rooms` rooms (at least 1) among `total` connections.
    pub(crate) fn new(rooms: u32, rate_per_user: f64, churn_per_sec: f64, total: u64) -> Self {
        Chat {
            rooms: rooms.max(1),
            rate_per_user,
            churn_per_sec,
            total,
            sent: 0,
            cursor: 0,
            churned: 0,
        }
    }

    /// Rooms of the run (at least 1).
    pub(crate) fn rooms(&self) -> u32 {
        self.rooms
    }

    /// The room of connection `global`.
    pub(crate) fn room(&self, global: u64) -> u32 {
        (global % u64::from(self.rooms)) as u32
    }

    /// Publishes and churns what is due `elapsed` seconds into the measured phase.
    pub(crate) fn drive<A: Actions>(&mut self, a: &mut A, elapsed: f64, now: u64) {
        let n = a.len();
        if n == 0 {
            return;
        }
        let due = (elapsed * self.rate_per_user * n as f64) as u64;
        let mut budget = PUBLISH_BUDGET;
        while self.sent < due && budget > 0 {
            let idx = self.cursor % n;
            self.cursor += 1;
            self.sent += 1;
            budget -= 1;
            a.publish(idx, now, true);
        }
        let share = n as f64 / self.total.max(1) as f64;
        let churn_due = (elapsed * self.churn_per_sec * share) as u64;
        while self.churned < churn_due {
            self.churned += 1;
            let idx = (a.rand() % n as u64) as usize;
            if a.is_open(idx) {
                a.churn(idx, now);
            }
        }
    }
}
