"""Client-side rate limiting: requests, input tokens and output tokens per minute (SEC-004).

Each limit is a token bucket holding up to one minute's worth (the API's own buckets start
full and refill continuously). A call books *all* its buckets at once, for the earliest instant
every bucket can pay, and then sleeps until that instant. Bookings are made in arrival order and
later bookings never get an earlier slot, so the limiter is FIFO-fair: a large request is never
starved by a stream of small ones.

Why not ``aiolimiter``: its ``AsyncLimiter`` wakes waiters smallest-amount-first (a heap keyed
on the amount), so a big token request can wait forever behind small ones, and it has one bucket
per limiter: acquiring three limiters one after another is neither atomic nor fair, and it
cannot be tightened from the server's headers. The bookkeeping below is GCRA ("theoretical
arrival time") on three buckets, about as small as aiolimiter itself.

Adaptive: :meth:`RateLimiter.pause` (from ``retry-after``) holds every booking until a moment,
and :meth:`RateLimiter.observe` lowers a bucket to what the server's
``anthropic-ratelimit-*-remaining`` headers say is left (never raises it) and follows the
server's ``*-limit`` down, and back up to the configured limit when the server raises it.
Unused output tokens are given back with :meth:`RateLimiter.settle`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigurationError, DeadlineExceededError
from ..validation import check_number
from .client import RateLimitInfo

__all__ = ["Bucket", "RateLimiter", "Ticket"]

_NAMES = ("requests", "input_tokens", "output_tokens")


def booking_amounts(input_tokens: float, output_tokens: float) -> tuple[float, float, float]:
    """What one request books in the (requests, input tokens, output tokens) buckets:
    one request and the token amounts, negative amounts counted as 0."""
    return (1.0, float(max(0, input_tokens)), float(max(0, output_tokens)))


def check_output_admissible(output_tokens: int, limit: float | None) -> None:
    """Raise :class:`ConfigurationError` when ``output_tokens`` (a call's ``max_tokens``) is
    more than ``limit``, the output tokens per minute the API last reported (None: unknown,
    nothing refused). Shared by :class:`RateLimiter` and the team's Redis limiter."""
    if limit is not None and output_tokens > limit:
        raise ConfigurationError(
            f"max_tokens={output_tokens:,} is more than the {limit:,.0f} output tokens per "
            "minute the API allows (anthropic-ratelimit-output-tokens-limit), so the request "
            "could never be admitted; nothing was sent. Lower max_tokens, or ask for a "
            "higher rate limit."
        )


class Bucket:
    """One token bucket: ``per_minute`` capacity, refilled continuously at ``per_minute/60``/s.

    State is the time at which the bucket would be full again (``tat``); booking an amount
    moves it forward. Not thread-safe on its own; :class:`RateLimiter` holds a lock.
    """

    __slots__ = ("booked", "capacity", "configured", "corrected_seq", "rate", "seq", "tat")

    def __init__(self, per_minute: float, *, capacity: float | None = None) -> None:
        per_minute = check_number("a per-minute limit", per_minute, hint="Use None for no limit.")
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute if capacity is None else capacity)
        self.configured = self.capacity  # the caller's own limit: the ceiling for adopt_limit
        self.tat = -math.inf
        self.seq = 0  # bookings so far
        self.booked = 0.0  # amount booked so far
        self.corrected_seq = -1  # bookings up to here already reflect a server correction

    def level(self, now: float) -> float:
        """What is left in the bucket at ``now`` (negative while booked into the future)."""
        return self.capacity - max(0.0, self.tat - now) * self.rate

    def earliest(self, amount: float, now: float) -> float:
        """The first instant at or after ``now`` when ``amount`` fits (clamped to capacity)."""
        amount = min(amount, self.capacity)
        return max(now, self.tat - (self.capacity - amount) / self.rate)

    def book(self, amount: float, at: float) -> None:
        """Take ``amount`` at instant ``at`` (as returned by :meth:`earliest`)."""
        self.tat = max(self.tat, at) + min(amount, self.capacity) / self.rate
        self.seq += 1
        self.booked += amount

    def give_back(self, amount: float) -> None:
        """Return ``amount`` that was booked but not used."""
        self.tat -= min(amount, self.capacity) / self.rate

    def adopt_limit(self, per_minute: float, now: float) -> bool:
        """Follow the server's limit, never above the configured one, keeping what is owed.

        A smaller server limit shrinks the bucket; a later, larger one grows it back (up to the
        configured limit: a raised organisation limit must not leave a long-lived session
        throttled for good). True if the bucket changed size.
        """
        per_minute = min(per_minute, self.configured)
        if not (per_minute > 0 and per_minute != self.capacity):
            return False
        owed = max(0.0, self.tat - now) * self.rate  # tokens taken and not yet refilled: kept
        self.capacity = float(per_minute)
        self.rate = self.capacity / 60.0
        self.tat = now + owed / self.rate
        return True

    def lower_to(self, level: float, now: float) -> None:
        """Make the bucket hold at most ``level`` at ``now`` (never raises it)."""
        level = max(level, -self.capacity)
        if self.level(now) > level:
            self.tat = now + (self.capacity - level) / self.rate

    def correct(self, ours_used: float, theirs_used: float, seq: int, now: float) -> None:
        """The server had ``theirs_used`` of its bucket taken where we had ``ours_used`` right
        after booking ``seq``: take the difference out of the bucket (never adds). One token of
        slack absorbs the server's integer rounding; bookings made before an earlier correction
        are ignored so concurrent answers do not correct the same drift twice."""
        excess = theirs_used - ours_used - 1.0
        if excess > 0 and seq > self.corrected_seq:
            self.tat = max(self.tat, now) + excess / self.rate
            self.corrected_seq = self.seq


