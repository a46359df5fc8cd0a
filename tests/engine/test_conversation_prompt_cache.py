"""Prompt caching (issue 11): breakpoints, the 5m/1h split end to end, the saving.

Real SDK over loopback against the simulator, which models the API's prompt cache; the
assertions read the simulator's own counts and entries.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agent_files import write_agents
from anthropic.types import Message

from claude_force_magic.engine.client import StreamState
from claude_force_magic.engine.ledger import attempt_usage
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.prompt_cache import ReusePlanner, mark_breakpoints
from claude_force_magic.engine.request import CallOptions
from claude_force_magic.engine.response import read_usage
from claude_force_magic.errors import ConfigurationError, PricingError
from claude_force_magic.metrics import Metrics
from claude_force_magic.pricing import PriceTable
from claude_force_magic.simulator import Simulator

MODEL = "claude-haiku-4-5"  # minimum cacheable prefix 4096 tokens, prices 1 / 1.25 / 2 / 0.10
SONNET = "claude-sonnet-5-5"  # minimum 1024 tokens


@pytest.fixture
def agents_path(tmp_path: Path) -> Path:
    # "long": ~5,000 tokens (over every model's minimum); "short": ~200 tokens
    return write_agents(tmp_path, {"long": 20_000, "short": 800})


def sdk_message(usage: dict[str, Any]) -> Message:
    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, **usage},
        }
    )


# -- the 5m/1h split, end to end -------------------------------------------------------------


def test_one_hour_writes_cost_the_one_hour_rate_through_the_engine() -> None:
    """Issue 11: 100,000 one-hour write tokens cost $2.00 from the SDK's usage and $1.25
    through the engine's usage record, which dropped the split."""
    message = sdk_message(
        {
            "cache_creation_input_tokens": 100_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 0,
                "ephemeral_1h_input_tokens": 100_000,
            },
        }
    )
    table = PriceTable.bundled()
    fable = "claude-fable-5-1"  # 12.50 per million written for 5 minutes, 20 for an hour
    assert table.cost(fable, message.usage) == pytest.approx(2.00)
    engine_usage = read_usage(message)
    assert engine_usage.ephemeral_1h_input_tokens == 100_000
    assert table.cost(fable, engine_usage) == pytest.approx(2.00)  # was 1.25


def test_a_cut_stream_keeps_the_split_of_its_message_start() -> None:
    message = sdk_message(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 3000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1000,
                "ephemeral_1h_input_tokens": 2000,
            },
        }
    )

    class Start:
        type = "message_start"

    event = Start()
    event.message = message  # type: ignore[attr-defined]
    state = StreamState()
    state.observe(event)
    usage = attempt_usage(10, state, TimeoutError())
    assert usage is not None
    assert (usage.ephemeral_5m_input_tokens, usage.ephemeral_1h_input_tokens) == (1000, 2000)
    expected = Decimal(10) * 1 + Decimal(1000) * Decimal("1.25") + Decimal(2000) * 2
    assert PriceTable.bundled().cost(MODEL, usage) == pytest.approx(float(expected / 10**6))


# -- breakpoints against the simulator -------------------------------------------------------


async def test_a_long_definition_is_written_once_then_read(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], agents_path: Path
) -> None:
    orch = make_orch(config_path=agents_path, model=SONNET, enable_cache=False)
    first = await orch.execute_agent("long", "Question one?")
    second = await orch.execute_agent("long", "Question two, a different one?")
    assert first.success and second.success
    written = first.metadata["cache_creation_input_tokens"]
    assert written > 4000
    assert first.metadata["cache_read_input_tokens"] == 0
    assert second.metadata["cache_read_input_tokens"] == written
    assert second.metadata["cache_creation_input_tokens"] == 0
    (entry,) = sim.prompt_cache
    assert (entry["ends_at"], entry["ttl"], entry["reads"]) == ("system.0", "5m", 1)
    # the saving: those tokens at the input rate minus what they cost (2.00 vs 2.50 / 0.20)
    rates = PriceTable.bundled().lookup(SONNET)
    assert rates is not None
    assert first.metadata["prompt_cache_saved_usd"] == pytest.approx(
        written * float(rates.input - rates.cache_write_5m) / 1e6
    )
    assert second.metadata["prompt_cache_saved_usd"] == pytest.approx(
        written * float(rates.input - rates.cache_read) / 1e6
    )
    assert first.metadata["prompt_cache_saved_usd"] < 0 < second.metadata["prompt_cache_saved_usd"]


