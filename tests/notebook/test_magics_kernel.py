"""``%%agent`` and ``%agent`` in a real ipykernel, against the in-process simulator.

One kernel for the module; tests run in file order and use distinct task texts so that the
cache state of one test never decides another.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kernel_harness import CellRun, Kernel

pytestmark = pytest.mark.kernel

SIM = "get_ipython().magics_manager.registry['AgentMagics'].session.simulator()"


def _sim_stats(kernel: Kernel) -> dict[str, object]:
    run = kernel.ok(f"import json; print(json.dumps({SIM}.stats))")
    return json.loads(run.stdout)


def _last_request_body(kernel: Kernel) -> dict[str, object]:
    run = kernel.ok(f"import json; print(json.dumps({SIM}.requests[-1].body))")
    return json.loads(run.stdout)


def _answers(run: CellRun) -> list[str]:
    """The HTML of this cell's own displays (not the stats dashboard it may also refresh)."""
    ours: set[str] = set()
    texts = []
    for kind, content in ((m["header"]["msg_type"], m["content"]) for m in run.messages):
        if kind not in ("display_data", "update_display_data"):
            continue
        display_id = content.get("transient", {}).get("display_id", "")
        if kind == "display_data":
            ours.add(display_id)
        if display_id in ours and "text/html" in content["data"]:
            texts.append(content["data"]["text/html"])
    return texts


def _assert_short_error(run: CellRun, ename: str, *needles: str) -> str:
    assert run.status == "error", run.reply
    error = run.error
    assert error is not None
    assert error["ename"] == ename
    text = "\n".join(error["traceback"])
    assert "Traceback" not in text
    assert "File " not in text
    assert len(error["traceback"]) <= 3
    for needle in needles:
        assert needle in text, text
    return text


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel: Kernel) -> Kernel:
    start = time.perf_counter()
    kernel.ok("%load_ext claude_force_magic")
    assert time.perf_counter() - start < 5
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    kernel.ok("%agent simulate on")
    return kernel


def test_streaming_output_lands_in_its_cell_and_ends_as_one_display(kernel: Kernel) -> None:
    kernel.ok("%config AgentMagics.simulator_per_token = 0.01")
    run = kernel.ok("%%agent python-expert\nExplain list comprehensions with one example.")
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0")
    kinds = [m["header"]["msg_type"] for m in run.messages]
    first = run.of_type("display_data")[0]
    assert "waiting for the first tokens" in first["data"]["text/plain"]
    streamed = kinds.count("display_data") + kinds.count("update_display_data")
    assert streamed >= 4, "the answer must arrive in several pieces while streaming"
    # consolidated: the cell's outputs are cleared and the answer shown once, with its footer
    assert "clear_output" in kinds
    after = kinds[len(kinds) - kinds[::-1].index("clear_output") :]
    assert after.count("display_data") == 1 and "update_display_data" not in after
    final = run.of_type("display_data")[-1]["data"]
    assert "text/markdown" not in final, "raw HTML in Markdown would run"
    assert "<h2>" in final["text/html"]
    assert "python-expert · claude-sonnet-5-5" in final["text/html"]
    assert "cache miss (stored)" in final["text/html"]
    assert "simulated" in final["text/plain"]


def test_second_identical_cell_is_a_cache_hit_and_costs_nothing(kernel: Kernel) -> None:
    cell = "%%agent python-expert -o {var}\nWhat is a generator? One paragraph."
    before = _sim_stats(kernel)["requests"]
    kernel.ok(cell.format(var="first"))
    run = kernel.ok(cell.format(var="second"))
    assert _sim_stats(kernel)["requests"] == before + 1
    footer = run.texts("text/html")[-1]
    assert "$0 · cache hit (saved $" in footer
    check = kernel.ok(
        "assert second.cached and second.cost_usd == 0.0, second\n"
        "assert second.metadata['saved_usd'] == first.cost_usd > 0\n"
        "assert second.output == first.output"
    )
    assert check.status == "ok"


