"""The response store the engine depends on, and where its blocking calls run.

:class:`ResponseStore` is what the pipeline needs from a response cache: ``get`` and ``set``
keyed by agent, task, model and request options, and ``close``. The signed disk
:class:`~claude_force_magic.cache.store.ResponseCache` satisfies it; a shared (Redis) store can
be passed as ``AsyncAgentOrchestrator(store=...)`` without the engine changing.

Where do store calls run? A disk store is SQLite: a ``get`` is a fraction of a millisecond,
but when another process holds the database lock it waits (diskcache's busy timeout is 60 s),
and a network store waits on the network. Run on the event loop, such a wait would freeze
every call and the notebook's display for its whole length. So each orchestrator runs its
store calls on one dedicated thread (:class:`StoreThread`): a stuck store ties up that thread,
never the loop (calls that hit the same stuck store queue behind it, as they would on its
lock). One thread rather than a pool because SQLite connections are per thread: the store's
``close`` is run on that same thread, so closing an orchestrator really closes the database
(a read-only remount, or another process, can then have it). The price is one thread hop per
lookup and per store, measured in docs/engine.md.

A call that is cancelled while its store call runs stops waiting at once; the store call
itself finishes in its thread (a lookup's answer is dropped; a store still writes the answer
that was paid for).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable

from ..errors import CacheError

__all__ = ["ResponseStore", "StoreThread"]

_T = TypeVar("_T")


@runtime_checkable
class ResponseStore(Protocol):
    """A cache of answers (the disk ``ResponseCache`` is one). Calls may block: the engine
    runs them off the event loop. Failures raise :class:`CacheError`; the engine then calls
    live (lookup) or returns the answer unstored (store)."""

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> dict[str, Any] | None:
        """The stored answer (``response``, ``input_tokens``, ``output_tokens``,
        ``estimated_cost``, ``age_seconds``, ``metadata``...) or None."""
        ...

    def set(
        self,
        agent_name: str,
        task: str,
        model: str,
        response: str,
        input_tokens: int,
        output_tokens: int,
        estimated_cost: float,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_hours: float | None = None,
        **request: Any,
    ) -> bool:
        """Store an answer; True if it was stored."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


class StoreThread:
    """One dedicated thread for an orchestrator's store calls, started on first use."""

    __slots__ = ("_closed", "_lock", "_pool")

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise CacheError("The orchestrator was closed; its response store is closed.")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="cfm-store")
            return self._pool

    async def run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` on the store thread, awaited from the running loop.

        Raises :class:`CacheError` once :meth:`close` was called."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), functools.partial(fn, *args, **kwargs))

    async def close(self, store: ResponseStore | None) -> None:
        """Close ``store`` on the store thread (its connections live there), then stop the
        thread. Idempotent; later :meth:`run` calls raise :class:`CacheError`."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is None:
            return
        try:
            if store is not None:
                await asyncio.get_running_loop().run_in_executor(pool, store.close)
        finally:
            pool.shutdown(wait=False)
