"""Load generation: closed loop (a fixed number of calls in flight) or open loop (arrivals).

Closed loop (``rate=None``): ``concurrency`` workers each start their next call as soon as the
last one ends. Open loop (``rate=R``): calls arrive at their own pace whatever the server does,
as in vLLM's ``benchmark_serving``: gaps between arrivals are gamma-distributed with shape
``burstiness`` and mean ``1/R`` (``burstiness=1`` is a Poisson process: exponential gaps; below
1 burstier, above 1 more regular), drawn from a seeded RNG so that a run repeats;
``rate=inf`` sends every call at once. ``max_concurrency`` caps the calls in flight of an open
loop: an arrival that finds the cap reached waits for a slot (its end-to-end latency includes
that wait, its TTFT does not).
"""

from __future__ import annotations

import asyncio
import importlib
import math
import random
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ClaudeForceError, ConfigurationError
from .result import SLO, BenchResult, CallSample

if TYPE_CHECKING:
    from ..engine.orchestrator import AsyncAgentOrchestrator

__all__ = [
    "ProgressCallback",
    "TimingReference",
    "arrival_offsets",
    "default_tasks",
    "run_benchmark",
]

ProgressCallback = Callable[[int, int, CallSample], None]


@runtime_checkable
class TimingReference(Protocol):
    """A server that can say what it did (the simulator is one)."""

    def served_ttft(self) -> Mapping[str, float]:
        """``{request id: seconds}`` from each request's arrival at the server to the moment
        the server wrote its first text delta."""
        ...


def default_tasks(n: int, agent: str, *, prefix: str = "Benchmark task") -> list[str]:
    """``n`` distinct, small tasks (distinct so that no two calls share a cache key)."""
    return [
        f"{prefix} {i + 1} of {n} for {agent}: explain one idea in two sentences." for i in range(n)
    ]


def arrival_offsets(
    rate: float,
    *,
    n: int | None = None,
    duration: float | None = None,
    burstiness: float = 1.0,
    seed: int = 0,
) -> list[float]:
    """When each call of an open-loop run arrives, in seconds after the start (the first at 0).

    Gaps are gamma(shape=``burstiness``, scale=``1/(rate*burstiness)``), mean ``1/rate``, from
    ``random.Random(seed)``. Stops after ``n`` arrivals or at the first one at or past
    ``duration`` seconds (exactly one of them must be given). ``rate=inf``: all at 0 (needs
    ``n``). Raises ``ConfigurationError`` for a rate or burstiness that is not positive.
    """
    if not rate > 0:
        raise ConfigurationError(f"rate must be a positive number of calls/s, got {rate}")
    if not (burstiness > 0 and math.isfinite(burstiness)):
        raise ConfigurationError(f"burstiness must be a positive number, got {burstiness}")
    if (n is None) == (duration is None):
        raise ConfigurationError("an open-loop schedule needs exactly one of n or duration")
    if math.isinf(rate):
        if n is None:
            raise ConfigurationError("rate=inf sends every call at once: give n, not duration")
        return [0.0] * n
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)
    offsets: list[float] = []
    at = 0.0
    while (n is None or len(offsets) < n) and (duration is None or at < duration):
        offsets.append(at)
        at += rng.gammavariate(burstiness, scale)
    return offsets


async def run_benchmark(
    orch: AsyncAgentOrchestrator,
    agent: str,
    tasks: Sequence[str] | None = None,
    *,
    n: int | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    burstiness: float = 1.0,
    duration: float | None = None,
    warmup: int = 0,
    max_concurrency: int | None = None,
    slo: SLO | str | None = None,
    stream: bool = True,
    seed: int = 0,
    reference: TimingReference | None = None,
    on_progress: ProgressCallback | None = None,
    use_cache: bool = False,
    options: Mapping[str, Any] | None = None,
    tasks_label: str = "",
) -> BenchResult:
    """Benchmark ``agent``: ``n`` calls (default 50) or as many as fit in ``duration`` seconds.

    Closed loop by default (``concurrency`` calls in flight); open loop when ``rate`` is given
    (see the module docstring; ``max_concurrency`` caps it). ``warmup`` calls run first at the
    same concurrency and are not counted. Calls stream (``stream=False`` for plain requests:
    no TTFT/TPOT/ITL then). ``slo`` (an :class:`SLO` or ``"ttft=2,e2e=20"``) adds goodput.
    Each call's ``ttft_bias_s`` is its TTFT minus what the server says it served: from the
    server's own report on the wire (the simulator sends one in every paced stream, so it may
    run in another process), or from ``reference`` (e.g. an in-process
    :class:`~claude_force_magic.simulator.Simulator`'s log), which wins when given.

    ``tasks`` are cycled (default: distinct generated tasks). The cache is bypassed unless
    ``use_cache``; ``options`` are :meth:`execute_agent` options. Failures (including caller
    errors such as a budget stop) are recorded per call, never raised; ``on_progress(done,
    total, sample)`` runs on the orchestrator's loop after each counted call and must not block
    (``total`` is ``n``, or for a duration run the calls expected so far).

    Raises ``ConfigurationError`` (a ``ValueError``) for a count, concurrency, rate, burstiness
    or duration that is not positive, ``n`` with ``duration``, an empty ``tasks``, a bad SLO or
    a bad call option, before anything is sent. Cancelling the coroutine cancels every call.
    """
    plan = _Plan.build(
        agent, tasks, n, concurrency, rate, burstiness, duration, warmup, max_concurrency, seed
    )
    _fit_orchestrator(plan, orch, rate, concurrency, max_concurrency)
    from ..engine.request import CallOptions

    call = CallOptions.from_kwargs(use_cache=use_cache, **(options or {}))
    goal = SLO.parse(slo) if isinstance(slo, str) else slo
    runner = _Runner(orch, agent, call, stream, plan.tasks)
    # The SDK's import (about a second, once per process) is not call latency: do it untimed.
    await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "anthropic")
    if plan.warmup:
        await runner.closed(plan.warmup_tasks, n=plan.warmup, workers=plan.cap, counted=False)
    runner.on_progress = on_progress
    start = time.perf_counter()
    if rate is None:
        await runner.closed(plan.tasks, n=plan.n, workers=plan.cap, duration=duration)
    else:
        await runner.open(plan.offsets, plan.cap)
    wall = time.perf_counter() - start
    samples = _with_bias(runner.samples, reference)
    model = str(call.model or getattr(orch, "model", "") or "")
    return BenchResult(
        agent=agent,
        model=model,
        n=len(samples),
        concurrency=plan.cap,
        wall_s=wall,
        samples=samples,
        rate=rate,
        burstiness=burstiness,
        warmup=plan.warmup,
        slo=goal,
        tasks=tasks_label,
        itl_gaps=runner.gaps,
    )


