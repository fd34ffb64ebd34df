//! An event on its way to recipients, encoded at most once per wire format: every recipient
//! of a format is handed the same `Bytes`. And who it goes to ([`Target`]).

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use wsgate_protocol::{encode_server_message, Format, RawData, ServerMessage};

use crate::session::{recovery_offset, Session};
use crate::transport::outbound::PushError;
use crate::transport::socketio;
use crate::transport::ws::frame;

/// Namespaces whose Socket.IO frames an event caches without a lock (slots below this); the
/// frames of namespaces past them are cached under a mutex.
pub(crate) const SIO_SLOTS: usize = 8;

/// An event's Socket.IO frames, one per namespace slot and parser, each encoded on first use.
#[derive(Debug, Default)]
struct SioFrames {
    fixed: [OnceLock<Option<Bytes>>; 2 * SIO_SLOTS],
    more: Mutex<Vec<(usize, Option<Bytes>)>>,
}

/// An event on its way to recipients: its parts, and its complete WebSocket frame in each
/// format, each encoded at most once, by the first shard that needs it.
#[derive(Debug)]
pub(crate) struct OutEvent {
    event: Box<str>,
    room: Option<Arc<str>>,
    from: Option<Arc<str>>,
    /// The sender's `data`, validated, in `data_format`.
    data: Bytes,
    data_format: Format,
    /// Its offset in the room's stream, once the stream has taken it.
    offset: Option<u64>,
    frames: [OnceLock<Option<Bytes>>; 2],
    /// Its Socket.IO frames, made when a namespace socket is among its recipients.
    sio: OnceLock<Box<SioFrames>>,
}

impl OutEvent {
    pub(crate) fn new(
        event: &str,
        room: Option<Arc<str>>,
        from: Option<Arc<str>>,
        data: Bytes,
        data_format: Format,
    ) -> Arc<OutEvent> {
        Arc::new(OutEvent {
            event: event.into(),
            room,
            from,
            data,
            data_format,
            offset: None,
            frames: [OnceLock::new(), OnceLock::new()],
            sio: OnceLock::new(),
        })
    }

    /// The same event at `offset` of its room's stream (nothing encoded yet; the payload is
    /// shared, not copied).
    pub(crate) fn sequenced(&self, offset: u64) -> Arc<OutEvent> {
        Arc::new(OutEvent {
            event: self.event.clone(),
            room: self.room.clone(),
            from: self.from.clone(),
            data: self.data.clone(),
            data_format: self.data_format,
            offset: Some(offset),
            frames: [OnceLock::new(), OnceLock::new()],
            sio: OnceLock::new(),
        })
    }

    /// The event name.
    pub(crate) fn name(&self) -> &str {
        &self.event
    }

    /// Its offset in its stream, once sequenced.
    pub(crate) fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The event as the store keeps it, accepted at `at` (Unix ms).
    pub(crate) fn stored(&self, at: u64) -> Vec<u8> {
        crate::store::encode_message(
            at,
            &self.event,
            self.room.as_deref(),
            self.from.as_deref(),
            self.data_format,
            &self.data,
        )
    }

