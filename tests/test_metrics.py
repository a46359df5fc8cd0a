"""Bounded metrics (BUG-005), failing sinks (BUG-008), quantile accuracy, thread safety."""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
import tracemalloc

import numpy as np
import pytest

from claude_force_magic.errors import ConfigurationError
from claude_force_magic.metrics import OTHER, CallRecord, Metrics, QuantileSketch


def rec(i: int = 0, **overrides: object) -> CallRecord:
    fields: dict[str, object] = {
        "timestamp": 1_700_000_000.0 + i,
        "agent_name": f"agent-{i % 4}",
        "model": "claude-sonnet-5-5",
        "latency_s": 0.1 + (i % 100) / 1000,
        "input_tokens": 10,
        "output_tokens": 20,
        "cost_usd": 0.001,
    }
    fields.update(overrides)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "n_records",
    [200_000, pytest.param(1_000_000, marks=pytest.mark.slow)],
    ids=["200k", "1M"],
)
def test_bug_005_metrics_bounded(n_records: int) -> None:
    """Tracing every allocation makes 1M records take ~17 s, so the default run does 200k."""
    metrics = Metrics(history=10_000)
    # 50,000 distinct records, cycled: more than the history, built before tracing starts
    pool = [rec(i, agent_name=f"agent-{i % 8}", model=f"model-{i % 3}") for i in range(50_000)]
    for r in pool[:20_000]:  # warm up: the ring buffer is full, every group exists
        metrics.record(r)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000, n_records):
            metrics.record(pool[i % 50_000])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(metrics.recent()) == 10_000
    assert metrics.recent(1)[0] is pool[(n_records - 1) % 50_000]
    assert metrics.totals()["calls"] == n_records
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over {n_records - 20_000} records"


def test_bug_008_failing_sink_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    seen: list[CallRecord] = []

    def broken_sink(record: CallRecord) -> None:
        raise RuntimeError("disk full\nFAKE LOG LINE sk-ant-api03-abcdefghijklmnop")

    metrics.add_sink(broken_sink)
    metrics.add_sink(seen.append)
    with caplog.at_level(logging.WARNING, logger="claude_force_magic"):
        for i in range(50):
            metrics.record(rec(i))
    assert len(seen) == 50
    assert metrics.totals()["calls"] == 50
    warnings = [r for r in caplog.records if "broken_sink" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "disk full\\nFAKE LOG LINE" in message
    assert "\n" not in message
    assert "sk-ant-api03-abcdefghijklmnop" not in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="claude_force_magic"):
        for i in range(50):
            metrics.record(rec(i))
    assert [r.getMessage() for r in caplog.records if "100 failure" in r.getMessage()]


def test_sink_interrupts_are_not_swallowed() -> None:
    metrics = Metrics()

    def interrupting(record: CallRecord) -> None:
        raise KeyboardInterrupt

    metrics.add_sink(interrupting)
    with pytest.raises(KeyboardInterrupt):
        metrics.record(rec())


