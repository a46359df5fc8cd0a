"""Server-side rate limits: token buckets with a fake clock, then over HTTP with the SDK."""

from __future__ import annotations

from datetime import datetime, timezone

import anthropic
import pytest

from claude_force_magic.simulator import Simulator
from claude_force_magic.simulator.ratelimit import RateLimits, TokenBucket

from .helpers import ask, text_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(clock: FakeClock, **kwargs: int | None) -> RateLimits:
    return RateLimits(**kwargs, clock=clock, wallclock=lambda: 1_800_000_000.0)


def test_bucket_refills_continuously_up_to_capacity() -> None:
    bucket = TokenBucket(60, now=0.0)
    bucket.level = 0.0
    bucket.refill(0.5)
    assert bucket.level == pytest.approx(0.5)
    bucket.refill(1000.0)
    assert bucket.level == 60.0
    assert bucket.wait_for(61) == float("inf")


def test_requests_per_minute_admits_exactly_the_limit_then_waits() -> None:
    clock = FakeClock()
    rl = limits(clock, rpm=5)
    verdicts = [rl.admit(1, 1) for _ in range(6)]
    assert [v.admitted for v in verdicts] == [True] * 5 + [False]
    assert [v.headers["anthropic-ratelimit-requests-remaining"] for v in verdicts[:5]] == [
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    assert verdicts[5].retry_after == 12  # one request refills in 60 / 5 seconds
    assert "5 requests per minute" in verdicts[5].message
    clock.now += 11.9
    assert not rl.admit(1, 1).admitted
    clock.now += 0.2
    assert rl.admit(1, 1).admitted


def test_a_refused_request_takes_nothing() -> None:
    clock = FakeClock()
    rl = limits(clock, rpm=10, input_tpm=100)
    assert not rl.admit(150, 1).admitted
    assert rl.buckets["requests"].level == 10
    assert rl.admit(100, 1).admitted


def test_input_tokens_limit_and_retry_after() -> None:
    clock = FakeClock()
    rl = limits(clock, input_tpm=600)
    assert rl.admit(500, 1).admitted
    refused = rl.admit(200, 1)
    assert not refused.admitted
    assert refused.retry_after == 10  # 100 missing tokens at 10 tokens/second
    assert "input tokens" in refused.message


def test_output_tokens_are_charged_by_max_tokens_and_refunded_after() -> None:
    clock = FakeClock()
    rl = limits(clock, output_tpm=1000)
    assert rl.admit(1, 800).admitted
    assert not rl.admit(1, 800).admitted
    rl.refund_output(700)  # the answer used 100 of the 800
    assert rl.admit(1, 800).admitted


def test_a_request_larger_than_the_limit_is_refused_with_a_minute() -> None:
    rl = limits(FakeClock(), output_tpm=1000)
    refused = rl.admit(1, 4096)
    assert not refused.admitted
    assert refused.retry_after == 60
    assert "more than your rate limit" in refused.message


def test_headers_name_limit_remaining_and_rfc3339_reset() -> None:
    clock = FakeClock()
    rl = limits(clock, rpm=60, input_tpm=1000, output_tpm=2000)
    verdict = rl.admit(100, 500)
    h = verdict.headers
    assert h["anthropic-ratelimit-requests-limit"] == "60"
    assert h["anthropic-ratelimit-requests-remaining"] == "59"
    assert h["anthropic-ratelimit-input-tokens-remaining"] == "900"
    assert h["anthropic-ratelimit-output-tokens-remaining"] == "1500"
    reset = datetime.strptime(h["anthropic-ratelimit-input-tokens-reset"], "%Y-%m-%dT%H:%M:%SZ")
    expected = datetime.fromtimestamp(1_800_000_000 + 6, timezone.utc).replace(tzinfo=None)
    assert reset == expected  # 100 tokens at 1000/60 per second: full again in 6 s
    rl.admit(1, 1)  # 101 tokens short: full again in 6.06 s, rounded up (never down) to 7 s
    assert rl.headers()["anthropic-ratelimit-input-tokens-reset"] == "2027-01-15T08:00:07Z"


def test_no_limits_means_no_headers() -> None:
    rl = RateLimits()
    assert not rl.enabled
    assert rl.admit(10**9, 10**9).admitted
    assert rl.headers() == {}


# ---------------------------------------------------------------- over HTTP


def test_rpm_five_lets_five_through_then_429_with_retry_after() -> None:
    with (
        Simulator(rpm=5) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        remaining = []
        for _ in range(5):
            raw = client.messages.with_raw_response.create(**ask())
            remaining.append(raw.headers["anthropic-ratelimit-requests-remaining"])
            assert raw.headers["anthropic-ratelimit-requests-limit"] == "5"
            assert text_of(raw.parse())
        assert remaining == ["4", "3", "2", "1", "0"]
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(**ask())
    error = caught.value
    assert error.status_code == 429
    assert error.type == "rate_limit_error"
    assert 11 <= int(error.response.headers["retry-after"]) <= 12
    assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert sim.stats["by_status"] == {200: 5, 429: 1}


def test_input_tpm_over_http_counts_the_prompt() -> None:
    prompt = "word " * 80  # 400 characters: 100 input tokens
    with (
        Simulator(input_tpm=150) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        first = client.messages.with_raw_response.create(**ask(prompt))
        assert first.parse().usage.input_tokens == 100
        assert first.headers["anthropic-ratelimit-input-tokens-remaining"] == "50"
        with pytest.raises(anthropic.RateLimitError, match="input tokens"):
            client.messages.create(**ask(prompt))


def test_output_tpm_over_http_refunds_unused_max_tokens() -> None:
    with (
        Simulator(output_tpm=1000) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        # Each answer is far shorter than 600 tokens, so the refund lets the second one in.
        assert client.messages.create(**ask(max_tokens=600)).usage.output_tokens < 300
        assert client.messages.create(**ask(max_tokens=600)).stop_reason == "end_turn"
        sim.configure(output_tpm=1000)  # a full bucket again
        # 900 + 900 > 1000 even after the first answer's unused tokens are given back.
        client.messages.create(**ask(max_tokens=900))
        with pytest.raises(anthropic.RateLimitError, match="output tokens"):
            client.messages.create(**ask(max_tokens=900))


def test_configure_changes_the_limits_of_a_running_simulator() -> None:
    with (
        Simulator() as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        raw = client.messages.with_raw_response.create(**ask())
        assert "anthropic-ratelimit-requests-limit" not in raw.headers
        sim.configure(rpm=1)
        client.messages.create(**ask())
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(**ask())
        sim.configure(rpm=None)
        assert client.messages.create(**ask()).content