def test_no_cache_neither_reads_nor_writes(kernel: Kernel) -> None:
    cell = "%%agent python-expert --no-cache -o r\nName three sorting algorithms."
    before = _sim_stats(kernel)["requests"]
    kernel.ok(cell)
    run = kernel.ok(cell)
    assert "cache off" in run.texts("text/html")[-1]
    assert _sim_stats(kernel)["requests"] == before + 2
    kernel.ok("assert not r.cached")
    kernel.ok("%%agent python-expert -o r\nName three sorting algorithms.")
    kernel.ok("assert not r.cached, 'nothing was stored by --no-cache'")


def test_refresh_skips_the_read_and_stores_the_new_answer(kernel: Kernel) -> None:
    base = "Define idempotence in one sentence."
    kernel.ok(f"%%agent python-expert\n{base}")
    kernel.ok(f"%%agent python-expert --refresh -o r\n{base}")
    kernel.ok("assert not r.cached")
    kernel.ok(f"%%agent python-expert -o r\n{base}")
    kernel.ok("assert r.cached")


def test_model_max_tokens_timeout_and_ttl_reach_the_request(kernel: Kernel) -> None:
    run = kernel.ok(
        "%%agent python-expert --model claude-haiku-5-5 --max-tokens 64 --timeout 20 --ttl 1 -o r\n"
        "Summarise PEP 8 briefly."
    )
    body = _last_request_body(kernel)
    assert body["model"] == "claude-haiku-5-5"
    assert body["max_tokens"] == 64
    assert "claude-haiku-5-5" in run.texts("text/html")[-1]
    kernel.ok("assert r.metadata['model'] == 'claude-haiku-5-5'")


def test_format_text_shows_plain_text_only(kernel: Kernel) -> None:
    run = kernel.ok("%%agent python-expert --format text\nWhat is PEP 20?")
    data = [c["data"] for c in run.of_type("display_data", "update_display_data")]
    assert data
    assert all("text/markdown" not in d and "text/html" not in d for d in data)
    assert "python-expert · " in data[-1]["text/plain"]


def test_format_json_shows_the_result_as_json(kernel: Kernel) -> None:
    run = kernel.ok("%%agent python-expert --format json\nWhat is PEP 257?")
    payload = run.of_type("display_data")[-1]["data"]["application/json"]
    assert payload["agent_name"] == "python-expert"
    assert payload["success"] is True
    assert "input_tokens" in payload["metadata"]


def test_format_code_puts_the_first_code_block_in_a_new_cell(kernel: Kernel) -> None:
    run = kernel.ok("%%agent python-expert --format code\nWrite a function that adds numbers.")
    payloads = run.reply.get("payload", [])
    inputs = [p for p in payloads if p.get("source") == "set_next_input"]
    assert len(inputs) == 1
    assert inputs[0]["replace"] is False
    assert "def " in inputs[0]["text"]
    assert "```" not in inputs[0]["text"]


def test_no_stream_shows_the_answer_once_complete(kernel: Kernel) -> None:
    run = kernel.ok("%%agent python-expert --no-stream\nExplain duck typing briefly.")
    assert len(run.of_type("display_data")) == 1  # the placeholder, replaced by the answer
    assert len(run.of_type("update_display_data")) == 1
    assert "cache miss (stored)" in run.texts("text/html")[-1]


def test_quiet_shows_nothing_and_output_keeps_the_result(kernel: Kernel) -> None:
    run = kernel.ok("%%agent python-expert --quiet -o quiet_result\nExplain closures briefly.")
    assert run.of_type("display_data", "update_display_data", "execute_result") == []
    kernel.ok("assert quiet_result.success and quiet_result.output")


def test_several_agents_run_concurrently_each_in_its_own_labelled_output(kernel: Kernel) -> None:
    kernel.ok("%config AgentMagics.simulator_latency = 0.5")
    kernel.ok(f"{SIM}.reset()")
    run = kernel.ok(
        "%%agent python-expert code-reviewer security-specialist -o trio\nCheck: eval(input())"
        "\n--trust-free text"
    )
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    # Concurrency observed at the server, not by a wall-clock bound that a loaded machine breaks.
    stats = _sim_stats(kernel)
    assert stats["requests"] == 3
    assert stats["max_in_flight"] == 3, f"the three calls were not in flight together: {stats}"
    displays = run.of_type("display_data")
    assert len(displays) == 3
    ids = {d["transient"]["display_id"] for d in displays}
    assert len(ids) == 3
    finals: dict[str, str] = {}
    for update in run.of_type("update_display_data"):
        if "text/html" in update["data"]:  # live previews are plain text
            finals[update["transient"]["display_id"]] = update["data"]["text/html"]
    labels = sorted(text.split("<strong>")[1].split("</strong>")[0] for text in finals.values())
    assert labels == ["code-reviewer", "python-expert", "security-specialist"]
    kernel.ok(
        "assert [r.agent_name for r in trio] == "
        "['python-expert', 'code-reviewer', 'security-specialist']"
    )


