"""What the model says is data, also on screen: no answer can run JavaScript in JupyterLab or in
the demo's nbconvert HTML export, streamed or from the cache, and our own chrome (footer, labels,
errors) is never typeset as math.

Every payload in tests/data/xss_corpus.json is delivered as the ANSWER TEXT through the offline
simulator (``Simulator.set_answers``), in a real ``%%agent`` cell run by JupyterLab in Chromium.
A payload that runs sets a page global named ``__xss_*``, opens a dialog or navigates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lab_harness import (
    Incidents,
    Lab,
    NotebookPage,
    lab_env,
    repo_path,
    texts_visible,
    xss_globals,
)

CORPUS_PATH = repo_path("tests", "data", "xss_corpus.json")
CORPUS: list[dict[str, Any]] = json.loads(CORPUS_PATH.read_text(encoding="utf-8"))["payloads"]
#: Seconds per streamed token: every answer arrives in several deltas and display updates.
PER_TOKEN = 0.004


def setup_source(per_token: float = PER_TOKEN) -> str:
    """The first cell: load the extension offline and script the simulator's answers."""
    return "\n".join(
        [
            "%load_ext claude_force_magic",
            "%agent simulate on",
            "%config AgentMagics.simulator_latency = 0.0",
            f"%config AgentMagics.simulator_per_token = {per_token}",
            "import json",
            f"_corpus = json.load(open({str(CORPUS_PATH)!r}))['payloads']",
            "_magics = get_ipython().magics_manager.registry['AgentMagics']",
            "_magics.session.simulator().set_answers([p['answer'] for p in _corpus])",
        ]
    )


def agent_cell(index: int) -> str:
    return f"%%agent python-expert\nRepeat answer number {index} of the scripted corpus."


def corpus_cells() -> list[str]:
    """Setup, then two identical cells per payload: the first streams, the second is a hit."""
    cells = [setup_source()]
    for i in range(len(CORPUS)):
        cells += [agent_cell(i), agent_cell(i)]
    return cells


def test_the_corpus_covers_the_required_kinds_of_payload() -> None:
    ids = [p["id"] for p in CORPUS]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)
    markers = [p["marker"] for p in CORPUS]
    assert len(set(markers)) == len(markers)
    text = "\n".join(p["answer"] for p in CORPUS)
    for needle in ("onerror", "<script", "<svg", "<math", "srcdoc", "<form", "http-equiv",
                   "](javascript:", "](data:", "<javascript:", "&#", "OnErRoR", "```", "</sub>",
                   "</div>"):  # fmt: skip
        assert needle in text, needle
    globals_named = set(re.findall(r"__xss_\w+", text))
    assert len(globals_named) >= len(CORPUS) - 3  # meta refresh etc. act by navigating


def assert_nothing_ran(page: Any, incidents: Incidents) -> None:
    page.wait_for_timeout(1500)  # let failed image loads and focus events fire
    assert xss_globals(page) == []
    assert incidents.dialogs == []
    assert incidents.navigations == []
    assert incidents.popups == []


@pytest.mark.timeout(300)
def test_no_answer_runs_javascript_streamed_or_from_the_cache(page: Any, lab: Lab) -> None:
    name = lab.write_notebook("xss.ipynb", corpus_cells())
    nb = NotebookPage.open(page, lab, name)
    nb.run_all(timeout=180)

    assert nb.error_outputs() == []
    assert_nothing_ran(page, page.incidents)
    assert page.incidents.foreign_requests == []
    assert nb.dangerous_markup() == []
    missing: dict[str, list[str]] = {}
    for i, payload in enumerate(CORPUS):
        for cell in (1 + 2 * i, 2 + 2 * i):
            text = nb.output_text(cell)
            needles = [
                f"{payload['marker']} begins",
                f"{payload['marker']} ends",
                *payload["visible"],
            ]
            lost = texts_visible(text, needles)
            if lost:
                missing[f"{payload['id']} (cell {cell})"] = lost
        assert "cache hit" in nb.output_text(2 + 2 * i)
    assert missing == {}, "payload text not visible in the output"


@pytest.mark.timeout(300)
def test_the_demo_html_export_runs_no_answer(
    page: Any, lab: Lab, tmp_path: Path, chromium: Any
) -> None:
    from claude_force_magic.demo import run_notebook

    path = tmp_path / "xss-export.ipynb"
    lab.write_notebook(path.name, corpus_cells())
    path.write_text((lab.root / path.name).read_text(encoding="utf-8"), encoding="utf-8")
    home = tmp_path / "home"
    html = tmp_path / "xss-export.html"
    summary = run_notebook(path, html, timeout=120, env=lab_env(home))
    assert summary.agent_cells == 2 * len(CORPUS)

    body = html.read_text(encoding="utf-8")
    head = body.split("<body", 1)[0]
    template_urls = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", head))
    export = chromium.new_context()
    view = export.new_page()
    incidents = Incidents()
    incidents.watch(view, html.as_uri())
    try:
        view.goto(html.as_uri())
        assert_nothing_ran(view, incidents)
        foreign = [u for u in incidents.foreign_requests if u not in template_urls]
        assert foreign == []
        shown = view.inner_text("body")
        missing = {
            p["id"]: texts_visible(shown, [f"{p['marker']} begins", *p["visible"]]) for p in CORPUS
        }
        assert {k: v for k, v in missing.items() if v} == {}
    finally:
        view.screenshot(path=str(tmp_path / "export.png"), full_page=False)
        export.close()


@pytest.fixture
def chrome_notebook(page: Any, lab: Lab) -> NotebookPage:
    """A notebook with a cache-hit footer, multi-agent labels and a budget error, run."""
    cells = [
        "%load_ext claude_force_magic\n%agent simulate on\n"
        "%config AgentMagics.simulator_latency = 0.0",
        "%%agent python-expert\nExplain the cost of $x$ in dollars",
        "%%agent python-expert\nExplain the cost of $x$ in dollars",
        "%%agent python-expert code-reviewer\nReview the price list for $5 and $10 items",
        "%agent budget 0.000001",
        "%%agent python-expert\nA new task that the budget must refuse, priced in $",
        "%%agent python-expert code-reviewer\nAnother new task the budget refuses, $1 or $2",
    ]
    name = lab.write_notebook("chrome.ipynb", cells)
    nb = NotebookPage.open(page, lab, name)
    for i in range(len(cells)):
        nb.run_cell(i)
    return nb


def test_footers_labels_and_errors_are_never_typeset_as_math(
    chrome_notebook: NotebookPage,
) -> None:
    nb = chrome_notebook
    page = nb.page
    page.wait_for_timeout(1000)  # MathJax typesets asynchronously
    for cell in (1, 2, 3, 5, 6):
        count = nb.outputs(cell).locator("mjx-container").count()
        assert count == 0, f"cell {cell}: {count} mjx-container(s) in our output"
    assert "cache hit" in nb.output_text(2)
    assert "python-expert" in nb.output_text(3) and "code-reviewer" in nb.output_text(3)
    assert "budget" in (nb.output_text(5) + nb.output_text(6)).lower()
    assert "$" in nb.output_text(2), "the footer's dollar amounts must show as typed"
