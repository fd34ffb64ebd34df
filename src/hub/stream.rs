//! A stream (a room's, or a user's: its mailbox of private messages): its recent messages in
//! offset order, bounded in count, bytes and age, with the epoch that tells "nothing missed"
//! from "history gone", and for a user's stream the offset acknowledged so far. Pure data:
//! the backplane keeps the streams and orders the writers; this file only says what a stream
//! holds and answers.
//!
//! A user's stream may be **spilled** (with the disk store, while its user has no
//! connection): its messages are then only in the store, and the stream keeps of each just
//! what its bounds count (offset, time, size), so that an offline user's mailbox costs no
//! memory for its payloads. Spilled messages always come before held ones.

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::OutEvent;

/// Bookkeeping bytes counted per kept message, on top of its payload and frames.
const ENTRY_OVERHEAD: usize = 96;

/// Where a stream is: its epoch and the offset of its last message (0 before the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) epoch: u64,
    pub(crate) offset: u64,
}

impl Position {
    /// The epoch as it travels on the wire: 16 hex digits.
    pub(crate) fn epoch_text(&self) -> String {
        format!("{:016x}", self.epoch)
    }
}

/// How much a stream keeps (`ROOM_HISTORY_SIZE`, `ROOM_HISTORY_BYTES`, `ROOM_HISTORY_TTL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamLimits {
    /// Most messages kept; 0 keeps none (offsets still count, resume never recovers).
    pub(crate) size: usize,
    /// Most bytes kept (payload, encoded frames and bookkeeping).
    pub(crate) bytes: usize,
    /// Oldest message kept, in milliseconds.
    pub(crate) ttl_ms: u64,
}

/// What a room asks of its stream (`historySize`, `historyTtl` at its creation); each `None`
/// keeps to the server's default. The byte bound is always the server's, so that
/// `MAX_ROOMS` × `ROOM_HISTORY_BYTES` still bounds the memory of history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HistoryOptions {
    /// Most messages kept (at most `MAX_HISTORY_SIZE`).
    pub(crate) size: Option<u32>,
    /// Oldest message kept, in seconds (at most `MAX_HISTORY_TTL`).
    pub(crate) ttl_secs: Option<u32>,
}

impl HistoryOptions {
    /// The limits of a stream with these options: `defaults` for what they leave unset.
    pub(crate) fn limits(&self, defaults: &StreamLimits) -> StreamLimits {
        StreamLimits {
            size: self.size.map_or(defaults.size, |n| n as usize),
            bytes: defaults.bytes,
            ttl_ms: self
                .ttl_secs
                .map_or(defaults.ttl_ms, |s| u64::from(s) * 1000),
        }
    }

    /// The limits a stream keeps to instead of `defaults`, `None` when the options set none.
    pub(crate) fn own(&self, defaults: &StreamLimits) -> Option<StreamLimits> {
        (*self != HistoryOptions::default()).then(|| self.limits(defaults))
    }
}

/// One kept message: its offset, when it was accepted (Unix ms) and the event itself, whose
/// frames (encoded once, with the offset) serve the live fan-out and every replay alike.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    pub(crate) at: u64,
    pub(crate) event: Arc<OutEvent>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.event.weight() + ENTRY_OVERHEAD
    }
}

/// Messages in one history answer when the request names no `limit` (command and REST).
pub(crate) const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Which messages a history read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Query {
    /// Most messages returned.
    pub(crate) limit: usize,
    /// Only offsets below this (the newest `limit` of them).
    pub(crate) before: Option<u64>,
    /// Only offsets above this (the oldest `limit` of them); excludes `before`.
    pub(crate) after: Option<u64>,
}

/// A kept message whose event is only in the store: what the stream's bounds count of it.
#[derive(Clone, Copy, Debug)]
struct Spilled {
    offset: u64,
    at: u64,
    cost: usize,
}

/// A user's messages waiting for a client after some offset, oldest first: those only in the
/// store (a range of offsets to load), then those held in memory.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// The offsets, first to last, of the waiting messages that must be read from the store.
    pub(crate) spilled: Option<(u64, u64)>,
    /// The waiting messages in memory, after every spilled one.
    pub(crate) held: Vec<Arc<OutEvent>>,
}

