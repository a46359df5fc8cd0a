"""Streaming metrics (issue 12, first bullet): TTFT, TPOT, ITL summary and output tokens/s of
every streamed call, measured in the transport, checked against the simulator's latency model.

Real SDK over real HTTP on 127.0.0.1; the simulator runs in its own thread so that its paced
sleeps do not share the event loop with the client that measures them.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest

from claude_force_magic.engine.ledger import stream_metrics
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.result import METADATA_KEYS, AgentResult, empty_metadata
from claude_force_magic.engine.transport import (
    GAP_SAMPLES,
    GapSummary,
    InMemoryTransport,
    StreamTiming,
)
from claude_force_magic.metrics import percentile
from claude_force_magic.simulator import Latency, Simulator
from claude_force_magic.simulator.text import chunk_text, estimate_tokens

AGENT = "python-expert"
# Asks for code, so the simulated answer is longer than max_tokens=200 and is cut at exactly 200.
TASK = "Write a python function that parses a streaming response, with a class and examples."
TTFT = 0.3
PER_TOKEN = 0.01
STREAM_KEYS = ("ttft_s", "tpot_s", "itl", "output_tokens_per_s", "server_ttft_s")


@pytest.fixture
async def paced() -> AsyncIterator[tuple[Simulator, AsyncAgentOrchestrator]]:
    with Simulator(latency=Latency.fixed(0.0, ttft=TTFT, per_token=PER_TOKEN)) as sim:
        orch = AsyncAgentOrchestrator(
            api_key="sk-test-stream-metrics",
            base_url=sim.base_url,
            calls_per_minute=None,
            max_retries=0,
            enable_cache=False,
        )
        try:
            yield sim, orch
        finally:
            await orch.close()


async def _stream(orch: AsyncAgentOrchestrator, task: str = TASK, **opts: Any) -> AgentResult:
    result: AgentResult | None = None
    async for item in orch.stream_agent(AGENT, task, max_tokens=200, **opts):
        if isinstance(item, AgentResult):
            result = item
    assert result is not None and result.success, result
    return result


def _model_tpot(result: AgentResult) -> float:
    """What the simulator's latency model says the TPOT of this answer is: it waits
    ``per_token`` times the tokens of every delta after the first."""
    chunks = chunk_text(result.output)
    decode = PER_TOKEN * sum(estimate_tokens(c) for c in chunks[1:])
    return decode / (int(result.metadata["output_tokens"]) - 1)


async def test_ttft_and_tpot_match_the_simulators_latency_model(
    paced: tuple[Simulator, AsyncAgentOrchestrator],
) -> None:
    sim, orch = paced
    # The loopback overhead of this machine, right now: the same stream with no first-token wait.
    sim.configure(latency=Latency.fixed(0.0, ttft=0.0, per_token=PER_TOKEN))
    await _stream(orch, "warm up the connection")
    overhead = statistics.median(
        [float((await _stream(orch, f"overhead {i}")).metadata["ttft_s"]) for i in range(3)]
    )
    sim.configure(latency=Latency.fixed(0.0, ttft=TTFT, per_token=PER_TOKEN))
    results = [await _stream(orch, f"{TASK} ({i})") for i in range(3)]

    for r in results:
        assert 150 <= r.metadata["output_tokens"] <= 200  # ~200 output tokens
    ttft = statistics.median(float(r.metadata["ttft_s"]) for r in results)
    assert TTFT * 0.95 <= ttft <= TTFT * 1.05 + overhead, (ttft, overhead)

    tpot = statistics.median(float(r.metadata["tpot_s"]) for r in results)
    model = statistics.median(_model_tpot(r) for r in results)
    # The model's own TPOT is ~10 ms; a little above, because it rounds each delta's tokens up.
    assert model == pytest.approx(PER_TOKEN, rel=0.1)
    assert tpot == pytest.approx(model, rel=0.05), (tpot, model)

    # What the simulator says it did (its request log, on this process's monotonic clock): the
    # client's request-sent-to-last-delta spans the server's handling of the request, plus at
    # most the loopback overhead measured above.
    served = [r for r in sim.requests if r.path == "/v1/messages"][-len(results) :]
    for result, record in zip(results, served, strict=True):
        meta = result.metadata
        spanned = meta["ttft_s"] + meta["tpot_s"] * (meta["output_tokens"] - 1)
        assert record.duration * 0.99 <= spanned <= record.duration * 1.01 + overhead, (
            spanned,
            record.duration,
            overhead,
        )


async def test_itl_summary_and_throughput_agree_with_the_stream(
    paced: tuple[Simulator, AsyncAgentOrchestrator],
) -> None:
    _, orch = paced
    result = await _stream(orch)
    meta = result.metadata
    deltas = len(chunk_text(result.output))
    itl = meta["itl"]
    assert itl["count"] == deltas - 1  # one gap between each two text deltas
    assert itl["p50_s"] <= itl["p90_s"] <= itl["p99_s"] <= itl["max_s"]
    # Each gap is the tokens of one delta times per_token: about 4-5 tokens of 10 ms.
    typical = statistics.median(PER_TOKEN * estimate_tokens(c) for c in chunk_text(result.output))
    assert itl["p50_s"] == pytest.approx(typical, rel=0.25)
    assert itl["mean_s"] * itl["count"] == pytest.approx(
        meta["tpot_s"] * (meta["output_tokens"] - 1), rel=1e-6
    )
    # tokens/s over the attempt: output tokens over (TTFT + decode time).
    elapsed = meta["ttft_s"] + meta["tpot_s"] * (meta["output_tokens"] - 1)
    assert meta["output_tokens_per_s"] == pytest.approx(meta["output_tokens"] / elapsed, rel=1e-6)
    assert meta["latency_s"] >= elapsed
    json.dumps(result.to_dict())  # stays JSON-able
    assert set(meta) >= set(METADATA_KEYS)


async def test_the_attempt_that_answered_counts_not_the_retry_wait() -> None:
    latency = Latency.fixed(0.0, ttft=TTFT, per_token=PER_TOKEN)
    with Simulator(latency=latency, retry_after=0.5, script=["rate_limit", "ok"]) as sim:
        orch = AsyncAgentOrchestrator(
            api_key="sk-test-stream-metrics",
            base_url=sim.base_url,
            calls_per_minute=None,
            max_retries=1,
            enable_cache=False,
        )
        try:
            result = await _stream(orch)
        finally:
            await orch.close()
    meta = result.metadata
    assert meta["attempts"] == 2
    assert meta["latency_s"] >= 0.5 + TTFT  # the retry waited retry-after
    assert meta["ttft_s"] < 0.5 + TTFT * 0.95  # measured from the second attempt's send
    assert meta["ttft_s"] >= TTFT * 0.95


async def test_non_streamed_calls_and_cache_hits_have_no_stream_metrics(tmp_path: Any) -> None:
    with Simulator(latency=Latency.fixed(0.0)) as sim:
        orch = AsyncAgentOrchestrator(
            api_key="sk-test-stream-metrics",
            base_url=sim.base_url,
            calls_per_minute=None,
            max_retries=0,
            cache_dir=tmp_path,
        )
        try:
            plain = await orch.execute_agent(AGENT, "a plain call")
            streamed = await _stream(orch, "a streamed call")
            hit = await _stream(orch, "a streamed call")
            records = orch.metrics.recent()
        finally:
            await orch.close()
    assert plain.success and hit.cached
    for result in (plain, hit):
        assert all(result.metadata[k] is None for k in STREAM_KEYS), result.metadata
    assert streamed.metadata["ttft_s"] is not None
    assert [r.ttft_s is not None for r in records] == [False, True, False]
    [row] = orch.metrics.stream_percentiles()
    assert row["streamed"] == 1
    assert row["ttft_p50"] == pytest.approx(streamed.metadata["ttft_s"])


async def test_a_failed_stream_records_no_stream_metrics(
    paced: tuple[Simulator, AsyncAgentOrchestrator],
) -> None:
    sim, orch = paced
    sim.configure(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.001), script=["stream_error"])
    items = [i async for i in orch.stream_agent(AGENT, TASK, max_tokens=200)]
    result = items[-1]
    assert isinstance(result, AgentResult) and not result.success
    assert all(result.metadata[k] is None for k in STREAM_KEYS)
    [record] = orch.metrics.recent()
    assert record.ttft_s is None and record.tpot_s is None
    assert orch.metrics.stream_percentiles() == []


async def test_in_memory_transport_times_its_pieces_too() -> None:
    orch = AsyncAgentOrchestrator(
        transport=InMemoryTransport(["one two three four"], piece_delay=0.01),
        calls_per_minute=None,
        enable_cache=False,
    )
    try:
        result = await _stream(orch, "anything")
    finally:
        await orch.close()
    assert result.metadata["itl"]["count"] == 3
    assert result.metadata["itl"]["p50_s"] >= 0.009


def test_gap_summary_is_exact_while_it_holds_every_gap() -> None:
    rng = random.Random(1)
    gaps = [rng.uniform(0.001, 0.2) for _ in range(GAP_SAMPLES)]
    summary = GapSummary()
    for g in gaps:
        summary.add(g)
    got = summary.summary()
    assert got is not None
    assert got["count"] == len(gaps)
    assert got["p50_s"] == percentile(gaps, 0.5)
    assert got["p99_s"] == percentile(gaps, 0.99)
    assert got["max_s"] == max(gaps)
    assert got["mean_s"] == pytest.approx(statistics.fmean(gaps))


def test_gap_summary_memory_is_bounded_and_its_sample_is_fair() -> None:
    summary = GapSummary(capacity=256)
    n = 50_000
    for i in range(n):
        summary.add((i % 1000) / 1000)  # uniform on [0, 1)
    got = summary.summary()
    assert got is not None
    assert summary.held == 256  # never every gap
    assert got["count"] == n  # count, mean and max stay exact
    assert got["mean_s"] == pytest.approx(0.4995)
    assert got["max_s"] == 0.999
    assert got["p50_s"] == pytest.approx(0.5, abs=0.1)  # a uniform sample, not the last gaps
    assert got["p90_s"] == pytest.approx(0.9, abs=0.06)


def test_stream_timing_edge_cases_give_none_not_nonsense() -> None:
    timing = StreamTiming(sent_at=10.0)
    assert timing.ttft_s is None and timing.tpot_s(100) is None
    assert timing.tokens_per_s(100) is None and timing.gaps.summary() is None
    timing.delta(now=10.5)
    assert timing.ttft_s == 0.5
    assert timing.tpot_s(100) is None  # one delta: no decode time to divide
    timing.delta(now=11.5)
    assert timing.tpot_s(1) is None  # one token after the first is needed
    assert timing.tpot_s(11) == pytest.approx(0.1)
    assert timing.tokens_per_s(15) == pytest.approx(10.0)
    assert stream_metrics(None, 10) == dict.fromkeys(STREAM_KEYS)
    assert all(empty_metadata()[k] is None for k in STREAM_KEYS)
    assert not math.isnan(stream_metrics(timing, 11)["tpot_s"])
