"""One rate limit for a team: requests, input tokens and output tokens per minute in Redis.

:class:`RedisRateLimiter` is :class:`~.limits.RateLimiter` with its state in one Redis hash,
shared by every kernel of a team, and every update made by a Lua script:

- GCRA on three buckets, as the local limiter: each bucket keeps the instant at which it would
  be full again (``tat``); a request books *all* its buckets at once for the earliest instant
  every bucket can pay, and sleeps until then. Bookings are made in the order they reach Redis
  (one script at a time) and a later booking never gets an earlier slot, so the limit is
  FIFO-fair across kernels: one kernel sending a flood cannot starve the others, it only
  queues behind them.
- Time is the Redis server's ``TIME``: the script returns how long to wait, not when, so the
  clocks of the members' machines never matter.
- What any member learns is shared: a ``retry-after`` pauses every member
  (:meth:`RedisRateLimiter.pause`), and the ``anthropic-ratelimit-*`` headers of any answer
  shrink the team's buckets to the server's limit (never above the configured one) and take
  out what the server counted that the team did not book (another client of the same
  organisation), as :meth:`~.limits.RateLimiter.observe` does for one kernel.

Each member passes its configured per-minute limits with every call (give every member the
same ones); a bucket is as large as the smallest of those and of the server's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DeadlineExceededError
from .limits import Ticket, booking_amounts, check_output_admissible

if TYPE_CHECKING:
    import redis

    from .client import RateLimitInfo

__all__ = ["RedisRateLimiter", "TeamTicket"]

_NAMES = ("requests", "input_tokens", "output_tokens")
_T = TypeVar("_T")


def _direct(fn: Callable[[], _T]) -> _T:
    return fn()


# Shared: the server's time, and the effective size and rate of bucket i (1-3) given the
# member's configured size in ARGV[i + 1] ('' = bucket off).
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = KEYS[1]
local function cap_of(i)
  local configured = ARGV[i + 1]
  if configured == '' then return nil end
  configured = tonumber(configured)
  local server = tonumber(redis.call('HGET', h, 'cap' .. i) or '0')
  if server > 0 and server < configured then return server end
  return configured
end
local function tat_of(i) return tonumber(redis.call('HGET', h, 'tat' .. i) or '0') end
"""

# ARGV: namespace tag, cap1..3, amount1..3 -> delay, used1..3, seq1..3, booked1..3, out_limit
_RESERVE = (
    _PRELUDE
    + """
local at = math.max(now, tonumber(redis.call('HGET', h, 'paused') or '0'))
local caps = {}
for i = 1, 3 do
  local cap = cap_of(i)
  caps[i] = cap
  if cap then
    local amount = math.min(tonumber(ARGV[i + 4]), cap)
    at = math.max(at, tat_of(i) - (cap - amount) / (cap / 60))
  end
end
local out = {tostring(at - now)}
for i = 1, 3 do
  local cap = caps[i]
  if cap then
    local rate = cap / 60
    local tat = math.max(tat_of(i), at) + math.min(tonumber(ARGV[i + 4]), cap) / rate
    redis.call('HSET', h, 'tat' .. i, tostring(tat))
    local seq = redis.call('HINCRBY', h, 'seq' .. i, 1)
    local booked = redis.call('HINCRBYFLOAT', h, 'booked' .. i, ARGV[i + 4])
    out[#out + 1] = tostring(math.max(0, tat - at) * rate)
    out[#out + 1] = tostring(seq)
    out[#out + 1] = booked
  else
    out[#out + 1] = '0'
    out[#out + 1] = '0'
    out[#out + 1] = '0'
  end
end
redis.call('EXPIRE', h, 86400)
out[#out + 1] = redis.call('HGET', h, 'outlimit') or ''
return out
"""
)

# ARGV: namespace tag, cap1..3, amount1..3: give back booked amounts
_GIVE_BACK = (
    _PRELUDE
    + """
for i = 1, 3 do
  local cap = cap_of(i)
  local amount = tonumber(ARGV[i + 4])
  if cap and amount > 0 then
    redis.call('HSET', h, 'tat' .. i, tostring(tat_of(i) - math.min(amount, cap) / (cap / 60)))
  end
end
return 1
"""
)

# ARGV: namespace tag, seconds
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[2])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
if until_ > paused then redis.call('HSET', KEYS[1], 'paused', tostring(until_)) end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""

