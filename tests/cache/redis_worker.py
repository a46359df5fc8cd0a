"""A separate process that hammers one Redis namespace; driven by test_redis_concurrency.

Usage: python redis_worker.py '<json args>'. Prints "ready", waits for a line on stdin, runs
``threads`` threads for ``seconds``, then prints one JSON line with its own counts and errors.

Every store uses a new key (process, thread, counter), so the entries left at the end are
exactly sets - evictions - deletes - cleared: a check of the eviction count across processes.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

from claude_force_magic.cache import RedisResponseCache


def expected(task: str) -> str:
    """The only answer ever stored for ``task``: any other text served would be corruption."""
    size = 3000 if sum(map(ord, task)) % 4 == 0 else 300
    return (f"answer to {task}. " * (size // 20 + 1))[:size]


def run_thread(
    cache: RedisResponseCache, me: str, peers: list[str], deadline: float, seed: int
) -> tuple[Counter[str], list[str]]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    errors: list[str] = []
    n = 0
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.45:
                n += 1
                task = f"{me}-{n}"
                assert cache.set("worker", task, "m", expected(task), 1, 1, 0.0)
                counts["sets"] += 1
            elif roll < 0.93:
                task = f"{rng.choice(peers)}-{max(1, n - rng.randrange(20))}"
                hit = cache.get("worker", task, "m")
                if hit is None:
                    counts["misses"] += 1
                elif hit["response"] != expected(task):
                    errors.append(f"wrong answer served for {task}")
                else:
                    counts["hits"] += 1
            elif roll < 0.99:
                task = f"{me}-{max(1, n - rng.randrange(5))}"
                counts["deletes"] += cache.delete("worker", task, "m")
            else:
                counts["cleared"] += cache.clear()
        except Exception:  # reported to the test, which fails on any
            errors.append(traceback.format_exc(limit=3))
    return counts, errors


def main() -> None:
    args: dict[str, Any] = json.loads(sys.argv[1])
    cache = RedisResponseCache(
        args["url"], cache_secret=args["secret"], max_size_mb=args["max_size_mb"], max_entry_kb=8
    )
    threads = args["threads"]
    names = [f"p{p}t{t}" for p in range(args["processes"]) for t in range(threads)]
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + args["seconds"]
    results: list[tuple[Counter[str], list[str]]] = []
    lock = threading.Lock()

    def thread_main(t: int) -> None:
        me = f"p{args['seed']}t{t}"
        peers = [me, *random.Random(t).sample(names, 3)]
        result = run_thread(cache, me, peers, deadline, args["seed"] * 100 + t)
        with lock:
            results.append(result)

    workers = [threading.Thread(target=thread_main, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts: Counter[str] = Counter()
    errors: list[str] = []
    for c, e in results:
        counts.update(c)
        errors.extend(e)
    cache.close()
    print(json.dumps({"counts": dict(counts), "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    main()
