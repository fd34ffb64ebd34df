//! Cluster-wide presence over Redis: who is in which room and who is online, counted per
//! node and summed in Redis, so that a user with a tab on one node and a phone on another
//! joins once, leaves with its last connection anywhere, and goes offline only after the last
//! connection anywhere plus `PRESENCE_GRACE`.
//!
//! - **Rooms.** `{r:<room>}:pn` holds each node's member connections per user (`user|node`,
//!   and `#` their sum), `{r:<room>}:pu` each user's sum and `{r:<room>}:pz` the users in id
//!   order. [`ROOM`] sets one node's count; when a user's sum goes 0→1 or 1→0 it publishes
//!   `presence.join` / `presence.leave` on the room's channel, which reaches the nodes hosting
//!   members, and only those.
//! - **Users.** `{u:<user>}:p` holds each node's connections (field: the node), `t` their sum
//!   and `g` the node holding the grace after the last one closed. [`USER`] publishes
//!   `user.online` / `user.offline` on `{u:<user>}:w`, which nodes with watchers of the user
//!   subscribe to.
//! - **Nodes.** Each node beats in `{n}:beats` (a sorted set by last beat) and records what
//!   it contributed (`{n}:<node>:m` memberships, `:u`/`:uc` users, `:r`/`:rc` rooms, `:g`
//!   graces): when a node misses `CLUSTER_NODE_TIMEOUT` of beats, another takes its record
//!   apart, announcing the leaves and offlines its death caused. The records, all in the
//!   `{n}` slot, also answer the cluster-wide listings (users, rooms).
//!
//! This node's changes are not sent as they happen but marked dirty (a set of names, so as
//! many as the node has members and users, coalesced) and synced by one loop, which reads
//! the node's counts at that moment: every script sets an absolute count, so a retry after a
//! failure, or a resync after Redis lost everything, is harmless.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::types::scripts::Script;
use fred::types::Value;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Notify;

use super::envelope::{Header, UNSEQUENCED};
use super::{array, bytes_of, lock, number, Kind, Redis};
use crate::clock::unix_ms;
use crate::cluster::Local;
use crate::config::Config;
use crate::hub::{presence_event, BackplaneError, Change};

/// Sets one node's member connections of a user in a room.
///
/// KEYS: pn, pu, pz. ARGV: `user|node`, the count, the user, `1` if the room announces
/// presence, the `presence.join` envelope, the `presence.leave` one, the room's channel.
/// Returns 1 when the user joined the cluster, -1 when it left, else 0.
const ROOM: &str = r#"
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new == old then return 0 end
if new > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('HINCRBY', KEYS[1], '#', new - old) <= 0 then redis.call('HDEL', KEYS[1], '#') end
local u = redis.call('HINCRBY', KEYS[2], ARGV[3], new - old)
if u <= 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
if u > 0 and u - (new - old) <= 0 then
  redis.call('ZADD', KEYS[3], 0, ARGV[3])
  if ARGV[4] == '1' then redis.call('SPUBLISH', ARGV[7], ARGV[5]) end
  return 1
end
if u <= 0 and old > 0 then
  redis.call('ZREM', KEYS[3], ARGV[3])
  if ARGV[4] == '1' then redis.call('SPUBLISH', ARGV[7], ARGV[6]) end
  return -1
end
return 0
"#;

/// Sets one node's connections of a user.
///
/// KEYS: the user's presence hash. ARGV: the node, its connections, `1` to hold a grace if
/// this ends the user's last connection (else offline at once, and a grace this node held
/// ends), the `user.online` envelope, the `user.offline` one, the watch channel. Returns
/// `online`, `back` (within a grace: not announced), `grace`, `offline` or `same`.
const USER: &str = r#"
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
local before = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local t = before + new - old
if t > 0 then
  redis.call('HSET', KEYS[1], 't', t)
  if before <= 0 then
    if redis.call('HDEL', KEYS[1], 'g') == 1 then return 'back' end
    redis.call('SPUBLISH', ARGV[6], ARGV[4])
    return 'online'
  end
  return 'same'
