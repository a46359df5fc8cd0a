"""The inspector's query layer (``cache/inspect.py``): pages, filters and sorts run on an index
that is a hint only; every row shown is verified; text filters stop at the page; health and
the per-minute activity record; extending an entry's life."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.inspect import CacheView, Query, extend_ttl, health
from claude_force_magic.errors import CacheError, ConfigurationError, IntegrityError

from .conftest import SECRET, FakeClock, db_execute

if TYPE_CHECKING:
    from conftest import SmallFs


def fill(
    cache: ResponseCache,
    clock: FakeClock,
    count: int,
    *,
    agents: tuple[str, ...] = ("a", "b"),
    step: float = 60.0,
    answer: Callable[[int], str] = lambda i: f"answer {i}",
) -> list[str]:
    """``count`` entries, one every ``step`` seconds, agents and models alternating."""
    keys = []
    for i in range(count):
        agent, model = agents[i % len(agents)], ("m1", "m2", "m3")[i % 3]
        task = f"task {i}"
        meta = {"preview": task, "origin": "library"}
        assert cache.set(agent, task, model, answer(i), 10, 20, 0.01 * (i + 1), metadata=meta)
        keys.append(cache.key_for(agent, task, model))
        clock.advance(step)
    return keys


def previews(rows: list[dict[str, Any]]) -> list[str]:
    return [row["preview"] for row in rows]


def counting_reads(cache: ResponseCache) -> list[int]:
    """Count the stored values the cache reads from now on (an observable, not a mock)."""
    db = cache._db
    assert db is not None
    counter = [0]
    original = db.fetch_value

    def fetch_value(row: Any) -> bytes:
        counter[0] += 1
        return original(row)

    db.fetch_value = fetch_value  # type: ignore[method-assign]
    return counter


def test_pages_of_the_newest_first_with_a_total(cache: ResponseCache, clock: FakeClock) -> None:
    fill(cache, clock, 250)
    view = CacheView(cache)
    first = view.page(Query())
    assert first.total == 250 and first.pages == 3 and first.has_next
    assert len(first.rows) == 100
    assert first.rows[0]["preview"] == "task 249" and first.rows[-1]["preview"] == "task 150"
    last = view.page(Query(page=2))
    assert previews(last.rows) == [f"task {i}" for i in range(49, -1, -1)]
    assert not last.has_next
    oldest = view.page(Query(descending=True, page_size=3))
    assert previews(oldest.rows) == ["task 0", "task 1", "task 2"]


def test_filters_by_agent_model_and_age(
    make_cache: Callable[..., ResponseCache], clock: FakeClock
) -> None:
    cache = make_cache(ttl_hours=24 * 30)
    fill(cache, clock, 60, step=3600.0)  # one an hour: 60 hours
    view = CacheView(cache)
    only_a = view.page(Query(agent="a"))
    assert only_a.total == 30 and {r["agent_name"] for r in only_a.rows} == {"a"}
    both = view.page(Query(agent="b", model="m2"))
    assert both.total == 10 and {(r["agent_name"], r["model"]) for r in both.rows} == {("b", "m2")}
    recent = view.page(Query(newer_than_hours=10))  # the clock is 1 h past the newest
    assert previews(recent.rows) == [f"task {i}" for i in range(59, 49, -1)]
    old = view.page(Query(older_than_hours=50))
    assert old.total == 11 and old.rows[0]["preview"] == "task 10"
    assert view.choices() == {"agent": ["a", "b"], "model": ["m1", "m2", "m3"]}


def test_sorts_by_hits_saved_and_size(cache: ResponseCache, clock: FakeClock) -> None:
    fill(cache, clock, 5, answer=lambda i: "x" * (100 * (5 - i)))
    for i, hits in enumerate((0, 3, 1, 0, 2)):
        agent, model = ("a", "b")[i % 2], ("m1", "m2", "m3")[i % 3]
        for _ in range(hits):
            assert cache.get(agent, f"task {i}", model) is not None
    view = CacheView(cache)
    by_hits = view.page(Query(sort="hits", descending=True))
    assert [r["hits"] for r in by_hits.rows] == [3, 2, 1, 0, 0]
    by_saved = view.page(Query(sort="saved", descending=True, page_size=3))
    # cost 0.01 * (i + 1): task 4 saved 2 x 0.05, task 1 3 x 0.02, task 2 1 x 0.03
    assert previews(by_saved.rows) == ["task 4", "task 1", "task 2"]
    assert by_saved.rows[0]["saved_usd"] == pytest.approx(0.10)
    by_size = view.page(Query(sort="size", descending=True))
    assert previews(by_size.rows) == [f"task {i}" for i in range(5)]


def test_a_page_reads_only_its_own_answers(cache: ResponseCache, clock: FakeClock) -> None:
    fill(cache, clock, 600)
    view = CacheView(cache)
    view.sync()  # the first view of a cache indexes it once
    reads = counting_reads(cache)
    page = view.page(Query(agent="a", sort="saved", descending=True, page_size=50))
    assert page.total == 300 and len(page.rows) == 50
    assert reads[0] == 50  # the 50 rows shown (verified), not the 600 entries


def test_the_index_follows_new_deleted_and_rewritten_entries(
    cache: ResponseCache, clock: FakeClock
) -> None:
    keys = fill(cache, clock, 10)
    view = CacheView(cache)
    assert view.page().total == 10
    fill(cache, clock, 12)  # tasks 0-9 rewritten in place, 10 and 11 new
    assert cache.delete_key(keys[3])
    reads = counting_reads(cache)
    page = view.page(Query(page_size=100))
    assert page.total == 11
    assert reads[0] <= 2 * 11  # only the changed rows are read again, then the page
    assert "task 3" not in previews(page.rows)
    assert view.sync() == 0  # nothing changed since: nothing is read


def test_a_tampered_entry_is_never_shown_and_is_reported(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    keys = fill(cache, clock, 5)
    view = CacheView(cache)
    assert view.page().total == 5  # indexed while still valid
    ((value,),) = db_execute(cache_path, "SELECT value FROM Cache WHERE key = ?", (keys[2],))
    edited = bytes(value).replace(b"answer 2", b"answer X")
    db_execute(cache_path, "UPDATE Cache SET value = ? WHERE key = ?", (edited, keys[2]))
    page = view.page()
    assert "task 2" not in previews(page.rows)
    assert [prefix for prefix, _why in page.failures] == [keys[2][:12]]
    assert "integrity check" in page.failures[0][1]
    assert cache.get_stats()["integrity_failures"] == 1
    assert view.page().total == 4


def test_an_entry_tampered_before_indexing_is_not_indexed(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    keys = fill(cache, clock, 3)
    db_execute(cache_path, "UPDATE Cache SET value = X'00' WHERE key = ?", (keys[0],))
    page = CacheView(cache).page()
    assert page.total == 2 and "task 0" not in previews(page.rows)
    assert [prefix for prefix, _why in page.failures] == [keys[0][:12]]
    assert cache.get_stats()["integrity_failures"] == 1


def test_a_forged_index_row_never_shows_an_entry_under_a_false_name(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    fill(cache, clock, 3)
    view = CacheView(cache)
    view.sync()
    db_execute(cache_path, "UPDATE CfmIndex SET model = 'forged'")
    assert view.page(Query(model="forged")).rows == []
    fixed = view.page(Query(model="m1"))  # the dropped rows were read again from the entries
    assert previews(fixed.rows) == ["task 0"]


def test_a_text_filter_stops_reading_once_the_page_is_full(
    cache: ResponseCache, clock: FakeClock
) -> None:
    fill(cache, clock, 400, answer=lambda i: "about pandas" if i % 2 else "about numpy")
    view = CacheView(cache)
    view.sync()
    page = view.page(Query(text="PANDAS", page_size=20))
    assert len(page.rows) == 20 and page.total is None and page.has_next
    assert {r["preview"] for r in page.rows} == {f"task {i}" for i in range(399, 359, -2)}
    assert page.answers_read <= 2 * 20 + 200  # a batch past the page at most, not 400
    rare = view.page(Query(text="task 123", agent="b"))  # the preview matches too
    assert rare.total == 1 and previews(rare.rows) == ["task 123"]
    assert view.page(Query(text="task 123", agent="a")).total == 0


def test_expired_entries_are_not_listed(cache: ResponseCache, clock: FakeClock) -> None:
    fill(cache, clock, 3)
    view = CacheView(cache)
    assert view.page().total == 3
    clock.advance(cache.ttl_hours * 3600 - 90)  # task 0 and 1 are past their expiry
    assert previews(view.page().rows) == ["task 2"]


def test_bad_queries_name_the_field() -> None:
    with pytest.raises(ValueError, match="sort must be one of"):
        Query(sort="price")
    with pytest.raises(ValueError, match="newer_than_hours"):
        Query(newer_than_hours=-1)
    with pytest.raises(ValueError, match="page_size"):
        Query(page_size=0)


def test_health_counts_lookups_by_the_minute(cache: ResponseCache, clock: FakeClock) -> None:
    keys = fill(cache, clock, 4)
    for _ in range(3):
        assert cache.get("a", "task 0", "m1") is not None
    assert cache.get("a", "never asked", "m1") is None
    assert cache.delete_key(keys[1])
    found = health(cache)
    assert found.entries == 3 and found.hits == 3 and found.misses == 1
    assert found.hit_rate == pytest.approx(0.75)
    assert (found.hits_last_hour, found.misses_last_hour) == (3, 1)
    assert found.hit_rate_last_hour == pytest.approx(0.75)
    assert found.saved_usd == pytest.approx(3 * 0.01)
    assert found.oldest is not None and found.newest is not None
    assert found.newest - found.oldest == pytest.approx(3 * 60.0)
    assert sum(h for _m, h, _x in found.activity) == 3
    assert found.size_bytes > 0 and found.max_size_bytes == 100 * 2**20


def test_activity_older_than_an_hour_is_not_in_the_last_hour(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    fill(cache, clock, 1)
    assert cache.get("a", "task 0", "m1") is not None
    cache.flush()
    db_execute(cache_path, "UPDATE CfmActivity SET minute = minute - 120")
    found = health(cache)
    assert found.hits == 1 and found.hits_last_hour == 0 and found.hit_rate_last_hour is None


def test_extend_ttl_re_signs_a_new_expiry_and_keeps_the_hits(
    cache: ResponseCache, clock: FakeClock
) -> None:
    (key,) = fill(cache, clock, 1)
    assert cache.get("a", "task 0", "m1") is not None
    expires = cache.touch(key[:10], 48)
    assert expires == pytest.approx(clock.now + 48 * 3600)
    clock.advance(30 * 3600)  # past the 24 h it was stored with
    assert cache.get("a", "task 0", "m1") is not None
    cache.flush()  # entry() reads the hits written so far
    listed = cache.entry(key)
    assert listed is not None and listed["hits"] == 2 and listed["response"] == "answer 0"
    view = CacheView(cache)
    assert view.page().rows[0]["expires_at"] == pytest.approx(expires)
    with pytest.raises(ConfigurationError):
        cache.touch(key, 0)
    assert cache.touch("0" * 64 if key[0] != "0" else "1" * 64, 5) is None


def test_extend_ttl_refuses_a_tampered_entry(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    (key,) = fill(cache, clock, 1)
    db_execute(cache_path, "UPDATE Cache SET value = X'00' WHERE key = ?", (key,))
    with pytest.raises(IntegrityError, match="deleted"):
        extend_ttl(cache, key, 10)
    assert cache.entry(key) is None


def test_a_read_only_cache_is_inspected_through_a_temporary_index(
    small_fs: SmallFs, clock: FakeClock
) -> None:
    directory = small_fs.path / "cache"
    with ResponseCache(directory, cache_secret=SECRET, clock=clock) as writer:
        fill(writer, clock, 5)
        assert writer.get("a", "task 0", "m1") is not None
    small_fs.read_only()
    with ResponseCache(directory, cache_secret=SECRET, clock=clock) as cache:
        assert cache.read_only
        view = CacheView(cache)
        page = view.page(Query(agent="a", sort="hits", descending=True))
        assert previews(page.rows) == ["task 0", "task 4", "task 2"]
        assert page.rows[0]["hits"] == 1
        found = health(cache, view)
        assert found.read_only and found.entries == 5 and found.hits == 1
        with pytest.raises(CacheError, match="read-only"):
            extend_ttl(cache, page.rows[0]["key"], 5)


def test_a_text_filter_reports_a_tampered_entry_and_goes_on(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    keys = fill(cache, clock, 5)
    view = CacheView(cache)
    view.sync()
    db_execute(cache_path, "UPDATE Cache SET value = X'00' WHERE key = ?", (keys[2],))
    page = view.page(Query(text="answer"))
    assert previews(page.rows) == ["task 4", "task 3", "task 1", "task 0"]
    assert [prefix for prefix, _why in page.failures] == [keys[2][:12]]
    assert page.total == 4 and cache.get_stats()["integrity_failures"] == 1


def test_entries_are_indexed_as_they_are_written_so_a_first_view_reads_only_its_page(
    cache: ResponseCache, clock: FakeClock
) -> None:
    fill(cache, clock, 300)
    reads = counting_reads(cache)
    view = CacheView(cache)
    assert view.sync() == 0  # nothing to index: every set wrote its index row
    page = view.page()
    assert page.total == 300 and len(page.rows) == 100
    assert reads[0] == 100  # the page's own answers, verified; no cold pass over the cache


def test_a_cache_written_before_the_index_existed_is_indexed_once(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    fill(cache, clock, 30)
    db_execute(cache_path, "DELETE FROM CfmIndex")  # as an older release left it
    view = CacheView(cache)
    assert view.sync() == 30
    assert view.sync() == 0
    assert view.page().total == 30


def test_a_rewritten_entry_keeps_one_index_row_with_its_new_figures(
    cache: ResponseCache, clock: FakeClock, cache_path: Path
) -> None:
    cache.set("a", "task", "m1", "first", 1, 1, 0.5)
    cache.set("a", "task", "m1", "second", 1, 1, 0.25)
    rows = db_execute(cache_path, "SELECT cost FROM CfmIndex")
    assert rows == [(0.25,)]
