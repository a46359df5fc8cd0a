"""Benchmark: ResponseCache against raw ``diskcache.Cache`` and the old project's cache.

Run::

    .venv/bin/python benchmarks/bench_cache.py          # 2,000 entries of 2 KiB; 100k-entry open
    .venv/bin/python benchmarks/bench_cache.py --quick  # a smaller smoke run
    .venv/bin/python benchmarks/bench_cache.py --no-old # without the old project's cache

Sides, all on the same answers in the same run:

* ``ours``: :class:`ResponseCache` (key derivation, signing, verification, statistics);
  ``get (hit)`` is each entry's first hit in this process (its envelope verified and parsed),
  ``get (hit again)`` a second pass over the same entries (served from the memo of verified
  entries, see cache/memo.py, after the same SQLite read); ``verified read`` is the least any
  first hit must do, built from the same pieces as ``get``: derive the key, read the row,
  check its tag and parse it (no statistics, no least-recently-used time, no memo, no expiry
  check). It is the floor under ``get (hit)``: its ratio to raw diskcache says how close to
  raw a verified cache can come on this machine;
* ``raw LRU``: diskcache with the settings ResponseCache uses (least-recently-used culling:
  its ``get`` writes the access time);
* ``raw default``: diskcache with its default policy (least-recently-stored: ``get`` only
  reads), storing our envelope bytes;
* ``old 1.3.2``: the old project's JSON-file ``ResponseCache`` (``claude-force==1.3.2`` from
  PyPI, installed by this script into a temporary directory; skipped with a message when it
  cannot be installed).

The sides run in short alternating blocks so that all see the same machine load; each figure
is a median. Goals: get-hit at most 2x raw default and faster than the old cache, get-miss at
most 1.5x raw default, set within 1.3x raw LRU, and opening a 100,000-entry cache plus its
first hit in milliseconds. Minor page faults per call are printed too (counted outside the
timed loops): a first hit keeps the verified answer in the memo, so in a fresh process it
touches new memory, which costs microseconds per page on some virtual machines. Then
``encrypt=True`` against plain: the added cost of set and get-hit (goal: at most 10 us per
2 KB answer).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.backend import Backend
from claude_force_magic.cache.keys import key_of

SECRET = "benchmark-secret-0123456789abcdef"  # 33 characters: the old cache wants >= 32
AGENT, MODEL = "python-expert", "claude-sonnet-5"
SIZE_LIMIT_MB = 1024
OLD_RELEASE = "claude-force==1.3.2"
#: (operation, side compared with, the most ours may take relative to it)
GOALS = (
    ("set", "raw LRU", 1.3),
    ("get (hit)", "raw default", 2.0),
    ("get (hit)", "old 1.3.2", 1.0),
    ("get (hit again)", "raw default", 2.0),
    ("get (hit again)", "old 1.3.2", 1.0),
    ("get (miss)", "raw default", 1.5),
)
Op = Callable[[int], object]
#: The most encryption may add to one set or get-hit of a 2 KB answer, in microseconds.
ENCRYPTION_GOAL_US = 10.0


def install_old_cache(target: Path) -> type | None:
    """The old project's ``ResponseCache`` class, pip-installed into ``target``, or None.

    Prints why when it cannot be installed (offline, no pip): the benchmark then runs without
    that baseline.
    """
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--target", str(target), OLD_RELEASE]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"(skipping the old cache: could not install {OLD_RELEASE}: {exc})")
        return None
    sys.path.insert(0, str(target))
    try:
        module = importlib.import_module("claude_force.response_cache")
    except ImportError as exc:
        print(f"(skipping the old cache: {OLD_RELEASE} does not import: {exc})")
        return None
    old_class: type = module.ResponseCache
    return old_class


def old_cache(old_class: type, directory: Path, size_mb: int = SIZE_LIMIT_MB) -> Any:
    """The old cache in ``directory`` (it accepts only /tmp, ~/.claude or the working dir)."""
    return old_class(cache_dir=directory, cache_secret=SECRET, max_size_mb=size_mb)


def raw_cache(directory: Path, policy: str = "least-recently-used") -> diskcache.Cache:
    """diskcache with the settings ResponseCache uses (see cache/backend.py)."""
    return diskcache.Cache(
        str(directory), eviction_policy=policy, size_limit=SIZE_LIMIT_MB * 2**20, statistics=0
    )


def our_cache(directory: Path, *, encrypt: bool = False) -> ResponseCache:
    # encrypt= only when asked: the benchmark also runs against releases without it
    options: dict[str, Any] = {"encrypt": True} if encrypt else {}
    return ResponseCache(directory, cache_secret=SECRET, max_size_mb=SIZE_LIMIT_MB, **options)


def answer(i: int, size: int) -> str:
    line = f"Answer {i}: use `asyncio.Semaphore` to bound concurrency; see the example below.\n"
    return (line * (size // len(line) + 1))[:size]


@dataclass
class Data:
    """The same tasks, answers, keys and stored bytes for every side."""

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


def our_ops(ours: ResponseCache, d: Data) -> dict[str, Op]:
    def our_set(i: int) -> object:
        return ours.set(
            AGENT, d.tasks[i], MODEL, d.texts[i], 100, 500, 0.0051,
            metadata={"stop_reason": "end_turn"}, max_tokens=1024,
        )  # fmt: skip

    def hit(i: int) -> object:
        return ours.get(AGENT, d.tasks[i], MODEL, max_tokens=1024)

    db, signer = ours._db, ours._signer  # the pieces get() is built from
    assert isinstance(db, Backend) and signer is not None

    def verified_read(i: int) -> object:
        key = key_of(AGENT, d.tasks[i], MODEL, {"max_tokens": 1024})
        found = db.lookup(key)
        assert found is not None
        return signer.open_fields(key, db.fetch_found(found))

    return {
        "set": our_set,
        "get (hit)": hit,
        "verified read": verified_read,
        "get (hit again)": hit,
        "get (miss)": lambda i: ours.get(AGENT, d.tasks[i], MODEL, max_tokens=7),
    }


def raw_ops(raw: diskcache.Cache, d: Data) -> dict[str, Op]:
    return {
        "set": lambda i: raw.set(d.keys[i], d.envelopes[i]),
        "get (hit)": lambda i: raw.get(d.keys[i]),
        "verified read": lambda i: raw.get(d.keys[i]),
        "get (hit again)": lambda i: raw.get(d.keys[i]),
        "get (miss)": lambda i: raw.get(d.keys[i][::-1]),
    }


def old_ops(old: Any, d: Data) -> dict[str, Op]:
    return {
        "set": lambda i: old.set(AGENT, d.tasks[i], MODEL, d.texts[i], 100, 500, 0.0051),
        "get (hit)": lambda i: old.get(AGENT, d.tasks[i], MODEL),
        "verified read": lambda i: old.get(AGENT, d.tasks[i], MODEL),
        "get (hit again)": lambda i: old.get(AGENT, d.tasks[i], MODEL),
        "get (miss)": lambda i: old.get(AGENT, d.tasks[i] + " (other)", MODEL),
    }


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved(
    sides: dict[str, Op], n: int, block: int, timer: Callable[[], float]
) -> dict[str, float]:
    """Run every side over ``range(n)`` in alternating blocks; the median seconds per call of
    each side, ``"ours/<side>"``: the median of the per-block ratios, and ``"faults:<side>"``:
    minor page faults per call (memory touched for the first time; counted outside the timed
    loops).

    Short alternating blocks keep all sides under the same machine load: on a shared machine a
    long run of one side and then another measures the load, not the code.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    faults = dict.fromkeys(sides, 0)
    names = list(sides)
    for b, lo in enumerate(range(0, n, block)):
        idx = range(lo, min(lo + block, n))
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            fn = sides[name]
            before = minor_faults()
            start = timer()
            for i in idx:
                fn(i)
            times[name].append((timer() - start) / len(idx))
            faults[name] += minor_faults() - before
    result = {name: statistics.median(ts) for name, ts in times.items()}
    result.update({f"faults:{name}": count / n for name, count in faults.items()})
    for name in names[1:]:
        ratios = [o / t for o, t in zip(times["ours"], times[name], strict=True) if t > 0]
        result[f"ours/{name}"] = statistics.median(ratios)
    return result


