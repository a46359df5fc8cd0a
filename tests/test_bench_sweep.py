"""Sweeps over agents x models x task sets x loads: the tidy frame, JSON, compare, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from bench_helpers import bench_orchestrator
from matplotlib.figure import Figure

from claude_force_magic.bench import BenchResult, CallSample, SweepResult, run_sweep
from claude_force_magic.bench.plots import cdf, distribution, latency_vs_throughput
from claude_force_magic.errors import ConfigurationError
from claude_force_magic.metrics import QUANTILES, quantile_label
from claude_force_magic.simulator import Latency, Simulator

MODELS = ["claude-haiku-4-5", "claude-sonnet-5"]


@pytest.fixture(scope="module")
def sweep() -> SweepResult:
    """2 agents x 2 models x 2 concurrencies, one refusal among the calls, 6 calls a point."""
    import asyncio

    async def run() -> SweepResult:
        sim = Simulator(latency=Latency.fixed(0.0, ttft=0.01, per_token=0.0005), script=["refusal"])
        async with sim, bench_orchestrator(sim, 4) as orch:
            result = await run_sweep(
                orch,
                ["python-expert", "code-reviewer"],
                models=MODELS,
                concurrency=[1, 4],
                n=6,
                slo="ttft=5,e2e=30",
                reference=sim,
                options={"max_tokens": 64},
            )
            assert sim.stats["requests"] == 2 * 2 * 2 * 6
            models_sent = {r.body["model"] for r in sim.requests}
        assert models_sent == set(MODELS)
        return result

    return asyncio.run(run())


def test_frame_is_tidy_with_every_percentile_of_every_metric(sweep: SweepResult) -> None:
    frame = sweep.frame()
    assert len(frame) == 8
    keys = frame[["agent", "model", "tasks", "load"]].drop_duplicates()
    assert len(keys) == 8
    assert set(frame["load"]) == {"concurrency=1", "concurrency=4"}
    for metric in ("ttft", "tpot", "itl"):
        for q in QUANTILES:
            column = f"{metric}_{quantile_label(q)}"
            assert frame[column].notna().all(), column
            assert (frame[column] > 0).all()
    for column in ("p50", "p99", "throughput_per_s", "output_tokens_per_s", "goodput_per_s"):
        assert (frame[column] > 0).all(), column
    assert list(frame["cost_per_1k_calls_usd"]) == pytest.approx(
        list(1000 * frame["cost_per_call_usd"])
    )
    # One refusal in the whole sweep: its own column, zero elsewhere.
    assert frame["errors_ResponseError"].sum() == 1 == frame["errors"].sum()
    assert (frame["goodput_per_s"] <= frame["throughput_per_s"] + 1e-9).all()
    # The more expensive model costs more per call (list prices, from the pricing table).
    by_model = frame.groupby("model")["cost_per_call_usd"].mean()
    assert by_model["claude-sonnet-5"] > by_model["claude-haiku-4-5"]


def test_json_round_trip_keeps_settings_versions_and_every_call(
    sweep: SweepResult, tmp_path: Path
) -> None:
    path = tmp_path / "run.json"
    text = sweep.to_json(path)
    doc = json.loads(text)  # strict JSON: NaN would not parse back in other tools
    assert path.read_text() == text
    assert doc["settings"]["models"] == MODELS and doc["settings"]["loads"] == [1, 4]
    assert doc["settings"]["slo"] == "ttft=5,e2e=30"
    versions = doc["environment"]["versions"]
    assert versions["anthropic"] and versions["claude-force-magic"]
    assert doc["environment"]["machine"]["cpu_count"] >= 1
    again = SweepResult.from_json(path)
    pd.testing.assert_frame_equal(again.frame(), sweep.frame())
    with pytest.raises(ConfigurationError, match="not a benchmark sweep"):
        SweepResult.from_json('{"schema": "something else"}')


def test_compare_lines_up_points_and_reports_changes(sweep: SweepResult) -> None:
    same = sweep.compare(SweepResult.from_json(sweep.to_json()))
    assert (same["change"].fillna(0) == 0).all()
    slower = SweepResult.from_json(sweep.to_json())
    first = slower.results[0]
    first.samples = [
        CallSample(**{**vars(s), "ttft_s": 2 * s.ttft_s}) if s.ttft_s else s for s in first.samples
    ]
    table = sweep.compare(slower)
    row = table[
        (table["agent"] == first.agent)
        & (table["model"] == first.model)
        & (table["load"] == first.load)
        & (table["metric"] == "ttft_p50")
    ]
    assert len(row) == 1
    assert row["change_pct"].iloc[0] == pytest.approx(100.0)
    unchanged = table[(table["metric"] == "ttft_p50") & (table["change"] == 0)]
    assert len(unchanged) == 7


async def test_sweep_refuses_bad_grids_before_sending() -> None:
    async with Simulator() as sim, bench_orchestrator(sim, 4) as orch:
        for kwargs, words in (
            ({"concurrency": [1, 8]}, "max_concurrent=8"),
            ({"concurrency": [1], "rate": [1.0]}, "either"),
            ({"concurrency": []}, "positive"),
            ({"rate": [0.5, 0]}, "positive"),
            ({"models": []}, "models is empty"),
            ({"tasks": "one string"}, "one string"),
            ({"tasks": {"a": []}}, "non-empty"),
            ({"tasks": [1, 2]}, "found a int"),
        ):
            with pytest.raises(ConfigurationError, match=words):
                await run_sweep(orch, ["python-expert"], **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="agents is empty"):
            await run_sweep(orch, [])
        assert sim.stats["requests"] == 0


async def test_task_sets_are_a_sweep_dimension_and_progress_spans_the_sweep() -> None:
    progress: list[tuple[int, int]] = []
    sets = {"short": ["Say hi."], "long": ["Explain " + "very " * 40 + "carefully."]}
    async with Simulator() as sim, bench_orchestrator(sim, 2) as orch:
        result = await run_sweep(
            orch,
            "python-expert",
            rate=[50.0, 100.0],
            tasks=sets,
            n=3,
            max_concurrency=2,
            on_progress=lambda done, total, s: progress.append((done, total)),
            options={"max_tokens": 32},
        )
    frame = result.frame()
    assert list(frame["tasks"]) == ["short", "short", "long", "long"]
    assert list(frame["load"]) == ["rate=50/s", "rate=100/s"] * 2
    assert [d for d, _ in progress] == list(range(1, 13))
    assert {t for _, t in progress} == {12}
    settings = result.settings["tasks"]
    assert settings["short"]["count"] == 1 and len(settings["long"]["sha256"]) == 64
    assert "Say hi." not in result.to_json(), "task texts stay out of the JSON"


def test_plots_are_figures_of_the_sweep(sweep: SweepResult) -> None:
    fig = sweep.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    top = fig.axes[0]
    # One line per agent x model, one point per load.
    assert len(top.lines) == 4 and all(len(line.get_xdata()) == 2 for line in top.lines)
    for kind in ("throughput", "box", "violin", "cdf"):
        assert isinstance(sweep.plot(kind, metric="ttft"), Figure)
    with pytest.raises(ConfigurationError):
        sweep.plot("pie")
    ax = cdf(sweep.results[:1], ax=Figure().subplots())
    (ttft_line, e2e_line) = ax.lines
    assert ttft_line.get_ydata()[-1] == 1.0
    assert len(ttft_line.get_xdata()) == sweep.results[0].succeeded
    assert max(ttft_line.get_xdata()) <= max(e2e_line.get_xdata())
    with pytest.raises(ConfigurationError):
        distribution(sweep.results, metric="latency")
    assert len(latency_vs_throughput([], ax=Figure().subplots()).lines) == 0


def test_result_without_stream_metrics_plots_and_summarises() -> None:
    samples = [CallSample(i, 0.1 + i / 100, True) for i in range(5)]
    result = BenchResult("a", "m", n=5, concurrency=1, wall_s=1.0, samples=samples)
    summary = result.summary()
    assert math.isnan(summary["ttft_p50"]) and math.isnan(summary["goodput_per_s"])
    fig = SweepResult([result]).plot()
    assert len(fig.axes) == 3
