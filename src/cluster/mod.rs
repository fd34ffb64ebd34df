//! What lies beyond one shard's hub: the [`crate::hub::Backplane`] implementations and the
//! directory they answer cluster-wide questions from.
//!
//! - [`local`]: the other shards of this process, through lock-free inboxes (the default);
//! - [`directory`]: users and rooms across the shards, with their counts and bounds;
//! - [`streams`]: every stream, a room's or a user's (offsets, epochs, recent history), one
//!   writer at a time;
//! - [`reads`]: users' read markers in rooms;
//! - [`idempotency`]: the first answers of keyed requests, for their retries.
//!
//! - [`redis`]: cluster mode's link to Redis (`CLUSTER_REDIS_URL`), where every stream then
//!   lives; `local/remote.rs` is the local backplane's half that uses it.

pub(crate) mod directory;
pub(crate) mod idempotency;
pub(crate) mod local;
pub(crate) mod reads;
pub(crate) mod redis;
pub(crate) mod streams;

pub(crate) use directory::{Creator, Directory, PresenceRules, RoomInfo, RoomOptions};
pub(crate) use idempotency::{Begin, Idempotency, IdempotencyLimits};
pub(crate) use local::{Local, LocalHub, ShardMsg};
pub(crate) use streams::Streams;
