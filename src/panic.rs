//! Panic containment: a panic while serving one connection or running one shard task is
//! caught, logged and counted (`wsgate_panics_total`); the shard and the process keep serving.
//!
//! Connections are contained by the reactor (`crate::reactor`: the connection is closed with
//! 1011); shard-level work (deliveries, tasks, the sweep) through [`contain`]. With the
//! `testing` feature only, tests inject panics with `Faults`, a config field that no flag or
//! variable can set; a release build has neither the field nor the checks.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::stats::ShardStats;

/// Room names that make the server panic on purpose when `Config::faults` is enabled: how
/// the containment tests reach code that has no bug to trigger.
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Faults {
    /// Normal operation: nothing is injected.
    #[default]
    Off,
    /// `publish` to [`PANIC_IN_CONNECTION`] panics in the publisher's connection handler, and
    /// a delivery to [`PANIC_IN_SHARD`] panics in each shard that delivers it.
    On,
}

/// With [`Faults::On`]: publishing to this room panics in the connection's command handler.
#[cfg(feature = "testing")]
pub const PANIC_IN_CONNECTION: &str = "fault:panic-in-connection";
/// With [`Faults::On`]: delivering to this room panics in the shard's delivery code.
#[cfg(feature = "testing")]
pub const PANIC_IN_SHARD: &str = "fault:panic-in-shard";

/// The text of a caught panic.
pub(crate) fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// Runs shard-level `work`; a panic in it is logged and counted (`None`), and the shard
/// goes on with its next piece of work.
pub(crate) fn contain<R>(
    stats: &ShardStats,
    shard: usize,
    what: &'static str,
    work: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(r) => Some(r),
        Err(panic) => {
            ShardStats::inc(&stats.panics);
            tracing::error!(
                shard,
                panic = message(&*panic),
                "panic in {what}; skipped it"
            );
            None
        }
    }
}
