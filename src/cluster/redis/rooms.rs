//! Room definitions shared by every node (cluster mode): a room created over REST or by a
//! client's `create`, on any node, is kept in `{n}:defs` (room → definition, JSON) and
//! `{n}:defz` (the rooms in id order, for listings), the users let into a private room in
//! `{n}:allow:<room>`, and every change is published on `{n}:d`, which every node listens
//! to. A node reads them all at its start. All in the `{n}` slot: each change is one script.

use fred::types::scripts::Script;
use fred::types::Value;
use serde_json::json;

use super::{array, Redis};
use crate::hub::BackplaneError;
use crate::store::RoomDef;

/// Defines a room unless some node did. KEYS: defs, defz. ARGV: the room, its definition,
/// the channel, the change. Returns 1 if defined now.
const DEFINE: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SPUBLISH', ARGV[3], ARGV[4])
return 1
"#;

/// Closes a room. KEYS: defs, defz, its allowed users. ARGV: the room, the channel, the
/// change.
const UNDEFINE: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// Lets a user into a private room, or takes it back. KEYS: the allowed users. ARGV: the
/// user, `1` or `0`, the channel, the change.
const ALLOW: &str = r#"
if ARGV[2] == '1' then redis.call('SADD', KEYS[1], ARGV[1]) else redis.call('SREM', KEYS[1], ARGV[1]) end
redis.call('SPUBLISH', ARGV[3], ARGV[4])
return 1
"#;

