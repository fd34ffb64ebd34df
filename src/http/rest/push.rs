//! Pushes from the backend: to users, to a room, to everyone, and batches of those. Each event
//! is encoded once per format and reaches other shards through their inboxes, lock-free; the
//! counts in the answer are added up by the shards as they deliver.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use wsgate_protocol::{ErrorCode, Format};

use super::body::{read_json, Detail, Fields};
use super::{check_name, json, ApiError, ApiResult};
use crate::hub::{Delivery, OutEvent, Report, Target};
use crate::node::Ctx;

/// Most users in one push, and most pushes in one batch.
const MAX_ITEMS: usize = 1000;

/// One validated push.
pub(super) enum Push {
    Users {
        users: Vec<String>,
        event: String,
        data: Option<Bytes>,
    },
    Room {
        room: String,
        event: String,
        data: Option<Bytes>,
        except: Option<String>,
        /// Not stored in the room's stream; dropped first for a recipient whose queue fills.
        ephemeral: bool,
    },
    Broadcast {
        event: String,
        data: Option<Bytes>,
    },
}

#[derive(Serialize)]
struct Outcome {
    delivered: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ItemError>,
}

#[derive(Serialize)]
struct ItemError {
    code: &'static str,
    message: String,
}

/// What a push will reach, once its delivery is under way.
enum Pending {
    Report(Arc<Report>, Option<Vec<String>>),
    Failed(ApiError),
}

fn raw_bytes(raw: Option<&RawValue>) -> Option<Bytes> {
    raw.map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
}

/// Reads the fields of a user push (`userId` or `userIds`).
fn user_fields(f: &mut Fields<'_>) -> Option<Vec<String>> {
    match (f.has("userId"), f.has("userIds")) {
        (true, true) => {
            f.name_field("userId", false);
            f.name_list("userIds", MAX_ITEMS);
            let field = f.prefixed("userIds");
            f.errors
                .push(Detail::new(field, "give userId or userIds, not both"));
            None
        }
        (false, true) => f.name_list("userIds", MAX_ITEMS),
        _ => f.name_field("userId", true).map(|u| vec![u]),
    }
}

/// Starts a push: checks the room exists, then routes the event with a report.
async fn start(ctx: &Ctx, push: Push) -> Pending {
    let shards = ctx.hub.hubs();
    let mut ephemeral = false;
    let (target, event, data, room, except, users) = match push {
        Push::Users { users, event, data } => {
            let arcs: Arc<[Arc<str>]> = users.iter().map(|u| Arc::from(u.as_str())).collect();
            (Target::Users(arcs), event, data, None, None, Some(users))
        }
        Push::Room {
            room,
            event,
            data,
            except,
            ephemeral: transient,
        } => {
            if ctx.shared.directory().room(&room).is_none() {
                return Pending::Failed(ApiError::room_not_found(&room));
            }
            ephemeral = transient;
            let room: Arc<str> = Arc::from(room);
            (
                Target::Room(room.clone()),
                event,
                data,
                Some(room),
                except,
                None,
            )
        }
        Push::Broadcast { event, data } => (Target::Broadcast, event, data, None, None, None),
    };
    let data = data.unwrap_or_else(|| Bytes::from_static(b"null"));
    let ev = OutEvent::new(&event, room, None, data, Format::Json);
    let report = Report::new(shards, users.as_ref().map_or(0, Vec::len));
    let delivery = Delivery {
        exclude_user: except.map(|u| Arc::from(u.as_str())),
        report: Some(report.clone()),
        ephemeral,
        ..Delivery::new(target, ev)
    };
    ctx.hub.deliver(delivery).await;
    Pending::Report(report, users)
}

async fn finish(pending: Pending) -> Result<Outcome, ApiError> {
    match pending {
        Pending::Failed(e) => Err(e),
        Pending::Report(report, users) => {
            let (delivered, found) = report.wait().await;
            let offline = users.map(|users| {
                users
                    .into_iter()
                    .zip(found)
                    .filter(|(_, f)| !f)
                    .map(|(u, _)| u)
                    .collect()
            });
            Ok(Outcome {
                delivered,
                offline,
                error: None,
            })
        }
    }
}

async fn run_one(ctx: &Ctx, push: Push) -> ApiResult {
    let outcome = finish(start(ctx, push).await).await?;
    Ok(json(StatusCode::OK, &outcome))
}

fn done(f: Fields<'_>) -> Result<(), ApiError> {
    let details = f.finish();
    if details.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(details))
    }
}

/// `POST /api/v1/push/users`.
pub(super) async fn users(ctx: &Rc<Ctx>, req: Request<Incoming>) -> ApiResult {
    let body = read_json(req, ctx.config()).await?;
    run_one(ctx, parse_users(&body)?).await
}

/// The body of a user push: `{userId | userIds, event, data?}`.
pub(super) fn parse_users(body: &[u8]) -> Result<Push, ApiError> {
    let mut f = Fields::parse(body)?;
    let users = user_fields(&mut f);
    let event = f.name_field("event", true);
    let data = raw_bytes(f.data("data"));
    done(f)?;
    let (Some(users), Some(event)) = (users, event) else {
        return Err(internal());
    };
    Ok(Push::Users { users, event, data })
}

