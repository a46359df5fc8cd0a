"""Benchmark: the Redis backend (RedisResponseCache) against raw redis-py on the same server.

Run::

    .venv/bin/python benchmarks/bench_redis.py          # 2,000 answers of 2 KiB, 3 rounds
    .venv/bin/python benchmarks/bench_redis.py --quick  # a smaller smoke run
    .venv/bin/python benchmarks/bench_redis.py --cpu    # CPU time of both ends, not wall clock
    .venv/bin/python benchmarks/bench_redis.py --no-hiredis  # redis-py's pure-Python parser

It starts its own ``redis-server`` (Debian's package) on a free loopback port with persistence
off (``tests/redis_server.py``), and stops it at the end.

Cache section, all on the same answers in the same run:

* ``ours``: :class:`RedisResponseCache` (key derivation, signing, verification; a hit is one
  pipelined round trip of GET, ZADD XX and two HINCRBY, a store one Lua script that keeps the
  LRU order, sizes and shared counters, a miss a lookup plus a script that counts it);
* ``raw``: redis-py ``GET`` / ``SET`` of the same envelope bytes, nothing else.

Both sides use the same reply parser: hiredis (a declared dependency) unless ``--no-hiredis``.

The sides run in short alternating blocks so that both see the same machine load; each figure
is a median. Goals: get-hit at most 1.5x raw ``GET``, set at most 2x raw ``SET``. Then
``encrypt=True`` against plain on the same server: the added cost of set and get-hit (goal:
at most 10 us per 2 KB answer).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

if "--no-hiredis" in sys.argv:  # before redis-py looks for it
    sys.modules["hiredis"] = None  # type: ignore[assignment]

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer  # the test suite's server harness

from claude_force_magic.cache import RedisResponseCache

SECRET = "benchmark-secret-0123456789abcdef"
AGENT, MODEL = "python-expert", "claude-sonnet-5"
Op = Callable[[int], object]
#: (operation, the most ours may take relative to raw redis-py)
GOALS = (("get (hit)", 1.5), ("set", 2.0))
#: The most encryption may add to one set or get-hit of a 2 KB answer, in microseconds.
ENCRYPTION_GOAL_US = 10.0


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private ``redis-server`` for the run, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def answer(i: int, size: int) -> str:
    """A Markdown-ish answer of ``size`` characters, different for every ``i``."""
    text = f"## Answer {i}\n\nUse `asyncio.Semaphore` to bound concurrency; item {i}. " * 64
    return (text * (size // len(text) + 1))[:size]


@dataclass
class Data:
    tasks: list[str]
    answers: list[str]
    blobs: list[bytes]  # our stored envelopes, for the raw side to store and read


def our_cache(url: str, namespace: str, *, encrypt: bool = False) -> RedisResponseCache:
    return RedisResponseCache(
        url, cache_secret=SECRET, namespace=namespace, max_size_mb=1024, encrypt=encrypt
    )


def make_data(url: str, n: int, size: int) -> Data:
    """Tasks and answers, and the envelope bytes our cache stores for each."""
    tasks = [f"Explain item {i} of the benchmark in detail." for i in range(n)]
    answers = [answer(i, size) for i in range(n)]
    probe = our_cache(url, "bench-probe")
    client = redis.Redis.from_url(url)
    blobs = []
    for i in range(n):
        probe.set(AGENT, tasks[i], MODEL, answers[i], 100, 500, 0.0051)
        key = probe.key_for(AGENT, tasks[i], MODEL)
        blobs.append(client.get(f"bench-probe:cache:e:{key}") or b"")
    probe.clear()
    probe.close()
    client.close()
    return Data(tasks, answers, blobs)


def our_ops(ours: RedisResponseCache, d: Data) -> dict[str, Op]:
    def get_hit(i: int) -> object:
        found = ours.get(AGENT, d.tasks[i], MODEL)
        assert found is not None
        return found

    return {
        "set": lambda i: ours.set(AGENT, d.tasks[i], MODEL, d.answers[i], 100, 500, 0.0051),
        "get (hit)": get_hit,
        "get (miss)": lambda i: ours.get(AGENT, d.tasks[i] + " (other)", MODEL),
    }


def raw_ops(client: redis.Redis, d: Data, prefix: str) -> dict[str, Op]:
    names = [f"{prefix}{i}" for i in range(len(d.tasks))]
    return {
        "set": lambda i: client.set(names[i], d.blobs[i]),
        "get (hit)": lambda i: client.get(names[i]),
        "get (miss)": lambda i: client.get(names[i] + ":other"),
    }


def interleaved(
    sides: dict[str, Op], n: int, block: int, timer: Callable[[], float]
) -> dict[str, float]:
    """Run every side over ``range(n)`` in alternating blocks; the median seconds per call of
    each side, and ``"<side>/<last side>"``: the median of the per-block ratios."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for b, lo in enumerate(range(0, n, block)):
        idx = range(lo, min(lo + block, n))
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            fn = sides[name]
            start = timer()
            for i in idx:
                fn(i)
            times[name].append((timer() - start) / len(idx))
    result = {name: statistics.median(ts) for name, ts in times.items()}
    for name in names[:-1]:
        ratios = [o / t for o, t in zip(times[name], times[names[-1]], strict=True) if t > 0]
        result[f"{name}/{names[-1]}"] = statistics.median(ratios)
    return result


