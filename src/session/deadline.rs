//! When the sweep ends a session on its own, and why: one typed value per session.

use std::time::{SystemTime, UNIX_EPOCH};

/// A session's deadline on its shard's clock (milliseconds, see `crate::clock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// None: authenticated with a token that does not expire here (or expiry closes off), or
    /// a connection with no user at all (`/echo`).
    None,
    /// Not authenticated yet: closed with 4001 at `at_ms` unless `auth` succeeds first. No
    /// heartbeat runs before it.
    Auth { at_ms: u64 },
    /// Authenticated: closed with 4004 at `at_ms`, when the token expires, unless `auth`
    /// brings a fresher one for the same user.
    TokenExpiry { at_ms: u64 },
    /// An Engine.IO session that has not sent a Socket.IO `CONNECT` yet (socket.io's
    /// `connectTimeout`): closed with 4001 at `at_ms` unless one comes first. Its heartbeat
    /// runs meanwhile.
    Connect { at_ms: u64 },
}

impl Deadline {
    /// The deadline of a token that stops being valid at `expires_at` (seconds since the
    /// epoch, leeway included), on a clock that reads `now_ms` now. `None` without an expiry.
    /// The deadline is on the monotonic shard clock, so a wall-clock step after this moves
    /// it no more.
    pub(crate) fn token_expiry(expires_at: Option<u64>, now_ms: u64) -> Deadline {
        let Some(at) = expires_at else {
            return Deadline::None;
        };
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let left = at.saturating_mul(1000).saturating_sub(now_unix_ms);
        Deadline::TokenExpiry {
            at_ms: now_ms.saturating_add(left),
        }
    }
}
