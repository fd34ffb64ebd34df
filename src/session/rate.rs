//! A per-connection token bucket, in integer milli-tokens on the shard's coarse clock.

/// A token bucket: `rate` tokens per second, at most `burst` saved up. Eight bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenBucket {
    milli_tokens: u32,
    last_ms: u32,
}

/// The bucket's settings, shared by all connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimit {
    /// Tokens per second.
    pub(crate) rate: u32,
    /// Bucket size, in tokens.
    pub(crate) burst: u32,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub(crate) fn new(limit: RateLimit, now_ms: u64) -> TokenBucket {
        TokenBucket {
            milli_tokens: limit.burst.saturating_mul(1000),
            last_ms: now_ms as u32,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        let now = now_ms as u32;
        let elapsed = u64::from(now.wrapping_sub(self.last_ms));
        self.last_ms = now;
        let cap = u64::from(limit.burst) * 1000;
        let refill = elapsed * u64::from(limit.rate);
        let tokens = (u64::from(self.milli_tokens) + refill).min(cap);
        if tokens >= 1000 {
            self.milli_tokens = (tokens - 1000) as u32;
            true
        } else {
            self.milli_tokens = tokens as u32;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limit = RateLimit { rate: 10, burst: 3 };
        let mut b = TokenBucket::new(limit, 1_000);
        assert!((0..3).all(|_| b.try_take(limit, 1_000)));
        assert!(!b.try_take(limit, 1_000));
        // 10/s: one token per 100 ms.
        assert!(!b.try_take(limit, 1_050));
        assert!(b.try_take(limit, 1_100));
        assert!(!b.try_take(limit, 1_100));
        // A long pause refills only up to the burst.
        assert!((0..3).all(|_| b.try_take(limit, 100_000)));
        assert!(!b.try_take(limit, 100_000));
    }
}
