//! Offset checking (chat): each connection's position in its room's stream (the epoch and the
//! last offset it received), the `since` it resumes from after a reconnect, and the account of
//! gaps and duplicates against that position.
//!
//! A connection's offsets must run `last + 1`, `last + 2`, … across reconnects: the events a
//! resume replays arrive before the join's reply, the live ones after it. Events that arrive
//! while a join is unanswered are held (their offsets only) and checked once the reply says
//! where the stream stands: after `recovered: true` against the position before the reconnect,
//! after a plain join or `recovered: false` against the reply's.

use std::borrow::Cow;

use wsgate_protocol::Since;

use crate::stats::OffsetStats;

/// One connection's position in its room's stream.
#[derive(Default)]
struct Position {
    /// The stream's epoch, as the last join reply gave it (empty: no reply yet).
    epoch: Box<str>,
    /// The last offset received, or the join reply's position if later.
    last: u64,
    /// Offsets of the events received while the join is unanswered, in arrival order. Bounded
    /// by what one join brings before its reply: the server's history per room (the replay)
    /// and the live events of one round trip. Unallocated once the reply came.
    held: Vec<u64>,
}

impl Position {
    /// Checks `offset` against the last one and moves on to it.
    fn check(&mut self, offset: u64, stats: &mut OffsetStats) {
        stats.checked += 1;
        if offset <= self.last {
            stats.duplicates += 1;
            return;
        }
        stats.gaps += offset - self.last - 1;
        self.last = offset;
    }
}

/// One worker's positions, by local connection index, and what checking them found.
pub(crate) struct Offsets {
    /// Empty when the scenario checks no offsets.
    positions: Vec<Position>,
    pub(crate) stats: OffsetStats,
}

impl Offsets {
    /// Positions for `count` connections when `checks`, none otherwise.
    pub(crate) fn new(count: usize, checks: bool) -> Self {
        let mut positions = Vec::new();
        if checks {
            positions.resize_with(count, Position::default);
        }
        Offsets {
            positions,
            stats: OffsetStats::default(),
        }
    }

    /// Whether offsets are checked.
    pub(crate) fn checks(&self) -> bool {
        !self.positions.is_empty()
    }

    /// Where connection `idx`'s next join resumes from (`None`: not checked, or never joined).
    /// A copy (one per reconnect), so the request does not borrow the account.
    pub(crate) fn since(&self, idx: usize) -> Option<Since<'static>> {
        let p = self.positions.get(idx)?;
        (!p.epoch.is_empty()).then(|| Since {
            epoch: Cow::Owned(p.epoch.to_string()),
            offset: p.last,
        })
    }

    /// An event arrived on connection `idx` with `offset` (`None`: not a stored room event);
    /// `joining`: its join is not answered yet.
    pub(crate) fn event(&mut self, idx: usize, offset: Option<u64>, joining: bool) {
        let (Some(p), Some(offset)) = (self.positions.get_mut(idx), offset) else {
            return;
        };
        if joining {
            p.held.push(offset);
        } else {
            p.check(offset, &mut self.stats);
        }
    }

    /// Connection `idx`'s join was answered: the stream is at `epoch`/`offset`, and `recovered`
    /// says whether a resume replayed everything (`None`: a plain join).
    pub(crate) fn joined(&mut self, idx: usize, epoch: &str, offset: u64, recovered: Option<bool>) {
        let Some(p) = self.positions.get_mut(idx) else {
            return;
        };
        let held = std::mem::take(&mut p.held);
        let stats = &mut self.stats;
        if recovered == Some(true) {
            stats.recovered += 1;
            for o in held {
                p.check(o, stats);
            }
            // The replay ended short of the position the reply gives.
            if offset > p.last {
                stats.gaps += offset - p.last;
                p.last = offset;
            }
        } else {
            if recovered == Some(false) {
                stats.not_recovered += 1;
            }
            p.last = offset;
            for o in held {
                p.check(o, stats);
            }
        }
        if *p.epoch != *epoch {
            p.epoch = epoch.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(o: &Offsets) -> [u64; 5] {
        let s = o.stats;
        [
            s.checked,
            s.gaps,
            s.duplicates,
            s.recovered,
            s.not_recovered,
        ]
    }

    #[test]
    fn a_resume_continues_the_count_across_the_reconnect() {
        let mut o = Offsets::new(1, true);
        assert!(o.since(0).is_none());
        // A live event may come before the first join's reply.
        o.event(0, Some(6), true);
        o.joined(0, "e1", 5, None);
        o.event(0, Some(7), false);
        let since = o.since(0).expect("a position");
        assert_eq!((&*since.epoch, since.offset), ("e1", 7));
        // Reconnected: 8 and 9 replayed, then the reply, then 10 live.
        o.event(0, Some(8), true);
        o.event(0, Some(9), true);
        o.joined(0, "e1", 9, Some(true));
        o.event(0, Some(10), false);
        assert_eq!(account(&o), [5, 0, 0, 1, 0]);
    }

    #[test]
    fn gaps_count_the_missing_offsets_and_duplicates_the_repeats() {
        let mut o = Offsets::new(1, true);
        o.joined(0, "e1", 0, None);
        for offset in [1, 2, 5, 5, 3, 6] {
            o.event(0, Some(offset), false);
        }
        assert_eq!(account(&o), [6, 2, 2, 0, 0]);
        // A resume answered `recovered: true` whose replay stops short of the reply.
        o.event(0, Some(7), true);
        o.joined(0, "e1", 9, Some(true));
        assert_eq!(account(&o), [7, 4, 2, 1, 0]);
    }

    #[test]
    fn an_unrecovered_resume_starts_over_from_the_reply() {
        let mut o = Offsets::new(1, true);
        o.joined(0, "e1", 10, None);
        o.joined(0, "e2", 500, Some(false));
        o.event(0, Some(501), false);
        assert_eq!(account(&o), [1, 0, 0, 0, 1]);
        assert_eq!(&*o.since(0).expect("a position").epoch, "e2");
    }

    #[test]
    fn nothing_is_kept_when_offsets_are_not_checked() {
        let mut o = Offsets::new(3, false);
        assert!(!o.checks());
        o.event(1, Some(1), false);
        o.joined(1, "e", 1, Some(true));
        assert!(o.since(1).is_none());
        assert_eq!(account(&o), [0; 5]);
    }
}