end
redis.call('HDEL', KEYS[1], 't')
if before > 0 and ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'g', ARGV[1])
  return 'grace'
end
if before > 0 or redis.call('HGET', KEYS[1], 'g') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'g')
  redis.call('SPUBLISH', ARGV[6], ARGV[5])
  return 'offline'
end
return 'same'
"#;

/// Keeps a node's record of a name it contributes (a user, a room and a membership).
///
/// KEYS: the ordered set, the counts' hash, and optionally a set of pairs. ARGV: the name, its
/// count, and optionally the pair and its count. Zero takes them out.
const RECORD: &str = r#"
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if KEYS[3] then
  if tonumber(ARGV[4]) > 0 then redis.call('SADD', KEYS[3], ARGV[3]) else redis.call('SREM', KEYS[3], ARGV[3]) end
end
return 1
"#;

/// A node's beat: its time in the beats, its HTTP address renewed (see `addresses.rs`), and
/// the nodes whose last beat is older than the cutoff. KEYS: beats, the node's address key.
/// ARGV: the node, now, the cutoff (ms), its address (`''`: none), the address's time to live
/// (ms). Returns `{added, node, …}`.
const BEAT: &str = r#"
local added = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5]) end
local out = {added}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])) do
  if n ~= ARGV[1] then table.insert(out, n) end
end
return out
"#;

/// Claims the cleanup of a dead node (or renews the claim). KEYS: the lock. ARGV: this node,
/// the claim's time to live (ms). Returns 1 if this node holds it.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Up to a count of a dead node's record. KEYS: a set or a sorted set. ARGV: the count.
const TAKE: &str = r#"
if redis.call('TYPE', KEYS[1])['ok'] == 'zset' then
  return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
end
return redis.call('SRANDMEMBER', KEYS[1], ARGV[1])
"#;

/// Takes names out of a dead node's record. KEYS: the set or sorted set, and its counts'
/// hash (or the same key). ARGV: the names.
const DROP: &str = r#"
local z = redis.call('TYPE', KEYS[1])['ok'] == 'zset'
for _, name in ipairs(ARGV) do
  if z then redis.call('ZREM', KEYS[1], name) else redis.call('SREM', KEYS[1], name) end
  if KEYS[2] ~= KEYS[1] then redis.call('HDEL', KEYS[2], name) end
end
return 1
"#;

/// Forgets a dead node whose record is gone. KEYS: beats, then its record's keys. ARGV: the
/// node.
const FORGET: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"#;

/// A page of names over every node's record (and the room definitions'), with their counts
/// summed: at most `limit + 1` after the cursor in each, unordered (the caller sorts: Lua's
/// string order follows the locale).
///
/// KEYS: beats, and optionally the definitions' sorted set. ARGV: the records' key prefix,
/// the sorted set's suffix, the counts' suffix, the cursor (`''`: from the first), the limit.
/// Returns `{name, count, …}`.
const LIST: &str = r#"
local from = '-'
if ARGV[4] ~= '' then from = '(' .. ARGV[4] end
local limit = tonumber(ARGV[5]) + 1
local sum = {}
local names = {}
local function add(name, n)
  if not sum[name] then sum[name] = 0; table.insert(names, name) end
  sum[name] = sum[name] + n
end
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. node
  for _, name in ipairs(redis.call('ZRANGE', key .. ARGV[2], from, '+', 'BYLEX', 'LIMIT', 0, limit)) do
    add(name, tonumber(redis.call('HGET', key .. ARGV[3], name) or '0'))
  end
end
if KEYS[2] then
  for _, name in ipairs(redis.call('ZRANGE', KEYS[2], from, '+', 'BYLEX', 'LIMIT', 0, limit)) do
    add(name, 0)
  end
end
local out = {}
for _, name in ipairs(names) do
  table.insert(out, name)
  table.insert(out, sum[name])
