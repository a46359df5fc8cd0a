"""8 processes x 4 threads on one Redis namespace: no corruption, no integrity failures, and
statistics exactly equal to what the callers saw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

from claude_force_magic.cache import RedisResponseCache

from .redis_helpers import SECRET, check_bookkeeping, raw

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_worker.py")
MAX_SIZE_MB = 0.05  # ~45 entries: culling runs between clears even on a loaded machine


def run_workers(url: str, processes: int, threads: int, seconds: float) -> list[dict[str, Any]]:
    """Start every worker, release them together, and collect their own counts."""
    procs = []
    for seed in range(processes):
        payload = json.dumps(
            {
                "url": url,
                "secret": SECRET,
                "seed": seed,
                "processes": processes,
                "threads": threads,
                "seconds": seconds,
                "max_size_mb": MAX_SIZE_MB,
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), payload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def mixed_run(server: RedisServer, seconds: float) -> dict[str, Any]:
    results = run_workers(server.url, processes=8, threads=4, seconds=seconds)
    assert [r["errors"] for r in results] == [[] for _ in results]
    total = {
        name: sum(r["counts"].get(name, 0) for r in results)
        for name in ("hits", "misses", "sets", "deletes", "cleared")
    }
    with RedisResponseCache(
        server.url, cache_secret=SECRET, max_size_mb=MAX_SIZE_MB, max_entry_kb=8
    ) as cache:
        stats = cache.get_stats()
        for name, value in total.items():
            assert stats[name] == value, name
        assert stats["integrity_failures"] == 0 and stats["expirations"] == 0
        left = check_bookkeeping(raw(server.url))
        assert stats["entries"] == left["entries"] == len(cache.entries())
        # Every set wrote a new key: what is left is what was not evicted, deleted or cleared.
        assert left["entries"] == (
            stats["sets"] - stats["evictions"] - stats["deletes"] - stats["cleared"]
        )
        assert left["bytes"] <= stats["max_size_bytes"]
        assert cache.verify().ok
    assert total["hits"] > 0 and total["misses"] > 0 and total["deletes"] > 0
    assert stats["evictions"] > 0
    return stats


def test_8_processes_x_4_threads_mixed_get_set_clear(redis_server: RedisServer) -> None:
    mixed_run(redis_server, seconds=1.5)


@pytest.mark.slow
def test_8_processes_x_4_threads_mixed_heavy(redis_server: RedisServer) -> None:
    stats = mixed_run(redis_server, seconds=30.0)
    assert stats["cleared"] > 0
