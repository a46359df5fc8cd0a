"""Benchmark: ResponseCache against raw ``diskcache.Cache`` on the same bytes.

Run::

    .venv/bin/python benchmarks/bench_cache.py            # defaults: 2,000 entries of 2 KiB, 100k open
    .venv/bin/python benchmarks/bench_cache.py --quick    # smaller, for a smoke run

Both caches use the same directory settings (least-recently-used culling, the same size limit,
diskcache defaults otherwise) and store the same envelope bytes, so the ratios show what
signing, verification, key derivation and the exact counters cost. Goals: get-hit within
1.5x of raw diskcache, set within 1.3x; open-plus-first-hit at 100,000 entries in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import diskcache

from claude_force_magic.cache import ResponseCache

SECRET = "benchmark-secret-0123456789abcdef"
AGENT, MODEL = "python-expert", "claude-sonnet-5"
SIZE_LIMIT_MB = 1024


def raw_cache(directory: Path) -> diskcache.Cache:
    """diskcache with the settings ResponseCache uses (see cache/backend.py)."""
    return diskcache.Cache(
        str(directory),
        eviction_policy="least-recently-used",
        size_limit=SIZE_LIMIT_MB * 2**20,
        statistics=0,
    )


def our_cache(directory: Path) -> ResponseCache:
    return ResponseCache(directory, cache_secret=SECRET, max_size_mb=SIZE_LIMIT_MB)


def answer(i: int, size: int) -> str:
    line = f"Answer {i}: use `asyncio.Semaphore` to bound concurrency; see the example below.\n"
    return (line * (size // len(line) + 1))[:size]


def interleaved(
    mine: Callable[[int], object], theirs: Callable[[int], object], n: int, block: int
) -> tuple[float, float, float]:
    """Run both sides over ``range(n)`` in alternating blocks of ``block`` calls.

    Returns (median seconds per call for ours, for raw, median of per-block ratios). Short
    alternating blocks keep both sides under the same machine load, which a shared machine
    needs: a long run of one side and then the other measures the load, not the code.
    """
    ours_t, raw_t, ratios = [], [], []
    for b, lo in enumerate(range(0, n, block)):
        idx = range(lo, min(lo + block, n))
        order = [(mine, ours_t), (theirs, raw_t)]
        if b % 2:
            order.reverse()
        for fn, sink in order:
            start = time.perf_counter()
            for i in idx:
                fn(i)
            sink.append((time.perf_counter() - start) / len(idx))
        ratios.append(ours_t[-1] / raw_t[-1])
    return statistics.median(ours_t), statistics.median(raw_t), statistics.median(ratios)


def bench_ops(base: Path, n: int, size: int, rounds: int) -> dict[str, tuple[float, float, float]]:
    """Per-op seconds (ours, raw) and their ratio for set, get-hit and get-miss."""
    results: dict[str, list[tuple[float, float, float]]] = {
        "set": [],
        "get (hit)": [],
        "get (miss)": [],
    }
    texts = [answer(i, size) for i in range(n)]
    tasks = [f"Explain item {i} of the benchmark in detail." for i in range(n)]
    for r in range(rounds):
        ours = our_cache(base / f"ours{r}")
        raw = raw_cache(base / f"raw{r}")
        keys = [ours.key_for(AGENT, t, MODEL, max_tokens=1024) for t in tasks]
        # The exact bytes ResponseCache stores, so raw diskcache moves the same data.
        envelopes = [
            ours._signer.seal(  # type: ignore[union-attr]
                k,
                {
                    "response": texts[i],
                    "agent_name": AGENT,
                    "model": MODEL,
                    "input_tokens": 100,
                    "output_tokens": 500,
                    "estimated_cost": 0.0051,
                    "created_at": time.time(),
                    "expires_at": time.time() + 86400,
                    "metadata": {"stop_reason": "end_turn"},
                },
            )
            for i, k in enumerate(keys)
        ]

        def our_set(i: int, ours: ResponseCache = ours) -> object:
            return ours.set(
                AGENT, tasks[i], MODEL, texts[i], 100, 500, 0.0051,
                metadata={"stop_reason": "end_turn"}, max_tokens=1024,
            )  # fmt: skip

        def raw_set(i: int, raw: diskcache.Cache = raw) -> object:
            return raw.set(keys[i], envelopes[i])

        def our_hit(i: int, ours: ResponseCache = ours) -> object:
            return ours.get(AGENT, tasks[i], MODEL, max_tokens=1024)

        def raw_hit(i: int, raw: diskcache.Cache = raw) -> object:
            return raw.get(keys[i])

        def our_miss(i: int, ours: ResponseCache = ours) -> object:
            return ours.get(AGENT, tasks[i], MODEL, max_tokens=7)

        def raw_miss(i: int, raw: diskcache.Cache = raw) -> object:
            return raw.get(keys[i][::-1])

        results["set"].append(interleaved(our_set, raw_set, n, 50))
        results["get (hit)"].append(interleaved(our_hit, raw_hit, n, 50))
        results["get (miss)"].append(interleaved(our_miss, raw_miss, n, 50))
        assert ours.get(AGENT, tasks[0], MODEL, max_tokens=1024) is not None
        assert ours.get_stats()["integrity_failures"] == 0
        ours.close()
        raw.close()
    return {
        name: (
            statistics.median(m for m, _, _ in runs),
            statistics.median(r for _, r, _ in runs),
            statistics.median(q for _, _, q in runs),
        )
        for name, runs in results.items()
    }


def build_big(base: Path, count: int, size: int) -> tuple[Path, Path, str]:
    """Fill one ResponseCache and one raw diskcache with ``count`` entries, one transaction each."""
    ours_dir, raw_dir = base / "big-ours", base / "big-raw"
    text = answer(0, size)
    ours = our_cache(ours_dir)
    raw = raw_cache(raw_dir)
    db = ours._db
    assert db is not None
    with db.transaction():  # every set below nests inside this one transaction
        for i in range(count):
            ours.set(AGENT, f"task {i}", MODEL, text, 100, 500, 0.0051)
    with raw.transact():
        for i in range(count):
            raw.set(ours.key_for(AGENT, f"task {i}", MODEL), text.encode())
    first_key = ours.key_for(AGENT, "task 0", MODEL)
    ours.close()
    raw.close()
    return ours_dir, raw_dir, first_key


def bench_open(ours_dir: Path, raw_dir: Path, first_key: str, rounds: int) -> tuple[float, float]:
    mine, theirs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        ours = our_cache(ours_dir)
        assert ours.get(AGENT, "task 0", MODEL) is not None
        mine.append(time.perf_counter() - start)
        ours.close()
        start = time.perf_counter()
        raw = raw_cache(raw_dir)
        assert raw.get(first_key) is not None
        theirs.append(time.perf_counter() - start)
        raw.close()
    return statistics.median(mine), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000, help="entries per timed operation")
    parser.add_argument("--size", type=int, default=2048, help="response size in characters")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--big", type=int, default=100_000, help="entries for the open test")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.rounds, args.big = 300, 3, 5000
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o700)
        ops = bench_ops(base, args.entries, args.size, args.rounds)
        t0 = time.perf_counter()
        ours_dir, raw_dir, first_key = build_big(base, args.big, 512)
        build_s = time.perf_counter() - t0
        open_ours, open_raw = bench_open(ours_dir, raw_dir, first_key, args.rounds)

    goals = {"set": 1.3, "get (hit)": 1.5, "get (miss)": None}
    print(f"\nResponseCache vs raw diskcache.Cache: {args.entries} entries x {args.size} chars, "
          f"median of {args.rounds} rounds")  # fmt: skip
    print(f"{'operation':<28}{'ours (us)':>12}{'raw (us)':>12}{'ratio':>9}{'goal':>8}  result")
    for name, (mine, theirs, ratio) in ops.items():
        goal = goals[name]
        verdict = "" if goal is None else ("met" if ratio <= goal else "MISSED")
        goal_text = "-" if goal is None else f"{goal:.1f}x"
        print(f"{name:<28}{mine * 1e6:>12.1f}{theirs * 1e6:>12.1f}{ratio:>8.2f}x"
              f"{goal_text:>8}  {verdict}")  # fmt: skip
    label = f"open + first hit @ {args.big:,}"
    print(f"{label:<28}{open_ours * 1e3:>10.2f}ms{open_raw * 1e3:>10.2f}ms"
          f"{open_ours / open_raw:>8.2f}x{'-':>8}  {'met' if open_ours < 0.05 else 'slow'}")  # fmt: skip
    print(f"(built the {args.big:,}-entry caches in {build_s:.1f} s)")


if __name__ == "__main__":
    main()