# ARGV: tag, cap1..3, limit1..3, remaining1..3, used1..3, seq1..3, booked1..3, out_limit
# ('' = unknown). Follows the server's limit (never above the configured one), then takes
# out what the server counted beyond what the team booked (see RateLimiter.observe).
_OBSERVE = (
    _PRELUDE
    + """
if ARGV[20] ~= '' then redis.call('HSET', h, 'outlimit', ARGV[20]) end
for i = 1, 3 do
  local cap = cap_of(i)
  if cap then
    local adopted = false
    local limit = ARGV[i + 4]
    if limit ~= '' then
      local configured = tonumber(ARGV[i + 1])
      local new = math.min(tonumber(limit), configured)
      if new > 0 and new ~= cap then
        local owed = math.max(0, tat_of(i) - now) * (cap / 60)
        redis.call('HSET', h, 'cap' .. i, tostring(new))
        cap = new
        redis.call('HSET', h, 'tat' .. i, tostring(now + owed / (cap / 60)))
        adopted = true
      end
    end
    local left = ARGV[i + 7]
    if left ~= '' and ARGV[i + 16] ~= '' then
      left = tonumber(left)
      local rate = cap / 60
      local tat = tat_of(i)
      if adopted then
        local booked = tonumber(redis.call('HGET', h, 'booked' .. i) or '0')
        local level = math.max(left - (booked - tonumber(ARGV[i + 16])), -cap)
        if cap - math.max(0, tat - now) * rate > level then
          redis.call('HSET', h, 'tat' .. i, tostring(now + (cap - level) / rate))
        end
      else
        local theirs = (limit ~= '' and tonumber(limit) or cap) - left
        local excess = theirs - tonumber(ARGV[i + 10]) - 1
        local corrected = tonumber(redis.call('HGET', h, 'corrected' .. i) or '-1')
        if excess > 0 and tonumber(ARGV[i + 13]) > corrected then
          redis.call('HSET', h, 'tat' .. i, tostring(math.max(tat, now) + excess / rate))
          redis.call('HSET', h, 'corrected' .. i, redis.call('HGET', h, 'seq' .. i) or '0')
        end
      end
    end
  end
end
return 1
"""
)

# ARGV: tag, cap1..3 -> per bucket: cap, level ; then paused seconds left
_SNAPSHOT = (
    _PRELUDE
    + """
local out = {}
for i = 1, 3 do
  local cap = cap_of(i)
  if cap then
    out[#out + 1] = tostring(cap)
    out[#out + 1] = tostring(cap - math.max(0, tat_of(i) - now) * (cap / 60))
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
out[#out + 1] = tostring(math.max(0, tonumber(redis.call('HGET', h, 'paused') or '0') - now))
return out
"""
)


def _arg(value: float | None) -> str:
    return "" if value is None else repr(float(value))


@dataclass
class TeamTicket(Ticket):
    """A booking in the team's limiter (``at`` is on this process's monotonic clock)."""

    team: bool = True


