//! For benches only: thin wrappers that let `benches/` drive the crate-private hot paths
//! without starting a server. Nothing here is stable or meant for any other use.
//!
//! What is real and what is a copy:
//! Everything is the server's own code, called as the server calls it: `Session::push`, the
//! outbox's vectored flush (`Outbound::flush_with`), the reactor's wake-up list (`Ready`),
//! `OutEvent::frame`, every `Directory` method, and a real shard context and hub (built on
//! their own, with no thread or listener) for the room and user lookups and
//! `Hub::deliver_local`.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::Format;

use crate::config::Config;
use crate::hub::{Delivery, OutEvent, Target};
use crate::node::shutdown::ShutdownTrigger;
use crate::node::{Ctx, Shared};
use crate::reactor::{Ready, Wake};
use crate::session::auth::Verifier;
use crate::session::Session;

/// The server's default `MAX_OUTBOUND_BYTES` (4 MiB), the bound every push is checked against.
const MAX_OUTBOUND_BYTES: usize = 4 << 20;

/// The name of room `i` as the benches build it: `room-00042`.
pub fn room_name(i: usize) -> String {
    format!("room-{i:05}")
}

/// The name of user `i` as the benches build it: `user-000042`.
pub fn user_name(i: usize) -> String {
    format!("user-{i:06}")
}

/// An event as a `publish` makes it: `chat` from `user-000000` in `room-00000`, with exactly
/// 64 bytes of JSON `data` (the loadgen's fan-out payload size).
pub struct Event {
    inner: Arc<OutEvent>,
}

impl Event {
    /// The event, with its frames not yet encoded.
    pub fn chat_64() -> Event {
        let mut data = String::from(r#"{"t":1795000000000000000,"s":1,"x":""#);
        let pad = 64 - data.len() - 2;
        data.extend(std::iter::repeat_n('x', pad));
        data.push_str(r#""}"#);
        debug_assert_eq!(data.len(), 64);
        let inner = OutEvent::new(
            "chat",
            Some(room_name(0).into()),
            Some(user_name(0).into()),
            Bytes::from(data),
            Format::Json,
        );
        Event { inner }
    }

    /// The complete WebSocket frame in `format`, encoded on first use and then shared (the real
    /// `OutEvent::frame`). `None` only if encoding fails, which a valid event rules out.
    pub fn frame(&self, format: Format) -> Option<Bytes> {
        self.inner.frame(format).cloned()
    }
}

/// The reactor's side of wake-ups, minus the slab lookup: takes the queued tokens (counting
/// them) as a reactor turn does; each driven session is then unmarked (`Session::unmark`).
#[derive(Default)]
struct Turns {
    ready: Rc<Ready>,
    batch: RefCell<Vec<u32>>,
    wakes: Cell<usize>,
}

impl Turns {
    fn take(&self) {
        let mut batch = self.batch.borrow_mut();
        self.ready.take_into(&mut batch);
        self.wakes.set(self.wakes.get() + batch.len());
        batch.clear();
    }
}

/// A session of `format`, attached to slot `token` of the reactor that `ready` belongs to.
fn session(id: u64, format: Format, ready: &Rc<Ready>, token: u32) -> Rc<Session> {
    let s = Rc::new(Session::new(id, format, 1));
    s.attach(Wake::new(ready.clone(), token));
    s
}

/// `n` connections of one shard: each a real `Session` behind an `Rc`, as the hub's maps hold
/// them, idle (not queued in the reactor's wake-up list), as between events.
pub struct Handles {
    handles: Vec<Rc<Session>>,
    turns: Turns,
}

impl Handles {
    /// `n` handles speaking `format`, each idle.
    pub fn new(n: usize, format: Format) -> Handles {
        let turns = Turns::default();
        let handles = (0..n)
            .map(|i| {
                let (id, token) = (i as u64 + 1, i as u32);
                session(id, format, &turns.ready, token)
            })
            .collect();
        Handles { handles, turns }
    }

    /// Queues `frame` on every connection (`Session::push`, which queues each idle
    /// connection for a reactor turn); returns how many accepted it.
    pub fn push_all(&self, frame: &Bytes) -> usize {
        self.handles
            .iter()
            .filter(|h| h.push(frame.clone(), MAX_OUTBOUND_BYTES).is_ok())
            .count()
    }

    /// What the reactor's next turn does, minus the syscall: takes the queued connections and
    /// flushes each queue with `Outbound::flush_with` into a sink that accepts every byte
    /// without copying. Returns the bytes flushed.
    pub fn flush_all(&self) -> usize {
        self.turns.take();
        let mut total = 0;
        for h in &self.handles {
            h.unmark();
            total += flush_to_sink(h);
        }
        total
    }

    /// Wake-ups delivered so far (one per push that found its connection idle).
    pub fn wakes(&self) -> usize {
        self.turns.take();
        self.turns.wakes.get()
    }
}

/// Flushes a session's whole outbox into a sink that takes everything; returns the bytes.
fn flush_to_sink(h: &Session) -> usize {
    let mut total = 0;
    let flushed = h.outbox().flush_with(|slices| {
        let n = slices.iter().map(|s| s.len()).sum();
        total += n;
        Ok(n)
    });
    debug_assert!(flushed.is_ok(), "the sink never fails");
    total
}

/// The kind of socket pair a [`Sockets`] writes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `UnixStream::pair()`: the kernel's cheapest stream socket.
    Unix,
    /// Loopback TCP with `TCP_NODELAY`, as the server's accepted sockets are set.
    Tcp,
}

/// One end of a socket pair.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write_vectored(bufs),
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }
}

