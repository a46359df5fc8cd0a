"""What the engine keeps with a cached answer so that it can be recognised (issue 16)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.request import PREVIEW_CHARS, task_preview
from claude_force_magic.notebook.options import interpolate

AGENT = "python-expert"
MakeOrch = Callable[..., AsyncAgentOrchestrator]


async def test_stored_entry_keeps_preview_origin_options_not_the_data(
    make_orch: MakeOrch, tmp_path: Path
) -> None:
    task, data = interpolate("Summarise {report} in one line.", {"report": "SECRET-ROWS 42"})
    orch = make_orch(cache_dir=tmp_path / "cache")
    result = await orch.execute_agent(AGENT, task, untrusted=data, max_tokens=300)
    assert result.success and orch.cache is not None
    (listed,) = orch.cache.entries()
    assert listed["preview"] == "Summarise {report} in one line."
    assert listed["origin"] == "library"
    entry = orch.cache.entry(listed["key"])
    assert entry is not None
    assert entry["options"]["max_tokens"] == 300
    assert entry["metadata"]["request_id"] == result.metadata["request_id"]
    assert "SECRET-ROWS" not in str(entry["metadata"])  # the data is never in the preview


async def test_origin_option_is_kept(make_orch: MakeOrch, tmp_path: Path) -> None:
    orch = make_orch(cache_dir=tmp_path / "cache")
    await orch.execute_agent(AGENT, "Explain asyncio.Lock", origin="notebook cell [7]")
    assert orch.cache is not None
    assert orch.cache.entries()[0]["origin"] == "notebook cell [7]"


def test_preview_is_the_first_characters() -> None:
    assert task_preview("x" * 500, {}) == "x" * PREVIEW_CHARS
