"""A writer killed with SIGKILL mid-write leaves a cache that opens and serves only valid data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_force_magic.cache import ResponseCache

from .conftest import SECRET
from .worker import expected

WORKER = Path(__file__).with_name("worker.py")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def kill_mid_write(directory: Path, seed: int, threads: int, after_sets: int) -> None:
    payload = json.dumps(
        {"dir": str(directory), "secret": SECRET, "seed": seed, "mode": "unique",
         "threads": threads, "ops": 10**9}
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), payload], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        with ResponseCache(directory, cache_secret=SECRET) as watcher:
            start = watcher.get_stats()["sets"]
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            while watcher.get_stats()["sets"] - start < after_sets:
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_write_leaves_a_usable_cache(tmp_path: Path) -> None:
    directory = tmp_path / "crashy"
    ResponseCache(directory, cache_secret=SECRET).close()
    threads = 4
    for seed in range(3):
        kill_mid_write(directory, seed, threads, after_sets=60 + 40 * seed)

    with ResponseCache(directory, cache_secret=SECRET) as cache:
        before = cache.get_stats()["entries"]
        report = cache.verify(orphan_grace_seconds=0)  # every writer is dead: no grace needed
        assert report.checked == before
        assert report.valid + len(report.invalid) == before  # nothing expired here
        served = 0
        for seed in range(3):
            for n in range(threads):
                misses_in_a_row = 0
                i = 0
                while misses_in_a_row < 50:
                    task = f"{seed}-{n}-{i}"
                    hit = cache.get("worker", task, "m")
                    if hit is None:
                        misses_in_a_row += 1
                    else:
                        misses_in_a_row = 0
                        assert hit["response"] == expected(task)
                        served += 1
                    i += 1
        stats = cache.get_stats()
        assert served == report.valid == stats["entries"]
        assert stats["integrity_failures"] == len(report.invalid)
        on_disk = {str(p.relative_to(directory)) for p in directory.rglob("*.val")}
        assert on_disk == cache._db.referenced_files()  # type: ignore[union-attr]
        assert cache.set("worker", "after-crash", "m", "still writable", 1, 1, 0.0)
        assert cache.get("worker", "after-crash", "m") is not None
