"""The benchmark harness's own ceiling, against a bare ``AsyncAnthropic`` loop in the same run.

Run:  .venv/bin/python benchmarks/bench_bench.py [--quick] [--png docs/benchmarking-sweep.png]

The simulator runs in another process (``python -m claude_force_magic.simulator``), so the
client's CPU is this process's alone. Two questions:

1. **Throughput ceiling.** Against a zero-latency simulator, how many streamed calls per second
   does ``run_benchmark`` drive at concurrency 1, 4, 16, 64, and how does that compare with a
   bare loop (``AsyncAnthropic.messages.create(stream=True)`` under a semaphore, reading every
   event) in the same run? Alternated, so drift hits both.
2. **TTFT bias.** Against a simulator that waits a fixed ``--ttft`` (50 ms) before the first
   delta, per call: measured TTFT minus what the simulator says it served for that request
   (arrival to writing its first delta, sent back in the stream's ``message_delta``), which is
   what the client adds; beside it the older figure, measured minus the 50 ms it meant (which
   also charges the simulator's own scheduling delay to the client). At concurrency 1 and 16,
   and in open loop at rising rates (the highest rate whose median bias stays under 2 ms is
   the harness's ceiling for TTFT work). The bare loop's bias at the same concurrency is the
   floor of the SDK on this machine.

``--png`` also renders a small sweep's plot (latency vs throughput, box plots, CDF) for the
user's guide. Every figure is printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from claude_force_magic.bench import run_benchmark, run_sweep  # noqa: E402
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator  # noqa: E402
from claude_force_magic.metrics import Metrics, percentile  # noqa: E402
from claude_force_magic.simulator.wire import SERVED_TTFT_FIELD  # noqa: E402

MODEL = "claude-haiku-4-5"
AGENT = "python-expert"
MAX_TOKENS = 64


@contextmanager
def simulator(*args: str) -> Iterator[str]:
    """A simulator in its own process; yields its base URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "claude_force_magic.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(timeout=10)


def orchestrator(url: str, concurrency: int) -> AsyncAgentOrchestrator:
    return AsyncAgentOrchestrator(
        api_key="sk-bench",
        base_url=url,
        enable_cache=False,
        max_concurrent=concurrency,
        calls_per_minute=None,
        metrics=Metrics(),
        max_retries=0,
        model=MODEL,
    )


Run = tuple[float, list[float], list[float]]


async def harness(url: str, n: int, concurrency: int, **kwargs: Any) -> Run:
    """(calls/s, TTFTs, TTFT minus served per call) of one ``run_benchmark`` run (after a
    warm-up of ``concurrency``)."""
    cap = kwargs.get("max_concurrency") or (n if "rate" in kwargs else concurrency)
    async with orchestrator(url, cap) as orch:
        result = await run_benchmark(
            orch,
            AGENT,
            n=n,
            concurrency=concurrency,
            warmup=concurrency,
            options={"max_tokens": MAX_TOKENS},
            **kwargs,
        )
    assert result.succeeded == n, result.errors_by_type
    return result.throughput, result.values("ttft"), result.ttft_bias


