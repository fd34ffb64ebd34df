//! The seam between a hub and every other hub: the [`Backplane`] a hub is given. Today's
//! implementation is `crate::cluster::Local` (the other shards of this process, through
//! lock-free inboxes); a Redis backplane implements the same contract for other nodes.

use std::future::Future;
use std::sync::Arc;

use super::{Delivery, Hub};

/// Work run on another hub, on that hub's thread (REST queries and administration).
pub(crate) type Task<B> = Arc<dyn Fn(&Hub<B>) + Send + Sync>;

/// Why the directory refused a room operation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RoomRefused {
    /// The server already has `MAX_ROOMS` rooms.
    TooManyRooms,
    /// Creating a room that exists.
    Exists,
}

/// How a hub reaches every other hub, and the directory they share.
///
/// The contract callers rely on:
/// - **Delivery.** [`Backplane::publish`] hands a delivery to every hub but the caller's,
///   each of which delivers it to its own sessions exactly as the caller's hub delivered it
///   locally. Deliveries from one hub reach each other hub in the order they were published.
///   Nothing accepted is dropped: when a hub cannot take more (a full inbox), `publish`
///   waits, so backpressure reaches the publisher instead of memory growing.
/// - **Reports.** A delivery's report is counted once by every hub ([`Backplane::hubs`] of
///   them, the caller's included), so a waiter learns what the whole system reached.
/// - **Work.** [`Backplane::run_on_others`] runs a task once on every other hub, on its
///   thread, after the deliveries published before it.
/// - **Directory.** Room member counts are the system-wide sum of every hub's members; a room
///   made by a join exists while it has members, and at most `MAX_ROOMS` rooms exist.
pub(crate) trait Backplane: Sized + Send + Sync + 'static {
    /// Hubs a delivery's report waits for, this one included.
    fn hubs(&self) -> usize;

    /// Hands `delivery` to every hub except `from`; resolves once every one has it queued.
    fn publish(&self, from: usize, delivery: Delivery) -> impl Future<Output = ()>;

    /// Runs `task` on every hub except `from`; resolves once every one has it queued.
    fn run_on_others(&self, from: usize, task: Task<Self>) -> impl Future<Output = ()>;

    /// Counts one more member of `room`, creating it unless `MAX_ROOMS` rooms exist.
    fn add_member(&self, room: &Arc<str>) -> Result<(), RoomRefused>;

    /// Counts one member of `room` fewer; a room made by a join goes with its last member.
    fn remove_member(&self, room: &str);
}