@dataclass
class Ticket:
    """A booking: when the call may go, what it took, and how much of each bucket was taken
    (``used``) with its sequence number right after it (compared with the server's view by
    :meth:`RateLimiter.observe`)."""

    at: float
    input_tokens: float
    output_tokens: float
    used: tuple[float, float, float]
    seqs: tuple[int, int, int]
    booked: tuple[float, float, float] = (0.0, 0.0, 0.0)
    settled: bool = False


class RateLimiter:
    """Requests, input-token and output-token buckets booked together, FIFO in arrival order.

    ``requests_per_minute`` / ``input_tokens_per_minute`` / ``output_tokens_per_minute``: None
    disables that bucket. ``clock`` is a monotonic clock in seconds (tests pass a fake one);
    ``sleep`` the coroutine used to wait. A call that has to wait goes ``margin_seconds``
    after its computed instant, to absorb network jitter against the server's bucket. Raises
    :class:`ConfigurationError` for a non-positive limit. Thread-safe (a plain lock guards the
    bookkeeping, never held across an ``await``) and bound to no event loop, so it can be reused
    across loops.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_lock",
        "_paused_until",
        "_server_output_limit",
        "_sleep",
        "margin_seconds",
    )

    def __init__(
        self,
        requests_per_minute: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        margin_seconds: float = 0.1,
    ) -> None:
        self.margin_seconds = max(0.0, float(margin_seconds))
        self._buckets: tuple[Bucket | None, Bucket | None, Bucket | None] = (
            None if requests_per_minute is None else Bucket(requests_per_minute),
            None if input_tokens_per_minute is None else Bucket(input_tokens_per_minute),
            None if output_tokens_per_minute is None else Bucket(output_tokens_per_minute),
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        self._server_output_limit: float | None = None

    @property
    def enabled(self) -> bool:
        """True when at least one bucket is configured (a pause works either way)."""
        return any(b is not None for b in self._buckets)

    def snapshot(self) -> dict[str, dict[str, float] | None]:
        """Per bucket (``requests``, ``input_tokens``, ``output_tokens``): its per-minute limit
        and what it holds now; None for a disabled bucket. For display and tests."""
        with self._lock:
            now = self._clock()
            return {
                name: None if b is None else {"per_minute": b.capacity, "level": b.level(now)}
                for name, b in zip(_NAMES, self._buckets, strict=True)
            }

    @property
    def paused_until(self) -> float:
        """Clock time before which nothing is booked (from ``retry-after``)."""
        return self._paused_until

    def check_admissible(self, output_tokens: int) -> None:
        """Raise :class:`ConfigurationError` when ``output_tokens`` (a call's ``max_tokens``)
        is more than the server's last reported output-tokens-per-minute limit.

        The API books ``max_tokens`` against that limit when a request arrives, so such a call
        is answered 429 every time, however long it waits: refusing it before sending says why
        instead of retrying until the deadline. Nothing is known (and nothing refused) before
        the first response with ``anthropic-ratelimit-output-tokens-limit``.
        """
        check_output_admissible(output_tokens, self._server_output_limit)

    def reserve(self, input_tokens: float = 0, output_tokens: float = 0) -> Ticket:
        """Book one request now; returns the ticket whose ``at`` is when it may be sent.

        Never blocks. An amount above a bucket's capacity waits for a full bucket.
        """
        amounts = booking_amounts(input_tokens, output_tokens)
        with self._lock:
            now = self._clock()
            at = max(now, self._paused_until)
            for bucket, amount in zip(self._buckets, amounts, strict=True):
                if bucket is not None:
                    at = max(at, bucket.earliest(amount, now))
            for bucket, amount in zip(self._buckets, amounts, strict=True):
                if bucket is not None:
                    bucket.book(amount, at)
            used = [b.capacity - b.level(at) if b is not None else 0.0 for b in self._buckets]
            seqs = [b.seq if b is not None else 0 for b in self._buckets]
            marks = [b.booked if b is not None else 0.0 for b in self._buckets]
        return Ticket(
            at + (self.margin_seconds if at > now else 0.0),
            amounts[1],
            amounts[2],
            (used[0], used[1], used[2]),
            (seqs[0], seqs[1], seqs[2]),
            (marks[0], marks[1], marks[2]),
        )

    def cancel(self, ticket: Ticket) -> None:
        """Give back a booking that was never sent (the caller was cancelled or gave up)."""
        if ticket.settled:
            return
        ticket.settled = True
        amounts = (1.0, ticket.input_tokens, ticket.output_tokens)
        with self._lock:
            for bucket, amount in zip(self._buckets, amounts, strict=True):
                if bucket is not None:
                    bucket.give_back(amount)

    def settle(self, ticket: Ticket, *, output_tokens: int | None) -> None:
        """After the answer: give back the output tokens booked (``max_tokens``) but not used."""
        if ticket.settled:
            return
        ticket.settled = True
        bucket = self._buckets[2]
        if bucket is None or output_tokens is None:
            return
        unused = ticket.output_tokens - max(0, output_tokens)
        if unused > 0:
            with self._lock:
                bucket.give_back(unused)

    async def acquire(
        self,
        input_tokens: float = 0,
        output_tokens: float = 0,
        *,
        deadline: float | None = None,
    ) -> Ticket:
        """Book and wait until the booking's instant. Cancelling the wait gives the booking back.

        ``deadline`` (a ``clock`` time): when the booking's instant falls after it, the booking
        is given back at once and :class:`DeadlineExceededError` raised, instead of sleeping
        until the deadline only to fail then. ``asyncio.CancelledError`` propagates.
        """
        ticket = self.reserve(input_tokens, output_tokens)
        now = self._clock()
        delay = ticket.at - now
        if deadline is not None and ticket.at > deadline:
            self.cancel(ticket)
            raise DeadlineExceededError(
                f"The client-side rate limiter's next slot for this call is {delay:.1f}s away, "
                f"after the overall deadline ({max(0.0, deadline - now):.1f}s left); nothing was "
                "sent. Raise deadline_seconds, raise calls_per_minute or the token limits (if "
                "your organisation's limits allow), or send fewer calls at once."
            )
        if delay > 0:
            try:
                await self._wait(delay)
            except BaseException:
                self.cancel(ticket)
                raise
        return ticket

    async def _wait(self, delay: float) -> None:
        if self._sleep is not None:
            await self._sleep(delay)  # type: ignore[misc]
        else:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Hold every new booking for ``seconds`` from now (the server's ``retry-after``)."""
        if not (seconds > 0 and math.isfinite(seconds)):
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        """Tighten the buckets to what the server says; never loosen them past the configured
        limits.

        A smaller ``*-limit`` becomes the bucket's size and rate; a larger one later restores
        it, up to the configured limit. ``ticket`` is the booking of
        the request whose response carried ``info``: when the server's ``*-remaining`` is lower
        than what we held right after that booking, the difference is taken out of the bucket
        (bookings made later are not counted twice). A ``retry_after`` pauses the limiter.
        """
        if info.retry_after is not None:
            self.pause(info.retry_after)
        if info.output_tokens_limit is not None and info.output_tokens_limit > 0:
            self._server_output_limit = info.output_tokens_limit
        limits = (info.requests_limit, info.input_tokens_limit, info.output_tokens_limit)
        remaining = (
            info.requests_remaining,
            info.input_tokens_remaining,
            info.output_tokens_remaining,
        )
        with self._lock:
            now = self._clock()
            for i, (bucket, left) in enumerate(zip(self._buckets, remaining, strict=True)):
                if bucket is None:
                    continue
                limit = limits[i]
                adopted = limit is not None and bucket.adopt_limit(limit, now)
                if left is None:
                    continue
                if adopted and ticket is not None:  # first sight of the server's bucket: copy it
                    bucket.lower_to(left - (bucket.booked - ticket.booked[i]), now)
                elif ticket is not None:
                    theirs = (limit if limit is not None else bucket.capacity) - left
                    bucket.correct(ticket.used[i], theirs, ticket.seqs[i], now)
