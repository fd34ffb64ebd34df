//! `history`: the kept messages of a room's stream, members only, oldest first: the newest
//! `limit` before an offset (or the newest of all), or the oldest `limit` after one.

use std::rc::Rc;

use wsgate_protocol::{ErrorCode, HistoryEntry, Id, ProtocolError, ServerMessage};

use super::{not_member, Answer};
use crate::hub::{Entry, Position, Query, DEFAULT_HISTORY_LIMIT};
use crate::node::Ctx;
use crate::session::Session;

pub(super) async fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    room: &str,
    limit: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
) -> Result<Answer, ProtocolError> {
    let Some(room) = ctx.hub.membership(session, room) else {
        return Err(not_member(ErrorCode::RoomForbidden, room));
    };
    let query = Query {
        limit: limit.map_or(DEFAULT_HISTORY_LIMIT, |l| l as usize),
        before,
        after,
    };
    let (position, entries) = ctx.hub.history(&room, query).await?;
    Ok(Answer::History {
        room,
        position,
        entries,
    })
}

/// Encodes the answer for this session alone: each message's `data` in its encoding.
pub(super) fn answer(
    ctx: &Ctx,
    session: &Session,
    id: Id<'_>,
    room: &str,
    position: &Position,
    entries: &[Entry],
) {
    let messages: Vec<HistoryEntry<'_>> = entries.iter().map(history_entry).collect();
    ctx.send(
        session,
        &ServerMessage::History {
            id,
            room,
            epoch: &position.epoch_text(),
            offset: position.offset,
            messages: &messages,
        },
    );
}

/// One kept message as the protocol carries it.
fn history_entry(e: &Entry) -> HistoryEntry<'_> {
    HistoryEntry {
        offset: e.offset,
        at: e.at,
        event: e.event.name(),
        from: e.event.from(),
        data: e.event.data(),
    }
}
