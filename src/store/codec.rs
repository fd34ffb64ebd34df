//! The store's bytes: how keys sort (a stream's messages together and in offset order) and how
//! a kept message, a room definition and a stream's head are written. Every read of stored
//! bytes checks lengths and returns `None` on anything malformed: a damaged record is skipped
//! and counted at recovery, never a panic.

use std::sync::Arc;

use wsgate_protocol::{Format, MAX_HISTORY_SIZE, MAX_HISTORY_TTL};

/// Which kind of stream: a room's or a user's (private messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Room,
    User,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Room => b'r',
            Kind::User => b'u',
        }
    }

    fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            b'r' => Some(Kind::Room),
            b'u' => Some(Kind::User),
            _ => None,
        }
    }
}

/// A stream's name in the store: its kind and its room or user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    pub(crate) kind: Kind,
    pub(crate) name: Arc<str>,
}

impl StreamKey {
    #[cfg(test)]
    pub(crate) fn room(name: Arc<str>) -> StreamKey {
        StreamKey {
            kind: Kind::Room,
            name,
        }
    }

    #[cfg(test)]
    pub(crate) fn user(name: Arc<str>) -> StreamKey {
        StreamKey {
            kind: Kind::User,
            name,
        }
    }

    /// The prefix every key of this stream's messages starts with: kind, name length, name.
    pub(crate) fn prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.name.len() + 8);
        out.push(self.kind.tag());
        put_str(&mut out, &self.name);
        out
    }

    /// The key of the message at `offset` (the offset big-endian, so keys sort by it).
    pub(crate) fn message(&self, offset: u64) -> Vec<u8> {
        let mut out = self.prefix();
        out.extend_from_slice(&offset.to_be_bytes());
        out
    }

    /// Reads a message key back: the stream and the offset.
    pub(crate) fn parse_message(key: &[u8]) -> Option<(StreamKey, u64)> {
        let (&tag, rest) = key.split_first()?;
        let kind = Kind::from_tag(tag)?;
        let (name, rest) = take_str(rest)?;
        let offset = u64::from_be_bytes(rest.try_into().ok()?);
        Some((
            StreamKey {
                kind,
                name: name.into(),
            },
            offset,
        ))
    }
}

/// Keys of the meta keyspace: one byte says what follows.
pub(crate) mod meta {
    use super::{put_str, take_str, Kind, StreamKey};

    /// The run record: whether the last run ended cleanly, and its offset skip.
    pub(crate) const RUN: &[u8] = b"run";
    const HEAD: u8 = b'h';
    const ROOM: u8 = b'd';
    const ALLOWED: u8 = b'm';
    const ACK: u8 = b'a';
    const READ: u8 = b'k';

    /// A stream's head: its epoch and last offset.
    pub(crate) fn head(stream: &StreamKey) -> Vec<u8> {
        let mut out = vec![HEAD];
        out.extend_from_slice(&stream.prefix());
        out
    }

    /// A room's definition (a room created by the backend or a client's `create`).
    pub(crate) fn room(room: &str) -> Vec<u8> {
        let mut out = vec![ROOM];
        put_str(&mut out, room);
        out
    }

    /// One user let into a private room.
    pub(crate) fn allowed(room: &str, user: &str) -> Vec<u8> {
        let mut out = vec![ALLOWED];
        put_str(&mut out, room);
        put_str(&mut out, user);
        out
    }

    /// The prefix of every user let into `room`.
    pub(crate) fn allowed_prefix(room: &str) -> Vec<u8> {
        let mut out = vec![ALLOWED];
        put_str(&mut out, room);
        out
    }

    /// A user's ack of its stream.
    pub(crate) fn ack(user: &str) -> Vec<u8> {
        let mut out = vec![ACK];
        put_str(&mut out, user);
        out
    }

    /// A user's read marker in a room.
    pub(crate) fn read(user: &str, room: &str) -> Vec<u8> {
        let mut out = vec![READ];
        put_str(&mut out, user);
        put_str(&mut out, room);
        out
    }

