//! The Lua scripts cluster mode runs in Redis. Each touches the keys of one stream only (one
//! hash tag, so one slot of a Redis Cluster), so Redis runs it atomically: taking an offset,
//! keeping the message and publishing it happen in one step, and every subscriber sees a
//! stream's events in offset order.
//!
//! Offsets and epochs never pass through Lua numbers beyond 2^53: the epoch stays a string
//! (16 hex digits) and offsets are formatted with `%d`.

/// Appends a message to a stream and publishes it to the stream's channel.
///
/// KEYS: meta, stream. ARGV: epoch should the stream be new, the sender's header, the
/// message, most messages kept (0 keeps none), the keys' time to live (ms), the channel.
/// Returns `{epoch, offset, subscribers}`: the nodes that host the stream's recipients (on a
/// Redis Cluster, those subscribed through the stream's shard).
pub(crate) const PUBLISH: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
local id = string.format('%d', o)
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', keep, id .. '-0', 'v', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local n = redis.call('SPUBLISH', ARGV[6], e .. ' ' .. id .. ' ' .. ARGV[2] .. ARGV[3])
return {e, id, n}
"#;

/// Reads a stream's head and the messages after an offset (`a`: after what its user
/// acknowledged), making the stream (its epoch) if it has none.
///
/// KEYS: meta, stream. ARGV: epoch should the stream be new, the offset (or `a`), most
/// messages returned, the keys' time to live (ms). Returns `{epoch, last, acked, manual,
/// id, message, id, message, …}`.
pub(crate) const HEAD: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local o = redis.call('HGET', KEYS[1], 'o') or '0'
local a = redis.call('HGET', KEYS[1], 'a') or '0'
local m = redis.call('HGET', KEYS[1], 'm') or '0'
local out = {e, o, a, m}
local after = ARGV[2]
if after == 'a' then after = a end
if tonumber(ARGV[3]) > 0 then
  local kept = redis.call('XRANGE', KEYS[2], '(' .. after .. '-0', '+', 'COUNT', ARGV[3])
  for _, entry in ipairs(kept) do
    table.insert(out, entry[1])
    table.insert(out, entry[2][2])
  end
end
return out
"#;

/// Reads a page of a stream's history: the oldest after an offset, or the newest before one.
///
/// KEYS: meta, stream. ARGV: `after` or `before`, the offset (`+` for none before), most
/// messages. Returns `{epoch, last, id, message, …}` (the newest-first page reversed).
pub(crate) const READ: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e') or ''
local o = redis.call('HGET', KEYS[1], 'o') or '0'
local out = {e, o}
local kept
if ARGV[1] == 'after' then
  kept = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])
else
  local before = ARGV[2]
  if before ~= '+' then before = '(' .. before .. '-0' end
  kept = redis.call('XREVRANGE', KEYS[2], before, '-', 'COUNT', ARGV[3])
  local n = #kept
  for i = 1, math.floor(n / 2) do
    kept[i], kept[n - i + 1] = kept[n - i + 1], kept[i]
  end
end
for _, entry in ipairs(kept) do
  table.insert(out, entry[1])
  table.insert(out, entry[2][2])
end
return out
"#;

/// A user acknowledged its messages up to an offset (or a client that does not ack got
/// them): what is at or below it is dropped.
///
/// KEYS: meta, stream. ARGV: the offset, `1` for an `ack` (the user acks from now on) or `0`
/// for a delivery (ignored once the user acks), epoch should the stream be new, the keys'
/// time to live (ms). Returns `{epoch, last}`.
pub(crate) const ACK: &str = r#"
local manual = redis.call('HGET', KEYS[1], 'm') == '1'
if ARGV[2] == '0' and manual then
  return {redis.call('HGET', KEYS[1], 'e') or '', redis.call('HGET', KEYS[1], 'o') or '0'}
end
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[3]
  redis.call('HSET', KEYS[1], 'e', e)
end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'm', '1') end
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local a = tonumber(redis.call('HGET', KEYS[1], 'a') or '0')
local upto = math.min(tonumber(ARGV[1]), o)
if upto > a then
  redis.call('HSET', KEYS[1], 'a', string.format('%d', upto))
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', upto + 1) .. '-0')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {e, string.format('%d', o)}
"#;
