"""ResponseCache behaviour: round trip, expiry, limits, statistics, and the review findings."""

from __future__ import annotations

import logging
import os
import threading
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_force_magic.cache import CacheSkipWarning, ResponseCache
from claude_force_magic.errors import CacheError, ConfigurationError, SecretError, UnsafePathError

from .conftest import SECRET, FakeClock, db_execute, fetch, put

MakeCache = Callable[..., ResponseCache]


def test_round_trip_returns_every_field(cache: ResponseCache, clock: FakeClock) -> None:
    stored = cache.set(
        "python-expert", "Explain asyncio", "claude-sonnet-5", "# Answer ✓", 120, 480, 0.0125,
        metadata={"stop_reason": "end_turn", "request_id": "req_1"}, max_tokens=1024,
    )  # fmt: skip
    assert stored is True
    clock.advance(30)
    hit = cache.get("python-expert", "Explain asyncio", "claude-sonnet-5", max_tokens=1024)
    assert hit is not None
    assert hit["response"] == "# Answer ✓"
    assert (hit["agent_name"], hit["model"]) == ("python-expert", "claude-sonnet-5")
    assert (hit["input_tokens"], hit["output_tokens"], hit["estimated_cost"]) == (120, 480, 0.0125)
    assert hit["metadata"] == {"stop_reason": "end_turn", "request_id": "req_1"}
    assert hit["created_at"] == clock.now - 30
    assert hit["expires_at"] == hit["created_at"] + 24 * 3600
    assert hit["age_seconds"] == 30
    assert hit["key"] == cache.key_for("python-expert", "Explain asyncio", "claude-sonnet-5",
                                       max_tokens=1024)  # fmt: skip


def test_request_options_are_part_of_the_key_metadata_is_not(cache: ResponseCache) -> None:
    put(cache, "t", "first", metadata={"request_id": "a"}, max_tokens=10)
    assert fetch(cache, "t", max_tokens=11) is None
    put(cache, "t", "second", metadata={"request_id": "b"}, max_tokens=10)
    hit = fetch(cache, "t", max_tokens=10)
    assert hit is not None and hit["response"] == "second" and hit["metadata"]["request_id"] == "b"
    assert cache.get_stats()["entries"] == 1


def test_ttl_expiry_with_a_controlled_clock(cache: ResponseCache, clock: FakeClock) -> None:
    put(cache, "t")
    clock.advance(24 * 3600 - 1)
    assert fetch(cache, "t") is not None
    clock.advance(2)
    assert fetch(cache, "t") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["entries"], stats["hits"], stats["misses"]) == (1, 0, 1, 1)


def test_per_entry_ttl_overrides_the_default(cache: ResponseCache, clock: FakeClock) -> None:
    put(cache, "short", ttl_hours=0.5)
    put(cache, "default")
    clock.advance(3600)
    assert fetch(cache, "short") is None
    assert fetch(cache, "default") is not None


def test_excluded_agents_are_neither_stored_nor_served(make_cache: MakeCache) -> None:
    cache = make_cache(exclude_agents=("python-expert",))
    with pytest.warns(CacheSkipWarning, match="excluded"):
        assert cache.set("python-expert", "t", "m", "r", 1, 1, 0.0) is False
    assert cache.get("python-expert", "t", "m") is None
    assert cache.set("other", "t", "m", "r", 1, 1, 0.0) is True
    assert cache.get_stats()["entries"] == 1


def test_disabled_cache_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never-created"
    cache = ResponseCache(target, enabled=False)
    with pytest.warns(CacheSkipWarning, match="disabled"):
        assert cache.set("a", "t", "m", "r", 1, 1, 0.0) is False
    assert cache.get("a", "t", "m") is None
    assert cache.delete("a", "t", "m") is False
    assert cache.clear() == 0 and cache.entries() == [] and cache.verify().checked == 0
    stats = cache.get_stats()
    assert stats["enabled"] is False and stats["misses"] == 0 and stats["entries"] == 0
    assert not target.exists()
    assert not (tmp_path.parent / "config").exists() or not any(tmp_path.parent.rglob("cache.key"))


