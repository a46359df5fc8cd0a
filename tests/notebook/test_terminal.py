"""The extension in a terminal IPython, where no event loop is running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic import errors


def test_a_cell_prints_the_answer_and_footer(shell: InteractiveShell) -> None:
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        result = shell.run_cell("%%agent python-expert -o r\nExplain the walrus operator.")
    assert result.error_in_exec is None
    assert "python-expert · claude-sonnet-5-5" in out.stdout
    assert "simulated" in out.stdout
    assert shell.user_ns["r"].success


def test_errors_fail_the_cell_without_a_traceback(shell: InteractiveShell) -> None:
    with capture_output() as out:
        result = shell.run_cell("%%agent python-expert\nNo key and no simulator.")
    assert isinstance(result.error_in_exec, errors.ConfigurationError)
    assert "ANTHROPIC_API_KEY" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_line_magic_returns_dataframes(shell: InteractiveShell) -> None:
    with capture_output():
        shell.run_line_magic("agent", "simulate on")
        shell.run_cell("%%agent sql-expert --quiet\nCount rows per day.")
        frame = shell.run_line_magic("agent", "history")
    assert list(frame.agent_name) == ["sql-expert"]
    assert bool(frame.cached.iloc[0]) is False


def test_stats_prints_text_tables(shell: InteractiveShell) -> None:
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        shell.run_cell("%%agent sql-expert --quiet\nIndex advice for a wide table.")
        shell.run_line_magic("agent", "stats")
    assert "Cache" in out.stdout and "hit_rate" in out.stdout
    assert "Latency" in out.stdout


def test_ipython_c_in_a_subprocess(tmp_path: Path) -> None:
    code = (
        "%load_ext claude_force_magic\n"
        "%agent simulate on\n"
        "%config AgentMagics.simulator_latency = 0.0\n"
    )
    script = tmp_path / "session.ipy"
    script.write_text(
        code
        + "get_ipython().run_cell_magic('agent', 'python-expert -o r', 'Explain zip().')\n"
        + "assert r.success\n"
        + "%unload_ext claude_force_magic\n"
        + "import threading; print('THREADS', len(threading.enumerate()))\n"
    )
    tmp_path.chmod(0o700)
    env = {**os.environ, "CLAUDE_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "python-expert · claude-sonnet-5-5" in out.stdout
    assert "THREADS 1" in out.stdout or "THREADS 2" in out.stdout  # main (+ history saver)


def test_help_is_the_manual_under_the_magics_real_names(shell: InteractiveShell) -> None:
    cell_doc = shell.find_cell_magic("agent").__doc__ or ""
    assert "%%agent [--model MODEL]" in cell_doc, cell_doc
    assert "agent_cell" not in cell_doc
    line_doc = shell.find_line_magic("agent").__doc__ or ""
    for needle in (
        "show NAME",
        "cache verify",
        "budget USD",
        "simulate on|off",
        "%agent bench [--n N] [--concurrency CONCURRENCY]",
        "--tasks VAR",
        "--no-plot",
    ):
        assert needle in line_doc, line_doc


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("show 'python-expert", "quotation"),
        ("bench python-expert --n 2 --simulate --max-tokens 0", "--max-tokens"),
        ("cache clear a b", "Usage: %agent cache"),
        ("bench python-expert --n 2 --simulate -o 1bad", "variable name"),
    ],
)
def test_line_magic_mistakes_are_usage_errors(
    shell: InteractiveShell, line: str, message: str
) -> None:
    with capture_output() as out:
        result = shell.run_cell(f"%agent {line}")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert message in out.stdout + out.stderr


def test_cache_subcommands_need_no_api_key(shell: InteractiveShell) -> None:
    with capture_output() as out:
        frame = shell.run_line_magic("agent", "cache")
        shell.run_line_magic("agent", "cache verify")
        shell.run_line_magic("agent", "cache clear")
        result = shell.run_cell("%%agent python-expert\nStill no key for a live call.")
    assert len(frame) == 0
    assert "Removed 0 cache entries" in out.stdout
    assert isinstance(result.error_in_exec, errors.ConfigurationError)
    assert "ANTHROPIC_API_KEY" in out.stdout


def test_simulate_off_without_a_key_warns_at_once(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        shell.run_line_magic("agent", "simulate off")
    assert "No API key is set" in out.stdout
    assert "%agent key" in out.stdout and "%env" not in out.stdout
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdefghij")
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate off")
    assert "No API key" not in out.stdout


def test_bench_spends_from_the_session_budget(shell: InteractiveShell) -> None:
    session = shell.magics_manager.registry["AgentMagics"].session
    with capture_output():
        shell.run_line_magic("agent", "simulate on")
        shell.run_line_magic("agent", "budget 0.011")
        shell.run_cell("%%agent python-expert --quiet --max-tokens 800\nSpend part of the budget.")
        spent = session.orchestrator().spent_usd
        # Each call could cost about $0.0096; what is left ($0.011 - spent) covers none.
        refused = shell.run_line_magic(
            "agent", "bench python-expert --n 4 --max-tokens 800 --no-plot -o b"
        )
    assert int(refused.ok.iloc[0]) == 0
    assert "BudgetExceededError: 4" in refused.error_types.iloc[0]
    with capture_output():
        shell.run_line_magic("agent", "budget 1")
        shell.run_line_magic("agent", "bench python-expert --n 3 --no-plot -o b")
    bench_cost = sum(s.cost_usd for s in shell.user_ns["b"].samples)
    assert bench_cost > 0
    assert session.orchestrator().spent_usd == pytest.approx(spent + bench_cost)


def test_show_prints_the_definition_in_a_terminal(shell: InteractiveShell) -> None:
    with capture_output() as out:
        shell.run_line_magic("agent", "show sql-expert")
    assert "### sql-expert" in out.stdout
    assert "Markdown object" not in out.stdout


@pytest.mark.parametrize(("name", "value"), [("MAX_TOKENS", "lots"), ("BUDGET_USD", "ten")])
def test_a_malformed_environment_default_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    from claude_force_magic.notebook.magics import AgentMagics

    monkeypatch.setenv(f"CLAUDE_FORCE_MAGIC_{name}", value)
    magics = AgentMagics(shell=None)
    try:
        with pytest.raises(UsageError, match=f"CLAUDE_FORCE_MAGIC_{name}"):
            getattr(magics, name.lower())
    finally:
        magics.session.close()


def test_a_cut_value_is_announced_in_the_cell(shell: InteractiveShell) -> None:
    shell.user_ns["big"] = "word " * 20_000
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        result = shell.run_cell("%%agent python-expert\nSummarise {big}")
    assert result.error_in_exec is None
    assert "only the first 50,000 were sent" in out.stdout


def test_interrupting_a_line_magic_shows_one_line(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_force_magic.notebook import cells

    def interrupted(magics: object, args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cells, "run_bench_command", interrupted)
    with capture_output() as out:
        result = shell.run_cell("%agent bench python-expert --simulate")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "cancelled" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_a_simulated_cell_is_marked_in_history_and_spends_no_live_money(
    shell: InteractiveShell,
) -> None:
    with capture_output() as out:
        shell.run_cell("%%agent python-expert --simulate --quiet -o r\nExplain slots.")
        history = shell.run_line_magic("agent", "history")
        cost = shell.run_line_magic("agent", "cost")
        shell.run_line_magic("agent", "stats")
    simulated_cost = shell.user_ns["r"].cost_usd
    assert simulated_cost > 0
    assert list(history["mode"]) == ["simulated"]
    assert list(cost["mode"]) == ["simulated"]
    assert cost.cost_usd.iloc[0] == pytest.approx(simulated_cost)
    spend = out.stdout.split("Spend\n", 1)[1].split("\n\n", 1)[0].splitlines()
    live = next(line.split() for line in spend if line.split()[0] == "live")
    simulated = next(line.split() for line in spend if line.split()[0] == "simulated")
    assert live[1] == "0", f"no live call was made: {spend}"  # calls
    assert float(live[4]) == 0.0  # spent_usd
    assert simulated[1] == "1"
    assert "session" not in out.stdout.split("Spend\n", 1)[1], "never a sum across modes"


def test_history_cost_and_stats_keep_live_and_simulated_calls_apart(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_force_magic.simulator import Latency, Simulator

    session = shell.magics_manager.registry["AgentMagics"].session
    with Simulator(latency=Latency.fixed(0.0)) as api:  # stands in for the real API
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdefghij")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        with capture_output():
            shell.run_cell("%%agent python-expert --simulate --quiet -o s\nFirst, pretend.")
            shell.run_cell("%%agent sql-expert --quiet -o l\nThen for real.")
            history = shell.run_line_magic("agent", "history")
            cost = shell.run_line_magic("agent", "cost")
        sim_cost, live_cost = shell.user_ns["s"].cost_usd, shell.user_ns["l"].cost_usd
        assert list(zip(history["mode"], history.agent_name, strict=True)) == [
            ("simulated", "python-expert"),
            ("live", "sql-expert"),
        ]
        by_mode = {m: frame for m, frame in cost.groupby("mode")}
        assert list(by_mode["live"].agent_name) == ["sql-expert"]
        assert by_mode["live"].cost_usd.sum() == pytest.approx(live_cost)
        assert by_mode["simulated"].cost_usd.sum() == pytest.approx(sim_cost)
        assert session.metrics(False).totals()["cost_usd"] == pytest.approx(live_cost)
        with capture_output():
            shell.run_line_magic("config", "AgentMagics.timeout = 31.0")  # rebuilds both
            after = shell.run_line_magic("agent", "history")
        assert list(after["mode"]) == ["simulated", "live"], "kept across a rebuild"


def test_stats_tables_fit_80_columns_without_breaking_words(shell: InteractiveShell) -> None:
    agents = "document-writer-expert qc-automation-expert database-architect"
    with capture_output() as out:
        shell.run_line_magic("agent", "simulate on")
        shell.run_cell(f"%%agent {agents} --quiet\nName three risks of wide tables.")
        shell.run_cell(f"%%agent {agents} --quiet\nName three risks of wide tables.")
        shell.run_line_magic("agent", "stats")
    text = out.stdout
    assert "Latency" in text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    words = text.split()
    for name in agents.split():
        assert words.count(name) >= 2, text  # a miss and a hit row, each name whole
    for column in ("p50", "p99", "integrity_failures", "hit_rate", "saved_usd"):
        assert column in text


def test_several_agents_each_print_as_soon_as_they_finish(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request to reach the simulator stalls; the other agent's answer must be
    printed while the stalled request is still in flight, not after the slowest finished."""
    with capture_output():
        shell.run_line_magic("agent", "simulate on")
    simulator = shell.magics_manager.registry["AgentMagics"].session.simulator()
    simulator.configure(script=["stall"], stall_seconds=1.5)
    in_flight_at_print: list[int] = []
    with capture_output() as out:
        real_write = sys.stdout.write

        def write(text: str) -> int:
            if text.startswith("["):  # an agent's labelled answer
                in_flight_at_print.append(int(simulator.stats["in_flight"]))
            return real_write(text)

        monkeypatch.setattr(sys.stdout, "write", write)
        result = shell.run_cell(
            "%%agent python-expert code-reviewer --no-cache\nReview a terminal-only function."
        )
        monkeypatch.undo()
    assert result.error_in_exec is None
    assert "[python-expert]" in out.stdout and "[code-reviewer]" in out.stdout
    assert in_flight_at_print == [1, 0], in_flight_at_print
