//! Rooms as a resource: create, list, look at, close, and add or remove a user's connections.
//! And a room's history (`GET /api/v1/rooms/{roomId}/messages`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use wsgate_protocol::{
    ErrorCode, Format, RawData, MAX_HISTORY_LIMIT, MAX_HISTORY_SIZE, MAX_HISTORY_TTL, MAX_MEMBERS,
};

use super::body::{read_json, Detail, Fields};
use super::{check_name, json, next_cursor, page_limit, page_params, ApiError, ApiResult};
use crate::cluster::{Creator, RoomInfo, RoomOptions};
use crate::http::url::query_param;
use crate::hub::{HistoryOptions, Query, RoomRefused, DEFAULT_HISTORY_LIMIT};
use crate::node::Ctx;

/// Most member users listed in one room's answer.
const MAX_LISTED_USERS: usize = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Room {
    room_id: String,
    members: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<Vec<String>>,
    created_by: Option<String>,
    created_at: Option<String>,
    private: bool,
    max_members: Option<u32>,
    presence: bool,
    /// Messages its stream keeps: its own `historySize`, else `ROOM_HISTORY_SIZE`.
    history_size: usize,
    /// Age past which its messages are dropped, in seconds (rounded up): its own
    /// `historyTtl`, else `ROOM_HISTORY_TTL`.
    history_ttl: u64,
}

fn room_view(ctx: &Ctx, id: &str, info: RoomInfo, users: Option<Vec<String>>) -> Room {
    let history = info
        .history
        .limits(ctx.shared.backplane.streams().defaults());
    Room {
        room_id: id.to_owned(),
        members: info.members,
        users,
        created_by: info.created_by,
        created_at: info.created_at.map(rfc3339),
        private: info.private,
        max_members: info.max_members,
        presence: info.presence,
        history_size: history.size,
        history_ttl: history.ttl_ms.div_ceil(1000),
    }
}

/// A validated room creation.
pub(super) struct CreateRoom {
    pub(super) room: String,
    /// `createdBy`, else `creatorUsername`.
    pub(super) creator: Option<String>,
    pub(super) options: RoomOptions,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `POST /api/v1/rooms` `{roomId, createdBy? | creatorUsername?, private?, maxMembers?,
/// presence?, historySize?, historyTtl?}`: 201, or 409 if it exists.
pub(super) async fn create(ctx: &Rc<Ctx>, req: Request<Incoming>) -> ApiResult {
    let body = read_json(req, ctx.config()).await?;
    let CreateRoom {
        room,
        creator,
        options,
    } = parse_create(&body)?;
    let key: Arc<str> = Arc::from(room.as_str());
    let creator = Creator::Backend(creator);
    let (slot, _) = ctx.shared.store().reserve().await;
    let backplane = &ctx.shared.backplane;
    let created = backplane.create_room(&key, creator, options, slot);
    let shared = match created {
        Ok(info) => backplane.share_room(&key, &info).await.map(|()| info),
        Err(e) => Err(e),
    };
    match shared {
        Err(RoomRefused::Unavailable) => Err(ApiError::unavailable(
            crate::hub::BackplaneError::Unreachable,
        )),
        Ok(info) => Ok(json(
            StatusCode::CREATED,
            &room_view(ctx, &room, info, Some(Vec::new())),
        )),
        Err(RoomRefused::Exists) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RoomConflict,
            format!("room {room:?} already exists"),
        )),
        Err(RoomRefused::TooManyRooms | RoomRefused::Full | RoomRefused::CreatorLimit) => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::RoomLimit,
                "the server's room limit is reached",
            ))
        }
    }
}