def test_delete_and_clear(cache: ResponseCache) -> None:
    for i in range(5):
        put(cache, f"t{i}")
        assert cache.set("other-agent", f"t{i}", "m", "r", 1, 1, 0.0)
    assert cache.delete("python-expert", "t0", "m") is True
    assert cache.delete("python-expert", "t0", "m") is False
    assert cache.clear("python-expert") == 4
    assert fetch(cache, "t1") is None
    assert cache.get("other-agent", "t1", "m") is not None
    assert cache.clear() == 5
    stats = cache.get_stats()
    assert (stats["entries"], stats["deletes"], stats["cleared"], stats["evictions"]) == (
        0,
        1,
        9,
        0,
    )


def test_oversized_responses_are_skipped_with_a_warning(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(max_entry_kb=4)
    with pytest.warns(CacheSkipWarning, match="max_entry_kb=4"):
        assert cache.set("python-expert", "big", "m", "x" * 5000, 1, 1, 0.0) is False
    with pytest.warns(CacheSkipWarning):  # small text, but the stored entry is over the limit
        assert cache.set("python-expert", "edge", "m", "x" * 4090, 1, 1, 0.0) is False
    assert fetch(cache, "big") is None
    put(cache, "small", "x" * 3000)
    stats = cache.get_stats()
    assert (stats["oversized_skipped"], stats["sets"], stats["entries"]) == (2, 1, 1)


def test_lru_eviction_drops_least_recently_read_first(make_cache: MakeCache) -> None:
    cache = make_cache(max_size_mb=0.25, max_entry_kb=64)
    text = "y" * 9000  # inline in SQLite: about three 4 KiB pages per entry
    for i in range(20):
        put(cache, f"t{i}", text)
    for i in range(5):
        assert fetch(cache, f"t{i}") is not None  # t0..t4 are now the most recently read
    for i in range(20, 30):
        put(cache, f"t{i}", text)
    stats = cache.get_stats()
    assert stats["evictions"] > 0
    assert stats["evictions"] == 30 - stats["entries"]  # exact: no other removals happened
    assert stats["size_bytes"] <= stats["max_size_bytes"] + 11 * 12 * 1024
    assert all(fetch(cache, f"t{i}") is not None for i in [*range(5), *range(20, 30)])
    assert any(fetch(cache, f"t{i}") is None for i in range(5, 20))


def test_entries_lists_metadata_without_response_text(cache: ResponseCache) -> None:
    put(cache, "a", "secret answer text")
    put(cache, "b", "another")
    fetch(cache, "a")
    fetch(cache, "a")
    rows = {row["key"]: row for row in cache.entries()}
    assert len(rows) == 2
    row = rows[cache.key_for("python-expert", "a", "m")]
    assert row["hits"] == 2 and row["input_tokens"] == 10 and row["size_bytes"] > 0
    assert "response" not in row and "secret answer text" not in repr(rows)


def test_verify_reports_valid_and_expired(cache: ResponseCache, clock: FakeClock) -> None:
    put(cache, "short", ttl_hours=1)
    put(cache, "long")
    clock.advance(7200)
    report = cache.verify()
    assert (report.checked, report.valid, report.expired, report.removed) == (2, 1, 1, 1)
    assert report.ok and "checked=2" in repr(report)


def test_verify_removes_orphan_value_files_after_a_grace_period(
    cache: ResponseCache, tmp_path: Path
) -> None:
    put(cache, "kept", "k" * 40_000)
    orphan = cache.directory / "ab" / "cd" / ("0" * 28 + ".val")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a killed writer")
    outside = tmp_path / "elsewhere"
    (outside / "ef").mkdir(parents=True)
    planted = outside / "ef" / ("1" * 28 + ".val")
    planted.write_bytes(b"not ours")
    (cache.directory / "12").symlink_to(outside)  # a symlinked directory is never walked
    assert cache.verify().orphans_removed == 0  # too fresh: could be a writer about to commit
    report = cache.verify(orphan_grace_seconds=0)
    assert report.orphans_removed == 1 and not orphan.exists()
    assert planted.exists()
    assert fetch(cache, "kept") is not None


@pytest.mark.parametrize("field", ["ttl_hours", "max_size_mb", "max_entry_kb"])
@pytest.mark.parametrize("value", [0, -1, float("inf"), "10"])
def test_bad_limits_are_configuration_errors(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        ResponseCache(tmp_path / "c", cache_secret=SECRET, **{field: value})  # type: ignore[arg-type]


def test_bad_argument_types_raise_type_error(cache: ResponseCache) -> None:
    with pytest.raises(TypeError, match="response"):
        cache.set("a", "t", "m", b"bytes", 1, 1, 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_tokens"):
        cache.set("a", "t", "m", "r", -1, 1, 0.0)
    with pytest.raises(TypeError, match="estimated_cost"):
        cache.set("a", "t", "m", "r", 1, 1, float("nan"))
    with pytest.raises(TypeError, match="metadata"):
        cache.set("a", "t", "m", "r", 1, 1, 0.0, metadata={"x": {1, 2}})
    with pytest.raises(TypeError, match="not JSON"):
        cache.get("a", "t", "m", system=object())


def test_context_manager_and_repr(make_cache: MakeCache, cache_path: Path) -> None:
    with make_cache() as cache:
        put(cache, "t")
        assert repr(cache).startswith("ResponseCache(directory=")
        assert cache.directory == cache_path and cache.enabled and cache.ttl_hours == 24


def test_logs_never_contain_task_or_response(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="claude_force_magic")
    cache = make_cache(max_entry_kb=1)
    agent = "agent\x1b[31m\nFAKE LOG LINE" + "x" * 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.set(agent, "TASK-TEXT", "m", "RESPONSE-TEXT" * 200, 1, 1, 0)
    assert cache.set(agent, "TASK-TEXT", "m", "RESPONSE-TEXT", 1, 1, 0)
    db_execute(cache.directory, "UPDATE Cache SET value = X'00'")
    assert cache.get(agent, "TASK-TEXT", "m") is None
    assert len(caplog.records) == 2 and "integrity" in caplog.records[1].getMessage()
    text = caplog.text
    assert "x" * 100 not in text  # agent names are truncated
    assert "TASK-TEXT" not in text and "RESPONSE-TEXT" not in text
    assert "\x1b" not in text and "\nFAKE LOG LINE" not in text


# -- review findings --------------------------------------------------------------------------


def test_bug_003_stats_exact_under_threads(cache: ResponseCache) -> None:
    threads, ops = 8, 150
    counts = [dict.fromkeys(("hits", "misses", "sets", "deletes"), 0) for _ in range(threads)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(ops):
                task = f"t{(i * 7 + n) % 12}"
                kind = (i + n) % 5
                if kind < 2:
                    counts[n]["hits" if fetch(cache, task) else "misses"] += 1
                elif kind < 4:
                    put(cache, task)
                    counts[n]["sets"] += 1
                elif cache.delete("python-expert", task, "m"):
                    counts[n]["deletes"] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    stats = cache.get_stats()
    for name in ("hits", "misses", "sets", "deletes"):
        assert stats[name] == sum(c[name] for c in counts), name
    assert stats["integrity_failures"] == 0 and stats["evictions"] == 0
    assert stats["entries"] == len(cache.entries())


def test_bug_006_no_memory_held_per_entry(cache: ResponseCache) -> None:
    def write(start: int, count: int) -> None:
        for i in range(start, start + count):
            put(cache, f"task {i}", f"answer {i} " * 50)

    write(0, 200)  # warm up connections, statement caches, lazy imports
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        write(200, 2000)
        for i in range(0, 2200, 7):
            fetch(cache, f"task {i}")
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert cache.get_stats()["entries"] == 2200
    # Only the bounded memo of verified bodies (cache/memo.py) grows with what was read; it
    # holds each answer once (about its stored size + 1 KB), at most max_bytes in all.
    memo = cache._memo.size_bytes
    assert 0 < memo <= cache._memo.max_bytes
    assert growth - memo < 200_000, f"grew {growth} bytes for 2000 entries"  # ~1 MB stored


def test_bug_007_size_comes_from_diskcache_not_stat(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(cache, "small", "s" * 100)
    put(cache, "large", "L" * 50_000)  # goes to its own value file
    ((page_count,),) = db_execute(cache.directory, "PRAGMA page_count")
    ((page_size,),) = db_execute(cache.directory, "PRAGMA page_size")
    ((files,),) = db_execute(cache.directory, "SELECT value FROM Settings WHERE key = 'size'")
    assert files > 50_000

    def no_stat(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("size must not come from stat()")

    monkeypatch.setattr(os, "stat", no_stat)
    monkeypatch.setattr(os.path, "getsize", no_stat)
    stats = cache.get_stats()
    assert stats["size_bytes"] == page_count * page_size + files


def test_sec_001_placeholder_secret_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SecretError, match="placeholder"):
        ResponseCache(tmp_path / "c", cache_secret="default_secret_change_in_production")
    monkeypatch.setenv("CLAUDE_CACHE_SECRET", "default_secret_change_in_production")
    with pytest.raises(SecretError, match="placeholder"):
        ResponseCache(tmp_path / "c")
    with pytest.raises(SecretError, match="16"):
        ResponseCache(tmp_path / "c", cache_secret="short")
    assert not (tmp_path / "c").exists()


def test_sec_001_no_secret_means_a_generated_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_force_magic import settings

    key_file = settings.config_dir() / settings.KEY_FILE_NAME
    assert not key_file.exists()
    first = ResponseCache(tmp_path / "c")
    put(first, "t")
    first.close()
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    second = ResponseCache(tmp_path / "c")
    assert fetch(second, "t") is not None  # the same generated key signs and verifies
    second.close()
    # another config directory generates another key: no built-in default secret signs entries
    monkeypatch.setenv("CLAUDE_FORCE_MAGIC_CONFIG_DIR", str(tmp_path / "other-config"))
    other = ResponseCache(tmp_path / "c")
    assert fetch(other, "t") is None
    assert other.get_stats()["integrity_failures"] == 1
    other.close()


def test_sec_003_symlinked_cache_dir_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafePathError, match="symlink"):
        ResponseCache(link, cache_secret=SECRET)
    assert list(real.iterdir()) == []


def test_sec_003_cache_dir_created_private(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "new" / "cache", cache_secret=SECRET)
    assert (cache.directory.stat().st_mode & 0o777) == 0o700


def test_sec_006_entry_signed_with_another_secret_is_a_miss(make_cache: MakeCache) -> None:
    foreign = make_cache(cache_secret="a-different-secret-0123456789")
    put(foreign, "t", "poisoned answer")
    mine = make_cache()
    assert fetch(mine, "t") is None
    stats = mine.get_stats()
    assert (stats["integrity_failures"], stats["entries"], stats["hits"]) == (1, 0, 0)


def test_sec_006_secret_never_shown(make_cache: MakeCache, cache_path: Path) -> None:
    cache = make_cache()
    put(cache, "t")
    put(cache, "big", "b" * 40_000)
    shown = repr(cache) + repr(cache.get_stats()) + repr(cache.entries()) + repr(cache.verify())
    assert SECRET not in shown
    for path in cache_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    with pytest.raises(SecretError) as info:
        ResponseCache(cache_path, cache_secret=SECRET[:10])
    assert SECRET[:10] not in str(info.value)


def test_damaged_database_raises_cache_error(cache: ResponseCache, make_cache: MakeCache) -> None:
    put(cache, "t")
    db_execute(cache.directory, "DROP TABLE CfmStats")
    fetch(cache, "t")  # a lookup only reads the Cache table (its count waits in memory)
    with pytest.raises(CacheError, match="database failed"):
        cache.get_stats()  # writing the gathered count, then reading them, both fail
    db_execute(cache.directory, "DROP TABLE Cache")
    with pytest.raises(CacheError, match="database failed"):
        fetch(cache, "t")
    cache.close()
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (cache.directory / name).unlink(missing_ok=True)
    (cache.directory / "cache.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="delete the directory"):
        make_cache()


def test_sec_005_cache_secret_is_redacted_from_package_logs(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    # README / docs: the cache secret never appears in logs, even if code logs it by mistake.
    from claude_force_magic.guard import SecretRedactor, get_logger

    secret = "a-cache-secret-nobody-may-see-0123"
    SecretRedactor.forget_all()
    try:
        make_cache(cache_secret=secret)
        with caplog.at_level(logging.WARNING, logger="claude_force_magic"):
            get_logger("claude_force_magic.engine").warning("oops, logged %s", secret)
    finally:
        SecretRedactor.forget_all()
    assert caplog.records and secret not in caplog.text


def test_a_large_hit_allocates_about_twice_the_entry_not_four_times(
    make_cache: MakeCache,
) -> None:
    import tracemalloc

    cache = make_cache(max_entry_kb=2048)
    text = "large answer line\n" * 58_000  # ~1 MB: stored in its own value file
    put(cache, "big", text)
    assert fetch(cache, "big") is not None  # warm: connections, statement caches
    tracemalloc.start()
    try:
        hit = fetch(cache, "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hit is not None and hit["response"] == text
    # The bytes read and the decoded answer; the signed body is hashed and decoded where it
    # lies (it used to be copied twice more: 4x the entry).
    assert peak < 2.6 * len(text), f"a {len(text):,}-byte hit peaked at {peak:,} bytes"
