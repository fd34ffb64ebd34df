//! Questions from the backend: who is connected, one user's connections and rooms, counters;
//! and disconnecting a user.

use std::rc::Rc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::{check_name, json, next_cursor, page_params, ApiError, ApiResult};
use crate::node::Ctx;
use crate::stats::{ShardStats, StatsSnapshot};

/// `GET /api/v1/users?limit=&cursor=`: connected users in id order, a page at a time.
/// Cluster mode: users connected to any node.
pub(super) async fn users(ctx: &Rc<Ctx>, req: &Request<Incoming>) -> ApiResult {
    let (limit, cursor) = page_params(req)?;
    let (page, more) = match ctx.shared.backplane.redis() {
        Some(redis) => redis
            .users_page(cursor.as_deref(), limit)
            .await
            .map_err(ApiError::unavailable)?,
        None => ctx.shared.directory().users_page(cursor.as_deref(), limit),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct User {
        user_id: String,
        connections: u32,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        users: Vec<User>,
        next_cursor: Option<String>,
    }
    let next_cursor = next_cursor(more, page.last().map(|(key, _)| &**key));
    let users = page
        .into_iter()
        .map(|(u, n)| User {
            user_id: u.to_string(),
            connections: n,
        })
        .collect();
    Ok(json(StatusCode::OK, &Page { users, next_cursor }))
}

/// `GET /api/v1/users/{userId}`: connected?, how many connections, which rooms. Cluster
/// mode: connections on every node; rooms those of its connections on this node.
pub(super) async fn user(ctx: &Rc<Ctx>, user: String) -> ApiResult {
    check_name("userId", &user)?;
    let here = ctx.shared.directory().connections_of(&user);
    let connections = match ctx.shared.backplane.redis() {
        Some(redis) => {
            let (_, connections) = redis
                .user_presence(&user)
                .await
                .map_err(ApiError::unavailable)?;
            connections
        }
        None => here,
    };
    let mut rooms: Vec<String> = if here == 0 {
        Vec::new()
    } else {
        let name = user.clone();
        let parts = ctx.hub.gather(move |s| s.rooms_of(&name)).await;
        parts.into_iter().flatten().map(|r| r.to_string()).collect()
    };
    rooms.sort();
    rooms.dedup();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct User {
        user_id: String,
        online: bool,
        connections: u32,
        rooms: Vec<String>,
    }
    Ok(json(
        StatusCode::OK,
        &User {
            user_id: user,
            online: connections > 0,
            connections,
            rooms,
        },
    ))
}

/// `GET /api/v1/users/{userId}/unread`: the user's read marker and unread count in every room
/// it marked read, and its mailbox (private messages not yet acknowledged).
pub(super) fn unread(ctx: &Rc<Ctx>, user: String) -> ApiResult {
    check_name("userId", &user)?;
    let backplane = &ctx.shared.backplane;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Room {
        room_id: String,
        read: u64,
        offset: u64,
        unread: u64,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Mailbox {
        epoch: String,
        offset: u64,
        acked: u64,
        waiting: usize,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Unread {
        user_id: String,
        rooms: Vec<Room>,
        mailbox: Option<Mailbox>,
    }
    let rooms = backplane
        .reads()
        .markers(&user)
        .into_iter()
        .map(|(room, read)| {
            let offset = backplane
                .streams()
                .peek(&room, |s| s.position().offset)
                .unwrap_or(read)
                .max(read);
            Room {
                room_id: room.to_string(),
                read,
                offset,
                unread: offset - read,
            }
        })
        .collect();
    let mailbox = backplane.user_streams().peek(&user, |s| Mailbox {
        epoch: s.position().epoch_text(),
        offset: s.position().offset,
        acked: s.acked().0,
        waiting: s.waiting(),
    });
    Ok(json(
        StatusCode::OK,
        &Unread {
            user_id: user,
            rooms,
            mailbox,
        },
    ))
}

/// `GET /api/v1/users/{userId}/presence`: online as watchers are told (connected, or within
/// `PRESENCE_GRACE` of its last connection closing), and its connections (cluster mode: on
/// every node).
pub(super) async fn presence(ctx: &Rc<Ctx>, user: String) -> ApiResult {
    check_name("userId", &user)?;
    let (online, connections) = match ctx.shared.backplane.redis() {
        Some(redis) => redis
            .user_presence(&user)
            .await
            .map_err(ApiError::unavailable)?,
        None => ctx.shared.directory().presence_of(&user),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Presence {
        user_id: String,
        online: bool,
        connections: u32,
    }
    Ok(json(
        StatusCode::OK,
        &Presence {
            user_id: user,
            online,
            connections,
        },
    ))
}

/// `DELETE /api/v1/users/{userId}/connections?reason=`: close them all with 4003.
pub(super) async fn kick(ctx: &Rc<Ctx>, req: &Request<Incoming>, user: String) -> ApiResult {
    check_name("userId", &user)?;
    let reason = crate::http::url::query_param(req.uri().query().unwrap_or(""), "reason")
        .unwrap_or_else(|| "disconnected by the backend".to_owned());
    let disconnected: usize = ctx
        .hub
        .gather(move |s| s.kick(&user, &reason))
        .await
        .into_iter()
        .sum();
    #[derive(Serialize)]
    struct Kicked {
        disconnected: usize,
    }
    Ok(json(StatusCode::OK, &Kicked { disconnected }))
}

/// Counters per shard and in total, with users and rooms.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    #[serde(flatten)]
    pub(crate) total: StatsSnapshot,
    pub(crate) users: usize,
    pub(crate) rooms: usize,
    pub(crate) shards: Vec<PerShard>,
}

/// One shard's counters.
#[derive(Serialize)]
pub(crate) struct PerShard {
    pub(crate) shard: usize,
    #[serde(flatten)]
    pub(crate) stats: StatsSnapshot,
}

pub(crate) fn collect_stats(ctx: &Ctx) -> Stats {
    let shards: Vec<PerShard> = ctx
        .shared
        .stats
        .iter()
        .enumerate()
        .map(|(i, s)| PerShard {
            shard: i,
            stats: ShardStats::snapshot(s),
        })
        .collect();
    let total = shards
        .iter()
        .fold(StatsSnapshot::default(), |a, s| a + s.stats);
    let directory = &ctx.shared.directory();
    Stats {
        total,
        users: directory.user_count(),
        rooms: directory.room_count(),
        shards,
    }
}

/// `GET /api/v1/stats`: this node's counters; users and rooms on every node in cluster mode.
pub(super) async fn stats(ctx: &Rc<Ctx>) -> ApiResult {
    let mut stats = collect_stats(ctx);
    if let Some(redis) = ctx.shared.backplane.redis() {
        let (users, rooms) = redis.counts().await.map_err(ApiError::unavailable)?;
        stats.users = users as usize;
        stats.rooms = rooms as usize;
    }
    Ok(json(StatusCode::OK, &stats))
}
