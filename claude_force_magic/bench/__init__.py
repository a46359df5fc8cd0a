"""Exploratory benchmarking: drive an agent at a chosen load and measure every call.

::

    from claude_force_magic import AsyncAgentOrchestrator
    from claude_force_magic.bench import run_benchmark, run_sweep

    async with AsyncAgentOrchestrator(enable_cache=False) as orch:
        result = await run_benchmark(orch, "python-expert", n=50, concurrency=8)
        poisson = await run_benchmark(orch, "python-expert", rate=2, duration=60, slo="ttft=2")
        sweep = await run_sweep(orch, ["python-expert"], models=["claude-haiku-4-5"],
                                concurrency=[1, 4, 16])
    result.summary_frame()   # e2e p50..p99, ttft_*, tpot_*, itl_*, throughput, goodput, cost
    sweep.frame()            # a row per agent x model x tasks x load
    sweep.plot()             # latency vs throughput, per-metric box plots, TTFT/e2e CDF

Calls stream by default, bypass the response cache and are measured as vLLM's
``benchmark_serving`` does (see :mod:`.result` for the metric definitions and :mod:`.load`
for closed and open loops). Nothing heavy is imported until a frame or plot is asked for.
"""

from __future__ import annotations

from ..metrics import percentile
from .load import TimingReference, arrival_offsets, default_tasks, run_benchmark
from .result import METRICS, SLO, BenchResult, CallSample
from .sweep import SweepResult, run_sweep

__all__ = [
    "METRICS",
    "SLO",
    "BenchResult",
    "CallSample",
    "SweepResult",
    "TimingReference",
    "arrival_offsets",
    "default_tasks",
    "percentile",
    "run_benchmark",
    "run_sweep",
]
