//! Delivery verification: a worker's account of what it published and received (latency,
//! bursts, closed-loop publishes still in flight, fast-decode spot checks), and, from the
//! merged accounts, the deliveries the coordinator expects (the loss is their shortfall).

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::plan::{PublishMode, RunPlan, Scenario, WorkerPlan};
use crate::stats::{new_histogram, BurstStat, PushStats};

/// A closed-loop publish not received by every member after this long is given up (the loss
/// shows in the totals) so the loop goes on.
const CLOSED_LOOP_TIMEOUT_NS: u64 = 5_000_000_000;
/// In fast decode mode, one event in this many is also fully decoded and compared.
const VERIFY_EVERY: u64 = 64;
/// Bursts past this many are not filed (the account stays bounded).
const MAX_BURSTS: usize = 100_000;

/// The key of one publish, also carried in its payload: the publishing connection's global
/// index in the high 32 bits, the request id in the low 32.
pub(crate) fn publish_seq(global: u64, id: u64) -> u64 {
    (global << 32) | (id & 0xffff_ffff)
}

/// The global index of the connection that published `seq` (see [`publish_seq`]).
pub(crate) fn publisher(seq: u64) -> u64 {
    seq >> 32
}

/// One worker's delivery account.
pub(crate) struct Deliveries {
    /// Send to receive of events (ns).
    pub(crate) latency: Histogram<u64>,
    /// Publishes answered with a reply, per room.
    pub(crate) acked: Vec<u64>,
    /// Publishes sent, per room.
    pub(crate) published: Vec<u64>,
    /// Members joined per room, by this worker.
    pub(crate) joined: Vec<u64>,
    /// Per-burst deliveries (burst mode).
    pub(crate) bursts: Vec<BurstStat>,
    /// Events whose fast decode disagreed with the full decode (must be 0).
    pub(crate) decode_mismatches: u64,
    /// When the last event arrived (ns): the drain ends once the worker has gone quiet.
    pub(crate) last_rx_ns: u64,
    /// Fast-decoded events so far, to pick one in [`VERIFY_EVERY`] for the full decode.
    events_seen: u64,
    /// Burst mode: the interval between bursts (ns), to file each delivery under its burst.
    burst_ns: Option<u64>,
    /// When the measured phase started (0 before): bursts count from there.
    start_ns: u64,
    /// Closed loop: publishes not yet received by every local member of their room, by
    /// sequence number: (receivers still to go, send time).
    outstanding: HashMap<u64, (u64, u64)>,
}

impl Deliveries {
    /// An empty account for `rooms` rooms.
    pub(crate) fn new(plan: &WorkerPlan, rooms: usize) -> Self {
        let burst_ns = match plan.scenario {
            Scenario::Fanout {
                mode: PublishMode::Burst { interval_ms, .. },
                ..
            } => Some(interval_ms.max(1) * 1_000_000),
            _ => None,
        };
        Deliveries {
            latency: new_histogram(),
            acked: vec![0; rooms],
            published: vec![0; rooms],
            joined: vec![0; rooms],
            bursts: Vec::new(),
            decode_mismatches: 0,
            last_rx_ns: 0,
            events_seen: 0,
            burst_ns,
            start_ns: 0,
            outstanding: HashMap::new(),
        }
    }

    /// The measured phase starts at `start_ns`.
    pub(crate) fn start(&mut self, start_ns: u64) {
        self.start_ns = start_ns;
    }

    /// Counts one fast-decoded event; true when it is the one in [`VERIFY_EVERY`] to decode
    /// fully as well (and compare with [`Deliveries::compare`]).
    pub(crate) fn spot_check(&mut self) -> bool {
        self.events_seen += 1;
        self.events_seen.is_multiple_of(VERIFY_EVERY)
    }

    /// Compares a fast decode (when there was one) with the full decode of the same event.
    pub(crate) fn compare<T: PartialEq>(&mut self, fast: Option<T>, full: Option<T>) {
        if let Some(f) = fast {
            if full != Some(f) {
                self.decode_mismatches += 1;
            }
        }
    }

    /// Records the delivery at `now` of the publish `s` sent at `t`; returns `s` when that
    /// completes a closed-loop publish (every local member has it).
    pub(crate) fn deliver(&mut self, t: u64, s: u64, now: u64) -> Option<u64> {
        self.last_rx_ns = now;
        self.latency.saturating_record(now.saturating_sub(t));
        if let Some(interval) = self.burst_ns {
            self.file_burst(t, now, interval);
        }
        let left = self.outstanding.get_mut(&s)?;
        left.0 = left.0.saturating_sub(1);
        if left.0 > 0 {
            return None;
        }
        self.outstanding.remove(&s);
        Some(s)
    }

