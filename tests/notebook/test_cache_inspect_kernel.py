"""``%agent cache`` (the inspector) and ``show|search|delete|top|export`` in a real kernel
(issue 16), simulate mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernel_harness import CellRun, Kernel

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("simulated_kernel")]

CACHE = (
    "get_ipython().magics_manager.registry['AgentMagics']"
    ".session.orchestrator(require_key=False).cache"
)
EVIL = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"


def _said(run: CellRun) -> str:
    error = run.error or {}
    lines = "\n".join(error.get("traceback", []))
    return f"{run.stderr}\n{lines}\n{error.get('evalue', '')}"


def _fresh(kernel: Kernel, path: Path) -> None:
    kernel.ok(f"%config AgentMagics.cache_dir = {str(path)!r}")


def _put(kernel: Kernel, task: str, answer: str) -> str:
    run = kernel.ok(
        f"_c = {CACHE}\n"
        f"_c.set('python-expert', {task!r}, 'm', {answer!r}, 5, 7, 0.25,"
        f" metadata={{'preview': {task!r}, 'origin': 'library'}})\n"
        f"print(_c.key_for('python-expert', {task!r}, 'm'))"
    )
    return run.stdout.strip()


def test_cell_entry_lists_preview_with_name_and_origin(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "a")
    kernel.ok("topic = 'PRIVATE-VALUE-123'")
    kernel.ok("%%agent python-expert\nExplain {topic} briefly.")
    run = kernel.ok(
        "_df = %agent cache --frame\nprint(_df['preview'].tolist()); print(_df['origin'].tolist())"
    )
    assert "Explain {topic} briefly." in run.stdout
    assert "PRIVATE-VALUE-123" not in run.stdout
    assert "notebook cell [" in run.stdout


def test_show_renders_answer_as_text_and_returns_result(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "b")
    key = _put(kernel, "render me", EVIL)
    run = kernel.ok(f"_r = %agent cache show {key[:10]}\nprint(type(_r).__name__, _r.cached)")
    html = "\n".join(run.texts("text/html"))
    assert "&lt;img" in html and "<img" not in html and "<script" not in html
    assert f"cache entry {key[:12]}" in html  # the footer line
    assert "AgentResult True" in run.stdout


def test_tampered_entry_is_never_shown(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "c")
    key = _put(kernel, "tamper me", "ORIGINAL ANSWER")
    kernel.ok(
        "import sqlite3\n"
        f"_db = sqlite3.connect(str({CACHE}.directory / 'cache.db'), isolation_level=None)\n"
        f"_v = _db.execute('SELECT value FROM Cache WHERE key = ?', ({key!r},)).fetchone()[0]\n"
        "_db.execute('UPDATE Cache SET value = ? WHERE key = ?',"
        f" (bytes(_v).replace(b'ORIGINAL', b'FORGED!!'), {key!r}))\n"
        "_db.close()"
    )
    run = kernel.run(f"%agent cache show {key[:8]}")
    said = _said(run)
    assert "integrity check" in said and "deleted" in said
    assert "FORGED" not in said + "\n".join(run.texts("text/html"))
    assert "Traceback" not in run.stderr
    stats = kernel.ok(f"print({CACHE}.get_stats()['integrity_failures'], len({CACHE}.entries()))")
    assert stats.stdout.split() == ["1", "0"]


def test_search_delete_top_and_unknown_keys(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "d")
    first = _put(kernel, "About pandas merges", "merge with on=")
    second = _put(kernel, "About asyncio", "Use a Pandas-free loop")
    _put(kernel, "Unrelated", "nothing")
    run = kernel.ok("_s = %agent cache search PANDAS --agent python-expert\nprint(list(_s['key']))")
    assert first in run.stdout and second in run.stdout and run.stdout.count("'") == 4
    kernel.ok(f"{CACHE}.get('python-expert', 'About asyncio', 'm')")  # one hit
    top = kernel.ok(
        "_t = %agent cache top --by hits --n 1\nprint(list(_t['key']), list(_t.columns))"
    )
    assert second in top.stdout and "saved_usd" in top.stdout and first not in top.stdout
    missing = kernel.run(f"%agent cache delete {first[:8]} ffffffff0")
    assert "nothing was deleted" in _said(missing)
    short = kernel.run("%agent cache show abc")
    assert "at least 8" in _said(short)
    gone = kernel.ok(f"%agent cache delete {first[:9]} {second}")
    assert "Deleted 2 cache entries" in gone.stdout
    left = kernel.ok(f"print(len({CACHE}.entries()))")
    assert left.stdout.strip() == "1"


def test_export_writes_lines_and_refuses_overwrite_and_symlinks(
    kernel: Kernel, tmp_path: Path
) -> None:
    _fresh(kernel, tmp_path / "e")
    key = _put(kernel, "export me", EVIL)
    out = tmp_path / "out.jsonl"
    run = kernel.ok(f"%agent cache export {out}")
    assert "Wrote 1 cache entry" in run.stdout
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["key"] == key and record["answer"] == EVIL
    again = kernel.run(f"%agent cache export {out}")
    assert "--force" in _said(again)
    kernel.ok(f"%agent cache export {out} --force")
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "target.txt")
    refused = kernel.run(f"%agent cache export {link} --force")
    assert "symbolic link" in _said(refused)
    assert not (tmp_path / "target.txt").exists()


INSPECTOR = "from claude_force_magic.notebook.inspector import CacheInspector\n"
MAGICS = "get_ipython().magics_manager.registry['AgentMagics']"


def test_cache_opens_the_inspector_with_an_escaped_html_fallback(
    kernel: Kernel, tmp_path: Path
) -> None:
    _fresh(kernel, tmp_path / "insp")
    _put(kernel, f"about {EVIL}", "fine")
    run = kernel.ok("%agent cache")
    assert run.texts("application/vnd.jupyter.widget-view+json"), "no widget in the display"
    (fallback,) = run.texts("text/html")
    assert "&lt;img src=x" in fallback and "<img" not in fallback and "<script" not in fallback
    assert "1 entry" in fallback and "<svg" in fallback  # the health header and its plot
    assert "Cache inspector: 1 entry" in run.texts()[0]
    assert run.result_text == ""  # the inspector is displayed, nothing is returned


def test_frame_and_output_variable_give_the_dataframe(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "frame")
    _put(kernel, "a frame task", "an answer")
    run = kernel.ok("%agent cache -o _entries\nprint(type(_entries).__name__, len(_entries))")
    assert run.stdout.split() == ["DataFrame", "1"]
    assert not run.texts("application/vnd.jupyter.widget-view+json")
    framed = kernel.ok("%agent cache --frame")
    assert "a frame task" in framed.result_text
    found = kernel.ok("%agent cache search frame -o _found\nprint(len(_found))")
    assert found.stdout.strip() == "1"
    bad = kernel.run("%agent cache -o 'not a name'")
    assert bad.status == "error" and "variable name" in _said(bad)


def test_refresh_re_runs_a_cell_entry_through_the_simulator(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "refresh")
    kernel.ok("%%agent python-expert\nWhat does zip() do? One line.")
    kernel.ok("topic = 'secret data'")
    kernel.ok("%%agent python-expert\nExplain {topic} in one line.")
    run = kernel.ok(
        INSPECTOR + "import importlib\n"
        "_cmd = importlib.import_module('claude_force_magic.notebook.commands.cache')\n"
        f"_i = CacheInspector({CACHE}, refresh=lambda e: _cmd._refresh({MAGICS}, e))\n"
        "_i.load()\n"
        "_rows = {r['preview']: r for r in _i.page.rows}\n"
        "_plain = _rows['What does zip() do? One line.']\n"
        "_i.pick([_plain['key']])\n"
        "_before = _i.cache.entry(_plain['key'])['metadata']['request_id']\n"
        "print('PLAN', _i.refresh_plan())\n"
        "print('OUT', _i.refresh())\n"
        "_after = _i.cache.entry(_plain['key'])\n"
        "print('NEW', _after['metadata']['request_id'] != _before, len(_i.page.rows))\n"
        "_i.pick([_rows['Explain {topic} in one line.']['key']])\n"
        "print('DATA', _i.refresh())"
    )
    said = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    assert "costs money" in said["PLAN"]
    assert said["OUT"].startswith("Refreshed ") and "new answer" in said["OUT"]
    assert said["NEW"] == "True 2"  # replaced in place: still two entries
    assert "cannot be rebuilt" in said["DATA"] and "--refresh" in said["DATA"]


def test_stats_shows_cache_health(kernel: Kernel, tmp_path: Path) -> None:
    _fresh(kernel, tmp_path / "health")
    kernel.ok("%%agent python-expert\nWhat is a set? One line.")
    kernel.ok("%%agent python-expert\nWhat is a set? One line.")  # a hit
    run = kernel.ok("%agent stats")
    html = "\n".join(run.texts("text/html"))
    assert "Cache health" in html and "<svg" in html
    assert "1 entry" in html and "1 hit, 1 miss" in html
