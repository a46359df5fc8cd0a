"""The cache inspector as a JupyterLab user sees it (issue 16): ``%agent cache`` opens a live
widget; filtering, picking, the safe preview, delete and a confirmed refresh (against the
simulator) work from the page, nothing in an answer runs, and the page stays responsive."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import pytest
from lab_harness import Lab, NotebookPage, xss_globals

#: An answer that would set a page global if any of it ran.
EVIL = '**bold** <img src=x onerror="window.__xss_inspector=1"> <script>window.__xss_s=1</script>'
#: Fills the cache through the kernel's own ResponseCache: 130 entries of two agents (two
#: pages), one of them with the answer above; then one real cell, which can be refreshed.
FILL = f"""
_cache = get_ipython().magics_manager.registry['AgentMagics'].session.orchestrator(
    require_key=False).cache
for _i in range(130):
    _agent = ('python-expert', 'database-architect')[_i % 2]
    _answer = {EVIL!r} if _i == 7 else f'answer number {{_i}}'
    _task = f'stored question {{_i}}'
    _cache.set(_agent, _task, 'claude-sonnet-5', _answer, 10, 20, 0.002,
               metadata={{'preview': _task, 'origin': 'library'}})
"""
SETUP = "\n".join(
    [
        "%load_ext claude_force_magic",
        "%agent simulate on",
        "%config AgentMagics.simulator_latency = 0.0",
        FILL,
    ]
)
REAL = "%%agent python-expert\nWhat does enumerate() do? One line."
#: JavaScript: one animation-frame round trip, in ms (the page's main thread must be free).
FRAME_JS = (
    "() => new Promise(r => { const t = performance.now();"
    " requestAnimationFrame(() => r(performance.now() - t)); })"
)


def frame_ms(page: Any, rounds: int = 15) -> float:
    return statistics.median(page.evaluate(FRAME_JS) for _ in range(rounds))


def widget(nb: NotebookPage) -> Any:
    return nb.outputs(2).locator(".cfm-inspector").first


def control(box: Any, kind: str, label: str) -> Any:
    """The ``select`` or ``input`` of the ipywidgets control described by ``label``."""
    return box.locator(f".widget-{kind}:has(label:text-is('{label}'))").locator(
        "select" if kind == "dropdown" else "input"
    )


def wait_text(box: Any, text: str, timeout: float = 30.0) -> None:
    box.page.wait_for_function(
        "([el, text]) => el.innerText.includes(text)",
        arg=[box.element_handle(), text],
        timeout=timeout * 1000,
    )


def plain(label: str) -> str:
    """An option's text with ipywidgets' non-breaking spaces as spaces, runs collapsed."""
    return " ".join(label.replace("\xa0", " ").split())


def options(box: Any) -> list[str]:
    return [plain(label) for label in box.locator(".cfm-rows select option").all_inner_texts()]


@pytest.mark.timeout(240)
def test_inspector_filter_preview_delete_refresh(page: Any, lab: Lab, tmp_path: Path) -> None:
    lab.write_notebook("inspect.ipynb", [SETUP, REAL, "%agent cache"])
    nb = NotebookPage.open(page, lab, "inspect.ipynb")
    nb.run_cell(0)
    nb.run_cell(1)
    idle = frame_ms(page)
    nb.run_cell(2)
    box = widget(nb)
    box.wait_for(timeout=60_000)
    wait_text(box, "page 1 of 2")
    assert len(options(box)) == 100
    assert "131 entries" in box.inner_text()  # the health header
    shots = Path(os.environ.get("CFM_SCREENSHOTS") or tmp_path)  # to keep them: set the variable
    shots.mkdir(parents=True, exist_ok=True)
    box.screenshot(path=str(shots / "inspector-open.png"))

    # Filter by agent, then by text: the list follows, the pager says how many.
    control(box, "dropdown", "agent").select_option("database-architect")
    wait_text(box, "65 entries")
    assert all(label.split()[1] == "database-architect" for label in options(box))
    text = control(box, "text", "text")
    text.fill("question 7")
    text.press("Enter")
    box.page.wait_for_function(
        "(el) => el.querySelectorAll('.cfm-rows select option').length === 6",
        arg=box.element_handle(),
    )  # the agent has the odd-numbered questions: 7, 71, 73, 75, 77 and 79

    # Pick the entry with the hostile answer: rendered as text, nothing runs.
    rows = box.locator(".cfm-rows select option").all_inner_texts()
    row = next(label for label in rows if plain(label).endswith("stored question 7"))
    box.locator(".cfm-rows select").select_option(label=row)
    wait_text(box, "cache entry")
    preview = box.locator(".cfm-output")
    assert preview.locator(".cfm-body strong").inner_text() == "bold"
    assert preview.locator("img, script").count() == 0
    assert "<img src=x" in preview.inner_text()
    box.screenshot(path=str(shots / "inspector-preview.png"))

    # Delete it.
    box.locator("button", has_text="Delete").click()
    wait_text(box, "Deleted 1 entry.")
    assert not any(label.endswith("stored question 7") for label in options(box))

    # Refresh the real cell's entry: asked first, then re-run against the simulator.
    control(box, "dropdown", "agent").select_option("(all)")
    text.fill("enumerate")
    text.press("Enter")
    box.page.wait_for_function(
        "(el) => el.querySelectorAll('.cfm-rows select option').length === 1",
        arg=box.element_handle(),
    )
    box.locator(".cfm-rows select").select_option(index=0)
    wait_text(box, "cache entry")
    box.locator("button", has_text="Refresh (live)").click()
    wait_text(box, "costs money")
    box.screenshot(path=str(shots / "inspector-confirm.png"))
    box.locator("button", has_text="Confirm refresh").click()
    wait_text(box, "a new answer was stored")

    busy = frame_ms(page)
    box.screenshot(path=str(shots / "inspector-after.png"))
    print(f"\nanimation frame: idle {idle:.1f} ms, with the inspector {busy:.1f} ms")
    # A frame is ~16 ms; a page blocked by the widget would take far longer. 10x is generous
    # for a loaded 2-core machine and still catches a main thread that is stuck.
    assert busy <= max(10 * idle, 200.0)
    assert xss_globals(page) == []
    assert page.incidents.as_dict() == {
        "dialogs": [],
        "navigations": [],
        "popups": [],
        "foreign_requests": [],
    }
    assert nb.error_outputs() == []


@pytest.mark.timeout(180)
def test_an_hour_without_lookups_says_so_in_the_plot(page: Any, lab: Lab, tmp_path: Path) -> None:
    # Entries stored, none looked up (a cache of its own: other tests' lookups are not here).
    own = f"%config AgentMagics.cache_dir = {str(tmp_path / 'quiet-cache')!r}"
    setup = SETUP.replace("%agent simulate on", f"%agent simulate on\n{own}")
    lab.write_notebook("quiet.ipynb", [setup, "%agent cache"])
    nb = NotebookPage.open(page, lab, "quiet.ipynb")
    nb.run_cell(0)
    nb.run_cell(1)
    box = nb.outputs(1).locator(".cfm-inspector").first
    box.wait_for(timeout=60_000)
    wait_text(box, "130 entries")
    plot = box.locator("svg.cfm-activity")
    assert plot.locator("rect").count() == 1  # the background only: no bar
    assert plot.locator("text").text_content() == "no lookups in the last hour"
    assert plot.locator("text").is_visible()
    shots = Path(os.environ.get("CFM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    box.screenshot(path=str(shots / "inspector-quiet.png"))