async def test_off_and_short_definitions_send_no_breakpoint(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], agents_path: Path
) -> None:
    orch = make_orch(config_path=agents_path, model=SONNET, enable_cache=False, prompt_cache="off")
    await orch.execute_agent("long", "Question one?")
    await orch.execute_agent("long", "Question one?")
    await orch.execute_agent("short", "Question one?", prompt_cache="1h")  # too short to mark
    assert sim.prompt_cache == []
    assert sim.stats["prompt_cache"]["writes"] == 0
    result = await orch.execute_agent("long", "Question one?", prompt_cache="5m")  # per call
    assert result.metadata["cache_creation_input_tokens"] > 0


async def test_one_hour_split_reaches_metadata_cost_and_metrics(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], agents_path: Path
) -> None:
    metrics = Metrics()
    orch = make_orch(config_path=agents_path, model=MODEL, enable_cache=False, metrics=metrics)
    result = await orch.execute_agent("long", "Question?", prompt_cache="1h")
    meta = result.metadata
    written = meta["cache_creation_input_tokens"]
    assert written > 4096
    assert (meta["cache_creation_5m_input_tokens"], meta["cache_creation_1h_input_tokens"]) == (
        0,
        written,
    )
    assert sim.prompt_cache[0]["ttl"] == "1h"
    expected = (meta["input_tokens"] * 1 + written * 2 + meta["output_tokens"] * 5) / 1e6
    assert meta["cost_usd"] == pytest.approx(expected)  # 1h rate ($2), not the 5m one ($1.25)
    (record,) = metrics.recent()
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (written, written)
    assert record.prompt_cache_saved_usd == pytest.approx(-written * 1.0 / 1e6)
    totals = metrics.totals()
    assert totals["cache_write_1h_tokens"] == written
    assert totals["prompt_cache_saved_usd"] == pytest.approx(record.prompt_cache_saved_usd)
    assert totals["saved_usd"] == 0  # the response cache's savings stay apart


async def test_the_model_minimum_is_data_and_can_be_overridden(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], tmp_path: Path
) -> None:
    path = write_agents(tmp_path, {"mid": 10_000})  # ~2,500 tokens: over 1024, under 4096
    table = PriceTable.bundled()
    assert table.min_cacheable_tokens(MODEL) == 4096
    assert table.min_cacheable_tokens(SONNET) == 1024
    assert table.min_cacheable_tokens("claude-unknown-9") == 1024
    raised = table.with_overrides({SONNET: {"min_cacheable_tokens": 8192}})
    assert raised.min_cacheable_tokens(SONNET) == 8192
    orch = make_orch(config_path=path, model=SONNET, enable_cache=False, prices=raised)
    await orch.execute_agent("mid", "Question?")
    await orch.execute_agent("mid", "Question?", model=MODEL)  # 4096 from the data: unmarked
    assert sim.prompt_cache == []
    plain = make_orch(config_path=path, model=SONNET, enable_cache=False)
    await plain.execute_agent("mid", "Question?")
    assert len(sim.prompt_cache) == 1
    with pytest.raises(PricingError, match="min_cacheable_tokens"):
        table.with_overrides({SONNET: {"min_cacheable_tokens": -1}})


def test_bad_prompt_cache_values_name_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="'auto', '5m', '1h', 'off'"):
        CallOptions(prompt_cache="2h")
    with pytest.raises(ConfigurationError, match="prompt_cache"):
        AsyncAgentOrchestrator(api_key="sk-x", prompt_cache="always")


# -- the rules, without the network ----------------------------------------------------------


