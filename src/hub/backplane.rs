//! The seam between a hub and every other hub: the [`Backplane`] a hub is given. Today's
//! implementation is `crate::cluster::Local` (the other shards of this process, through
//! lock-free inboxes); a Redis backplane implements the same contract for other nodes.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::stream::{Entry, Position, Query, Recovery};
#[cfg(doc)]
use super::Target;
use super::{Delivery, Hub, JoinRefused, OutEvent};

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
    /// Cluster mode: Redis, which shares the definition with every node, did not answer.
    Unavailable,
}

/// Why a backplane could not do what needs the rest of the cluster (cluster mode: Redis).
/// Nothing was done: the caller refuses what it was asked (`cluster.unavailable`, HTTP 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BackplaneError {
    /// Redis did not answer within `CLUSTER_TIMEOUT`.
    #[error("the cluster's Redis did not answer in time")]
    Unreachable,
    /// `CLUSTER_BUFFER` commands toward Redis are in flight already.
    #[error("too many commands toward the cluster's Redis are in flight")]
    Busy,
}

impl From<BackplaneError> for wsgate_protocol::ProtocolError {
    fn from(e: BackplaneError) -> Self {
        wsgate_protocol::ProtocolError::new(
            wsgate_protocol::ErrorCode::ClusterUnavailable,
            format!("not done: {e}"),
        )
    }
}

/// A user's messages waiting for a connection that just authenticated, oldest first.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// Where the user's stream is: the live copies of messages up to its offset are skipped
    /// by the connection that replays these.
    pub(crate) position: Position,
    /// Whether the user acks (else delivery counts as the ack).
    pub(crate) manual: bool,
    pub(crate) events: Vec<Arc<OutEvent>>,
    /// Some waiting messages are only in the store and not in `events`: the whole mailbox
    /// comes from [`Backplane::load_mailbox`].
    pub(crate) stored: bool,
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
    /// The join's `presence`: subscribe the session to the room's presence events (or stop).
    pub(crate) presence: Option<bool>,
    /// Answers the join command.
    pub(crate) done: oneshot::Sender<JoinDone>,
}

/// What a publish learned on its way: whether it waited for room (a full inbox or store
/// queue), and, when replies wait for the fsync (`STORE_FSYNC=always`), the wait for it.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub(crate) waited: bool,
    /// The offset a room event got in its room's stream.
    pub(crate) offset: Option<u64>,
    /// Resolves once the message is on disk; an error means it could not be written.
    pub(crate) durable: Option<oneshot::Receiver<()>>,
}

/// A join that succeeded.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The stream's position when the member was added.
    pub(crate) position: Position,
    /// For a resume, whether every missed message was replayed.
    pub(crate) recovered: Option<bool>,
    /// For a join with `presence`, whether the session now receives the room's presence events.
    pub(crate) presence: Option<bool>,
}

