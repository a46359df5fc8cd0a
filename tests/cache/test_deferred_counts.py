"""A hit and a miss do not write: lookups are counted in memory and written in batches.

"Did it write?" is observed from a second SQLite connection: ``PRAGMA data_version`` changes
whenever another connection commits to the database.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_force_magic.cache import ResponseCache, store

from .conftest import SECRET

MakeCache = Callable[..., ResponseCache]


class Watcher:
    """A second connection to ``cache.db`` that sees the commits of others."""

    def __init__(self, directory: Path) -> None:
        self.con = sqlite3.connect(directory / "cache.db", isolation_level=None)
        self.version = self._version()

    def _version(self) -> int:
        ((version,),) = self.con.execute("PRAGMA data_version").fetchall()
        return int(version)

    def committed(self) -> bool:
        """True when another connection committed since the last call."""
        now = self._version()
        changed, self.version = now != self.version, now
        return changed

    def close(self) -> None:
        self.con.close()


@pytest.fixture
def slow_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches due only by count, never by time, so a loaded machine cannot flush early."""
    monkeypatch.setattr(store, "FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr(store, "FLUSH_OPS", 1000)


def put(cache: ResponseCache, task: str, text: str = "an answer") -> None:
    assert cache.set("python-expert", task, "m", text, 1, 2, 0.01)


def fetch(cache: ResponseCache, task: str) -> object:
    return cache.get("python-expert", task, "m")


@pytest.mark.usefixtures("slow_batches")
def test_hits_and_misses_commit_nothing_until_the_batch_is_written(make_cache: MakeCache) -> None:
    cache = make_cache()
    for i in range(5):
        put(cache, f"t{i}")
    watcher = Watcher(cache.directory)
    try:
        for i in range(5):
            assert fetch(cache, f"t{i}") is not None
            assert fetch(cache, f"absent{i}") is None
        assert not watcher.committed()  # ten lookups, not one write
        cache.flush()
        assert watcher.committed()  # one batch
        assert not watcher.committed()
    finally:
        watcher.close()


@pytest.mark.usefixtures("slow_batches")
def test_a_lookup_leaves_no_read_snapshot_open(make_cache: MakeCache) -> None:
    # Lookups reuse one cursor per thread: each must still step its statement to the end, or
    # the open read would pin the write-ahead log (no checkpoint could complete) and the next
    # lookups would not see other processes' writes.
    cache, other = make_cache(), make_cache()
    put(cache, "t", "first")
    watcher = Watcher(cache.directory)
    try:
        for task in ("t", "absent", "t"):
            fetch(cache, task)
            ((busy, _log, _done),) = watcher.con.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).fetchall()
            assert busy == 0
        put(other, "t", "second")  # another writer replaces the row
        hit = cache.get("python-expert", "t", "m")
        assert hit is not None and hit["response"] == "second"
    finally:
        watcher.close()


@pytest.mark.usefixtures("slow_batches")
def test_another_process_sees_the_counts_after_the_flush_and_exactly(
    make_cache: MakeCache,
) -> None:
    reader, other = make_cache(), make_cache()  # two instances: two "processes"' pending counts
    put(reader, "t")
    for _ in range(3):
        assert fetch(reader, "t") is not None
    assert fetch(reader, "absent") is None
    before = other.get_stats()
    assert (before["hits"], before["misses"]) == (0, 0)  # still in reader's memory
    reader.flush()
    after = other.get_stats()
    assert (after["hits"], after["misses"]) == (3, 1)
    assert [e["hits"] for e in other.entries()] == [3]
    # This process's own statistics are written before they are read: no flush needed.
    assert fetch(reader, "t") is not None
    assert reader.get_stats()["hits"] == 4