/// The body of a room creation: the room, its creator (`createdBy`, else `creatorUsername`)
/// and its options.
pub(super) fn parse_create(body: &[u8]) -> Result<CreateRoom, ApiError> {
    let mut f = Fields::parse(body)?;
    let room = f.name_field("roomId", true);
    let created_by = f.name_field("createdBy", false);
    let creator = f.name_field("creatorUsername", false);
    let private = f.bool_field("private").unwrap_or(false);
    let max_members = f.count_field("maxMembers", 1, MAX_MEMBERS);
    let presence = f.bool_field("presence");
    let history = HistoryOptions {
        size: f.count_field("historySize", 0, MAX_HISTORY_SIZE),
        ttl_secs: f.count_field("historyTtl", 1, MAX_HISTORY_TTL),
    };
    let details = f.finish();
    if !details.is_empty() {
        return Err(ApiError::invalid(details));
    }
    let Some(room) = room else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "validation inconsistency",
        ));
    };
    Ok(CreateRoom {
        room,
        creator: created_by.or(creator),
        options: RoomOptions {
            private,
            max_members,
            presence,
            history,
        },
    })
}

/// `GET /api/v1/rooms?limit=&cursor=`.
/// Cluster mode: rooms defined, or with members on any node, their members counted on all.
pub(super) async fn list(ctx: &Rc<Ctx>, req: &Request<Incoming>) -> ApiResult {
    let (limit, cursor) = page_params(req)?;
    let (page, more) = match ctx.shared.backplane.redis() {
        Some(redis) => {
            let (page, more) = redis
                .rooms_page(cursor.as_deref(), limit)
                .await
                .map_err(ApiError::unavailable)?;
            let directory = ctx.shared.directory();
            let page = page
                .into_iter()
                .map(|(id, members)| {
                    let info = directory
                        .room(&id)
                        .unwrap_or_else(|| directory.made_by_join());
                    (id, RoomInfo { members, ..info })
                })
                .collect();
            (page, more)
        }
        None => ctx.shared.directory().rooms_page(cursor.as_deref(), limit),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        rooms: Vec<Room>,
        next_cursor: Option<String>,
    }
    let next_cursor = next_cursor(more, page.last().map(|(key, _)| &**key));
    let rooms = page
        .into_iter()
        .map(|(id, info)| room_view(ctx, &id, info, None))
        .collect();
    Ok(json(StatusCode::OK, &Page { rooms, next_cursor }))
}

/// `GET /api/v1/rooms/{roomId}`: the room and its member users (the first
/// `MAX_LISTED_USERS`, in id order, as the directory counts them; cluster mode: on every
/// node).
pub(super) async fn get(ctx: &Rc<Ctx>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let (info, (page, _)) = room_members(ctx, &room, None, MAX_LISTED_USERS).await?;
    let users = page.into_iter().map(|(u, _)| u.to_string()).collect();
    Ok(json(
        StatusCode::OK,
        &room_view(ctx, &room, info, Some(users)),
    ))
}

