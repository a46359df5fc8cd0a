"""Library-level benchmarking against the simulator with the real SDK."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest
from bench_helpers import bench_orchestrator
from hypothesis import given
from hypothesis import strategies as st

from claude_force_magic.bench import BenchResult, CallSample, percentile, run_benchmark
from claude_force_magic.metrics import CallRecord, Metrics
from claude_force_magic.simulator import Latency, Simulator


def test_percentile_matches_linear_interpolation() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(0, 1) for _ in range(1001)]
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 0.9) == pytest.approx(cuts[89])
    assert percentile(values, 0.99) == pytest.approx(cuts[98])
    assert percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


@given(
    st.lists(st.floats(0.0, 600.0, allow_nan=False), min_size=1, max_size=80),
    st.floats(0.0, 1.0),
)
def test_percentile_is_numpys_linear_percentile(values: list[float], q: float) -> None:
    got = percentile(values, q)
    assert got == pytest.approx(float(np.percentile(values, q * 100)), rel=1e-9, abs=1e-9)
    assert min(values) <= got <= max(values)


def test_bench_and_stats_agree_on_the_same_latencies() -> None:
    """One definition: %agent bench and %agent stats report the same percentiles."""
    rng = random.Random(7)
    latencies = [rng.lognormvariate(-1.5, 0.9) for _ in range(14)]
    samples = [CallSample(i, x, True) for i, x in enumerate(latencies)]
    result = BenchResult("a", "m", n=14, concurrency=2, wall_s=1.0, samples=samples)
    metrics = Metrics()
    for x in latencies:
        metrics.record(CallRecord(0.0, "a", "m", latency_s=x, input_tokens=1, output_tokens=1))
    (row,) = metrics.latency_percentiles()
    for label, value in result.percentiles().items():
        assert row[label] == pytest.approx(value, rel=1e-12)
    assert row["p99"] <= row["max"] == max(latencies)


def test_result_summary_counts_errors_and_nan_without_successes() -> None:
    samples = [
        CallSample(0, 0.1, True),
        CallSample(1, 0.3, True),
        CallSample(2, 0.2, False, "RateLimitError"),
        CallSample(3, 0.2, False, "RateLimitError"),
    ]
    result = BenchResult("a", "m", n=4, concurrency=2, wall_s=0.5, samples=samples)
    summary = result.summary()
    assert summary["ok"] == 2 and summary["errors"] == 2
    assert result.errors_by_type == {"RateLimitError": 2}
    assert result.throughput == pytest.approx(4.0)
    assert summary["p50"] == pytest.approx(0.2)
    empty = BenchResult(
        "a", "m", n=1, concurrency=1, wall_s=0.1, samples=[CallSample(0, 1, False, "X")]
    )
    assert math.isnan(empty.percentiles()["p99"])
    assert "errors={'X': 1}" in repr(empty)


async def test_run_benchmark_respects_concurrency_and_reports_progress() -> None:
    progress: list[int] = []
    async with Simulator(latency=Latency.fixed(0.05)) as sim:
        async with bench_orchestrator(sim, 8) as orch:
            result = await run_benchmark(
                orch,
                "python-expert",
                n=24,
                concurrency=4,
                warmup=4,  # new connections are not what this test measures
                on_progress=lambda done, total, sample: progress.append(done),
                options={"max_tokens": 64},
            )
        assert sim.stats["max_in_flight"] == 4
        assert sim.stats["requests"] == 28
        bodies = {r.body["messages"][0]["content"] for r in sim.requests}
    assert len(bodies) == 28, "default tasks are distinct"
    assert progress == list(range(1, 25))
    assert result.succeeded == 24 and len(result.latencies) == 24
    p = result.percentiles()
    assert 0.04 < p["p50"] <= p["p95"] <= p["p99"] < 1.0
    # Four in flight: throughput near 4 / p50; a serial run would give 1 / p50 (ratio only).
    assert result.throughput > 1.5 / p["p50"]
    frame = result.summary_frame()
    assert {"p50", "p90", "p95", "p99", "throughput_per_s", "errors"} <= set(frame.columns)
    assert len(result.to_frame()) == 24


async def test_run_benchmark_records_failures_by_type() -> None:
    script = ["refusal", "ok", "refusal"]
    async with Simulator(script=script) as sim, bench_orchestrator(sim, 1) as orch:
        result = await run_benchmark(orch, "python-expert", ["q"], n=3, concurrency=1)
    assert result.succeeded == 1
    assert result.errors_by_type == {"ResponseError": 2}


async def test_run_benchmark_records_caller_errors_instead_of_raising() -> None:
    async with Simulator() as sim:
        async with bench_orchestrator(sim, 2) as orch:
            result = await run_benchmark(orch, "no-such-agent", n=2, concurrency=2)
        assert sim.stats["requests"] == 0
    assert result.errors_by_type == {"UnknownAgentError": 2}


async def test_invalid_arguments_are_refused() -> None:
    async with Simulator() as sim, bench_orchestrator(sim, 1) as orch:
        with pytest.raises(ValueError):
            await run_benchmark(orch, "python-expert", n=0)
        with pytest.raises(ValueError):
            await run_benchmark(orch, "python-expert", [], n=1)


def test_plot_draws_a_histogram_with_percentile_lines() -> None:
    from matplotlib.figure import Figure

    samples = [CallSample(i, 0.1 + i / 100, True) for i in range(50)]
    result = BenchResult("a", "m", n=50, concurrency=5, wall_s=1.0, samples=samples)
    ax = result.plot(ax=Figure().subplots())
    assert len(ax.patches) > 1
    assert len(ax.lines) == 3  # p50, p95, p99