    /// What a meta key names.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Meta<'a> {
        Run,
        Head(StreamKey),
        Room(&'a str),
        Allowed(&'a str, &'a str),
        Ack(&'a str),
        Read(&'a str, &'a str),
    }

    /// Reads a meta key back.
    pub(crate) fn parse(key: &[u8]) -> Option<Meta<'_>> {
        if key == RUN {
            return Some(Meta::Run);
        }
        let (&tag, rest) = key.split_first()?;
        match tag {
            HEAD => {
                let (&kind, rest) = rest.split_first()?;
                let kind = Kind::from_tag(kind)?;
                let (name, rest) = take_str(rest)?;
                rest.is_empty().then(|| {
                    Meta::Head(StreamKey {
                        kind,
                        name: name.into(),
                    })
                })
            }
            ROOM => {
                let (room, rest) = take_str(rest)?;
                rest.is_empty().then_some(Meta::Room(room))
            }
            ALLOWED => {
                let (room, rest) = take_str(rest)?;
                let (user, rest) = take_str(rest)?;
                rest.is_empty().then_some(Meta::Allowed(room, user))
            }
            ACK => {
                let (user, rest) = take_str(rest)?;
                rest.is_empty().then_some(Meta::Ack(user))
            }
            READ => {
                let (user, rest) = take_str(rest)?;
                let (room, rest) = take_str(rest)?;
                rest.is_empty().then_some(Meta::Read(user, room))
            }
            _ => None,
        }
    }
}

/// A kept message as stored: when it was accepted and the event's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    /// Accepted at (Unix ms).
    pub(crate) at: u64,
    pub(crate) event: String,
    pub(crate) room: Option<String>,
    pub(crate) from: Option<String>,
    /// The encoding of `data`.
    pub(crate) format: Format,
    pub(crate) data: Vec<u8>,
}

/// Writes a message's value: `at`, format, event, room, from (each string length-prefixed,
/// an absent one as length 0xFFFF), then the data to the end.
pub(crate) fn encode_message(
    at: u64,
    event: &str,
    room: Option<&str>,
    from: Option<&str>,
    format: Format,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + event.len() + room.map_or(0, str::len) + from.map_or(0, str::len) + data.len(),
    );
    out.extend_from_slice(&at.to_be_bytes());
    out.push(match format {
        Format::Json => 0,
        Format::MsgPack => 1,
    });
    put_str(&mut out, event);
    put_opt(&mut out, room);
    put_opt(&mut out, from);
    out.extend_from_slice(data);
    out
}

/// Reads a message's value back.
pub(crate) fn decode_message(value: &[u8]) -> Option<Message> {
    let (at, rest) = take_u64(value)?;
    let (&format, rest) = rest.split_first()?;
    let format = match format {
        0 => Format::Json,
        1 => Format::MsgPack,
        _ => return None,
    };
    let (event, rest) = take_str(rest)?;
    let (room, rest) = take_opt(rest)?;
    let (from, rest) = take_opt(rest)?;
    Some(Message {
        at,
        event: event.to_owned(),
        room: room.map(str::to_owned),
        from: from.map(str::to_owned),
        format,
        data: rest.to_vec(),
    })
}

/// A stream's head: epoch and last offset, 16 bytes.
pub(crate) fn encode_head(epoch: u64, last: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&last.to_be_bytes());
    out
}

pub(crate) fn decode_head(value: &[u8]) -> Option<(u64, u64)> {
    let (epoch, rest) = take_u64(value)?;
    let (last, rest) = take_u64(rest)?;
    rest.is_empty().then_some((epoch, last))
}

/// One offset (an ack, a read marker), 8 bytes.
pub(crate) fn encode_offset(offset: u64) -> Vec<u8> {
    offset.to_be_bytes().to_vec()
}

pub(crate) fn decode_offset(value: &[u8]) -> Option<u64> {
    let (offset, rest) = take_u64(value)?;
    rest.is_empty().then_some(offset)
}

