"""Benchmark: a large run through the Message Batches API, against the project's simulator.

Run::

    .venv/bin/python benchmarks/bench_batch.py            # 20,000 items of ~2 KB answers
    .venv/bin/python benchmarks/bench_batch.py --quick    # 2,000 items

The simulator runs in its own process (``python -m claude_force_magic.simulator``) so that the
memory measured is the client's alone; its batches take ``--batch-seconds`` to process and
hold at most ``--max-requests`` requests, so a run of 20,000 items is split into several
batches (the API's own limit is 100,000). First ``--cached`` of the tasks are answered live, so
they are in the response cache; then every task is submitted with ``submit_batch``, polled to
the end and collected with ``iter_results`` (streamed, not kept). Reported:

- wall time of submitting (building, screening, cache lookups, splitting, registry, uploads)
  and of collecting (results JSONL, validation, pricing, cache stores, metrics, settlement):
  the simulated processing time between the two is excluded;
- the peak of Python allocations (``tracemalloc``) while collecting, and the process RSS;
  goal: under 100 MB for 20,000 results of ~2 KB;
- the cost of the batch against the same items live: every succeeded item's cost is compared
  with the live price of its own usage (goal: exactly 50 %), and a sample of items is sent
  live too, to check that their answers and usage are the batch's;
- cached items never sent: the request counts the simulator reports for the job's batches
  add up to the items that were not cached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import psutil

from claude_force_magic.engine.batch import BatchLimits
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.metrics import Metrics

AGENT = "python-expert"
KEY = "sk-bench-batch"
SECRET = "benchmark-secret-0123456789abcdef"
_WORDS = "abcdefghij" * 6


def task(i: int) -> str:
    """A task whose simulated answer is about 2 KB (the simulator reuses the task's words)."""
    return "Review function " + " ".join(f"component{i}_{_WORDS}{k}" for k in range(7))


def start_simulator(batch_seconds: float, max_requests: int) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "claude_force_magic.simulator",
            "--batch-seconds",
            str(batch_seconds),
            "--batch-max-requests",
            str(max_requests),
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().decode().strip()


class RssSampler:
    """The process's peak RSS, sampled every 5 ms in a thread until :meth:`stop`."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self._peak = proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.005):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self._peak, self._proc.memory_info().rss)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


async def run(args: argparse.Namespace, base_url: str, cache_dir: Path) -> None:
    proc = psutil.Process()
    orch = AsyncAgentOrchestrator(
        api_key=KEY,
        base_url=base_url,
        cache_dir=cache_dir,
        max_retries=2,
        calls_per_minute=None,
        max_tokens=1024,
        max_concurrent=32,
        metrics=Metrics(history=1000),
    )
    async with orch:
        items = [(AGENT, task(i)) for i in range(args.items)]
        cached = await orch.execute_multiple(items[: args.cached])
        assert all(r.success for r in cached)
        rss_before = proc.memory_info().rss

        start = time.perf_counter()
        job = await orch.submit_batch(items, limits=BatchLimits(max_requests=args.max_requests))
        submit_s = time.perf_counter() - start
        rss_submitted = proc.memory_info().rss
        print(
            f"submitted {job.total:,} items in {submit_s:.2f} s: {job.cached_count:,} from the "
            f"cache, {len(job.ids)} batch(es) of at most {args.max_requests:,}; RSS "
            f"+{mib(rss_submitted - rss_before)}"
        )

        start = time.perf_counter()
        status = await job.wait(poll=min(1.0, args.batch_seconds / 4), max_poll=2.0)
        print(f"processing (simulated, excluded): {time.perf_counter() - start:.2f} s; {status}")

        sampler = RssSampler(proc)
        if args.trace_collect:
            tracemalloc.start()
        start = time.perf_counter()
        answers = succeeded = 0
        batch_cost = Decimal(0)
        live_equivalent = Decimal(0)
        async for result in job.iter_results():
            answers += len(result.output)
            meta = result.metadata
            if meta["result_type"] == "succeeded":
                succeeded += 1
                batch_cost += Decimal(str(meta["cost_usd"]))
                live = orch.prices.cost(meta["model"], meta)
                assert live is not None
                live_equivalent += Decimal(str(live))
        collect_s = time.perf_counter() - start
        rss_peak = sampler.stop()
        traced = ""
        if args.trace_collect:
            traced = f"; peak Python allocations {mib(tracemalloc.get_traced_memory()[1])}"
            tracemalloc.stop()
        print(
            f"collected {job.total:,} results ({answers / max(1, job.total):,.0f} characters "
            f"each on average) in {collect_s:.2f} s; RSS peak while collecting "
            f"+{mib(rss_peak - rss_submitted)} over the submitted job{traced}"
        )
        # the same results read again by a re-attached job (from the API, not charged again),
        # under tracemalloc: the peak of Python allocations of streaming them in item order
        again = await orch.batch(job.id)
        tracemalloc.start()
        start = time.perf_counter()
        async for result in again.iter_results():
            answers -= len(result.output)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert answers == 0
        print(
            f"re-attached and read again (tracemalloc on: {time.perf_counter() - start:.2f} s): "
            f"peak Python allocations {mib(peak)} (goal: under 100 MB)"
        )
        print(
            f"submit + collect, processing excluded: {submit_s + collect_s:.2f} s "
            f"({job.total / (submit_s + collect_s):,.0f} items/s)"
        )

        # cost: each item at the batch price against the live price of the same usage
        ratio = batch_cost / live_equivalent
        print(
            f"cost of {succeeded:,} batch items: ${batch_cost:.4f}; the same usage live: "
            f"${live_equivalent:.4f}; ratio {ratio:.6f} (goal 0.5); budget spent "
            f"${orch.spent_usd:.4f} (including the {args.cached:,} live calls)"
        )
        sample = items[args.cached : args.cached + args.sample]
        lives = await orch.execute_multiple(sample, use_cache=False)
        collected = await job.results()
        same = sum(
            live.output == got.output
            and live.metadata["output_tokens"] == got.metadata["output_tokens"]
            and live.metadata["cost_usd"] == 2 * got.metadata["cost_usd"]
            for live, got in zip(
                lives, collected[args.cached : args.cached + args.sample], strict=True
            )
        )
        print(f"sample of {len(sample)} items sent live too: {same} with the same answer at 2x")

        # cached items never sent: the simulator's own counts of the job's batches
        client = orch._client.get()
        sent = 0
        for batch_id in job.ids:
            batch = await client.messages.batches.retrieve(batch_id)
            counts = batch.request_counts
            sent += counts.succeeded + counts.errored + counts.canceled + counts.expired
        expected = job.total - job.cached_count
        print(
            f"requests in the job's batches (the simulator's counts): {sent:,} = "
            f"{job.total:,} items - {job.cached_count:,} cached: {sent == expected}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--cached", type=int, default=1_000, help="tasks answered live first")
    parser.add_argument("--max-requests", type=int, default=8_000, help="per batch")
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    parser.add_argument("--sample", type=int, default=100, help="items also sent live")
    parser.add_argument("--quick", action="store_true", help="2,000 items, 100 cached")
    parser.add_argument(
        "--trace-collect",
        action="store_true",
        help="tracemalloc on the first collection too (its time then includes the tracing)",
    )
    args = parser.parse_args()
    if args.quick:
        args.items, args.cached, args.max_requests, args.sample = 2_000, 100, 800, 50
    with tempfile.TemporaryDirectory() as home:
        os.environ["CLAUDE_FORCE_MAGIC_CONFIG_DIR"] = str(Path(home) / "config")
        os.environ["CLAUDE_CACHE_SECRET"] = SECRET
        sim, base_url = start_simulator(args.batch_seconds, args.max_requests)
        try:
            asyncio.run(run(args, base_url, Path(home) / "cache"))
        finally:
            sim.terminate()
            sim.wait()


if __name__ == "__main__":
    main()
