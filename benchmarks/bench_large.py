"""Benchmark: large agent definitions and large answers through the cache and the engine.

Run::

    .venv/bin/python benchmarks/bench_large.py          # definitions to 1 MB, answers to the limit
    .venv/bin/python benchmarks/bench_large.py --quick  # fewer repetitions

Three parts, each with the median time per call and the peak of Python allocations
(``tracemalloc``) during one call:

1. **Key derivation** for agent definitions of 10 KB, 100 KB and 1 MB, with the request the
   engine builds today (``orchestrator._prepare``: the definition's hash *and* its whole
   system prompt in the key's request) against a key of the hash alone. The first is hashed
   again on every call, so its cost grows with the definition; the second does not.
2. **The cache** with answers of 100 KB, 1 MB and the ``max_entry_kb`` limit: ``set``,
   ``get`` (a hit: read, verify, parse), ``verify()`` of the one entry.
3. **End to end**: a cached ``execute_agent`` (the second and later calls of the same task,
   answered from the cache) for each definition size, against the project's simulator on
   127.0.0.1. Goal: the per-call cost does not depend on the definition's size after its
   first use.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_force_magic.agents import AgentDefinition, AgentRegistry
from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.keys import key_for
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.simulator import Latency, Simulator

SECRET = "benchmark-secret-0123456789abcdef"
MODEL = "claude-sonnet-4-5"
DEFINITION_SIZES = {"10 KB": 10 * 1024, "100 KB": 100 * 1024, "1 MB": 2**20}
MAX_ENTRY_KB = 1024


def prompt_of(size: int) -> str:
    line = "You are a careful reviewer. Check every claim against the code before answering.\n"
    return (line * (size // len(line) + 1))[:size]


def definition(name: str, size: int) -> AgentDefinition:
    prompt = prompt_of(size)
    return AgentDefinition(
        name=name, description=f"{size} byte prompt", domains=(), priority=1, model=None,
        max_tokens=None, system_prompt=prompt, source="benchmark",
        definition_hash=hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
    )  # fmt: skip


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median seconds per call over ``repeat`` calls, and the allocation peak of one call."""
    fn()  # warm: first-use costs are reported separately where they matter
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak


def show(label: str, seconds: float, peak: int) -> None:
    print(f"   {label:<44}{seconds * 1e6:>12,.1f} us{peak / 2**20:>10.2f} MB peak")


# -- 1. key derivation -----------------------------------------------------------------------


def bench_keys(repeat: int) -> None:
    print("\n1. Key derivation per call (the definition is in every key)")
    for label, size in DEFINITION_SIZES.items():
        agent = definition("big", size)
        engine_request = {  # what orchestrator._prepare passes to the cache today
            "definition_hash": agent.definition_hash,
            "system": agent.system_prompt,
            "max_tokens": 1024,
            "stop_sequences": None,
        }
        hash_only = {"definition_hash": agent.definition_hash, "max_tokens": 1024}
        main = functools.partial(key_for, "big", "a task", MODEL, **engine_request)
        show(f"{label}: hash + whole system prompt (main)", *measure(main, repeat))
        slim = functools.partial(key_for, "big", "a task", MODEL, **hash_only)
        seconds, peak = measure(slim, repeat)
        show(f"{label}: definition hash only", seconds, peak)


# -- 2. the cache with large answers ---------------------------------------------------------


def bench_cache(base: Path, repeat: int) -> None:
    print(f"\n2. The cache with large answers (max_entry_kb={MAX_ENTRY_KB})")
    cache = ResponseCache(base / "answers", cache_secret=SECRET, max_size_mb=256,
                          max_entry_kb=MAX_ENTRY_KB)  # fmt: skip
    header = 400  # the envelope's header: the largest answer that still fits under the limit
    answers = {"100 KB": 100 * 1024, "1 MB - header": MAX_ENTRY_KB * 1024 - header}
    answers["1 MB (over the limit)"] = MAX_ENTRY_KB * 1024
    try:
        for label, size in answers.items():
            text = prompt_of(size)

            def put(text: str = text, label: str = label) -> bool:
                return cache.set("big", label, MODEL, text, 1000, 2000, 0.1)

            stored = put()
            show(f"{label}: set ({'stored' if stored else 'refused'})", *measure(put, repeat))
            if not stored:
                continue
            get = lambda label=label: cache.get("big", label, MODEL)  # noqa: E731
            assert get() is not None
            show(f"{label}: get (hit)", *measure(get, repeat))
            show(f"{label}: verify() (every entry so far)", *measure(cache.verify, 3))
    finally:
        cache.close()


# -- 3. end to end ---------------------------------------------------------------------------


async def bench_engine(base: Path, repeat: int) -> None:
    print("\n3. Cached execute_agent per call, by definition size (simulator on 127.0.0.1)")
    agents = {f"def-{size}": definition(f"def-{size}", size) for size in DEFINITION_SIZES.values()}
    async with Simulator(latency=Latency.fixed(0.0)) as sim:
        cache = ResponseCache(base / "engine", cache_secret=SECRET)
        async with AsyncAgentOrchestrator(
            api_key="sk-bench-large", base_url=sim.base_url, registry=AgentRegistry(agents),
            cache=cache, calls_per_minute=None, max_retries=0, deadline_seconds=None,
        ) as orch:  # fmt: skip
            for label, name in zip(DEFINITION_SIZES, agents, strict=True):

                def call(name: str = name) -> Awaitable[Any]:
                    return orch.execute_agent(name, "Review this function.", max_tokens=200)

                start = time.perf_counter()
                first = await call()
                first_s = time.perf_counter() - start
                if not first.success:
                    print(f"   {label}: first call failed: {first.error}")
                    continue
                times = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    result = await call()
                    times.append(time.perf_counter() - start)
                    assert result.cached, "a repeated call must be a cache hit"
                gc.collect()
                tracemalloc.start()
                await call()
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                note = " (and the client's start-up)" if name == next(iter(agents)) else ""
                print(f"   {label}: first call (miss{note}) {first_s * 1e3:,.1f} ms")
                show(f"{label}: cached call", statistics.median(times), peak)
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="calls per measurement")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 10 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o700)
        bench_keys(repeat)
        bench_cache(base, repeat)
        asyncio.run(bench_engine(base, repeat))


if __name__ == "__main__":
    main()
