"""The background event-loop runner: results, errors, interrupts, awaitables, shutdown."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from claude_force_magic.notebook.runner import BackgroundLoop


@pytest.fixture
def runner() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop(name="test-runner")
    yield loop
    loop.stop()


async def _answer(value: int, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return value


async def _sleep_until_cancelled(cancelled: threading.Event) -> None:
    """Sleep far longer than any test; set ``cancelled`` when the sleep is cancelled."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_run_returns_the_coroutine_result_on_the_background_thread(runner: BackgroundLoop) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert runner.run(_answer(42)) == 42
    assert runner.run(where()) == "test-runner"
    assert runner.is_running


def test_exceptions_propagate_unchanged(runner: BackgroundLoop) -> None:
    async def boom() -> None:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        runner.run(boom())


def test_a_coroutine_raising_timeout_error_is_reraised_not_spun_on(runner: BackgroundLoop) -> None:
    async def times_out() -> None:
        raise TimeoutError("inner timeout")

    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="inner timeout"):
        runner.run(times_out())
    assert time.perf_counter() - start < 1.0


def test_keyboard_interrupt_cancels_the_task_and_leaves_the_runner_usable(
    runner: BackgroundLoop,
) -> None:
    cancelled = threading.Event()

    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        runner.run(_sleep_until_cancelled(cancelled))
    elapsed = time.perf_counter() - start
    timer.join()
    assert cancelled.is_set(), "the interrupt must cancel the task, not leave it running"
    assert elapsed < 1.5
    assert runner.run(_answer(7)) == 7


def test_interrupt_inside_the_pump_also_cancels(runner: BackgroundLoop) -> None:
    cancelled = threading.Event()
    calls = 0

    def pump(timeout: float) -> None:
        nonlocal calls
        calls += 1
        time.sleep(min(timeout, 0.01))
        if calls == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(_sleep_until_cancelled(cancelled), pump=pump)
    assert cancelled.wait(1.0)


def test_pump_is_called_on_the_calling_thread_until_done(runner: BackgroundLoop) -> None:
    threads: set[str] = set()

    def pump(timeout: float) -> None:
        threads.add(threading.current_thread().name)
        time.sleep(0.005)

    assert runner.run(_answer(5, delay=0.05), pump=pump) == 5
    assert threads == {threading.current_thread().name}


def test_wake_ends_the_pumps_wait_once_the_result_is_ready(runner: BackgroundLoop) -> None:
    import queue

    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    waits: list[str] = []

    def pump(timeout: float) -> None:
        try:
            waits.append(events.get(timeout=timeout))
        except queue.Empty:
            waits.append("slice ran out")

    assert runner.run(_answer(6), pump=pump, wake=lambda: events.put("woken"), poll=30.0) == 6
    assert waits == ["woken"]


def test_wrap_gives_an_awaitable_for_another_loop(runner: BackgroundLoop) -> None:
    async def main() -> int:
        return await runner.wrap(_answer(3, delay=0.01))

    assert asyncio.run(main()) == 3


def test_cancelling_the_wrapped_awaitable_cancels_the_background_task(
    runner: BackgroundLoop,
) -> None:
    cancelled = threading.Event()

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(runner.wrap(_sleep_until_cancelled(cancelled)), 0.1)

    asyncio.run(main())
    assert cancelled.wait(1.0)


def test_submit_from_the_loop_thread_is_refused(runner: BackgroundLoop) -> None:
    async def nested() -> None:
        runner.run(_answer(1))

    with pytest.raises(RuntimeError, match="own loop thread"):
        runner.run(nested())


def test_concurrent_callers_share_one_loop_thread(runner: BackgroundLoop) -> None:
    results: list[int] = []

    def call(i: int) -> None:
        results.append(runner.run(_answer(i, delay=0.02)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))
    assert [t.name for t in threading.enumerate()].count("test-runner") == 1


def test_stop_cancels_pending_tasks_and_joins_the_thread(runner: BackgroundLoop) -> None:
    cancelled = threading.Event()

    runner.submit(_sleep_until_cancelled(cancelled))
    thread = runner.thread
    assert thread is not None
    runner.stop()
    assert not thread.is_alive()
    assert cancelled.is_set()
    assert runner.thread is None
    runner.stop()  # idempotent


def test_a_stopped_runner_starts_a_fresh_loop_on_next_use(runner: BackgroundLoop) -> None:
    assert runner.run(_answer(1)) == 1
    runner.stop()
    assert not runner.is_running
    assert runner.run(_answer(2)) == 2
    assert runner.is_running


def test_nothing_starts_before_first_use() -> None:
    loop = BackgroundLoop(name="never-used")
    assert loop.thread is None
    assert "never-used" not in [t.name for t in threading.enumerate()]
    assert "stopped" in repr(loop)
