"""The gate every attempt passes: circuit breaker, concurrency slot, rate limits, in that order.

``async with gate.attempt(input_tokens, max_tokens, deadline=...) as admission:`` admits one
attempt or raises before anything is sent: :class:`CircuitOpenError` (breaker open, checked
first so a broken service costs no slot and no booking), then a concurrency slot is waited
for, then the rate limiter books the request and its tokens (it may raise
:class:`DeadlineExceededError` when its next slot is after the call's deadline). The block's
outcome is the breaker's verdict (:meth:`CircuitBreaker.guard`: a retryable server error
counts as a failure, any other API answer as health, a cancellation as no verdict).

The limiter and breaker are protocols (:class:`AttemptLimiter`, :class:`AttemptBreaker`) so a
shared implementation (Redis, for several kernels) can replace the in-process
:class:`~.limits.RateLimiter` and :class:`~.breaker.CircuitBreaker`.

The semaphore is created with the gate (BUG-002: a lazily created semaphore raced when two
calls made it at once) and re-created only when the gate is used from a new event loop
(``asyncio.run`` twice): asyncio primitives bind to the loop that first waits on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Protocol, runtime_checkable

from ..errors import RateLimitError
from .client import RateLimitInfo, parse_rate_limit_headers
from .limits import Ticket

__all__ = ["Admission", "AttemptBreaker", "AttemptGate", "AttemptLimiter"]


@runtime_checkable
class AttemptLimiter(Protocol):
    """What the gate needs from a rate limiter (:class:`~.limits.RateLimiter` is one)."""

    def check_admissible(self, output_tokens: int) -> None:
        """Raise :class:`ConfigurationError` when ``output_tokens`` can never be admitted."""

    async def acquire(
        self, input_tokens: float = 0, output_tokens: float = 0, *, deadline: float | None = None
    ) -> Ticket:
        """Book one request and its tokens; wait until the booking's instant."""
        ...

    def settle(self, ticket: Ticket, *, output_tokens: int | None) -> None:
        """Give back the output tokens booked but not used."""

    def observe(self, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        """Learn from the server's rate-limit headers."""

    def pause(self, seconds: float) -> None:
        """Hold new bookings for ``seconds`` (the server's ``retry-after``)."""


@runtime_checkable
class AttemptBreaker(Protocol):
    """What the gate needs from a circuit breaker (:class:`~.breaker.CircuitBreaker` is one)."""

    def guard(self) -> AbstractContextManager[None]:
        """Admit (or raise :class:`CircuitOpenError`), then record the block's outcome."""
        ...


class Admission:
    """One admitted attempt: its rate-limiter booking, and what to tell the limiter after."""

    __slots__ = ("_limiter", "ticket")

    def __init__(self, limiter: AttemptLimiter, ticket: Ticket) -> None:
        self._limiter = limiter
        self.ticket = ticket

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Learn from a response's rate-limit headers (None: nothing to learn)."""
        if headers is not None:
            self._limiter.observe(parse_rate_limit_headers(headers), self.ticket)

    def refused(self, exc: RateLimitError) -> None:
        """A 429 without headers: hold new bookings for its ``retry_after``."""
        if exc.retry_after:
            self._limiter.pause(exc.retry_after)

    def settle(self, output_tokens: int) -> None:
        """The attempt answered with ``output_tokens``: give back the rest of the booking."""
        self._limiter.settle(self.ticket, output_tokens=output_tokens)


class AttemptGate:
    """Breaker, concurrency slot and rate limits for every attempt of one orchestrator."""

    __slots__ = ("_loop", "_semaphore", "breaker", "limiter", "max_concurrent")

    def __init__(
        self, max_concurrent: int, limiter: AttemptLimiter, breaker: AttemptBreaker
    ) -> None:
        self.max_concurrent = max_concurrent
        self.limiter = limiter
        self.breaker = breaker
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bound_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self._semaphore = asyncio.Semaphore(self.max_concurrent)
            self._loop = loop
        return self._semaphore

    @asynccontextmanager
    async def attempt(
        self, input_tokens: int, output_tokens: int, *, deadline: float | None
    ) -> AsyncIterator[Admission]:
        """Admit one attempt (see the module docstring); the block sends it."""
        semaphore = self._bound_semaphore()
        with self.breaker.guard():
            async with semaphore:
                ticket = await self.limiter.acquire(input_tokens, output_tokens, deadline=deadline)
                yield Admission(self.limiter, ticket)
