"""Benchmark: ResponseCache against raw ``diskcache.Cache`` on the same bytes.

Run::

    .venv/bin/python benchmarks/bench_cache.py          # 2,000 entries of 2 KiB; 100k-entry open
    .venv/bin/python benchmarks/bench_cache.py --quick  # a smaller smoke run

Both caches use the same directory settings (least-recently-used culling, the same size limit,
diskcache defaults otherwise) and store the same envelope bytes, so the ratios show what key
derivation, signing, verification and the exact statistics cost. The two sides run in short
alternating blocks so that both see the same machine load; each figure is a median.
Goals: get-hit within 1.5x of raw diskcache, set within 1.3x, and opening a 100,000-entry
cache plus its first hit in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diskcache

from claude_force_magic.cache import ResponseCache

SECRET = "benchmark-secret-0123456789abcdef"
AGENT, MODEL = "python-expert", "claude-sonnet-5"
SIZE_LIMIT_MB = 1024
GOALS = {"set": 1.3, "get (hit)": 1.5}
Op = Callable[[int], object]


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


@dataclass
class Data:
    """The same tasks, answers, keys and stored bytes for both sides."""

    tasks: list[str]
    texts: list[str]
    keys: list[str]
    envelopes: list[bytes]


def make_data(ours: ResponseCache, n: int, size: int) -> Data:
    tasks = [f"Explain item {i} of the benchmark in detail." for i in range(n)]
    texts = [answer(i, size) for i in range(n)]
    keys = [ours.key_for(AGENT, t, MODEL, max_tokens=1024) for t in tasks]
    signer = ours._signer
    assert signer is not None
    now = time.time()
    header = {"agent_name": AGENT, "model": MODEL, "input_tokens": 100, "output_tokens": 500,
              "estimated_cost": 0.0051, "created_at": now, "expires_at": now + 86400,
              "metadata": {"stop_reason": "end_turn"}}  # fmt: skip
    envelopes = [signer.seal(key, {**header, "response": texts[i]}) for i, key in enumerate(keys)]
    return Data(tasks, texts, keys, envelopes)


def operations(ours: ResponseCache, raw: diskcache.Cache, d: Data) -> dict[str, tuple[Op, Op]]:
    """(ours, raw) callables per operation, each taking an entry index."""

    def our_set(i: int) -> object:
        return ours.set(
            AGENT, d.tasks[i], MODEL, d.texts[i], 100, 500, 0.0051,
            metadata={"stop_reason": "end_turn"}, max_tokens=1024,
        )  # fmt: skip

    return {
        "set": (our_set, lambda i: raw.set(d.keys[i], d.envelopes[i])),
        "get (hit)": (
            lambda i: ours.get(AGENT, d.tasks[i], MODEL, max_tokens=1024),
            lambda i: raw.get(d.keys[i]),
        ),
        "get (miss)": (
            lambda i: ours.get(AGENT, d.tasks[i], MODEL, max_tokens=7),
            lambda i: raw.get(d.keys[i][::-1]),
        ),
    }


def interleaved(
    mine: Op, theirs: Op, n: int, block: int, timer: Callable[[], float]
) -> list[float]:
    """Run both sides over ``range(n)`` in alternating blocks; return [ours, raw, ratio] medians.

    Short alternating blocks keep both sides under the same machine load: on a shared machine a
    long run of one side and then the other measures the load, not the code.
    """
    ours_t: list[float] = []
    raw_t: list[float] = []
    ratios: list[float] = []
    for b, lo in enumerate(range(0, n, block)):
        idx = range(lo, min(lo + block, n))
        order = [(mine, ours_t), (theirs, raw_t)]
        if b % 2:
            order.reverse()
        for fn, sink in order:
            start = timer()
            for i in idx:
                fn(i)
            sink.append((timer() - start) / len(idx))
        if raw_t[-1] > 0:
            ratios.append(ours_t[-1] / raw_t[-1])
    return [statistics.median(ours_t), statistics.median(raw_t), statistics.median(ratios)]


def bench_ops(
    base: Path, n: int, size: int, rounds: int, timer: Callable[[], float]
) -> dict[str, list[float]]:
    """Median (ours, raw, ratio) per operation over ``rounds`` fresh pairs of caches."""
    runs: dict[str, list[list[float]]] = {"set": [], "get (hit)": [], "get (miss)": []}
    for r in range(rounds):
        ours, raw = our_cache(base / f"ours{r}"), raw_cache(base / f"raw{r}")
        data = make_data(ours, n, size)
        for name, (mine, theirs) in operations(ours, raw, data).items():
            runs[name].append(interleaved(mine, theirs, n, 50, timer))
        stats = ours.get_stats()
        assert stats["hits"] == n and stats["integrity_failures"] == 0
        ours.close()
        raw.close()
    return {
        name: [statistics.median(col) for col in zip(*rs, strict=True)] for name, rs in runs.items()
    }


def build_big(base: Path, count: int, size: int) -> tuple[Path, Path, str]:
    """Fill one ResponseCache and one raw diskcache with ``count`` entries, one transaction each."""
    ours_dir, raw_dir = base / "big-ours", base / "big-raw"
    text = answer(0, size)
    ours, raw = our_cache(ours_dir), raw_cache(raw_dir)
    assert ours._db is not None
    with ours._db.transaction():  # every set below nests inside this one transaction
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
    """Median wall time of open + first hit, for ours and for raw diskcache."""
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


def report(args: argparse.Namespace, ops: dict[str, list[float]], opened: tuple[float, float],
           build_s: float) -> None:  # fmt: skip
    clock = "CPU time" if args.cpu else "wall time"
    print(f"\nResponseCache vs raw diskcache.Cache ({clock}): {args.entries} entries x "
          f"{args.size} chars, median of {args.rounds} rounds")  # fmt: skip
    print(f"{'operation':<28}{'ours':>12}{'raw':>12}{'ratio':>9}{'goal':>8}  result")
    for name, (mine, theirs, ratio) in ops.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else ("met" if ratio <= goal else "MISSED")
        goal_text = "-" if goal is None else f"{goal:.1f}x"
        print(f"{name:<28}{mine * 1e6:>10.1f}us{theirs * 1e6:>10.1f}us{ratio:>8.2f}x"
              f"{goal_text:>8}  {verdict}")  # fmt: skip
    mine, theirs = opened
    label = f"open + first hit @ {args.big:,}"
    verdict = "met" if mine < 0.05 else "slow"
    print(f"{label:<28}{mine * 1e3:>10.2f}ms{theirs * 1e3:>10.2f}ms{mine / theirs:>8.2f}x"
          f"{'<50ms':>8}  {verdict}")  # fmt: skip
    print(f"(built the two {args.big:,}-entry caches in {build_s:.1f} s; open is wall time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000, help="entries per timed operation")
    parser.add_argument("--size", type=int, default=2048, help="response size in characters")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--big", type=int, default=100_000, help="entries for the open test")
    parser.add_argument("--cpu", action="store_true", help="time with process CPU time")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.rounds, args.big = 300, 3, 5000
    timer = time.process_time if args.cpu else time.perf_counter
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o700)
        ops = bench_ops(base, args.entries, args.size, args.rounds, timer)
        start = time.perf_counter()
        ours_dir, raw_dir, first_key = build_big(base, args.big, 512)
        build_s = time.perf_counter() - start
        opened = bench_open(ours_dir, raw_dir, first_key, args.rounds)
    report(args, ops, opened, build_s)


if __name__ == "__main__":
    main()
