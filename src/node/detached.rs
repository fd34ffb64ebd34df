//! Socket.IO sockets whose connection went away, kept for `SOCKETIO_RECOVERY` so that their
//! client, reconnecting with the socket's `pid` and the offset of the last event it received,
//! gets the same socket back (`socket.recovered`) with what it missed. Process-wide (a client
//! reconnects to any shard), bounded by `MAX_CONNECTIONS`: past it the oldest is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}
