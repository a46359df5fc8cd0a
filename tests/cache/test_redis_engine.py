"""The orchestrator with a RedisResponseCache as its store (``store=``): kernels share
answers, and Redis going away never fails a call (the engine calls the API instead)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis_server import RedisServer

from claude_force_magic.cache import RedisResponseCache
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.simulator import Latency, Simulator

from .redis_helpers import SECRET

pytestmark = pytest.mark.redis

AGENT = "python-expert"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=Latency.fixed(0.0)) as s:
        yield s


def orchestrator(sim: Simulator, store: RedisResponseCache) -> AsyncAgentOrchestrator:
    return AsyncAgentOrchestrator(
        api_key="sk-test-redis-engine",
        base_url=sim.base_url,
        calls_per_minute=None,
        max_retries=0,
        store=store,
    )


async def test_two_kernels_share_answers_through_redis(
    sim: Simulator, private_redis: RedisServer
) -> None:
    first_store = RedisResponseCache(private_redis.url, cache_secret=SECRET)
    second_store = RedisResponseCache(private_redis.url, cache_secret=SECRET)
    first, second = orchestrator(sim, first_store), orchestrator(sim, second_store)
    bought = await first.execute_agent(AGENT, "Explain asyncio.Semaphore")
    assert bought.success and not bought.cached
    shared = await second.execute_agent(AGENT, "Explain asyncio.Semaphore")
    assert shared.cached and shared.output == bought.output
    assert sim.stats["requests"] == 1, "the second kernel did not buy the answer again"
    assert first_store.get_stats()["hits"] == 1
    await first.close()
    await second.close()


async def test_redis_going_away_never_fails_a_call(
    sim: Simulator, private_redis: RedisServer
) -> None:
    store = RedisResponseCache(private_redis.url, cache_secret=SECRET)
    orch = orchestrator(sim, store)
    await orch.execute_agent(AGENT, "Explain asyncio.Semaphore")
    private_redis.stop()
    down = await orch.execute_agent(AGENT, "Explain asyncio.Semaphore")
    assert down.success and not down.cached  # bought live: the store is unreachable
    private_redis.start()  # an empty server (persistence off)
    again = await orch.execute_agent(AGENT, "Explain asyncio.Lock")
    assert again.success and not again.cached
    back = await orch.execute_agent(AGENT, "Explain asyncio.Lock")
    assert back.cached, "the store works again once Redis is back"
    assert sim.stats["requests"] == 3
    await orch.close()
