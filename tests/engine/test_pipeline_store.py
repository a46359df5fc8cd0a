"""CallPipeline.lookup_many / store_many: the response store for many calls at once.

A real disk cache under tmp_path and an in-memory transport (no sockets needed here: the
store side is what is checked; the batch tests run the same code over real HTTP).
"""

from __future__ import annotations

from pathlib import Path

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.response import Answer, Usage
from claude_force_magic.engine.transport import InMemoryTransport

AGENT = "python-expert"


def _orch(tmp_path: Path, transport: InMemoryTransport, **kwargs: object) -> AsyncAgentOrchestrator:
    return AsyncAgentOrchestrator(
        transport=transport,
        calls_per_minute=None,
        max_retries=0,
        cache_dir=str(tmp_path / "cache"),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_lookup_many_finds_what_run_stored_in_order(tmp_path: Path) -> None:
    orch = _orch(tmp_path, InMemoryTransport(["first answer", "second answer"]))
    try:
        for task in ("task one", "task two"):
            assert (await orch.execute_agent(AGENT, task)).success
        pipeline = orch._pipeline
        assert pipeline.store_usable()
        calls = [
            orch._prepare(AGENT, "task two", {}),
            orch._prepare(AGENT, "never asked", {}),
            orch._prepare(AGENT, "task one", {}),
            orch._prepare(AGENT, "task one", {"refresh": True}),
            orch._prepare(AGENT, "task one", {"use_cache": False}),
        ]
        entries = await pipeline.lookup_many(calls)
        assert [e and e["response"] for e in entries] == [
            "second answer",
            None,
            "first answer",
            None,
            None,
        ]
        assert await pipeline.lookup_many([]) == []
    finally:
        await orch.close()


async def test_store_many_stores_what_run_then_answers_from_the_cache(tmp_path: Path) -> None:
    transport = InMemoryTransport([])
    orch = _orch(tmp_path, transport)
    try:
        kept = orch._prepare(AGENT, "kept", {})
        skipped = orch._prepare(AGENT, "not cached", {"use_cache": False})
        answer = Answer("stored by store_many", "end_turn", False, Usage(12, 5), "req_1")
        stored = await orch._pipeline.store_many([(kept, answer, 0.01), (skipped, answer, 0.01)])
        assert stored == 1
        result = await orch.execute_agent(AGENT, "kept")
        assert result.output == "stored by store_many" and result.metadata["cached"]
        assert transport.sent == []  # answered from the cache: nothing went out
        [entry, missing] = await orch._pipeline.lookup_many([kept, skipped])
        assert missing is None and entry is not None and entry["metadata"]["request_id"] == "req_1"
    finally:
        await orch.close()


async def test_without_a_store_nothing_is_looked_up_or_stored(tmp_path: Path) -> None:
    orch = AsyncAgentOrchestrator(
        transport=InMemoryTransport([]), calls_per_minute=None, enable_cache=False
    )
    try:
        call = orch._prepare(AGENT, "anything", {})
        answer = Answer("text", "end_turn", False, Usage(1, 1))
        assert not orch._pipeline.store_usable()
        assert await orch._pipeline.lookup_many([call]) == [None]
        assert await orch._pipeline.store_many([(call, answer, None)]) == 0
    finally:
        await orch.close()