/// `room`'s entry and a page of its member users (cluster mode: counted on every node; a
/// room no node knows, with no member anywhere, is not found).
async fn room_members(
    ctx: &Ctx,
    room: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(RoomInfo, crate::cluster::directory::Page<u32>), ApiError> {
    let directory = ctx.shared.directory();
    let not_found = || ApiError::room_not_found(room);
    let Some(redis) = ctx.shared.backplane.redis() else {
        let info = directory.room(room).ok_or_else(not_found)?;
        let page = directory
            .members_page(room, after, limit)
            .ok_or_else(not_found)?;
        return Ok((info, page));
    };
    let (page, members) = redis
        .members_page(room, after, limit)
        .await
        .map_err(ApiError::unavailable)?;
    let info = match directory.room(room) {
        Some(info) => info,
        None if members > 0 => directory.made_by_join(),
        None => return Err(not_found()),
    };
    Ok((RoomInfo { members, ..info }, page))
}

/// `DELETE /api/v1/rooms/{roomId}`: members get `room.closed` and are removed.
pub(super) async fn close(ctx: &Rc<Ctx>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let (slot, _) = ctx.shared.store().reserve().await;
    if !ctx.shared.backplane.close_room(&room, slot) {
        return Err(ApiError::room_not_found(&room));
    }
    // Cluster mode: closed on every node (members elsewhere get `room.closed` there).
    ctx.shared
        .backplane
        .unshare_room(&room)
        .await
        .map_err(ApiError::unavailable)?;
    let event = crate::cluster::local::room_closed_event(&room);
    let name = room.clone();
    let removed: usize = ctx
        .hub
        .gather(move |s| s.close_room(&name, &event))
        .await
        .into_iter()
        .sum();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Closed {
        room_id: String,
        removed: usize,
    }
    Ok(json(
        StatusCode::OK,
        &Closed {
            room_id: room,
            removed,
        },
    ))
}

/// `POST /api/v1/rooms/{roomId}/members` `{userId}`: adds that user's connections.
pub(super) async fn add_member(ctx: &Rc<Ctx>, req: Request<Incoming>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let body = read_json(req, ctx.config()).await?;
    let user = parse_member(&body)?;
    if ctx.shared.directory().room(&room).is_none() {
        return Err(ApiError::room_not_found(&room));
    }
    // A private room lets the user in from now on, with any connection, not only these.
    let (slot, _) = ctx.shared.store().reserve().await;
    if !ctx
        .shared
        .directory()
        .allow(&room, &Arc::from(user.as_str()), slot)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RoomLimit,
            format!(
                "room {room:?} lets at most {} users in",
                crate::cluster::directory::MAX_ALLOWED
            ),
        ));
    }
    let key: Arc<str> = Arc::from(room.as_str());
    // Cluster mode: let in, and its connections added, on every node.
    ctx.shared
        .backplane
        .share_member(&key, &user, true)
        .await
        .map_err(ApiError::unavailable)?;
    let added: usize = ctx
        .hub
        .gather(move |s| s.add_to_room(&user, &key))
        .await
        .into_iter()
        .sum();
    #[derive(Serialize)]
    struct Added {
        added: usize,
    }
    Ok(json(StatusCode::OK, &Added { added }))
}

/// The body of a member addition: `{userId}`.
pub(super) fn parse_member(body: &[u8]) -> Result<String, ApiError> {
    let mut f = Fields::parse(body)?;
    let user = f.name_field("userId", true);
    let details = f.finish();
    let Some(user) = user.filter(|_| details.is_empty()) else {
        return Err(ApiError::invalid(details));
    };
    Ok(user)
}

/// `DELETE /api/v1/rooms/{roomId}/members/{userId}`.
pub(super) async fn remove_member(ctx: &Rc<Ctx>, room: String, user: String) -> ApiResult {
    check_name("roomId", &room)?;
    check_name("userId", &user)?;
    if ctx.shared.directory().room(&room).is_none() {
        return Err(ApiError::room_not_found(&room));
    }
    let (slot, _) = ctx.shared.store().reserve().await;
    ctx.shared.directory().disallow(&room, &user, slot);
    ctx.shared
        .backplane
        .share_member(&room, &user, false)
        .await
        .map_err(ApiError::unavailable)?;
    let removed: usize = ctx
        .hub
        .gather(move |s| s.remove_from_room(&user, &room))
        .await
        .into_iter()
        .sum();
    #[derive(Serialize)]
    struct Removed {
        removed: usize,
    }
    Ok(json(StatusCode::OK, &Removed { removed }))
}

/// `GET /api/v1/rooms/{roomId}/members?limit=&after=`: the room's member users in id order,
/// each once (whatever its connections and their shards), with its member connections;
/// `nextAfter` pages on when more follow.
pub(super) async fn members(ctx: &Rc<Ctx>, req: &Request<Incoming>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let q = req.uri().query().unwrap_or("");
    let mut details = Vec::new();
    let limit = page_limit(q).unwrap_or_else(|d| {
        details.push(d);
        0
    });
    let after = query_param(q, "after");
    if after
        .as_deref()
        .is_some_and(|a| a.is_empty() || a.len() > wsgate_protocol::MAX_NAME_LEN)
    {
        details.push(Detail::new("after", "must be 1 to 128 bytes (a user id)"));
    }
    if !details.is_empty() {
        return Err(ApiError::invalid(details));
    }
    let (_, (page, more)) = room_members(ctx, &room, after.as_deref(), limit).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct MemberUser {
        user_id: String,
        connections: u32,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        room_id: String,
        members: Vec<MemberUser>,
        next_after: Option<String>,
    }
    let next_after = next_cursor(more, page.last().map(|(user, _)| &**user));
    let members = page
        .into_iter()
        .map(|(user, connections)| MemberUser {
            user_id: user.to_string(),
            connections,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &Page {
            room_id: room,
            members,
            next_after,
        },
    ))
}

