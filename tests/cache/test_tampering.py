"""Someone with write access to the cache directory edits it: every edit is a counted miss.

No edit may run code, make the cache read or delete a file outside its directory, or make a
forged answer come back from ``get``.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from diskcache.core import MODE_BINARY, MODE_PICKLE

from claude_force_magic.cache import ResponseCache

from .conftest import FakeClock, db_execute, fetch, put

BIG = "L" * 40_000  # over diskcache's 32 KiB disk_min_file_size: stored in its own file


class MakesMarker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def key(cache: ResponseCache, task: str) -> str:
    return cache.key_for("python-expert", task, "m")


def row(cache: ResponseCache, task: str) -> tuple[int, int, str | None, bytes | None]:
    ((rowid, mode, filename, value),) = db_execute(
        cache.directory,
        "SELECT rowid, mode, filename, value FROM Cache WHERE key = ?",
        (key(cache, task),),
    )
    return rowid, mode, filename, value


def assert_counted_miss(cache: ResponseCache, task: str, failures: int = 1) -> None:
    assert fetch(cache, task) is None
    stats = cache.get_stats()
    assert stats["integrity_failures"] == failures
    assert stats["hits"] == 0
    assert db_execute(
        cache.directory, "SELECT count(*) FROM Cache WHERE key = ?", (key(cache, task),)
    ) == [(0,)], "the failed entry must be deleted"


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def cache(
    make_cache: Callable[..., ResponseCache], request: pytest.FixtureRequest
) -> ResponseCache:
    """Every attack runs against a plain and an encrypted (``encrypt=True``) cache."""
    return make_cache(encrypt=request.param)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside.txt"
    victim.write_bytes(b"precious data outside the cache")
    return victim


@pytest.fixture
def opened_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path passed to os.open / open while the test runs."""
    seen: list[str] = []
    real_os_open, real_open = os.open, open

    def spy_os_open(path: str, *args: object, **kwargs: object) -> int:
        seen.append(str(path))
        return real_os_open(path, *args, **kwargs)  # type: ignore[arg-type]

    def spy_open(path: str, *args: object, **kwargs: object) -> object:
        seen.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr("builtins.open", spy_open)
    yield seen


@pytest.mark.parametrize("in_file", [False, True], ids=["inline", "value-file"])
def test_row_rewritten_to_pickle_mode_runs_no_code(
    cache: ResponseCache, tmp_path: Path, in_file: bool
) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(MakesMarker(str(marker)))
    put(cache, "t", BIG if in_file else "small")
    rowid, _, filename, _ = row(cache, "t")
    if in_file:
        assert filename is not None
        (cache.directory / filename).write_bytes(payload)
        db_execute(
            cache.directory, "UPDATE Cache SET mode = ? WHERE rowid = ?", (MODE_PICKLE, rowid)
        )
    else:
        db_execute(
            cache.directory,
            "UPDATE Cache SET mode = ?, value = ? WHERE rowid = ?",
            (MODE_PICKLE, payload, rowid),
        )
    assert_counted_miss(cache, "t")
    assert not marker.exists()
    assert cache.verify().invalid == []


@pytest.mark.parametrize(
    "forged", ["{outside}", "../outside.txt", "ab/cd/../../../outside.txt", "../../outside.txt"]
)
def test_forged_value_file_name_is_neither_read_nor_deleted(
    cache: ResponseCache, outside: Path, opened_paths: list[str], forged: str
) -> None:
    put(cache, "t", BIG)
    rowid, _, _, _ = row(cache, "t")
    name = forged.format(outside=outside)
    db_execute(
        cache.directory,
        "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE rowid = ?",
        (MODE_BINARY, name, rowid),
    )
    opened_paths.clear()
    assert_counted_miss(cache, "t")
    assert outside.read_bytes() == b"precious data outside the cache"
    assert not any("outside" in p for p in opened_paths), opened_paths


