"""The three example notebooks run top to bottom offline, and the demo writes HTML."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kernel_harness import kernel_env

from claude_force_magic.demo import execute_notebook, find_notebook, main, run_notebook

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _outputs(nb: Any) -> list[str]:
    """Every code cell's outputs flattened to one JSON string per cell."""
    return [json.dumps(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]


def _run(name: str, tmp_path: Path) -> list[str]:
    copy = tmp_path / name
    shutil.copy(NOTEBOOKS / name, copy)
    nb = execute_notebook(copy, timeout=120, env=kernel_env(tmp_path))
    return _outputs(nb)


def test_quickstart_runs_offline_streams_and_hits_the_cache(tmp_path: Path) -> None:
    outputs = "\n".join(_run("quickstart.ipynb", tmp_path))
    assert "Simulation on" in outputs
    assert "cache miss (stored)" in outputs
    assert "cache hit (saved $" in outputs
    assert outputs.count("simulated") >= 4
    assert "<strong>code-reviewer</strong>" in outputs
    assert "<strong>bug-investigator</strong>" in outputs
    assert "AgentResult(code-reviewer" in outputs
    assert "python-expert" in outputs  # the history and list tables
    assert '"output_type": "error"' not in outputs


def test_cache_inspection_lists_verifies_and_clears(tmp_path: Path) -> None:
    cells = _run("cache-inspection.ipynb", tmp_path)
    text = "\n".join(cells)
    assert "VerifyReport(checked=2, valid=2" in text
    assert "hit_rate" in text  # the dashboard's HTML fallback
    assert "Removed 1 cache entry" in text
    last_table = cells[-1]
    assert "data-engineer" in last_table and "sql-expert" not in last_table


def test_benchmarking_reports_percentiles_and_plots(tmp_path: Path) -> None:
    text = "\n".join(_run("benchmarking.ipynb", tmp_path))
    for needle in ("p50", "p99", "throughput_per_s", "BenchResult(python-expert n=40", "image/png"):
        assert needle in text


def test_demo_writes_html_and_prints_a_summary(tmp_path: Path) -> None:
    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(find_notebook(), copy)
    summary = run_notebook(copy, env=kernel_env(tmp_path))
    assert summary.html == tmp_path / "quickstart.html"
    html = summary.html.read_text(encoding="utf-8")
    assert "cache hit" in html
    assert summary.simulated and summary.agent_cells == 3
    assert "offline (simulator)" in str(summary)


def test_demo_main_reports_a_failing_notebook(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    bad = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1/0")]), bad)
    assert main([str(bad), "--timeout", "60"]) == 1


def _kernel_children() -> set[int]:
    """Pids of this process's children that run ipykernel."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"ipykernel" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_execute_notebook_shuts_its_kernel_down(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), path)
    before = _kernel_children()
    execute_notebook(path, timeout=60, env=kernel_env(tmp_path))
    assert _kernel_children() - before == set()


def test_demo_command_prints_no_kernel_warnings(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print('hello')")]), path)
    out = subprocess.run(
        [sys.executable, "-m", "claude_force_magic.demo", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=kernel_env(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "Wrote" in out.stdout
    # Neither "Kernel is running over TCP without encryption" nor "Parent appears to have
    # exited" (a kernel left running until the demo process ended).
    assert "WARNING" not in out.stderr, out.stderr


def test_static_page_shows_widget_fallbacks_not_blank_widgets() -> None:
    """The demo's HTML must show the dashboard's tables without a CDN: widget views that have
    a fallback are replaced by it; the widget state goes only when no widget is left."""
    import nbformat
    from nbconvert import HTMLExporter

    from claude_force_magic.demo import WIDGET_VIEW, static_copy

    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    state = {"application/vnd.jupyter.widget-state+json": {"state": {}}}

    def notebook(*outputs: dict[str, object]) -> nbformat.NotebookNode:
        nb = nbformat.v4.new_notebook(metadata={"widgets": state})
        nb.cells.append(
            nbformat.v4.new_code_cell(
                "%agent stats",
                outputs=[nbformat.v4.new_output("display_data", data=d) for d in outputs],
            )
        )
        return nb

    dashboard = {WIDGET_VIEW: view, "text/html": "<b>Cache</b><table>hits</table>"}
    nb = notebook(dashboard)
    page = static_copy(nb)
    body, _ = HTMLExporter().from_notebook_node(page)
    assert "<b>Cache</b><table>hits</table>" in body
    assert WIDGET_VIEW not in page.cells[0].outputs[0].data
    assert "widgets" not in page.metadata
    assert WIDGET_VIEW in nb.cells[0].outputs[0].data  # the executed notebook is untouched

    mixed = static_copy(notebook(dashboard, {WIDGET_VIEW: view}))
    assert WIDGET_VIEW in mixed.cells[0].outputs[1].data  # no fallback: the widget stays
    assert mixed.metadata["widgets"] == state