def _fit_orchestrator(
    plan: _Plan, orch: Any, rate: float | None, concurrency: int, max_concurrency: int | None
) -> None:
    """Refuse a load the orchestrator's ``max_concurrent`` would silently cap; an uncapped
    open loop is capped by it (and says so in ``BenchResult.concurrency``)."""
    asked = concurrency if rate is None else max_concurrency
    limit = check_fits_orchestrator(
        orch, "concurrency" if rate is None else "max_concurrency", asked
    )
    if limit is not None:
        plan.cap = min(plan.cap, limit)


def check_fits_orchestrator(orch: Any, flag: str, asked: int | None) -> int | None:
    """The orchestrator's ``max_concurrent`` (None when it has none).

    Raises ``ConfigurationError`` when ``asked`` calls in flight (the value of the argument
    ``flag``) are more than it allows: the orchestrator would cap them silently and the
    numbers would lie. Used by :func:`run_benchmark` and, for a whole grid, by ``run_sweep``.
    """
    limit = getattr(orch, "max_concurrent", None)
    if not isinstance(limit, int):
        return None
    if asked is not None and asked > limit:
        raise ConfigurationError(
            f"{flag}={asked} is above the orchestrator's max_concurrent={limit}, which would "
            f"cap the calls in flight: build it with max_concurrent={asked} or more"
        )
    return limit


class _Plan:
    """The validated shape of one run."""

    __slots__ = ("cap", "n", "offsets", "tasks", "warmup", "warmup_tasks")

    def __init__(self) -> None:
        self.n: int | None = None
        self.cap = 1
        self.offsets: list[float] = []
        self.tasks: list[str] = []
        self.warmup = 0
        self.warmup_tasks: list[str] = []

    @classmethod
    def build(
        cls,
        agent: str,
        tasks: Sequence[str] | None,
        n: int | None,
        concurrency: int,
        rate: float | None,
        burstiness: float,
        duration: float | None,
        warmup: int,
        max_concurrency: int | None,
        seed: int,
    ) -> _Plan:
        plan = cls()
        if n is not None and duration is not None:
            raise ConfigurationError("give either n or duration, not both")
        if n is None and duration is None:
            n = 50
        if n is not None and n < 1:
            raise ConfigurationError(f"n must be at least 1 (got n={n})")
        if duration is not None and not (duration > 0 and math.isfinite(duration)):
            raise ConfigurationError(
                f"duration must be a positive number of seconds, got {duration}"
            )
        if warmup < 0:
            raise ConfigurationError(f"warmup must be 0 or more (got {warmup})")
        for name, value in (("concurrency", concurrency), ("max_concurrency", max_concurrency)):
            if value is not None and value < 1:
                raise ConfigurationError(f"{name} must be at least 1 (got {name}={value})")
        plan.n = n
        if rate is None:
            plan.cap = concurrency
        else:
            plan.offsets = arrival_offsets(
                rate, n=n, duration=duration, burstiness=burstiness, seed=seed
            )
            plan.n = len(plan.offsets)
            plan.cap = max_concurrency or max(1, len(plan.offsets))
        # A closed-loop duration run does not know its count: 1,000 distinct tasks, cycled.
        count = plan.n or 1000
        plan.tasks = list(tasks) if tasks is not None else default_tasks(count, agent)
        if not plan.tasks:
            raise ConfigurationError("tasks is empty: give at least one task")
        plan.warmup = warmup
        if tasks is None:
            plan.warmup_tasks = default_tasks(max(warmup, 1), agent, prefix="Warm-up task")
        else:
            plan.warmup_tasks = plan.tasks
        return plan