def bench_ops(
    base: Path, n: int, size: int, rounds: int, timer: Callable[[], float], old: type | None
) -> dict[str, dict[str, float]]:
    """Median figures per operation over ``rounds`` fresh sets of caches."""
    runs: dict[str, list[dict[str, float]]] = {
        "set": [],
        "get (hit)": [],
        "verified read": [],
        "get (hit again)": [],
        "get (miss)": [],
    }
    for r in range(rounds):
        ours = our_cache(base / f"ours{r}")
        raw_lru, raw_default = (
            raw_cache(base / f"lru{r}"),
            raw_cache(base / f"def{r}", "least-recently-stored"),
        )
        data = make_data(ours, n, size)
        sides = {"ours": our_ops(ours, data), "raw LRU": raw_ops(raw_lru, data),
                 "raw default": raw_ops(raw_default, data)}  # fmt: skip
        if old is not None:
            sides["old 1.3.2"] = old_ops(old_cache(old, base / f"old{r}"), data)
        for op in runs:
            runs[op].append(interleaved({s: ops[op] for s, ops in sides.items()}, n, 50, timer))
        stats = ours.get_stats()
        assert stats["hits"] == 2 * n and stats["integrity_failures"] == 0
        ours.close()
        raw_lru.close()
        raw_default.close()
    return {
        op: {name: statistics.median(r[name] for r in rs) for name in rs[0]}
        for op, rs in runs.items()
    }


