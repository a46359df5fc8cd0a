"""Benchmark: the cache inspector's query layer (``cache/inspect.py``) on a large cache.

Run::

    .venv/bin/python benchmarks/bench_inspect.py           # 100,000 entries (and 10,000)
    .venv/bin/python benchmarks/bench_inspect.py --quick   # 20,000 and 2,000: a smoke run

The cache is filled through the public ``ResponseCache.set`` (nested in one transaction, so
filling 100,000 entries takes seconds rather than minutes): 8 agents, 3 models, short answers,
a spread of creation times and hit counts. Then, each figure a median of several rounds:

* ``open: first view ever``: the first view of a cache never inspected before; entries are
  indexed as they are written, so it reads only its page;
* ``index (older cache, once)``: the one-time pass over a cache written before the index
  existed (every entry read and verified once; later views only index what was added);
* ``open``: a new ResponseCache and view and its first page (the newest 100);
* ``filter`` by agent, by model, by age, sorted by money saved, and the health summary;
* ``text``: a text filter whose page fills early, and one for a word in 1 entry of 1000;
* memory: tracemalloc's peak over a cold index, open, filters and health, at both sizes.

Goals (issue 16): first page under 300 ms, a filter under 200 ms, memory independent of the
cache size (peak at the large size within 1.5x of the small one).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.inspect import CacheView, Query, health

SECRET = "benchmark-secret-0123456789abcdef"
AGENTS = [f"agent-{i}" for i in range(8)]
MODELS = ["claude-sonnet-5", "claude-haiku-5-5", "claude-opus-5"]
GOALS = {"open": 0.300, "filter": 0.200}
MEMORY_RATIO = 1.5


class Clock:
    """A settable clock: entries get creation times spread over the last 30 days."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def open_cache(path: Path, clock: Callable[[], float] = time.time) -> ResponseCache:
    return ResponseCache(
        path, cache_secret=SECRET, max_size_mb=4096, ttl_hours=24 * 365, clock=clock
    )


def fill(path: Path, count: int) -> float:
    """``count`` entries through ResponseCache.set, in one outer transaction; seconds taken."""
    clock = Clock()
    start_time = clock.now
    cache = open_cache(path, clock)
    assert cache._db is not None
    start = time.perf_counter()
    with cache._db.transaction():  # each set nests in this transaction
        for i in range(count):
            clock.now = start_time - (count - i) * (30 * 86400 / count)
            rare = " pandas groupby" if i % 1000 == 7 else ""
            task = f"Question {i} about topic {i % 97}{rare}"
            cache.set(
                AGENTS[i % len(AGENTS)],
                task,
                MODELS[i % len(MODELS)],
                f"Answer {i}: use the standard library.{rare}",
                100 + i % 50,
                200 + i % 300,
                0.001 * (1 + i % 13),
                metadata={"preview": task, "origin": "library"},
            )
    # Spread hit counts (the deferred counters would take a million lookups to get here).
    with cache._db.transaction() as (sql, _cleanup):
        sql("UPDATE Cache SET access_count = (rowid * 7919) % 23")
    cache.close()
    return time.perf_counter() - start


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_page(path: Path) -> None:
    with open_cache(path) as cache:
        page = CacheView(cache).page(Query())
        assert len(page.rows) == 100, len(page.rows)


def measure(path: Path, count: int, rounds: int) -> dict[str, float]:
    figures: dict[str, float] = {"fill": fill(path, count)}
    with open_cache(path) as cache:
        start = time.perf_counter()
        CacheView(cache).page(Query())
        figures["open: first view ever"] = time.perf_counter() - start
    con = sqlite3.connect(path / "cache.db", isolation_level=None)
    con.execute("DELETE FROM CfmIndex")  # as a cache written by an older release
    con.execute("DELETE FROM CfmIndexState")
    con.close()
    with open_cache(path) as cache:
        start = time.perf_counter()
        CacheView(cache).sync()
        figures["index (older cache, once)"] = time.perf_counter() - start
    figures["open"] = timed(lambda: first_page(path), rounds)
    with open_cache(path) as cache:
        view = CacheView(cache)
        view.page()
        queries = {
            "filter: agent": Query(agent="agent-3"),
            "filter: model": Query(model="claude-opus-5"),
            "filter: age < 1 day": Query(newer_than_hours=24),
            "filter: agent, by saved": Query(agent="agent-5", sort="saved", descending=True),
            "sort: by saved": Query(sort="saved", descending=True),
            "sort: by hits, page 50": Query(sort="hits", descending=True, page=50),
            "text: common (stops early)": Query(text="standard library"),
            "text: rare (1 in 1000)": Query(text="pandas groupby"),
        }
        for name, query in queries.items():
            figures[name] = timed(lambda q=query: view.page(q), rounds)
        figures["health"] = timed(lambda: health(cache, view), rounds)
    return figures


def peak_memory(path: Path) -> int:
    """tracemalloc's peak over indexing the cache from scratch, opening, the filters and
    health."""
    con = sqlite3.connect(path / "cache.db", isolation_level=None)
    con.execute("DROP TABLE IF EXISTS CfmIndex")
    con.execute("DROP TABLE IF EXISTS CfmIndexState")
    con.close()
    tracemalloc.start()
    with open_cache(path) as cache:
        view = CacheView(cache)
        view.page()
        view.page(Query(agent="agent-3", sort="saved", descending=True))
        view.page(Query(text="standard library"))
        health(cache, view)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 and 2,000 entries")
    args = parser.parse_args()
    if args.quick:
        args.large, args.small, args.rounds = 20_000, 2_000, 3
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        measure(small, args.small, 1)
        figures = measure(large, args.large, args.rounds)
        print(f"{args.large:,} entries (median of {args.rounds}):")
        for name, seconds in figures.items():
            goal = GOALS["open"] if name.startswith("open") else GOALS["filter"]
            checked = name.startswith(("open", "filter", "sort"))
            verdict = ""
            if checked:
                verdict = "ok" if seconds <= goal else f"OVER the {goal * 1000:.0f} ms goal"
                if seconds > goal:
                    failed.append(name)
            print(f"  {name:30s} {seconds * 1000:9.1f} ms  {verdict}")
        low, high = peak_memory(small), peak_memory(large)
        ratio = high / low
        print(
            f"  memory peak: {low / 1024:.0f} KiB at {args.small:,}, {high / 1024:.0f} KiB at "
            f"{args.large:,} entries: {ratio:.2f}x (goal <= {MEMORY_RATIO}x)"
        )
        if ratio > MEMORY_RATIO:
            failed.append("memory")
    if failed:
        print("goals missed:", ", ".join(failed))
        return 1
    print("all goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
