"""Latency models, fault names and the fault schedule, without a server."""

from __future__ import annotations

import math
import random
import statistics
import threading
from collections.abc import Callable

import pytest

from claude_force_magic.simulator import Fault, Latency
from claude_force_magic.simulator.behaviour import Behaviour, check_fault_rates


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_fixed_latency_is_constant() -> None:
    rng = random.Random(0)
    latency = Latency.fixed(0.25)
    assert {latency.sample(rng) for _ in range(100)} == {0.25}
    assert not latency.is_zero
    assert Latency.fixed(0.0).is_zero
    assert not Latency.fixed(0.0, ttft=0.1).is_zero


def test_uniform_latency_stays_in_bounds_with_the_right_mean() -> None:
    rng = random.Random(1)
    samples = [Latency.uniform(0.1, 0.5).sample(rng) for _ in range(20_000)]
    assert min(samples) >= 0.1
    assert max(samples) <= 0.5
    assert statistics.fmean(samples) == pytest.approx(0.3, abs=0.01)


def test_lognormal_latency_has_the_requested_median_and_p99() -> None:
    rng = random.Random(2)
    latency = Latency.lognormal(median=0.2, p99=1.0)
    samples = [latency.sample(rng) for _ in range(50_000)]
    assert latency.sigma == pytest.approx(math.log(5) / 2.326)
    assert statistics.median(samples) == pytest.approx(0.2, rel=0.03)
    assert quantile(samples, 0.99) == pytest.approx(1.0, rel=0.08)
    assert quantile(samples, 0.5) < quantile(samples, 0.9) < quantile(samples, 0.99)


def test_same_seed_gives_the_same_latencies() -> None:
    latency = Latency.lognormal(0.2, 1.0)
    first = [latency.sample(random.Random(7)) for _ in range(5)]
    second = [latency.sample(random.Random(7)) for _ in range(5)]
    assert first == second


def test_first_token_uses_ttft_when_given() -> None:
    rng = random.Random(0)
    assert Latency.uniform(1, 2, ttft=0.05).first_token(rng) == 0.05
    assert 1 <= Latency.uniform(1, 2).first_token(rng) <= 2


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Latency.fixed(-1), "seconds"),
        (lambda: Latency.uniform(0.5, 0.1), "lo <= hi"),
        (lambda: Latency.lognormal(1.0, 0.5), "median <= p99"),
        (lambda: Latency.lognormal(0.0, 0.5), "median <= p99"),
        (lambda: Latency.fixed(0, per_token=-0.1), "per_token"),
    ],
)
def test_bad_latency_is_refused(build: Callable[[], Latency], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        build()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fixed:0.2", Latency.fixed(0.2)),
        ("uniform:0.1,0.5", Latency.uniform(0.1, 0.5)),
        ("lognormal:0.2,1.0", Latency.lognormal(0.2, 1.0)),
    ],
)
def test_latency_parses_the_cli_syntax(spec: str, expected: Latency) -> None:
    assert Latency.parse(spec) == expected


@pytest.mark.parametrize("spec", ["fixed", "fixed:a", "uniform:1", "gamma:1,2", "fixed:1,2"])
def test_latency_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        Latency.parse(spec)


def test_fault_names_are_the_documented_strings() -> None:
    assert {
        "ok",
        "rate_limit",
        "overloaded",
        "server_error",
        "unavailable",
        "disconnect",
        "stall",
        "malformed_json",
        "null_content",
        "empty_content",
        "empty_text",
        "refusal",
        "stream_error",
    } == Fault.ALL
    assert Fault.check("stall") == "stall"
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        Fault.check("boom")


def test_script_comes_first_then_normal_behaviour() -> None:
    behaviour = Behaviour(script=["rate_limit", "ok", "overloaded"])
    assert [behaviour.next_fault() for _ in range(5)] == [
        "rate_limit",
        "ok",
        "overloaded",
        "ok",
        "ok",
    ]
    assert behaviour.script == []


def test_fault_rates_are_drawn_at_the_configured_frequency() -> None:
    behaviour = Behaviour(fault_rates={"rate_limit": 0.2, "overloaded": 0.1}, seed=3)
    draws = [behaviour.next_fault() for _ in range(20_000)]
    assert draws.count("rate_limit") / len(draws) == pytest.approx(0.2, abs=0.015)
    assert draws.count("overloaded") / len(draws) == pytest.approx(0.1, abs=0.015)
    assert draws.count("ok") / len(draws) == pytest.approx(0.7, abs=0.015)


def test_fault_draws_are_reproducible_from_the_seed() -> None:
    def draws(seed: int) -> list[str]:
        behaviour = Behaviour(fault_rates={"server_error": 0.5}, seed=seed)
        return [behaviour.next_fault() for _ in range(50)]

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)


def test_script_takes_precedence_over_rates() -> None:
    behaviour = Behaviour(script=["refusal"], fault_rates={"server_error": 1.0})
    assert behaviour.next_fault() == "refusal"
    assert behaviour.next_fault() == "server_error"


@pytest.mark.parametrize(
    ("rates", "fragment"),
    [
        ({"nope": 0.1}, "unknown fault"),
        ({"stall": 1.5}, "within"),
        ({"stall": 0.6, "overloaded": 0.6}, "sum"),
    ],
)
def test_bad_fault_rates_are_refused(rates: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_fault_rates(rates)


def test_configure_validates_before_changing_anything() -> None:
    behaviour = Behaviour(fault_rates={"stall": 0.5})
    with pytest.raises(ValueError):
        behaviour.configure(fault_rates={"stall": 2.0}, stall_seconds=1.0)
    assert behaviour.stall_seconds == 30.0
    behaviour.configure(fault_rates={}, seed=4)
    assert behaviour.next_fault() == "ok"


def test_set_script_is_safe_across_threads() -> None:
    behaviour = Behaviour()
    taken: list[str] = []

    def take() -> None:
        for _ in range(500):
            taken.append(behaviour.next_fault())

    behaviour.set_script(["refusal"] * 1000)
    workers = [threading.Thread(target=take) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert taken.count("refusal") == 1000
    assert taken.count("ok") == 1000
