"""``%agent bench`` grids, open loops, task sets, usage errors and interrupts in a real kernel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kernel_harness import Kernel

SIM = "get_ipython().magics_manager.registry['AgentMagics'].session.simulator()"


@pytest.fixture(scope="module")
def bench_kernel(simulated_kernel: Kernel) -> Kernel:
    simulated_kernel.ok("%config AgentMagics.simulator_latency = 0.01")
    return simulated_kernel


def test_a_grid_returns_a_tidy_frame_plots_and_stays_out_of_history(bench_kernel: Kernel) -> None:
    kernel = bench_kernel
    kernel.ok("before = %agent history")
    run = kernel.ok(
        "%agent bench python-expert code-reviewer --models claude-haiku-4-5,claude-sonnet-5 "
        "--concurrency 1,2 --n 3 --slo ttft=5,e2e=30 --max-tokens 64 -o sw",
        timeout=120,
    )
    for column in ("ttft_p50", "tpot_p50", "p99", "goodput_per_s", "ttft_bias_p50"):
        assert column in run.result_text, column
    datas = [c["data"] for c in run.of_type("display_data")]
    assert any("image/png" in d for d in datas), "the sweep's plots"
    notes = str(run.of_type("comm_msg"))
    assert "p50 TTFT" in notes and "0 errors" in notes, "live p50 TTFT and errors in the bar"
    kernel.ok(
        "from claude_force_magic.bench import SweepResult\n"
        "assert isinstance(sw, SweepResult)\n"
        "f = sw.frame()\n"
        "assert len(f) == 8 and set(f['load']) == {'concurrency=1', 'concurrency=2'}\n"
        "assert set(f['model']) == {'claude-haiku-4-5', 'claude-sonnet-5'}\n"
        "assert (f['ok'] == 3).all() and (f['ttft_bias_p50'] >= -0.002).all()\n"
        "after = %agent history\n"
        "assert len(after) == len(before)"
    )


def test_open_loop_with_task_sets_from_a_dataframe(bench_kernel: Kernel) -> None:
    kernel = bench_kernel
    kernel.ok(
        "import pandas as pd\n"
        "prompts = pd.DataFrame({'terse': ['Say hi.', 'Say bye.'], 'wordy': ['Explain ' + "
        "'slowly ' * 30, 'Describe ' + 'gently ' * 30]})"
    )
    kernel.ok(
        "%agent bench python-expert --rate 40,inf --n 4 --max-concurrency 2 --warmup 1 "
        "--burstiness 0.5 --tasks prompts --no-plot -o ol",
        timeout=120,
    )
    kernel.ok(
        "f = ol.frame()\n"
        "assert list(f['tasks']) == ['terse', 'terse', 'wordy', 'wordy'], f['tasks']\n"
        "assert list(f['load']) == ['rate=40/s', 'rate=inf/s'] * 2\n"
        "assert (f['concurrency'] == 2).all() and (f['burstiness'] == 0.5).all()"
    )
    kernel.ok(
        "%agent bench python-expert --n 2 --tasks prompts[terse] --no-plot -o one\n"
        "from claude_force_magic.bench import BenchResult\n"
        "assert isinstance(one, BenchResult) and one.succeeded == 2"
    )


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--concurrency 1,x", "--concurrency '1,x': 'x' is not valid"),
        ("--concurrency 0", "positive whole numbers"),
        ("--rate 1,2 --concurrency 4", "not both"),
        ("--rate fast", "e.g. --rate 0.5,1,2"),
        ("--burstiness 2", "use it with --rate"),
        ("--max-concurrency 2", "use it with --rate"),
        ("--n 3 --duration 1", "not both"),
        ("--rate inf --duration 1", "give --n"),
        ("--slo ttft", "NAME=SECONDS"),
        ("--slo e2e=-1", "positive"),
        ("--models a,,b", "an item is empty"),
        ("--warmup -1", "--warmup"),
        ("--tasks prompts[nope]", "no column 'nope'"),
        ("--tasks 42", "expected a notebook variable"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_fix(
    bench_kernel: Kernel, line: str, words: str
) -> None:
    bench_kernel.ok("import pandas as pd\nprompts = pd.DataFrame({'terse': ['Say hi.']})")
    before = bench_kernel.ok(f"{SIM}.stats['requests']").result_text
    run = bench_kernel.run(f"%agent bench python-expert {line}")
    assert run.ename == "UsageError"
    assert words in str(run.reply.get("evalue")), run.reply.get("evalue")
    assert bench_kernel.ok(f"{SIM}.stats['requests']").result_text == before


def test_interrupt_cancels_a_sweep_cleanly(bench_kernel: Kernel, tmp_path: Path) -> None:
    kernel = bench_kernel
    kernel.ok("%config AgentMagics.simulator_latency = 5.0")
    marker = tmp_path / "in-flight"
    kernel.ok(
        "import threading, time\n"
        f"def _watch(sim={SIM}, deadline=time.monotonic() + 30):\n"
        "    while sim.stats['in_flight'] < 2 and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    if sim.stats['in_flight']:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "threading.Thread(target=_watch, name='test-bench-watch', daemon=True).start()"
    )
    msg_id = kernel.send("%agent bench python-expert --concurrency 2,4 --n 8 --no-plot")
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the bench never reached the simulator"
    kernel.manager.interrupt_kernel()
    run = kernel.collect(msg_id, timeout=20)
    assert run.status == "error"
    assert run.error is not None and run.error["ename"] == "KeyboardInterrupt"
    kernel.ok("%config AgentMagics.simulator_latency = 0.01")
    kernel.ok(
        "for _ in range(200):\n"
        f"    if {SIM}.stats['in_flight'] == 0: break\n"
        "    time.sleep(0.01)\n"
        f"assert {SIM}.stats['in_flight'] == 0"
    )
    kernel.ok("%agent bench python-expert --n 2 --no-plot -o after\nassert after.succeeded == 2")
