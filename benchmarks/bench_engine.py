"""Engine benchmark: scheduling efficiency, rate-limit goodput, memory growth.

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py            # full run (about 3-4 minutes)
    .venv/bin/python benchmarks/bench_engine.py --quick    # smaller numbers, under a minute

1. Scheduling efficiency: N tasks against a simulator (its own process) with a fixed 200 ms
   latency, ``max_concurrent=32``, no rate limit, cache off. Throughput / ideal (32 / 0.2 s =
   160/s), and the same against a bare ``AsyncAnthropic`` + ``asyncio.Semaphore(32)`` baseline.
2. Rate-limit goodput: the orchestrator limited to R requests/min against a simulator enforcing
   R requests/min (``--rpm``). The server's bucket starts full, so the first R requests pass in
   a burst; goodput is measured over the steady state after it. Baseline: plain
   ``asyncio.gather`` over the raw SDK (its default retries on), counting 429 answers.
3. Memory growth (RSS, after a warm-up) over many calls: cache hits, and live calls against a
   zero-latency simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psutil

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.metrics import Metrics

AGENT = "python-expert"
KEY = "sk-bench"


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[str]:
    """Start ``python -m claude_force_magic.simulator`` in its own process; yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_force_magic.simulator", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"simulator did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def orchestrator(url: str, **kwargs: Any) -> AsyncAgentOrchestrator:
    kwargs.setdefault("calls_per_minute", None)
    kwargs.setdefault("enable_cache", False)
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("deadline_seconds", None)
    return AsyncAgentOrchestrator(api_key=KEY, base_url=url, **kwargs)


def tasks(n: int, tag: str) -> list[tuple[str, str]]:
    return [(AGENT, f"{tag} question number {i}") for i in range(n)]


# -- 1. scheduling efficiency ---------------------------------------------------------------------


async def engine_throughput(url: str, n: int, concurrency: int) -> tuple[float, int]:
    async with orchestrator(url, max_concurrent=concurrency) as orch:
        await orch.execute_agent(AGENT, "warm up the connection pool")
        started = time.perf_counter()
        results = await orch.execute_multiple(tasks(n, "sched"))
        elapsed = time.perf_counter() - started
    return n / elapsed, sum(not r.success for r in results)


async def raw_throughput(url: str, n: int, concurrency: int) -> tuple[float, int]:
    import anthropic

    from claude_force_magic.agents import AgentRegistry

    system = AgentRegistry.load().get(AGENT).system_prompt  # the same request body as ours
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(text: str) -> None:
        nonlocal failures
        async with semaphore:
            try:
                await client.messages.create(
                    model="claude-sonnet-5-5",
                    max_tokens=4096,
                    system=system,
                    messages=[{"role": "user", "content": text}],
                )
            except anthropic.APIError:
                failures += 1

    await one("warm up")
    started = time.perf_counter()
    await asyncio.gather(*(one(t) for _, t in tasks(n, "raw")))
    elapsed = time.perf_counter() - started
    await client.close()
    return n / elapsed, failures


def bench_scheduling(n: int) -> None:
    concurrency, latency = 32, 0.2
    ideal = concurrency / latency
    with simulator_process("--latency", f"fixed:{latency}") as url:
        raw, raw_fail = asyncio.run(raw_throughput(url, n, concurrency))
        ours, fail = asyncio.run(engine_throughput(url, n, concurrency))
    print(
        f"\n1. Scheduling efficiency: {n:,} tasks, latency {latency * 1000:.0f} ms, "
        f"max_concurrent={concurrency}, ideal {ideal:.0f}/s"
    )
    print(f"   {'':<34}{'req/s':>9}{'/ ideal':>9}{'failed':>8}")
    print(f"   {'raw AsyncAnthropic + Semaphore':<34}{raw:>9.1f}{raw / ideal:>9.3f}{raw_fail:>8}")
    print(f"   {'AsyncAgentOrchestrator':<34}{ours:>9.1f}{ours / ideal:>9.3f}{fail:>8}")
    print(f"   orchestrator / raw baseline: {ours / raw:.3f}   (goal: / ideal >= 0.9)")


# -- 2. rate-limit goodput ------------------------------------------------------------------------