/// Every definition with its allowed users. KEYS: defs. ARGV: the allowed users' key
/// prefix. Returns `{room, definition, n, user × n, …}`.
const LOAD: &str = r#"
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local users = redis.call('SMEMBERS', ARGV[1] .. all[i])
  table.insert(out, all[i])
  table.insert(out, all[i + 1])
  table.insert(out, #users)
  for _, u in ipairs(users) do table.insert(out, u) end
end
return out
"#;

/// Gives Redis back the definitions it lost (restarted empty). KEYS: defs, defz, the mark
/// that Redis still holds what nodes gave it (`{n}:kept`). ARGV: `1` to do nothing if the
/// mark is there, `1` to set it at the end, the allowed users' key prefix, then per room: the
/// room, its definition, n, user × n. A definition made meanwhile is kept (`HSETNX`).
/// Returns 0 if the mark was there, else 1 + the rooms given.
const REDEFINE: &str = r#"
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local i = 4
local n = 1
while i <= #ARGV do
  local room = ARGV[i]
  redis.call('HSETNX', KEYS[1], room, ARGV[i + 1])
  redis.call('ZADD', KEYS[2], 0, room)
  local k = tonumber(ARGV[i + 2])
  for j = 1, k do redis.call('SADD', ARGV[3] .. room, ARGV[i + 2 + j]) end
  i = i + 3 + k
  n = n + 1
end
if ARGV[2] == '1' then redis.call('SET', KEYS[3], '1') end
return n
"#;

/// Most arguments of one `REDEFINE` call (rooms and their users): a bigger set is given in
/// several calls, the mark checked by the first and set by the last.
const REDEFINE_ARGS: usize = 10_000;

/// A change of a room definition, as published.
#[derive(Debug, PartialEq)]
pub(crate) enum RoomChange {
    Created(String, RoomDef),
    Closed(String),
    /// A user let into a private room (`true`, its connections added) or taken out.
    Allowed(String, String, bool),
}

impl Redis {
    /// Defines `room` for every node, unless a node did (then `false`).
    pub(crate) async fn define(&self, room: &str, def: &RoomDef) -> Result<bool, BackplaneError> {
        let keys = vec![self.names.shared("defs"), self.names.shared("defz")];
        let change = self.change("create", room, json!({"def": def_json(def)}));
        let args: Vec<Value> = vec![
            room.into(),
            def_json(def).to_string().into(),
            self.names.rooms().into(),
            change.into(),
        ];
        let answer = self.run_lua(DEFINE, keys, args).await?;
        Ok(super::number(&answer) == Some(1))
    }

    /// Closes `room` on every node.
    pub(crate) async fn undefine(&self, room: &str) -> Result<(), BackplaneError> {
        let keys = vec![
            self.names.shared("defs"),
            self.names.shared("defz"),
            self.names.shared(&format!("allow:{room}")),
        ];
        let change = self.change("close", room, json!({}));
        let args: Vec<Value> = vec![room.into(), self.names.rooms().into(), change.into()];
        self.run_lua(UNDEFINE, keys, args).await.map(drop)
    }

    /// Lets `user` into `room` on every node (adding its connections there), or takes it
    /// back (removing them).
    pub(crate) async fn allow(
        &self,
        room: &str,
        user: &str,
        allowed: bool,
    ) -> Result<(), BackplaneError> {
        let keys = vec![self.names.shared(&format!("allow:{room}"))];
        let op = if allowed { "allow" } else { "disallow" };
        let change = self.change(op, room, json!({"user": user}));
        let args: Vec<Value> = vec![
            user.into(),
            if allowed { "1" } else { "0" }.into(),
            self.names.rooms().into(),
            change.into(),
        ];
        self.run_lua(ALLOW, keys, args).await.map(drop)
    }

    /// Gives Redis `defs` (every room this node knows was defined, with the users let in)
    /// if it lost what nodes gave it: restarted empty, say, with no AOF. `false` when it had
    /// not (then nothing is written but the check).
    pub(crate) async fn redefine(
        &self,
        defs: Vec<(String, RoomDef, Vec<String>)>,
    ) -> Result<bool, BackplaneError> {
        let keys = || {
            vec![
                self.names.shared("defs"),
                self.names.shared("defz"),
                self.names.shared("kept"),
            ]
        };
        let mut calls: Vec<Vec<Value>> = vec![Vec::new()];
        for (room, def, users) in defs {
            let mut group: Vec<Value> = vec![
                room.into(),
                def_json(&def).to_string().into(),
                (users.len() as i64).into(),
            ];
            group.extend(users.into_iter().map(Value::from));
            let last = calls
                .last_mut()
                .filter(|c| c.len() + group.len() <= REDEFINE_ARGS);
            match last {
                Some(call) => call.extend(group),
                None => calls.push(group),
            }
        }
        let n = calls.len();
        for (i, rooms) in calls.into_iter().enumerate() {
            let flag = |yes: bool| Value::from(if yes { "1" } else { "0" });
            let mut args = vec![
                flag(i == 0),
                flag(i + 1 == n),
                self.names.shared("allow:").into(),
            ];
            args.extend(rooms);
            let answer = self.run_lua(REDEFINE, keys(), args).await?;
            if i == 0 && super::number(&answer) == Some(0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every room definition and the users let into it.
    pub(crate) async fn definitions(
        &self,
    ) -> Result<Vec<(String, RoomDef, Vec<String>)>, BackplaneError> {
        let keys = vec![self.names.shared("defs")];
        let args: Vec<Value> = vec![self.names.shared("allow:").into()];
        let parts = array(self.run_lua(LOAD, keys, args).await?);
        let mut parts = parts.iter();
        let mut out = Vec::new();
        while let (Some(room), Some(def), Some(n)) = (parts.next(), parts.next(), parts.next()) {
            let n = super::number(n).unwrap_or(0) as usize;
            let users: Vec<String> = parts.by_ref().take(n).filter_map(text).collect();
            let def = text(def).and_then(|d| serde_json::from_str(&d).ok());
            if let (Some(room), Some(def)) = (text(room), def.as_ref().and_then(def_from)) {
                out.push((room, def, users));
            }
        }
        Ok(out)
    }

    /// What another node published on the rooms' channel; `None` for this node's own.
    pub(crate) fn room_change(&self, bytes: &[u8]) -> Option<RoomChange> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if v["node"].as_str()? == format!("{:016x}", self.node) {
            return None;
        }
        let room = v["room"].as_str()?.to_owned();
        let user = || v["user"].as_str().map(str::to_owned);
        match v["op"].as_str()? {
            "create" => Some(RoomChange::Created(room, def_from(&v["def"])?)),
            "close" => Some(RoomChange::Closed(room)),
            "allow" => Some(RoomChange::Allowed(room, user()?, true)),
            "disallow" => Some(RoomChange::Allowed(room, user()?, false)),
            _ => None,
        }
    }

    fn change(&self, op: &str, room: &str, mut more: serde_json::Value) -> String {
        more["node"] = json!(format!("{:016x}", self.node));
        more["op"] = json!(op);
        more["room"] = json!(room);
        more.to_string()
    }

    async fn run_lua(
        &self,
        lua: &str,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, BackplaneError> {
        let script = Script::from_lua(lua);
        self.bounded(script.evalsha_with_reload(&self.client, keys, args))
            .await
    }
}

fn text(value: &Value) -> Option<String> {
    String::from_utf8(super::bytes_of(value)?.to_vec()).ok()
}

fn def_json(def: &RoomDef) -> serde_json::Value {
    json!({
        "private": def.private,
        "maxMembers": def.max_members,
        "presence": def.presence,
        "byClient": def.by_client,
        "createdBy": def.created_by,
        "createdAt": def.created_at,
        "historySize": def.history_size,
        "historyTtl": def.history_ttl,
    })
}

fn def_from(v: &serde_json::Value) -> Option<RoomDef> {
    let count = |name: &str| v[name].as_u64().and_then(|n| u32::try_from(n).ok());
    Some(RoomDef {
        private: v["private"].as_bool()?,
        max_members: count("maxMembers"),
        presence: v["presence"].as_bool()?,
        by_client: v["byClient"].as_bool()?,
        created_by: v["createdBy"].as_str().map(str::to_owned),
        created_at: v["createdAt"].as_u64()?,
        history_size: count("historySize"),
        history_ttl: count("historyTtl"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_reads_back_as_written() {
        let def = RoomDef {
            private: true,
            max_members: Some(3),
            presence: false,
            by_client: true,
            created_by: Some("ann".into()),
            created_at: 1_700_000_000_000,
            history_size: None,
            history_ttl: Some(60),
        };
        assert_eq!(def_from(&def_json(&def)), Some(def));
        assert_eq!(def_from(&json!({"private": true})), None);
    }
}
