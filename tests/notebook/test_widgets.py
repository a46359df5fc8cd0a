"""The stats dashboard (widgets with an HTML fallback, text in a terminal) and the progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic.metrics import CallRecord
from claude_force_magic.notebook.session import AgentSession, SessionConfig
from claude_force_magic.notebook.widgets import Progress, StatsDashboard, html_table, stats_sections


@pytest.fixture
def session() -> Iterator[AgentSession]:
    s = AgentSession(lambda: SessionConfig(simulator_latency=0.0))
    s.simulate = True
    yield s
    s.close()


def _one_call(session: AgentSession, task: str) -> None:
    orch = session.orchestrator()
    session.run(orch.execute_agent("python-expert", task))


def test_html_table_escapes_and_says_when_empty() -> None:
    html = html_table([{"agent": "<script>", "n": 1234, "rate": 0.5}], ["agent", "n", "rate"])
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "1,234" in html and "0.5000" in html
    assert "no calls yet" in html_table([], ["a"])


def test_dashboard_reports_cache_latency_and_spend(session: AgentSession) -> None:
    _one_call(session, "First question for the dashboard.")
    _one_call(session, "First question for the dashboard.")
    board = StatsDashboard(session, notebook=False)
    text = board.text()
    assert "simulated" in text
    html = board.html()
    for needle in ("hit_rate", "integrity_failures", "evictions", "p50", "p99", "saved_usd"):
        assert needle in html
    with capture_output() as out:
        board.show()
    assert "Latency" in out.stdout


def test_dashboard_in_a_notebook_is_a_widget_with_an_html_fallback(session: AgentSession) -> None:
    InteractiveShell.instance()  # display() publishes through the shell
    board = StatsDashboard(session, notebook=True)
    with capture_output() as out:
        board.show()
        _one_call(session, "A question after the dashboard was shown.")
        board.refresh()
    bundles = [o.data for o in out.outputs]
    assert len(bundles) >= 2, "the dashboard is displayed, then updated in place"
    first, last = bundles[0], bundles[-1]
    assert "application/vnd.jupyter.widget-view+json" in first
    assert "no calls yet" in first["text/html"]
    assert "python-expert" in last["text/html"]
    assert "python-expert" in board._panes[1].value


def test_progress_text_fallback(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(4, notebook=False, label="bench")
    bar.show()
    bar.update(2)
    bar.update(2)  # unchanged: nothing printed
    bar.update(4)
    bar.close()
    out = capsys.readouterr().out
    assert out.count("\r") == 3
    assert "4/4" in out and out.endswith("\n")


def test_progress_widget_leaves_a_final_text_where_widgets_do_not_render() -> None:
    InteractiveShell.instance()
    bar = Progress(40, notebook=True, label="python-expert")
    with capture_output() as out:
        bar.show()
        bar.update(17)
        bar.update(40)
        bar.close()
    bundles = [o.data for o in out.outputs]
    assert "application/vnd.jupyter.widget-view+json" in bundles[0]
    assert "HBox(" not in bundles[0]["text/plain"]  # nbconvert/GitHub show this text
    assert bundles[-1]["text/plain"] == "python-expert: 40/40 done"


def _record(agent: str, cost: float, *, cached: bool = False) -> CallRecord:
    return CallRecord(
        timestamp=time.time(),
        agent_name=agent,
        model="claude-sonnet-5-5",
        latency_s=0.5,
        input_tokens=100,
        output_tokens=50,
        cost_usd=0.0 if cached else cost,
        saved_usd=cost if cached else 0.0,
        cached=cached,
    )


def test_stats_show_spend_and_latency_per_mode_never_summed(session: AgentSession) -> None:
    session.metrics(False).record(_record("sql-expert", 0.25))
    session.metrics(False).record(_record("sql-expert", 0.25, cached=True))
    session.metrics(True).record(_record("python-expert", 4.0))
    sections = {title.split(" ")[0]: (rows, cols) for title, rows, cols in stats_sections(session)}
    spend, spend_cols = sections["Spend"]
    assert "mode" in spend_cols and "saved_usd" in spend_cols
    by_mode = {row["mode"]: row for row in spend}
    assert set(by_mode) == {"live", "simulated"}, "one row per mode, no session-wide sum"
    assert by_mode["live"]["spent_usd"] == pytest.approx(0.25)
    assert by_mode["live"]["saved_usd"] == pytest.approx(0.25)
    assert by_mode["live"]["calls"] == 2 and by_mode["live"]["cached_calls"] == 1
    assert by_mode["simulated"]["spent_usd"] == pytest.approx(4.0)
    assert by_mode["simulated"]["calls"] == 1
    latency, latency_cols = sections["Latency"]
    assert latency_cols[0] == "mode"
    assert sorted((r["mode"], r["agent_name"], r["cached"]) for r in latency) == [
        ("live", "sql-expert", False),
        ("live", "sql-expert", True),
        ("simulated", "python-expert", False),
    ]


def test_each_mode_has_its_own_metrics_closed_with_the_session() -> None:
    s = AgentSession(lambda: SessionConfig(simulator_latency=0.0))
    live, simulated = s.metrics(False), s.metrics(True)
    assert live is not simulated
    assert s.metrics(False) is live
    s.invalidate()
    assert s.metrics(False) is live and s.metrics(True) is simulated
    s.close()
    assert live.closed and simulated.closed


def test_dashboard_before_any_call_shows_the_cache_on_disk(tmp_path: Path) -> None:
    """The cache's own statistics, not "no calls yet", while the disk holds entries."""
    config = SessionConfig(simulator_latency=0.0, cache_dir=str(tmp_path / "cache"))
    first = AgentSession(lambda: config)
    first.simulate = True
    try:
        _one_call(first, "A question cached by an earlier session.")
        _one_call(first, "A question cached by an earlier session.")
    finally:
        first.close()
    second = AgentSession(lambda: config)
    try:
        board = StatsDashboard(second, notebook=False)
        (cache,) = [rows for title, rows, _ in stats_sections(second) if title == "Cache"]
        assert [row["mode"] for row in cache] == ["simulated"]
        assert cache[0]["entries"] == 1
        assert cache[0]["hit_rate"] == pytest.approx(0.5)
        assert "no cache entries yet" not in board.text()
        assert not second.live_orchestrators()  # shown without building an orchestrator
    finally:
        second.close()
    empty = AgentSession(lambda: SessionConfig(cache_dir=str(tmp_path / "none")))
    try:
        assert "no cache entries yet" in StatsDashboard(empty, notebook=False).text()
        assert not (tmp_path / "none").exists()  # looking creates nothing
    finally:
        empty.close()


