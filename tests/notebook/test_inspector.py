"""The cache inspector (``notebook/inspector.py``) in-process, on a real cache: its state and
actions, its widgets driven as a front-end would (values set, buttons clicked), and that
nothing it shows can execute in a browser."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.inspect import Health, Query
from claude_force_magic.notebook.inspector import (
    CacheInspector,
    _Widgets,
    activity_svg,
    health_html,
)

SECRET = "test-secret-0123456789abcdef-XYZ"
EVIL = "<img src=x onerror=alert(1)> <script>alert(2)</script>"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Iterator[ResponseCache]:
    with ResponseCache(tmp_path / "cache", cache_secret=SECRET, clock=clock) as made:
        yield made


def put(cache: ResponseCache, clock: Clock, agent: str, task: str, answer: str) -> str:
    meta = {"preview": task, "origin": "library"}
    assert cache.set(agent, task, "m", answer, 10, 20, 0.02, metadata=meta)
    clock.now += 60
    return cache.key_for(agent, task, "m")


def fill(cache: ResponseCache, clock: Clock, count: int) -> list[str]:
    return [put(cache, clock, ("a", "b")[i % 2], f"task {i}", f"answer {i}") for i in range(count)]


def tasks(insp: CacheInspector) -> list[str]:
    return [row["preview"] for row in insp.page.rows]


def test_filter_sort_and_turn_pages(cache: ResponseCache, clock: Clock) -> None:
    fill(cache, clock, 150)
    insp = CacheInspector(cache)
    insp.load()
    assert len(insp.page.rows) == 100 and insp.summary() == "page 1 of 2 · 150 entries"
    insp.turn(1)
    assert tasks(insp)[-1] == "task 0" and not insp.page.has_next
    insp.turn(1)  # past the last page: stays
    assert insp.query.page == 1
    insp.filter(agent="b", text="task 1")
    assert all(t.startswith("task 1") and int(t.split()[1]) % 2 for t in tasks(insp))
    insp.filter()
    insp.sort("age")  # the same column again: reversed (oldest first)
    assert tasks(insp)[0] == "task 0"
    insp.sort("size")
    assert insp.query.descending
    with pytest.raises(ValueError, match="age must be one of"):
        insp.filter(age="yesterday")


def test_preview_renders_the_answer_safely(cache: ResponseCache, clock: Clock) -> None:
    key = put(cache, clock, "a", f"why {EVIL}", f"**bold** {EVIL}")
    insp = CacheInspector(cache)
    insp.load()
    insp.pick([key])
    shown = insp.preview_html()
    assert "<strong>bold</strong>" in shown
    assert "<img" not in shown and "<script" not in shown and "&lt;img" in shown
    fallback = insp.html()
    assert "<img" not in fallback and "<script" not in fallback and "&lt;script&gt;" in fallback


def test_a_tampered_entry_is_reported_not_shown(
    cache: ResponseCache, clock: Clock, tmp_path: Path
) -> None:
    keys = fill(cache, clock, 3)
    insp = CacheInspector(cache)
    insp.load()
    insp.pick([keys[1]])
    con = sqlite3.connect(tmp_path / "cache" / "cache.db", isolation_level=None)
    (value,) = con.execute("SELECT value FROM Cache WHERE key = ?", (keys[1],)).fetchone()
    forged = bytes(value).replace(b"answer 1", b"FORGED 1")
    con.execute("UPDATE Cache SET value = ? WHERE key = ?", (forged, keys[1]))
    con.close()
    shown = insp.preview_html()
    assert "FORGED" not in shown and "integrity check" in shown
    insp.load()
    assert "task 1" not in tasks(insp)
    assert cache.get_stats()["integrity_failures"] == 1


def test_delete_extend_and_export_the_picked_entries(
    cache: ResponseCache, clock: Clock, tmp_path: Path
) -> None:
    keys = fill(cache, clock, 4)
    insp = CacheInspector(cache)
    insp.load()
    insp.pick(keys[:2])
    target = tmp_path / "out.jsonl"
    assert insp.export(str(target)) == f"Wrote 2 entries to {target}."
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["answer"] for line in lines] == ["answer 0", "answer 1"]
    assert "exists" in insp.export(str(target))  # never overwritten
    assert insp.extend(100).startswith("Extended 2 entries")
    clock.now += 30 * 3600  # past the default 24 h: only the extended two are left
    insp.load()
    assert sorted(tasks(insp)) == ["task 0", "task 1"]
    insp.pick([keys[0]])
    assert insp.delete() == "Deleted 1 entry."
    assert tasks(insp) == ["task 1"] and cache.entry(keys[0]) is None
    assert insp.delete() == "Pick the entries to delete first."


def test_refresh_asks_first_and_reports_the_outcome(cache: ResponseCache, clock: Clock) -> None:
    keys = fill(cache, clock, 2)
    asked: list[dict[str, Any]] = []

    def refresher(entry: dict[str, Any]) -> str:
        asked.append(entry)
        return "Refreshed."

    insp = CacheInspector(cache, refresh=refresher)
    insp.load()
    insp.pick(keys)
    assert insp.refresh_plan() == "Pick one entry to refresh."
    assert insp.refresh() == "Pick one entry to refresh." and not asked
    insp.pick([keys[1]])
    assert "costs money" in insp.refresh_plan()
    assert insp.refresh() == "Refreshed."
    assert [entry["key"] for entry in asked] == [keys[1]]
    assert CacheInspector(cache).refresh_plan() == "Refresh is not available here."


def test_widgets_drive_the_inspector(cache: ResponseCache, clock: Clock) -> None:
    keys = fill(cache, clock, 120)
    insp = CacheInspector(cache, refresh=lambda entry: "done")
    insp.load()
    ui = _Widgets(insp)
    assert len(ui.rows.options) == 100 and ui.prev.disabled and not ui.next.disabled
    ui.next.click()
    assert len(ui.rows.options) == 20 and ui.next.disabled
    ui.agent.value = "a"  # a filter starts again at page 1
    assert insp.query.page == 0 and insp.page.total == 60
    assert all(label.split()[1] == "a" for label, _key in ui.rows.options)
    ui.text.value = "task 11"
    assert {row["preview"] for row in insp.page.rows} == {"task 110", "task 118"} | {
        "task 112",
        "task 114",
        "task 116",
    }
    ui.text.value = ""
    ui.sorts[3].click()  # "age" again: oldest first
    assert insp.page.rows[0]["preview"] == "task 0" and ui.sorts[3].description == "age ▼"
    ui.rows.value = (keys[0],)
    assert "answer 0" in ui.preview.value
    ui.refresh.click()
    assert ui.confirm_box.layout.display == "flex" and "costs money" in ui.confirm_text.value
    ui.confirm.click()
    assert ui.status.value == "done" and ui.confirm_box.layout.display == "none"
    assert ui.rows.value == (keys[0],) and "answer 0" in ui.preview.value  # still picked
    ui.rows.value = (keys[0],)
    ui.delete.click()
    assert ui.status.value == "Deleted 1 entry." and keys[0] not in dict(ui.rows.options).values()
    assert "entries" in ui.header.value and "<svg" in ui.header.value


def test_activity_plot_and_health_are_numbers_and_escaped_text() -> None:
    now = time.time()
    minute = (int(now // 60)) * 60.0
    found = Health(
        entries=3, size_bytes=2048, max_size_bytes=2**20, hits=5, misses=1, hit_rate=5 / 6,
        hits_last_hour=5, misses_last_hour=1, hit_rate_last_hour=5 / 6, saved_usd=0.1,
        integrity_failures=0, evictions=0, expirations=0, oldest=now - 60, newest=now,
        read_only=False, activity=((minute - 120, 2, 0), (minute, 3, 1), (minute - 7200, 9, 9)),
    )  # fmt: skip
    svg = activity_svg(found.activity, now)
    assert svg.count("<rect") == 1 + 3  # background, 2 hit bars, 1 miss bar (old one dropped)
    assert "no lookups" not in svg
    quiet = activity_svg(((minute - 7200, 9, 9),), now)  # activity, but not in the last hour
    assert quiet.count("<rect") == 1 and "no lookups in the last hour" in quiet
    shown = health_html(found, now)
    assert (
        "83% last hour" in shown
        and "3 entries" in shown
        and "5 hits, 1 miss" in shown
        and "2.0 KiB of 1.0 MiB" in shown
    )


def test_page_query_is_kept_between_actions(cache: ResponseCache, clock: Clock) -> None:
    keys = fill(cache, clock, 6)
    insp = CacheInspector(cache)
    insp.load(Query(agent="a", sort="hits", descending=True))
    insp.pick([keys[0]])
    insp.delete()
    assert insp.query.agent == "a" and tasks(insp) == ["task 4", "task 2"]


def test_a_terminal_gets_the_dataframe(shell: InteractiveShell) -> None:
    with capture_output():
        shell.run_line_magic("agent", "simulate on")
        shell.run_cell("%%agent python-expert --quiet\nWhat is a tuple? One line.")
        frame = shell.run_line_magic("agent", "cache")
    assert type(frame).__name__ == "DataFrame"
    assert list(frame["preview"]) == ["What is a tuple? One line."]