    /// The sending user, for events sent by a user.
    pub(crate) fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// The payload, as the sender encoded it.
    pub(crate) fn data(&self) -> RawData<'_> {
        RawData::trusted(self.data_format, &self.data)
    }

    /// Bytes the event may hold once encoded in both formats: what a stream counts for it.
    pub(crate) fn weight(&self) -> usize {
        let parts = self.event.len() + self.room.as_ref().map_or(0, |r| r.len()) + 64;
        2 * (parts + self.data.len())
    }

    /// The frames for `session`: its format's frame, or for a Socket.IO namespace socket its
    /// namespace's and parser's, encoded on first use and shared by every recipient of the
    /// same (a socket with recovery also records the room event as queued to it). A private
    /// message to a socket that asks for acks (`SOCKETIO_PRIVATE_ACKS`) is the shared frame
    /// behind a small one of the socket's own that carries its ack id ([`Frames::ask`]).
    /// `None` only if the event cannot be encoded so (logged).
    pub(crate) fn frame_for(&self, session: &Session) -> Option<Frames> {
        let Some(n) = &session.socketio else {
            let frame = self.frame(session.format).cloned()?;
            return Some(Frames { ask: None, frame });
        };
        let key = 2 * n.slot + n.parser.index();
        // With recovery, a room event carries its stream position, and the socket records
        // it as queued.
        let recovery = match (&n.sent, &self.room, self.offset) {
            (Some(sent), Some(room), Some(offset)) => {
                sent.borrow_mut()
                    .get_or_insert_with(Box::default)
                    .record(room, offset);
                Some((room, offset))
            }
            _ => None,
        };
        // A private message asks for an ack: its frame is what follows the id. Every socket
        // asks or none does (one setting), so one frame per namespace and parser still holds.
        let asked = match (&n.asks, &self.room, self.offset) {
            (Some(asks), None, Some(offset)) => Some(asks.borrow_mut().ask(offset)),
            _ => None,
        };
        let encode = || {
            let data = RawData::trusted(self.data_format, &self.data);
            if asked.is_some() {
                return socketio::event_body(n.parser, &n.nsp, &self.event, data);
            }
            let offset = recovery.map(|(room, offset)| recovery_offset(room, offset));
            socketio::event(n.parser, &n.nsp, &self.event, data, offset.as_deref())
        };
        let frame = self.sio_frame(key, encode)?;
        let ask = asked.map(|id| {
            let attachments = socketio::attachments_after(&frame);
            socketio::ask(n.parser, &n.nsp, id, attachments)
        });
        Some(Frames { ask, frame })
    }

    /// The Socket.IO frame cached under `key`, made by `encode` on first use.
    fn sio_frame(&self, key: usize, encode: impl FnOnce() -> Option<Bytes>) -> Option<Bytes> {
        let sio = self.sio.get_or_init(Box::default);
        if let Some(cell) = sio.fixed.get(key) {
            return cell.get_or_init(encode).clone();
        }
        let mut more = sio.more.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, frame)) = more.iter().find(|(k, _)| *k == key) {
            return frame.clone();
        }
        let frame = encode();
        more.push((key, frame.clone()));
        frame
    }

    /// The complete frame for `format`, encoded on first use. `None` only if `data` cannot be
    /// transcoded, which validation at decode time rules out.
    pub(crate) fn frame(&self, format: Format) -> Option<&Bytes> {
        self.frames[format.index()]
            .get_or_init(|| {
                let msg = ServerMessage::Event {
                    event: &self.event,
                    room: self.room.as_deref(),
                    from: self.from.as_deref(),
                    offset: self.offset,
                    data: RawData::trusted(self.data_format, &self.data),
                };
                let hint = 48 + self.event.len() + self.data.len();
                frame::build(frame::opcode_for(format), hint, |out| {
                    encode_server_message(format, &msg, out)
                })
                .map_err(|e| tracing::error!(error = %e, "event could not be encoded"))
                .ok()
            })
            .as_ref()
    }
}

/// What one recipient of an event is queued.
#[derive(Debug)]
pub(crate) struct Frames {
    /// The recipient's own first fragment (a Socket.IO event asking for an ack: the packet up
    /// to its ack id), queued right before `frame`.
    pub(crate) ask: Option<Bytes>,
    /// The event's frame, shared by every recipient of the same format (or namespace and
    /// parser).
    pub(crate) frame: Bytes,
}

impl Frames {
    /// Queues the frames to `session`, together.
    pub(crate) fn push(self, session: &Session, max_bytes: usize) -> Result<u32, PushError> {
        let shed = match self.ask {
            Some(ask) => session.push(ask, max_bytes)?,
            None => 0,
        };
        Ok(shed + session.push(self.frame, max_bytes)?)
    }
}

/// Who an event goes to.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// Every connection of one user.
    User(Arc<str>),
    /// Every connection of each of these users.
    Users(Arc<[Arc<str>]>),
    /// Every member of one room.
    Room(Arc<str>),
    /// The members of one room that follow its presence events.
    Presence(Arc<str>),
    /// The sessions watching one user.
    Watchers(Arc<str>),
    /// Every authenticated connection.
    Broadcast,
}

/// A `chat` event from `alice` in room `r` carrying `data` (for unit tests).
#[cfg(test)]
pub(crate) fn test_event(data: &'static [u8], format: Format) -> Arc<OutEvent> {
    OutEvent::new(
        "chat",
        Some("r".into()),
        Some("alice".into()),
        Bytes::from_static(data),
        format,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encodes_once_per_format_and_shares_the_bytes() {
        let ev = test_event(br#"{"a":1}"#, Format::Json);
        let a = ev.frame(Format::Json).unwrap().clone();
        let b = ev.frame(Format::Json).unwrap().clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same allocation is shared");
        assert_eq!(a[0], 0x81);
        let m = ev.frame(Format::MsgPack).unwrap();
        assert_eq!(m[0], 0x82);
    }
}