def test_forged_names_survive_delete_and_clear(cache: ResponseCache, outside: Path) -> None:
    for i, name in enumerate([str(outside), "../outside.txt"]):
        put(cache, f"t{i}", BIG)
        db_execute(
            cache.directory,
            "UPDATE Cache SET filename = ? WHERE key = ?",
            (name, key(cache, f"t{i}")),
        )
    assert cache.delete("python-expert", "t0", "m") is True
    assert cache.clear() == 1
    assert outside.exists()


@pytest.mark.parametrize("position", [0, 4, 10, 45, 60, -1])
def test_flipped_byte_in_inline_value(cache: ResponseCache, position: int) -> None:
    put(cache, "t", "an answer that fits inline")
    rowid, _, _, value = row(cache, "t")
    assert value is not None
    data = bytearray(value)
    data[position] ^= 0x20
    db_execute(cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(data), rowid))
    assert_counted_miss(cache, "t")


@pytest.mark.parametrize("position", [3, 30, 200, 20_000, -1])
def test_flipped_byte_in_value_file(cache: ResponseCache, position: int) -> None:
    put(cache, "t", BIG)
    _, mode, filename, _ = row(cache, "t")
    assert mode == MODE_BINARY and filename is not None
    path = cache.directory / filename
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    assert_counted_miss(cache, "t")
    assert not path.exists()  # the broken value file went with its row


def test_valid_entry_copied_onto_another_key(cache: ResponseCache) -> None:
    put(cache, "genuine", "the real answer")
    put(cache, "target", "what should be served")
    _, _, _, value = row(cache, "genuine")
    db_execute(
        cache.directory, "UPDATE Cache SET value = ? WHERE key = ?", (value, key(cache, "target"))
    )
    assert_counted_miss(cache, "target")
    hit = fetch(cache, "genuine")
    assert hit is not None and hit["response"] == "the real answer"


def test_edited_expire_column_does_not_extend_life(cache: ResponseCache, clock: FakeClock) -> None:
    put(cache, "t", ttl_hours=1)
    clock.advance(2 * 3600)
    db_execute(cache.directory, "UPDATE Cache SET expire_time = ?", (clock.now + 10**9,))
    assert fetch(cache, "t") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["entries"]) == (1, 0)


def test_edited_expire_column_does_not_shorten_life(cache: ResponseCache) -> None:
    put(cache, "t")
    db_execute(cache.directory, "UPDATE Cache SET expire_time = 1")
    put(cache, "other")  # a write runs culling
    assert fetch(cache, "t") is not None


@pytest.mark.parametrize("field", ["expires_at", "created_at"])
def test_edited_times_inside_the_body_without_resigning(
    make_cache: Callable[..., ResponseCache], field: str
) -> None:
    cache = make_cache(encrypt=False)  # encrypted, the times cannot be found to edit them
    put(cache, "t", ttl_hours=1)
    rowid, _, _, value = row(cache, "t")
    assert value is not None
    # The fixed fields follow magic, version, flags and nonce: 2 u64, then 3 doubles.
    at = 18 + 16 + {"created_at": 8, "expires_at": 16}[field]
    (stored,) = struct.unpack_from(">d", value, at)
    assert abs(stored - 1_800_000_000.0) <= 3600  # the fake clock's time (+1 h for expiry)
    edited = value[:at] + struct.pack(">d", stored + 10**6) + value[at + 8 :]
    db_execute(cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (edited, rowid))
    assert_counted_miss(cache, "t")


def test_symlinked_value_file(cache: ResponseCache, outside: Path) -> None:
    put(cache, "t", BIG)
    _, _, filename, _ = row(cache, "t")
    assert filename is not None
    path = cache.directory / filename
    path.unlink()
    path.symlink_to(outside)
    assert_counted_miss(cache, "t")
    assert outside.read_bytes() == b"precious data outside the cache"


