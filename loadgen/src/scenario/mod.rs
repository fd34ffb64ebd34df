//! The scenarios' driving logic, one file each: which room a connection joins and what is sent
//! during the measured phase. `connect` sends nothing (its connections only authenticate and
//! hold), so it has no file; `push` sends over REST, from the coordinator ([`push`]).

pub(crate) mod actions;
pub(crate) mod chat;
pub(crate) mod fanout;
pub(crate) mod push;

use actions::Actions;
use chat::Chat;
use fanout::Fanout;

use crate::plan::{Scenario, WorkerPlan};

/// One worker's scenario, with the state its driving keeps.
pub(crate) enum Driver {
    /// Connections authenticate (and join `rooms` rooms, if any) and hold.
    Connect { rooms: u32 },
    /// Publishers publish to rooms of subscribers.
    Fanout(Fanout),
    /// Connections authenticate and receive REST pushes.
    Push,
    /// Every user publishes, and connections churn.
    Chat(Chat),
}

impl Driver {
    /// The driver of `plan`'s scenario.
    pub(crate) fn new(plan: &WorkerPlan) -> Self {
        match plan.scenario {
            Scenario::Connect { rooms, .. } => Driver::Connect { rooms },
            Scenario::Push { .. } => Driver::Push,
            Scenario::Fanout {
                rooms,
                publishers,
                mode,
                echo,
                ..
            } => Driver::Fanout(Fanout::new(
                plan.first,
                plan.count as usize,
                rooms,
                publishers,
                mode,
                echo,
            )),
            Scenario::Chat {
                rooms,
                rate_per_user,
                churn_per_sec,
                ..
            } => Driver::Chat(Chat::new(rooms, rate_per_user, churn_per_sec, plan.total)),
        }
    }

    /// Rooms of the run (0: the scenario has none).
    pub(crate) fn rooms(&self) -> u32 {
        match self {
            Driver::Connect { rooms } => *rooms,
            Driver::Push => 0,
            Driver::Fanout(f) => f.rooms(),
            Driver::Chat(c) => c.rooms(),
        }
    }

    /// The room connection `global` joins (0 where there are none).
    pub(crate) fn room(&self, global: u64) -> u32 {
        match self {
            Driver::Connect { rooms: 0 } | Driver::Push => 0,
            Driver::Connect { rooms } => (global % u64::from(*rooms)) as u32,
            Driver::Fanout(f) => f.room(global),
            Driver::Chat(c) => c.room(global),
        }
    }

    /// Whether connection `global` is one of fanout's publishers (which `--publish-url`
    /// sends elsewhere).
    pub(crate) fn is_publisher(&self, global: u64) -> bool {
        match self {
            Driver::Fanout(f) => f.is_publisher(global),
            _ => false,
        }
    }

    /// Whether the drain after the measured phase may be skipped (nothing is in flight).
    pub(crate) fn nothing_to_drain(&self) -> bool {
        matches!(self, Driver::Connect { .. })
    }

    /// The measured phase starts at `start_ns`.
    pub(crate) fn start(&mut self, start_ns: u64) {
        if let Driver::Fanout(f) = self {
            f.start(start_ns);
        }
    }

    /// Sends what is due `elapsed` seconds into the measured phase, at `now`.
    pub(crate) fn drive<A: Actions>(&mut self, a: &mut A, elapsed: f64, now: u64) {
        match self {
            Driver::Connect { .. } | Driver::Push => {}
            Driver::Fanout(f) => f.drive(a, elapsed, now),
            Driver::Chat(c) => c.drive(a, elapsed, now),
        }
    }
}