/// What a resume from a position gets: the messages after it, or `None` when the stream can
/// not tell (another epoch, an offset ahead of the stream, or messages already dropped).
pub(crate) type Recovery = Option<Vec<Arc<OutEvent>>>;

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    epoch: u64,
    last: u64,
    /// A user's stream: the offset up to which its messages were acknowledged (by an `ack`,
    /// or by being delivered to a client that does not ack); nothing at or below it is kept.
    acked: u64,
    /// When the stream was made or last appended to (Unix ms).
    touched: u64,
    /// What it keeps; `None` while it keeps nothing, so that a stream with nothing kept (most
    /// user streams, a quiet room's) costs its position only.
    kept: Option<Box<Kept>>,
    /// Its own limits (a room created with history options), kept here so that an append
    /// looks nothing up; `None`: the limits its caller passes (its kind's defaults).
    own: Option<Box<StreamLimits>>,
    /// A user's stream: whether its user acks (`ack`); until then delivery counts as one.
    manual_acks: bool,
    /// Whether an append keeps its event in memory (`entries`) or only counts it (`spilled`).
    resident: bool,
}

/// A stream's kept messages.
#[derive(Debug, Default)]
struct Kept {
    /// Messages only in the store, all older than `entries`.
    spilled: VecDeque<Spilled>,
    entries: VecDeque<Entry>,
    /// What the bounds count of every kept message, spilled or held.
    bytes: usize,
}

impl Stream {
    /// An empty stream of a new epoch, made at `now` (Unix ms).
    pub(crate) fn new(epoch: u64, now: u64) -> Stream {
        Stream {
            epoch,
            last: 0,
            acked: 0,
            touched: now,
            kept: None,
            own: None,
            manual_acks: false,
            resident: true,
        }
    }

    /// What it keeps, made on first use.
    fn kept_mut(&mut self) -> &mut Kept {
        self.kept.get_or_insert_with(Box::default)
    }

