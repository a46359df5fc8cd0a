"""Retries for transient failures: exponential back-off with jitter, honouring ``retry-after``.

Only errors marked ``retryable`` are retried: 429, 5xx, 529, connection failures and per-attempt
timeouts (see :mod:`claude_force_magic.errors`). A 4xx, an open circuit, a refusal or a
cancellation is never retried. Built on ``tenacity`` (its ``AsyncRetrying`` with our own wait
and stop rules); the SDK's built-in retries are off, so attempts never multiply.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from ..errors import ClaudeForceError, ConfigurationError, DeadlineExceededError, RateLimitError
from ..validation import check_int, check_number
from . import defaults

__all__ = ["RetryPolicy", "call_with_retries", "is_retryable"]

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """True for our transient API errors (429, 5xx, 529, connection, timeout); False otherwise."""
    from ..errors import APIError

    return isinstance(exc, APIError) and bool(exc.retryable)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait between attempts.

    The n-th retry waits ``min(max_backoff, base * 2**(n-1))`` scaled by the jitter:
    ``"full"`` picks uniformly in ``[0, b]`` (spreads a herd best), ``"equal"`` in
    ``[b/2, b]``. A server ``retry-after`` is a floor; one longer than ``max_retry_after``
    is not waited for (the error is raised at once, carrying ``retry_after``).
    Raises :class:`ConfigurationError` for negative or non-finite settings.
    """

    max_retries: int = defaults.MAX_RETRIES
    base_seconds: float = 0.5
    max_backoff_seconds: float = 20.0
    jitter: Literal["full", "equal"] = "full"
    max_retry_after_seconds: float = 120.0

    def __post_init__(self) -> None:
        check_int("max_retries", self.max_retries, minimum=0)
        for name in ("base_seconds", "max_backoff_seconds", "max_retry_after_seconds"):
            check_number(name, getattr(self, name), strict=False)
        if self.jitter not in ("full", "equal"):
            raise ConfigurationError(f"jitter must be 'full' or 'equal', got {self.jitter!r}.")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """The jittered back-off before retry ``retry_number`` (1 for the first retry)."""
        rand: float = (rng or random).random()
        cap = min(self.max_backoff_seconds, self.base_seconds * 2.0 ** max(0, retry_number - 1))
        if self.jitter == "full":
            return cap * rand
        return cap / 2 + (cap / 2) * rand

    def delay(
        self, exc: BaseException, retry_number: int, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retrying after ``exc``: the back-off, at least ``retry-after``."""
        wait = self.backoff(retry_number, rng)
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after > 0:
            wait = max(wait, float(retry_after))
        return wait


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline_at: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``attempt()`` until it succeeds, retrying transient failures per ``policy``.

    Raises the last error when retries are used up or the error is not retryable;
    :class:`DeadlineExceededError` (chained to the last error) when the next wait would pass
    ``deadline_at`` (a ``clock()`` time). ``on_retry(exc, wait)`` runs before each wait.
    Cancellation propagates at once and is never retried.
    """
    # Fast path: most calls succeed at once, so the first attempt runs without building the
    # tenacity machinery (measurable per call at hundreds of calls/s). A retryable first failure
    # is handed to tenacity as its attempt 1, so waits, stops and callbacks are unchanged.
    try:
        return await attempt()
    except BaseException as exc:
        if not is_retryable(exc):
            raise
        first: list[BaseException] = [exc]

    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

    def wait(state: RetryCallState) -> float:
        exc = _exception(state)
        return policy.delay(exc, state.attempt_number, rng)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number > policy.max_retries:
            return True
        exc = _exception(state)
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after > policy.max_retry_after_seconds:
            return True
        return deadline_at is not None and clock() + state.upcoming_sleep >= deadline_at

    def give_up(state: RetryCallState) -> T:
        exc = _exception(state)
        if (
            deadline_at is not None
            and state.attempt_number <= policy.max_retries
            and not _too_long(exc, policy)
        ):
            left = max(0.0, deadline_at - clock())
            last = str(exc).rstrip(".")
            raise DeadlineExceededError(
                f"The overall deadline would pass before the next retry ({left:.1f}s left after "
                f"{state.attempt_number} attempt(s)); last error: {type(exc).__name__}: {last}. "
                "Raise deadline_seconds or try again later."
            ) from exc
        raise exc

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(_exception(state), state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )

    async def run() -> T:  # tenacity calls plain callables synchronously: hand it a coroutine fn
        if first:
            raise first.pop()  # the failure of the fast-path attempt, as tenacity's attempt 1
        return await attempt()

    result: T = await retrying(run)
    return result


def _too_long(exc: BaseException, policy: RetryPolicy) -> bool:
    return isinstance(exc, RateLimitError) and (exc.retry_after or 0) > (
        policy.max_retry_after_seconds
    )


def _exception(state: object) -> BaseException:
    outcome = getattr(state, "outcome", None)
    exc = outcome.exception() if outcome is not None else None
    if isinstance(exc, BaseException):
        return exc
    return ClaudeForceError("retry state without an exception")
