//! Time: a shard's coarse monotonic clock (milliseconds since the shard started, plus one,
//! so that 0 can mean "never" in the timestamps sessions keep), and wall time in Unix ms.

use std::time::Instant;

/// Milliseconds since a start, on the monotonic clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    started: Instant,
}

impl Clock {
    /// A clock that reads 1 now.
    pub(crate) fn start() -> Clock {
        Clock {
            started: Instant::now(),
        }
    }

    /// Milliseconds since the start, plus one.
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }
}

/// Now, in milliseconds since the Unix epoch (wall time: what streams and the store record).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
