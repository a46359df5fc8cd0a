"""The extension as a JupyterLab user sees it: Run All, streaming in place, live widgets, code
cells, the stop button, several agents at once, benchmarks, one-line errors."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from lab_harness import Lab, NotebookPage, repo_path

#: A plain answer long enough to stream in many deltas (no Markdown, no dollar signs).
WORDS = " ".join(f"word{i}" for i in range(400))

#: JavaScript: sample every 50 ms the cell's output count, texts and whether it still runs.
SAMPLER_JS = """(i) => {
  const cell = window.__cfmPanel.content.widgets[i];
  window.__samples = [];
  window.__sampler = setInterval(() => {
    const outs = [...cell.node.querySelectorAll('.jp-OutputArea-output')];
    window.__samples.push({n: outs.length, texts: outs.map(o => o.innerText),
                           nodes: outs.map(o => o), running:
                           cell.node.querySelector('.jp-InputArea-prompt').textContent.includes('*')});
  }, 50);
}"""
#: JavaScript: stop sampling; return the samples (and whether each output node is the very node
#: of the first sample).
STOP_SAMPLER_JS = """() => {
  clearInterval(window.__sampler);
  const s = window.__samples;
  const first = s.find(x => x.n > 0);
  return s.map(x => ({n: x.n, lens: x.texts.map(t => t.length), texts: x.texts,
    running: x.running, same: first ? x.nodes.map((node, k) => node === first.nodes[k]) : []}));
}"""


def setup(per_token: float = 0.0, answers: list[str] | None = None) -> str:
    lines = [
        "%load_ext claude_force_magic",
        "%agent simulate on",
        "%config AgentMagics.simulator_latency = 0.0",
        f"%config AgentMagics.simulator_per_token = {per_token}",
    ]
    if answers:
        lines += [
            "_magics = get_ipython().magics_manager.registry['AgentMagics']",
            f"_magics.session.simulator().set_answers({answers!r})",
        ]
    return "\n".join(lines)


def open_run(page: Any, lab: Lab, name: str, cells: list[str]) -> NotebookPage:
    lab.write_notebook(name, cells)
    nb = NotebookPage.open(page, lab, name)
    nb.run_cell(0)
    return nb


@pytest.mark.timeout(300)
def test_run_all_of_every_example_notebook_shows_no_error(page: Any, lab: Lab) -> None:
    """Each notebook in notebooks/ in its own tab and kernel, all running at once."""
    names = sorted(p.name for p in repo_path("notebooks").glob("*.ipynb"))
    assert names, "no notebooks found"
    tabs = []
    for name in names:
        shutil.copy(repo_path("notebooks", name), lab.root / name)
        tab = page if not tabs else page.context.new_page()
        nb = NotebookPage.open(tab, lab, name)
        nb.command("notebook:run-all-cells", wait=False)
        tabs.append(nb)
    errors = {}
    for nb in tabs:
        nb.wait_all_executed(timeout=180)
        errors[nb.name] = nb.error_outputs()
        nb.page.screenshot(path=str(lab.root.parent / f"{nb.name}.png"))
    assert errors == {name: [] for name in names}


def test_streaming_grows_one_output_in_place(page: Any, lab: Lab) -> None:
    """While it streams the answer only grows (what is shown stays, nothing repeats or jumps),
    and it ends as one output with its footer."""
    nb = open_run(
        page,
        lab,
        "stream.ipynb",
        [setup(per_token=0.004, answers=[WORDS]), "%%agent python-expert\nStream a long answer"],
    )
    page.evaluate(SAMPLER_JS, 1)
    nb.run_cell(1)
    samples = page.evaluate(STOP_SAMPLER_JS)
    shown = ["".join("".join(s["texts"]).split()) for s in samples if s["running"]]
    answer = [t for t in shown if t.startswith("word0")]
    assert len(set(answer)) >= 3, "the text must grow while streaming"
    for earlier, later in itertools.pairwise(answer):
        # a live piece may end with a word still arriving: compare all but its last characters
        assert later.startswith(earlier[: len(earlier) - 12]), "shown text must only grow"
    for text in answer:
        numbers = re.findall(r"word(\d+)", text)[:-1]  # the last may still be arriving
        assert len(numbers) == len(set(numbers)), "no text may be shown twice"
    final = nb.output_models(1)
    assert len([o for o in final if o["output_type"] == "display_data"]) == 1, final
    text = nb.output_text(1)
    assert "word0" in text and "word399" in text and "python-expert" in text


def test_stats_is_a_live_widget_that_refreshes_after_another_cell(page: Any, lab: Lab) -> None:
    nb = open_run(
        page,
        lab,
        "stats.ipynb",
        [setup(), "%agent stats", "%%agent python-expert\nCount the calls in a dashboard"],
    )
    nb.run_cell(1)
    widget = nb.outputs(1).locator(".jupyter-widgets, .widget-box, .jp-RenderedIPyWidget")
    assert widget.count() > 0, "%agent stats must show a live widget"
    before = nb.output_text(1)
    nb.run_cell(2)
    page.wait_for_function(
        "([i, before]) => window.__cfmPanel.content.widgets[i]"
        ".node.querySelector('.jp-OutputArea').innerText !== before",
        arg=[1, before],
        timeout=15_000,
    )
    assert nb.output_text(1) != before


def test_format_code_adds_a_code_cell(page: Any, lab: Lab) -> None:
    answer = "Here it is.\n\n```python\ndef scripted_add(a, b):\n    return a + b\n```\n"
    nb = open_run(
        page,
        lab,
        "code.ipynb",
        [setup(answers=[answer]), "%%agent python-expert --format code\nWrite an add function"],
    )
    before = nb.cell_count()
    nb.run_cell(1)
    page.wait_for_function("(n) => window.__cfmPanel.content.widgets.length > n", arg=before)
    assert nb.cell_count() == before + 1
    source = page.evaluate("() => window.__cfmPanel.content.widgets[2].model.sharedModel.source")
    assert "def scripted_add(a, b):" in source


def test_the_stop_button_ends_a_streaming_cell_with_one_message(page: Any, lab: Lab) -> None:
    long_answer = " ".join(f"slow{i}" for i in range(3000))  # ~ 100 s at 0.02 s per token
    nb = open_run(
        page,
        lab,
        "stop.ipynb",
        [
            setup(per_token=0.02, answers=[long_answer]),
            "%%agent python-expert\nStream slowly until stopped",
            "%%agent python-expert\nAnswer after the stop",
        ],
    )
    nb.run_cell(1, wait=False)
    page.wait_for_function(
        "() => (window.__cfmPanel.content.widgets[1]"
        ".node.querySelector('.jp-OutputArea').innerText.match(/slow\\d+/g) || []).length > 20",
        timeout=60_000,
    )
    # In the page's clock: from the click on the toolbar's stop button to the prompt's number.
    page.evaluate(
        """() => { const cell = window.__cfmPanel.content.widgets[1];
        const prompt = cell.node.querySelector('.jp-InputArea-prompt');
        window.__stopped = null;
        new MutationObserver((m, obs) => { if (!prompt.textContent.includes('*')) {
            window.__stopped = performance.now(); obs.disconnect(); } })
          .observe(prompt, {childList: true, subtree: true, characterData: true});
        window.__clicked = performance.now(); }"""
    )
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']").click()
    page.wait_for_function("() => window.__stopped !== null", timeout=30_000)
    seconds = page.evaluate("() => (window.__stopped - window.__clicked) / 1000")
    nb.wait_idle()
    # Measured at 0.1-0.3 s on an idle 2-core machine; the 1 s goal, with room for a
    # loaded CI machine (the stream it stops would run for minutes).
    assert seconds < 1.5, f"the cell took {seconds:.2f} s to stop"
    outputs = nb.output_models(1)
    # One message says the cell was stopped: the red error line. The answer keeps the text
    # streamed so far, its footer marking it cut off (and what it cost), without repeating it.
    messages = [
        o
        for o in outputs
        if o["output_type"] in ("error", "stream")
        or any(w in str(o.get("data", {})) for w in ("cancelled", "KeyboardInterrupt"))
    ]
    assert len(messages) == 1, f"expected exactly one message, got {messages}"
    assert messages[0]["output_type"] == "error" and "cancelled" in str(messages[0]["traceback"])
    answers = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(answers) == 1, answers
    kept = answers[0]["data"]["text/plain"]
    assert "slow20" in kept and "interrupted, answer cut off" in kept, kept
    nb.run_cell(2)
    assert "python-expert" in nb.output_text(2)
    assert all(o["output_type"] != "error" for o in nb.output_models(2))


def test_two_agents_stream_side_by_side(page: Any, lab: Lab) -> None:
    first = " ".join(f"alpha{i}" for i in range(300))
    second = " ".join(f"beta{i}" for i in range(300))
    nb = open_run(
        page,
        lab,
        "two.ipynb",
        [
            setup(per_token=0.006, answers=[first, second]),
            "%%agent python-expert code-reviewer\nBoth answer at once",
        ],
    )
    page.evaluate(SAMPLER_JS, 1)
    nb.run_cell(1)
    samples = page.evaluate(STOP_SAMPLER_JS)
    text = nb.output_text(1)
    assert "alpha299" in text and "beta299" in text
    both_partial = [
        s
        for s in samples
        if s["running"]
        and "alpha1" in "".join(s["texts"])
        and "beta1" in "".join(s["texts"])
        and "alpha299" not in "".join(s["texts"])
        and "beta299" not in "".join(s["texts"])
    ]
    assert both_partial, "the two answers must grow at the same time"


def test_bench_shows_a_progress_bar_and_a_plot(page: Any, lab: Lab) -> None:
    nb = open_run(
        page,
        lab,
        "bench.ipynb",
        [
            setup(),
            "%config AgentMagics.simulator_latency = 0.3\n"
            "%agent bench python-expert --n 12 --concurrency 2 --max-tokens 64",
        ],
    )
    nb.run_cell(1, wait=False)
    progress = nb.outputs(1).locator(
        ".widget-progress, progress, .jupyter-widgets.widget-hprogress"
    )
    progress.first.wait_for(state="attached", timeout=30_000)
    nb.wait_idle(timeout=120)
    nb.wait_all_executed(timeout=120)
    assert nb.outputs(1).locator("img").count() >= 1, "the bench must draw a plot"
    assert all(o["output_type"] != "error" for o in nb.output_models(1))


@pytest.mark.parametrize(
    "source",
    [
        "%%agent no-such-agent\nHello",
        "%%agent python-expert --max-tokens -5\nHello",
        "%agent budget 0.000001\n%%agent python-expert\nA task the budget must refuse",
    ],
    ids=["unknown-agent", "bad-option", "budget"],
)
def test_errors_are_one_line(page: Any, lab: Lab, source: str, tmp_path: Path) -> None:
    cells = [setup()]
    if source.startswith("%agent budget"):
        budget, agent = source.split("\n", 1)
        cells += [budget, agent]
    else:
        cells.append(source)
    nb = open_run(page, lab, f"err-{tmp_path.name}.ipynb", cells)
    for i in range(1, len(cells)):
        nb.run_cell(i)
    last = len(cells) - 1
    errors = [
        o
        for o in nb.output_models(last)
        if o["output_type"] == "error" or o.get("name") == "stderr"
    ]
    assert errors, "the cell must fail"
    shown = nb.outputs(last).last.inner_text()
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 1, f"the error must be one line, got {lines}"