def test_sinks_add_remove_and_close() -> None:
    metrics = Metrics()
    seen: list[CallRecord] = []
    metrics.add_sink(seen.append)
    metrics.add_sink(seen.append)  # idempotent
    metrics.record(rec())
    assert len(seen) == 1
    metrics.remove_sink(seen.append)
    metrics.remove_sink(seen.append)  # no error
    metrics.record(rec())
    assert len(seen) == 1
    metrics.add_sink(seen.append)
    metrics.close()
    metrics.close()
    metrics.record(rec())
    assert len(seen) == 1
    assert metrics.closed
    assert metrics.recent() == []
    assert metrics.totals()["calls"] == 2  # a final summary stays readable
    with pytest.raises(ConfigurationError, match="closed"):
        metrics.add_sink(seen.append)
    with pytest.raises(ConfigurationError, match="callable"):
        Metrics().add_sink(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_match_exact_values_within_one_percent(seed: int) -> None:
    rng = random.Random(seed)
    data = [rng.lognormvariate(-1.5, 0.8) for _ in range(50_000)]
    sketch = QuantileSketch()
    for x in data:
        sketch.add(x)
    ordered = sorted(data)
    qs = (0.5, 0.9, 0.95, 0.99)
    got = sketch.quantiles(qs)
    for q, value in zip(qs, got, strict=True):
        exact_rank = ordered[math.floor(q * (len(data) - 1))]
        assert abs(value - exact_rank) / exact_rank <= 0.0101
        assert abs(value - float(np.quantile(data, q))) / float(np.quantile(data, q)) <= 0.02
    assert sketch.count == len(data)
    assert sketch.min == min(data)
    assert sketch.max == max(data)
    assert sketch.mean == pytest.approx(statistics.fmean(data), rel=1e-9)
    assert len(sketch._buckets) <= sketch.bucket_count <= 1200


def test_sketch_edges_and_merge() -> None:
    empty = QuantileSketch()
    assert math.isnan(empty.quantile(0.5))
    assert math.isnan(empty.mean)
    a, b = QuantileSketch(), QuantileSketch()
    for x in (0.0, 1e-9, 5.0):
        a.add(x)
    for x in (7200.0, 2.0):
        b.add(x)
    a.merge(b)
    assert a.count == 5
    assert a.quantile(0.0) == 0.0
    assert a.quantile(1.0) == 7200.0  # clamped to the exact max
    assert a.quantile(0.5) == pytest.approx(2.0, rel=0.01)
    with pytest.raises(ConfigurationError):
        a.merge(QuantileSketch(0.05))
    with pytest.raises(ConfigurationError):
        a.quantile(1.5)
    with pytest.raises(ConfigurationError):
        QuantileSketch(0.0)


def test_thread_safety_totals_exact() -> None:
    metrics = Metrics(history=1000)
    seen = []
    metrics.add_sink(lambda r: seen.append(r.request_id))
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(10_000):
            metrics.record(
                rec(i, agent_name=f"agent-{t}", cost_usd=0.000123, saved_usd=0.1, request_id="x")
            )

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    totals = metrics.totals()
    assert totals["calls"] == 80_000
    assert totals["input_tokens"] == 800_000
    assert totals["output_tokens"] == 1_600_000
    assert totals["cost_usd"] == 80_000 * 123 / 1_000_000
    assert totals["saved_usd"] == 8_000.0
    assert len(seen) == 80_000
    rows = metrics.latency_percentiles()
    assert sum(r["count"] for r in rows) == 80_000
    assert len(metrics.recent()) == 1000


def test_groups_bounded() -> None:
    metrics = Metrics(max_groups=10)
    for i in range(1000):
        metrics.record(rec(i, agent_name=f"agent-{i}", cached=i % 2 == 0))
    rows = metrics.latency_percentiles()
    assert len(rows) <= 12
    other = [r for r in rows if r["agent_name"] == OTHER]
    assert {r["cached"] for r in other} == {True, False}
    assert sum(r["count"] for r in rows) == 1000
    assert metrics.totals()["calls"] == 1000


def test_percentile_rows_totals_and_cost_by() -> None:
    metrics = Metrics()
    metrics.record(rec(0, agent_name="a", latency_s=1.0, cost_usd=0.018))
    metrics.record(rec(1, agent_name="a", latency_s=3.0, cost_usd=None))
    metrics.record(rec(2, agent_name="a", success=False, error_type="RateLimitError"))
    metrics.record(
        rec(3, agent_name="b", latency_s=0.002, cached=True, cost_usd=0.0, saved_usd=0.5)
    )
    rows = metrics.latency_percentiles((0.5, 0.999))
    assert [(r["agent_name"], r["cached"]) for r in rows] == [("a", False), ("b", True)]
    row_a = rows[0]
    assert row_a["count"] == 2
    assert row_a["errors"] == 1
    assert set(row_a) >= {"p50", "p99.9", "mean", "max"}
    assert row_a["mean"] == pytest.approx(2.0)
    assert row_a["max"] == 3.0
    totals = metrics.totals()
    assert totals == {
        "calls": 4,
        "live_calls": 3,
        "cached_calls": 1,
        "errors": 1,
        "input_tokens": 40,
        "output_tokens": 80,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cost_usd": pytest.approx(0.019),
        "unknown_cost_calls": 1,
        "saved_usd": 0.5,
        "prompt_cache_saved_usd": 0.0,
    }
    by_model = metrics.cost_by(("model",))
    assert len(by_model) == 1
    assert by_model[0]["calls"] == 4
    by_cached = metrics.cost_by(("cached",))
    assert [r["cached"] for r in by_cached] == [False, True]
    with pytest.raises(ConfigurationError, match="cost_by keys"):
        metrics.cost_by(("colour",))
    metrics.reset()
    assert metrics.totals()["calls"] == 0
    assert metrics.latency_percentiles() == []


def test_recent_order_and_bounds() -> None:
    metrics = Metrics(history=5)
    for i in range(8):
        metrics.record(rec(i))
    assert [r.timestamp - 1_700_000_000.0 for r in metrics.recent()] == [3, 4, 5, 6, 7]
    assert [r.timestamp - 1_700_000_000.0 for r in metrics.recent(2)] == [6, 7]
    assert metrics.recent(0) == []
    assert len(metrics.recent(100)) == 5
    with pytest.raises(ConfigurationError):
        metrics.recent(-1)


def test_call_record_validation_and_dict() -> None:
    with pytest.raises(ConfigurationError, match="latency"):
        rec(latency_s=-1.0)
    with pytest.raises(ConfigurationError, match="latency"):
        rec(latency_s=math.nan)
    with pytest.raises(ConfigurationError, match="token"):
        rec(input_tokens=-1)
    row = rec(request_id="req_1").to_dict()
    assert row["request_id"] == "req_1"
    assert row["attempts"] == 1
    with pytest.raises(ConfigurationError):
        Metrics(history=0)
    with pytest.raises(ConfigurationError):
        Metrics().record("not a record")  # type: ignore[arg-type]


# -- issue 9 §4: one percentile definition, exact while the values are held ----------------------


def test_small_samples_match_numpy_and_stay_below_max() -> None:
    """Two calls of 0.21 s and 5.94 s once gave p50 = p99 = 0.2122 beside max 5.944."""
    metrics = Metrics()
    for latency in (0.2122, 5.944):
        metrics.record(rec(0, latency_s=latency, agent_name="a"))
    (row,) = metrics.latency_percentiles()
    assert row["p50"] == pytest.approx(float(np.percentile([0.2122, 5.944], 50)))
    assert row["p99"] == pytest.approx(float(np.percentile([0.2122, 5.944], 99)))
    assert row["p50"] < row["p99"] <= row["max"]


@pytest.mark.parametrize("seed", range(6))
def test_sketch_is_exact_while_it_holds_the_values(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 512)
    data = [rng.lognormvariate(-1.0, 1.2) for _ in range(n)]
    sketch = QuantileSketch()
    for x in data:
        sketch.add(x)
    qs = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)
    assert sketch.exact
    got = sketch.quantiles(qs)
    assert got == pytest.approx([float(np.percentile(data, q * 100)) for q in qs], rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_sketch_past_its_exact_values_is_close_ordered_and_bounded(seed: int) -> None:
    rng = random.Random(seed)
    data = [rng.lognormvariate(-1.5, 0.6) for _ in range(rng.randint(513, 3000))]
    data += [rng.uniform(5, 9) for _ in range(3)]  # a few slow outliers
    sketch = QuantileSketch()
    for x in data:
        sketch.add(x)
    assert not sketch.exact
    qs = (0.5, 0.9, 0.95, 0.99)
    got = sketch.quantiles(qs)
    for q, value in zip(qs, got, strict=True):
        expected = float(np.percentile(data, q * 100))
        assert abs(value - expected) / expected <= 0.02
    assert got == sorted(got)
    assert got[0] >= sketch.min
    assert got[-1] <= sketch.max


def test_merge_keeps_exactness_only_while_both_are_held() -> None:
    a, b = QuantileSketch(exact_values=4), QuantileSketch(exact_values=4)
    for x in (1.0, 2.0):
        a.add(x)
    b.add(10.0)
    a.merge(b)
    assert a.exact
    assert a.quantile(0.5) == 2.0
    for x in (3.0, 4.0):
        a.add(x)
    assert not a.exact
    assert a.quantile(1.0) == 10.0


# -- issue 12: streaming metrics (TTFT, TPOT) per group, bounded ----------------------------------


def streamed(i: int = 0, **overrides: object) -> CallRecord:
    fields: dict[str, object] = {
        "ttft_s": 0.2 + (i % 50) / 1000,
        "tpot_s": 0.01 + (i % 10) / 10_000,
        "itl_p50_s": 0.04,
        "output_tokens_per_s": 80.0,
    }
    fields.update(overrides)
    return rec(i, **fields)


def test_streaming_metrics_stay_bounded() -> None:
    metrics = Metrics(history=10_000)
    pool = [streamed(i, agent_name=f"agent-{i % 8}", model=f"model-{i % 3}") for i in range(50_000)]
    for r in pool[:20_000]:
        metrics.record(r)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000, 200_000):
            metrics.record(pool[i % 50_000])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sum(r["streamed"] for r in metrics.stream_percentiles()) == 200_000
    assert grown < 64 * 1024, f"memory grew by {grown} bytes"


