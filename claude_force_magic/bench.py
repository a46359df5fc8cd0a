"""Exploratory benchmarking: run many agent calls at a chosen concurrency and measure them.

::

    from claude_force_magic import AsyncAgentOrchestrator
    from claude_force_magic.bench import run_benchmark

    async with AsyncAgentOrchestrator(enable_cache=False) as orch:
        result = await run_benchmark(orch, "python-expert", n=50, concurrency=8)
    print(result)                # BenchResult(python-expert n=50 c=8 ok=50 p50=0.41s ...)
    result.summary_frame()       # one row: percentiles, throughput, errors (pandas, on demand)
    result.plot()                # latency histogram with percentile lines (matplotlib)

Latency here is end to end as the caller sees it (perf_counter around ``execute_agent``),
including rate limiting and retries. Nothing heavy is imported until a frame or plot is asked
for.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ClaudeForceError
from .metrics import QUANTILES, percentile, quantile_label

if TYPE_CHECKING:
    import pandas as pd

    from .engine.orchestrator import AsyncAgentOrchestrator

__all__ = ["BenchResult", "CallSample", "default_tasks", "percentile", "run_benchmark"]


def default_tasks(n: int, agent: str) -> list[str]:
    """``n`` distinct, small tasks (distinct so that no two calls share a cache key)."""
    return [
        f"Benchmark task {i + 1} of {n} for {agent}: explain one idea in two sentences."
        for i in range(n)
    ]


@dataclass(frozen=True)
class CallSample:
    """One benchmarked call."""

    index: int
    latency_s: float
    success: bool
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    attempts: int = 1


@dataclass
class BenchResult:
    """Everything measured by :func:`run_benchmark`; frames and plots are built on demand."""

    agent: str
    model: str
    n: int
    concurrency: int
    wall_s: float
    samples: list[CallSample] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        """Latencies (s) of the successful calls, in completion order."""
        return [s.latency_s for s in self.samples if s.success]

    @property
    def succeeded(self) -> int:
        """How many calls succeeded."""
        return sum(1 for s in self.samples if s.success)

    @property
    def throughput(self) -> float:
        """Successful calls per second of wall time."""
        return self.succeeded / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def errors_by_type(self) -> dict[str, int]:
        """Failed calls counted by error type."""
        return dict(Counter(s.error_type or "unknown" for s in self.samples if not s.success))

    def percentiles(self, quantiles: Sequence[float] = QUANTILES) -> dict[str, float]:
        """``{"p50": seconds, ...}`` over successful calls (NaN when none succeeded)."""
        lat = self.latencies
        return {quantile_label(q): (percentile(lat, q) if lat else math.nan) for q in quantiles}

    def summary(self) -> dict[str, Any]:
        """One flat dict: counts, percentiles, mean, max, throughput, cost, errors."""
        lat = self.latencies
        costs = [s.cost_usd for s in self.samples if s.cost_usd is not None]
        return {
            "agent": self.agent,
            "model": self.model,
            "n": self.n,
            "concurrency": self.concurrency,
            "ok": self.succeeded,
            "errors": self.n - self.succeeded,
            **self.percentiles(),
            "mean": sum(lat) / len(lat) if lat else math.nan,
            "max": max(lat) if lat else math.nan,
            "throughput_per_s": self.throughput,
            "wall_s": self.wall_s,
            "cost_usd": sum(costs),
            "error_types": ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_type.items())),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per call (pandas imported here)."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame([vars(s) for s in self.samples])

        return frame

    def summary_frame(self) -> pd.DataFrame:
        """:meth:`summary` as a one-row DataFrame."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame([self.summary()])

        return frame

    def plot(self, ax: Any = None, *, bins: int = 30) -> Any:
        """A latency histogram with p50/p95/p99 lines; returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.2))
        lat = self.latencies
        ax.hist(lat, bins=max(1, min(bins, len(lat))), color="#4c78a8", alpha=0.85)
        for name, value in self.percentiles((0.5, 0.95, 0.99)).items():
            if not math.isnan(value):
                ax.axvline(value, linestyle="--", linewidth=1, color="#333")
                ax.text(value, ax.get_ylim()[1] * 0.95, f" {name}", fontsize=8, va="top")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("calls")
        ax.set_title(
            f"{self.agent} · n={self.n} · concurrency {self.concurrency} · "
            f"{self.throughput:.1f} calls/s"
        )
        return ax

    def __repr__(self) -> str:
        p = self.percentiles()
        return (
            f"BenchResult({self.agent} n={self.n} c={self.concurrency} ok={self.succeeded} "
            f"p50={p['p50']:.3f}s p95={p['p95']:.3f}s p99={p['p99']:.3f}s "
            f"{self.throughput:.1f}/s errors={self.errors_by_type or 0})"
        )


ProgressCallback = Callable[[int, int, CallSample], None]


async def run_benchmark(
    orch: AsyncAgentOrchestrator,
    agent: str,
    tasks: Sequence[str] | None = None,
    *,
    n: int = 50,
    concurrency: int = 8,
    on_progress: ProgressCallback | None = None,
    use_cache: bool = False,
    options: Mapping[str, Any] | None = None,
) -> BenchResult:
    """Run ``n`` calls of ``agent`` with at most ``concurrency`` in flight; measure each.

    ``tasks`` are cycled when fewer than ``n`` (default: distinct generated tasks). The cache is
    bypassed unless ``use_cache``. Failures (including caller errors such as a budget stop) are
    recorded per call, never raised; ``on_progress(done, n, sample)`` is called after each call
    on the orchestrator's loop and must not block. Raises ``ValueError`` for ``n < 1``,
    ``concurrency < 1`` or an empty ``tasks``. Cancelling the coroutine cancels every call.
    """
    if n < 1 or concurrency < 1:
        raise ValueError(
            f"n and concurrency must be at least 1 (got n={n}, concurrency={concurrency})"
        )
    task_list = list(tasks) if tasks is not None else default_tasks(n, agent)
    if not task_list:
        raise ValueError("tasks is empty")
    call_options = {"use_cache": use_cache, **(options or {})}
    gate = asyncio.Semaphore(concurrency)
    samples: list[CallSample] = []

    async def one(index: int) -> None:
        async with gate:
            sample = await _measure(
                orch, agent, task_list[index % len(task_list)], index, call_options
            )
        samples.append(sample)
        if on_progress is not None:
            on_progress(len(samples), n, sample)

    # The SDK's import (about a second, once per process) is not call latency: do it untimed.
    await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "anthropic")
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    model = str(call_options.get("model") or getattr(orch, "model", "") or "")
    return BenchResult(
        agent=agent, model=model, n=n, concurrency=concurrency, wall_s=wall, samples=samples
    )


async def _measure(
    orch: AsyncAgentOrchestrator, agent: str, task: str, index: int, options: Mapping[str, Any]
) -> CallSample:
    start = time.perf_counter()
    try:
        result = await orch.execute_agent(agent, task, **options)
    except ClaudeForceError as exc:
        return CallSample(index, time.perf_counter() - start, False, type(exc).__name__)
    latency = time.perf_counter() - start
    meta = result.metadata
    error_type = None
    if not result.success:
        error_type = type(result.error).__name__ if result.error is not None else "ResponseError"
    return CallSample(
        index=index,
        latency_s=latency,
        success=result.success,
        error_type=error_type,
        input_tokens=int(meta.get("input_tokens") or 0),
        output_tokens=int(meta.get("output_tokens") or 0),
        cost_usd=meta.get("cost_usd"),
        attempts=int(meta.get("attempts") or 1),
    )
