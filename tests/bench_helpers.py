"""Shared by the benchmark tests: an orchestrator that measures, not one that protects."""

from __future__ import annotations

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.metrics import Metrics
from claude_force_magic.simulator import Simulator


def bench_orchestrator(sim: Simulator, concurrency: int) -> AsyncAgentOrchestrator:
    """Against ``sim``: no cache, no client-side rate limit, no retries, its own metrics and
    ``concurrency`` requests in flight at most."""
    return AsyncAgentOrchestrator(
        api_key="sk-test",
        base_url=sim.base_url,
        enable_cache=False,
        max_concurrent=concurrency,
        calls_per_minute=None,
        metrics=Metrics(),
        max_retries=0,
    )