    /// Its held messages (none when it keeps nothing).
    fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.kept.iter().flat_map(|k| k.entries.iter())
    }

    /// Its spilled messages.
    fn spilled(&self) -> impl DoubleEndedIterator<Item = &Spilled> {
        self.kept.iter().flat_map(|k| k.spilled.iter())
    }

    /// Keeps to `own` from now on instead of the defaults its caller passes (`None`: to
    /// those); the next trim applies them.
    pub(crate) fn set_limits(&mut self, own: Option<StreamLimits>) {
        self.own = own.map(Box::new);
    }

    /// The limits it keeps to: its own, else `defaults`.
    pub(crate) fn limits(&self, defaults: &StreamLimits) -> StreamLimits {
        self.own.as_deref().copied().unwrap_or(*defaults)
    }

    pub(crate) fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.last,
        }
    }

    /// A stream read back from the store: its epoch, last offset and kept messages (oldest
    /// first, each carrying its offset), keeping to `own` limits if given, else `defaults`,
    /// and trimmed to them as of `now`.
    pub(crate) fn restore(
        epoch: u64,
        last: u64,
        acked: Option<u64>,
        entries: impl IntoIterator<Item = Entry>,
        now: u64,
        own: Option<StreamLimits>,
        defaults: &StreamLimits,
    ) -> Stream {
        let mut stream = Stream::new(epoch, now);
        stream.set_limits(own);
        stream.last = last;
        if let Some(acked) = acked {
            stream.set_acked(acked.min(last));
        }
        for entry in entries {
            if entry.offset > last || entry.offset <= stream.acked {
                continue;
            }
            let kept = stream.kept_mut();
            kept.bytes += entry.cost();
            kept.entries.push_back(entry);
        }
        stream.trim(now, defaults);
        stream
    }

    /// The oldest offset still kept, or the next one when nothing is: whatever is below it is
    /// gone.
    pub(crate) fn low(&self) -> u64 {
        self.front()
            .map_or(self.next_offset(), |(offset, _, _)| offset)
    }

    /// The oldest kept message's offset, time and cost, spilled or held.
    fn front(&self) -> Option<(u64, u64, usize)> {
        let kept = self.kept.as_deref()?;
        match kept.spilled.front() {
            Some(s) => Some((s.offset, s.at, s.cost)),
            None => kept.entries.front().map(|e| (e.offset, e.at, e.cost())),
        }
    }

    /// The offset the next message gets.
    pub(crate) fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// Keeps `event` (which carries [`Stream::next_offset`]) as accepted at `now` (Unix ms),
    /// then drops what its limits (its own, else `defaults`) no longer allow.
    pub(crate) fn append(&mut self, event: Arc<OutEvent>, now: u64, defaults: &StreamLimits) {
        self.last += 1;
        self.touched = now;
        let entry = Entry {
            offset: self.last,
            at: now,
            event,
        };
        let resident = self.resident;
        let kept = self.kept_mut();
        kept.bytes += entry.cost();
        if resident {
            kept.entries.push_back(entry);
        } else {
            kept.spilled.push_back(Spilled {
                offset: entry.offset,
                at: now,
                cost: entry.cost(),
            });
        }
        self.trim(now, defaults);
    }

    /// Cluster mode: the stream is at `position` of its copy in Redis, which moved on
    /// without it (another epoch, or messages this node missed): what it kept is let go, so
    /// that it never answers a resume with a hole.
    pub(crate) fn jump(&mut self, position: Position) {
        self.epoch = position.epoch;
        self.last = position.offset;
        self.acked = self.acked.min(position.offset);
        self.kept = None;
    }

    /// From now on its messages are only in the store: those held are let go (their writes
    /// are queued already), and the next appends keep none. For a user's stream whose user
    /// has no connection, with the disk store.
    pub(crate) fn spill(&mut self) {
        self.resident = false;
        if let Some(kept) = self.kept.as_deref_mut() {
            let Kept {
                spilled, entries, ..
            } = kept;
            spilled.extend(entries.drain(..).map(|e| Spilled {
                offset: e.offset,
                at: e.at,
                cost: e.cost(),
            }));
            entries.shrink_to_fit();
        }
    }

    /// From now on appends are held in memory again (its user connected); what was spilled
    /// stays in the store until it is acknowledged.
    pub(crate) fn wake(&mut self) {
        self.resident = true;
    }

    /// Whether it holds the events of its messages in memory (it is not spilled).
    #[cfg(test)]
    pub(crate) fn is_resident(&self) -> bool {
        self.resident
    }

    /// Drops the oldest messages past the count, byte or age bound (its own, else
    /// `defaults`), and those acknowledged.
    pub(crate) fn trim(&mut self, now: u64, defaults: &StreamLimits) {
        let limits = self.limits(defaults);
        let oldest_kept = now.saturating_sub(limits.ttl_ms);
        let acked = self.acked;
        let Some(kept) = self.kept.as_deref_mut() else {
            return;
        };
        loop {
            let front = match kept.spilled.front() {
                Some(s) => (s.offset, s.at, s.cost),
                None => match kept.entries.front() {
                    Some(e) => (e.offset, e.at, e.cost()),
                    None => break,
                },
            };
            let (offset, at, cost) = front;
            let over = kept.spilled.len() + kept.entries.len() > limits.size
                || kept.bytes > limits.bytes
                || at < oldest_kept
                || offset <= acked;
            if !over {
                break;
            }
            kept.bytes -= cost;
            if kept.spilled.pop_front().is_none() {
                kept.entries.pop_front();
            }
        }
        if kept.spilled.is_empty() && kept.entries.is_empty() {
            // Nothing kept: nothing allocated.
            self.kept = None;
        }
    }

    /// Acknowledges the messages up to `offset` (at most the last): they are no longer kept.
    /// `manual` says the user acks from now on. Returns whether anything changed.
    pub(crate) fn ack(
        &mut self,
        offset: u64,
        manual: bool,
        now: u64,
        defaults: &StreamLimits,
    ) -> bool {
        let offset = offset.min(self.last);
        let changed = offset > self.acked || (manual && !self.manual_acks);
        self.acked = self.acked.max(offset);
        self.manual_acks |= manual;
        self.trim(now, defaults);
        changed
    }

    /// The offset acknowledged so far, and whether the user acks.
    pub(crate) fn acked(&self) -> (u64, bool) {
        (self.acked, self.manual_acks)
    }

    /// Restores what the store kept of the acks (before any message is read back).
    pub(crate) fn set_acked(&mut self, offset: u64) {
        self.acked = offset;
        self.manual_acks = true;
    }

    /// How many kept messages are not acknowledged.
    pub(crate) fn waiting(&self) -> usize {
        // Trimming drops what is acknowledged: only a spilled front can lag behind an ack
        // made while its trim waited for the store's queue.
        let spilled = self.spilled().filter(|s| s.offset > self.acked);
        let held = self.entries().filter(|e| e.offset > self.acked);
        spilled.count() + held.count()
    }

    /// The kept messages not acknowledged and after `after`, oldest first: the range to read
    /// from the store, and those held.
    pub(crate) fn waiting_after(&self, after: u64) -> Waiting {
        let after = after.max(self.acked);
        // Offsets rise along the queue: the newest spilled is its back.
        let first = self.spilled().find(|s| s.offset > after);
        let spilled = first
            .zip(self.spilled().next_back())
            .map(|(f, b)| (f.offset, b.offset));
        Waiting {
            spilled,
            held: self
                .entries()
                .filter(|e| e.offset > after)
                .map(|e| e.event.clone())
                .collect(),
        }
    }

    /// Whether the stream keeps nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.kept.is_none()
    }

    /// Whether it kept nothing and was not used for a whole TTL (its own, else `defaults`'):
    /// it may be forgotten.
    pub(crate) fn is_idle(&self, now: u64, defaults: &StreamLimits) -> bool {
        self.is_empty() && now.saturating_sub(self.touched) > self.limits(defaults).ttl_ms
    }

    /// When the stream was made or last appended to (Unix ms).
    pub(crate) fn touched(&self) -> u64 {
        self.touched
    }

    /// The messages `query` asks for, oldest first.
    pub(crate) fn read(&self, query: &Query) -> Vec<Entry> {
        match query.after {
            Some(after) => self
                .entries()
                .filter(|e| e.offset > after)
                .take(query.limit)
                .cloned()
                .collect(),
            None => {
                let before = query.before.unwrap_or(u64::MAX);
                let mut newest: Vec<Entry> = self
                    .entries()
                    .rev()
                    .filter(|e| e.offset < before)
                    .take(query.limit)
                    .cloned()
                    .collect();
                newest.reverse();
                newest
            }
        }
    }

    /// The messages after `offset` of `epoch`, if the stream still has all of them.
    pub(crate) fn since(&self, epoch: &str, offset: u64) -> Recovery {
        if epoch != self.position().epoch_text() || offset > self.last {
            return None;
        }
        if offset == self.last {
            return Some(Vec::new());
        }
        // Every offset after `offset` must still be kept: the oldest kept is at most offset+1.
        let oldest = self.entries().next()?.offset;
        if oldest > offset + 1 {
            return None;
        }
        Some(
            self.entries()
                .filter(|e| e.offset > offset)
                .map(|e| e.event.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wsgate_protocol::Format;

    use super::*;
    use crate::hub::test_event;

    const LIMITS: StreamLimits = StreamLimits {
        size: 3,
        bytes: 1 << 20,
        ttl_ms: 60_000,
    };

    fn filled(n: u64) -> Stream {
        let mut s = Stream::new(7, 1_000);
        for i in 0..n {
            let ev = test_event(b"1", Format::Json).sequenced(s.next_offset());
            s.append(ev, 1_000 + i, &LIMITS);
        }
        s
    }

    fn offsets(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn keeps_the_last_n_and_counts_on() {
        let s = filled(5);
        assert_eq!(s.position().offset, 5);
        let all = Query {
            limit: 10,
            before: None,
            after: None,
        };
        assert_eq!(offsets(&s.read(&all)), [3, 4, 5]);
        assert_eq!(s.position().epoch_text(), "0000000000000007");
    }

    #[test]
    fn reads_before_and_after_oldest_first() {
        let s = filled(3);
        let q = |before, after, limit| Query {
            limit,
            before,
            after,
        };
        assert_eq!(offsets(&s.read(&q(Some(3), None, 10))), [1, 2]);
        assert_eq!(offsets(&s.read(&q(None, None, 2))), [2, 3]);
        assert_eq!(offsets(&s.read(&q(None, Some(1), 1))), [2]);
        assert_eq!(offsets(&s.read(&q(None, Some(3), 10))), Vec::<u64>::new());
    }

    #[test]
    fn recovers_only_what_it_still_has_in_its_epoch() {
        let s = filled(5); // keeps 3, 4, 5
        let epoch = s.position().epoch_text();
        assert_eq!(s.since(&epoch, 5).map(|v| v.len()), Some(0));
        assert_eq!(s.since(&epoch, 3).map(|v| v.len()), Some(2));
        assert_eq!(s.since(&epoch, 2).map(|v| v.len()), Some(3));
        assert!(s.since(&epoch, 1).is_none(), "offset 2 was dropped");
        assert!(s.since(&epoch, 6).is_none(), "an offset from the future");
        assert!(s.since("0000000000000008", 5).is_none(), "another epoch");
    }

    #[test]
    fn a_spilled_stream_counts_what_it_lets_go_and_holds_what_comes_once_woken() {
        let mut s = filled(2);
        let bytes = s.kept.as_ref().map(|k| k.bytes);
        s.spill();
        assert!(!s.is_resident());
        assert_eq!(s.entries().count(), 0, "nothing held");
        assert_eq!(s.kept.as_ref().map(|k| k.bytes), bytes, "still counted");
        let ev = |s: &Stream| test_event(b"1", Format::Json).sequenced(s.next_offset());
        s.append(ev(&s), 1_010, &LIMITS);
        assert!(
            s.entries().next().is_none(),
            "an append while spilled holds nothing"
        );
        let w = s.waiting_after(0);
        assert_eq!((w.spilled, w.held.len()), (Some((1, 3)), 0));
        s.wake();
        s.append(ev(&s), 1_011, &LIMITS);
        assert_eq!(s.entries().count(), 1, "held once woken");
        let w = s.waiting_after(0);
        assert_eq!(w.spilled, Some((2, 3)), "offset 1 fell out of the 3 kept");
        assert_eq!(
            w.held.iter().map(|e| e.offset()).collect::<Vec<_>>(),
            [Some(4)]
        );
        let w = s.waiting_after(3);
        assert_eq!(
            (w.spilled, w.held.len()),
            (None, 1),
            "after the spilled ones"
        );
        assert_eq!(s.waiting(), 3);
        s.ack(3, true, 1_012, &LIMITS);
        assert_eq!((s.low(), s.waiting()), (4, 1), "acks trim spilled ones too");
        s.spill();
        s.trim(100_000, &LIMITS);
        assert!(s.is_empty(), "age trims spilled ones too");
        assert!(s.kept.is_none(), "nothing allocated");
    }

    #[test]
    fn a_stream_that_keeps_nothing_is_its_position_only() {
        // Every user has a stream and most keep nothing: it must stay small.
        assert!(
            std::mem::size_of::<Stream>() <= 56,
            "{}",
            std::mem::size_of::<Stream>()
        );
        let mut s = filled(1);
        s.ack(1, false, 2_000, &LIMITS);
        assert!(s.kept.is_none(), "its buffers are let go");
    }

    #[test]
    fn age_and_bytes_bound_the_stream_too() {
        let mut s = Stream::new(1, 1_000);
        let aged = StreamLimits {
            size: 100,
            bytes: 1 << 20,
            ttl_ms: 10,
        };
        s.append(test_event(b"1", Format::Json).sequenced(1), 1_000, &aged);
        s.append(test_event(b"1", Format::Json).sequenced(2), 1_020, &aged);
        assert_eq!(s.entries().count(), 1, "the first is older than 10 ms");
        s.trim(1_050, &aged);
        assert!(s.is_empty());
        assert!(
            s.is_idle(1_050, &aged),
            "empty and untouched for over 10 ms"
        );
        assert!(!s.is_idle(1_025, &aged), "touched 5 ms ago");
        let small = StreamLimits {
            size: 100,
            bytes: 1,
            ttl_ms: 60_000,
        };
        s.append(test_event(b"1", Format::Json).sequenced(3), 2_000, &small);
        assert!(s.is_empty(), "no message fits in one byte");
        assert_eq!(s.position().offset, 3, "offsets keep counting");
    }

    #[test]
    fn a_stream_with_its_own_limits_keeps_to_them_not_the_defaults() {
        let options = HistoryOptions {
            size: Some(1),
            ttl_secs: None,
        };
        assert_eq!(HistoryOptions::default().own(&LIMITS), None);
        let own = options.own(&LIMITS);
        assert_eq!(
            own,
            Some(StreamLimits { size: 1, ..LIMITS }),
            "the unset ttl and the bytes are the defaults'"
        );
        let mut s = filled(3);
        s.set_limits(own);
        s.trim(2_000, &LIMITS);
        let all = Query {
            limit: 10,
            before: None,
            after: None,
        };
        assert_eq!(offsets(&s.read(&all)), [3]);
        s.append(test_event(b"1", Format::Json).sequenced(4), 2_001, &LIMITS);
        assert_eq!(offsets(&s.read(&all)), [4]);
        s.set_limits(None);
        s.append(test_event(b"1", Format::Json).sequenced(5), 2_002, &LIMITS);
        assert_eq!(offsets(&s.read(&all)), [4, 5], "back to the defaults' 3");
        let aged = HistoryOptions {
            size: None,
            ttl_secs: Some(1),
        };
        s.set_limits(aged.own(&LIMITS));
        assert!(!s.is_idle(3_002, &LIMITS));
        s.trim(3_002, &LIMITS);
        assert_eq!(offsets(&s.read(&all)), [5], "4 is over a second old");
        s.trim(3_003, &LIMITS);
        assert!(
            s.is_idle(3_003, &LIMITS),
            "empty, untouched for over a second"
        );
    }
}
