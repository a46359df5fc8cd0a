"""Tests for engine/retry.py: which errors retry, back-off with jitter, retry-after, deadline."""

from __future__ import annotations

import asyncio
import random

import pytest

from claude_force_magic.engine.retry import RetryPolicy, call_with_retries, is_retryable
from claude_force_magic.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    DeadlineExceededError,
    OverloadedError,
    RateLimitError,
    ResponseError,
    ServerError,
)


class Recorder:
    def __init__(self, errors: list[BaseException | None]) -> None:
        self.errors = errors
        self.calls = 0
        self.slept: list[float] = []

    async def attempt(self) -> str:
        self.calls += 1
        exc = self.errors.pop(0) if self.errors else None
        if exc is not None:
            raise exc
        return "ok"

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.mark.parametrize(
    "exc",
    [
        RateLimitError("429"),
        OverloadedError("529", status_code=529),
        ServerError("500", status_code=500),
        APIConnectionError("conn"),
        APITimeoutError("slow"),
    ],
)
async def test_retryable_errors_are_retried(exc: BaseException) -> None:
    rec = Recorder([exc, exc, None])
    assert await call_with_retries(rec.attempt, RetryPolicy(max_retries=3), sleep=rec.sleep) == "ok"
    assert rec.calls == 3
    assert len(rec.slept) == 2


@pytest.mark.parametrize(
    "exc",
    [
        BadRequestError("400", status_code=400),
        AuthenticationError("401", status_code=401),
        ResponseError("refusal"),
        CircuitOpenError("open", retry_in=3),
        ValueError("programming error"),
    ],
)
async def test_non_retryable_errors_are_raised_after_one_attempt(exc: BaseException) -> None:
    rec = Recorder([exc, None])
    with pytest.raises(type(exc)):
        await call_with_retries(rec.attempt, RetryPolicy(max_retries=3), sleep=rec.sleep)
    assert rec.calls == 1
    assert rec.slept == []


async def test_retries_used_up_raise_the_last_error() -> None:
    rec = Recorder([ServerError("a"), ServerError("b"), ServerError("c")])
    with pytest.raises(ServerError, match="c"):
        await call_with_retries(rec.attempt, RetryPolicy(max_retries=2), sleep=rec.sleep)
    assert rec.calls == 3


async def test_the_first_failure_is_reported_as_attempt_one() -> None:
    first, second = ServerError("first"), RateLimitError("second", retry_after=2.0)
    rec = Recorder([first, second, None])
    seen: list[tuple[BaseException, float]] = []
    result = await call_with_retries(
        rec.attempt,
        RetryPolicy(max_retries=3, base_seconds=1.0, jitter="equal"),
        sleep=rec.sleep,
        on_retry=lambda exc, wait: seen.append((exc, wait)),
    )
    assert result == "ok" and rec.calls == 3
    assert seen[0][0] is first and 0.5 <= seen[0][1] <= 1.0  # retry 1: base back-off
    assert seen[1][0] is second and seen[1][1] >= 2.0  # retry 2: retry-after is the floor
    assert rec.slept == [wait for _, wait in seen]


async def test_max_retries_zero_means_one_attempt() -> None:
    rec = Recorder([ServerError("a"), None])
    with pytest.raises(ServerError):
        await call_with_retries(rec.attempt, RetryPolicy(max_retries=0), sleep=rec.sleep)
    assert rec.calls == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_seconds=1, max_backoff_seconds=8, jitter="full")
    rng = random.Random(1)
    samples = [[policy.backoff(n, rng) for _ in range(2000)] for n in (1, 2, 3, 4, 5)]
    caps = [1, 2, 4, 8, 8]
    for values, cap in zip(samples, caps, strict=True):
        assert min(values) >= 0 and max(values) <= cap
        assert len({round(v, 6) for v in values}) > 1000  # jitter: no herd
        assert sum(values) / len(values) == pytest.approx(cap / 2, rel=0.1)
    equal = RetryPolicy(base_seconds=1, max_backoff_seconds=8, jitter="equal")
    values = [equal.backoff(3, rng) for _ in range(1000)]
    assert min(values) >= 2 and max(values) <= 4


async def test_retry_after_is_a_floor_for_the_wait() -> None:
    rec = Recorder([RateLimitError("429", retry_after=7.5), None])
    await call_with_retries(rec.attempt, RetryPolicy(base_seconds=0.01), sleep=rec.sleep)
    assert rec.slept == [pytest.approx(7.5)]


async def test_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    rec = Recorder([RateLimitError("429", retry_after=3600), None])
    with pytest.raises(RateLimitError) as info:
        await call_with_retries(
            rec.attempt, RetryPolicy(max_retry_after_seconds=60), sleep=rec.sleep
        )
    assert info.value.retry_after == 3600
    assert rec.slept == []


async def test_deadline_stops_retrying_with_deadline_exceeded() -> None:
    now = [0.0]
    rec = Recorder([RateLimitError("Slow down.", retry_after=10), None])
    with pytest.raises(DeadlineExceededError) as info:
        await call_with_retries(
            rec.attempt, RetryPolicy(), deadline_at=5.0, clock=lambda: now[0], sleep=rec.sleep
        )
    assert isinstance(info.value.__cause__, RateLimitError)
    assert rec.calls == 1
    assert "Slow down. Raise deadline_seconds" in str(info.value)  # no doubled full stop


async def test_cancellation_is_not_retried() -> None:
    started = asyncio.Event()

    async def attempt() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.ensure_future(call_with_retries(attempt, RetryPolicy()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_is_retryable() -> None:
    assert is_retryable(ServerError("x"))
    assert not is_retryable(CircuitOpenError("x", retry_in=1))
    assert not is_retryable(KeyError("x"))
