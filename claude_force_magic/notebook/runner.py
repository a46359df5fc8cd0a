"""One long-lived event loop in a background thread, driven from synchronous magics.

Why a thread (measured in ipykernel 7; see docs/notebook.md, "How it runs inside a kernel"): the
kernel's own loop is already running when a magic executes, so a magic cannot ``asyncio.run``
anything, and ``nest_asyncio`` drops queued execute requests during a nested run. Instead every
coroutine runs on this loop; the kernel thread waits in short slices so that the stop button
(``KeyboardInterrupt``) is seen within one slice, cancels the request, and re-raises.

One loop per session also means one ``AsyncAnthropic`` per session, created on this loop and
closed deliberately at unload: a client per cell that is never closed can hang later requests.

Nothing is started at import time; :class:`BackgroundLoop` starts its thread on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CANCEL_GRACE_SECONDS", "POLL_SECONDS", "BackgroundLoop"]

T = TypeVar("T")

#: How long the kernel thread blocks at a time; also the worst-case delay before an interrupt
#: is acted on.
POLL_SECONDS = 0.1
#: How long an interrupted call may take to unwind (close its connection) before we give up.
CANCEL_GRACE_SECONDS = 1.0


class BackgroundLoop:
    """An asyncio event loop running forever in one daemon thread.

    Thread-safe: :meth:`run`, :meth:`submit` and :meth:`wrap` may be called from any thread
    other than the loop's own; :meth:`start` and :meth:`stop` are idempotent and serialised
    by a lock. The loop is created lazily by the first call that needs it, and a stopped
    instance starts a fresh loop if used again.
    """

    __slots__ = ("_lock", "_loop", "_name", "_thread")

    def __init__(self, name: str = "claude-force-magic-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"BackgroundLoop({self._name!r}, {state})"

    @property
    def is_running(self) -> bool:
        """True while the loop thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, or None before the first use and after :meth:`stop`."""
        return self._thread

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread if needed and return its loop (idempotent, thread-safe)."""
        with self._lock:
            if self._loop is not None and self.is_running:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=self._serve, args=(loop, ready), name=self._name, daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(_cancel_all(loop))
            loop.run_until_complete(loop.shutdown_asyncgens())
            # The default executor's threads (DNS lookups, file I/O) would outlive the loop.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a ``concurrent.futures.Future``.

        Cancelling the returned future cancels the task on the loop. Raises ``RuntimeError``
        when called from the loop's own thread (waiting there would deadlock).
        """
        self._refuse_own_thread(coro)
        loop = self.start()
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _refuse_own_thread(self, coro: Coroutine[Any, Any, Any]) -> None:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "BackgroundLoop.run/submit was called from its own loop thread; await the "
                "coroutine directly instead."
            )

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        pump: Callable[[float], None] | None = None,
        wake: Callable[[], None] | None = None,
        poll: float = POLL_SECONDS,
    ) -> T:
        """Run ``coro`` on the loop and block until it finishes; return its result.

        The wait happens in slices of ``poll`` seconds. When ``pump`` is given it is called
        with the slice length instead of sleeping, on the calling thread: it should block up
        to that long for work (for example rendering streamed chunks) and return early when it
        has some. ``wake`` is called (on the loop thread) once the result is ready: it should
        make ``pump`` return at once, so the caller does not sit out the rest of a slice. A
        ``KeyboardInterrupt`` (the notebook's stop button) cancels the task,
        waits up to one second for it to unwind (so its connection is closed), and re-raises.
        Exceptions raised by ``coro`` propagate unchanged.
        """
        self._refuse_own_thread(coro)
        finished = threading.Event()
        fut = self.submit(_signal_when_done(coro, finished))
        if wake is not None:
            fut.add_done_callback(lambda _: wake())
        try:
            while True:
                if pump is not None:
                    pump(poll)
                    if fut.done():
                        return fut.result()
                    continue
                try:
                    return fut.result(timeout=poll)
                except concurrent.futures.TimeoutError:
                    # A coroutine that raises TimeoutError itself also lands here: re-raise it
                    # rather than waiting forever on a future that is already done.
                    if fut.done():
                        raise
        except KeyboardInterrupt:
            fut.cancel()
            finished.wait(CANCEL_GRACE_SECONDS)
            raise

    def wrap(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run ``coro`` on the background loop and return an awaitable for the caller's loop.

        For top-level ``await`` in a notebook: the client lives on the background loop, so
        it must not be awaited directly from the kernel's loop. Cancelling the awaitable
        cancels the task on the background loop.
        """
        return asyncio.wrap_future(self.submit(coro))

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task on the loop, stop it, join the thread and close the loop.

        Idempotent. Raises ``RuntimeError`` if called from the loop thread itself. If the thread
        does not finish within ``timeout`` seconds it is left as a daemon thread.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("BackgroundLoop.stop() cannot be called from the loop thread.")
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


async def _signal_when_done(coro: Awaitable[T], finished: threading.Event) -> T:
    try:
        return await coro
    finally:
        finished.set()


async def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    current = asyncio.current_task(loop)
    tasks = [t for t in asyncio.all_tasks(loop) if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)