def test_interpolated_values_are_sent_as_untrusted_data(kernel: Kernel) -> None:
    kernel.ok("snippet = 'def add(a, b):\\n    return a - b'")
    kernel.ok("%%agent bug-investigator\nWhat is wrong with {snippet}? Keep {{braces}} literal.")
    body = _last_request_body(kernel)
    text = json.dumps(body)
    assert "return a - b" in text
    assert "untrusted-data" in text
    assert "{braces}" in text
    assert "{snippet}" not in text


def test_no_interpolate_sends_braces_literally(kernel: Kernel) -> None:
    kernel.ok("%%agent python-expert --no-interpolate\nExplain the f-string f'{value}'.")
    text = json.dumps(_last_request_body(kernel))
    assert "{value}" in text
    assert "untrusted-data name" not in text


def test_undefined_variable_is_a_usage_error(kernel: Kernel) -> None:
    run = kernel.run("%%agent python-expert\nExplain {not_defined_anywhere}")
    assert run.status == "error"
    assert run.ename == "UsageError"
    assert "not_defined_anywhere" in run.stderr


def test_bad_usage_is_a_usage_error_without_traceback(kernel: Kernel) -> None:
    for cell in (
        "%%agent\nno agent named",
        "%%agent python-expert --max-tokens -5\nx",
        "%%agent python-expert\n   ",
        "%%agent python-expert --format yaml\nx",
    ):
        run = kernel.run(cell)
        assert run.status == "error", cell
        assert run.ename == "UsageError", cell
        assert "UsageError" in run.stderr
        assert "Traceback" not in run.stderr


def test_unknown_agent_names_close_matches(kernel: Kernel) -> None:
    run = kernel.run("%%agent pyhton-expert\nHello")
    _assert_short_error(run, "UnknownAgentError", "python-expert", "%agent list")


def test_budget_stop_fails_the_cell_before_sending(kernel: Kernel) -> None:
    kernel.ok("%agent budget 0.000001")
    before = _sim_stats(kernel)["requests"]
    run = kernel.run("%%agent python-expert\nA budget-stopped question about sets.")
    _assert_short_error(run, "BudgetExceededError", "%agent budget")
    assert _sim_stats(kernel)["requests"] == before
    kernel.ok("%agent budget off")
    kernel.ok("%%agent python-expert\nA budget-stopped question about sets.")


def test_api_failure_is_a_short_red_error_and_fails_the_cell(kernel: Kernel) -> None:
    kernel.ok(f"{SIM}.set_script(['refusal'])")
    run = kernel.run("%%agent python-expert\nA question the simulator refuses.")
    text = _assert_short_error(run, "ResponseError", "Rephrase")
    assert "\x1b[31m" in text


def test_several_agents_one_failure_fails_the_cell_but_shows_all(kernel: Kernel) -> None:
    kernel.ok(f"{SIM}.set_script(['ok', 'refusal'])")
    run = kernel.run("%%agent python-expert code-reviewer --no-cache -o pair\nTwo views on tuples.")
    assert run.status == "error"
    assert len(run.of_type("display_data")) == 2
    kernel.ok("assert sorted(r.success for r in pair) == [False, True]")


def test_no_key_without_simulate_explains_both_ways_out(kernel: Kernel) -> None:
    kernel.ok("%agent simulate off")
    run = kernel.run("%%agent python-expert\nAnything")
    _assert_short_error(run, "ConfigurationError", "ANTHROPIC_API_KEY", "simulate on")
    kernel.ok("%%agent python-expert --simulate -o r\nAnything at all")
    kernel.ok("assert r.success")
    kernel.ok("%agent simulate on")


