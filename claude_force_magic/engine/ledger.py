"""What a call costs and what it records: budget reservation, settlement, metrics.

Every call that goes out is settled exactly once: reserved before the first attempt
(:meth:`Ledger.reserve`, the worst case: the input estimate plus ``max_tokens`` of output),
then settled at what the API billed (:meth:`Ledger.settle_success`,
:meth:`Ledger.settle_failure`), which also builds the :class:`AgentResult` and records one
metrics row. The billing rules:

- a sent attempt that ended without a final answer (cancelled, timed out, cut mid-stream) is
  billed its input (the stream's ``message_start`` count, else the estimate) and the output
  streamed so far (:func:`attempt_usage`); an attempt the server answered with an HTTP error,
  or that failed to connect, costs nothing;
- a complete but unusable answer (a refusal, empty content) is billed its own usage;
- with nothing billed the cost is 0 when nothing was sent, the circuit was open or the server
  answered with an error status; after a dropped connection it stays unknown (None).

Results carry :class:`CallMetadata`, one typed record with one name per count (the token
counts are a :class:`~.response.Usage`, in the Messages API's names); ``AgentResult.metadata``
stays the plain mapping users read (:meth:`CallMetadata.to_mapping`, same keys and values as
before), and the metrics row is translated from it in one place (:meth:`Ledger.record`).

Streaming metrics (``ttft_s``, ``tpot_s``, ``itl``, ``output_tokens_per_s``) come from the
:class:`~.transport.StreamTiming` of the attempt that produced the answer
(:func:`stream_metrics`); they are None for non-streamed calls, cache hits and failed calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import APIError, CircuitOpenError, ClaudeForceError
from .budget import Budget, Reservation
from .estimate import estimate_text_tokens
from .response import Answer, Usage
from .result import AgentResult
from .transport import AttemptState, StreamTiming

if TYPE_CHECKING:
    import logging

    from ..metrics import Metrics
    from ..pricing import PriceTable
    from .request import PreparedCall

__all__ = [
    "CallMetadata",
    "Ledger",
    "Progress",
    "attempt_usage",
    "call_status",
    "stream_metrics",
    "sum_usage",
]


@dataclass
class CallMetadata:
    """Everything known about one call's outcome (see :data:`~.result.METADATA_KEYS`)."""

    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    saved_usd: float = 0.0
    prompt_cache_saved_usd: float | None = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False
    cache_age_s: float | None = None
    stop_reason: str | None = None
    request_id: str | None = None
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    status: str | None = None
    cut: bool = False
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl: dict[str, float | int] | None = None
    output_tokens_per_s: float | None = None
    server_ttft_s: float | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The ``AgentResult.metadata`` users read: every key of ``METADATA_KEYS``."""
        return {
            "model": self.model,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cache_creation_input_tokens": self.usage.cache_creation_input_tokens,
            "cache_read_input_tokens": self.usage.cache_read_input_tokens,
            "cache_creation_5m_input_tokens": self.usage.cache_creation_input_tokens
            - self.usage.ephemeral_1h_input_tokens,
            "cache_creation_1h_input_tokens": self.usage.ephemeral_1h_input_tokens,
            "cost_usd": self.cost_usd,
            "saved_usd": self.saved_usd,
            "prompt_cache_saved_usd": self.prompt_cache_saved_usd,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
            "cached": self.cached,
            "cache_age_s": self.cache_age_s,
            "stop_reason": self.stop_reason,
            "request_id": self.request_id,
            "truncated": self.truncated,
            "warnings": list(self.warnings),
            "status": self.status,
            "cut": self.cut,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "itl": None if self.itl is None else dict(self.itl),
            "output_tokens_per_s": self.output_tokens_per_s,
            "server_ttft_s": self.server_ttft_s,
        }


@dataclass
class Progress:
    """What the live part of a call did, for the result even when it failed.

    ``billed`` holds the usage of every attempt that was sent but ended without a final
    answer (cancelled, timed out, failed mid-stream): the API bills those tokens too.
    """

    attempts: int = 0
    emitted: list[str] = field(default_factory=list)
    request_id: str | None = None
    sent: bool = False
    stream: AttemptState | None = None
    billed: list[Usage] = field(default_factory=list)


def _is_cancel_or_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, TimeoutError))


def attempt_usage(
    input_estimate: int, state: AttemptState | None, exc: BaseException
) -> Usage | None:
    """What the API bills for one sent attempt that ended with ``exc`` (None: nothing).

    Input: the stream's ``message_start`` count, else ``input_estimate``. Output: the last
    count a ``message_delta`` reported or the text received, whichever is larger. An attempt
    the server answered with an HTTP error, or that failed to connect, costs nothing; one
    cancelled or timed out before the stream started is charged its input estimate.
    """
    if isinstance(getattr(exc, "usage", None), Usage):
        return None  # a complete but unusable answer: billed from its own usage by the caller
    started = state is not None and state.started
    if not started and not _is_cancel_or_timeout(exc):
        return None
    text = "".join(state.text) if state is not None else ""
    output = max(
        (state.output_tokens or 0) if state is not None else 0,
        estimate_text_tokens(text) if text else 0,
    )
    if state is not None and state.started:
        written_1h = min(state.cache_creation_1h_input_tokens, state.cache_creation_input_tokens)
        return Usage(
            input_tokens=state.input_tokens if state.input_tokens is not None else input_estimate,
            output_tokens=output,
            cache_creation_input_tokens=state.cache_creation_input_tokens,
            cache_read_input_tokens=state.cache_read_input_tokens,
            ephemeral_5m_input_tokens=state.cache_creation_input_tokens - written_1h,
            ephemeral_1h_input_tokens=written_1h,
        )
    return Usage(input_tokens=input_estimate, output_tokens=output)


def stream_metrics(timing: StreamTiming | None, output_tokens: int) -> dict[str, Any]:
    """``ttft_s``, ``tpot_s``, ``itl`` (gap summary), ``output_tokens_per_s`` and
    ``server_ttft_s`` (the server's own TTFT, when it reports one) of one streamed attempt that
    produced ``output_tokens``; every value None when not streamed."""
    if timing is None:
        return dict.fromkeys(
            ("ttft_s", "tpot_s", "itl", "output_tokens_per_s", "server_ttft_s"), None
        )
    return {
        "server_ttft_s": timing.server_ttft_s,
        "ttft_s": timing.ttft_s,
        "tpot_s": timing.tpot_s(output_tokens),
        "itl": timing.gaps.summary(),
        "output_tokens_per_s": timing.tokens_per_s(output_tokens),
    }


def sum_usage(usages: Iterable[Usage]) -> Usage:
    """The token counts of several attempts added up."""
    total = Usage()
    for u in usages:
        total = Usage(
            input_tokens=total.input_tokens + u.input_tokens,
            output_tokens=total.output_tokens + u.output_tokens,
            cache_creation_input_tokens=total.cache_creation_input_tokens
            + u.cache_creation_input_tokens,
            cache_read_input_tokens=total.cache_read_input_tokens + u.cache_read_input_tokens,
            ephemeral_5m_input_tokens=total.ephemeral_5m_input_tokens + u.ephemeral_5m_input_tokens,
            ephemeral_1h_input_tokens=total.ephemeral_1h_input_tokens + u.ephemeral_1h_input_tokens,
        )
    return total


def call_status(exc: BaseException | None) -> str:
    """The status recorded for a call that ended with ``exc``: ``ok`` (None), ``cancelled``,
    ``timeout`` (per-attempt timeout or the overall deadline) or ``error``."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, TimeoutError):  # APITimeoutError and DeadlineExceededError are both
        return "timeout"
    return "error"


class Ledger:
    """Reserves, settles and records calls against one budget, price table and metrics.

    ``prices`` and ``metrics`` are callables so that the (lazily built) table and metrics of
    the orchestrator are only created when a call needs them.
    """

    def __init__(
        self,
        budget: Budget,
        prices: Callable[[], PriceTable],
        metrics: Callable[[], Metrics],
        log: logging.Logger,
    ) -> None:
        self.budget = budget
        self._prices = prices
        self._metrics = metrics
        self._log = log

    def reserve(self, call: PreparedCall) -> Reservation:
        """Hold the call's worst-case cost; raises :class:`BudgetExceededError` (or
        :class:`PricingError` with a cap and an unknown price) before anything is sent."""
        estimate = self._prices().estimate(call.model, call.input_estimate, call.max_tokens)
        return self.budget.reserve(estimate, model=call.model)

    def estimate_batch(self, calls: Sequence[PreparedCall]) -> float | None:
        """The worst case of ``calls`` sent as Message Batch items: each input estimate plus
        its ``max_tokens`` of output at the batch rate (50 %); None if a price is unknown."""
        prices = self._prices()
        total = 0.0
        for call in calls:
            estimate = prices.estimate(call.model, call.input_estimate, call.max_tokens, batch=True)
            if estimate is None:
                return None
            total += estimate
        return total

    def reserve_batch(self, calls: Sequence[PreparedCall]) -> Reservation:
        """Hold :meth:`estimate_batch` of ``calls`` (one Message Batch). Raises like
        :meth:`reserve`, before anything is sent."""
        estimate = self.estimate_batch(calls)
        model = calls[0].model if calls else ""
        if estimate is None:  # name the model without a price in the error
            prices = self._prices()
            model = next((c.model for c in calls if c.model not in prices), model)
        return self.budget.reserve(estimate, model=model)

    def batch_result(
        self, call: PreparedCall, outcome: Answer | APIError, *, latency_s: float
    ) -> tuple[AgentResult, float | None]:
        """The result of one Message Batch item and its cost at the batch rate (50 %).

        ``outcome`` is the checked answer, or the item's error: one that carries ``usage``
        (an unusable answer) is billed that usage, any other (errored, expired, canceled)
        costs 0. Neither recorded nor charged here: a batch is recorded
        (:meth:`record_batch`) and settled once, as a whole, when it has been read (:mod:`.batch`).
        """
        prices = self._prices()
        meta = CallMetadata(model=call.model, latency_s=latency_s, attempts=1)
        if isinstance(outcome, Answer):
            meta.usage = outcome.usage
            meta.cost_usd = prices.cost(call.model, outcome.usage, batch=True)
            meta.stop_reason, meta.request_id = outcome.stop_reason, outcome.request_id
            meta.truncated, meta.status = outcome.truncated, "ok"
            meta.warnings = [*call.warnings, *outcome.warnings]
            result = AgentResult(call.agent.name, True, outcome.text, [], meta.to_mapping())
        else:
            usage = getattr(outcome, "usage", None)
            meta.status, meta.request_id = "error", outcome.request_id
            meta.stop_reason = getattr(outcome, "stop_reason", None)
            meta.warnings = list(call.warnings)
            if isinstance(usage, Usage):
                meta.usage = usage
                meta.cost_usd = prices.cost(call.model, usage, batch=True)
            else:
                meta.cost_usd = 0.0
            result = AgentResult.failure(call.agent.name, outcome, metadata=meta.to_mapping())
        return result, meta.cost_usd

    def record_batch(self, result: AgentResult) -> None:
        """Record one Message Batch item's result (from :meth:`batch_result`) with
        ``call_mode="batch"``."""
        m = result.metadata
        meta = CallMetadata(
            model=m.get("model"),
            usage=Usage(
                input_tokens=int(m.get("input_tokens") or 0),
                output_tokens=int(m.get("output_tokens") or 0),
                cache_creation_input_tokens=int(m.get("cache_creation_input_tokens") or 0),
                cache_read_input_tokens=int(m.get("cache_read_input_tokens") or 0),
            ),
            cost_usd=m.get("cost_usd"),
            latency_s=float(m.get("latency_s") or 0.0),
            attempts=1,
            stop_reason=m.get("stop_reason"),
            request_id=m.get("request_id"),
            status=m.get("status"),
        )
        self.record(result.agent_name, meta, result, call_mode="batch")

    def settle_success(
        self,
        call: PreparedCall,
        reservation: Reservation,
        progress: Progress,
        answer: Answer,
        started: float,
    ) -> tuple[AgentResult, float | None]:
        """Charge the answer (plus earlier billed attempts), record it; returns the result and
        the cost of the answer alone (what a cache hit later saves)."""
        prices = self._prices()
        answer_cost = prices.cost(call.model, answer.usage)
        usage = sum_usage([*progress.billed, answer.usage])
        cost = prices.cost(call.model, usage) if progress.billed else answer_cost
        self.budget.settle(reservation, cost)
        meta = CallMetadata(
            model=call.model,
            usage=usage,
            cost_usd=cost,
            prompt_cache_saved_usd=prices.prompt_cache_saving(call.model, usage),
            latency_s=time.perf_counter() - started,
            attempts=progress.attempts,
            stop_reason=answer.stop_reason,
            request_id=answer.request_id,
            truncated=answer.truncated,
            warnings=[*call.warnings, *answer.warnings],
            status="ok",
            **stream_metrics(
                progress.stream.timing if progress.stream is not None else None,
                answer.usage.output_tokens,
            ),
        )
        result = AgentResult(call.agent.name, True, answer.text, [], meta.to_mapping())
        self.record(result.agent_name, meta, result)
        return result, answer_cost

    def settle_failure(
        self,
        call: PreparedCall,
        reservation: Reservation,
        progress: Progress,
        exc: BaseException,
        started: float,
    ) -> AgentResult:
        """Charge a call that ended without an answer (the rules in the module docstring),
        settle the budget, record it and build its failed result."""
        usages = list(progress.billed)
        final = getattr(exc, "usage", None)
        if isinstance(final, Usage):
            usages.append(final)
        output = "".join(progress.emitted)
        meta = CallMetadata(
            model=call.model,
            latency_s=0.0,
            attempts=progress.attempts,
            request_id=progress.request_id,
            stop_reason=getattr(exc, "stop_reason", None),
            warnings=list(call.warnings),
            status=call_status(exc),
            cut=bool(output),
        )
        if usages:
            meta.usage = sum_usage(usages)
            meta.cost_usd = self._prices().cost(call.model, meta.usage)
            meta.prompt_cache_saved_usd = self._prices().prompt_cache_saving(call.model, meta.usage)
            self.budget.settle(reservation, meta.cost_usd)
        else:
            self.budget.release(reservation)
            if (
                not progress.sent
                or isinstance(exc, CircuitOpenError)
                or getattr(exc, "status_code", None)
            ):
                meta.cost_usd = 0.0
        meta.latency_s = time.perf_counter() - started
        result = _failed_result(call.agent.name, exc, meta, output)
        self.record(result.agent_name, meta, result)
        return result

    def cache_hit(self, call: PreparedCall, entry: dict[str, Any], started: float) -> AgentResult:
        """The result of an answer served from the cache (costs 0; ``saved_usd`` is what it
        cost live), recorded like a call."""
        stored = entry.get("metadata") or {}
        meta = CallMetadata(
            model=call.model,
            usage=Usage(
                input_tokens=int(entry["input_tokens"]),
                output_tokens=int(entry["output_tokens"]),
                cache_creation_input_tokens=int(stored.get("cache_creation_input_tokens", 0)),
                cache_read_input_tokens=int(stored.get("cache_read_input_tokens", 0)),
                ephemeral_5m_input_tokens=int(stored.get("cache_creation_5m_input_tokens", 0)),
                ephemeral_1h_input_tokens=int(stored.get("cache_creation_1h_input_tokens", 0)),
            ),
            cost_usd=0.0,
            saved_usd=float(entry["estimated_cost"]),
            latency_s=time.perf_counter() - started,
            attempts=0,
            cached=True,
            cache_age_s=float(entry["age_seconds"]),
            stop_reason=stored.get("stop_reason"),
            request_id=stored.get("request_id"),
            truncated=bool(stored.get("truncated", False)),
            warnings=[*call.warnings, *stored.get("warnings", [])],
        )
        result = AgentResult(call.agent.name, True, entry["response"], [], meta.to_mapping())
        self.record(result.agent_name, meta, result)
        return result

    def record(
        self,
        agent_name: str,
        meta: CallMetadata,
        result: AgentResult,
        *,
        call_mode: str = "interactive",
    ) -> None:
        """Record one call; a failing metrics sink never fails the call (BUG-008)."""
        try:
            from ..metrics import CallRecord

            self._metrics().record(
                CallRecord(
                    timestamp=time.time(),
                    agent_name=agent_name,
                    model=meta.model or "",
                    latency_s=meta.latency_s,
                    input_tokens=meta.usage.input_tokens,
                    output_tokens=meta.usage.output_tokens,
                    cache_read_tokens=meta.usage.cache_read_input_tokens,
                    cache_write_tokens=meta.usage.cache_creation_input_tokens,
                    cache_write_1h_tokens=meta.usage.ephemeral_1h_input_tokens,
                    cost_usd=meta.cost_usd,
                    saved_usd=meta.saved_usd,
                    prompt_cache_saved_usd=meta.prompt_cache_saved_usd or 0.0,
                    cached=meta.cached,
                    success=result.success,
                    error_type=None if result.error is None else type(result.error).__name__,
                    attempts=meta.attempts,
                    stop_reason=meta.stop_reason,
                    request_id=meta.request_id,
                    status=meta.status or ("ok" if result.success else "error"),
                    ttft_s=meta.ttft_s,
                    tpot_s=meta.tpot_s,
                    itl_p50_s=None if meta.itl is None else float(meta.itl["p50_s"]),
                    output_tokens_per_s=meta.output_tokens_per_s,
                    call_mode=call_mode,
                )
            )
        except Exception as exc:
            from ..guard import sanitize_for_log

            self._log.warning(
                "recording metrics failed (the call itself is unaffected): %s",
                sanitize_for_log(f"{type(exc).__name__}: {exc}"),
            )


def _failed_result(
    agent_name: str, exc: BaseException, meta: CallMetadata, output: str
) -> AgentResult:
    if isinstance(exc, ClaudeForceError):
        return AgentResult.failure(agent_name, exc, metadata=meta.to_mapping(), output=output)
    words = "cancelled" if meta.status == "cancelled" else f"stopped by {type(exc).__name__}"
    cost_text = "an unknown amount" if meta.cost_usd is None else f"${meta.cost_usd:.6g}"
    return AgentResult(
        agent_name,
        False,
        output,
        [f"The call was {words}; it was charged {cost_text} for the tokens billed so far."],
        meta.to_mapping(),
    )
