"""The DataFrames behind the ``%agent`` tables."""

from __future__ import annotations

from claude_force_magic.agents import AgentRegistry
from claude_force_magic.notebook.frames import AGENT_COLUMNS, agents_frame


def test_agents_frame_shows_domains_as_words_not_letters() -> None:
    registry = AgentRegistry.load()
    frame = agents_frame(registry.rows())
    assert tuple(frame.columns) == AGENT_COLUMNS
    row = frame.set_index("name").loc["python-expert"]
    assert row["domains"] == ", ".join(registry.get("python-expert").domains)


def test_agents_frame_accepts_domains_as_a_list() -> None:
    frame = agents_frame([{"name": "a", "domains": ["sql", "etl"]}, {"name": "b"}])
    assert list(frame.domains) == ["sql, etl", ""]