class RedisRateLimiter:
    """Requests, input tokens and output tokens per minute, shared through Redis.

    Satisfies :class:`~.gate.AttemptLimiter`. The state is the hash ``key``
    (``<namespace>:limits:state``). ``client`` is a ``redis.Redis``; its calls run
    on a worker thread so a slow Redis never stalls the event loop. Redis errors propagate
    (:mod:`.team` falls back to the local limiter); ``run`` wraps every Redis operation
    (:meth:`.team.TeamLink.call` does). ``margin_seconds`` is added to a booking that had to
    wait, as in the local limiter; ``clock`` is the monotonic clock deadlines use.
    """

    __slots__ = (
        "_caps",
        "_client",
        "_clock",
        "_give_back",
        "_key",
        "_observe",
        "_pause",
        "_reserve",
        "_run",
        "_server_output_limit",
        "_snapshot",
        "margin_seconds",
    )

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        requests_per_minute: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        *,
        margin_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[Callable[[], Any]], Any] = _direct,
    ) -> None:
        from ..validation import check_number

        self._caps = tuple(
            None if v is None else check_number("a per-minute limit", v)
            for v in (requests_per_minute, input_tokens_per_minute, output_tokens_per_minute)
        )
        self._client = client
        self._key = key
        self._clock = clock
        self._run = run
        self.margin_seconds = max(0.0, float(margin_seconds))
        self._server_output_limit: float | None = None
        self._reserve = client.register_script(_RESERVE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._pause = client.register_script(_PAUSE)
        self._observe = client.register_script(_OBSERVE)
        self._snapshot = client.register_script(_SNAPSHOT)

    @property
    def enabled(self) -> bool:
        """True when at least one bucket is configured (a pause works either way)."""
        return any(c is not None for c in self._caps)

    def _cap_args(self) -> list[str]:
        return [_arg(c) for c in self._caps]

    def check_admissible(self, output_tokens: int) -> None:
        """Raise :class:`ConfigurationError` when ``output_tokens`` is more than the output
        tokens per minute the API reported to any member (see
        :meth:`~.limits.RateLimiter.check_admissible`)."""
        check_output_admissible(output_tokens, self._server_output_limit)

    def reserve(self, input_tokens: float = 0, output_tokens: float = 0) -> TeamTicket:
        """Book one request in the team's buckets now (one round trip); never waits."""
        amounts = booking_amounts(input_tokens, output_tokens)
        args = ["", *self._cap_args(), *(repr(a) for a in amounts)]
        reply = self._run(lambda: self._reserve(keys=[self._key], args=args))
        now = self._clock()
        delay = max(0.0, float(reply[0]))
        values = [float(v) for v in reply[1:10]]
        if reply[10] not in (b"", ""):
            self._server_output_limit = float(reply[10])
        used = (values[0], values[3], values[6])
        seqs = (int(values[1]), int(values[4]), int(values[7]))
        booked = (values[2], values[5], values[8])
        at = now + delay + (self.margin_seconds if delay > 0 else 0.0)
        return TeamTicket(at, amounts[1], amounts[2], used, seqs, booked)

    def _give(self, amounts: tuple[float, float, float]) -> None:
        args = ["", *self._cap_args(), *map(repr, amounts)]
        self._run(lambda: self._give_back(keys=[self._key], args=args))

    def cancel(self, ticket: Ticket) -> None:
        """Give back a booking that was never sent."""
        if ticket.settled:
            return
        ticket.settled = True
        self._give((1.0, ticket.input_tokens, ticket.output_tokens))

    def settle(self, ticket: Ticket, *, output_tokens: int | None) -> None:
        """After the answer: give back the output tokens booked but not used."""
        if ticket.settled:
            return
        ticket.settled = True
        if output_tokens is None or self._caps[2] is None:
            return
        unused = ticket.output_tokens - max(0, output_tokens)
        if unused > 0:
            self._give((0.0, 0.0, unused))

    async def acquire(
        self, input_tokens: float = 0, output_tokens: float = 0, *, deadline: float | None = None
    ) -> TeamTicket:
        """Book in the team's buckets and wait until the booking's instant.

        Raises :class:`DeadlineExceededError` (the booking given back) when that instant is
        after ``deadline`` (a ``clock`` time). Cancelling the wait gives the booking back."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.reserve, input_tokens, output_tokens)
        try:
            ticket = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._cancel_when_booked)
            raise
        now = self._clock()
        if deadline is not None and ticket.at > deadline:
            with contextlib.suppress(Exception):  # Redis went away: the booking refills
                await loop.run_in_executor(None, self.cancel, ticket)
            raise DeadlineExceededError(
                f"The team's shared rate limiter's next slot for this call is "
                f"{ticket.at - now:.1f}s away, after the overall deadline "
                f"({max(0.0, deadline - now):.1f}s left); nothing was sent. Raise "
                "deadline_seconds, or send fewer calls at once across the team."
            )
        if ticket.at > now:
            try:
                await asyncio.sleep(ticket.at - now)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(loop.run_in_executor(None, self.cancel, ticket))
                raise
        return ticket

    def _cancel_when_booked(self, future: asyncio.Future[TeamTicket]) -> None:
        if not future.cancelled() and future.exception() is None:
            with contextlib.suppress(Exception):  # Redis went away: the booking refills
                self.cancel(future.result())

    def pause(self, seconds: float) -> None:
        """Hold every member's new bookings for ``seconds`` (the server's ``retry-after``)."""
        if seconds > 0 and math.isfinite(seconds):
            args = ["", repr(float(seconds))]
            self._run(lambda: self._pause(keys=[self._key], args=args))

    def observe(self, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        """Share what the server's headers say (see the module docstring)."""
        if info.retry_after is not None:
            self.pause(info.retry_after)
        if info.output_tokens_limit is not None and info.output_tokens_limit > 0:
            self._server_output_limit = float(info.output_tokens_limit)
        limits = (info.requests_limit, info.input_tokens_limit, info.output_tokens_limit)
        remaining = (
            info.requests_remaining,
            info.input_tokens_remaining,
            info.output_tokens_remaining,
        )
        if all(v is None for v in (*limits, *remaining)):
            return
        known = ticket is not None
        args: list[Any] = ["", *self._cap_args(), *map(_arg, limits), *map(_arg, remaining)]
        args += [_arg(ticket.used[i]) if known else "" for i in range(3)]  # type: ignore[union-attr]
        args += [_arg(ticket.seqs[i]) if known else "" for i in range(3)]  # type: ignore[union-attr]
        args += [_arg(ticket.booked[i]) if known else "" for i in range(3)]  # type: ignore[union-attr]
        args.append(_arg(info.output_tokens_limit))
        self._run(lambda: self._observe(keys=[self._key], args=args))

    def snapshot(self) -> dict[str, Any]:
        """Per bucket (``requests``, ``input_tokens``, ``output_tokens``): the team's per-minute
        limit and level now (None for a disabled bucket), and ``paused_s`` left."""
        args = ["", *self._cap_args()]
        reply = self._run(lambda: self._snapshot(keys=[self._key], args=args))
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        out: dict[str, Any] = {}
        for i, name in enumerate(_NAMES):
            cap, level = values[2 * i], values[2 * i + 1]
            out[name] = None if cap == "" else {"per_minute": float(cap), "level": float(level)}
        out["paused_s"] = float(values[6])
        return out
