//! Reading the store at start: every stream with its kept messages and position, the room
//! definitions, acks and read markers. After an unclean stop each stream gets a new epoch and
//! its offsets skip ahead (see the module doc of `store`); the new heads are written before
//! the server serves anyone.

use std::collections::HashMap;

use fjall::KvPair;

use super::codec::{self, meta, meta::Meta, Message, RoomDef, StreamKey};
use super::writer::{Db, Known};

/// One stream as the store kept it.
#[derive(Debug)]
pub(crate) struct RecoveredStream {
    pub(crate) stream: StreamKey,
    pub(crate) epoch: u64,
    /// The offset of its last message: the next one gets `last + 1`.
    pub(crate) last: u64,
    /// Its kept messages, oldest first.
    pub(crate) messages: Vec<(u64, Message)>,
}

/// Everything the store kept.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Whether the last run stopped cleanly (or this is a new store).
    pub(crate) clean: bool,
    pub(crate) streams: Vec<RecoveredStream>,
    pub(crate) rooms: Vec<(String, RoomDef)>,
    /// Users let into private rooms: (room, user).
    pub(crate) allowed: Vec<(String, String)>,
    /// Each user's ack of its stream.
    pub(crate) acks: Vec<(String, u64)>,
    /// Read markers: (user, room, offset).
    pub(crate) reads: Vec<(String, String, u64)>,
    /// Records that could not be read (skipped; logged).
    pub(crate) damaged: u64,
    /// What the writer must know of each stream on disk.
    pub(super) known: HashMap<StreamKey, Known>,
}

/// Reads everything; `skip` is this run's offset skip, used when the last run left none.
pub(super) fn recover(db: &Db, skip: u64) -> fjall::Result<Recovered> {
    let mut out = Recovered::default();
    let mut heads: HashMap<StreamKey, (u64, u64)> = HashMap::new();
    let mut run = None;
    for guard in db.meta.iter() {
        let (key, value) = guard.into_inner()?;
        if !read_meta(&key, &value, &mut out, &mut heads, &mut run) {
            out.damaged += 1;
        }
    }
    let mut streams: HashMap<StreamKey, Vec<(u64, Message)>> = HashMap::new();
    for guard in db.messages.iter() {
        let (key, value): KvPair = guard.into_inner()?;
        match (
            StreamKey::parse_message(&key),
            codec::decode_message(&value),
        ) {
            (Some((stream, offset)), Some(message)) => {
                streams.entry(stream).or_default().push((offset, message));
            }
            _ => out.damaged += 1,
        }
    }
    // A new store, or one whose last run closed cleanly.
    let (clean, last_skip) = run.unwrap_or((true, skip));
    out.clean = clean;
    for stream in heads.keys() {
        streams.entry(stream.clone()).or_default();
    }
    let mut batch = db.db.batch();
    for (stream, messages) in streams {
        let head = heads.get(&stream).copied();
        let newest = messages.last().map_or(0, |(o, _)| *o);
        let last = head.map_or(0, |(_, l)| l).max(newest);
        let (epoch, last) = match head {
            Some((epoch, _)) if clean => (epoch, last),
            _ => (rand::random(), last + if clean { 0 } else { last_skip }),
        };
        if head.map(|(e, _)| e) != Some(epoch) {
            batch.insert(
                &db.meta,
                meta::head(&stream),
                codec::encode_head(epoch, last),
            );
        }
        let low = messages.first().map_or(last + 1, |(o, _)| *o);
        out.known.insert(stream.clone(), Known { epoch, low });
        out.streams.push(RecoveredStream {
            stream,
            epoch,
            last,
            messages,
        });
    }
    batch.commit()?;
    if out.damaged > 0 {
        tracing::warn!(
            records = out.damaged,
            "the store held records it could not read"
        );
    }
    Ok(out)
}

/// Files one meta record; `false` if it could not be read.
fn read_meta(
    key: &[u8],
    value: &[u8],
    out: &mut Recovered,
    heads: &mut HashMap<StreamKey, (u64, u64)>,
    run: &mut Option<(bool, u64)>,
) -> bool {
    let Some(what) = meta::parse(key) else {
        return false;
    };
    match what {
        Meta::Run => codec::decode_run(value).map(|r| *run = Some(r)).is_some(),
        Meta::Head(stream) => codec::decode_head(value)
            .map(|h| heads.insert(stream, h))
            .is_some(),
        Meta::Room(room) => codec::decode_room(value)
            .map(|def| out.rooms.push((room.to_owned(), def)))
            .is_some(),
        Meta::Allowed(room, user) => {
            out.allowed.push((room.to_owned(), user.to_owned()));
            true
        }
        Meta::Ack(user) => codec::decode_offset(value)
            .map(|o| out.acks.push((user.to_owned(), o)))
            .is_some(),
        Meta::Read(user, room) => codec::decode_offset(value)
            .map(|o| out.reads.push((user.to_owned(), room.to_owned(), o)))
            .is_some(),
    }
}
