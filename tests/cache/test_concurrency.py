"""Many processes x threads on one directory: no exceptions, no corruption, exact statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.cache import ResponseCache

from .conftest import SECRET

WORKER = Path(__file__).with_name("worker.py")


def run_workers(directory: Path, processes: int, **args: Any) -> list[dict[str, Any]]:
    """Start every worker, release them together, and collect their own counts."""
    procs = []
    for seed in range(processes):
        payload = json.dumps({"dir": str(directory), "secret": SECRET, "seed": seed, **args})
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


def check_exact(cache: ResponseCache, results: list[dict[str, Any]]) -> dict[str, Any]:
    assert [r["errors"] for r in results] == [[] for _ in results]
    stats = cache.get_stats()
    for name in ("hits", "misses", "sets", "deletes"):
        assert stats[name] == sum(r["counts"][name] for r in results), name
    assert stats["integrity_failures"] == 0
    assert stats["expirations"] == 0
    assert stats["entries"] == len(cache.entries())
    assert cache.verify().ok
    return stats


def mixed_run(tmp_path: Path, processes: int, threads: int, ops: int) -> None:
    directory = tmp_path / "shared"
    ResponseCache(directory, cache_secret=SECRET).close()  # create it once, privately
    results = run_workers(directory, processes, mode="mixed", threads=threads, ops=ops)
    with ResponseCache(directory, cache_secret=SECRET) as cache:
        stats = check_exact(cache, results)
    assert stats["evictions"] == 0
    assert stats["hits"] > 0 and stats["misses"] > 0 and stats["deletes"] > 0


def test_8_processes_x_4_threads_mixed_get_set_delete(tmp_path: Path) -> None:
    mixed_run(tmp_path, processes=8, threads=4, ops=200)


@pytest.mark.slow
def test_8_processes_x_4_threads_mixed_heavy(tmp_path: Path) -> None:
    mixed_run(tmp_path, processes=8, threads=4, ops=2500)


def test_evictions_counted_exactly_across_processes(tmp_path: Path) -> None:
    """Unique keys: every set inserts a row, so rows removed by culling = sets - deletes - left."""
    directory = tmp_path / "small"
    ResponseCache(directory, cache_secret=SECRET, max_size_mb=0.5, max_entry_kb=64).close()
    results = run_workers(
        directory, 8, mode="unique", threads=4, ops=40, max_size_mb=0.5, max_entry_kb=64
    )
    with ResponseCache(directory, cache_secret=SECRET, max_size_mb=0.5, max_entry_kb=64) as cache:
        stats = check_exact(cache, results)
    assert stats["evictions"] > 0
    assert stats["evictions"] == stats["sets"] - stats["deletes"] - stats["entries"]
