//! Socket.IO sockets whose connection went away, kept for `SOCKETIO_RECOVERY` so that their
//! client, reconnecting with the socket's `pid` and the offset of the last event it received,
//! gets the same socket back (`socket.recovered`) with what it missed. Process-wide (a client
//! reconnects to any shard), bounded by `MAX_CONNECTIONS`: past it the oldest is forgotten.
//! In cluster mode a socket's one home is Redis instead ([`Detached::encode`], kept by
//! `cluster::redis::sockets`), so that a client reconnecting to any node gets it back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::session::Sent;

/// A socket whose connection went away.
#[derive(Debug)]
pub(crate) struct Detached {
    /// The socket's id, given again on recovery.
    pub(crate) sid: String,
    pub(crate) user: Arc<str>,
    pub(crate) nsp: Arc<str>,
    /// Its rooms, each with its stream's epoch and offset when the connection went away.
    pub(crate) rooms: Vec<(Arc<str>, String, u64)>,
    /// The room events it had been queued.
    pub(crate) sent: Sent,
}

/// A [`Detached`] as cluster mode keeps it in Redis: JSON, each room's name once, the others
/// naming it by its index. Bounded by the socket's rooms and the [`crate::session::namespace::SENT_RING`]
/// events of its ring.
#[derive(Serialize, Deserialize)]
struct Record {
    sid: String,
    user: String,
    nsp: String,
    names: Vec<String>,
    /// (name, epoch, offset)
    rooms: Vec<(usize, String, u64)>,
    /// (name, offset), oldest first.
    ring: Vec<(usize, u64)>,
    last: Vec<(usize, u64)>,
}

impl Detached {
    /// The socket as Redis keeps it. Of each room's last offset queued, only its rooms' are
    /// kept: resuming reads no other.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut names = Names::default();
        let mut name = |room: &Arc<str>| names.index(room);
        let rooms: Vec<(usize, String, u64)> = self
            .rooms
            .iter()
            .map(|(room, epoch, offset)| (name(room), epoch.clone(), *offset))
            .collect();
        let ring = self.sent.ring.iter().map(|(r, o)| (name(r), *o)).collect();
        let last = self
            .sent
            .last
            .iter()
            .filter(|(r, _)| self.rooms.iter().any(|(room, _, _)| room == r))
            .map(|(r, o)| (name(r), *o))
            .collect();
        let record = Record {
            sid: self.sid.clone(),
            user: self.user.to_string(),
            nsp: self.nsp.to_string(),
            names: names.names,
            rooms,
            ring,
            last,
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// A socket [`Detached::encode`] made, if `bytes` are one (an index past its names is not).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Detached> {
        let record: Record = serde_json::from_slice(bytes).ok()?;
        let names: Vec<Arc<str>> = record.names.into_iter().map(Arc::from).collect();
        let name = |i: usize| names.get(i).cloned();
        let pairs = |list: Vec<(usize, u64)>| -> Option<Vec<(Arc<str>, u64)>> {
            list.into_iter().map(|(i, o)| Some((name(i)?, o))).collect()
        };
        let rooms = record
            .rooms
            .into_iter()
            .map(|(i, epoch, offset)| Some((name(i)?, epoch, offset)))
            .collect::<Option<Vec<_>>>()?;
        let sent = Sent {
            ring: pairs(record.ring)?.into(),
            last: pairs(record.last)?,
        };
        Some(Detached {
            sid: record.sid,
            user: record.user.into(),
            nsp: record.nsp.into(),
            rooms,
            sent,
        })
    }
}

/// A record's room names, each once.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    index: HashMap<Arc<str>, usize>,
}

impl Names {
    fn index(&mut self, room: &Arc<str>) -> usize {
        let next = self.names.len();
        *self.index.entry(room.clone()).or_insert_with(|| {
            self.names.push(room.to_string());
            next
        })
    }
}

/// The detached sockets, by `pid`.
#[derive(Debug)]
pub(crate) struct DetachedSockets {
    inner: Mutex<Inner>,
    window: Duration,
    max: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_pid: HashMap<String, (Instant, Detached)>,
    /// `pid`s in the order they were kept (some may be gone already).
    order: VecDeque<(Instant, String)>,
}

impl DetachedSockets {
    /// Sockets kept for `window` (zero: none), at most `max`.
    pub(crate) fn new(window: Duration, max: usize) -> DetachedSockets {
        DetachedSockets {
            inner: Mutex::default(),
            window,
            max: max.max(1),
        }
    }

