"""Inspecting the cache by key and by text (issue 16): entry, delete_key, search, export.

The preview and origin the engine stores ride in the signed metadata: editing them is an
integrity failure. Entries stored before previews were kept still list, with an empty preview.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_force_magic.cache import ResponseCache
from claude_force_magic.errors import CacheError, IntegrityError

from .conftest import FakeClock, db_execute

AGENT = "python-expert"


def store(
    cache: ResponseCache, task: str, answer: str = "an answer", agent: str = AGENT, **meta: str
) -> str:
    metadata = {"preview": task[:200], "origin": "library", **meta}
    assert cache.set(agent, task, "m", answer, 10, 20, 0.5, metadata=metadata)
    return cache.key_for(agent, task, "m")


def test_entry_returns_the_answer_preview_and_origin(cache: ResponseCache) -> None:
    key = store(cache, "Explain {df} please", "Use groupby.", origin="notebook cell [3]")
    found = cache.entry(key)
    assert found is not None
    assert found["response"] == "Use groupby."
    assert found["preview"] == "Explain {df} please"
    assert found["origin"] == "notebook cell [3]"
    assert found["key"] == key and found["hits"] == 0 and found["options"] == {}


def test_entry_by_unique_prefix_and_clear_errors_otherwise(cache: ResponseCache) -> None:
    key = store(cache, "one")
    assert cache.entry(key[:8].upper())["key"] == key  # type: ignore[index]
    assert cache.entry("0" * 64 if key[0] != "0" else "1" * 64) is None
    with pytest.raises(CacheError, match="at least 8"):
        cache.entry(key[:7])
    with pytest.raises(CacheError, match="not a cache key"):
        cache.entry("zzzzzzzzzz")


def test_ambiguous_prefix_is_refused(cache: ResponseCache, cache_path: Path) -> None:
    first = store(cache, "one")
    second = store(cache, "two")
    # Two keys rarely share 8 digits: give the second one the first one's start instead.
    forged = first[:10] + second[10:]
    db_execute(cache_path, "UPDATE Cache SET key = ? WHERE key = ?", (forged, second))
    with pytest.raises(CacheError, match="more than one entry"):
        cache.resolve_key(first[:10])


def test_edited_preview_is_an_integrity_failure_and_is_deleted(
    cache: ResponseCache, cache_path: Path
) -> None:
    key = store(cache, "Summarise {report}")
    ((value,),) = db_execute(cache_path, "SELECT value FROM Cache WHERE key = ?", (key,))
    edited = bytes(value).replace(b"Summarise {report}", b"Summarise {zeport}")
    assert edited != bytes(value)
    db_execute(cache_path, "UPDATE Cache SET value = ? WHERE key = ?", (edited, key))
    with pytest.raises(IntegrityError, match=r"integrity check.*deleted"):
        cache.entry(key)
    assert cache.entry(key) is None  # gone
    assert cache.get_stats()["integrity_failures"] == 1
    assert cache.search("zeport") == []


def test_old_entries_without_preview_still_list(cache: ResponseCache) -> None:
    assert cache.set(AGENT, "old task", "m", "old answer", 1, 2, 0.1, metadata={"x": 1})
    (listed,) = cache.entries()
    assert listed["preview"] == "" and listed["origin"] == ""
    assert cache.search("old answer")[0]["key"] == listed["key"]
    assert cache.entry(listed["key"])["preview"] == ""  # type: ignore[index]


def test_expired_entry_is_not_returned(cache: ResponseCache, clock: FakeClock) -> None:
    key = store(cache, "short-lived")
    clock.advance(25 * 3600)
    assert cache.entry(key) is None
    assert cache.get_stats()["expirations"] == 1


def test_delete_key_removes_only_that_entry(cache: ResponseCache) -> None:
    gone, kept = store(cache, "gone"), store(cache, "kept")
    assert cache.delete_key(gone[:12]) is True
    assert cache.delete_key(gone) is False
    assert [e["key"] for e in cache.entries()] == [kept]
    assert cache.get_stats()["deletes"] == 1


def test_search_matches_preview_or_answer_newest_first_limited(
    cache: ResponseCache, clock: FakeClock
) -> None:
    keys = []
    for i in range(5):
        keys.append(store(cache, f"task {i} about Pandas", f"answer {i}"))
        clock.advance(10)
    answer_only = store(cache, "unrelated", "see PANDAS docs")
    other_agent = store(cache, "pandas too", "x", agent="data-scientist")
    found = [e["key"] for e in cache.search("pandas", agent=AGENT, limit=3)]
    assert found == [answer_only, keys[4], keys[3]]
    everyone = {e["key"] for e in cache.search("PaNdAs")}
    assert everyone == {*keys, answer_only, other_agent}
    assert cache.search("nowhere") == []
    with pytest.raises(TypeError, match="limit"):
        cache.search("x", limit=0)


def test_search_reads_a_page_at_a_time(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(250):
        store(cache, f"task {i}", f"answer {i}")
    db = cache._db
    assert db is not None
    sizes: list[int] = []
    page = db.page

    def counting(after: int, limit: int, sql: object = None) -> list[object]:
        rows = page(after, limit)
        sizes.append(len(rows))
        return rows  # type: ignore[return-value]

    monkeypatch.setattr(db, "page", counting)
    assert len(cache.search("answer", limit=1000)) == 250
    assert max(sizes) <= 100 and len(sizes) >= 3


def test_export_writes_json_lines_and_refuses_to_overwrite(
    cache: ResponseCache, tmp_path: Path
) -> None:
    key = store(cache, "Explain {df}", "Use <b>groupby</b>.")
    out = tmp_path / "cache.jsonl"
    assert cache.export(out) == 1
    (line,) = out.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert set(record) == {
        "key",
        "agent",
        "model",
        "created",
        "expires",
        "preview",
        "answer",
        "metadata",
    }
    assert record["key"] == key and record["answer"] == "Use <b>groupby</b>."
    assert record["preview"] == "Explain {df}"
    assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(CacheError, match=r"exists.*--force"):
        cache.export(out)
    store(cache, "second")
    out.chmod(0o644)
    assert cache.export(out, force=True) == 2
    assert out.stat().st_mode & 0o777 == 0o600  # replaced by a new private file
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_export_never_follows_a_symlink(
    make_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    cache = make_cache()
    store(cache, "a task")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.jsonl"
    link.symlink_to(victim)
    for force in (False, True):
        with pytest.raises(CacheError, match="symbolic link"):
            cache.export(link, force=force)
    assert victim.read_text() == "keep me"