def test_stats_show_ttft_and_tpot_beside_latency_within_80_columns(session: AgentSession) -> None:
    long_agent = "document-writer-expert-with-a-long-name"
    for i, ttft in enumerate((0.3, 0.32, 0.5)):
        base = _record(long_agent, 0.001)
        session.metrics(False).record(
            CallRecord(
                **{
                    **base.to_dict(),
                    "latency_s": 2.0 + i,
                    "ttft_s": ttft,
                    "tpot_s": 0.01,
                    "output_tokens_per_s": 90.0,
                }
            )
        )
    session.metrics(True).record(_record("python-expert", 0.001))  # not streamed
    titles = [title for title, _, _ in stats_sections(session)]
    latency_at = next(i for i, t in enumerate(titles) if t.startswith("Latency"))
    assert titles[latency_at + 1].startswith("Streaming"), "right beside end-to-end latency"
    rows, cols = next((r, c) for t, r, c in stats_sections(session) if t.startswith("Streaming"))
    (row,) = rows
    assert row["mode"] == "live" and row["streamed"] == 3
    assert row["ttft_p50"] == pytest.approx(0.32)
    assert {"ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "tokens_per_s"} <= set(cols)
    text = StatsDashboard(session, notebook=False).text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "ttft_p50" in text and "0.3200" in text and long_agent in text
    assert "ttft_p99" in StatsDashboard(session, notebook=False).html()