    /// Whether sockets are kept at all (recovery is on).
    pub(crate) fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// Keeps `socket` under `pid` for the window.
    pub(crate) fn keep(&self, pid: String, socket: Detached) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now, self.window);
        while inner.by_pid.len() >= self.max {
            let Some((_, oldest)) = inner.order.pop_front() else {
                break;
            };
            inner.by_pid.remove(&oldest);
        }
        inner.order.push_back((now, pid.clone()));
        inner.by_pid.insert(pid, (now, socket));
    }

    /// The socket kept under `pid`, if still within the window; it is kept no longer.
    pub(crate) fn take(&self, pid: &str) -> Option<Detached> {
        let mut inner = self.lock();
        let (at, socket) = inner.by_pid.remove(pid)?;
        (at.elapsed() <= self.window).then_some(socket)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Forgets the sockets kept longer than `window` (a `pid` kept again since, by a socket
    /// that was recovered and went away once more, stays).
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= window {
                break;
            }
            let Some((at, pid)) = self.order.pop_front() else {
                break;
            };
            if self.by_pid.get(&pid).is_some_and(|(kept, _)| *kept == at) {
                self.by_pid.remove(&pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn socket(sid: &str) -> Detached {
        Detached {
            sid: sid.into(),
            user: "u".into(),
            nsp: "/".into(),
            rooms: Vec::new(),
            sent: Sent::default(),
        }
    }

    #[test]
    fn kept_within_the_window_taken_once_and_bounded() {
        let d = DetachedSockets::new(Duration::from_secs(60), 2);
        d.keep("p1".into(), socket("1"));
        assert_eq!(d.take("p1").unwrap().sid, "1");
        assert!(d.take("p1").is_none(), "once");
        d.keep("p2".into(), socket("2"));
        d.keep("p3".into(), socket("3"));
        d.keep("p4".into(), socket("4"));
        assert!(d.take("p2").is_none(), "the oldest went past the bound");
        assert!(d.take("p3").is_some() && d.take("p4").is_some());
        let off = DetachedSockets::new(Duration::ZERO, 2);
        off.keep("p".into(), socket("x"));
        assert!(off.take("p").is_none(), "recovery off keeps nothing");
        let brief = DetachedSockets::new(Duration::from_millis(1), 2);
        brief.keep("p".into(), socket("x"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(brief.take("p").is_none(), "past the window");
    }

    #[test]
    fn a_record_reads_back_as_the_socket_with_each_name_once() {
        let (a, b, gone): (Arc<str>, Arc<str>, Arc<str>) =
            ("a".into(), "b\"}".into(), "gone".into());
        let mut sent = Sent::default();
        for (room, offset) in [(&a, 1), (&gone, 4), (&b, 7), (&a, 2)] {
            sent.record(room, offset);
        }
        let d = Detached {
            rooms: vec![(a.clone(), "00ff".into(), 2), (b.clone(), "0a0b".into(), 9)],
            sent,
            ..socket("sid-1")
        };
        let bytes = d.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("\"a\"").count(), 1, "{text}");
        let back = Detached::decode(&bytes).unwrap();
        assert_eq!(
            (back.sid.as_str(), &*back.user, &*back.nsp),
            ("sid-1", "u", "/")
        );
        assert_eq!(back.rooms, d.rooms);
        assert_eq!(
            back.sent.ring, d.sent.ring,
            "the ring whole, a room left since too"
        );
        assert_eq!(
            back.sent.last,
            vec![(a.clone(), 2), (b.clone(), 7)],
            "its rooms' only"
        );
        assert!(Detached::decode(b"{}").is_none());
        // One room, a full ring, offsets in the millions: under 1 KB (docs/cluster.md).
        let room: Arc<str> = "team:42:general-chat".into();
        let mut sent = Sent::default();
        for i in 0..2 * crate::session::namespace::SENT_RING as u64 {
            sent.record(&room, 1_000_000 + i);
        }
        let full = Detached {
            rooms: vec![(room, "0123456789abcdef".into(), 1_000_127)],
            sent,
            ..socket("3.1234567")
        };
        let len = full.encode().len();
        assert!(len < 1024, "{len} bytes");
        let broken = text.replace("[[0,1]", "[[9,1]");
        assert!(Detached::decode(broken.as_bytes()).is_none(), "{broken}");
    }
}