def test_auto_uses_one_hour_only_when_the_last_gap_outlived_five_minutes() -> None:
    now = [0.0]
    planner = ReusePlanner(clock=lambda: now[0])
    seen = []
    for gap in (0, 30, 600, 600, 60, 7200, 3600):
        now[0] += gap
        seen.append(planner.ttl("agent"))
    assert seen == ["5m", "5m", "1h", "1h", "5m", "5m", "1h"]
    assert planner.ttl("another agent") == "5m"  # gaps are per key


def test_breakpoints_go_on_the_system_prompt_and_the_last_history_turn() -> None:
    history = [
        {"role": "user", "content": "a" * 4000},
        {"role": "assistant", "content": "b" * 4000},
    ]
    params: dict[str, Any] = {
        "model": SONNET,
        "system": "s" * 4400,
        "messages": [*history, {"role": "user", "content": "new"}],
    }
    assert mark_breakpoints(params, history, ttl="1h", min_tokens=1024) == 2
    assert params["system"] == [
        {"type": "text", "text": "s" * 4400, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    first, last, new = params["messages"]
    assert "cache_control" not in first["content"][0]
    assert last["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert new == {"role": "user", "content": "new"}  # the new task is not marked
    short: dict[str, Any] = {"model": SONNET, "system": "s" * 400, "messages": [history[0]]}
    assert mark_breakpoints(short, [], ttl="5m", min_tokens=1024) == 0
    assert short["system"] == "s" * 400


def test_the_builder_asks_for_an_hour_when_calls_come_ten_minutes_apart() -> None:
    import hashlib

    from claude_force_magic.agents import AgentDefinition
    from claude_force_magic.engine.request import RequestBuilder

    prompt = "Review carefully. " * 400  # ~1,800 tokens
    agent = AgentDefinition(
        name="long", description="", domains=(), priority=1, model=None, max_tokens=None,
        system_prompt=prompt, source="test",
        definition_hash=hashlib.sha256(prompt.encode()).hexdigest(),
    )  # fmt: skip
    now = [1000.0]
    builder = RequestBuilder(model=SONNET, planner=ReusePlanner(clock=lambda: now[0]))

    def ttl() -> str:
        system = builder.build(agent, "Question?", CallOptions()).params["system"]
        return str(system[0]["cache_control"]["ttl"])

    assert ttl() == "5m"  # first use
    now[0] += 60
    assert ttl() == "5m"  # a quick follow-up keeps a 5-minute entry alive
    now[0] += 600
    assert ttl() == "1h"  # a 5-minute entry would have lapsed: the hour pays
    now[0] += 600
    history = [{"role": "user", "content": "a" * 400}, {"role": "assistant", "content": "b" * 400}]
    params = builder.build(agent, "Q?", CallOptions(), history=history).params
    marks = [
        params["system"][0]["cache_control"],
        params["messages"][1]["content"][0]["cache_control"],
    ]
    assert marks == [{"type": "ephemeral", "ttl": "1h"}] * 2  # one TTL for both breakpoints
    assert builder.build(agent, "Q?", CallOptions(prompt_cache="off")).params["system"] == prompt


async def test_a_response_cache_hit_keeps_the_split_and_saves_no_prompt_cache_money(
    make_orch: Callable[..., AsyncAgentOrchestrator], agents_path: Path, tmp_path: Path
) -> None:
    orch = make_orch(config_path=agents_path, model=MODEL, cache_dir=tmp_path / "cache")
    live = await orch.execute_agent("long", "Question?", prompt_cache="1h")
    hit = await orch.execute_agent("long", "Question?", prompt_cache="1h")
    assert hit.cached and not live.cached
    keys = ("cache_creation_input_tokens", "cache_creation_1h_input_tokens")
    assert [hit.metadata[k] for k in keys] == [live.metadata[k] for k in keys]
    assert live.metadata["cache_creation_1h_input_tokens"] > 4096
    assert hit.metadata["prompt_cache_saved_usd"] == 0.0  # nothing was sent
    assert hit.metadata["saved_usd"] == pytest.approx(live.metadata["cost_usd"])
