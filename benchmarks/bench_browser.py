"""Browser benchmark: Ctrl+Enter to the footer of a cache-hit ``%%agent`` cell, in JupyterLab.

Run:  .venv/bin/python benchmarks/bench_browser.py [--reps 20]

One JupyterLab server (offline, simulator) and one page in headless Chromium. The cache-hit
``%%agent`` cell and a ``print()`` cell are run alternately (interleaved, so drift hits both
equally) by pressing Ctrl+Enter on the selected cell. The time is taken in the page's own clock:
from the keydown of Ctrl+Enter to the moment the cell's new output shows its last line (the
footer's "cache hit", or the printed text). Goal: the agent cell at most 15 ms over print().
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

GOAL_MS = 15.0
AGENT_CELL = "%%agent python-expert\nExplain what a cache hit costs"
PRINT_CELL = "print('printed-marker')"

#: Arm a timer on the next Ctrl+Enter; stop it when cell ``i`` shows ``marker`` in an output
#: node that did not exist when armed. Resolves to the elapsed milliseconds (rejects after 30 s).
ARM_JS = """([i, marker]) => { window.__cfmTimer = new Promise((resolve, reject) => {
  const cell = window.__cfmPanel.content.widgets[i];
  const area = cell.node.querySelector('.jp-OutputArea');
  for (const el of area.querySelectorAll('.jp-OutputArea-output')) el.__cfmOld = true;
  let t0 = null;
  const check = () => {
    if (t0 === null) return;
    for (const el of area.querySelectorAll('.jp-OutputArea-output')) {
      if (!el.__cfmOld && el.innerText.includes(marker)) {
        obs.disconnect(); resolve(performance.now() - t0); return;
      }
    }
  };
  const obs = new MutationObserver(check);
  obs.observe(area, {childList: true, subtree: true, characterData: true});
  const onKey = e => {
    if (e.key === 'Enter' && e.ctrlKey && t0 === null) {
      t0 = performance.now();
      document.removeEventListener('keydown', onKey, {capture: true});
    }
  };
  document.addEventListener('keydown', onKey, {capture: true});
  setTimeout(() => { obs.disconnect(); reject(new Error('no new output with ' + marker)); }, 30000);
}); }"""


def measure(page: Any, nb: Any, index: int, marker: str) -> float:
    nb.select(index)
    page.evaluate(ARM_JS, [index, marker])
    page.keyboard.press("Control+Enter")
    elapsed = float(page.evaluate("() => window.__cfmTimer"))
    nb.wait_idle()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="runs of each cell (default 20)")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    from lab_harness import NotebookPage, launch_chromium, start_lab, stop_lab
    from playwright.sync_api import sync_playwright

    lab = start_lab(Path(tempfile.mkdtemp(prefix="cfm-bench-browser-")))
    try:
        setup = (
            "%load_ext claude_force_magic\n%agent simulate on\n"
            "%config AgentMagics.simulator_latency = 0.0"
        )
        lab.write_notebook("bench.ipynb", [setup, AGENT_CELL, PRINT_CELL])
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            nb = NotebookPage.open(page, lab, "bench.ipynb")
            nb.run_cell(0)
            nb.run_cell(1)  # the miss that fills the cache
            nb.run_cell(2)
            for _ in range(3):  # warm-up
                measure(page, nb, 1, "cache hit")
                measure(page, nb, 2, "printed-marker")
            agent, printed = [], []
            for _ in range(args.reps):
                agent.append(measure(page, nb, 1, "cache hit"))
                printed.append(measure(page, nb, 2, "printed-marker"))
            browser.close()
    finally:
        stop_lab(lab)

    a, b = statistics.median(agent), statistics.median(printed)
    print(f"Ctrl+Enter to last line in JupyterLab/Chromium, median of {args.reps} (interleaved)")
    print(f"  cache-hit %%agent cell: {a:7.1f} ms  (min {min(agent):.1f}, max {max(agent):.1f})")
    print(
        f"  print() cell:           {b:7.1f} ms  (min {min(printed):.1f}, max {max(printed):.1f})"
    )
    verdict = "meets" if a - b <= GOAL_MS else "misses"
    print(f"  difference:             {a - b:+7.1f} ms  ({verdict} the goal of <= {GOAL_MS:g} ms)")


if __name__ == "__main__":
    main()