/// How a join ended.
pub(crate) type JoinDone = Result<Joined, JoinRefused>;

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
/// - **Cluster mode** (`crate::cluster::Local` with Redis, `CLUSTER_REDIS_URL`): "every hub"
///   is every hub of the nodes hosting the target's recipients, a stream's offsets come from
///   Redis and every hub sees a stream in offset order (its own node's publishes included);
///   one sender's events to different streams may reach a hub in another order. What needs
///   Redis may fail with a [`BackplaneError`]: then nothing was done (no offset taken, nothing
///   delivered), and the caller refuses what it was asked. A report counts this node's hubs'
///   connections; whether a user was found is cluster-wide. Presence, the directory and
///   [`Backplane::run_everywhere`] are still this node's (docs/cluster.md, "Not yet").
/// - **Work.** [`Backplane::run_everywhere`] runs a task once on every hub, on its thread,
///   after the deliveries published before it.
/// - **Streams.** [`Backplane::publish_stream`] gives a room event the next offset of the
///   room's stream, keeps it in the stream's history, and hands it to every hub, the caller's
///   included, so that every hub sees a stream's events in offset order. A join that must sit at
///   a known position of the stream ([`Backplane::join_stream`]) travels the same ordered path
///   to the joining hub. The epoch of a stream changes whenever its history was lost. With
///   a store, the stream's write is queued under the same order (see `crate::store`).
/// - **Mailboxes.** Every private message (to a user) goes through its user's stream the
///   same way ([`Backplane::publish_user`]): it gets the stream's next offset and is kept until
///   acknowledged, so a user with no connection gets it on its next one.
/// - **Directory.** Room member counts are the system-wide sum of every hub's members; a room
///   made by a join exists while it has members, and at most `MAX_ROOMS` rooms exist.
/// - **Presence.** Members are counted per user system-wide: a user's first member connection
///   of a room (whatever its hub) is delivered to every hub as a `presence.join`
///   ([`Target::Presence`]) when the room announces presence, and its last as a
///   `presence.leave`; a watched user's first connection as `user.online`, and the end of the
///   grace after its last as `user.offline` ([`Target::Watchers`]). The changes of one room or
///   one user reach each hub in the order they happened. Presence is ephemeral: it is not in
///   any stream.
/// - **Cluster mode** (`CLUSTER_REDIS_URL`): "system-wide" is every node. Each node's counts
///   reach Redis shortly after they change (synced, not per change, so a join and a leave
///   within one sync announce nothing), where scripts decide the changes above for the whole
///   cluster (a user's first member connection on any node, its last anywhere; the grace
///   after its last connection anywhere) and publish them to the nodes hosting followers or
///   watchers; a node silent for `CLUSTER_NODE_TIMEOUT` has its members and users taken out
///   by another. Room definitions are shared through Redis; the directory's listings are then
///   asked of Redis (`crate::cluster::redis::presence`), and this node's directory is its own
///   part.
pub(crate) trait Backplane: Sized + Send + Sync + 'static {
    /// Hubs a delivery's report waits for, this one included.
    fn hubs(&self) -> usize;

    /// Hands `delivery` to every hub; resolves once every one has it queued, with whether it
    /// had to wait for room in a full inbox.
    fn publish(&self, delivery: Delivery) -> impl Future<Output = Result<bool, BackplaneError>>;

    /// Runs `task` on every hub; resolves once every one has it queued.
    fn run_everywhere(&self, task: Task<Self>) -> impl Future<Output = ()>;

    /// Appends a room event to its stream (and the store) and delivers it through every hub
    /// (see the contract).
    fn publish_stream(
        &self,
        room: &Arc<str>,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Published, BackplaneError>>;

    /// Sends `session`'s join of `room` to hub `hub` along the stream's ordered path, with the
    /// messages after `since` (epoch, offset) when it resumes; the answer comes on the ticket.
    fn join_stream(
        &self,
        hub: usize,
        session: u64,
        room: &Arc<str>,
        since: Option<(&str, u64)>,
        presence: Option<bool>,
    ) -> impl Future<Output = oneshot::Receiver<JoinDone>>;

    /// Appends a private message to its user's stream (the user's mailbox, and the store)
    /// and delivers it through every hub, like [`Backplane::publish_stream`].
    fn publish_user(
        &self,
        user: &Arc<str>,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Published, BackplaneError>>;

    /// `user`'s messages not acknowledged, if it has a stream, which is woken: it holds the
    /// messages it is sent from now on (a user's stream with no connection of its user may
    /// keep them only in the store). Answered now, from memory: when some of the messages
    /// are only in the store, the answer says so (`stored`) and lacks them.
    fn mailbox(&self, user: &str) -> Option<Mailbox>;

    /// `user`'s messages not acknowledged, those only in the store included, in order. The
    /// answer's position is taken with its last messages: nothing sent to the user up to it
    /// is missing from the answer (unless acknowledged meanwhile).
    fn load_mailbox(&self, user: &Arc<str>) -> impl Future<Output = Option<Mailbox>>;

    /// A hub delivered `user`'s message at `offset` to a connection: for a user that does
    /// not ack, that acknowledges it (and what came before).
    fn delivered(&self, user: &Arc<str>, offset: u64);

    /// `user` acknowledged its messages up to `offset` (the `ack` command; written to the
    /// store): from now on its messages wait for acks. Returns its stream's position.
    fn ack(
        &self,
        user: &Arc<str>,
        offset: u64,
    ) -> impl Future<Output = Result<Position, BackplaneError>>;

    /// The stream's position and the kept messages `query` asks for.
    fn history(
        &self,
        room: &Arc<str>,
        query: Query,
    ) -> impl Future<Output = Result<(Position, Vec<Entry>), BackplaneError>>;

    /// Counts one more member connection of `user` in `room`, creating the room unless
    /// `MAX_ROOMS` rooms exist; the user's first is announced (see the contract).
    fn add_member(&self, room: &Arc<str>, user: &Arc<str>) -> Result<(), RoomRefused>;

    /// Counts one member connection of `user` in `room` fewer; the user's last is announced. A
    /// room made by a join goes with its last member.
    fn remove_member(&self, room: &str, user: &str);

    /// One more member connection follows `room`'s presence events, if the room announces
    /// presence (then `true`): a room none follows announces nothing.
    fn follow(&self, room: &str) -> bool;

    /// One member connection fewer follows `room`'s presence events.
    fn unfollow(&self, room: &str);

    /// One more connection watches `user`; whether it is online now, as watchers are told.
    fn watch(&self, user: &Arc<str>) -> bool;

    /// One connection fewer watches `user`.
    fn unwatch(&self, user: &str);

    /// Whether `user` is online now, as watchers are told.
    fn online(&self, user: &str) -> bool;
}