end
return out
"#;

/// How many distinct names every node's record holds (and the definitions). KEYS: beats, a
/// scratch key, optionally the definitions' sorted set. ARGV: the records' prefix, suffix.
const COUNT: &str = r#"
local keys = {}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(keys, ARGV[1] .. node .. ARGV[2])
end
if KEYS[3] then table.insert(keys, KEYS[3]) end
if #keys == 0 then return 0 end
redis.call('ZUNIONSTORE', KEYS[2], #keys, unpack(keys))
local n = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2])
return n
"#;

/// A page of a room's member users after a user, with their connections. KEYS: pz, pu.
/// ARGV: after (`''`: from the first), most. Returns `{user, count, …}`.
const MEMBERS: &str = r#"
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local out = {}
for _, u in ipairs(redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))) do
  table.insert(out, u)
  table.insert(out, tonumber(redis.call('HGET', KEYS[2], u) or '0'))
end
return out
"#;

/// Most names synced with Redis at once.
const CONCURRENCY: usize = 64;

/// Most names of a dead node's record taken apart in one step.
const CLEANUP_BATCH: usize = 100;

/// How often marked changes and ended graces are looked at, at least.
const TICK: Duration = Duration::from_millis(50);

/// This node's presence changes waiting for Redis, and the graces it holds.
pub(crate) struct Presence {
    /// (room, user) whose member count here changed.
    rooms: std::sync::Mutex<HashSet<(Arc<str>, Arc<str>)>>,
    /// Users whose connection count here changed.
    users: std::sync::Mutex<HashSet<Arc<str>>>,
    wake: Notify,
    /// Users whose grace this node holds in Redis, by its end. At most `max_leaving`: past
    /// it, the one nearest its end goes offline at once (as on one node).
    graces: std::sync::Mutex<BTreeSet<(Instant, Arc<str>)>>,
    grace: Duration,
    max_leaving: usize,
    rooms_default: bool,
    /// `CLUSTER_NODE_TIMEOUT`: a node silent this long is taken out.
    pub(crate) timeout: Duration,
    scripts: Scripts,
}

struct Scripts {
    room: Script,
    user: Script,
    record: Script,
    beat: Script,
    claim: Script,
    take: Script,
    drop: Script,
    forget: Script,
    list: Script,
    count: Script,
    members: Script,
}

impl Presence {
    pub(crate) fn new(config: &Config) -> Presence {
        Presence {
            rooms: Default::default(),
            users: Default::default(),
            wake: Notify::new(),
            graces: Default::default(),
            grace: config.presence_grace,
            max_leaving: config.max_connections.max(1),
            rooms_default: config.room_presence,
            timeout: config.cluster_node_timeout,
            scripts: Scripts {
                room: Script::from_lua(ROOM),
                user: Script::from_lua(USER),
                record: Script::from_lua(RECORD),
                beat: Script::from_lua(BEAT),
                claim: Script::from_lua(CLAIM),
                take: Script::from_lua(TAKE),
                drop: Script::from_lua(DROP),
                forget: Script::from_lua(FORGET),
                list: Script::from_lua(LIST),
                count: Script::from_lua(COUNT),
                members: Script::from_lua(MEMBERS),
            },
        }
    }

    /// `user`'s member connections of `room` on this node changed.
    pub(crate) fn member_changed(&self, room: &Arc<str>, user: &Arc<str>) {
        lock(&self.rooms).insert((room.clone(), user.clone()));
        self.wake.notify_one();
    }

    /// `user`'s connections on this node changed.
    pub(crate) fn user_changed(&self, user: &Arc<str>) {
        lock(&self.users).insert(user.clone());
        self.wake.notify_one();
    }
}

/// What a page of a cluster-wide listing holds: names and counts, and whether more follow.
pub(crate) type Page = (Vec<(Arc<str>, u32)>, bool);

impl Redis {
    fn node_hex(&self) -> String {
        format!("{:016x}", self.node)
    }

