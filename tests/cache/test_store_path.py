"""What one ``set`` writes: only the indexes the cache uses (each is a page per set).

See benchmarks/bench_cache.py (goal: set within 1.3x raw diskcache) and docs/cache.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.cache import ResponseCache, signing
from claude_force_magic.cache.backend import Backend, CacheWriteError
from claude_force_magic.cache.inspect import CacheView, Query
from claude_force_magic.errors import CacheError

from .conftest import db_execute, fetch, put

_FULL_EXPIRE_INDEX = "CREATE INDEX Cache_expire_time ON Cache (expire_time)"


def _index_sql(directory: Path, name: str) -> str | None:
    rows = db_execute(directory, "SELECT sql FROM sqlite_master WHERE name = ?", (name,))
    return rows[0][0] if rows else None


def _expire_index_entries(directory: Path) -> int:
    rows = db_execute(
        directory, "SELECT COUNT(*) FROM Cache INDEXED BY Cache_expire_time WHERE expire_time > 0"
    )
    return int(rows[0][0])


def test_a_set_adds_no_entry_to_diskcaches_expire_index(cache: ResponseCache) -> None:
    for i in range(5):
        put(cache, f"task {i}")
    sql = _index_sql(cache.directory, "Cache_expire_time")
    assert sql is not None and "WHERE expire_time IS NOT NULL" in sql
    # The partial index holds only rows with an expiry: none of ours.
    assert _expire_index_entries(cache.directory) == 0
    assert _index_sql(cache.directory, "CfmIndex_agent") is None


def test_a_database_of_an_older_release_is_converted_once(
    make_cache: Callable[..., ResponseCache], cache_path: Path
) -> None:
    first = make_cache()
    for i in range(3):
        put(first, f"task {i}")
    first.close()
    # As an older release left it: diskcache's full expiry index and an (agent, created) index.
    db_execute(cache_path, "DROP INDEX Cache_expire_time")
    db_execute(cache_path, _FULL_EXPIRE_INDEX)
    db_execute(cache_path, "CREATE INDEX CfmIndex_agent ON CfmIndex (agent, created)")

    again = make_cache()
    sql = _index_sql(cache_path, "Cache_expire_time")
    assert sql is not None and "WHERE" in sql
    assert _index_sql(cache_path, "CfmIndex_agent") is None
    assert all(fetch(again, f"task {i}") is not None for i in range(3))
    page = CacheView(again).page(Query(agent="python-expert"))
    assert page.total == 3
    report = again.verify()
    assert report.valid == 3 and not report.invalid


def test_an_edited_expiry_still_finds_the_partial_index(cache: ResponseCache) -> None:
    put(cache, "task")
    db_execute(cache.directory, "UPDATE Cache SET expire_time = 1")
    assert _expire_index_entries(cache.directory) == 1
    # The expiry is signed into the entry: diskcache's column changes nothing.
    assert fetch(cache, "task") is not None


_METADATA_SHAPES: list[dict[Any, Any]] = [
    {},
    {"stop_reason": "end_turn"},
    {"stop_reason": "max_tokens", "request_id": "req_1", "cache_read": 12, "partial": False},
    {'quote"and\\slash': "line\nbreak\ttab\x00nul", "unicode": "héllo ☃ 𝄞", "none": None},
    {"lone": "\ud800 surrogate", "big": 2**70, "negative": -3, "yes": True},
    {"float": 0.1, "nested": {"a": [1, 2.5, None]}},  # not flat: the encoder's path
    {1: "int key", "b": "x"},  # the encoder turns the key into "1"
    {"later": 1, "earlier": 2},  # insertion order, not sorted
]


@pytest.mark.parametrize("metadata", _METADATA_SHAPES)
def test_metadata_is_written_exactly_as_the_json_encoder_writes_it(
    metadata: dict[Any, Any],
) -> None:
    assert signing._metadata_json(metadata) == signing._ENCODER.encode(metadata)


def test_sealed_entries_open_with_their_metadata(cache: ResponseCache) -> None:
    for i, metadata in enumerate(_METADATA_SHAPES[:5]):
        put(cache, f"task {i}", metadata=metadata)
        found = fetch(cache, f"task {i}")
        assert found is not None and found["metadata"] == metadata


# -- the write transaction (diskcache's rules, without its generator) ----------------------


def test_a_locked_database_refuses_the_write_and_removes_its_value_file(tmp_path: Path) -> None:
    db = Backend(tmp_path / "c", size_limit=2**30, timeout=0.05)
    holder = sqlite3.connect(tmp_path / "c" / "cache.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(CacheWriteError, match="locked"):
            db.put("key", b"v" * 40_000, "agent")  # written to its own file before the lock
        assert list(db._disk.value_files()) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db.put("key", b"v" * 40_000, "agent")
    assert len(list(db._disk.value_files())) == 1
    assert db.read_row("key") is not None
    db.close()


def test_a_failed_statement_rolls_back_and_the_next_write_works(cache: ResponseCache) -> None:
    db = cache._db
    assert isinstance(db, Backend)
    with pytest.raises(CacheError, match="no such table"), db.transaction() as (sql, _cleanup):
        Backend.bump(sql, deletes=5)
        sql("SELECT * FROM NoSuchTable")
    assert cache.get_stats()["deletes"] == 0
    put(cache, "after")
    assert fetch(cache, "after") is not None


def test_a_set_inside_a_held_transaction_joins_it(cache: ResponseCache) -> None:
    db = cache._db
    assert isinstance(db, Backend)
    with pytest.raises(RuntimeError), db.transaction():
        put(cache, "rolled back")
        raise RuntimeError("the outer transaction fails")
    assert fetch(cache, "rolled back") is None
    with db.transaction():
        put(cache, "one")
        put(cache, "two")
    assert fetch(cache, "one") is not None and fetch(cache, "two") is not None
    assert cache.get_stats()["entries"] == 2


def test_space_freed_by_clear_is_reused_without_evicting_new_entries(
    make_cache: Callable[..., ResponseCache], cache_path: Path
) -> None:
    # A cache.db made without auto-vacuum (here by hand: SQLite's own default) keeps freed
    # pages in the file; they must not count toward max_size_mb, or the sets after a clear
    # would evict each other.
    cache_path.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(cache_path / "cache.db") as con:
        con.execute("PRAGMA auto_vacuum = NONE")
        con.execute("CREATE TABLE Unrelated (x)")  # fixes the mode: it cannot change now
    cache = make_cache(max_size_mb=1)
    for i in range(600):  # about 1.5 MB of answers: the cache culls to stay under 1 MB
        put(cache, f"old {i}", "x" * 2500)
    assert cache.get_stats()["evictions"] > 0
    cache.clear()
    with sqlite3.connect(cache_path / "cache.db") as con:
        assert con.execute("PRAGMA freelist_count").fetchone()[0] > 100  # space kept free
    assert cache.get_stats()["size_bytes"] < 200_000
    for i in range(100):
        put(cache, f"new {i}", "y" * 2500)
    assert all(fetch(cache, f"new {i}") is not None for i in range(100))
    assert cache.get_stats()["entries"] == 100
