//! Idempotency keys shared by every node (cluster mode): a backend that retries a push through
//! the balancer reaches any node, so the first answer of a key is kept in Redis as well as in
//! the node that gave it ([`crate::cluster::idempotency`]).
//!
//! One Redis key per idempotency key (`<prefix>:k:<scope and key>`), whose value is either a
//! *running* mark (`r` and the claiming request's token), kept at most [`RUNNING_TTL`] so
//! that a node killed mid-request does not hold the key for the whole window, or the *answer*
//! (`a` and its bytes), kept for `IDEMPOTENCY_WINDOW`. Each change is one script on one key:
//! claiming and answering cannot interleave with another node's.

use std::time::Duration;

use bytes::Bytes;
use fred::types::Value;

use super::{bytes_of, Redis};
use crate::hub::BackplaneError;

/// How long a running mark holds its key: a request running longer than this (or whose node
/// died) lets a retry on another node run it again.
pub(crate) const RUNNING_TTL: Duration = Duration::from_secs(10);

/// Claims a key unless it is held. KEYS: the key. ARGV: the running mark, its time to live
/// (ms). Returns nothing when claimed, else the value held (a mark or an answer).
pub(crate) const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#;

/// Replaces a running mark by its request's answer (`ARGV[2]`, kept `ARGV[3]` ms), or, with
/// no answer, lets the key go; only if the mark is still the request's own (`ARGV[1]`).
pub(crate) const SETTLE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// What a key holds in Redis.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing did: it is this request's now.
    Claimed,
    /// Another request runs it (on this node or another).
    Running,
    /// Its first answer.
    Answer(Bytes),
}

impl Redis {
    fn key_name(&self, key: &str) -> String {
        self.names.shared_key(key)
    }

    /// Claims `key` for the request whose mark is `token`, or says what holds it.
    pub(crate) async fn claim_key(&self, key: &str, token: u64) -> Result<Held, BackplaneError> {
        let args: Vec<Value> = vec![
            running(token).into(),
            (RUNNING_TTL.as_millis() as i64).into(),
        ];
        let keys = vec![self.key_name(key)];
        let held: Value = self
            .bounded(self.claim.evalsha_with_reload(&self.client, keys, args))
            .await?;
        Ok(match bytes_of(&held) {
            None => Held::Claimed,
            Some(b) if b.first() == Some(&b'a') => Held::Answer(b.slice(1..)),
            Some(_) => Held::Running,
        })
    }

    /// Keeps `answer` under `key` for `window` (`None`: lets the key go), if the request
    /// marked `token` still holds it.
    pub(crate) async fn settle_key(
        &self,
        key: &str,
        token: u64,
        answer: Option<&[u8]>,
        window: Duration,
    ) -> Result<(), BackplaneError> {
        let value = match answer {
            Some(a) => {
                let mut v = Vec::with_capacity(a.len() + 1);
                v.push(b'a');
                v.extend_from_slice(a);
                Bytes::from(v)
            }
            None => Bytes::new(),
        };
        let args: Vec<Value> = vec![
            running(token).into(),
            value.into(),
            (window.as_millis().max(1) as i64).into(),
        ];
        let keys = vec![self.key_name(key)];
        let _: Value = self
            .bounded(self.settle.evalsha_with_reload(&self.client, keys, args))
            .await?;
        Ok(())
    }
}

fn running(token: u64) -> String {
    format!("r{token:016x}")
}
