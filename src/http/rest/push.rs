//! Pushes from the backend: to users, to a room, to everyone, and batches of those. Each event
//! is encoded once per format and reaches other shards through their inboxes, lock-free; the
//! counts in the answer are added up by the shards as they deliver.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use wsgate_protocol::{ErrorCode, Format};

use super::body::{read_json, Detail, Fields};
use super::{check_name, json, ApiError, ApiResult};
use crate::cluster::idempotency::Claim;
use crate::cluster::Begin;
use crate::http::routes::Handler;
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
    /// The offline users whose mailbox keeps the event for their next connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    queued: Option<Vec<String>>,
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
    /// The report, the target users of a user push, and whether mailboxes keep what the
    /// offline ones miss.
    Report(Arc<Report>, Option<Vec<String>>, bool),
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

/// Whether `room` exists: known here, or in cluster mode, a room made by a join on another
/// node that has members there (as `GET /api/v1/rooms/{roomId}/members` counts them).
async fn room_exists(ctx: &Ctx, room: &str) -> Result<(), ApiError> {
    if ctx.shared.directory().room(room).is_some() {
        return Ok(());
    }
    let Some(redis) = ctx.shared.backplane.redis() else {
        return Err(ApiError::room_not_found(room));
    };
    match redis.members_page(room, None, 1).await {
        Ok((_, members)) if members > 0 => Ok(()),
        Ok(_) => Err(ApiError::room_not_found(room)),
        Err(e) => Err(ApiError::unavailable(e)),
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
            if let Err(e) = room_exists(ctx, &room).await {
                return Pending::Failed(e);
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
    let published = match ctx.hub.deliver(delivery).await {
        Ok(published) => published,
        Err(e) => return Pending::Failed(ApiError::unavailable(e)),
    };
    if let Some(durable) = published.durable {
        // `STORE_FSYNC=always`: the answer says the message is on disk.
        if durable.await.is_err() {
            return Pending::Failed(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the message was delivered but could not be stored",
            ));
        }
    }
    Pending::Report(report, users, ctx.config().user_stream_size > 0)
}

async fn finish(pending: Pending) -> Result<Outcome, ApiError> {
    match pending {
        Pending::Failed(e) => Err(e),
        Pending::Report(report, users, mailboxes) => {
            let (delivered, found) = report.wait().await;
            let offline: Option<Vec<String>> = users.map(|users| {
                users
                    .into_iter()
                    .zip(found)
                    .filter(|(_, f)| !f)
                    .map(|(u, _)| u)
                    .collect()
            });
            // With mailboxes on (USER_STREAM_SIZE > 0) what an offline user missed waits there.
            let queued = offline
                .as_ref()
                .map(|o| if mailboxes { o.clone() } else { Vec::new() });
            Ok(Outcome {
                delivered,
                offline,
                queued,
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

/// The validated body of a push route: one push, or a batch.
pub(super) enum Pushes {
    One(Push),
    Batch(Vec<BatchItem>),
}

/// Reads and validates the body of push route `handler` (`room`: the path's `{roomId}`).
pub(super) async fn read(
    ctx: &Ctx,
    req: Request<Incoming>,
    handler: Handler,
    room: String,
) -> Result<Pushes, ApiError> {
    if handler == Handler::PushRoom {
        check_name("roomId", &room)?;
    }
    let body = read_json(req, ctx.config()).await?;
    Ok(match handler {
        Handler::PushRoom => Pushes::One(parse_room(&body, room)?),
        Handler::PushBroadcast => Pushes::One(parse_broadcast(&body)?),
        Handler::PushBatch => Pushes::Batch(parse_batch(&body)?),
        _ => Pushes::One(parse_users(&body)?),
    })
}

/// Delivers validated pushes: `POST /api/v1/push/users`, `…/rooms/{roomId}`, `…/broadcast`
/// and `…/batch`.
pub(super) async fn run(ctx: &Ctx, pushes: Pushes) -> ApiResult {
    match pushes {
        Pushes::One(push) => run_one(ctx, push).await,
        Pushes::Batch(items) => batch(ctx, items).await,
    }
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

/// One item of a batch: its push and its idempotency key, if it has one.
pub(super) struct BatchItem {
    pub(super) push: Push,
    pub(super) key: Option<String>,
}

/// The scope of batch items' idempotency keys (apart from the routes' `Idempotency-Key`s).
const ITEM_SCOPE: &str = "b:/api/v1/push/batch";

/// An item under way: its delivery, or its remembered outcome, and its key's claim.
enum Started {
    Running(Pending, Option<Claim<(u16, Bytes)>>),
    Remembered(Bytes),
}

/// A batch, every item validated first; then delivered in order. An item with an
/// `idempotencyKey` answered before gets its first result again and is not delivered.
async fn batch(ctx: &Ctx, items: Vec<BatchItem>) -> ApiResult {
    let mut started = Vec::with_capacity(items.len());
    for BatchItem { push, key } in items {
        let claim = match key {
            None => None,
            Some(key) => match ctx.shared.idempotency.rest.begin(ITEM_SCOPE, &key).await {
                Begin::Done((_, outcome)) => {
                    started.push(Started::Remembered(outcome));
                    continue;
                }
                Begin::Fresh(claim) => Some(claim),
            },
        };
        started.push(Started::Running(start(ctx, push).await, claim));
    }
    let mut results = Vec::with_capacity(started.len());
    for item in started {
        let (pending, claim) = match item {
            Started::Remembered(outcome) => {
                results.push(raw_json(&outcome));
                continue;
            }
            Started::Running(pending, claim) => (pending, claim),
        };
        let outcome = match finish(pending).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome {
                delivered: 0,
                offline: None,
                queued: None,
                error: Some(ItemError {
                    code: e.code.as_str(),
                    message: e.message,
                }),
            },
        };
        let encoded = Bytes::from(serde_json::to_vec(&outcome).unwrap_or_default());
        // A failed item delivered nothing: its key is not kept, a retry runs it again.
        if let (Some(claim), None) = (claim, &outcome.error) {
            claim.finish((200, encoded.clone()), encoded.len());
        }
        results.push(raw_json(&encoded));
    }
    #[derive(Serialize)]
    struct Results {
        results: Vec<Box<RawValue>>,
    }
    Ok(json(StatusCode::OK, &Results { results }))
}

/// One item's result as it was encoded.
fn raw_json(encoded: &Bytes) -> Box<RawValue> {
    std::str::from_utf8(encoded)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .unwrap_or_else(|| {
            RawValue::from_string(r#"{"delivered":0}"#.to_owned()).unwrap_or_default()
        })
}

/// The body of a batch: `{pushes: [...]}`, every item checked and every problem reported.
pub(super) fn parse_batch(body: &[u8]) -> Result<Vec<BatchItem>, ApiError> {
    let mut f = Fields::parse(body)?;
    let items = f.raw_list("pushes", MAX_ITEMS).unwrap_or_default();
    let mut errors = std::mem::take(&mut f.errors);
    errors.extend(f.finish());
    let mut pushes: Vec<BatchItem> = Vec::with_capacity(items.len());
    let mut keys: HashMap<String, usize> = HashMap::new();
    for (i, raw) in items.into_iter().enumerate() {
        let Some(mut item) = Fields::nested(raw, format!("pushes[{i}]"), &mut errors) else {
            continue;
        };
        let key = item.key_field("idempotencyKey");
        let push = parse_item(&mut item);
        if let Some(key) = &key {
            // The same key twice in one batch would wait on itself.
            if let Some(first) = keys.insert(key.clone(), i) {
                let field = item.prefixed("idempotencyKey");
                item.errors.push(Detail::new(
                    field,
                    format!("repeats the key of pushes[{first}]"),
                ));
            }
        }
        errors.extend(item.finish());
        pushes.extend(push.map(|push| BatchItem { push, key }));
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
