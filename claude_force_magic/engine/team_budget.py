"""The team's spend in Redis: reservations and charges made atomically by Lua scripts.

:class:`RedisBudget` is the Redis half of a team budget (the switch and the fallback to the
kernel's own budget live in :mod:`.team`). Every member reserves a call's worst case
(:meth:`RedisBudget.reserve`) in one script that checks ``spent + reserved + estimate <= limit``
and records the reservation, so N processes together never pass the limit by more than what
they had in flight: with worst-case reservations they never pass it at all.
:meth:`RedisBudget.settle` replaces a reservation by the real cost; it is idempotent per
reservation id (a ``done`` marker), so a settle replayed after a lost reply or an outage is
never charged twice.

Keys (all under ``<namespace>:budget:``, see :class:`~claude_force_magic.redis_link.RedisKeys`):

- ``res`` (hash id -> USD) and ``res:exp`` (sorted set id -> expiry, the server's time): the
  reservations in flight. A reservation a crashed process never settled expires
  ``reservation_ttl_seconds`` after it was made (default 15 minutes, longer than any call's
  deadline): every reserve first drops the expired ones, so a crash holds money for at most
  that long.
- ``spent:total``, ``spent:day:<UTC day number>``, ``spent:session:<session id>``: USD charged,
  added to all three on every charge, so the window can change at any time. The team's
  ``day`` is the UTC day of the Redis server's clock (members in different time zones share
  one day); ``session`` counts this kernel's charges only.
- ``done:<id>``: a settled reservation (kept a day), so a replay is a no-op.

Amounts are floats (``INCRBYFLOAT``); the reservations in flight are summed from the hash at
every reserve, so they never drift.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any

from .account import SESSION_ID, check_window

if TYPE_CHECKING:
    import redis

__all__ = ["DEFAULT_RESERVATION_TTL", "RedisBudget", "ReserveOutcome"]

#: Seconds a reservation that is never settled holds money (a crashed process's).
DEFAULT_RESERVATION_TTL = 900.0

# Shared by every script: the server's time in seconds, and the keys of the windows.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local p = ARGV[1]
local function window_key(window, session)
  if window == 'day' then return p .. 'spent:day:' .. math.floor(now / 86400) end
  if window == 'session' then return p .. 'spent:session:' .. session end
  return p .. 'spent:total'
end
local function reserved_sum()
  local expired = redis.call('ZRANGEBYSCORE', p .. 'res:exp', '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HDEL', p .. 'res', id)
    redis.call('ZREM', p .. 'res:exp', id)
  end
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', p .. 'res')) do sum = sum + tonumber(v) end
  return sum
end
"""

# ARGV: prefix, window, session, id, estimate, limit ('' = none), ttl seconds
_RESERVE = (
    _PRELUDE
    + """
local spent = tonumber(redis.call('GET', window_key(ARGV[2], ARGV[3])) or '0')
local reserved = reserved_sum()
local estimate = tonumber(ARGV[5])
if ARGV[6] ~= '' and spent + reserved + estimate > tonumber(ARGV[6]) then
  return {0, tostring(spent), tostring(reserved)}
end
redis.call('HSET', p .. 'res', ARGV[4], ARGV[5])
redis.call('ZADD', p .. 'res:exp', now + tonumber(ARGV[7]), ARGV[4])
return {1, tostring(spent), tostring(reserved + estimate)}
"""
)

# ARGV: prefix, window, session, id, actual USD
_SETTLE = (
    _PRELUDE
    + """
local done = p .. 'done:' .. ARGV[4]
local fresh = 0
if redis.call('EXISTS', done) == 0 then
  fresh = 1
  redis.call('HDEL', p .. 'res', ARGV[4])
  redis.call('ZREM', p .. 'res:exp', ARGV[4])
  local usd = tonumber(ARGV[5])
  if usd > 0 then
    redis.call('INCRBYFLOAT', p .. 'spent:total', ARGV[5])
    local day = window_key('day', ARGV[3])
    redis.call('INCRBYFLOAT', day, ARGV[5])
    redis.call('EXPIRE', day, 3 * 86400)
    local session = window_key('session', ARGV[3])
    redis.call('INCRBYFLOAT', session, ARGV[5])
    redis.call('EXPIRE', session, 30 * 86400)
  end
  redis.call('SET', done, '1', 'EX', 86400)
end
return {fresh, tostring(tonumber(redis.call('GET', window_key(ARGV[2], ARGV[3])) or '0'))}
"""
)

