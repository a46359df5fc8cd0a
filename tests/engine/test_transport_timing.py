"""The streamed attempt's clock and its per-piece deadline (issue 12's TTFT bias).

- TTFT starts when the built request is handed to the HTTP layer, not before the SDK builds
  it (checked by ordering against a deliberately slow request-building step, not by a bound).
- The per-piece deadline is a resettable timer, not a task per piece: a stalled stream times
  out, a steady one does not however long it lasts, and a cancel from outside stays a cancel.
  It must work on Python 3.10 (no ``asyncio.timeout`` there): run once under 3.10 too.

Real SDK over real HTTP on 127.0.0.1 against the simulator in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from claude_force_magic.engine.client import ClientHandle
from claude_force_magic.engine.transport import AttemptState, PieceDeadline, SDKTransport
from claude_force_magic.errors import APITimeoutError
from claude_force_magic.simulator import Latency, Simulator

PARAMS: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Explain one idea about generators."}],
}


@pytest.fixture
def paced_sim() -> Iterator[Simulator]:
    with Simulator(latency=Latency.fixed(0.0, ttft=0.01)) as sim:
        yield sim


@pytest.fixture
async def transport(paced_sim: Simulator) -> AsyncIterator[SDKTransport]:
    handle = ClientHandle(api_key="sk-test-transport", base_url=paced_sim.base_url)
    yield SDKTransport(handle)
    await handle.aclose()


async def _send(transport: SDKTransport, *, timeout: float = 30.0) -> AttemptState:
    state = AttemptState()
    await transport.send(PARAMS, timeout=timeout, on_text=lambda _: None, state=state)
    return state


async def test_ttft_starts_after_the_sdk_built_the_request(transport: SDKTransport) -> None:
    await _send(transport)  # warm: connection open, platform probed
    client = transport.handle.get()
    build = client._build_request
    built: list[tuple[float, float]] = []

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        time.sleep(0.05)  # a slow request-building step (a big prompt, a slow hook)
        request = build(*args, **kwargs)
        built.append((started, time.monotonic()))
        return request

    client._build_request = slow_build  # type: ignore[method-assign]
    state = await _send(transport)
    timing = state.timing
    assert timing is not None and timing.first_at is not None and len(built) == 1
    [(build_started, build_done)] = built
    # The clock starts once the request is built and handed over, so the slow build is not
    # part of the TTFT (before the fix sent_at preceded build_started).
    assert timing.sent_at >= build_done > build_started
    assert timing.first_at > timing.sent_at


async def _logged_served(sim: Simulator, request_id: str) -> float:
    """The served TTFT in the simulator's log (written as its handler returns, which may be
    just after the client read the last byte)."""
    for _ in range(500):
        served = sim.served_ttft().get(request_id)
        if served is not None:
            return served
        await asyncio.sleep(0.01)
    raise AssertionError(f"{request_id} never reached the simulator's log")


async def test_measured_ttft_is_never_less_than_what_the_server_served(
    transport: SDKTransport, paced_sim: Simulator
) -> None:
    for _ in range(3):
        state = await _send(transport)
        assert state.timing is not None and state.timing.ttft_s is not None
        served = state.timing.server_ttft_s
        assert served is not None
        logged = await _logged_served(paced_sim, state.request_id or "")
        assert served == pytest.approx(logged, abs=1e-5)
        # Sent before it arrived, received after it was written: one clock, causal order.
        assert state.timing.ttft_s >= served - 1e-5


async def test_an_injected_http_client_is_used_as_is(paced_sim: Simulator) -> None:
    import httpx2

    async with httpx2.AsyncClient() as http:
        handle = ClientHandle(api_key="sk-test", base_url=paced_sim.base_url, http_client=http)
        state = await _send(SDKTransport(handle))
        assert http.event_hooks["request"] == []  # no hook added to the caller's client
        assert state.timing is not None and state.timing.ttft_s is not None
        await handle.aclose()
        assert not http.is_closed


# ------------------------------------------------------------------ the per-piece deadline


async def _stall_under(timeout: float) -> str:
    """Wait 30 s for a piece under a ``timeout`` per-piece deadline: "timeout" when the
    deadline cancelled the wait, "cancel" when something else did."""
    deadline = PieceDeadline(timeout)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "timeout" if deadline.expired() else "cancel"
    finally:
        deadline.cancel()
    return "finished"


async def test_a_stalled_piece_cancels_and_is_reported_as_expired() -> None:
    task = asyncio.ensure_future(_stall_under(0.05))
    assert await task == "timeout"
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # our cancel request was consumed, none is left behind


async def test_the_deadline_resets_per_piece() -> None:
    # 20 pieces 20 ms apart (0.4 s in all) under a 0.2 s per-piece deadline: never fires.
    # Each gap has 10x headroom, generous for a loaded 2-core machine.
    deadline = PieceDeadline(0.2)
    try:
        for _ in range(20):
            await asyncio.sleep(0.02)
            deadline.reset()
    finally:
        deadline.cancel()
    assert not deadline.expired()


async def test_an_outside_cancel_is_a_cancel_not_a_timeout() -> None:
    started = asyncio.Event()

    async def guarded() -> None:
        deadline = PieceDeadline(30)
        try:
            started.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            assert not deadline.expired()
            raise
        finally:
            deadline.cancel()

    task = asyncio.ensure_future(guarded())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 tasks do not count cancels")
async def test_an_outside_cancel_racing_the_deadline_wins() -> None:
    loop = asyncio.get_running_loop()
    outcome: list[bool] = []

    async def guarded() -> None:
        deadline = PieceDeadline(0.05)
        # Cancelled from outside just after the deadline fired, before the task resumes.
        fire = deadline._check

        def fire_then_cancel() -> None:
            fire()
            me.cancel()

        assert deadline._handle is not None
        deadline._handle.cancel()
        deadline._handle = loop.call_at(deadline._due, fire_then_cancel)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append(deadline.expired())
            raise
        finally:
            deadline.cancel()

    me = asyncio.ensure_future(guarded())
    with pytest.raises(asyncio.CancelledError):
        await me
    assert outcome == [False]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 tasks do not count cancels")
async def test_a_cancel_count_left_behind_by_a_library_does_not_hide_a_timeout() -> None:
    # anyio on 3.10 (with pytest-asyncio's backported task) cancels the task inside its own
    # scope and never takes the request back: the task's count stays at 1. Our deadline's
    # timeout must still be a timeout (it was reported as a cancel).
    async def guarded() -> str:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # no uncancel(): the count stays 1
            await asyncio.sleep(0)
        return await _stall_under(0.05)

    assert await asyncio.ensure_future(guarded()) == "timeout"


async def test_a_stream_stalled_mid_way_times_out() -> None:
    # The first delta comes at once, the next one 5 s later: the 0.3 s per-piece deadline fires.
    with Simulator(latency=Latency.fixed(0.0, ttft=0.0, per_token=5.0)) as sim:
        handle = ClientHandle(api_key="sk-test", base_url=sim.base_url)
        state = AttemptState()
        pieces: list[str] = []
        with pytest.raises(APITimeoutError, match="per-piece timeout"):
            await SDKTransport(handle).send(PARAMS, timeout=0.3, on_text=pieces.append, state=state)
        await handle.aclose()
    assert len(pieces) == 1 and state.timing is not None and state.timing.deltas == 1
    task = asyncio.current_task()
    if sys.version_info >= (3, 11) and task is not None:
        assert task.cancelling() == 0


async def test_a_steady_stream_longer_than_the_timeout_completes() -> None:
    # 64 tokens at 20 ms each (over a second) under a 0.3 s per-piece deadline.
    with Simulator(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.02)) as sim:
        handle = ClientHandle(api_key="sk-test", base_url=sim.base_url)
        started = time.monotonic()
        state = AttemptState()
        await SDKTransport(handle).send(PARAMS, timeout=0.3, on_text=lambda _: None, state=state)
        await handle.aclose()
    assert state.timing is not None and state.timing.deltas > 10
    assert state.output_tokens is not None and time.monotonic() - started > 0.3


async def test_cancelling_a_streamed_attempt_is_a_cancel(paced_sim: Simulator) -> None:
    paced_sim.configure(latency=Latency.fixed(0.0, ttft=30.0))
    handle = ClientHandle(api_key="sk-test", base_url=paced_sim.base_url)
    task = asyncio.ensure_future(
        SDKTransport(handle).send(
            PARAMS, timeout=20.0, on_text=lambda _: None, state=AttemptState()
        )
    )
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await handle.aclose()


PY310_DEADLINE = """
import asyncio, sys
assert sys.version_info[:2] == (3, 10), sys.version
from claude_force_magic.engine.transport import PieceDeadline

async def stall_under(timeout):
    # True when the per-piece deadline ended the 30 s wait, False when an outside cancel did
    deadline = PieceDeadline(timeout)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return deadline.expired()
    finally:
        deadline.cancel()

async def steady():
    deadline = PieceDeadline(0.2)
    for _ in range(20):
        await asyncio.sleep(0.02)
        deadline.reset()
    deadline.cancel()
    return deadline.expired()

async def main():
    assert await stall_under(0.05) is True
    assert await steady() is False
    task = asyncio.ensure_future(stall_under(30))
    await asyncio.sleep(0.05)
    task.cancel()
    assert await task is False  # an outside cancel is not our timeout

asyncio.run(main())
print("ok")
"""


def test_the_deadline_works_on_python_310(
    run_on_python310: Callable[[str], subprocess.CompletedProcess[str]],
) -> None:
    proc = run_on_python310(PY310_DEADLINE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
