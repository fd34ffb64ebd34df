//! The `fanout` scenario's driving logic: the first `publishers` connections publish to their
//! rooms at a fixed rate, in a closed loop (a window of publishes awaiting delivery to every
//! member) or in bursts; every other connection only receives.

use crate::plan::{now_ns, PublishMode};

use super::actions::Actions;

/// Publishes one publisher may send in one pass of the fixed-rate loop.
const RATE_BUDGET: u32 = 1000;

/// The publishing side of a fanout run, in one worker.
pub(crate) struct Fanout {
    /// Publishers in the whole run (global indexes `0..publishers_total`).
    publishers_total: u32,
    rooms: u32,
    mode: PublishMode,
    echo: bool,
    /// This worker's publishers, by local index.
    publishers: Vec<usize>,
    /// Burst mode: when the next burst is due (ns).
    next_burst_ns: u64,
}

impl Fanout {
    /// The fanout for a worker whose connections start at global index `first`.
    pub(crate) fn new(
        first: u64,
        count: usize,
        rooms: u32,
        publishers: u32,
        mode: PublishMode,
        echo: bool,
    ) -> Self {
        Fanout {
            publishers_total: publishers,
            rooms: rooms.max(1),
            mode,
            echo,
            publishers: (0..count)
                .filter(|local| first + (*local as u64) < u64::from(publishers))
                .collect(),
            next_burst_ns: 0,
        }
    }

    /// Rooms of the run (at least 1).
    pub(crate) fn rooms(&self) -> u32 {
        self.rooms
    }

    /// The room of connection `global`: publishers and subscribers are each dealt round
    /// robin over the rooms.
    pub(crate) fn room(&self, global: u64) -> u32 {
        let rooms = u64::from(self.rooms);
        let publishers = u64::from(self.publishers_total);
        if global < publishers {
            (global % rooms) as u32
        } else {
            ((global - publishers) % rooms) as u32
        }
    }

    /// Whether connection `global` publishes (the first `publishers` connections).
    pub(crate) fn is_publisher(&self, global: u64) -> bool {
        global < u64::from(self.publishers_total)
    }

    /// The measured phase starts at `start_ns`.
    pub(crate) fn start(&mut self, start_ns: u64) {
        self.next_burst_ns = start_ns;
    }

    /// Publishes what is due `elapsed` seconds into the measured phase.
    pub(crate) fn drive<A: Actions>(&mut self, a: &mut A, elapsed: f64, now: u64) {
        let echo = self.echo;
        match self.mode {
            PublishMode::Rate { per_sec } => {
                let per_pub = per_sec / f64::from(self.publishers_total.max(1));
                let due = (elapsed * per_pub) as u64 + 1;
                for &idx in &self.publishers {
                    let mut budget = RATE_BUDGET;
                    while a.is_open(idx) && a.published(idx) < due && budget > 0 {
                        a.publish(idx, now, echo);
                        budget -= 1;
                    }
                }
            }
            PublishMode::Closed { window } => {
                for &idx in &self.publishers {
                    while a.is_open(idx) && a.in_flight(idx) < window.max(1) {
                        a.publish(idx, now, echo);
                    }
                }
            }
            PublishMode::Burst { size, interval_ms } => {
                if now >= self.next_burst_ns {
                    self.next_burst_ns += interval_ms.max(1) * 1_000_000;
                    for &idx in &self.publishers {
                        for _ in 0..size {
                            a.publish(idx, now_ns(), echo);
                        }
                    }
                }
            }
        }
    }
}
