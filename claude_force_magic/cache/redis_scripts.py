"""The Lua scripts of :class:`~claude_force_magic.cache.redis.RedisResponseCache`.

Each operation that adds or removes entries is one script, so the entries, their sizes, the
least-recently-used order and the shared counters always move together. A hit is the one
exception, for speed: four native commands that each stand alone (read the envelope, touch
an existing entry's LRU score, count the hit and the entry's hit), pipelined by the cache;
a miss then runs :data:`SOURCES` ``["miss"]``. Scripts are sent by SHA-1 (EVALSHA) and
loaded again when a restarted server has lost them.
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
local HITS, STATS = P .. 'hits', P .. 'stats'
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

# A hit is not a script: RedisResponseCache.get reads the envelope, touches the LRU order
# (ZADD XX) and counts the lookup as a hit, in one pipelined round trip of native commands.
# When that read found nothing, this script turns the counted hit into a miss.
# ARGV 3: the key. Accounts for an entry whose Redis TTL passed (its bookkeeping is left),
# and removes the per-entry hit count the lookup created for a key that has no entry.
_MISS = (
    _PRELUDE
    + """
local k = ARGV[3]
redis.call('HINCRBY', STATS, 'hits', -1)
redis.call('HINCRBY', STATS, 'misses', 1)
local meta = redis.call('HGET', META, k)
if not meta then
  redis.call('HDEL', HITS, k)
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  drop(k, meta)
  redis.call('HINCRBY', STATS, 'expirations', 1)
end
return 0
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

# ARGV 3: key, 4: envelope, 5: ttl ms, 6: max total bytes, 7: agent, 8: the LRU score (the
# writer's clock in integer microseconds: a hit's ZADD uses the same clock, so no script is
# needed to read a shared tick). Returns evictions. Entries whose Redis TTL passed are
# accounted for (reaped) only when the namespace is over its bound, before any live entry.
# Culling skips the entry just written even when a member whose clock is ahead left younger
# scores.
_SET = (
    _PRELUDE
    + """
local k, value, ttl, limit, agent = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local tick = ARGV[8]
local old = redis.call('HGET', META, k)
if old then drop(k, old) else redis.call('HDEL', HITS, k) end
local size = string.len(value)
redis.call('SET', KEYS[1], value, 'PX', ttl)
redis.call('ZADD', LRU, tick, k)
redis.call('ZADD', EXP, now_ms() + ttl, k)
redis.call('HSET', META, k, tick .. ':' .. size .. ':' .. agent)
local total = redis.call('HINCRBY', STATS, 'bytes', size)
redis.call('HINCRBY', STATS, 'sets', 1)
local evicted = 0
if total > limit and reap(100) > 0 then  -- answers whose TTL passed go before live ones
  total = tonumber(redis.call('HGET', STATS, 'bytes'))
end
while total > limit do
  local two = redis.call('ZRANGE', LRU, 0, 1)
  local oldest = two[1]
  if oldest == k then oldest = two[2] end
  if not oldest then break end
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
    ("miss", _MISS),
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
