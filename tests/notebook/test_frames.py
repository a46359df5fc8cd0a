"""The DataFrames behind the ``%agent`` tables."""

from __future__ import annotations

from claude_force_magic.agents import AgentRegistry
from claude_force_magic.notebook.frames import (
    AGENT_COLUMNS,
    agents_frame,
    cost_frame,
    mode_history_frame,
)


def test_agents_frame_shows_domains_as_words_not_letters() -> None:
    registry = AgentRegistry.load()
    frame = agents_frame(registry.rows())
    assert tuple(frame.columns) == AGENT_COLUMNS
    row = frame.set_index("name").loc["python-expert"]
    assert row["domains"] == ", ".join(registry.get("python-expert").domains)


def test_agents_frame_accepts_domains_as_a_list() -> None:
    frame = agents_frame([{"name": "a", "domains": ["sql", "etl"]}, {"name": "b"}])
    assert list(frame.domains) == ["sql, etl", ""]


def test_mode_history_interleaves_both_modes_oldest_first() -> None:
    live = [{"timestamp": 10.0, "agent_name": "a"}, {"timestamp": 30.0, "agent_name": "c"}]
    simulated = [{"timestamp": 20.0, "agent_name": "b"}, {"timestamp": 40.0, "agent_name": "d"}]
    frame = mode_history_frame({"live": live, "simulated": simulated})
    assert list(frame.agent_name) == ["a", "b", "c", "d"]
    assert list(frame["mode"]) == ["live", "simulated", "live", "simulated"]


def test_cost_frame_groups_modes_live_first_then_costliest() -> None:
    frame = cost_frame(
        [
            {"mode": "live", "agent_name": "a", "cost_usd": 0.1},
            {"mode": "simulated", "agent_name": "b", "cost_usd": 9.0},
            {"mode": "live", "agent_name": "c", "cost_usd": 0.5},
        ]
    )
    assert list(zip(frame["mode"], frame.agent_name, strict=True)) == [
        ("live", "c"),
        ("live", "a"),
        ("simulated", "b"),
    ]


def test_history_has_the_streaming_columns_empty_for_unstreamed_calls() -> None:
    from claude_force_magic.metrics import CallRecord
    from claude_force_magic.notebook.frames import HISTORY_COLUMNS, history_frame

    common = {"timestamp": 1.0, "agent_name": "a", "model": "m", "latency_s": 1.0}
    records = [
        CallRecord(**common, input_tokens=1, output_tokens=2),
        CallRecord(
            **common,
            input_tokens=1,
            output_tokens=200,
            ttft_s=0.3,
            tpot_s=0.01,
            itl_p50_s=0.04,
            output_tokens_per_s=87.0,
        ),
    ]
    frame = history_frame(records, mode="live")
    assert tuple(frame.columns) == HISTORY_COLUMNS
    streamed = ["ttft_s", "tpot_s", "itl_p50_s", "output_tokens_per_s"]
    assert frame[streamed].iloc[0].isna().all()
    assert list(frame[streamed].iloc[1]) == [0.3, 0.01, 0.04, 87.0]
