//! Rooms as a resource: create, list, look at, close, and add or remove a user's connections.
//! (`GET /api/v1/rooms/{roomId}/messages` is left free for room history.)

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;
use wsgate_protocol::{ErrorCode, Format};

use super::body::{read_json, Fields};
use super::{check_name, json, next_cursor, page_params, ApiError, ApiResult};
use crate::cluster::RoomInfo;
use crate::http::HttpCode;
use crate::hub::OutEvent;
use crate::hub::RoomRefused;
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
}

fn room_view(id: &str, info: RoomInfo, users: Option<Vec<String>>) -> Room {
    Room {
        room_id: id.to_owned(),
        members: info.members,
        users,
        created_by: info.created_by,
        created_at: info.created_at.map(rfc3339),
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `POST /api/v1/rooms` `{roomId, createdBy? | creatorUsername?}`: 201, or 409 if it exists.
pub(super) async fn create(ctx: &Rc<Ctx>, req: Request<Incoming>) -> ApiResult {
    let body = read_json(req, ctx.config()).await?;
    let (room, creator) = parse_create(&body)?;
    let key: Arc<str> = Arc::from(room.as_str());
    match ctx.shared.directory().create_room(&key, creator) {
        Ok(info) => Ok(json(
            StatusCode::CREATED,
            &room_view(&room, info, Some(Vec::new())),
        )),
        Err(RoomRefused::Exists) => Err(ApiError::new(
            StatusCode::CONFLICT,
            HttpCode::RoomConflict,
            format!("room {room:?} already exists"),
        )),
        Err(RoomRefused::TooManyRooms) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RoomLimit,
            "the server's room limit is reached",
        )),
    }
}

/// The body of a room creation: the room and its creator (`createdBy`, else `creatorUsername`).
pub(super) fn parse_create(body: &[u8]) -> Result<(String, Option<String>), ApiError> {
    let mut f = Fields::parse(body)?;
    let room = f.name_field("roomId", true);
    let created_by = f.name_field("createdBy", false);
    let creator = f.name_field("creatorUsername", false);
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
    Ok((room, created_by.or(creator)))
}

/// `GET /api/v1/rooms?limit=&cursor=`.
pub(super) fn list(ctx: &Rc<Ctx>, req: &Request<Incoming>) -> ApiResult {
    let (limit, cursor) = page_params(req)?;
    let (page, more) = ctx.shared.directory().rooms_page(cursor.as_deref(), limit);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        rooms: Vec<Room>,
        next_cursor: Option<String>,
    }
    let next_cursor = next_cursor(more, page.last().map(|(key, _)| &**key));
    let rooms = page
        .into_iter()
        .map(|(id, info)| room_view(&id, info, None))
        .collect();
    Ok(json(StatusCode::OK, &Page { rooms, next_cursor }))
}

/// `GET /api/v1/rooms/{roomId}`: the room and its member users.
pub(super) async fn get(ctx: &Rc<Ctx>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let info = ctx
        .shared
        .directory()
        .room(&room)
        .ok_or_else(|| ApiError::room_not_found(&room))?;
    let name = room.clone();
    let mut users: Vec<String> = ctx
        .hub
        .gather(move |s| s.users_in(&name))
        .await
        .into_iter()
        .flatten()
        .map(|u| u.to_string())
        .collect();
    users.sort();
    users.dedup();
    users.truncate(MAX_LISTED_USERS);
    Ok(json(StatusCode::OK, &room_view(&room, info, Some(users))))
}

/// `DELETE /api/v1/rooms/{roomId}`: members get `room.closed` and are removed.
pub(super) async fn close(ctx: &Rc<Ctx>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    if !ctx.shared.directory().close_room(&room) {
        return Err(ApiError::room_not_found(&room));
    }
    let data = Bytes::from_static(br#"{"reason":"closed by the backend"}"#);
    let event = OutEvent::new(
        "room.closed",
        Some(Arc::from(room.as_str())),
        None,
        data,
        Format::Json,
    );
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
    let key: Arc<str> = Arc::from(room.as_str());
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
