"""The orchestrator and a broken cache (issue 9 §3): the cache never costs a call or fails one.

Real failures: a filled tmpfs (tests/cache/mounts.py), a cache path that cannot be created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.errors import ConfigurationError
from claude_force_magic.simulator import Simulator

if TYPE_CHECKING:
    from conftest import SmallFs


AGENT = "python-expert"
MakeOrch = Callable[..., AsyncAgentOrchestrator]


def _warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and word in r.getMessage()
    ]


async def test_disk_full_never_buys_a_cached_answer_again(
    sim: Simulator, make_orch: MakeOrch, small_fs: SmallFs, caplog: pytest.LogCaptureFixture
) -> None:
    orch = make_orch(cache_dir=small_fs.path / "cache")
    first = await orch.execute_agent(AGENT, "Explain asyncio.Semaphore")
    assert first.success and not first.cached
    small_fs.fill()
    again = await orch.execute_agent(AGENT, "Explain asyncio.Semaphore")
    assert again.cached and again.output == first.output
    assert sim.stats["requests"] == 1  # the valid answer was not bought again
    new = await orch.execute_agent(AGENT, "Explain asyncio.Lock")
    assert new.success and not new.cached  # a failed store never fails the call
    assert not _warnings(caplog, "lookup failed")
    await orch.close()


async def test_an_unopenable_cache_runs_calls_without_it_after_one_warning(
    sim: Simulator, make_orch: MakeOrch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    orch = make_orch(cache_dir=blocker / "cache")
    for task in ("Explain asyncio.Semaphore", "Explain asyncio.Lock"):
        result = await orch.execute_agent(AGENT, task)
        assert result.success and not result.cached
    assert orch.cache is None
    assert "enable_cache" in (orch.cache_problem or "")
    assert len(_warnings(caplog, "could not be opened")) == 1
    assert sim.stats["requests"] == 2


@pytest.mark.parametrize("ttl", [87_600_000, 1e308])
async def test_ttl_bounds_are_checked_before_anything_is_sent(
    sim: Simulator, make_orch: MakeOrch, ttl: float
) -> None:
    with pytest.raises(ConfigurationError, match="cache_ttl_hours"):
        AsyncAgentOrchestrator(cache_ttl_hours=ttl)
    orch = make_orch()
    with pytest.raises(ConfigurationError, match="ttl_hours"):
        await orch.execute_agent(AGENT, "Explain asyncio.Semaphore", ttl_hours=ttl)
    assert sim.stats["requests"] == 0


def test_settings_are_read_only_and_unknown_attributes_refused() -> None:
    orch = AsyncAgentOrchestrator(timeout_seconds=7, max_tokens=900, cache_ttl_hours=2)
    assert (orch.timeout_seconds, orch.max_tokens, orch.cache_ttl_hours) == (7, 900, 2)
    with pytest.raises(AttributeError, match=r"timeout_seconds=\.\.\. to AsyncAgentOrchestrator"):
        orch.timeout_seconds = 10  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot be set"):
        orch.timeout = 10  # type: ignore[attr-defined]  # a misspelling is not silently kept
    assert orch.timeout_seconds == 7


def test_cache_and_cache_dir_together_are_refused(tmp_path: Path) -> None:
    from claude_force_magic.cache import ResponseCache

    with ResponseCache(tmp_path / "c", cache_secret="test-secret-0123456789abcdef-XYZ") as cache:
        with pytest.raises(ConfigurationError, match="not both"):
            AsyncAgentOrchestrator(cache=cache, cache_dir=tmp_path / "other")
        assert AsyncAgentOrchestrator(cache=cache).cache is cache


async def test_cache_encrypt_stores_no_answer_text_and_still_hits(
    sim: Simulator, make_orch: MakeOrch, tmp_path: Path
) -> None:
    directory = tmp_path / "encrypted-cache"
    orch = make_orch(cache_dir=directory, cache_encrypt=True)
    first = await orch.execute_agent(AGENT, "Explain asyncio.Semaphore in depth")
    assert first.success and not first.cached and len(first.output) > 40
    assert orch.cache is not None and orch.cache.encrypt
    orch.cache.flush()
    stored = b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())
    assert first.output[:40].encode() not in stored
    assert b"asyncio.Semaphore" not in stored  # nor the task preview
    again = await orch.execute_agent(AGENT, "Explain asyncio.Semaphore in depth")
    assert again.cached and again.output == first.output
    assert sim.stats["requests"] == 1