def test_a_batch_is_written_after_flush_ops_lookups(
    make_cache: MakeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr(store, "FLUSH_OPS", 4)
    cache, other = make_cache(), make_cache()
    put(cache, "t")
    for _ in range(3):
        fetch(cache, "t")
    assert other.get_stats()["hits"] == 0
    fetch(cache, "absent")  # the fourth lookup writes the batch
    stats = other.get_stats()
    assert (stats["hits"], stats["misses"]) == (3, 1)


def test_a_batch_is_written_once_flush_seconds_have_passed(
    make_cache: MakeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "FLUSH_SECONDS", 0.0)  # every lookup is past the window
    cache, other = make_cache(), make_cache()
    put(cache, "t")
    fetch(cache, "t")
    assert other.get_stats()["hits"] == 1


@pytest.mark.usefixtures("slow_batches")
def test_a_hit_on_a_row_rewritten_before_the_flush_counts_but_not_for_the_new_entry(
    make_cache: MakeCache,
) -> None:
    reader, writer = make_cache(), make_cache()
    put(reader, "t", "old answer")
    assert fetch(reader, "t") is not None
    put(writer, "t", "new answer")  # rewrites the row the pending hit refers to
    reader.flush()
    stats = writer.get_stats()
    assert stats["hits"] == 1  # the lookup happened and returned an answer
    assert [e["hits"] for e in writer.entries()] == [0]  # the new entry was never read


@pytest.mark.usefixtures("slow_batches")
def test_a_set_writes_the_pending_reads_first_so_culling_keeps_them(
    make_cache: MakeCache,
) -> None:
    cache = make_cache(max_size_mb=0.25, max_entry_kb=64)
    text = "y" * 9000
    for i in range(20):
        put(cache, f"t{i}", text)
    for i in range(5):
        assert fetch(cache, f"t{i}") is not None  # pending, not written
    for i in range(20, 30):
        put(cache, f"t{i}", text)  # culls: the pending reads must count
    assert all(fetch(cache, f"t{i}") is not None for i in range(5))


def test_counts_gathered_by_a_process_that_exits_without_close_are_written(
    cache_path: Path, make_cache: MakeCache
) -> None:
    cache = make_cache()
    put(cache, "t")
    script = textwrap.dedent(
        f"""
        from claude_force_magic.cache import ResponseCache
        cache = ResponseCache({str(cache_path)!r}, cache_secret={SECRET!r})
        for _ in range(7):
            assert cache.get("python-expert", "t", "m") is not None
        cache.get("python-expert", "absent", "m")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (7, 1)


@pytest.mark.usefixtures("slow_batches")
def test_a_forged_entry_is_deleted_and_counted_at_once(
    make_cache: MakeCache,
) -> None:
    cache = make_cache()
    put(cache, "t")
    key = cache.key_for("python-expert", "t", "m")
    con = sqlite3.connect(cache.directory / "cache.db", isolation_level=None)
    try:
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", (b"forged", key))
    finally:
        con.close()
    assert fetch(cache, "t") is None  # deleted in its own transaction, counted there
    stats = cache.get_stats()
    assert (stats["integrity_failures"], stats["misses"], stats["entries"]) == (1, 1, 0)


def test_a_lookup_notices_a_directory_swapped_for_a_symlink_within_the_window(
    make_cache: MakeCache, tmp_path: Path
) -> None:
    # Lookups check the directory's and cache.db's identity at most every IDENTITY_SECONDS;
    # within that window they may still serve the opened cache's verified entries.
    cache = make_cache()
    now = [0.0]
    cache._monotonic = lambda: now[0]
    put(cache, "t")  # a write: checked now, the window starts
    assert fetch(cache, "t") is not None
    elsewhere = tmp_path / "elsewhere"
    cache.directory.rename(elsewhere)
    cache.directory.symlink_to(elsewhere)
    within = fetch(cache, "t")  # the verified entry of the cache that was opened
    assert within is not None and within["response"] == "an answer"
    now[0] += store.IDENTITY_SECONDS
    assert fetch(cache, "t") is None
    assert "symlink" in (cache.get_stats()["problem"] or "")


def test_a_lookup_never_follows_a_swapped_directory_to_a_value_file(
    make_cache: MakeCache, tmp_path: Path
) -> None:
    # Within the window too: a value file is reached with O_NOFOLLOW from the directory path,
    # so the symlink is refused on the read itself (a miss), and the delete that follows is a
    # write, which checks the directory first and refuses it.
    cache = make_cache()
    cache._monotonic = lambda: 0.0  # the window never ends
    put(cache, "big", "B" * 40_000)  # stored in its own value file
    elsewhere = tmp_path / "elsewhere"
    cache.directory.rename(elsewhere)
    cache.directory.symlink_to(elsewhere)
    assert fetch(cache, "big") is None
    assert "symlink" in (cache.get_stats()["problem"] or "")


def test_a_write_notices_a_replaced_cache_db_at_once(make_cache: MakeCache) -> None:
    cache = make_cache()
    put(cache, "t")
    assert fetch(cache, "t") is not None  # within the lookup window from here on
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (cache.directory / name).unlink(missing_ok=True)
    put(cache, "u", "stored in the new database")  # the write reopens first
    with ResponseCache(cache.directory, cache_secret=SECRET) as fresh:
        assert fresh.get("python-expert", "u", "m") is not None


@pytest.mark.usefixtures("slow_batches")
def test_a_forked_child_does_not_write_its_parents_pending_lookups_again(
    make_cache: MakeCache,
) -> None:
    import os

    cache = make_cache()
    put(cache, "t")
    for _ in range(3):
        assert fetch(cache, "t") is not None  # pending in this process
    pid = os.fork()
    if pid == 0:  # the child: one lookup of its own, then close (which writes its batch)
        code = 0
        try:
            fetch(cache, "t")
            cache.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get_stats()["hits"] == 4  # 3 here + 1 in the child, not 3 + 3 + 1


@pytest.mark.usefixtures("slow_batches")
def test_closing_after_the_directory_was_deleted_does_not_recreate_it(
    make_cache: MakeCache,
) -> None:
    import shutil

    cache = make_cache()
    put(cache, "t")
    assert fetch(cache, "t") is not None  # a pending hit
    shutil.rmtree(cache.directory)
    cache.close()  # writes nothing: the database it counted in is gone
    assert not cache.directory.exists()