async def engine_goodput(url: str, rpm: int, steady: int) -> tuple[float, int, int, float]:
    done: list[float] = []
    async with orchestrator(url, calls_per_minute=rpm, max_concurrent=64) as orch:
        started = time.perf_counter()
        results = await orch.execute_multiple(
            tasks(rpm + steady, "rate"),
            on_progress=lambda *_: done.append(time.perf_counter()),
        )
        total = time.perf_counter() - started
    limited = sum(1 for r in results if r.error is not None and "429" in str(r.error))
    ok = sum(r.success for r in results)
    done.sort()
    # Steady state: the last half of the requests beyond the burst. (Right after the burst both
    # buckets still hold what refilled while the burst was being sent and served.)
    tail = done[-max(2, steady // 2) :]
    rate_per_min = (len(tail) - 1) / (tail[-1] - tail[0]) * 60
    return rate_per_min, limited, ok, total


async def raw_goodput(url: str, rpm: int, steady: int) -> tuple[float, int, int, float]:
    import anthropic
    import httpx2

    statuses: list[int] = []

    async def hook(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    http = httpx2.AsyncClient(event_hooks={"response": [hook]}, timeout=60)
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, http_client=http)  # retries: 2
    ok = 0

    async def one(text: str) -> None:
        nonlocal ok
        try:
            await client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=4096,
                messages=[{"role": "user", "content": text}],
            )
            ok += 1
        except anthropic.APIError:
            pass

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for _, t in tasks(rpm + steady, "rawrate")))
    total = time.perf_counter() - started
    await client.close()
    await http.aclose()
    steady_ok = max(0, ok - rpm)
    rate = steady_ok / max(total, 1e-9) * 60
    return rate, statuses.count(429), ok, total


def bench_rate_limit(rpm: int, steady: int) -> None:
    with simulator_process("--rpm", str(rpm)) as url:
        ours = asyncio.run(engine_goodput(url, rpm, steady))
    with simulator_process("--rpm", str(rpm)) as url:
        raw = asyncio.run(raw_goodput(url, rpm, steady))
    n = rpm + steady
    print(
        f"\n2. Rate-limit goodput: {n:,} requests, limiter and server both at {rpm} req/min "
        f"(server bucket starts full: the first {rpm} pass as a burst)"
    )
    print(f"   {'':<36}{'steady req/min':>15}{'/ R':>7}{'429s':>7}{'ok':>7}{'time s':>8}")
    for name, (rate, limited, ok, total) in (
        ("AsyncAgentOrchestrator (limiter)", ours),
        ("asyncio.gather, raw SDK, 2 retries", raw),
    ):
        print(f"   {name:<36}{rate:>15.1f}{rate / rpm:>7.3f}{limited:>7}{ok:>7}{total:>8.1f}")
    print(
        "   (goal: limiter steady rate / R >= 0.95 with zero 429s; baseline rate counts "
        "successes beyond the burst over its whole run)"
    )


# -- 3. memory growth -----------------------------------------------------------------------------


def rss_mb() -> float:
    gc.collect()
    return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20


async def memory_run(url: str, n: int, *, cached: bool, warmup: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CLAUDE_CACHE_SECRET", "bench-secret-0123456789abcdef")
        orch = orchestrator(
            url,
            enable_cache=cached,
            cache_dir=os.path.join(tmp, "c"),
            max_concurrent=32,
            metrics=Metrics(),
        )
        async with orch:
            text = "Explain memory growth"

            async def calls(count: int, tag: str) -> None:
                batch = 1000
                for start in range(0, count, batch):
                    size = min(batch, count - start)
                    items = [(AGENT, text)] * size if cached else tasks(size, f"{tag}{start}")
                    results = await orch.execute_multiple(items)
                    if not all(r.success for r in results):
                        raise RuntimeError(results[0].errors)

            await calls(warmup, "warm")
            before = rss_mb()
            started = time.perf_counter()
            await calls(n, "mem")
            elapsed = time.perf_counter() - started
            after = rss_mb()
    return after - before, n / elapsed, before


def bench_memory(n_cached: int, n_live: int, warmup: int) -> None:
    with simulator_process("--latency", "fixed:0") as url:
        cached = asyncio.run(memory_run(url, n_cached, cached=True, warmup=warmup))
        live = asyncio.run(memory_run(url, n_live, cached=False, warmup=warmup))
    print(f"\n3. Memory growth (RSS after a {warmup:,}-call warm-up; metrics history 10,000)")
    print(f"   {'':<26}{'calls':>9}{'calls/s':>9}{'RSS before MB':>15}{'growth MB':>11}")
    print(
        f"   {'cache hits':<26}{n_cached:>9,}{cached[1]:>9.0f}{cached[2]:>15.1f}{cached[0]:>11.2f}"
    )
    name = "live (0 ms simulator)"
    print(f"   {name:<26}{n_live:>9,}{live[1]:>9.0f}{live[2]:>15.1f}{live[0]:>11.2f}")
    print("   (goal: growth <= 10 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers, under a minute")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--steady", type=int, default=200, help="requests after the burst")
    parser.add_argument("--cached", type=int, default=100_000)
    parser.add_argument(
        "--live", type=int, default=100_000, help="live calls against the 0 ms simulator"
    )
    parser.add_argument("--warmup", type=int, default=12_000)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rpm, args.steady = 320, 300, 50
        args.cached = args.live = 10_000
        args.warmup = 2_000
    print(f"bench_engine: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    started = time.perf_counter()
    bench_scheduling(args.tasks)
    bench_rate_limit(args.rpm, args.steady)
    bench_memory(args.cached, args.live, args.warmup)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