/// A room's definition as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoomDef {
    pub(crate) private: bool,
    pub(crate) max_members: Option<u32>,
    /// Whether the room announces presence.
    pub(crate) presence: bool,
    /// Made by a client's `create` (counted against its creator's rooms).
    pub(crate) by_client: bool,
    pub(crate) created_by: Option<String>,
    /// Unix ms.
    pub(crate) created_at: u64,
    /// Messages its stream keeps (`historySize`), 0 to `MAX_HISTORY_SIZE`; `None`: the
    /// server's default.
    pub(crate) history_size: Option<u32>,
    /// Age of the oldest message its stream keeps, in seconds (`historyTtl`), 1 to
    /// `MAX_HISTORY_TTL`; `None`: the server's default.
    pub(crate) history_ttl: Option<u32>,
}

/// Writes a room's definition: private, max members (`u32::MAX`: none), created at, presence,
/// by client, created by; then, only when the room has history options, their trailer:
/// history size and TTL (each `u32::MAX` when unset). A definition written before rooms had
/// history options (no trailer) reads as one with none.
pub(crate) fn encode_room(def: &RoomDef) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.push(u8::from(def.private));
    out.extend_from_slice(&def.max_members.map_or(u32::MAX, |m| m).to_be_bytes());
    out.extend_from_slice(&def.created_at.to_be_bytes());
    out.push(u8::from(def.presence));
    out.push(u8::from(def.by_client));
    put_opt(&mut out, def.created_by.as_deref());
    if def.history_size.is_some() || def.history_ttl.is_some() {
        for option in [def.history_size, def.history_ttl] {
            out.extend_from_slice(&option.unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    out
}

pub(crate) fn decode_room(value: &[u8]) -> Option<RoomDef> {
    let (&private, rest) = value.split_first()?;
    let (max, rest) = take_u32(rest)?;
    let (created_at, rest) = take_u64(rest)?;
    let (&presence, rest) = rest.split_first()?;
    let (&by_client, rest) = rest.split_first()?;
    let (created_by, rest) = take_opt(rest)?;
    let (history_size, history_ttl) = match rest {
        [] => (None, None),
        trailer => {
            let (size, rest) = take_u32(trailer)?;
            let (ttl, rest) = take_u32(rest)?;
            let set = |n: u32, min: u32, max: u32| match n {
                u32::MAX => Some(None),
                n => (min..=max).contains(&n).then_some(Some(n)),
            };
            let options = (
                set(size, 0, MAX_HISTORY_SIZE)?,
                set(ttl, 1, MAX_HISTORY_TTL)?,
            );
            // A trailer is written only for a room with an option: one without is damage.
            (rest.is_empty() && options != (None, None)).then_some(options)?
        }
    };
    (private <= 1 && presence <= 1 && by_client <= 1).then(|| RoomDef {
        by_client: by_client == 1,
        private: private == 1,
        max_members: (max != u32::MAX).then_some(max),
        presence: presence == 1,
        created_by: created_by.map(str::to_owned),
        created_at,
        history_size,
        history_ttl,
    })
}

/// The run record: whether the run ended cleanly, and how far offsets skip after a crash.
pub(crate) fn encode_run(clean: bool, skip: u64) -> Vec<u8> {
    let mut out = vec![u8::from(clean)];
    out.extend_from_slice(&skip.to_be_bytes());
    out
}

pub(crate) fn decode_run(value: &[u8]) -> Option<(bool, u64)> {
    let (&clean, rest) = value.split_first()?;
    let (skip, rest) = take_u64(rest)?;
    rest.is_empty().then_some((clean == 1, skip))
}

const ABSENT: u16 = u16::MAX;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are bounded far below 64 KiB (MAX_NAME_LEN, the token's `sub`); longer ones are
    // cut at a character boundary rather than written with a wrong length.
    let mut len = s.len().min(ABSENT as usize - 1);
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&ABSENT.to_be_bytes()),
    }
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let head = b.get(..4)?;
    Some((u32::from_be_bytes(head.try_into().ok()?), &b[4..]))
}

fn take_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let head = b.get(..8)?;
    Some((u64::from_be_bytes(head.try_into().ok()?), &b[8..]))
}

fn take_len(b: &[u8]) -> Option<(u16, &[u8])> {
    let head = b.get(..2)?;
    Some((u16::from_be_bytes([head[0], head[1]]), &b[2..]))
}

