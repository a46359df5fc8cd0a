"""Streaming a long answer into a real kernel costs O(answer) display traffic (issue 8).

The simulator runs in the kernel's process; its text generator is swapped for one long
Markdown answer for tasks that ask for it, so the real SDK streams it over real HTTP.
"""

from __future__ import annotations

import json

import pytest
from kernel_harness import CellRun, Kernel

pytestmark = pytest.mark.kernel

LONG_ANSWER = r"""
import claude_force_magic.simulator.server as _server

_compose = _server.compose_answer
_para = ("Cache keys hold the model, the system prompt and the task, so a hit is exact; "
         "a price such as $5 or `<b>` stays text. ") * 4
_code = "\n".join(f"    total += price_{i} * count  # step {i}" for i in range(60))
_LONG = "\n\n".join(
    f"## Part {n}\n\n{_para}\n\n```python\ndef part_{n}(count):\n    total = 0\n{_code}\n"
    "    return total\n```" for n in range(5)
)

def _long(digest, task):
    return _LONG if "long streamed answer" in task else _compose(digest, task)

_server.compose_answer = _long
print(len(_LONG))
"""


def _display_bytes(run: CellRun) -> int:
    """Bytes of every display's data (all MIME types) the cell sent, updates included."""
    return sum(
        len(value.encode() if isinstance(value, str) else json.dumps(value).encode())
        for content in run.of_type("display_data", "update_display_data")
        for value in content["data"].values()
    )


pytestmark = pytest.mark.usefixtures("simulated_kernel")


def test_a_long_streamed_answer_costs_a_few_times_its_size(kernel: Kernel) -> None:
    size = int(kernel.ok(LONG_ANSWER).stdout)
    # 16 characters a chunk every 10 ms (about 1,600 characters a second), for ~10 s
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0025")
    run = kernel.ok("%%agent python-expert --max-tokens 8000 -o long\nA long streamed answer.")
    kernel.ok("%config AgentMagics.simulator_per_token = 0.0")
    kernel.ok(f"assert len(long.output) == {size}, len(long.output)")
    sent = _display_bytes(run)
    messages = len(run.of_type("display_data", "update_display_data"))
    assert messages >= 20, f"only {messages} display messages: it did not stream"
    # Re-sending the whole answer on every update sent 207x this answer (measured once);
    # pieces send about 3.4x, most of it the final output's HTML and plain text.
    assert sent <= 4 * size, f"{sent:,} bytes of display data for a {size:,}-byte answer"
    final = run.of_type("display_data")[-1]["data"]
    assert "text/markdown" not in final
    assert final["text/html"].count("<h2>") == 5
    assert "&lt;b&gt;" in final["text/html"] and "<b>" not in final["text/html"]
    assert (
        "$5" in final["text/html"]
        and 'class="cfm-body tex2jax_ignore mathjax_ignore"' in (final["text/html"])
    )


def test_the_placeholder_shows_at_once_and_never_stays_above_an_error(kernel: Kernel) -> None:
    kernel.ok("%config AgentMagics.simulator_latency = 5.0")
    msg_id = kernel.send("%%agent python-expert --no-cache\nA question stopped while waiting.")
    kernel.wait_for(msg_id, lambda run: bool(run.of_type("display_data")))
    kernel.manager.interrupt_kernel()
    run = kernel.collect(msg_id, timeout=20)
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    placeholder = run.of_type("display_data")[0]["data"]
    assert "waiting for the first tokens" in placeholder["text/plain"]
    assert "mathjax_ignore" in placeholder["text/html"]
    assert run.status == "error" and run.ename == "KeyboardInterrupt"
    kinds = [m["header"]["msg_type"] for m in run.messages]
    assert "clear_output" in kinds, "the placeholder must be removed"
    assert kinds.index("clear_output") < kinds.index("error")
    assert "display_data" not in kinds[kinds.index("clear_output") :]


def test_math_is_off_by_default_and_on_per_cell_or_by_config(kernel: Kernel) -> None:
    def body_classes(run: CellRun) -> str:
        html = run.of_type("display_data", "update_display_data")[-1]["data"]["text/html"]
        assert 'class="cfm-footer tex2jax_ignore mathjax_ignore"' in html  # never math
        return html.split('<div class="cfm-body')[1].split('"')[0]

    task = "\nExplain sums of prices."
    assert "mathjax_ignore" in body_classes(kernel.ok("%%agent python-expert" + task))
    assert body_classes(kernel.ok("%%agent python-expert --math" + task)) == ""
    kernel.ok("%config AgentMagics.math = True")
    assert body_classes(kernel.ok("%%agent python-expert" + task)) == ""
    kernel.ok("%config AgentMagics.math = False")