def _medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        op: {name: statistics.median(r[name] for r in rs) for name in rs[0]}
        for op, rs in runs.items()
    }


def bench_cache_ops(
    url: str,
    data: Data,
    rounds: int,
    timer: Callable[[], float],
    before: type[RedisResponseCache] | None = None,
) -> dict[str, dict[str, float]]:
    """Median figures of set, get-hit and get-miss, ours (and ``before``) against raw, over
    ``rounds``."""
    n = len(data.tasks)
    runs: dict[str, list[dict[str, float]]] = {"set": [], "get (hit)": [], "get (miss)": []}
    client = redis.Redis.from_url(url)
    for r in range(rounds):
        ours = our_cache(url, f"bench{r}")
        sides = {"ours": our_ops(ours, data)}
        if before is not None:
            old = before(url, cache_secret=SECRET, namespace=f"before{r}", max_size_mb=1024)
            sides["before"] = our_ops(old, data)
        sides["raw"] = raw_ops(client, data, f"raw{r}:")
        for op in runs:
            runs[op].append(interleaved({s: ops[op] for s, ops in sides.items()}, n, 50, timer))
        stats = ours.get_stats()
        assert stats["hits"] == n and stats["integrity_failures"] == 0
        ours.clear()
        ours.close()
        if before is not None:
            old.close()
    client.flushdb()
    client.close()
    return _medians(runs)


def bench_cache_encryption(
    url: str, data: Data, rounds: int, timer: Callable[[], float]
) -> dict[str, dict[str, float]]:
    """Median seconds per set and get-hit, plain against ``encrypt=True`` on the same server,
    and the added cost (encrypted minus plain)."""
    n = len(data.tasks)
    runs: dict[str, list[dict[str, float]]] = {"set": [], "get (hit)": []}
    for r in range(rounds):
        plain = our_cache(url, f"plain{r}")
        encrypted = our_cache(url, f"aes{r}", encrypt=True)
        sides = {"plain": our_ops(plain, data), "encrypted": our_ops(encrypted, data)}
        for op in runs:
            figures = interleaved({s: ops[op] for s, ops in sides.items()}, n, 50, timer)
            figures["added"] = figures["encrypted"] - figures["plain"]
            runs[op].append(figures)
        assert encrypted.get_stats()["integrity_failures"] == 0
        for cache in (plain, encrypted):
            cache.clear()
            cache.close()
    return _medians(runs)


