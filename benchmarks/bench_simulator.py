"""Throughput of the Messages API simulator, measured from a separate client process.

The server is ``python -m claude_force_magic.simulator`` (zero latency) in its own process; this
process is the load generator: an aiohttp client with ``--concurrency`` keep-alive connections
sends a fixed number of non-streaming and streaming requests and prints requests/s.
``--sdk-requests N`` also measures N non-streaming calls through ``anthropic.AsyncAnthropic``
(the SDK's own per-request cost dominates that figure).

    python benchmarks/bench_simulator.py [--requests 5000] [--stream-requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {
    "x-api-key": "sk-bench",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}


def body(n: int, stream: bool) -> bytes:
    """A request body; 64 distinct tasks, so the answer cache sees repeats like a real benchmark."""
    task = f"Write a Python function for task number {n % 64} that parses log lines"
    return json.dumps(
        {
            "model": "claude-sonnet-5",
            "max_tokens": 512,
            "stream": stream,
            "messages": [{"role": "user", "content": task}],
        }
    ).encode()


async def load(url: str, total: int, concurrency: int, stream: bool) -> tuple[float, Counter[int]]:
    """Send ``total`` requests over ``concurrency`` connections; return (seconds, statuses)."""
    statuses: Counter[int] = Counter()
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker() -> None:
            while (n := next(counter)) < total:
                async with session.post(url + "/v1/messages", data=body(n, stream)) as response:
                    payload = await response.read()
                    ok = response.status == 200 and payload.endswith(
                        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
                        if stream
                        else b"}"
                    )
                    statuses[response.status if ok else -1] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


async def load_sdk(url: str, total: int, concurrency: int) -> tuple[float, int]:
    """``total`` calls through the real SDK; return (seconds, failures)."""
    import anthropic

    failures = 0
    counter = itertools.count()
    async with anthropic.AsyncAnthropic(api_key="sk-bench", base_url=url, max_retries=0) as client:

        async def worker() -> None:
            nonlocal failures
            while (n := next(counter)) < total:
                message = await client.messages.create(**json.loads(body(n, False)))
                failures += not message.content

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failures


def report(label: str, count: int, seconds: float, detail: str) -> None:
    print(
        f"{label:<16} {count:>6} requests in {seconds:6.2f} s"
        f" = {count / seconds:8.0f} req/s  {detail}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="non-streaming requests")
    parser.add_argument("--stream-requests", type=int, default=1000, help="streaming requests")
    parser.add_argument("--sdk-requests", type=int, default=0, help="requests through the SDK")
    parser.add_argument("--concurrency", type=int, default=64, help="connections")
    parser.add_argument("--warmup", type=int, default=500, help="requests before measuring")
    args = parser.parse_args()

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "claude_force_magic.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://"):
            print("the simulator did not start", file=sys.stderr)
            return 1
        print(
            f"simulator {url} (pid {server.pid}); client pid {os.getpid()}; "
            f"concurrency {args.concurrency}; cpus {os.cpu_count()}"
        )
        asyncio.run(load(url, args.warmup, args.concurrency, False))
        failed = 0
        for label, total, stream in (
            ("non-streaming", args.requests, False),
            ("streaming", args.stream_requests, True),
        ):
            if total:
                seconds, statuses = asyncio.run(load(url, total, args.concurrency, stream))
                failed += total - statuses[200]
                report(label, total, seconds, f"statuses {dict(statuses)}")
        if args.sdk_requests:
            seconds, failures = asyncio.run(load_sdk(url, args.sdk_requests, args.concurrency))
            failed += failures
            report("sdk (async)", args.sdk_requests, seconds, f"failures {failures}")
        return 1 if failed else 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
