"""Tests for engine/limits.py: token buckets, FIFO fairness, server-driven adaptation (SEC-004)."""

from __future__ import annotations

import asyncio

import pytest

from claude_force_magic.engine.client import RateLimitInfo, parse_rate_limit_headers
from claude_force_magic.engine.limits import RateLimiter
from claude_force_magic.errors import ConfigurationError, DeadlineExceededError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sec_004_requests_bucket_allows_a_minute_of_burst_then_paces() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0)  # 1 per second, burst 60
    slots = [limiter.reserve().at - clock.now for _ in range(62)]
    assert slots[:60] == [0.0] * 60
    assert slots[60] == pytest.approx(1.0)
    assert slots[61] == pytest.approx(2.0)


def test_sec_004_refills_over_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0)
    for _ in range(60):
        limiter.reserve()
    clock.now += 10  # ten requests' worth refilled
    waits = [limiter.reserve().at - clock.now for _ in range(11)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(1.0)


def test_sec_004_input_token_bucket_limits_by_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        None, input_tokens_per_minute=6000, clock=clock, margin_seconds=0
    )  # 100 tok/s
    assert limiter.reserve(input_tokens=6000).at == clock.now
    assert limiter.reserve(input_tokens=500).at - clock.now == pytest.approx(5.0)


def test_sec_004_output_bucket_books_max_tokens_and_settle_gives_back_unused() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, output_tokens_per_minute=6000, clock=clock, margin_seconds=0)
    ticket = limiter.reserve(output_tokens=6000)
    # without settling the next booking waits 10 s for 1000 tokens
    limiter.settle(ticket, output_tokens=1000)  # 5000 unused come back
    assert limiter.reserve(output_tokens=5000).at == clock.now


def test_sec_004_fifo_fair_large_request_not_starved_by_small_ones() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        None, input_tokens_per_minute=600, clock=clock, margin_seconds=0
    )  # 10 tok/s
    limiter.reserve(input_tokens=600)  # empty the bucket
    big = limiter.reserve(input_tokens=500)
    smalls = [limiter.reserve(input_tokens=10) for _ in range(20)]
    assert all(s.at >= big.at for s in smalls)
    ats = [s.at for s in smalls]
    assert ats == sorted(ats)


def test_sec_004_all_buckets_booked_together() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, input_tokens_per_minute=600, clock=clock, margin_seconds=0)
    limiter.reserve(input_tokens=600)
    t = limiter.reserve(input_tokens=60)
    # the token bucket decides (6 s), the request bucket had room
    assert t.at - clock.now == pytest.approx(6.0)


def test_sec_004_amount_above_capacity_waits_for_a_full_bucket_instead_of_forever() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, output_tokens_per_minute=1000, clock=clock, margin_seconds=0)
    assert limiter.reserve(output_tokens=50_000).at == clock.now
    assert limiter.reserve(output_tokens=50_000).at - clock.now == pytest.approx(60.0)


def test_sec_004_retry_after_pauses_every_booking() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, margin_seconds=0)
    limiter.pause(3.0)
    assert limiter.reserve().at == pytest.approx(clock.now + 3.0)
    limiter.observe(RateLimitInfo(retry_after=5.0))
    assert limiter.reserve().at == pytest.approx(clock.now + 5.0)


def test_sec_004_ratelimit_remaining_header_tightens_but_never_loosens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0)
    ticket = limiter.reserve()  # we believe 59 are left; the server says 0 (another client?)
    limiter.observe(RateLimitInfo(requests_remaining=0), ticket)
    # 58 taken out (one token of rounding slack): one more now, then paced at 1/s
    assert limiter.reserve().at == clock.now
    assert limiter.reserve().at - clock.now == pytest.approx(1.0)
    # a generous server count does not undo our own bookings
    limiter.observe(RateLimitInfo(requests_remaining=60), ticket)
    assert limiter.reserve().at - clock.now == pytest.approx(2.0)


