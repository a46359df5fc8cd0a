"""Shared by the conversation tests: agent definitions of chosen lengths on disk."""

from __future__ import annotations

import json
from pathlib import Path


def write_agents(root: Path, agents: dict[str, int]) -> Path:
    """A .claude/claude.json with one agent per ``name: definition length in chars``."""
    config = root / ".claude"
    (config / "agents").mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, chars in agents.items():
        body = f"You are {name}. " + "Answer carefully and cite the rule you apply. " * (
            chars // 46 + 1
        )
        (config / "agents" / f"{name}.md").write_text(body[:chars], encoding="utf-8")
        entries[name] = {"file": f"agents/{name}.md", "description": name}
    path = config / "claude.json"
    path.write_text(json.dumps({"agents": entries, "workflows": {}}), encoding="utf-8")
    return path