# ARGV: prefix, window, session
_FIGURES = (
    _PRELUDE
    + """
local spent = tonumber(redis.call('GET', window_key(ARGV[2], ARGV[3])) or '0')
return {tostring(spent), tostring(reserved_sum()), redis.call('HLEN', p .. 'res')}
"""
)

# ARGV: prefix, window, session: forget the spend of the current window's keys
_RESET = (
    _PRELUDE
    + """
redis.call('DEL', p .. 'spent:total', window_key('day', ARGV[3]), window_key('session', ARGV[3]))
return 1
"""
)


class ReserveOutcome:
    """What one reserve did: ``granted``, and the team's ``spent`` and ``reserved`` USD seen
    by the script (after the reservation when granted)."""

    __slots__ = ("granted", "reserved", "spent")

    def __init__(self, granted: bool, spent: float, reserved: float) -> None:
        self.granted = granted
        self.spent = spent
        self.reserved = reserved


def new_reservation_id() -> str:
    """A reservation id unique across processes and machines."""
    return f"{SESSION_ID}-{secrets.token_hex(8)}"


class RedisBudget:
    """The team's spend and reservations in one Redis, in keys starting with ``prefix``
    (``<namespace>:budget:``).

    ``client`` is a ``redis.Redis``; every method makes one round trip and raises
    ``redis`` exceptions as they come (:mod:`.team` turns an unreachable server into the local
    fallback). Thread-safe (redis-py's connection pool is).
    """

    __slots__ = ("_client", "_figures", "_prefix", "_reserve", "_reset", "_settle", "ttl")

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        reservation_ttl_seconds: float = DEFAULT_RESERVATION_TTL,
    ) -> None:
        from ..validation import check_number

        self._client = client
        self._prefix = prefix
        self.ttl = check_number("reservation_ttl_seconds", reservation_ttl_seconds)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._figures = client.register_script(_FIGURES)
        self._reset = client.register_script(_RESET)

    @property
    def prefix(self) -> str:
        """The key prefix (``<namespace>:budget:``)."""
        return self._prefix

    def reserve(
        self, reservation_id: str, estimate: float, limit: float | None, *, window: str
    ) -> ReserveOutcome:
        """Hold ``estimate`` USD under ``reservation_id`` if the team's spend in ``window``
        plus what is reserved plus ``estimate`` stays within ``limit`` (None: no limit)."""
        if not (math.isfinite(estimate) and estimate >= 0):
            raise ValueError(f"a reservation must be a finite amount >= 0, got {estimate!r}")
        args: list[Any] = [
            self._prefix,
            check_window(window),
            SESSION_ID,
            reservation_id,
            repr(float(estimate)),
            "" if limit is None else repr(float(limit)),
            repr(self.ttl),
        ]
        granted, spent, reserved = self._reserve(args=args)
        return ReserveOutcome(bool(granted), float(spent), float(reserved))

    def settle(self, reservation_id: str, actual: float | None, *, window: str) -> float:
        """Replace reservation ``reservation_id`` by ``actual`` USD (None or 0: release it).

        Idempotent: a second settle of the same id changes nothing. Returns the team's spend
        in ``window`` afterwards."""
        usd = actual if actual is not None and math.isfinite(actual) and actual > 0 else 0.0
        args = [self._prefix, check_window(window), SESSION_ID, reservation_id, repr(float(usd))]
        _fresh, spent = self._settle(args=args)
        return float(spent)

    def figures(self, *, window: str) -> tuple[float, float, int]:
        """The team's ``(spent, reserved, reservations in flight)`` in ``window`` (expired
        reservations dropped first)."""
        spent, reserved, count = self._figures(
            args=[self._prefix, check_window(window), SESSION_ID]
        )
        return float(spent), float(reserved), int(count)

    def reset(self, *, window: str) -> None:
        """Start the team's spend over (total, today and this session); reservations in flight
        stay."""
        self._reset(args=[self._prefix, check_window(window), SESSION_ID])