def test_sec_004_concurrent_answers_do_not_correct_the_same_drift_twice() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0)
    tickets = [limiter.reserve() for _ in range(5)]  # 55 left in our view
    for t in tickets:  # the server saw 10 fewer than us, reported by every answer
        limiter.observe(RateLimitInfo(requests_remaining=60 - t.used[0] - 10), t)
    slots = [limiter.reserve().at - clock.now for _ in range(47)]
    assert slots[:46] == [0.0] * 46  # 55 - (10 - 1 slack) = 46, not 55 - 5 * 9
    assert slots[46] == pytest.approx(1.0)


def test_sec_004_smaller_server_limit_is_adopted() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, margin_seconds=0)
    limiter.observe(RateLimitInfo(requests_limit=60, requests_remaining=60))
    snap = limiter.snapshot()["requests"]
    assert snap is not None and snap["per_minute"] == 60
    for _ in range(60):
        limiter.reserve()
    assert limiter.reserve().at - clock.now == pytest.approx(1.0)


def test_sec_004_raised_server_limit_restores_the_configured_one_never_more() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0)
    limiter.observe(RateLimitInfo(requests_limit=30, requests_remaining=30))
    snap = limiter.snapshot()["requests"]
    assert snap is not None and snap["per_minute"] == 30
    limiter.observe(RateLimitInfo(requests_limit=4000, requests_remaining=4000))
    snap = limiter.snapshot()["requests"]
    assert snap is not None and snap["per_minute"] == 60  # back to ours, not the server's 4000
    for _ in range(60):
        assert limiter.reserve().at == clock.now
    assert limiter.reserve().at - clock.now == pytest.approx(1.0)


async def test_acquire_past_the_deadline_fails_at_once_and_gives_the_booking_back() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(1, clock=clock, sleep=sleep, margin_seconds=0)
    await limiter.acquire(deadline=clock.now + 5)  # the one token: no wait
    with pytest.raises(DeadlineExceededError, match="rate limiter"):
        await limiter.acquire(deadline=clock.now + 5)  # next slot in 60 s
    assert slept == []
    snap = limiter.snapshot()["requests"]
    assert snap is not None and snap["level"] == pytest.approx(0.0)  # given back
    await limiter.acquire(deadline=clock.now + 61)  # within the deadline: waits
    assert slept == [pytest.approx(60.0)]


def test_margin_delays_only_calls_that_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, margin_seconds=0.01)
    assert limiter.reserve().at == clock.now
    for _ in range(59):
        limiter.reserve()
    assert limiter.reserve().at - clock.now == pytest.approx(1.01)


def test_headers_parsed_and_garbage_ignored() -> None:
    info = parse_rate_limit_headers(
        {
            "anthropic-ratelimit-requests-remaining": "7",
            "anthropic-ratelimit-input-tokens-remaining": "nonsense",
            "anthropic-ratelimit-output-tokens-limit": "-3",
            "retry-after-ms": "1500",
        }
    )
    assert info.requests_remaining == 7
    assert info.input_tokens_remaining is None
    assert info.output_tokens_limit is None
    assert info.retry_after == pytest.approx(1.5)
    assert parse_rate_limit_headers({}).empty


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_invalid_limits_refused(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="positive"):
        RateLimiter(bad)


async def test_cancelled_wait_gives_the_booking_back() -> None:
    clock = FakeClock()
    sleeping = asyncio.Event()

    async def sleep(_: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    limiter = RateLimiter(60, clock=clock, sleep=sleep, margin_seconds=0)
    for _ in range(60):
        await limiter.acquire()
    task = asyncio.ensure_future(limiter.acquire())
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cancelled booking was returned: the next one gets the first free slot again
    assert limiter.reserve().at - clock.now == pytest.approx(1.0)


async def test_acquire_sleeps_for_the_booked_delay() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(60, clock=clock, sleep=sleep, margin_seconds=0)
    for _ in range(61):
        await limiter.acquire()
    assert slept == [pytest.approx(1.0)]
