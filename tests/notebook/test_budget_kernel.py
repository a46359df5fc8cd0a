"""Money in a real kernel: stopped cells are billed, spend outlives %reload_ext and a restart,
budgets print their real amount, and a multi-agent budget stop names every agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernel_harness import Kernel, start_kernel, stop_kernel

pytestmark = pytest.mark.kernel

MAGICS = "get_ipython().magics_manager.registry['AgentMagics']"


def _load(kernel: Kernel) -> None:
    kernel.ok("%load_ext claude_force_magic")
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    kernel.ok("%agent simulate on")


def _spent(kernel: Kernel) -> float:
    run = kernel.ok(f"print({MAGICS}.session.spent_usd(True))")
    return float(run.stdout.strip())


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel: Kernel) -> Kernel:
    _load(kernel)
    return kernel


def test_interrupted_stream_is_billed_shown_once_and_kept_in_o(kernel: Kernel) -> None:
    kernel.ok("%agent budget 5")
    before = _spent(kernel)
    kernel.ok("%config AgentMagics.simulator_per_token = 0.05")
    msg_id = kernel.send("%%agent python-expert --no-cache -o cut\nA long answer to stop early.")
    kernel.wait_for(msg_id, lambda run: len(run.texts("text/html")) >= 2)
    kernel.manager.interrupt_kernel()
    run = kernel.collect(msg_id, timeout=10)
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0")
    assert run.status == "error"
    assert run.error is not None and run.error["ename"] == "KeyboardInterrupt"
    red = "\n".join(run.error["traceback"])
    assert "cancelled" in red
    final = run.texts("text/html")[-1]
    # exactly one message: the answer area keeps the text and a footer, not the error again
    assert "cancelled" not in final and "KeyboardInterrupt" not in final, final
    assert "interrupted, answer cut off" in final
    assert "$" in final.split("interrupted")[0].rsplit("·", 2)[-2], final
    assert "cancelled" not in run.stderr
    # -o got the partial result
    kernel.ok(
        "assert not cut.success and cut.output\n"
        "assert cut.metadata['status'] == 'cancelled' and cut.metadata['cut']\n"
        "assert cut.cost_usd > 0 and cut.metadata['input_tokens'] > 0"
    )
    spent = _spent(kernel)
    assert spent > before, "the interrupted call is charged against the budget"
    kernel.ok(
        "h = %agent history\n"
        "row = h[h.status == 'cancelled'].iloc[-1]\n"
        "assert row.cost_usd > 0 and row['mode'] == 'simulated'\n"
        "c = %agent cost\n"
        "assert c[c['mode'] == 'simulated'].cost_usd.sum() > 0"
    )
    kernel.ok("%%agent python-expert -o after\nThe question after a billed interrupt.")
    kernel.ok("assert after.success")


def test_budget_prints_small_amounts_and_its_state(kernel: Kernel) -> None:
    run = kernel.ok("%agent budget 0.001")
    assert "$0.001 " in run.stdout, run.stdout
    assert "$0.00 " not in run.stdout
    run = kernel.ok("%agent budget")
    assert "$0.001" in run.stdout and "spent" in run.stdout and "left" in run.stdout
    assert "in total" in run.stdout
    run = kernel.ok("%agent budget 2 --per day")
    assert "$2.00 per day" in run.stdout
    kernel.ok(f"assert {MAGICS}.budget_window == 'day'")
    kernel.ok("%config AgentMagics.budget_window = 'session'")
    assert "per session" in kernel.ok("%agent budget").stdout
    bad = kernel.run("%agent budget 2 --per week")
    assert bad.ename == "UsageError"
    kernel.ok("%agent budget 5 --per total")


def test_multi_agent_budget_stop_names_every_agent_and_leaves_no_placeholder(
    kernel: Kernel,
) -> None:
    kernel.ok("%agent budget 0.000001")
    run = kernel.run("%%agent python-expert code-reviewer --no-cache\nTwo budget-stopped views.")
    kernel.ok("%agent budget 5")
    assert run.status == "error"
    red = "\n".join(run.error["traceback"]) if run.error else ""
    assert "python-expert" in red and "code-reviewer" in red, red
    assert red.count("→") == 1, "the shared fix is shown once"
    finals: dict[str, str] = {}
    for content in run.of_type("display_data", "update_display_data"):
        text = content.get("data", {}).get("text/html")
        if text is not None:
            finals[content.get("transient", {}).get("display_id", "")] = text
    assert len(finals) == 2
    for text in finals.values():
        assert "waiting for the first tokens" not in text, text
        assert "BudgetExceededError" in text


def test_reset_starts_the_spend_over(kernel: Kernel) -> None:
    kernel.ok("%%agent python-expert --no-cache\nSomething to spend a little on.")
    assert _spent(kernel) > 0
    run = kernel.ok("%agent budget reset")
    assert "reset" in run.stdout
    assert _spent(kernel) == 0.0


def test_spend_survives_reload_ext_and_a_kernel_restart(tmp_path: Path) -> None:
    root = tmp_path / "restart"
    root.mkdir()
    first = start_kernel(root)
    try:
        _load(first)
        first.ok("%agent budget 5")
        first.ok("%%agent python-expert --no-cache\nA question whose cost must persist.")
        spent = _spent(first)
        assert spent > 0
        first.ok("%reload_ext claude_force_magic")
        first.ok("%agent simulate on")
        assert _spent(first) == pytest.approx(spent), "%reload_ext must not reset the spend"
        first.ok("%config AgentMagics.budget_window = 'session'")
        assert _spent(first) == pytest.approx(spent), "a reload is the same session"
    finally:
        stop_kernel(first)
    second = start_kernel(root)  # the same cache directory and secret: a restarted kernel
    try:
        _load(second)
        assert _spent(second) == pytest.approx(spent)
        second.ok("%config AgentMagics.budget_window = 'session'")
        assert _spent(second) == 0.0, "a restarted kernel is a new session"
        second.ok("%config AgentMagics.budget_window = 'total'")
        second.ok("%agent budget 5")  # the limit is a setting; the spend is what persists
        # tampering with the ledger never lowers the spend silently
        ledger = json.loads(
            second.ok(
                f"import json; print(json.dumps(str({MAGICS}.session.spend_path(True))))"
            ).stdout
        )
        lines = Path(ledger).read_text().splitlines()
        record = json.loads(lines[-1])
        record["usd"] = 0.0
        Path(ledger).write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")
        run = second.run("%%agent python-expert --no-cache\nAfter tampering.")
        assert run.ename == "BudgetExceededError"
        assert "cannot be trusted" in "\n".join(run.error["traceback"] if run.error else [])
        second.ok("%agent budget reset")
        second.ok("%%agent python-expert --no-cache\nAfter the reset.")
    finally:
        stop_kernel(second)
