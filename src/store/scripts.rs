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

/// `push` done once per request: if KEYS[4] (the request's record) exists,
/// returns the id it holds and does nothing; else queues ARGV[1] in the inbox
/// KEYS[1] (expiry ARGV[2] ms), adds ARGV[3] to the inbox set KEYS[2],
/// publishes ARGV[4] on KEYS[3], records the id ARGV[5] for ARGV[6] ms and
/// returns it.
pub const PUSH_ONCE: &str = r#"
local done = redis.call('GET', KEYS[4])
if done then return tonumber(done) end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
return tonumber(ARGV[5])
"#;

/// `pop_all` done once per request: if KEYS[3] (the request's record)
/// exists, returns what it holds; else takes every message of the inbox
/// KEYS[1], removes ARGV[1] from the inbox set KEYS[2], records the taken
/// messages (a JSON array of their JSON texts) for ARGV[2] ms and returns it.
pub const POP_ALL_ONCE: &str = r#"
local done = redis.call('GET', KEYS[3])
if done then return done end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
local taken = '[]'
if #items > 0 then taken = cjson.encode(items) end
redis.call('SET', KEYS[3], taken, 'PX', ARGV[2])
return taken
"#;
