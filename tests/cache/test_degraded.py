"""A broken cache degrades, never re-buys, never blocks (issue 9 §3).

Real failures, as the product sees them: a tmpfs of a few hundred KiB filled to the last
block (disk full) and remounted read-only (``mount``: the tests run as root, where ``chmod``
stops nothing), a directory deleted or swapped for a symlink while the cache is open.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from claude_force_magic.cache import ResponseCache, store
from claude_force_magic.errors import CacheError, ConfigurationError
from claude_force_magic.settings import MAX_TTL_HOURS

if TYPE_CHECKING:
    from conftest import SmallFs

from .conftest import SECRET, db_execute, fetch, put

MakeCache = Callable[..., ResponseCache]


def _warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and word in r.getMessage()
    ]


# -- limits ---------------------------------------------------------------------------------


def test_a_write_never_culls_the_entry_it_just_stored(make_cache: MakeCache) -> None:
    # Issue: six 200,000-character sets into a 1 MiB cache emptied it, the last one included.
    cache = make_cache(max_size_mb=1)
    for i in range(6):
        put(cache, f"t{i}", "x" * 200_000)
        assert fetch(cache, f"t{i}") is not None, i
    stats = cache.get_stats()
    assert stats["entries"] >= 4  # only what was needed to get under the limit went
    assert stats["evictions"] == 6 - stats["entries"]
    assert stats["size_bytes"] <= stats["max_size_bytes"]
    assert fetch(cache, "t0") is None  # the least recently used went first


@pytest.mark.parametrize(("size_mb", "entry_kb"), [(0.5, 1024), (1, 2048), (0.001, 4)])
def test_a_limit_smaller_than_one_entry_is_refused(
    cache_path: Path, size_mb: float, entry_kb: float
) -> None:
    with pytest.raises(ConfigurationError, match=r"max_size_mb.*max_entry_kb"):
        ResponseCache(cache_path, cache_secret=SECRET, max_size_mb=size_mb, max_entry_kb=entry_kb)
    assert not cache_path.exists()  # refused before anything was created


def test_tilde_in_the_directory_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    with ResponseCache("~/.claude/cache", cache_secret=SECRET) as cache:
        assert cache.directory == home / ".claude" / "cache"
        put(cache, "t")
    assert not (work / "~").exists()
    assert (home / ".claude" / "cache" / "cache.db").is_file()


@pytest.mark.parametrize("ttl", [87_600_000, 1e308, MAX_TTL_HOURS + 1, float("inf"), 0, -1])
def test_ttl_is_bounded_where_it_enters(cache_path: Path, ttl: float) -> None:
    with pytest.raises(ConfigurationError, match="ttl_hours"):
        ResponseCache(cache_path, cache_secret=SECRET, ttl_hours=ttl)
    with ResponseCache(cache_path, cache_secret=SECRET) as cache:
        with pytest.raises(ConfigurationError, match="ttl_hours"):
            cache.set("python-expert", "t", "m", "answer", 1, 1, 0.0, ttl_hours=ttl)
        assert cache.get_stats()["entries"] == 0  # refused before anything was written


def test_ten_years_is_accepted_and_listed(cache: ResponseCache) -> None:
    put(cache, "t", ttl_hours=MAX_TTL_HOURS)
    (entry,) = cache.entries()
    assert entry["expires_at"] - entry["created_at"] == pytest.approx(MAX_TTL_HOURS * 3600)


# -- disk full and read-only ----------------------------------------------------------------


def test_disk_full_still_serves_hits_and_skips_stores_with_one_warning(
    small_fs: SmallFs, clock: Callable[[], float], caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(small_fs.path / "cache", cache_secret=SECRET, clock=clock)
    try:
        put(cache, "kept", "a valid answer")
        filler = small_fs.fill()
        for _ in range(3):  # every hit is a write (LRU time, hit count): they fail, hits don't
            hit = fetch(cache, "kept")
            assert hit is not None and hit["response"] == "a valid answer"
        for i in range(3):
            assert not cache.set("python-expert", f"new{i}", "m", "y" * 40_000, 1, 1, 0.0)
        assert len(_warnings(caplog, str(small_fs.path))) == 1  # one line for the whole episode
        assert fetch(cache, "new0") is None
        filler.unlink()
        put(cache, "after", "stored again")  # writing works again: no restart needed
        assert fetch(cache, "after") is not None
    finally:
        cache.close()


def test_a_read_only_directory_opens_read_only(
    small_fs: SmallFs, clock: Callable[[], float], caplog: pytest.LogCaptureFixture
) -> None:
    directory = small_fs.path / "cache"
    with ResponseCache(directory, cache_secret=SECRET, clock=clock) as writer:
        put(writer, "kept", "a valid answer")
        put(writer, "big", "z" * 40_000)  # in its own value file
    small_fs.read_only()
    with ResponseCache(directory, cache_secret=SECRET, clock=clock) as cache:
        assert cache.read_only
        assert "read_only=True" in repr(cache)
        stats = cache.get_stats()
        assert stats["read_only"] and stats["entries"] == 2
        assert fetch(cache, "kept")["response"] == "a valid answer"  # type: ignore[index]
        assert fetch(cache, "big")["response"] == "z" * 40_000  # type: ignore[index]
        assert {e["key"] for e in cache.entries()} == {
            cache.key_for("python-expert", t, "m") for t in ("kept", "big")
        }
        assert not cache.set("python-expert", "new", "m", "answer", 1, 1, 0.0)
        assert not cache.set("python-expert", "new2", "m", "answer", 1, 1, 0.0)
        assert len(_warnings(caplog, "read-only")) == 1
        for operation in (cache.clear, cache.verify):
            with pytest.raises(CacheError, match="read-only"):
                operation()


def test_a_new_directory_on_a_read_only_path_is_a_clear_error(small_fs: SmallFs) -> None:
    small_fs.read_only()
    with pytest.raises(ConfigurationError, match="Could not create the directory"):
        ResponseCache(small_fs.path / "cache", cache_secret=SECRET)


# -- the directory changed under an open cache ----------------------------------------------


def test_deleted_directory_is_recreated_not_written_into_the_void(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache()
    now = [0.0]
    cache._monotonic = lambda: now[0]  # lookups check the directory every IDENTITY_SECONDS
    put(cache, "t")
    shutil.rmtree(cache.directory)
    now[0] += store.IDENTITY_SECONDS
    assert fetch(cache, "t") is None  # not a "hit" from the unlinked database
    put(cache, "u", "kept after the restart")
    assert (cache.directory.stat().st_mode & 0o777) == 0o700
    with ResponseCache(cache.directory, cache_secret=SECRET) as fresh:  # "after a restart"
        assert fresh.get("python-expert", "u", "m")["response"] == "kept after the restart"  # type: ignore[index]
    assert _warnings(caplog, "reopened")


def test_directory_swapped_for_a_symlink_is_not_written_through(
    make_cache: MakeCache, tmp_path: Path
) -> None:
    cache = make_cache()
    put(cache, "t")
    elsewhere = tmp_path / f"elsewhere-{uuid.uuid4().hex}"
    cache.directory.rename(elsewhere)
    cache.directory.symlink_to(elsewhere)
    assert not cache.set("python-expert", "u", "m", "answer", 1, 1, 0.0)
    assert fetch(cache, "t") is None
    assert db_execute(elsewhere, "SELECT COUNT(*) FROM Cache") == [(1,)]
    assert "symlink" in (cache.get_stats()["problem"] or "")
    with pytest.raises(CacheError, match="symlink"):
        cache.entries()
    # Fixed (the link replaced by a real private directory): the cache is used again.
    cache.directory.unlink()
    elsewhere.rename(cache.directory)
    assert fetch(cache, "t") is not None
    assert cache.get_stats()["problem"] is None


def test_get_returns_exactly_the_documented_fields(cache: ResponseCache) -> None:
    put(cache, "t")
    assert set(fetch(cache, "t") or {}) == {
        "response",
        "agent_name",
        "model",
        "input_tokens",
        "output_tokens",
        "estimated_cost",
        "created_at",
        "expires_at",
        "age_seconds",
        "metadata",
        "key",
    }
    doc = ResponseCache.get.__doc__ or ""
    for name in fetch(cache, "t") or {}:
        assert f"``{name}``" in doc, name