    /// Files a delivery under the burst its send time `t` belongs to.
    fn file_burst(&mut self, t: u64, now: u64, interval: u64) {
        if self.start_ns == 0 || t < self.start_ns {
            return;
        }
        let b = ((t - self.start_ns) / interval) as usize;
        if b >= MAX_BURSTS {
            return;
        }
        if self.bursts.len() <= b {
            self.bursts.resize(b + 1, BurstStat::default());
        }
        let st = &mut self.bursts[b];
        st.received += 1;
        st.first_sent_ns = if st.first_sent_ns == 0 {
            t
        } else {
            st.first_sent_ns.min(t)
        };
        st.last_received_ns = st.last_received_ns.max(now);
    }

    /// Closed loop: publish `s`, sent at `now`, is to reach `receivers` local members.
    pub(crate) fn expect(&mut self, s: u64, receivers: u64, now: u64) {
        self.outstanding.insert(s, (receivers, now));
    }

    /// Closed loop: publish `s` was refused and will never arrive; true when it was awaited.
    pub(crate) fn refused(&mut self, s: u64) -> bool {
        self.outstanding.remove(&s).is_some()
    }

    /// Closed loop: gives up on the publishes awaited for too long and returns them.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<u64> {
        if self.outstanding.is_empty() {
            return Vec::new();
        }
        let stale: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, (_, sent))| now.saturating_sub(*sent) > CLOSED_LOOP_TIMEOUT_NS)
            .map(|(s, _)| *s)
            .collect();
        for s in &stale {
            self.outstanding.remove(s);
        }
        stale
    }
}

/// Adds one worker's bursts to `into` (burst by burst: earliest send, latest receive).
pub(crate) fn merge_bursts(into: &mut Vec<BurstStat>, from: &[BurstStat]) {
    for (i, b) in from.iter().enumerate() {
        if into.len() <= i {
            into.resize(i + 1, BurstStat::default());
        }
        let s = &mut into[i];
        s.received += b.received;
        if b.first_sent_ns > 0 {
            s.first_sent_ns = if s.first_sent_ns == 0 {
                b.first_sent_ns
            } else {
                s.first_sent_ns.min(b.first_sent_ns)
            };
        }
        s.last_received_ns = s.last_received_ns.max(b.last_received_ns);
    }
}

/// The delivery rate of each burst: deliveries / (last receive − first send).
pub(crate) fn burst_rates(bursts: &[BurstStat]) -> Vec<f64> {
    bursts
        .iter()
        .filter(|b| b.received > 0 && b.last_received_ns > b.first_sent_ns)
        .map(|b| b.received as f64 / ((b.last_received_ns - b.first_sent_ns) as f64 / 1e9))
        .collect()
}

/// Expected deliveries, where the scenario defines them: every acknowledged publish reaches
/// every member of its room but the publisher (and the publisher too with echo, which chat
/// always uses); members are those that actually joined. A push is expected where the REST API
/// answered 200 without naming its user offline (each user holds one connection; in cluster
/// mode `delivered` counts the answering node's connections only, `offline` is cluster-wide).
pub(crate) fn expected(
    plan: &RunPlan,
    acked: &[u64],
    joined: &[u64],
    push: Option<&PushStats>,
) -> Option<u64> {
    match plan.scenario {
        Scenario::Fanout { echo, .. } => {
            let members = plan.room_members();
            let mut e = 0u64;
            for (r, a) in acked.iter().enumerate() {
                let joined_r = joined[r];
                let pubs = members.get(r).map_or(0, |m| m.1);
                // joined counts publishers too; a publisher does not receive its own publish.
                let receivers = if echo {
                    joined_r
                } else {
                    joined_r.saturating_sub(1.min(pubs))
                };
                e += a * receivers;
            }
            Some(e)
        }
        Scenario::Chat {
            churn_per_sec: 0.0, ..
        } => {
            let e = acked.iter().zip(joined).map(|(a, j)| a * j).sum();
            Some(e)
        }
        Scenario::Push { .. } => push.map(|p| p.reached),
        _ => None,
    }
}