async def bare(url: str, n: int, concurrency: int) -> Run:
    """(calls/s, TTFTs, TTFT minus served per call) of a bare AsyncAnthropic streaming loop
    under a semaphore."""
    import anthropic

    client = anthropic.AsyncAnthropic(api_key="sk-bench", base_url=url, max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []
    biases: list[float] = []

    async def one(i: int, record: bool) -> None:
        async with gate:
            sent = time.monotonic()
            stream = await client.messages.create(
                model=MODEL,
                max_tokens=MAX_TOKENS,
                stream=True,
                messages=[{"role": "user", "content": f"Bare task {i}: explain one idea."}],
            )
            first = served = None
            async for event in stream:
                if first is None and event.type == "content_block_delta":
                    first = time.monotonic() - sent
                elif event.type == "message_delta":
                    served = getattr(event, SERVED_TTFT_FIELD, None)
            if record and first is not None:
                ttfts.append(first)
                if served is not None:
                    biases.append(first - served / 1000.0)

    await asyncio.gather(*(one(-i - 1, False) for i in range(concurrency)))  # warm-up
    start = time.perf_counter()
    await asyncio.gather(*(one(i, True) for i in range(n)))
    wall = time.perf_counter() - start
    await client.close()
    return n / wall, ttfts, biases


def ms(values: list[float], q: float, minus: float = 0.0) -> str:
    return f"{(percentile(values, q) - minus) * 1000:6.2f}" if values else "   n/a"


async def ceiling(url: str, rounds: int, n: int) -> None:
    print(f"\n1. throughput ceiling, zero-latency simulator, {n} streamed calls, {rounds} rounds")
    print("concurrency | harness calls/s (median) | bare calls/s (median) | harness / bare")
    for c in (1, 4, 16, 64):
        ours, base = [], []
        for _ in range(rounds):
            ours.append((await harness(url, n, c))[0])
            base.append((await bare(url, n, c))[0])
        ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
        print(
            f"{c:11d} | {statistics.median(ours):24.0f} | {statistics.median(base):21.0f} | "
            f"{ratio:.2f} (runs {min(ours):.0f}-{max(ours):.0f} vs {min(base):.0f}-{max(base):.0f})"
        )


def spread(values: list[float]) -> str:
    """``median (min-max)`` of per-round figures, in ms."""
    ms_values = [v * 1000 for v in values]
    return f"{statistics.median(ms_values):5.2f} ({min(ms_values):.2f}-{max(ms_values):.2f})"


async def bias(url: str, ttft: float, n: int, rounds: int, rates: list[float]) -> None:
    print(
        f"\n2. TTFT bias per call, ms: measured - served (what the simulator says it did for "
        f"that request) and measured - {ttft * 1000:.0f} ms (what it meant); {n} calls a run, "
        f"median of {rounds} rounds (range)"
    )
    print("load   | client   | served p50         | served p99         | intended p50")
    for c in (1, 16):
        figures: dict[str, list[list[float]]] = {"harness": [[], [], []], "bare": [[], [], []]}
        for _ in range(rounds):  # alternated, so drift hits both
            for name, run in (("harness", harness), ("bare", bare)):
                _, ttfts, served = await run(url, n, c)
                figures[name][0].append(percentile(served, 0.5))
                figures[name][1].append(percentile(served, 0.99))
                figures[name][2].append(percentile(ttfts, 0.5) - ttft)
        for name, (p50, p99, intended) in figures.items():
            print(
                f"c={c:<4d} | {name:8s} | {spread(p50):18s} | {spread(p99):18s} | "
                f"{spread(intended)}"
            )
    best = None
    print("open loop (harness, concurrency cap = n) | served p50 | served p99 | achieved")
    for rate in rates:
        achieved, _, served = await harness(url, n, 1, rate=rate)
        p50 = percentile(served, 0.5)
        print(
            f"rate {rate:6.0f}/s {'':26s} | {p50 * 1000:10.2f} | {ms(served, 0.99):>10} | "
            f"{achieved:.0f} calls/s"
        )
        if p50 < 0.002:
            best = rate
    tried = ", ".join(f"{r:g}" for r in rates)
    print(
        "highest open-loop rate with median TTFT bias (vs served) under 2 ms: "
        f"{best or 'none'} (tried {tried}/s)"
    )


async def sweep_png(url: str, path: Path) -> None:
    async with orchestrator(url, 16) as orch:
        sweep = await run_sweep(
            orch,
            [AGENT, "code-reviewer"],
            models=[MODEL],
            concurrency=[1, 4, 16],
            n=48,
            warmup=4,
            slo="ttft=0.3,e2e=2",
            options={"max_tokens": 256},
        )
    figure = sweep.plot()
    figure.savefig(path, dpi=90)
    print(f"\nsweep plot written to {path}")
    print(sweep.frame(brief=True).to_string(index=False))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--png", type=Path, help="also render a sweep plot to this PNG")
    parser.add_argument("--bias-only", action="store_true", help="only part 2 (TTFT bias)")
    args = parser.parse_args()
    n, rounds = (200, 1) if args.quick else (600, 3)
    if not args.bias_only:
        with simulator() as url:
            await ceiling(url, rounds, n)
    with simulator("--ttft", "0.05") as url:
        await bias(url, 0.05, n // 2, max(3, rounds), [5, 10, 25, 50, 100])
    if args.png:
        spec = ("--latency", "lognormal:0.15,0.6", "--per-token", "0.002")
        with simulator(*spec) as url:
            await sweep_png(url, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