def test_edited_settings_table_changes_nothing_important(
    cache: ResponseCache, make_cache: Callable[..., ResponseCache]
) -> None:
    put(cache, "t")
    cache.close()
    db_execute(cache.directory, "UPDATE Settings SET value = 'none' WHERE key = 'eviction_policy'")
    db_execute(cache.directory, "UPDATE Settings SET value = 4 WHERE key = 'disk_min_file_size'")
    db_execute(cache.directory, "INSERT INTO Settings VALUES ('sqlite_foo', '1; DROP TABLE Cache')")
    db_execute(cache.directory, "INSERT INTO Settings VALUES ('_disk', 'hijack')")
    reopened = make_cache()
    assert reopened._db is not None
    assert reopened._db.eviction_policy == "least-recently-used"
    assert reopened._db.disk_min_file_size == 2**15
    assert fetch(reopened, "t") is not None
    put(reopened, "u", "x" * 100)
    assert row(reopened, "u")[2] is None  # still stored inline: our setting, not the edited one


def test_verify_removes_only_the_broken_entries(cache: ResponseCache) -> None:
    for i in range(6):
        put(cache, f"t{i}", BIG if i % 2 else f"answer {i}")
    db_execute(cache.directory, "UPDATE Cache SET value = X'00' WHERE key = ?", (key(cache, "t0"),))
    _, _, filename, _ = row(cache, "t1")
    assert filename is not None
    (cache.directory / filename).write_bytes(b"garbage")
    db_execute(
        cache.directory,
        "UPDATE Cache SET mode = 4 WHERE key = ?",
        (key(cache, "t2"),),
    )
    report = cache.verify()
    assert (report.checked, report.valid, len(report.invalid), report.removed) == (6, 3, 3, 3)
    assert {k for k, _ in report.invalid} == {key(cache, f"t{i}") for i in range(3)}
    assert all(fetch(cache, f"t{i}") is not None for i in range(3, 6))
    assert cache.get_stats()["integrity_failures"] == 3
    assert cache.verify().ok