def test_stream_percentiles_are_exact_while_held_and_skip_unstreamed_groups() -> None:
    metrics = Metrics()
    ttfts = [0.31, 0.29, 0.5, 0.35]
    for i, t in enumerate(ttfts):
        metrics.record(streamed(i, agent_name="a", ttft_s=t, tpot_s=0.01 * (i + 1)))
    metrics.record(rec(0, agent_name="a", cached=True))  # a cache hit: not a streamed call
    metrics.record(rec(0, agent_name="b"))  # not streamed
    metrics.record(streamed(0, agent_name="a", success=False, status="error"))  # failed
    (row,) = metrics.stream_percentiles()
    assert (row["agent_name"], row["streamed"]) == ("a", 4)
    assert row["ttft_p50"] == pytest.approx(float(np.percentile(ttfts, 50)))
    assert row["ttft_p99"] == pytest.approx(float(np.percentile(ttfts, 99)))
    assert row["tpot_p90"] == pytest.approx(float(np.percentile([0.01, 0.02, 0.03, 0.04], 90)))
    assert row["tokens_per_s"] == pytest.approx(80.0)
    assert metrics.stream_percentiles((0.999,))[0]["ttft_p99.9"] <= max(ttfts)


def test_call_record_rejects_negative_or_nan_stream_metrics() -> None:
    for name in ("ttft_s", "tpot_s", "itl_p50_s", "output_tokens_per_s"):
        with pytest.raises(ConfigurationError, match=name):
            rec(**{name: -0.1})
        with pytest.raises(ConfigurationError, match=name):
            rec(**{name: math.nan})
    assert rec().to_dict()["ttft_s"] is None