def test_list_show_history_cost_config_return_dataframes(kernel: Kernel) -> None:
    kernel.ok(
        "agents = %agent list\nassert {'name', 'description', 'domains', 'priority', "
        "'source'} <= set(agents.columns)\nassert 'python-expert' in set(agents.name)"
    )
    show = kernel.ok("%agent show python-expert")
    assert "python-expert" in show.texts("text/html")[0]  # safe HTML, never text/markdown
    assert not show.texts("text/markdown")
    kernel.ok("h = %agent history\nassert len(h) >= 5 and h.cached.any() and (~h.cached).any()")
    kernel.ok("c = %agent cost\nassert 'python-expert' in set(c.agent_name)")
    kernel.ok("%env ANTHROPIC_API_KEY=sk-ant-test-0123456789abcdefghij")
    run = kernel.ok("cfg = %agent config\ncfg")
    kernel.ok("%env ANTHROPIC_API_KEY=")
    text = run.result_text + json.dumps(run.of_type("execute_result"))
    assert "0123456789abcdefghij" not in text
    assert "(set)" in text
    kernel.ok("assert cfg.loc['model', 'value'] == 'claude-sonnet-5-5'")


def test_config_changes_apply_to_the_next_call(kernel: Kernel) -> None:
    kernel.ok("%config AgentMagics.model = 'claude-opus-5'")
    kernel.ok("%%agent python-expert -o r\nA question for another default model.")
    kernel.ok("assert r.metadata['model'] == 'claude-opus-5'")
    kernel.ok("%config AgentMagics.model = 'claude-sonnet-5-5'")


def test_cache_subcommands(kernel: Kernel) -> None:
    kernel.ok(
        "e = %agent cache --frame\nassert len(e) >= 3\nassert 'response' not in e.columns\n"
        "cols = {'agent_name', 'model', 'created', 'expires', 'size_bytes', 'hits'}\n"
        "assert cols <= set(e.columns), e.columns"
    )
    verify = kernel.ok("report = %agent cache verify\nassert not report.invalid\nreport")
    assert "VerifyReport(checked=" in verify.result_text
    kernel.ok("%agent cache clear bug-investigator")
    kernel.ok(
        "e2 = %agent cache --frame\nassert 'bug-investigator' not in set(e2.agent_name)\n"
        "assert 'python-expert' in set(e2.agent_name)"
    )


