"""``%agent batch`` in a real Jupyter kernel: submit, list, status widget, results, cancel,
an interrupted ``--wait``, and re-attaching after the kernel is replaced."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from kernel_harness import CellRun, Kernel, start_kernel, stop_kernel

from claude_force_magic.simulator import Simulator

pytestmark = pytest.mark.kernel

MAGICS = "get_ipython().magics_manager.registry['AgentMagics']"
SIM = f"{MAGICS}.session.simulator()"
JOB = re.compile(r"job_[0-9a-f]{16}")


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel: Kernel) -> Kernel:
    kernel.ok("%load_ext claude_force_magic")
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    kernel.ok("%agent simulate on")
    kernel.ok(f"{SIM}.configure(batch_seconds=0.5)")
    return kernel


def job_id(run: CellRun) -> str:
    found = JOB.search(run.stdout)
    assert found, run.stdout
    return found.group(0)


def error_text(run: CellRun) -> str:
    """What the user sees of a failed cell (a UsageError is written to stderr)."""
    shown = run.stderr
    if run.error is not None:
        shown += "\n".join(run.error["traceback"])
    return shown


def test_submit_watch_and_collect(kernel: Kernel) -> None:
    kernel.ok("tickets = [f'Explain the refund policy for order {i}' for i in range(5)]")
    kernel.ok("%%agent python-expert\nExplain the refund policy for order 3")  # now cached
    run = kernel.ok("%agent batch python-expert --tasks tickets -o job")
    ident = job_id(run)
    assert "1 answered from the cache" in run.stdout
    assert f"%agent batch status {ident}" in run.stdout
    sent = kernel.ok(
        f"print(sum(len(r.body['requests']) for r in {SIM}.requests "
        "if r.path == '/v1/messages/batches' and r.method == 'POST'))"
    )
    assert sent.stdout.strip() == "4"

    status = kernel.ok(f"%agent batch status {ident} --poll 0.05")
    bundle = status.of_type("display_data")[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    # the kernel is free while the bar refreshes; the bar stops once the job has ended
    kernel.ok("x = 1 + 1")
    kernel.ok(
        "import time\nfrom claude_force_magic.notebook.commands.batch import _REFRESHERS\n"
        f"future, bar = _REFRESHERS[{ident!r}]\n"
        "for _ in range(400):\n    if future.done(): break\n    time.sleep(0.05)\n"
        "assert future.done() and future.exception() is None\n"
        "assert bar.value == 5 and 'ended' in bar.line, (bar.value, bar.line)"
    )

    listing = kernel.ok("%agent batch list")
    assert ident in listing.result_text and "ended" in listing.result_text

    results = kernel.ok(f"%agent batch results {ident} -o res")
    text = results.result_text
    assert "custom_id" in text and "item-4" in text
    check = kernel.ok(
        "import json\nprint(json.dumps([len(res), sum(r.success for r in res), res[3].cached, "
        "[r.metadata['custom_id'] for r in res]]))"
    )
    count, ok, cached, ids = json.loads(check.stdout)
    assert (count, ok, cached) == (5, 5, True) and ids == [f"item-{i}" for i in range(5)]
    kernel.ok("%%agent python-expert -o again\nExplain the refund policy for order 1")
    assert kernel.ok("print(again.cached)").stdout.strip() == "True"  # stored by the batch


def test_wait_collects_and_an_interrupt_leaves_the_job_running(kernel: Kernel) -> None:
    kernel.ok("more = ['Summarise ticket alpha', 'Summarise ticket beta']")
    waited = kernel.ok("%agent batch python-expert --tasks more --wait --poll 0.05")
    assert "item-1" in waited.result_text and "ended" in waited.stdout

    kernel.ok(f"{SIM}.configure(batch_seconds=60)")
    try:
        kernel.ok("slow = ['Summarise ticket gamma', 'Summarise ticket delta']")
        msg_id = kernel.send("%agent batch python-expert --tasks slow --wait --poll 0.05")
        kernel.wait_for(msg_id, lambda run: "Batch job" in run.stdout)
        kernel.manager.interrupt_kernel()
        run = kernel.collect(msg_id)
    finally:
        kernel.ok(f"{SIM}.configure(batch_seconds=0.5)")
    assert run.status == "error" and run.ename == "KeyboardInterrupt"
    ident = job_id(run)
    assert "keeps running" in run.stdout and f"%agent batch status {ident}" in run.stdout
    cancelled = kernel.ok(f"%agent batch cancel {ident}")
    assert "canceling" in cancelled.stdout or "canceled" in cancelled.stdout
    early = kernel.run(f"%agent batch results {ident}")
    assert early.status == "error" and "still processing" in error_text(early)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("%agent batch python-expert", "--tasks VAR"),
        ("%agent batch python-expert --tasks nope", "no such variable"),
        ("%agent batch python-expert --tasks answer", "expected a list"),
        ("%agent batch results", "which job"),
        ("%agent batch results job_0123456789abcdef", "No batch job"),
        ("%agent batch list --tasks more", "takes no --tasks"),
        ("%agent batch status --poll 0", "--poll"),
    ],
)
def test_usage_errors_are_short_and_say_what_to_do(kernel: Kernel, line: str, needle: str) -> None:
    kernel.ok("answer = 42")
    run = kernel.run(line)
    assert run.status == "error"
    text = error_text(run)
    assert needle in text and "Traceback" not in text


@pytest.fixture
def external_sim() -> Iterator[Simulator]:
    """A simulator outside the kernels, so that it outlives them."""
    sim = Simulator(batch_seconds=0.3).start()
    try:
        yield sim
    finally:
        sim.stop()


def _live_kernel(root: Path, sim: Simulator) -> Kernel:
    kernel = start_kernel(root)
    kernel.ok(
        "import os\n"
        f"os.environ['ANTHROPIC_BASE_URL'] = {sim.base_url!r}\n"
        "os.environ['ANTHROPIC_API_KEY'] = 'sk-test-batch-restart'"
    )
    kernel.ok("%load_ext claude_force_magic")
    return kernel


def spent(kernel: Kernel) -> float:
    return float(kernel.ok(f"print({MAGICS}.session.spent_usd(False))").stdout)


def test_a_new_kernel_reattaches_and_collects_exactly_once(
    tmp_path: Path, external_sim: Simulator
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = _live_kernel(root, external_sim)
    try:
        first.ok("tasks = ['Review function alpha', 'Review function beta']")
        ident = job_id(first.ok("%agent batch python-expert --tasks tasks"))
    finally:
        stop_kernel(first)
    second = _live_kernel(root, external_sim)  # the same cache directory: a restarted kernel
    try:
        second.ok("import time\ntime.sleep(0.5)")  # the simulator's batch ends after 0.3 s
        assert "ended" in second.ok(f"%agent batch status {ident}").stdout
        second.ok(f"%agent batch results {ident} -o res")
        cost = float(second.ok("print(sum(r.metadata['cost_usd'] for r in res))").stdout)
        assert cost > 0 and spent(second) == pytest.approx(cost)
        second.ok(f"%agent batch results {ident}")  # collected already: not charged again
        assert spent(second) == pytest.approx(cost)
    finally:
        stop_kernel(second)


def test_in_a_terminal_status_is_a_line_and_wait_a_text_bar(
    shell: InteractiveShell,
) -> None:
    from IPython.utils.capture import capture_output

    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        sim = shell.magics_manager.registry["AgentMagics"].session.simulator()
        sim.configure(batch_seconds=0.2)
        shell.user_ns["qs"] = ["Explain topic one", "Explain topic two"]
        frame = shell.run_line_magic("agent", "batch python-expert --tasks qs --wait --poll 0.05")
        listing = shell.run_line_magic("agent", "batch list")
        shell.run_line_magic("agent", "batch status")
    assert list(frame["custom_id"]) == ["item-0", "item-1"] and (frame["status"] == "ok").all()
    assert "ended, 2/2" in out.stdout  # the text bar, then the status line
    assert listing["status"].iloc[0] == "ended" and bool(listing["collected"].iloc[0])