    /// A key of `node`'s record.
    fn record(&self, node: &str, suffix: &str) -> String {
        self.names.shared(&format!("{node}:{suffix}"))
    }

    /// The presence event of `change`, as an envelope.
    fn presence_envelope(&self, change: Change<'_>) -> Bytes {
        let d = presence_event(change);
        let header = Header {
            node: self.node,
            nonce: 0,
            ephemeral: true,
            presence: true,
            exclude_user: d.exclude_user.as_deref(),
        };
        let mut out = UNSEQUENCED.to_vec();
        out.extend(header.encode(&d.event.stored(unix_ms())));
        Bytes::from(out)
    }

    /// The loops of cluster-wide presence: syncing this node's changes, and the beats.
    pub(super) async fn presence(self: Arc<Self>, local: Weak<Local>) {
        tokio::spawn(self.clone().heartbeat(local.clone()));
        // The rooms other nodes defined, before anything else.
        loop {
            let loaded = self.definitions().await;
            let Some(local) = local.upgrade() else { return };
            match loaded {
                Ok(defs) => break local.define_rooms(defs),
                Err(_) => tokio::time::sleep(TICK * 10).await,
            }
        }
        // Marks that Redis holds what nodes gave it (and gives it this node's rooms, should
        // it have lost the others' too); again whenever a beat finds this node missing.
        if let Some(local) = local.upgrade() {
            self.give_back_rooms(&local).await;
        }
        loop {
            tokio::select! {
                () = self.presence.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
            let Some(local) = local.upgrade() else { return };
            self.sync(&local).await;
            self.end_graces(&local).await;
        }
    }

    /// Syncs what changed here since the last time.
    async fn sync(&self, local: &Local) {
        let rooms: Vec<_> = lock(&self.presence.rooms).drain().collect();
        let users: Vec<_> = lock(&self.presence.users).drain().collect();
        if rooms.is_empty() && users.is_empty() {
            return;
        }
        let me = &self.node_hex();
        // Users first: a user's first connection is online before its joins are announced.
        stream::iter(users)
            .for_each_concurrent(CONCURRENCY, |user| async move {
                let count = local.directory().connections_of(&user);
                if self.sync_user(me, &user, count, true).await.is_err() {
                    self.presence.user_changed(&user);
                }
            })
            .await;
        stream::iter(rooms)
            .for_each_concurrent(CONCURRENCY, |(room, user)| async move {
                if self.sync_member(local, me, &room, &user).await.is_err() {
                    self.presence.member_changed(&room, &user);
                }
            })
            .await;
    }

    /// Sets this node's member connections of `user` in `room` in Redis, and its record.
    async fn sync_member(
        &self,
        local: &Local,
        me: &str,
        room: &Arc<str>,
        user: &Arc<str>,
    ) -> Result<(), BackplaneError> {
        let directory = local.directory();
        let count = directory.member_count(room, user);
        let info = directory.room(room);
        let members = info.as_ref().map_or(0, |r| r.members);
        let announce = info.map_or(self.presence.rooms_default, |r| r.presence);
        // Recorded before it is counted, taken out after: a record never misses what the
        // node contributed, so a cleanup finds it all.
        if count > 0 {
            self.record_member(me, room, members, user, count).await?;
            self.set_member(me, room, user, count, announce).await?;
        } else {
            self.set_member(me, room, user, 0, announce).await?;
            self.record_member(me, room, members, user, 0).await?;
        }
        Ok(())
    }

    async fn record_member(
        &self,
        me: &str,
        room: &str,
        members: u32,
        user: &str,
        count: u32,
    ) -> Result<(), BackplaneError> {
        let keys = vec![
            self.record(me, "r"),
            self.record(me, "rc"),
            self.record(me, "m"),
        ];
        let args: Vec<Value> = vec![
            room.into(),
            i64::from(members).into(),
            pair(room, user).into(),
            i64::from(count).into(),
        ];
        self.script(&self.presence.scripts.record, keys, args)
            .await
            .map(drop)
    }

    /// Runs [`ROOM`]: `node` holds `count` member connections of `user` in `room`.
    async fn set_member(
        &self,
        node: &str,
        room: &Arc<str>,
        user: &Arc<str>,
        count: u32,
        announce: bool,
    ) -> Result<(), BackplaneError> {
        let keys = vec![
            self.names.presence(Kind::Room, room, "pn"),
            self.names.presence(Kind::Room, room, "pu"),
            self.names.presence(Kind::Room, room, "pz"),
        ];
        let args: Vec<Value> = vec![
            format!("{user}|{node}").into(),
            i64::from(count).into(),
            (**user).into(),
            if announce { "1" } else { "0" }.into(),
            self.presence_envelope(Change::Joined { room, user }).into(),
            self.presence_envelope(Change::Left { room, user }).into(),
            self.names.channel(Kind::Room, room).into(),
        ];
        self.script(&self.presence.scripts.room, keys, args)
            .await
            .map(drop)
    }

    /// Sets this node's connections of `user` in Redis (`hold`: a last connection closing
    /// starts a grace this node holds), and its record.
    async fn sync_user(
        &self,
        me: &str,
        user: &Arc<str>,
        count: u32,
        hold: bool,
    ) -> Result<(), BackplaneError> {
        if count > 0 {
            self.record_user(me, user, count).await?;
        }
        let hold = hold && !self.presence.grace.is_zero();
        let answer = self.set_user(me, user, count, hold).await?;
        if answer == "grace" {
            self.sadd(self.record(me, "g"), user).await?;
            self.hold_grace(user);
        } else if answer == "offline" || answer == "back" {
            self.srem(self.record(me, "g"), user).await?;
        }
        if count == 0 {
            self.record_user(me, user, 0).await?;
        }
        Ok(())
    }

    async fn record_user(&self, me: &str, user: &str, count: u32) -> Result<(), BackplaneError> {
        let keys = vec![self.record(me, "u"), self.record(me, "uc")];
        let args: Vec<Value> = vec![user.into(), i64::from(count).into()];
        self.script(&self.presence.scripts.record, keys, args)
            .await
            .map(drop)
    }

    /// Runs [`USER`]; its answer.
    async fn set_user(
        &self,
        node: &str,
        user: &Arc<str>,
        count: u32,
        hold: bool,
    ) -> Result<String, BackplaneError> {
        let keys = vec![self.names.presence(Kind::User, user, "p")];
        let args: Vec<Value> = vec![
            node.into(),
            i64::from(count).into(),
            if hold { "1" } else { "0" }.into(),
            self.presence_envelope(Change::Online(user)).into(),
            self.presence_envelope(Change::Offline(user)).into(),
            self.names.watch(user).into(),
        ];
        let answer = self.script(&self.presence.scripts.user, keys, args).await?;
        Ok(text(&answer).unwrap_or_default())
    }

    /// This node holds `user`'s grace from now.
    fn hold_grace(&self, user: &Arc<str>) {
        let mut graces = lock(&self.presence.graces);
        graces.retain(|(_, u)| u != user);
        let now = Instant::now();
        if graces.len() >= self.presence.max_leaving {
            // The nearest end, brought forward to now.
            if let Some((_, first)) = graces.pop_first() {
                graces.insert((now, first));
            }
        }
        graces.insert((now + self.presence.grace, user.clone()));
    }

    /// Ends the graces that are over: each user with no connection anywhere goes offline.
    async fn end_graces(&self, local: &Local) {
        let now = Instant::now();
        let over: Vec<Arc<str>> = {
            let mut graces = lock(&self.presence.graces);
            let mut over = Vec::new();
            while graces.first().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, user)) = graces.pop_first() {
                    over.push(user);
                }
            }
            over
        };
        let me = self.node_hex();
        for user in over {
            let count = local.directory().connections_of(&user);
            if self.sync_user(&me, &user, count, false).await.is_err() {
                // Tried again soon.
                let mut graces = lock(&self.presence.graces);
                graces.insert((now + TICK * 10, user));
            }
        }
    }

    async fn script(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, BackplaneError> {
        self.bounded(script.evalsha_with_reload(&self.client, keys, args))
            .await
    }

    async fn sadd(&self, key: String, member: &str) -> Result<(), BackplaneError> {
        use fred::interfaces::SetsInterface;
        let _: Value = self.bounded(self.client.sadd(key, member)).await?;
        Ok(())
    }

    async fn srem(&self, key: String, member: &str) -> Result<(), BackplaneError> {
        use fred::interfaces::SetsInterface;
        let _: Value = self.bounded(self.client.srem(key, member)).await?;
        Ok(())
    }

    /// Every `CLUSTER_NODE_TIMEOUT / 4`: this node's beat (with its address, for forwarding,
    /// kept for `CLUSTER_NODE_TIMEOUT`), and the cleanup of the nodes
    /// silent for longer than the timeout. A beat that finds this node missing (Redis lost
    /// everything, or the others took it for dead while its link was down) resyncs all it
    /// contributes.
    async fn heartbeat(self: Arc<Self>, local: Weak<Local>) {
        let every = (self.presence.timeout / 4).max(Duration::from_millis(20));
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(every).await;
            }
            let Some(local) = local.upgrade() else { return };
            let now = unix_ms();
            let cutoff = now.saturating_sub(self.presence.timeout.as_millis() as u64);
            let keys = vec![self.names.shared("beats"), self.address_key(self.tag)];
            let args: Vec<Value> = vec![
                self.node_hex().into(),
                (now as i64).into(),
                (cutoff as i64).into(),
                self.addresses.own().into(),
                (self.presence.timeout.as_millis() as i64).max(1_000).into(),
            ];
            let Ok(answer) = self.script(&self.presence.scripts.beat, keys, args).await else {
                tokio::time::sleep(every).await;
                continue;
            };
            let mut parts = array(answer).into_iter();
            let added = parts.next().and_then(|v| number(&v)).unwrap_or(0);
            if added == 1 && !std::mem::take(&mut first) {
                tracing::warn!("cluster: this node was missing from Redis; resyncing its presence");
                local.resync_presence();
                self.give_back_rooms(&local).await;
            }
            first = false;
            for dead in parts.filter_map(|v| text(&v)) {
                if let Err(e) = self.clean(&dead).await {
                    tracing::warn!(node = %dead, error = %e, "cluster: a dead node's cleanup stopped; retried");
                }
            }
        }
    }

    /// Gives Redis back the room definitions if it lost them (see `Local::redefine_rooms`).
    async fn give_back_rooms(&self, local: &Local) {
        match local.redefine_rooms(self).await {
            Ok(Some(rooms)) if rooms > 0 => {
                tracing::warn!(
                    rooms,
                    "cluster: Redis had lost the room definitions; given back"
                );
            }
            Ok(_) => {}
            // The next beat that finds this node missing tries again.
            Err(e) => {
                tracing::warn!(error = %e, "cluster: giving Redis the room definitions failed")
            }
        }
    }

    /// Takes a dead node's record apart, a batch at a time: its members leave their rooms
    /// and its users go offline (at once: its grace, if it held one, ends with it), then it
    /// is forgotten. Claimed first, so one node does it; another takes over if it dies.
    async fn clean(&self, dead: &str) -> Result<(), BackplaneError> {
        let me = self.node_hex();
        let claim = || {
            let keys = vec![self.names.shared(&format!("clean:{dead}"))];
            let ttl = (self.presence.timeout.as_millis() as i64).max(1_000);
            let args: Vec<Value> = vec![me.clone().into(), ttl.into()];
            self.script(&self.presence.scripts.claim, keys, args)
        };
        if number(&claim().await?) != Some(1) {
            return Ok(());
        }
        tracing::info!(node = %dead, "cluster: a node stopped beating; taking out its presence");
        // Memberships.
        let m = self.record(dead, "m");
        loop {
            let pairs = self.take(&m).await?;
            if pairs.is_empty() {
                break;
            }
            for p in &pairs {
                if let Some((room, user)) = unpair(p) {
                    let (room, user): (Arc<str>, Arc<str>) = (room.into(), user.into());
                    let announce = self.presence.rooms_default;
                    self.set_member(dead, &room, &user, 0, announce).await?;
                }
            }
            self.drop_names(&m, &m, pairs).await?;
            claim().await?;
        }
        // Users, and those within a grace it held.
        for (set, counts) in [("u", "uc"), ("g", "g")] {
            let (set, counts) = (self.record(dead, set), self.record(dead, counts));
            loop {
                let users = self.take(&set).await?;
                if users.is_empty() {
                    break;
                }
                for user in &users {
                    self.set_user(dead, &Arc::from(user.as_str()), 0, false)
                        .await?;
                }
                self.drop_names(&set, &counts, users).await?;
                claim().await?;
            }
        }
        let mut keys = vec![self.names.shared("beats")];
        keys.extend(
            ["m", "u", "uc", "g", "r", "rc"]
                .iter()
                .map(|s| self.record(dead, s)),
        );
        keys.push(self.names.shared(&format!("clean:{dead}")));
        self.script(&self.presence.scripts.forget, keys, vec![dead.into()])
            .await
            .map(drop)
    }

    async fn take(&self, key: &str) -> Result<Vec<String>, BackplaneError> {
        let args: Vec<Value> = vec![(CLEANUP_BATCH as i64).into()];
        let answer = self
            .script(&self.presence.scripts.take, vec![key.to_owned()], args)
            .await?;
        Ok(array(answer).iter().filter_map(text).collect())
    }

    async fn drop_names(
        &self,
        key: &str,
        counts: &str,
        names: Vec<String>,
    ) -> Result<(), BackplaneError> {
        let keys = vec![key.to_owned(), counts.to_owned()];
        let args: Vec<Value> = names.into_iter().map(Value::from).collect();
        self.script(&self.presence.scripts.drop, keys, args)
            .await
            .map(drop)
    }

    /// Subscribes to `user`'s watch channel soon (a local connection watches the user).
    pub(crate) fn want_watch(&self, user: &str) {
        let _ = self.interest.want(self.names.watch(user), None);
    }

    /// Subscribes to `user`'s watch channel and waits until Redis confirmed it.
    pub(crate) async fn watch_subscribed(&self, user: &str) -> Result<(), BackplaneError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let _ = self.interest.want(self.names.watch(user), Some(done));
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(BackplaneError::Unreachable),
        }
    }

    /// Whether `user` is online anywhere (connected, or within the grace), and its
    /// connections on every node.
    pub(crate) async fn user_presence(&self, user: &str) -> Result<(bool, u32), BackplaneError> {
        use fred::interfaces::HashesInterface;
        let key = self.names.presence(Kind::User, user, "p");
        let answer: Value = self.bounded(self.client.hmget(key, vec!["t", "g"])).await?;
        let parts = array(answer);
        let connections = parts.first().and_then(number).unwrap_or(0) as u32;
        let grace = parts.get(1).is_some_and(|v| !matches!(v, Value::Null));
        Ok((connections > 0 || grace, connections))
    }

    /// Connected users on every node, in id order, a page at a time.
    pub(crate) async fn users_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, BackplaneError> {
        self.list(None, "u", "uc", cursor, limit).await
    }

    /// Rooms with members on any node, or defined, in id order, with their member
    /// connections on every node.
    pub(crate) async fn rooms_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, BackplaneError> {
        let defined = self.names.shared("defz");
        self.list(Some(defined), "r", "rc", cursor, limit).await
    }

    async fn list(
        &self,
        defined: Option<String>,
        set: &str,
        counts: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, BackplaneError> {
        let mut keys = vec![self.names.shared("beats")];
        keys.extend(defined);
        let args: Vec<Value> = vec![
            self.names.shared("").into(),
            format!(":{set}").into(),
            format!(":{counts}").into(),
            cursor.unwrap_or("").into(),
            (limit as i64).into(),
        ];
        let answer = self.script(&self.presence.scripts.list, keys, args).await?;
        Ok(sorted_page(array(answer), limit))
    }

    /// Distinct users connected, and rooms, on every node (what stats count).
    pub(crate) async fn counts(&self) -> Result<(u64, u64), BackplaneError> {
        let mut out = [0; 2];
        for (i, (set, defined)) in [("u", None), ("r", Some(self.names.shared("defz")))]
            .into_iter()
            .enumerate()
        {
            let mut keys = vec![self.names.shared("beats"), self.names.shared("scratch")];
            keys.extend(defined);
            let args: Vec<Value> = vec![self.names.shared("").into(), format!(":{set}").into()];
            let answer = self
                .script(&self.presence.scripts.count, keys, args)
                .await?;
            out[i] = number(&answer).unwrap_or(0);
        }
        Ok((out[0], out[1]))
    }

    /// A page of `room`'s member users on every node, with their member connections; and
    /// the room's member connections in all.
    pub(crate) async fn members_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Page, u32), BackplaneError> {
        use fred::interfaces::HashesInterface;
        let keys = vec![
            self.names.presence(Kind::Room, room, "pz"),
            self.names.presence(Kind::Room, room, "pu"),
        ];
        let args: Vec<Value> = vec![after.unwrap_or("").into(), (limit as i64 + 1).into()];
        let answer = self
            .script(&self.presence.scripts.members, keys, args)
            .await?;
        let page = sorted_page(array(answer), limit);
        let key = self.names.presence(Kind::Room, room, "pn");
        let total: Value = self.bounded(self.client.hget(key, "#")).await?;
        Ok((page, number(&total).unwrap_or(0) as u32))
    }
}