/// `POST /api/v1/push/rooms/{roomId}`.
pub(super) async fn room(ctx: &Rc<Ctx>, req: Request<Incoming>, room: String) -> ApiResult {
    check_name("roomId", &room)?;
    let body = read_json(req, ctx.config()).await?;
    run_one(ctx, parse_room(&body, room)?).await
}

/// The body of a push to `room`: `{event, data?, exceptUserId?, ephemeral?}`.
pub(super) fn parse_room(body: &[u8], room: String) -> Result<Push, ApiError> {
    let mut f = Fields::parse(body)?;
    let event = f.name_field("event", true);
    let data = raw_bytes(f.data("data"));
    let except = f.name_field("exceptUserId", false);
    let ephemeral = f.bool_field("ephemeral").unwrap_or(false);
    done(f)?;
    let Some(event) = event else {
        return Err(internal());
    };
    Ok(Push::Room {
        room,
        event,
        data,
        except,
        ephemeral,
    })
}

/// `POST /api/v1/push/broadcast`.
pub(super) async fn broadcast(ctx: &Rc<Ctx>, req: Request<Incoming>) -> ApiResult {
    let body = read_json(req, ctx.config()).await?;
    run_one(ctx, parse_broadcast(&body)?).await
}

/// The body of a broadcast: `{event, data?}`.
pub(super) fn parse_broadcast(body: &[u8]) -> Result<Push, ApiError> {
    let mut f = Fields::parse(body)?;
    let event = f.name_field("event", true);
    let data = raw_bytes(f.data("data"));
    done(f)?;
    let Some(event) = event else {
        return Err(internal());
    };
    Ok(Push::Broadcast { event, data })
}

/// `POST /api/v1/push/batch`: every item validated first; then delivered in order.
pub(super) async fn batch(ctx: &Rc<Ctx>, req: Request<Incoming>) -> ApiResult {
    let body = read_json(req, ctx.config()).await?;
    let pushes = parse_batch(&body)?;
    let mut pending = Vec::with_capacity(pushes.len());
    for push in pushes {
        pending.push(start(ctx, push).await);
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match finish(p).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome {
                delivered: 0,
                offline: None,
                error: Some(ItemError {
                    code: e.code.as_str(),
                    message: e.message,
                }),
            },
        });
    }
    #[derive(Serialize)]
    struct Results {
        results: Vec<Outcome>,
    }
    Ok(json(StatusCode::OK, &Results { results }))
}

/// The body of a batch: `{pushes: [...]}`, every item checked and every problem reported.
pub(super) fn parse_batch(body: &[u8]) -> Result<Vec<Push>, ApiError> {
    let mut f = Fields::parse(body)?;
    let items = f.raw_list("pushes", MAX_ITEMS).unwrap_or_default();
    let mut errors = std::mem::take(&mut f.errors);
    errors.extend(f.finish());
    let mut pushes = Vec::with_capacity(items.len());
    for (i, raw) in items.into_iter().enumerate() {
        let Some(mut item) = Fields::nested(raw, format!("pushes[{i}]"), &mut errors) else {
            continue;
        };
        let push = parse_item(&mut item);
        errors.extend(item.finish());
        pushes.extend(push);
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(pushes)
}

fn parse_item(f: &mut Fields<'_>) -> Option<Push> {
    let kinds = [
        f.has("userId") || f.has("userIds"),
        f.has("roomId"),
        f.has("broadcast"),
    ];
    let event = f.name_field("event", true);
    let data = raw_bytes(f.data("data"));
    if kinds.iter().filter(|k| **k).count() != 1 {
        let field = f.prefixed("target");
        f.errors.push(Detail::new(
            field,
            "give exactly one of userId, userIds, roomId or broadcast",
        ));
        // Read the target fields anyway, so they are not also reported as unknown.
        for name in ["userId", "roomId", "exceptUserId"] {
            f.name_field(name, false);
        }
        f.name_list("userIds", MAX_ITEMS);
        f.true_flag("broadcast");
        f.bool_field("ephemeral");
        return None;
    }
    let push = if kinds[1] {
        let room = f.name_field("roomId", true);
        let except = f.name_field("exceptUserId", false);
        let ephemeral = f.bool_field("ephemeral").unwrap_or(false);
        room.map(|room| Push::Room {
            room,
            event: String::new(),
            data: None,
            except,
            ephemeral,
        })
    } else if kinds[2] {
        f.true_flag("broadcast").then_some(Push::Broadcast {
            event: String::new(),
            data: None,
        })
    } else {
        user_fields(f).map(|users| Push::Users {
            users,
            event: String::new(),
            data: None,
        })
    };
    let (push, event) = (push?, event?);
    Some(match push {
        Push::Users { users, .. } => Push::Users { users, event, data },
        Push::Room {
            room,
            except,
            ephemeral,
            ..
        } => Push::Room {
            room,
            event,
            data,
            except,
            ephemeral,
        },
        Push::Broadcast { .. } => Push::Broadcast { event, data },
    })
}

/// Validation passed but a field is absent: a bug, never an input's fault.
fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "validation inconsistency",
    )
}