fn take_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = take_len(b)?;
    let len = usize::from(len);
    let s = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((s, &rest[len..]))
}

fn take_opt(b: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let (len, rest) = take_len(b)?;
    if len == ABSENT {
        return Some((None, rest));
    }
    take_str(b).map(|(s, rest)| (Some(s), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_stream_then_offset() {
        let a = StreamKey::room("a".into());
        let b = StreamKey::room("ab".into());
        let mut keys = [b.message(1), a.message(256), a.message(2), b.message(0)];
        keys.sort();
        let parsed: Vec<_> = keys
            .iter()
            .filter_map(|k| StreamKey::parse_message(k))
            .map(|(s, o)| (s.name.to_string(), o))
            .collect();
        assert_eq!(
            parsed,
            [
                ("a".into(), 2),
                ("a".into(), 256),
                ("ab".into(), 0),
                ("ab".into(), 1)
            ]
        );
    }

    #[test]
    fn values_round_trip_and_damage_is_refused() {
        let v = encode_message(7, "chat", Some("r"), None, Format::MsgPack, &[0xc0]);
        let m = decode_message(&v).map(|m| (m.at, m.event, m.room, m.from, m.data));
        assert_eq!(
            m,
            Some((7, "chat".into(), Some("r".into()), None, vec![0xc0]))
        );
        assert_eq!(decode_message(&v[..10]), None, "cut short");
        let def = RoomDef {
            private: true,
            max_members: Some(3),
            presence: true,
            by_client: true,
            created_by: Some("svc".into()),
            created_at: 9,
            history_size: Some(0),
            history_ttl: Some(600),
        };
        let bytes = encode_room(&def);
        assert_eq!(decode_room(&bytes), Some(def.clone()));
        let plain = RoomDef {
            history_size: None,
            history_ttl: None,
            ..def.clone()
        };
        let old = encode_room(&plain);
        assert_eq!(old.len() + 8, bytes.len(), "no trailer without options");
        assert_eq!(decode_room(&old), Some(plain), "as written before them");
        let one = RoomDef {
            history_ttl: None,
            ..def
        };
        assert_eq!(decode_room(&encode_room(&one)), Some(one));
        let damaged = |tail: &[u8]| {
            let mut b = old.clone();
            b.extend_from_slice(tail);
            decode_room(&b)
        };
        assert_eq!(damaged(&[0xff; 8]), None, "a trailer setting nothing");
        assert_eq!(
            damaged(&[0, 0, 0x27, 0x11, 0xff, 0xff, 0xff, 0xff]),
            None,
            "10001"
        );
        assert_eq!(
            damaged(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            None,
            "ttl 0"
        );
        assert_eq!(damaged(&[0, 0, 0, 1, 0, 0, 0, 1, 0]), None, "one byte more");
        assert_eq!(damaged(&[0, 0, 0, 1]), None, "cut short");
        // The fuzz seeds follow the format: each reads (after its mode byte).
        let seeds: [&[u8]; 3] = [
            include_bytes!("../../fuzz/corpus/store_records/room-private"),
            include_bytes!("../../fuzz/corpus/store_records/room-public-no-creator"),
            include_bytes!("../../fuzz/corpus/store_records/room-before-history"),
        ];
        let read: Vec<_> = seeds
            .iter()
            .map(|seed| decode_room(&seed[1..]).map(|d| (d.history_size, d.history_ttl)))
            .collect();
        assert_eq!(
            read,
            [
                Some((Some(3), Some(600))),
                Some((Some(0), None)),
                Some((None, None))
            ]
        );
        assert_eq!(decode_head(&encode_head(1, 2)), Some((1, 2)));
        assert_eq!(decode_run(&encode_run(true, 5)), Some((true, 5)));
        assert_eq!(
            meta::parse(&meta::read("u", "r")),
            Some(meta::Meta::Read("u", "r"))
        );
        assert_eq!(
            meta::parse(&meta::head(&StreamKey::user("u".into()))),
            Some(meta::Meta::Head(StreamKey::user("u".into())))
        );
        assert_eq!(meta::parse(b"zzz"), None);
    }
}
