"""The call pipeline over an in-memory transport: gate, retries, breaker, billing, no sockets.

The real-SDK, real-HTTP tests (test_orchestrator*.py, test_billing.py) stay the reference;
these check the seams the reshape added: injected transport, limiter and breaker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from claude_force_magic.engine.breaker import CircuitBreaker
from claude_force_magic.engine.gate import AttemptBreaker, AttemptGate, AttemptLimiter
from claude_force_magic.engine.limits import RateLimiter
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.transport import InMemoryTransport, MessagesTransport
from claude_force_magic.errors import (
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    ServerError,
)

AGENT = "python-expert"


def _orch(transport: InMemoryTransport, **kwargs: Any) -> AsyncAgentOrchestrator:
    kwargs.setdefault("calls_per_minute", None)
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("enable_cache", False)
    return AsyncAgentOrchestrator(transport=transport, **kwargs)


async def test_an_injected_transport_answers_without_a_key_or_a_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    transport = InMemoryTransport(["Use a semaphore to bound concurrency."])
    orch = _orch(transport)
    result = await orch.execute_agent(AGENT, "How do I bound concurrency?", max_tokens=64)
    assert result.success and result.output == "Use a semaphore to bound concurrency."
    [params] = transport.sent
    assert params["max_tokens"] == 64
    assert params["messages"][-1]["content"] == "How do I bound concurrency?"
    assert result.metadata["attempts"] == 1 and result.metadata["status"] == "ok"
    await orch.close()
    assert not transport.closed  # the caller's transport is the caller's to close


async def test_streamed_pieces_reach_the_caller_in_order() -> None:
    transport = InMemoryTransport(["one two three"])
    orch = _orch(transport)
    pieces = [p async for p in orch.stream_agent(AGENT, "Count")]
    *text, result = pieces
    assert "".join(map(str, text)) == "one two three" and len(text) == 3
    assert getattr(result, "success", False)


class _RecordingBreaker:
    """A breaker of its own (the AttemptBreaker protocol): records each attempt's outcome."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            self.outcomes.append(type(exc).__name__)
            raise
        self.outcomes.append("ok")


async def test_a_server_error_is_retried_and_counted_by_the_injected_breaker() -> None:
    transport = InMemoryTransport([ServerError("boom", status_code=500), "fine"])
    breaker = _RecordingBreaker()
    orch = _orch(transport, max_retries=1, breaker=breaker)
    result = await orch.execute_agent(AGENT, "Try twice")
    assert result.success and result.metadata["attempts"] == 2
    assert breaker.outcomes == ["ServerError", "ok"]  # one verdict per attempt
    assert orch.breaker is breaker


async def test_an_open_injected_breaker_fails_fast_without_sending() -> None:
    transport = InMemoryTransport([ServerError("down", status_code=503)])
    orch = _orch(transport, breaker=CircuitBreaker(threshold=1, cooldown_seconds=60))
    first = await orch.execute_agent(AGENT, "First")
    assert not first.success and isinstance(first.error, ServerError)
    second = await orch.execute_agent(AGENT, "Second")
    assert isinstance(second.error, CircuitOpenError)
    assert len(transport.sent) == 1  # nothing was sent while the circuit was open
    assert second.metadata["cost_usd"] == 0.0


async def test_a_client_error_does_not_open_the_breaker_and_costs_nothing() -> None:
    transport = InMemoryTransport([BadRequestError("bad", status_code=400)] * 3)
    orch = _orch(transport, breaker=CircuitBreaker(threshold=1, cooldown_seconds=60))
    for _ in range(3):
        result = await orch.execute_agent(AGENT, "Bad")
        assert isinstance(result.error, BadRequestError) and result.metadata["cost_usd"] == 0.0
    assert orch.breaker.state == "closed"  # type: ignore[attr-defined]
    assert len(transport.sent) == 3


async def test_the_injected_limiter_books_every_attempt() -> None:
    # A frozen clock: no refill between attempts, so the level shows exactly what was booked.
    limiter = RateLimiter(6000, clock=lambda: 1000.0)
    transport = InMemoryTransport(["a", "b", "c"])
    orch = _orch(transport, limiter=limiter)
    await orch.execute_multiple([(AGENT, f"task {i}") for i in range(3)])
    snap = limiter.snapshot()["requests"]
    assert snap is not None and snap["level"] == pytest.approx(snap["per_minute"] - 3)


async def test_the_gate_bounds_attempts_in_flight() -> None:
    transport = InMemoryTransport(default="a b c d e f", piece_delay=0.01)
    in_flight = 0
    peak = 0
    send = transport.send

    async def counting_send(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await send(*args, **kwargs)
        finally:
            in_flight -= 1

    transport.send = counting_send  # type: ignore[method-assign]
    orch = _orch(transport, max_concurrent=3)
    results = await orch.execute_multiple(
        [(AGENT, f"task {i}") for i in range(12)], use_cache=False
    )
    assert all(r.success for r in results)
    assert peak == 3


def test_things_that_are_not_a_transport_limiter_or_breaker_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="transport must implement"):
        AsyncAgentOrchestrator(transport=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="limiter must implement"):
        AsyncAgentOrchestrator(limiter="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="breaker must implement"):
        AsyncAgentOrchestrator(breaker=5)  # type: ignore[arg-type]


def test_the_stock_pieces_satisfy_the_protocols() -> None:
    assert isinstance(InMemoryTransport(), MessagesTransport)
    assert isinstance(RateLimiter(), AttemptLimiter)
    assert isinstance(CircuitBreaker(), AttemptBreaker)


def test_the_gate_semaphore_exists_before_any_loop_and_rebinds_per_loop() -> None:
    gate = AttemptGate(2, RateLimiter(), CircuitBreaker())
    first = gate._semaphore  # BUG-002: made eagerly, with the gate

    async def one() -> asyncio.Semaphore:
        async with gate.attempt(1, 1, deadline=None):
            return gate._semaphore

    assert asyncio.run(one()) is first
    assert asyncio.run(one()) is not first  # a new loop gets a fresh semaphore