def _in_thread(call: Callable[[], object], timeout: float = 5.0) -> object:
    """Run ``call`` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    import threading

    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the call blocked"
    return result[0]


def test_value_file_replaced_by_a_fifo_is_a_miss_not_a_hang(cache: ResponseCache) -> None:
    # Opening a FIFO for reading blocks until a writer appears: inside get's write
    # transaction that would hang this call and lock every other process out of the cache.
    put(cache, "t", BIG)
    _, _, filename, _ = row(cache, "t")
    assert filename is not None
    path = cache.directory / filename
    path.unlink()
    os.mkfifo(path)
    assert _in_thread(lambda: fetch(cache, "t")) is None
    assert cache.get_stats()["integrity_failures"] == 1
    assert not path.exists()


def test_value_file_hard_linked_to_an_outside_file_is_a_miss(
    cache: ResponseCache, outside: Path
) -> None:
    put(cache, "t", BIG)
    _, _, filename, _ = row(cache, "t")
    assert filename is not None
    path = cache.directory / filename
    path.unlink()
    os.link(outside, path)
    assert_counted_miss(cache, "t")
    assert outside.read_bytes() == b"precious data outside the cache"


def test_cache_db_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    # A cache.db symlinked elsewhere would make SQLite write (or create) a file outside the
    # cache directory.
    from claude_force_magic.errors import UnsafePathError

    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.db"
    (directory / "cache.db").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match=r"cache\.db"):
        ResponseCache(directory, cache_secret="test-secret-0123456789abcdef-XYZ")
    assert not elsewhere.exists()


@pytest.mark.parametrize("forged", [-(10**12), "lots", None, float("-inf")])
def test_tampered_size_metadata_cannot_switch_off_culling(
    make_cache: Callable[..., ResponseCache], forged: object
) -> None:
    # diskcache keeps the total value size in Settings('size'); a huge negative (or non-number)
    # value there must neither stop least-recently-used culling (the directory would grow
    # without bound) nor make every set fail.
    small = make_cache(max_size_mb=0.25, max_entry_kb=128)
    put(small, "first", BIG)
    db_execute(small.directory, "UPDATE Settings SET value = ? WHERE key = 'size'", (forged,))
    for i in range(20):
        put(small, f"t{i}", BIG)
    assert small.get_stats()["evictions"] > 0


def test_forged_mode_is_logged_bounded_on_one_line(
    cache: ResponseCache, caplog: pytest.LogCaptureFixture
) -> None:
    # The mode column is attacker-controlled: its text must not flood or forge log lines.
    import logging

    put(cache, "t")
    forged = "x" * 100_000 + "\n2026-01-01 INFO forged line \x1b[2J"
    db_execute(
        cache.directory, "UPDATE Cache SET mode = ? WHERE key = ?", (forged, key(cache, "t"))
    )
    caplog.set_level(logging.WARNING, logger="claude_force_magic")
    assert_counted_miss(cache, "t")
    (record,) = [r for r in caplog.records if "integrity" in r.getMessage()]
    message = record.getMessage()
    assert len(message) < 500
    assert "\n" not in message and "\x1b" not in message


def test_cache_log_records_pass_the_secret_redactor(
    make_cache: Callable[..., ResponseCache], caplog: pytest.LogCaptureFixture
) -> None:
    # README: the API key never appears in logs, whichever package logger writes the record.
    import logging

    from claude_force_magic.guard import SecretRedactor

    key_like = "sk-ant-api03-" + "Q" * 40
    caplog.set_level(logging.INFO, logger="claude_force_magic")
    SecretRedactor.register("my-cache-secret-value-0123")
    try:
        excluded = make_cache(exclude_agents=[key_like + "my-cache-secret-value-0123"])
        with pytest.warns(UserWarning):
            excluded.set(key_like + "my-cache-secret-value-0123", "t", "m", "a", 1, 1, 0.0)
    finally:
        SecretRedactor.forget_all()
    assert caplog.records
    assert key_like not in caplog.text and "my-cache-secret-value-0123" not in caplog.text


def test_directory_swapped_for_a_symlink_after_open(
    cache: ResponseCache, tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # TOCTOU: the directory was checked at open; later writes and reads must still refuse to
    # follow a symlink. The swap is noticed (its identity changed), the safety checks run
    # again and refuse it: the write is skipped with one warning naming the cause (the engine
    # goes on: the answer was paid for), never a raw OSError, never a write through the link.
    from claude_force_magic.errors import CacheError

    put(cache, "t", BIG)
    moved = tmp_path / "moved"
    cache.directory.rename(moved)
    cache.directory.symlink_to(outside.parent)
    before = sorted(p.name for p in outside.parent.iterdir())
    assert cache.set("python-expert", "u", "m", BIG, 1, 1, 0.0) is False
    assert fetch(cache, "t") is None  # its value file is not reached through the link
    assert sorted(p.name for p in outside.parent.iterdir()) == before
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "symlink" in refusals[0].getMessage()
    assert cache.get_stats()["problem"] is not None
    with pytest.raises(CacheError, match="symlink"):
        cache.clear()


@pytest.mark.parametrize(
    "edit",
    [
        "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag,"
        " size, mode, filename, value) VALUES (NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL,"
        " NULL, NULL, NULL)",
        "UPDATE Settings SET value = NULL WHERE key = 'size'",
        "UPDATE Settings SET value = 'x' WHERE key = 'count'",
        "UPDATE CfmStats SET hits = 'x', misses = 'y'",
        "DELETE FROM CfmStats",
    ],
    ids=["null-row", "null-size", "text-count", "text-counters", "no-stats-row"],
)
def test_odd_values_in_the_database_do_not_break_get_stats(cache: ResponseCache, edit: str) -> None:
    # `%agent stats` must keep working (numbers, not a TypeError) after someone edits cache.db.
    put(cache, "t", BIG)
    db_execute(cache.directory, edit)
    stats = cache.get_stats()
    assert all(
        isinstance(stats[name], int) and stats[name] >= 0
        for name in ("hits", "misses", "sets", "entries", "size_bytes", "integrity_failures")
    )
    assert stats["size_bytes"] >= len(BIG)
    assert fetch(cache, "t") is not None  # the entry itself is still valid
    put(cache, "u")
    assert cache.get_stats()["hits"] >= 1
