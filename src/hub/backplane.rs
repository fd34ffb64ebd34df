//! The seam between a hub and every other hub: the [`Backplane`] a hub is given. Today's
//! implementation is `crate::cluster::Local` (the other shards of this process, through
//! lock-free inboxes); a Redis backplane implements the same contract for other nodes.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::stream::{Entry, Position, Query, Recovery};
use super::{Delivery, Hub, JoinRefused};

/// Work run on another hub, on that hub's thread (REST queries and administration).
pub(crate) type Task<B> = Arc<dyn Fn(&Hub<B>) + Send + Sync>;

/// Why the directory refused a room operation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RoomRefused {
    /// The server already has `MAX_ROOMS` rooms.
    TooManyRooms,
    /// Creating a room that exists.
    Exists,
    /// The room holds its `maxMembers` member connections.
    Full,
    /// The creating user already holds `MAX_ROOMS_CREATED_PER_USER` rooms it created.
    CreatorLimit,
}

/// A join on its way through its room's stream: made under the stream's lock (so its
/// position sits exactly between the messages before and after it) and completed by the
/// joining session's hub ([`Hub::complete_join`]) in the same order as the stream's messages.
pub(crate) struct JoinTicket {
    /// The joining session.
    pub(crate) session: u64,
    pub(crate) room: Arc<str>,
    /// The stream's position when the member was added: later messages have larger offsets.
    pub(crate) position: Position,
    /// With a resume, the messages after the client's position, or `None` when the stream
    /// cannot tell; without one, `None`.
    pub(crate) recovery: Option<Recovery>,
    /// Answers the join command.
    pub(crate) done: oneshot::Sender<JoinDone>,
}

/// How a join ended: the position and, for a resume, whether it recovered.
pub(crate) type JoinDone = Result<(Position, Option<bool>), JoinRefused>;

/// How a hub reaches every other hub, and the directory they share.
///
/// The contract callers rely on:
/// - **Delivery.** [`Backplane::publish`] hands a delivery to every hub, the caller's
///   included, each of which delivers it to its own sessions. What one caller publishes (and
///   runs, below) reaches each hub in the order it was published, so every recipient gets one
///   sender's events in order, whatever their targets. Nothing accepted is dropped: when a hub
///   cannot take more (a full inbox), `publish` waits, so backpressure reaches the publisher
///   instead of memory growing.
/// - **Reports.** A delivery's report is counted once by every hub ([`Backplane::hubs`] of
///   them), so a waiter learns what the whole system reached.
/// - **Work.** [`Backplane::run_everywhere`] runs a task once on every hub, on its thread,
///   after the deliveries published before it.
/// - **Streams.** [`Backplane::publish_stream`] gives a room event the next offset of the
///   room's stream, keeps it in the stream's history, and hands it to every hub, the caller's
///   included, so that every hub sees a stream's events in offset order. A join that must sit at
///   a known position of the stream ([`Backplane::join_stream`]) travels the same ordered path
///   to the joining hub. The epoch of a stream changes whenever its history was lost.
/// - **Directory.** Room member counts are the system-wide sum of every hub's members; a room
///   made by a join exists while it has members, and at most `MAX_ROOMS` rooms exist.
pub(crate) trait Backplane: Sized + Send + Sync + 'static {
    /// Hubs a delivery's report waits for, this one included.
    fn hubs(&self) -> usize;

    /// Hands `delivery` to every hub; resolves once every one has it queued, with whether it
    /// had to wait for room in a full inbox.
    fn publish(&self, delivery: Delivery) -> impl Future<Output = bool>;

    /// Runs `task` on every hub; resolves once every one has it queued.
    fn run_everywhere(&self, task: Task<Self>) -> impl Future<Output = ()>;

    /// Appends a room event to its stream and delivers it through every hub (see the
    /// contract). Returns whether it had to wait for room in a hub's full inbox, and the
    /// offset the event got.
    fn publish_stream(
        &self,
        room: &Arc<str>,
        delivery: Delivery,
    ) -> impl Future<Output = (bool, u64)>;

    /// Sends `session`'s join of `room` to hub `hub` along the stream's ordered path, with the
    /// messages after `since` (epoch, offset) when it resumes; the answer comes on the ticket.
    fn join_stream(
        &self,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
    ) -> impl Future<Output = oneshot::Receiver<JoinDone>>;

    /// The stream's position and the kept messages `query` asks for.
    fn history(
        &self,
        room: &Arc<str>,
        query: Query,
    ) -> impl Future<Output = (Position, Vec<Entry>)>;

    /// Counts one more member of `room`, creating it unless `MAX_ROOMS` rooms exist.
    fn add_member(&self, room: &Arc<str>) -> Result<(), RoomRefused>;

    /// Counts one member of `room` fewer; a room made by a join goes with its last member.
    fn remove_member(&self, room: &str);
}