class _Runner:
    """Runs and measures calls; collects counted samples and pooled inter-delta gaps."""

    def __init__(
        self,
        orch: AsyncAgentOrchestrator,
        agent: str,
        call: Any,
        stream: bool,
        tasks: list[str],
    ) -> None:
        self.orch, self.agent, self.call, self.stream = orch, agent, call, stream
        self.tasks = tasks
        self.samples: list[CallSample] = []
        self.gaps: array[float] = array("d")
        self.on_progress: ProgressCallback | None = None
        self.expected = 0
        self._start = time.perf_counter()

    async def closed(
        self,
        tasks: list[str],
        *,
        n: int | None,
        workers: int,
        duration: float | None = None,
        counted: bool = True,
    ) -> None:
        """``workers`` loops, each starting its next call when the last ends, until ``n`` calls
        were started or ``duration`` seconds passed."""
        self._start = time.perf_counter()
        self.expected = n or 0
        issued = 0

        def next_index() -> int | None:
            nonlocal issued
            if n is not None and issued >= n:
                return None
            if duration is not None and time.perf_counter() - self._start >= duration:
                return None
            issued += 1
            return issued - 1

        async def worker() -> None:
            while (index := next_index()) is not None:
                await self._one(index, tasks[index % len(tasks)], counted)

        count = workers if n is None else min(workers, n)
        await _all(worker() for _ in range(count))

    async def open(self, offsets: list[float], cap: int) -> None:
        """One call per arrival offset, started on schedule; at most ``cap`` in flight."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(cap)
        self._start = time.perf_counter()
        self.expected = len(offsets)
        t0 = loop.time()

        async def one(index: int) -> None:
            sent = time.perf_counter() - self._start
            async with gate:
                await self._one(index, self.tasks[index % len(self.tasks)], True, sent)

        started: list[asyncio.Future[None]] = []
        try:
            for index, offset in enumerate(offsets):
                delay = t0 + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                started.append(asyncio.ensure_future(one(index)))
            await asyncio.gather(*started)
        finally:
            for fut in started:
                fut.cancel()
            if started:
                await asyncio.gather(*started, return_exceptions=True)

    async def _one(self, index: int, task: str, counted: bool, sent: float | None = None) -> None:
        sample, gaps = await self._measure(index, task)
        if sent is not None:
            sample = replace(sample, sent_s=sent)
        if not counted:
            return
        self.samples.append(sample)
        self.gaps.extend(gaps)
        if self.on_progress is not None:
            self.on_progress(len(self.samples), max(self.expected, len(self.samples)), sample)

    async def _measure(self, index: int, task: str) -> tuple[CallSample, list[float]]:
        gaps: list[float] = []
        last: list[float] = []

        def on_text(_piece: str) -> None:
            now = time.perf_counter()
            if last:
                gaps.append(now - last[0])
                last[0] = now
            else:
                last.append(now)

        sent = time.perf_counter()
        try:
            result = await self.orch.execute(
                self.agent, task, self.call, on_text=on_text if self.stream else None
            )
        except ClaudeForceError as exc:
            latency = time.perf_counter() - sent
            return CallSample(
                index, latency, False, type(exc).__name__, sent_s=sent - self._start
            ), []
        latency = time.perf_counter() - sent
        return _sample(index, latency, sent - self._start, result), gaps if result.success else []


def _sample(index: int, latency: float, sent: float, result: Any) -> CallSample:
    meta = result.metadata
    error_type = None
    if not result.success:
        error_type = type(result.error).__name__ if result.error is not None else "ResponseError"
    itl = meta.get("itl")
    ttft, served = meta.get("ttft_s"), meta.get("server_ttft_s")
    return CallSample(
        index=index,
        latency_s=latency,
        success=result.success,
        error_type=error_type,
        input_tokens=int(meta.get("input_tokens") or 0),
        output_tokens=int(meta.get("output_tokens") or 0),
        cost_usd=meta.get("cost_usd"),
        attempts=int(meta.get("attempts") or 1),
        sent_s=sent,
        ttft_s=ttft,
        tpot_s=meta.get("tpot_s"),
        itl_p50_s=None if not itl else float(itl["p50_s"]),
        output_tokens_per_s=meta.get("output_tokens_per_s"),
        request_id=meta.get("request_id"),
        ttft_bias_s=None if ttft is None or served is None else ttft - served,
    )


def _with_bias(samples: list[CallSample], reference: TimingReference | None) -> list[CallSample]:
    """``samples`` with ``ttft_bias_s`` filled in where ``reference`` knows the request."""
    if reference is None:
        return samples
    served = reference.served_ttft()
    out = []
    for s in samples:
        at_server = served.get(s.request_id) if s.request_id is not None else None
        if at_server is not None and s.ttft_s is not None:
            s = replace(s, ttft_bias_s=s.ttft_s - at_server)
        out.append(s)
    return out


async def _all(coros: Any) -> None:
    """Run ``coros`` concurrently; if one raises or the caller is cancelled, cancel the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
