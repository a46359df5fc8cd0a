"""Store calls run off the event loop: a locked cache database never freezes the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from claude_force_magic.cache.store import ResponseCache
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.store import ResponseStore
from claude_force_magic.simulator import Simulator

AGENT = "python-expert"
SECRET = b"0123456789abcdef0123456789abcdef"
HOLD_SECONDS = 0.8


async def test_a_store_waiting_on_a_locked_database_leaves_the_loop_running(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], tmp_path: Path
) -> None:
    """Lookups are reads (WAL readers never wait for a writer), but storing an answer takes the
    write lock: while another connection holds it, the store waits on the store thread and the
    event loop keeps running."""
    cache = ResponseCache(tmp_path / "c", cache_secret=SECRET)
    assert isinstance(cache, ResponseStore)
    orch = make_orch(cache=cache)
    first = await orch.execute_agent(AGENT, "Explain asyncio.Condition")
    assert first.success and not first.cached

    # another process-like connection holds the database's write lock for a while
    locker = sqlite3.connect(
        tmp_path / "c" / "cache.db", isolation_level=None, check_same_thread=False
    )
    locker.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(HOLD_SECONDS, locker.rollback)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    ticks = 0
    release.start()
    started = time.perf_counter()
    again = await orch.execute_agent(AGENT, "Explain asyncio.Barrier")
    waited = time.perf_counter() - started
    stop.set()
    await ticking
    release.join()
    locker.close()

    assert again.success and not again.cached
    assert waited >= HOLD_SECONDS * 0.5  # the store really waited for the lock
    # the loop kept running meanwhile: at least a quarter of the 10 ms ticks that fit
    assert ticks >= waited / 0.01 / 4, (ticks, waited)
    assert sim.stats["requests"] == 2
    hit = await orch.execute_agent(AGENT, "Explain asyncio.Barrier")
    assert hit.cached, "stored once the lock was released"
    cache.close()