/// `{name, count, …}` sorted by name (bytes), the first `limit`, and whether more follow.
fn sorted_page(parts: Vec<Value>, limit: usize) -> Page {
    let mut items: Vec<(Arc<str>, u32)> = parts
        .chunks_exact(2)
        .filter_map(|p| Some((Arc::from(text(&p[0])?.as_str()), number(&p[1])? as u32)))
        .collect();
    items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let more = items.len() > limit;
    items.truncate(limit);
    (items, more)
}

fn text(value: &Value) -> Option<String> {
    String::from_utf8(bytes_of(value)?.to_vec()).ok()
}

/// A membership as a node's record keeps it: the room's length, `:`, the room, the user.
fn pair(room: &str, user: &str) -> String {
    format!("{}:{room}{user}", room.len())
}

/// The room and the user of a recorded membership.
fn unpair(pair: &str) -> Option<(&str, &str)> {
    let (len, rest) = pair.split_once(':')?;
    let len: usize = len.parse().ok()?;
    (len <= rest.len() && rest.is_char_boundary(len)).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_membership_reads_back_whatever_the_names_hold() {
        for (room, user) in [("lobby", "ann"), ("1:a", ":b"), ("é", "ü:")] {
            assert_eq!(unpair(&pair(room, user)), Some((room, user)));
        }
        assert_eq!(unpair("9:ab"), None);
        assert_eq!(unpair("x:ab"), None);
    }

    #[test]
    fn a_listing_page_is_in_byte_order_and_says_whether_more_follow() {
        let v = |s: &str| Value::from(s);
        let parts = vec![
            v("b"),
            Value::Integer(2),
            v("a"),
            Value::Integer(1),
            v("c"),
            Value::Integer(0),
        ];
        let (page, more) = sorted_page(parts, 2);
        assert_eq!(page, [(Arc::from("a"), 1), (Arc::from("b"), 2)]);
        assert!(more);
    }
}
