"""Streaming metrics in a real kernel: ``%agent history`` has TTFT/TPOT/ITL/tokens-per-second
columns and ``%agent stats`` shows TTFT and TPOT percentiles beside end-to-end latency."""

from __future__ import annotations

import pytest
from kernel_harness import Kernel

pytestmark = pytest.mark.kernel

COLUMNS = ["ttft_s", "tpot_s", "itl_p50_s", "output_tokens_per_s"]


def test_history_and_stats_show_the_streaming_metrics(simulated_kernel: Kernel) -> None:
    kernel = simulated_kernel
    # The simulator waits simulator_latency before the first delta, then per_token a token.
    kernel.ok("%config AgentMagics.simulator_latency = 0.2")
    kernel.ok("%config AgentMagics.simulator_per_token = 0.005")
    kernel.ok("%%agent python-expert --quiet\nExplain generators with one example.")
    kernel.ok("%%agent python-expert --quiet --no-stream\nExplain decorators in one line.")
    kernel.ok("%%agent python-expert --quiet\nExplain generators with one example.")  # a hit
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0")
    kernel.ok(
        "h = %agent history\n"
        f"cols = {COLUMNS!r}\n"
        "assert set(cols) <= set(h.columns), h.columns\n"
        "streamed, plain, hit = h.iloc[-3], h.iloc[-2], h.iloc[-1]\n"
        "assert 0.19 <= streamed.ttft_s < streamed.latency_s, streamed\n"
        "assert 0.004 <= streamed.tpot_s < 0.02, streamed\n"
        "assert streamed.itl_p50_s > 0 and streamed.output_tokens_per_s > 0, streamed\n"
        "assert plain[cols].isna().all(), plain\n"
        "assert hit.cached and hit[cols].isna().all(), hit"
    )
    run = kernel.ok("%agent stats")
    html = run.of_type("display_data")[-1]["data"]["text/html"]
    assert "Streaming" in html and "ttft_p50" in html and "tpot_p99" in html
    assert html.index("Latency") < html.index("Streaming") < html.index("Spend")
