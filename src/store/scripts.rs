//! The Lua scripts of the Redis store: each runs atomically in Redis, so two
//! instances never take the same message or race an expiry.

/// Removes the oldest unexpired message from `ARGV[1]` with an id above
/// `ARGV[2]`; atomic, so two waiters never take the same reply.
pub const TAKE_REPLY: &str = r#"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, raw in ipairs(items) do
  local m = cjson.decode(raw)
  if m.sender == ARGV[1] and tonumber(m.id) > tonumber(ARGV[2]) and tonumber(m.expires_at_ms) > tonumber(ARGV[3]) then
    redis.call('LREM', KEYS[1], 1, raw)
    return raw
  end
end
return false
"#;

/// Pops expired messages off the head of an inbox; forgets the inbox when empty.
pub const SWEEP: &str = r#"
local n = 0
while true do
  local raw = redis.call('LINDEX', KEYS[1], 0)
  if not raw then break end
  local m = cjson.decode(raw)
  if tonumber(m.expires_at_ms) > tonumber(ARGV[1]) then break end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return n
"#;

/// Forgets every client whose last activity (`seen`, KEYS[2]) is before
/// ARGV[1], unless it is one of ARGV[3..] (live on the calling instance) or
/// has a live mark (`ARGV[2]..id`) from another instance: drops its `seen`
/// entry and its check-in (KEYS[1]). Returns how many check-ins went.
pub const EXPIRE_CHECKINS: &str = r#"
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local seen = redis.call('HGETALL', KEYS[2])
local n = 0
for i = 1, #seen, 2 do
  local id = seen[i]
  if tonumber(seen[i + 1]) < tonumber(ARGV[1]) and not keep[id]
     and redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('HDEL', KEYS[2], id)
    n = n + redis.call('HDEL', KEYS[1], id)
  end
end
return n
"#;