/// `GET /api/v1/rooms/{roomId}/messages?limit=&before=&after=`: the kept messages of the
/// room's stream (of a room that exists, or whose stream is still kept), oldest first; `nextBefore` / `nextAfter` page on when a page was full.
pub(super) async fn messages(ctx: &Rc<Ctx>, req: &Request<Incoming>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let query = history_query(req)?;
    // A room made by a join is gone with its last member, but what its stream keeps (say,
    // after a restart) can still be read.
    // Cluster mode asks Redis (below).
    let cluster = ctx.shared.backplane.redis().is_some();
    if !cluster
        && ctx.shared.directory().room(&room).is_none()
        && !ctx.shared.backplane.streams().contains(&room)
    {
        return Err(ApiError::room_not_found(&room));
    }
    let (position, entries) = ctx
        .hub
        .history(&room, query)
        .await
        .map_err(ApiError::unavailable)?;
    // Cluster mode reads Redis, which answers epoch 0 for a stream it does not have.
    if position.epoch == 0 && ctx.shared.directory().room(&room).is_none() {
        return Err(ApiError::room_not_found(&room));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Message {
        offset: u64,
        at: u64,
        event: String,
        from: Option<String>,
        data: Box<RawValue>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        room_id: String,
        epoch: String,
        offset: u64,
        messages: Vec<Message>,
        next_before: Option<u64>,
        next_after: Option<u64>,
    }
    let full = entries.len() == query.limit;
    let (first, last) = (
        entries.first().map(|e| e.offset),
        entries.last().map(|e| e.offset),
    );
    let mut messages = Vec::with_capacity(entries.len());
    for e in &entries {
        messages.push(Message {
            offset: e.offset,
            at: e.at,
            event: e.event.name().to_owned(),
            from: e.event.from().map(str::to_owned),
            data: json_data(e.event.data())?,
        });
    }
    let page = Page {
        room_id: room,
        epoch: position.epoch_text(),
        offset: position.offset,
        messages,
        next_before: first.filter(|_| full && query.after.is_none()),
        next_after: last.filter(|_| full && query.after.is_some()),
    };
    Ok(json(StatusCode::OK, &page))
}

/// `limit` (1 to 1000, default 50), `before`, `after` (offsets; not both).
fn history_query(req: &Request<Incoming>) -> Result<Query, ApiError> {
    let q = req.uri().query().unwrap_or("");
    let mut details = Vec::new();
    let mut number = |name: &str, min: u64, max: u64, why: &str| -> Option<u64> {
        let raw = query_param(q, name)?;
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                details.push(Detail::new(name, why));
                None
            }
        }
    };
    let limit = number(
        "limit",
        1,
        u64::from(MAX_HISTORY_LIMIT),
        "must be an integer from 1 to 1000",
    );
    let before = number(
        "before",
        0,
        u64::MAX,
        "must be an unsigned integer (an offset)",
    );
    let after = number(
        "after",
        0,
        u64::MAX,
        "must be an unsigned integer (an offset)",
    );
    if before.is_some() && after.is_some() {
        details.push(Detail::new("before", "give before or after, not both"));
    }
    if !details.is_empty() {
        return Err(ApiError::invalid(details));
    }
    Ok(Query {
        limit: limit.map_or(DEFAULT_HISTORY_LIMIT, |n| n as usize),
        before,
        after,
    })
}

/// A message's `data` as JSON, whatever encoding its sender used.
fn json_data(data: RawData<'_>) -> Result<Box<RawValue>, ApiError> {
    let mut out = Vec::with_capacity(data.bytes().len());
    let encoded = wsgate_protocol::transcode(data, Format::Json, &mut out)
        .ok()
        .and_then(|()| String::from_utf8(out).ok())
        .and_then(|text| RawValue::from_string(text).ok());
    encoded.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "a kept message could not be encoded",
        )
    })
}