def bench_encryption(
    base: Path, n: int, size: int, rounds: int, timer: Callable[[], float]
) -> dict[str, dict[str, float]]:
    """Median seconds per call of set and get-hit with and without ``encrypt=True``, side by
    side in alternating blocks, and the added cost (encrypted minus plain) of each."""
    runs: dict[str, list[dict[str, float]]] = {"set": [], "get (hit)": []}
    for r in range(rounds):
        plain = our_cache(base / f"enc-plain{r}")
        encrypted = our_cache(base / f"enc-aes{r}", encrypt=True)
        data = make_data(plain, n, size)
        sides = {"ours": our_ops(plain, data), "encrypted": our_ops(encrypted, data)}
        for op in runs:
            figures = interleaved({s: ops[op] for s, ops in sides.items()}, n, 50, timer)
            figures["added"] = figures["encrypted"] - figures["ours"]
            runs[op].append(figures)
        assert encrypted.get_stats()["integrity_failures"] == 0
        plain.close()
        encrypted.close()
    return {
        op: {name: statistics.median(r[name] for r in rs) for name in rs[0]}
        for op, rs in runs.items()
    }


def bench_envelopes(size: int, number: int = 5000) -> dict[str, float]:
    """Best-of-7 seconds per seal and per open of one ``size``-char answer, plain and encrypted
    (the envelope alone: no SQLite, so the machine's load disturbs it least)."""
    import timeit

    from claude_force_magic.cache.signing import Signer
    from claude_force_magic.settings import Secret

    key = "0" * 64
    now = time.time()
    body = {"response": answer(1, size), "agent_name": AGENT, "model": MODEL,
            "input_tokens": 100, "output_tokens": 500, "estimated_cost": 0.0051,
            "created_at": now, "expires_at": now + 86400,
            "metadata": {"preview": "Explain item 1 of the benchmark in detail."}}  # fmt: skip
    figures: dict[str, float] = {}
    for mode, signer in (("plain", Signer(Secret(SECRET))),
                         ("encrypted", Signer(Secret(SECRET), encrypt=True))):  # fmt: skip
        blob = signer.seal(key, body)
        for op, fn in (("seal", lambda s=signer: s.seal(key, body)),
                       ("open", lambda s=signer, b=blob: s.open(key, b))):  # fmt: skip
            best = min(timeit.repeat(fn, number=number, repeat=7))
            figures[f"{op} {mode}"] = best / number
    return figures


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