def report_cache(
    ops: dict[str, dict[str, float]], enc: dict[str, dict[str, float]], size: int
) -> bool:
    """Print the cache section; True when every goal is met."""
    print(f"\nRedisResponseCache vs raw redis-py, {size}-char answers (median us per call)")
    print(f"{'operation':<12}{'ours':>10}{'raw':>10}{'ratio':>8}{'goal':>8}")
    ok = True
    goals = dict(GOALS)
    for op, fig in ops.items():
        goal = goals.get(op)
        ratio = fig["ours/raw"]
        met = goal is None or ratio <= goal
        ok &= met
        shown = f"<={goal:g}x" if goal else "-"
        print(
            f"{op:<12}{fig['ours'] * 1e6:>10.1f}{fig['raw'] * 1e6:>10.1f}{ratio:>7.2f}x"
            f"{shown:>8} {'' if met else 'MISSED'}"
        )
    if "before/raw" in next(iter(ops.values())):
        print(f"\nthe --before code, same run\n{'operation':<12}{'before':>10}{'ratio':>8}")
        for op, fig in ops.items():
            print(f"{op:<12}{fig['before'] * 1e6:>10.1f}{fig['before/raw']:>7.2f}x")
    print(f"\nencrypt=True vs plain (median us per call; goal: adds <= {ENCRYPTION_GOAL_US:g} us)")
    for op, fig in enc.items():
        added = fig["added"] * 1e6
        met = added <= ENCRYPTION_GOAL_US
        ok &= met
        print(
            f"{op:<12} plain {fig['plain'] * 1e6:8.1f}  encrypted {fig['encrypted'] * 1e6:8.1f}"
            f"  added {added:6.1f} {'' if met else 'MISSED'}"
        )
    return ok


def cpu_timer(url: str) -> Callable[[], float]:
    """A clock of CPU seconds spent by this process *and* by the redis-server (its ``INFO
    cpu``, microsecond resolution): on a machine shared with other jobs, wall-clock time
    measures their load, while CPU time measures the work each side makes both ends do."""
    client = redis.Redis.from_url(url)

    def now() -> float:
        cpu = client.info("cpu")
        return time.process_time() + float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    return now


def load_before(root: Path) -> type[RedisResponseCache]:
    """``RedisResponseCache`` as the checkout under ``root`` has it (its cache/redis.py and
    cache/redis_scripts.py; everything else is today's), to run beside today's in one run:
    ``git archive <ref> claude_force_magic | tar -x -C DIR``, then ``--before DIR``."""
    pkg = root / "claude_force_magic" / "cache"
    sources = {
        "redis_scripts_before": (pkg / "redis_scripts.py").read_text(encoding="utf-8"),
        "redis_before": (pkg / "redis.py")
        .read_text(encoding="utf-8")
        .replace("from .redis_scripts import", "from .redis_scripts_before import"),
    }
    for name, source in sources.items():
        module = types.ModuleType(f"claude_force_magic.cache.{name}")
        module.__package__ = "claude_force_magic.cache"
        sys.modules[module.__name__] = module
        exec(compile(source, str(pkg / f"{name}.py"), "exec"), module.__dict__)
    cls: type[RedisResponseCache] = sys.modules[
        "claude_force_magic.cache.redis_before"
    ].RedisResponseCache
    return cls


def run_cache_section(
    url: str,
    n: int,
    size: int,
    rounds: int,
    *,
    cpu: bool = False,
    before: type[RedisResponseCache] | None = None,
) -> bool:
    """The get/set and encryption figures of the Redis cache; True when every goal is met."""
    timer = cpu_timer(url) if cpu else time.perf_counter
    print("clock:", "CPU of this process + redis-server" if cpu else "wall clock")
    data = make_data(url, n, size)
    ops = bench_cache_ops(url, data, rounds, timer, before)
    enc = bench_cache_encryption(url, data, rounds, timer)
    return report_cache(ops, enc, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument("-n", type=int, default=2000, help="answers per round (default 2000)")
    parser.add_argument("--size", type=int, default=2048, help="answer size in characters")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--cpu", action="store_true", help="time CPU (this process + redis-server), not wall"
    )
    parser.add_argument(
        "--limits", action="store_true", help="then the shared-limit goodput (bench_redis_team)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run the RedisResponseCache of an older checkout in DIR (see load_before)",
    )
    parser.add_argument(
        "--no-hiredis", action="store_true", help="parse replies in Python, not with hiredis"
    )
    args = parser.parse_args()
    n, rounds = (300, 1) if args.quick else (args.n, args.rounds)
    with redis_server() as server:
        parser_name = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure Python"
        print(f"redis-server on 127.0.0.1:{server.port} (persistence off), {parser_name} parser")
        before = load_before(args.before) if args.before else None
        ok = run_cache_section(server.url, n, args.size, rounds, cpu=args.cpu, before=before)
        if args.limits:
            from bench_redis_team import run_limits_section

            ok = run_limits_section(server.url, 600, 30.0 if args.quick else 90.0) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
