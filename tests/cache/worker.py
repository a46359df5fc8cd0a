"""A separate process that hammers one cache directory; driven by test_concurrency / test_crash.

Usage: python worker.py '<json args>'. Prints "ready", waits for a line on stdin, runs, then
prints one JSON line with its own counts and any errors.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import traceback
from typing import Any

from claude_force_magic.cache import ResponseCache


def expected(task: str) -> str:
    """The only answer ever stored for ``task``: any other text served would be corruption."""
    size = 40_000 if hash_of(task) % 5 == 0 else 300
    return (f"answer to {task}. " * (size // 20 + 1))[:size]


def hash_of(text: str) -> int:
    return sum(map(ord, text))


def mixed(cache: ResponseCache, rng: random.Random, ops: int, counts: dict[str, int]) -> None:
    for _ in range(ops):
        task = f"shared-{rng.randrange(40)}"
        roll = rng.random()
        if roll < 0.45:
            hit = cache.get("worker", task, "m")
            if hit is None:
                counts["misses"] += 1
            elif hit["response"] != expected(task):
                raise AssertionError(f"wrong answer served for {task}")
            else:
                counts["hits"] += 1
        elif roll < 0.8:
            if cache.set("worker", task, "m", expected(task), 1, 2, 0.001):
                counts["sets"] += 1
        elif cache.delete("worker", task, "m"):
            counts["deletes"] += 1


def unique(cache: ResponseCache, prefix: str, ops: int, counts: dict[str, int]) -> None:
    for i in range(ops):
        task = f"{prefix}-{i}"
        if cache.set("worker", task, "m", expected(task), 1, 2, 0.001):
            counts["sets"] += 1
        if i % 3 == 0 and cache.delete("worker", f"{prefix}-{i // 2}", "m"):
            counts["deletes"] += 1


def run(args: dict[str, Any]) -> dict[str, Any]:
    cache = ResponseCache(
        args["dir"],
        cache_secret=args["secret"],
        max_size_mb=args.get("max_size_mb", 100),
        max_entry_kb=args.get("max_entry_kb", 1024),
    )
    names = ("hits", "misses", "sets", "deletes")
    per_thread = [dict.fromkeys(names, 0) for _ in range(args["threads"])]
    errors: list[str] = []

    def work(n: int) -> None:
        try:
            if args["mode"] == "mixed":
                rng = random.Random(args["seed"] * 100 + n)
                mixed(cache, rng, args["ops"], per_thread[n])
            else:
                unique(cache, f"{args['seed']}-{n}", args["ops"], per_thread[n])
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    totals = {name: sum(c[name] for c in per_thread) for name in names}
    return {"counts": totals, "errors": errors}


def main() -> None:
    args = json.loads(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
