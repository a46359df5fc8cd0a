"""The Lua scripts of :class:`~claude_force_magic.cache.redis.RedisResponseCache`.

Each operation that changes the namespace is one script, so the entries, their sizes, the
least-recently-used order and the shared counters always move together. Scripts are sent by
SHA-1 (EVALSHA) and loaded again when a restarted server has lost them.
"""

from __future__ import annotations

import hashlib

__all__ = ["MISMATCH", "SHAS", "SOURCES"]

MISMATCH = "CFM_SECRET_MISMATCH"

# KEYS: 1 the entry (when one is meant). ARGV: 1 the namespace's "{namespace}:cache:" prefix,
# 2 the secret's fingerprint, then the script's own arguments. The bookkeeping keys are named
# from the prefix here rather than passed (a hit sends 5 arguments, not 13); culling names
# other entries' keys anyway, so a namespace lives on one server (not a Redis Cluster).
_PRELUDE = (
    """
local P = ARGV[1]
local LRU, EXP, META = P .. 'lru', P .. 'exp', P .. 'meta'
local HITS, STATS, TICK = P .. 'hits', P .. 'stats', P .. 'tick'
local PREFIX = P .. 'e:'
local known = redis.call('GET', P .. 'fp')
if not known then
  redis.call('SET', P .. 'fp', ARGV[2])
elseif known ~= ARGV[2] then
  return redis.error_reply('"""
    + MISMATCH
    + """')
end

local function size_of(meta)
  return tonumber(string.match(meta, '^%d+:(%d+):'))
end

local function agent_of(meta)
  return string.match(meta, '^%d+:%d+:(.*)$')
end

local function drop(k, meta)
  redis.call('DEL', PREFIX .. k)
  redis.call('ZREM', LRU, k)
  redis.call('ZREM', EXP, k)
  redis.call('HDEL', META, k)
  redis.call('HDEL', HITS, k)
  redis.call('HINCRBY', STATS, 'bytes', -size_of(meta))
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Account for entries whose Redis TTL has passed (Redis deleted the value, or will).
local function reap(limit)
  local due = redis.call('ZRANGEBYSCORE', EXP, '-inf', now_ms(), 'LIMIT', 0, limit)
  for _, k in ipairs(due) do
    local meta = redis.call('HGET', META, k)
    if meta then
      drop(k, meta)
    else
      redis.call('ZREM', EXP, k)
      redis.call('ZREM', LRU, k)
    end
  end
  if #due > 0 then redis.call('HINCRBY', STATS, 'expirations', #due) end
  return #due
end
"""
)

# ARGV 3: the key. Returns false (a miss) or the envelope. The hit is counted here; a value
# that then fails its check is turned into a miss by _DISCARD.
_GET = (
    _PRELUDE
    + """
local k = ARGV[3]
local v = redis.call('GET', KEYS[1])
local meta = redis.call('HGET', META, k)
if not v then
  if meta then
    drop(k, meta)
    redis.call('HINCRBY', STATS, 'expirations', 1)
  end
  redis.call('HINCRBY', STATS, 'misses', 1)
  return false
end
redis.call('HINCRBY', STATS, 'hits', 1)
if meta then
  redis.call('ZADD', LRU, 'XX', redis.call('INCR', TICK), k)
  redis.call('HINCRBY', HITS, k, 1)
end
return v
"""
)

# ARGV 3: key, 4: SHA-1 of the value read, 5: counter, 6: "1" if the lookup was counted as a
# hit (it becomes a miss). Deletes the entry only if it still holds the value read (another
# kernel may have stored a good one meanwhile); a value without bookkeeping is deleted too.
_DISCARD = (
    _PRELUDE
    + """
local k, seen, counter = ARGV[3], ARGV[4], ARGV[5]
if ARGV[6] == '1' then
  redis.call('HINCRBY', STATS, 'hits', -1)
  redis.call('HINCRBY', STATS, 'misses', 1)
end
local current = redis.call('GET', KEYS[1])
if (not current) or redis.sha1hex(current) ~= seen then return 0 end
local meta = redis.call('HGET', META, k)
if meta then drop(k, meta) else redis.call('DEL', KEYS[1]) end
redis.call('HINCRBY', STATS, counter, 1)
return 1
"""
)

# ARGV 3: key, 4: envelope, 5: ttl ms, 6: max total bytes, 7: agent. Returns evictions.
_SET = (
    _PRELUDE
    + """
local k, value, ttl, limit, agent = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
reap(100)
local old = redis.call('HGET', META, k)
if old then drop(k, old) end
local size = string.len(value)
local tick = redis.call('INCR', TICK)
redis.call('SET', KEYS[1], value, 'PX', ttl)
redis.call('ZADD', LRU, tick, k)
redis.call('ZADD', EXP, now_ms() + ttl, k)
redis.call('HSET', META, k, tick .. ':' .. size .. ':' .. agent)
local total = redis.call('HINCRBY', STATS, 'bytes', size)
redis.call('HINCRBY', STATS, 'sets', 1)
local evicted = 0
while total > limit do
  local oldest = redis.call('ZRANGE', LRU, 0, 0)[1]
  if (not oldest) or oldest == k then break end
  local meta = redis.call('HGET', META, oldest)
  if meta then
    total = total - size_of(meta)
    drop(oldest, meta)
    evicted = evicted + 1
  else
    redis.call('ZREM', LRU, oldest)
  end
end
if evicted > 0 then redis.call('HINCRBY', STATS, 'evictions', evicted) end
return evicted
"""
)

# ARGV 3: counter, 4: agent filter ('' for any, else '=' .. agent), 5...: keys. Returns count.
_REMOVE = (
    _PRELUDE
    + """
local counter, only = ARGV[3], ARGV[4]
local removed = 0
for i = 5, #ARGV do
  local k = ARGV[i]
  local meta = redis.call('HGET', META, k)
  if meta and (only == '' or '=' .. agent_of(meta) == only) then
    drop(k, meta)
    removed = removed + 1
  end
end
if removed > 0 then redis.call('HINCRBY', STATS, counter, removed) end
return removed
"""
)

# ARGV 3: the most expired entries to account for. Returns {reaped, entries, stats...}.
_STATS = (
    _PRELUDE
    + """
local reaped = reap(tonumber(ARGV[3]))
return {reaped, redis.call('HLEN', META), redis.call('HGETALL', STATS)}
"""
)


_SCRIPTS = (
    ("get", _GET),
    ("discard", _DISCARD),
    ("set", _SET),
    ("remove", _REMOVE),
    ("stats", _STATS),
)
#: Script source and SHA-1 by name.
SOURCES = dict(_SCRIPTS)
SHAS = {
    name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest() for name, src in _SCRIPTS
}
