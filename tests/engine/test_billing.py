"""Stopped calls are billed (issue 9 §2): cancelled, timed out or failed mid-stream calls are
charged for the input and the output streamed so far, recorded with a status, and settled
against the budget. Real SDK over real HTTP against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.result import AgentResult
from claude_force_magic.simulator import Latency, Simulator

MODEL = "claude-sonnet-5-5"  # $2 / $10 per million input / output tokens
TASK = "Explain Python generators at length, with many examples."


async def _stream_until(
    orch: AsyncAgentOrchestrator, pieces: int, **kwargs: Any
) -> tuple[list[str], list[AgentResult]]:
    """Stream a call, cancel it after ``pieces`` text pieces; return the text and callbacks."""
    seen: list[str] = []
    settled: list[AgentResult] = []
    got_enough = asyncio.Event()

    async def consume() -> None:
        async for item in orch.stream_agent(
            "python-expert", TASK, use_cache=False, on_cancelled=settled.append, **kwargs
        ):
            if isinstance(item, str):
                seen.append(item)
                if len(seen) >= pieces:
                    got_enough.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_enough.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return seen, settled


async def test_cancelled_stream_is_charged_recorded_and_settled(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.02))
    orch = make_orch(budget_usd=5.0, model=MODEL)
    seen, settled = await _stream_until(orch, 3)
    assert orch.spent_usd > 0, "an interrupted stream is billed by the API"
    assert orch._budget.reserved == 0
    [record] = orch.metrics.recent()
    assert record.status == "cancelled"
    assert not record.success
    assert record.input_tokens > 0
    assert record.output_tokens >= len(seen) - 1  # at least ~a token per piece received
    assert record.cost_usd == pytest.approx(orch.spent_usd)
    expected = (record.input_tokens * 2 + record.output_tokens * 10) / 1e6
    assert orch.spent_usd == pytest.approx(expected)
    assert orch.metrics.totals()["cost_usd"] == pytest.approx(orch.spent_usd)
    # the callback got the settled partial result before the cancellation propagated
    [partial] = settled
    assert not partial.success
    assert partial.output == "".join(seen)
    assert partial.metadata["status"] == "cancelled"
    assert partial.metadata["cut"] is True
    assert partial.cost_usd == pytest.approx(orch.spent_usd)
    # nothing was left running
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if "_execute" in repr(t)]


async def test_four_stopped_streams_spend_what_the_api_bills(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.02))
    orch = make_orch(budget_usd=5.0, model=MODEL)
    for _ in range(4):
        await _stream_until(orch, 2)
    records = orch.metrics.recent()
    assert [r.status for r in records] == ["cancelled"] * 4
    assert orch.spent_usd == pytest.approx(sum(r.cost_usd or 0 for r in records))
    assert orch.spent_usd > 4 * records[0].input_tokens * 2 / 1e6 * 0.99


async def test_cancel_while_waiting_for_a_slot_costs_nothing(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(latency=Latency.fixed(2.0))
    orch = make_orch(budget_usd=5.0, model=MODEL, max_concurrent=1)
    first = asyncio.ensure_future(orch.execute_agent("python-expert", "first", use_cache=False))
    while sim.stats["in_flight"] < 1:
        await asyncio.sleep(0.01)
    settled: list[AgentResult] = []
    second = asyncio.ensure_future(
        orch.execute_agent("python-expert", "second", use_cache=False, on_cancelled=settled.append)
    )
    await asyncio.sleep(0.05)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    [partial] = settled
    assert partial.cost_usd == 0.0
    assert partial.metadata["status"] == "cancelled"
    assert orch.spent_usd == 0.0
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # the first one was sent (non-streamed): charged its input estimate, no output
    assert orch.spent_usd > 0
    statuses = sorted(r.status for r in orch.metrics.recent())
    assert statuses == ["cancelled", "cancelled"]
    assert orch._budget.reserved == 0


async def test_timed_out_stream_is_charged_with_status_timeout(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    # message_start arrives at once, then the first text waits longer than the timeout
    sim.configure(latency=Latency.fixed(0.0, ttft=3.0))
    orch = make_orch(budget_usd=5.0, model=MODEL, timeout_seconds=0.5)
    result = None
    async for item in orch.stream_agent("python-expert", "A slow stream.", use_cache=False):
        result = item
    assert isinstance(result, AgentResult)
    assert not result.success
    assert result.metadata["status"] == "timeout"
    assert result.metadata["input_tokens"] > 0
    assert result.cost_usd is not None and result.cost_usd > 0
    assert orch.spent_usd == pytest.approx(result.cost_usd)
    [record] = orch.metrics.recent()
    assert record.status == "timeout"


async def test_mid_stream_error_is_charged_with_status_error(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.set_script(["stream_error"])
    orch = make_orch(budget_usd=5.0, model=MODEL)
    result = None
    async for item in orch.stream_agent("python-expert", "A broken stream.", use_cache=False):
        result = item
    assert isinstance(result, AgentResult)
    assert not result.success
    assert result.metadata["status"] == "error"
    assert result.output, "text arrived before the error event"
    assert result.metadata["output_tokens"] > 0
    assert orch.spent_usd == pytest.approx(result.cost_usd)
    assert orch.spent_usd > 0


async def test_http_error_answer_costs_nothing_and_success_is_ok(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.set_script(["server_error"])
    orch = make_orch(budget_usd=5.0, model=MODEL)
    failed = await orch.execute_agent("python-expert", "An error answer.", use_cache=False)
    assert failed.cost_usd == 0.0 and orch.spent_usd == 0.0
    ok = await orch.execute_agent("python-expert", "A good answer.", use_cache=False)
    assert ok.success and ok.metadata["status"] == "ok"
    assert [r.status for r in orch.metrics.recent()] == ["error", "ok"]


def test_call_record_status_is_checked() -> None:
    from claude_force_magic.errors import ConfigurationError
    from claude_force_magic.metrics import CallRecord

    assert CallRecord(0.0, "a", "m", 0.1, 1, 1).status == "ok"
    with pytest.raises(ConfigurationError, match="cancelled"):
        CallRecord(0.0, "a", "m", 0.1, 1, 1, status="stopped")


async def test_deadline_cut_stream_is_charged_with_status_timeout(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    # the deadline cancels the attempt after message_start arrived: its input is billed
    sim.configure(latency=Latency.fixed(0.0, ttft=5.0))
    orch = make_orch(budget_usd=5.0, model=MODEL, timeout_seconds=30, deadline_seconds=0.8)
    result = None
    async for item in orch.stream_agent(
        "python-expert", "A stream past the deadline.", use_cache=False
    ):
        result = item
    assert isinstance(result, AgentResult) and not result.success
    assert type(result.error).__name__ == "DeadlineExceededError"
    assert result.metadata["status"] == "timeout"
    assert result.metadata["input_tokens"] > 0 and result.cost_usd
    assert orch.spent_usd == pytest.approx(result.cost_usd)
    assert orch._budget.reserved == 0