def report_encryption(
    encrypted: dict[str, dict[str, float]], envelopes: dict[str, float], size: int
) -> None:
    """Encryption's added cost per call (goal: at most 10 us per 2 KB answer)."""
    print(f"\nencrypt=True (AES-256-GCM) against plain, {size}-char answers:")
    for op in ("seal", "open"):
        plain, aes = envelopes[f"{op} plain"] * 1e6, envelopes[f"{op} encrypted"] * 1e6
        added = aes - plain
        verdict = "met" if added <= ENCRYPTION_GOAL_US else "MISSED"
        print(f"envelope {op:<5} plain {plain:.1f}us  encrypted {aes:.1f}us  added {added:+.1f}us"
              f" (goal <= {ENCRYPTION_GOAL_US:g}us: {verdict})")  # fmt: skip
    for op, figures in encrypted.items():
        added = figures["added"] * 1e6
        verdict = "met" if added <= ENCRYPTION_GOAL_US else "MISSED"
        print(f"{op:<14}plain {figures['ours'] * 1e6:.1f}us  encrypted "
              f"{figures['encrypted'] * 1e6:.1f}us  added {added:+.1f}us "
              f"(goal <= {ENCRYPTION_GOAL_US:g}us: {verdict})")  # fmt: skip


def report(args: argparse.Namespace, ops: dict[str, dict[str, float]],
           opened: tuple[float, float], build_s: float) -> None:  # fmt: skip
    clock = "CPU time" if args.cpu else "wall time"
    print(f"\nResponseCache vs raw diskcache and the old cache ({clock}): {args.entries} "
          f"entries x {args.size} chars, median of {args.rounds} rounds")  # fmt: skip
    sides = [name for name in next(iter(ops.values())) if "/" not in name and ":" not in name]
    print(f"{'operation':<14}" + "".join(f"{name:>13}" for name in sides)
          + "".join(f"{'/' + name:>14}" for name in sides[1:]))  # fmt: skip
    for op, figures in ops.items():
        print(f"{op:<14}" + "".join(f"{figures[n] * 1e6:>11.1f}us" for n in sides)
              + "".join(f"{figures['ours/' + n]:>13.2f}x" for n in sides[1:]))  # fmt: skip
    print("minor page faults per call (memory touched for the first time):")
    for op, figures in ops.items():
        print(f"  {op:<16}" + "".join(f"{n} {figures['faults:' + n]:.2f}  " for n in sides))
    for op, other, goal in GOALS:
        ratio = ops[op].get(f"ours/{other}")
        if ratio is not None:
            verdict = "met" if ratio <= goal else "MISSED"
            print(f"goal: {op} <= {goal:g}x {other}: {ratio:.2f}x {verdict}")
    mine, theirs = opened
    label = f"open + first hit @ {args.big:,}"
    verdict = "met" if mine < 0.05 else "slow"
    print(f"{label}: ours {mine * 1e3:.2f} ms, raw LRU {theirs * 1e3:.2f} ms (goal <50 ms: "
          f"{verdict}); built in {build_s:.1f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000, help="entries per timed operation")
    parser.add_argument("--size", type=int, default=2048, help="response size in characters")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--big", type=int, default=100_000, help="entries for the open test")
    parser.add_argument("--cpu", action="store_true", help="time with process CPU time")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--no-old", action="store_true", help="skip the old project's cache")
    parser.add_argument(
        "--no-encryption", action="store_true", help="skip encrypt=True against plain"
    )
    args = parser.parse_args()
    if args.quick:
        args.entries, args.rounds, args.big = 300, 3, 5000
    timer = time.process_time if args.cpu else time.perf_counter
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o700)
        old = None if args.no_old else install_old_cache(base / "old-release")
        ops = bench_ops(base, args.entries, args.size, args.rounds, timer, old)
        encrypted, envelopes = {}, {}
        if not args.no_encryption:
            encrypted = bench_encryption(base, args.entries, args.size, args.rounds, timer)
            envelopes = bench_envelopes(args.size)
        start = time.perf_counter()
        ours_dir, raw_dir, first_key = build_big(base, args.big, 512)
        build_s = time.perf_counter() - start
        opened = bench_open(ours_dir, raw_dir, first_key, args.rounds)
    report(args, ops, opened, build_s)
    if encrypted:
        report_encryption(encrypted, envelopes, args.size)


if __name__ == "__main__":
    main()