/// `n` connections, each a real `Session` writing to its own non-blocking socket with the
/// outbox's vectored flush (one `writev` of up to 64 queued frames), as the connection task
/// does; the peer ends are read only by [`Sockets::drain`], outside the measured work.
///
/// Each connection takes two file descriptors.
pub struct Sockets {
    handles: Handles,
    writers: Vec<Stream>,
    readers: Vec<Stream>,
    buf: Vec<u8>,
}

impl Sockets {
    /// `n` connections over `transport`, speaking `format`.
    pub fn new(n: usize, transport: Transport, format: Format) -> io::Result<Sockets> {
        let mut writers = Vec::with_capacity(n);
        let mut readers = Vec::with_capacity(n);
        let listener = match transport {
            Transport::Tcp => Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?),
            Transport::Unix => None,
        };
        for _ in 0..n {
            let (w, r) = match &listener {
                None => {
                    let (w, r) = UnixStream::pair()?;
                    w.set_nonblocking(true)?;
                    r.set_nonblocking(true)?;
                    (Stream::Unix(w), Stream::Unix(r))
                }
                Some(l) => {
                    let r = TcpStream::connect(l.local_addr()?)?;
                    let (w, _) = l.accept()?;
                    w.set_nodelay(true)?;
                    w.set_nonblocking(true)?;
                    r.set_nonblocking(true)?;
                    (Stream::Tcp(w), Stream::Tcp(r))
                }
            };
            writers.push(w);
            readers.push(r);
        }
        Ok(Sockets {
            handles: Handles::new(n, format),
            writers,
            readers,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Queues `frames` copies of `frame` on every connection, then lets each connection flush
    /// its queue to its socket (`Outbound::flush_with` with `writev`, up to 64 frames per
    /// call), as a reactor turn does. Returns the bytes the kernel accepted; anything short of
    /// `n × frames × frame.len()` means a socket buffer was full.
    pub fn push_and_flush(&self, frame: &Bytes, frames: usize) -> io::Result<usize> {
        for _ in 0..frames {
            self.handles.push_all(frame);
        }
        self.handles.turns.take();
        let mut total = 0;
        for (h, w) in self.handles.handles.iter().zip(&self.writers) {
            h.unmark();
            h.outbox().flush_with(|slices| {
                let n = w.write_vectored(slices)?;
                total += n;
                Ok(n)
            })?;
        }
        Ok(total)
    }

    /// Reads whatever the peers have received, so the socket buffers never fill; returns the
    /// bytes read. Not part of the server's cost.
    pub fn drain(&mut self) -> io::Result<usize> {
        let mut total = 0;
        for r in &self.readers {
            loop {
                match r.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }
}

/// A real shard context and hub, not serving (no thread, no listener), filled as connects and
/// joins fill it: every connection is a real `Session` registered, authenticated and joined
/// through the hub's own functions, formats alternating JSON and MessagePack.
pub struct ShardMaps {
    ctx: Rc<Ctx>,
    handles: Vec<Rc<Session>>,
    /// The bench's own lists of who a room or user delivery reaches, to flush them after each
    /// delivery (what the reactor would do) so queues do not grow.
    reached: std::collections::HashMap<Arc<str>, Vec<Rc<Session>>>,
    turns: Turns,
}

impl ShardMaps {
    /// `users` users ([`user_name`]) with `conns_per_user` connections each; connection `j`
    /// joins `rooms_per_conn` consecutive rooms from `(j × rooms_per_conn) mod rooms`
    /// ([`room_name`]), so every room gets about `users × conns_per_user × rooms_per_conn /
    /// rooms` members.
    pub fn new(
        users: usize,
        conns_per_user: usize,
        rooms: usize,
        rooms_per_conn: usize,
    ) -> ShardMaps {
        let mut config = Config::for_tests();
        config.shards = 1;
        config.jwt_secret = Some("bench".into());
        config.max_rooms_per_connection =
            config.max_rooms_per_connection.max(rooms_per_conn as u32);
        let verifier = Verifier::from_config(&config, None).expect("an HS256 verifier");
        let (_trigger, shutdown) = ShutdownTrigger::new();
        let (shared, _handoffs) =
            Shared::new(config, verifier, Vec::new(), shutdown).expect("a memory store opens");
        let ctx = Ctx::new(0, Arc::new(shared));
        let turns = Turns::default();
        let room_names: Vec<Arc<str>> = (0..rooms).map(|i| room_name(i).into()).collect();
        let mut handles = Vec::with_capacity(users * conns_per_user);
        let mut reached: std::collections::HashMap<Arc<str>, Vec<Rc<Session>>> =
            std::collections::HashMap::new();
        let mut j = 0;
        for u in 0..users {
            let user: Arc<str> = user_name(u).into();
            for _ in 0..conns_per_user {
                let format = if j % 2 == 0 {
                    Format::Json
                } else {
                    Format::MsgPack
                };
                let h = session(ctx.next_session_id(), format, &turns.ready, j as u32);
                ctx.hub.register(&h);
                h.set_user(user.clone());
                ctx.hub.add_user(&user, &h);
                reached.entry(user.clone()).or_default().push(h.clone());
                for k in 0..rooms_per_conn.min(rooms) {
                    let room = &room_names[(j * rooms_per_conn + k) % rooms];
                    ctx.hub
                        .join(&h, room)
                        .expect("within the bench's room bounds");
                    reached.entry(room.clone()).or_default().push(h.clone());
                }
                handles.push(h);
                j += 1;
            }
        }
        ShardMaps {
            turns,
            ctx,
            handles,
            reached,
        }
    }

    /// Looks a room up; its member count (0 when absent).
    pub fn room_members(&self, room: &str) -> usize {
        self.ctx.hub.room_len(room)
    }

    /// Looks a user up; how many connections it has here (0 when absent).
    pub fn user_conns(&self, user: &str) -> usize {
        self.ctx.hub.user_len(user)
    }

    /// The id of the `i`-th connection made (to exclude it, as a publisher's own).
    pub fn conn_id(&self, i: usize) -> u64 {
        self.handles[i].id
    }

    /// `Hub::deliver_local` for `Target::Room`, not to `exclude` (a publisher's own
    /// connection); then each member flushes to a sink and parks, as in
    /// [`Handles::flush_all`]. Returns connections reached.
    pub fn deliver_room(&self, room: &Arc<str>, event: &Event, exclude: Option<u64>) -> usize {
        let mut d = Delivery::new(Target::Room(room.clone()), event.inner.clone());
        d.exclude = exclude;
        let delivered = self.ctx.hub.deliver_local(&d);
        self.flush(room);
        delivered
    }

    /// `Hub::deliver_local` for `Target::User`, then each of the user's connections flushes
    /// to a sink and parks. Returns connections reached.
    pub fn deliver_user(&self, user: &Arc<str>, event: &Event) -> usize {
        let d = Delivery::new(Target::User(user.clone()), event.inner.clone());
        let delivered = self.ctx.hub.deliver_local(&d);
        self.flush(user);
        delivered
    }

    /// Flushes the connections a delivery to `key` reached, as the reactor's next turn would.
    fn flush(&self, key: &str) {
        self.turns.take();
        for h in self.reached.get(key).into_iter().flatten() {
            h.unmark();
            flush_to_sink(h);
        }
    }
}

/// The server-wide directory (the real `Directory`), filled as connects and joins fill it.
pub struct Directory {
    inner: crate::cluster::Directory,
    /// The user of [`Directory::join_leave`], in no room otherwise.
    joiner: Arc<str>,
}

impl Directory {
    /// `users` users ([`user_name`]) with `conns_per_user` connections each, and `rooms` rooms
    /// ([`room_name`]) with `members` members each, all made by `join`s.
    pub fn new(users: usize, conns_per_user: u32, rooms: usize, members: u32) -> Directory {
        let rules = crate::cluster::PresenceRules {
            grace: std::time::Duration::from_secs(5),
            rooms_default: true,
            max_leaving: users,
        };
        let inner = crate::cluster::Directory::new(conns_per_user.max(16), rooms, rules);
        for u in 0..users {
            let user: Arc<str> = user_name(u).into();
            for _ in 0..conns_per_user {
                inner.add_connection(&user, |_| {});
            }
        }
        for r in 0..rooms {
            let room: Arc<str> = room_name(r).into();
            for m in 0..members {
                let user: Arc<str> = user_name(m as usize).into();
                let _ = inner.add_member(&room, &user, |_| {});
            }
        }
        Directory {
            inner,
            joiner: Arc::from("joiner"),
        }
    }

    /// `Directory::room` (every REST room push and room route asks it first): the room's
    /// member count, if it exists.
    pub fn room(&self, room: &str) -> Option<u32> {
        self.inner.room(room).map(|info| info.members)
    }

    /// `Directory::connections_of` (`GET /api/v1/users/{userId}`).
    pub fn connections_of(&self, user: &str) -> u32 {
        self.inner.connections_of(user)
    }

    /// `Directory::users_page` (`GET /api/v1/users`): entries returned.
    pub fn users_page(&self, cursor: Option<&str>, limit: usize) -> usize {
        self.inner.users_page(cursor, limit).0.len()
    }

    /// `Directory::rooms_page` (`GET /api/v1/rooms`): entries returned.
    pub fn rooms_page(&self, cursor: Option<&str>, limit: usize) -> usize {
        self.inner.rooms_page(cursor, limit).0.len()
    }

    /// A `join` then a `leave` of an existing room by a user not in it yet:
    /// `Directory::add_member` and `Directory::remove_member`, two locked map updates (and a
    /// presence change each, announced to nobody).
    pub fn join_leave(&self, room: &Arc<str>) -> bool {
        let joined = self.inner.add_member(room, &self.joiner, |_| {}).is_ok();
        self.inner.remove_member(room, &self.joiner, |_| {});
        joined
    }
}

/// A room's stream as publishes write it: the real `Streams` (one bucket lock per append)
/// and `Stream` (offset, history ring, trim), without the inboxes.
pub struct StreamWrites {
    streams: crate::cluster::Streams,
    room: Arc<str>,
    event: Event,
}

impl StreamWrites {
    /// A stream keeping `size` messages (the default bytes and age bounds), in memory only
    /// (`STORE=memory`).
    pub fn new(size: usize) -> StreamWrites {
        StreamWrites::with_store(size, crate::store::Store::memory())
    }

    /// The same, written to a real store in `dir` (`STORE=disk`, fsync every 5 ms, the
    /// default queue): an append also encodes the stored value and queues its write, and
    /// waits (spinning) while the writer thread has the queue full, so a run of appends
    /// measures the sustained rate of shard and writer together.
    pub fn on_disk(size: usize, dir: &std::path::Path) -> StreamWrites {
        let fsync = crate::config::Fsync::Every(std::time::Duration::from_millis(5));
        let (store, _) = crate::store::Store::open(dir, fsync, 65_536, std::time::Duration::ZERO)
            .expect("a store in a fresh directory");
        StreamWrites::with_store(size, store)
    }

    fn with_store(size: usize, store: crate::store::Store) -> StreamWrites {
        let limits = crate::hub::StreamLimits {
            size,
            bytes: 64 * 1024,
            ttl_ms: 3_600_000,
        };
        StreamWrites {
            streams: crate::cluster::Streams::new(
                crate::store::Kind::Room,
                limits,
                100_000,
                Arc::new(store),
            ),
            room: room_name(0).into(),
            event: Event::chat_64(),
        }
    }

    /// What a publish adds on the write path: the bucket lock, the next offset, the event
    /// at that offset (`OutEvent::sequenced`) and its place in the history ring. Returns it.
    pub fn append(&self) -> u64 {
        let now = crate::cluster::streams::unix_ms();
        let writes = loop {
            match self.streams.try_reserve() {
                Some(writes) => break writes,
                None => std::hint::spin_loop(),
            }
        };
        let appended =
            self.streams
                .append(&self.room, writes, &self.event.inner, now, || None, |_| ());
        appended.event.offset().unwrap_or(0)
    }

    /// A `history` read of the newest `limit` messages; returns how many.
    pub fn read_newest(&self, limit: usize) -> usize {
        let query = crate::hub::Query {
            limit,
            before: None,
            after: None,
        };
        let Some(head) = self.streams.store().try_reserve() else {
            return 0;
        };
        self.streams
            .with(&self.room, head, || None, |s| s.read(&query).len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_event_data_is_64_bytes_and_frames_encode() {
        let ev = Event::chat_64();
        assert_eq!(ev.inner.frame(Format::Json).unwrap()[0], 0x81);
        assert_eq!(ev.frame(Format::MsgPack).unwrap()[0], 0x82);
    }

    #[test]
    fn handles_take_every_push_wake_and_flush_it_all() {
        let ev = Event::chat_64();
        let frame = ev.frame(Format::Json).unwrap();
        let h = Handles::new(3, Format::Json);
        assert_eq!(h.push_all(&frame), 3);
        assert_eq!(h.wakes(), 3);
        assert_eq!(h.flush_all(), 3 * frame.len());
        assert_eq!(h.push_all(&frame), 3);
        assert_eq!(h.wakes(), 6, "each turn made the connection idle again");
        assert_eq!(h.flush_all(), 3 * frame.len());
    }

    #[test]
    fn sockets_carry_every_byte_to_the_peers() {
        let ev = Event::chat_64();
        let frame = ev.frame(Format::Json).unwrap();
        for transport in [Transport::Unix, Transport::Tcp] {
            let mut s = Sockets::new(3, transport, Format::Json).unwrap();
            let sent = s.push_and_flush(&frame, 2).unwrap();
            assert_eq!(sent, 3 * 2 * frame.len());
            let mut read = 0;
            while read < sent {
                read += s.drain().unwrap();
            }
            assert_eq!(read, sent);
        }
    }

    #[test]
    fn shard_maps_route_to_rooms_and_users() {
        let maps = ShardMaps::new(100, 2, 10, 3);
        assert_eq!(maps.room_members(&room_name(4)), 60);
        assert_eq!(maps.room_members("nope"), 0);
        assert_eq!(maps.user_conns(&user_name(7)), 2);
        let ev = Event::chat_64();
        let (room, user): (Arc<str>, Arc<str>) = (room_name(4).into(), user_name(7).into());
        assert_eq!(maps.deliver_room(&room, &ev, Some(maps.conn_id(4))), 59);
        assert_eq!(maps.deliver_user(&user, &ev), 2);
        // The real shard counted what it delivered.
        assert_eq!(
            maps.ctx
                .stats()
                .deliveries
                .load(std::sync::atomic::Ordering::Relaxed),
            61
        );
    }

    #[test]
    fn directory_is_filled_like_the_server_fills_it() {
        let d = Directory::new(50, 2, 20, 5);
        assert_eq!(d.room(&room_name(3)), Some(5));
        assert_eq!(d.connections_of(&user_name(49)), 2);
        assert_eq!(d.users_page(None, 100), 50);
        assert_eq!(d.rooms_page(Some(&room_name(9)), 100), 10);
        assert!(d.join_leave(&room_name(3).into()));
        assert_eq!(d.room(&room_name(3)), Some(5));
    }
}