def test_stats_dashboard_has_widgets_and_an_html_fallback_and_updates(kernel: Kernel) -> None:
    run = kernel.ok("%agent stats")
    bundle = run.of_type("display_data")[-1]
    data = bundle["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<table" in data["text/html"]
    assert "hit_rate" in data["text/html"]
    display_id = bundle["transient"]["display_id"]
    after = kernel.ok("%%agent python-expert\nOne more question to refresh the dashboard.")
    updates = [
        u
        for u in after.of_type("update_display_data")
        if u["transient"]["display_id"] == display_id
    ]
    assert updates, "the dashboard must refresh after a call"


def test_bench_shows_progress_then_percentiles_and_a_plot(kernel: Kernel) -> None:
    kernel.ok("before_bench = %agent history")
    run = kernel.ok("b = %agent bench python-expert --n 12 --concurrency 4 --simulate -o br\nb")
    frame = run.result_text
    for column in ("p50", "p95", "p99", "throughput_per_s"):
        assert column in frame
    datas = [c["data"] for c in run.of_type("display_data")]
    assert any("application/vnd.jupyter.widget-view+json" in d for d in datas), "progress bar"
    assert any("image/png" in d for d in datas), "latency histogram"
    kernel.ok("assert br.n == 12 and br.succeeded == 12 and len(br.latencies) == 12")
    kernel.ok("after_bench = %agent history\nassert len(after_bench) == len(before_bench)")


def test_bench_task_options(kernel: Kernel) -> None:
    kernel.ok("tasks = ['a small task about loops', 'another about dicts']")
    kernel.ok("%agent bench python-expert --n 4 --concurrency 2 --tasks tasks --no-plot")
    kernel.ok("%agent bench python-expert --n 2 --concurrency 2 --task 'fixed text' --no-plot")
    bad = kernel.run("%agent bench python-expert --tasks not_a_var")
    assert bad.status == "error"
    assert bad.ename == "UsageError"


def test_interrupt_cancels_the_request_and_the_next_cell_works(
    kernel: Kernel, tmp_path: Path
) -> None:
    kernel.ok("%config AgentMagics.simulator_latency = 5.0")
    before = _sim_stats(kernel)
    # Interrupt once the request is at the simulator, not after a sleep: when this test ran
    # first, building the client took longer than the 0.8 s sleep and nothing was cancelled.
    marker = tmp_path / "in-flight"
    kernel.ok(
        "import threading, time\n"
        f"def _watch(sim={SIM}, deadline=time.monotonic() + 30):\n"
        "    while sim.stats['in_flight'] < 1 and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    if sim.stats['in_flight']:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "threading.Thread(target=_watch, name='test-in-flight-watch', daemon=True).start()"
    )
    msg_id = kernel.send("%%agent python-expert --no-cache\nA slow question to interrupt.")
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the request never reached the simulator"
    start = time.perf_counter()
    kernel.manager.interrupt_kernel()
    run = kernel.collect(msg_id, timeout=10)
    elapsed = time.perf_counter() - start
    assert run.status == "error"
    assert run.error is not None and run.error["ename"] == "KeyboardInterrupt"
    # Measured at about 0.4 s; the bound only has to tell a cancel from the 4.2 s the
    # uncancelled request still had to run, so a loaded machine does not fail it.
    assert elapsed < 3.0, f"interrupt took {elapsed:.2f} s"
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    after = _sim_stats(kernel)
    assert after["disconnects"] > before["disconnects"], "the simulator must see the cancel"
    assert after["in_flight"] == 0
    kernel.ok("%%agent python-expert -o r\nThe question after an interrupt.")
    kernel.ok("assert r.success")


def test_interrupting_a_streaming_answer_marks_it_cut_and_shows_no_traceback(
    kernel: Kernel,
) -> None:
    kernel.ok("%config AgentMagics.simulator_per_token = 0.05")
    msg_id = kernel.send("%%agent python-expert --no-cache\nA long answer to stop midway.")
    # interrupt once two updates have arrived, not after a sleep a loaded machine can outrun
    kernel.wait_for(msg_id, lambda run: len(_answers(run)) >= 2)
    kernel.manager.interrupt_kernel()
    run = kernel.collect(msg_id, timeout=10)
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0")
    _assert_short_error(run, "KeyboardInterrupt", "cancelled")
    partial = _answers(run)
    assert len(partial) >= 2, "chunks were streamed before the interrupt"
    # one message: the red line says "cancelled"; the answer keeps its text, marked as cut
    assert "interrupted, answer cut off" in partial[-1], partial[-1]
    assert "cancelled" not in partial[-1], partial[-1]


def test_cells_sent_at_once_all_complete(kernel: Kernel) -> None:
    ids = [
        kernel.send(f"%%agent python-expert --quiet -o run_all_{i}\nRun-all question {i}.")
        for i in range(5)
    ]
    runs = [kernel.collect(i, timeout=30) for i in ids]
    assert [r.status for r in runs] == ["ok"] * 5
    kernel.ok("assert all(globals()[f'run_all_{i}'].success for i in range(5))")


def test_unload_leaves_no_thread_or_task_running(kernel: Kernel) -> None:
    run = kernel.ok(
        "import threading, asyncio\n"
        "%unload_ext claude_force_magic\n"
        "names = sorted(t.name for t in threading.enumerate())\n"
        "print(names)\n"
        "assert not [n for n in names if 'claude' in n or n.startswith('asyncio')], names\n"
        "ours = [t for t in asyncio.all_tasks() if 'claude_force_magic' in repr(t)]\n"
        "assert not ours, ours"
    )
    assert "claude-force-magic-loop" not in run.stdout
    assert "claude-sim" not in run.stdout
    gone = kernel.run("%%agent python-expert\nx")
    assert gone.status == "error"
    kernel.ok("%load_ext claude_force_magic")
    kernel.ok("%agent simulate on")
    kernel.ok("%%agent python-expert -o r\nWorks again after reloading.")
