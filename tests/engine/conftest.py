"""Fixtures for engine tests: a simulator on the test's loop and an orchestrator pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.simulator import Latency, Simulator

TEST_KEY = "sk-test-engine-key"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=Latency.fixed(0.0), retry_after=0.5) as s:
        yield s


@pytest.fixture
async def make_orch(sim: Simulator) -> AsyncIterator[Callable[..., AsyncAgentOrchestrator]]:
    made: list[AsyncAgentOrchestrator] = []

    def factory(**kwargs: Any) -> AsyncAgentOrchestrator:
        kwargs.setdefault("api_key", TEST_KEY)
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("calls_per_minute", None)
        kwargs.setdefault("max_retries", 0)
        orch = AsyncAgentOrchestrator(**kwargs)
        made.append(orch)
        return orch

    yield factory
    for orch in made:
        await orch.close()
