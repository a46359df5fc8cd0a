"""Tests for engine/breaker.py with a controllable clock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from claude_force_magic.engine.breaker import CircuitBreaker
from claude_force_magic.errors import (
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    RateLimitError,
    ServerError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, exc: BaseException) -> None:
    with pytest.raises(type(exc)), breaker.guard():
        raise exc


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(3, 10, clock=clock)
    for _ in range(3):
        assert breaker.state == "closed"
        fail(breaker, ServerError("boom", status_code=500))
    assert breaker.state == "open"
    clock.now = 4
    with pytest.raises(CircuitOpenError) as info:
        breaker.before_call()
    assert info.value.retry_in == pytest.approx(6)


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(2, 10, clock=FakeClock())
    fail(breaker, ServerError("x"))
    with breaker.guard():
        pass
    fail(breaker, ServerError("x"))
    assert breaker.state == "closed"


def test_half_open_admits_exactly_one_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5, clock=clock)
    fail(breaker, ServerError("x"))
    clock.now = 5
    assert breaker.state == "half_open"
    probe = breaker.before_call()
    assert probe is True
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.on_success(probe)
    assert breaker.state == "closed"
    assert breaker.before_call() is False


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5, clock=clock)
    fail(breaker, ServerError("x"))
    clock.now = 6
    fail(breaker, ServerError("x"))
    assert breaker.state == "open"
    assert breaker.times_opened == 2
    clock.now = 10
    assert breaker.state == "open"
    clock.now = 11
    assert breaker.state == "half_open"


@pytest.mark.parametrize(
    "exc", [BadRequestError("bad", status_code=400), RateLimitError("slow down", retry_after=1)]
)
def test_4xx_do_not_trip(exc: Exception) -> None:
    breaker = CircuitBreaker(1, 5, clock=FakeClock())
    for _ in range(5):
        fail(breaker, exc)
    assert breaker.state == "closed"


def test_cancellation_is_not_a_failure_and_frees_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5, clock=clock)
    for _ in range(3):
        fail(breaker, asyncio.CancelledError())
    assert breaker.state == "closed"
    fail(breaker, ServerError("x"))
    clock.now = 5
    fail(breaker, asyncio.CancelledError())  # the probe was cancelled
    assert breaker.state == "half_open"
    assert breaker.before_call() is True  # the next call may probe


def test_invalid_settings() -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(0)
    with pytest.raises(ConfigurationError):
        CircuitBreaker(1, -1)
