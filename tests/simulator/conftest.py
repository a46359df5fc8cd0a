"""Fixtures for the simulator tests: a running simulator and SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import pytest

from claude_force_magic.simulator import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with zero latency, running in its background thread."""
    with Simulator() as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> Iterator[anthropic.Anthropic]:
    """A synchronous SDK client for ``sim`` with the SDK's own retries off."""
    with anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """An asynchronous SDK client for ``sim``, closed on the test's loop."""
    async with anthropic.AsyncAnthropic(
        api_key="sk-test", base_url=sim.base_url, max_retries=0
    ) as c:
        yield c
