"""The call pipeline: one prepared call from cache lookup to settlement.

Every entry point of :class:`~.orchestrator.AsyncAgentOrchestrator` (``execute_agent``,
``execute``, ``stream_agent``, ``execute_multiple``, ``run_workflow``) and, later,
conversations and Message Batches run calls through :meth:`CallPipeline.run`, so they share
one implementation of the order that matters:

cache lookup (on the store thread) -> API key check -> output-limit check -> budget
reservation -> [per attempt: breaker -> concurrency slot -> rate limiter -> transport, under
the per-attempt timeout] with retries, all under the overall deadline -> settlement (success,
failure or cancellation, billed as the ledger says) -> cache store (on the store thread).

The pieces are injected: a :class:`~.transport.MessagesTransport`, an
:class:`~.gate.AttemptGate` (limiter and breaker protocols), a :class:`~.ledger.Ledger` and a
:class:`~.store.ResponseStore` reached through a :class:`~.store.StoreThread`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import (
    APIError,
    CacheError,
    CircuitOpenError,
    ClaudeForceError,
    ConfigurationError,
    DeadlineExceededError,
    RateLimitError,
)
from .gate import Admission, AttemptGate
from .ledger import Ledger, Progress, attempt_usage
from .response import Answer
from .result import AgentResult
from .retry import RetryPolicy, call_with_retries
from .store import ResponseStore, StoreThread
from .transport import AttemptState, MessagesTransport

if TYPE_CHECKING:
    import logging

    from .budget import Reservation
    from .request import PreparedCall

__all__ = ["CallPipeline", "OnCancelled"]

#: Called with the settled, failed :class:`AgentResult` of a call that is being cancelled
#: (its ``output`` is the text streamed so far, ``metadata["status"] == "cancelled"``), on the
#: event loop, just before the ``CancelledError`` propagates. Exceptions it raises are logged.
OnCancelled = Callable[[AgentResult], None]


def _emitter(progress: Progress, on_text: Callable[[str], None]) -> Callable[[str], None]:
    """``on_text`` that also keeps what reached the caller (the output of a cut call)."""

    def emit(piece: str) -> None:
        progress.emitted.append(piece)
        on_text(piece)

    return emit


def _learn_from_failure(
    admission: Admission, state: AttemptState, exc: APIError, progress: Progress
) -> None:
    """Tell the limiter what a failed attempt showed: the headers of a whole answer that
    failed its checks, else of the error response, else a 429's ``retry_after``."""
    if exc.request_id:
        progress.request_id = exc.request_id
    if state.message is not None:
        admission.observe(state.headers)
    if state.error_headers is not None:
        admission.observe(state.error_headers)
    elif isinstance(exc, RateLimitError):
        admission.refused(exc)


def _key_options(call: PreparedCall) -> dict[str, Any]:
    """The options that shaped a cached answer's key, for ``%agent cache show``."""
    request = call.cache_request
    return {
        "max_tokens": request.get("max_tokens"),
        "stop_sequences": request.get("stop_sequences"),
        "history_turns": len(request.get("history") or ()),
        "definition_hash": request.get("definition_hash"),
    }


class CallPipeline:
    """Runs prepared calls through transport, gate, ledger and store (see the module doc).

    ``store`` returns the store to use (opened lazily by the owner) and ``store_usable`` says
    cheaply whether there can be one (no thread hop when caching is off); ``is_closed`` is
    checked before every attempt; ``on_ready`` runs once the transport said it can send.
    """

    def __init__(
        self,
        *,
        transport: MessagesTransport,
        gate: AttemptGate,
        ledger: Ledger,
        store: Callable[[], ResponseStore | None],
        store_usable: Callable[[], bool],
        store_thread: StoreThread,
        retry: RetryPolicy,
        deadline: float | None,
        log: logging.Logger,
        is_closed: Callable[[], bool],
        on_ready: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._gate = gate
        self._ledger = ledger
        self._store = store
        self._store_usable = store_usable
        self._store_thread = store_thread
        self._retry = retry
        self._deadline = deadline
        self._log = log
        self._is_closed = is_closed
        self._on_ready = on_ready

    def _store_for(self, call: PreparedCall) -> ResponseStore | None:
        return self._store() if call.use_cache else None

    # -- the response store, for callers that handle many calls at once (Message Batches) ------

    def store_usable(self) -> bool:
        """True when a response store can be used at all (caching on and a store configured).

        Cheap and never touches the store thread: check it before building work for
        :meth:`lookup_many` or :meth:`store_many`.
        """
        return self._store_usable()

    async def lookup_many(self, calls: Sequence[PreparedCall]) -> list[dict[str, Any] | None]:
        """The cached entry of each call (None where there is none), in the order given.

        All the lookups run in one hop to the store thread, by the same code as the lookup of
        :meth:`run`; a call that does not use the cache (or asks for a refresh) gets None.
        Raises :class:`~claude_force_magic.errors.CacheError` when the store fails: the
        caller decides whether to go on without the cache.
        """
        if not calls or not self._store_usable():
            return [None] * len(calls)

        def lookup() -> list[dict[str, Any] | None]:
            return [None if c.refresh else self._lookup(c) for c in calls]

        return await self._store_thread.run(lookup)

    async def store_many(self, answers: Sequence[tuple[PreparedCall, Answer, float | None]]) -> int:
        """Store each ``(call, answer, cost)`` whose call uses the cache; how many were stored.

        All the stores run in one hop to the store thread, by the same code (and with the same
        metadata) as the store of :meth:`run`. Raises
        :class:`~claude_force_magic.errors.CacheError` when the store fails; answers stored
        before the failure stay stored.
        """
        if not answers or not self._store_usable():
            return 0

        def keep_all() -> int:
            return sum(1 for c, a, cost in answers if c.use_cache and self._keep(c, a, cost))

        return await self._store_thread.run(keep_all)

    async def _cache_lookup(self, call: PreparedCall) -> AgentResult | None:
        """The cached answer, looked up on the store threads (:mod:`.store`), or None."""
        if not call.use_cache or call.refresh or not self._store_usable():
            return None
        started = time.perf_counter()
        try:
            entry = await self._store_thread.run(self._lookup, call)
        except CacheError as exc:
            self._log.warning("cache lookup failed, calling live: %s", exc)
            return None
        if entry is None:
            return None
        return self._ledger.cache_hit(call, entry, started)

    def _lookup(self, call: PreparedCall) -> dict[str, Any] | None:
        store = self._store_for(call)
        if store is None:
            return None
        return store.get(call.agent.name, call.cache_task, call.model, **call.cache_request)

    async def _cache_store(self, call: PreparedCall, answer: Answer, cost: float | None) -> bool:
        """Store the answer; True if it was stored (a failed store never fails the call)."""
        if not call.use_cache or not self._store_usable():
            return False
        try:
            return await self._store_thread.run(self._keep, call, answer, cost)
        except CacheError as exc:
            self._log.warning("cache store failed; the answer is returned anyway: %s", exc)
            return False

    def _keep(self, call: PreparedCall, answer: Answer, cost: float | None) -> bool:
        store = self._store_for(call)
        if store is None:
            return False
        return store.set(
            call.agent.name,
            call.cache_task,
            call.model,
            answer.text,
            answer.usage.input_tokens,
            answer.usage.output_tokens,
            cost or 0.0,
            metadata={
                "stop_reason": answer.stop_reason,
                "request_id": answer.request_id,
                "truncated": answer.truncated,
                "warnings": answer.warnings,
                "cache_creation_input_tokens": answer.usage.cache_creation_input_tokens,
                "cache_read_input_tokens": answer.usage.cache_read_input_tokens,
                "cache_creation_5m_input_tokens": answer.usage.ephemeral_5m_input_tokens,
                "cache_creation_1h_input_tokens": answer.usage.ephemeral_1h_input_tokens,
                "preview": call.preview,
                "origin": call.origin,
                "options": _key_options(call),
            },
            ttl_hours=call.ttl_hours,
            **call.cache_request,
        )

    # -- the live call -------------------------------------------------------------------------

    async def _attempt(
        self,
        call: PreparedCall,
        progress: Progress,
        on_text: Callable[[str], None] | None,
        deadline_at: float | None = None,
    ) -> Answer:
        """One attempt through the gate (breaker, slot, limiter) and the transport."""
        if self._is_closed():  # closed while this call waited or retried: never open a new client
            raise ConfigurationError(
                "The orchestrator was closed while this call was in flight; it was not retried."
            )
        progress.attempts += 1
        emit = None if on_text is None else _emitter(progress, on_text)
        state: AttemptState | None = None
        try:
            async with self._gate.attempt(
                call.input_estimate, call.max_tokens, deadline=deadline_at
            ) as admission:
                progress.sent = True
                state = progress.stream = AttemptState()
                try:
                    answer = await self._transport.send(
                        call.params, timeout=call.timeout, on_text=emit, state=state
                    )
                except APIError as exc:
                    _learn_from_failure(admission, state, exc, progress)
                    raise
                admission.observe(state.headers)
                admission.settle(answer.usage.output_tokens)
        except BaseException as exc:
            if state is not None:  # the request went out: bill what the API bills for it
                usage = attempt_usage(call.input_estimate, state, exc)
                if usage is not None:
                    progress.billed.append(usage)
            if isinstance(exc, APIError) and progress.emitted and exc.retryable:
                exc.retryable = False  # text already reached the caller: a retry would repeat it
            raise
        return answer

    async def _attempts(
        self, call: PreparedCall, progress: Progress, on_text: Callable[[str], None] | None
    ) -> Answer:
        """All attempts with retries, bounded by the overall deadline (no asyncio.timeout)."""
        deadline_at = None if self._deadline is None else time.monotonic() + self._deadline

        def retry_log(exc: BaseException, wait: float) -> None:
            self._log.info(
                "retrying agent %s in %.2fs after %s",
                call.agent.name,
                wait,
                type(exc).__name__,
            )

        retrying = call_with_retries(
            lambda: self._attempt(call, progress, on_text, deadline_at),
            self._retry,
            deadline_at=deadline_at,
            on_retry=retry_log,
        )
        if self._deadline is None:
            return await retrying
        try:
            return await asyncio.wait_for(retrying, self._deadline)
        except ClaudeForceError:
            raise
        except asyncio.TimeoutError as exc:
            raise DeadlineExceededError(
                f"The call did not finish within deadline_seconds={self._deadline:g} "
                f"({progress.attempts} attempt(s)). Raise deadline_seconds or try later."
            ) from exc

    async def run(
        self,
        call: PreparedCall,
        on_text: Callable[[str], None] | None = None,
        on_cancelled: OnCancelled | None = None,
    ) -> AgentResult:
        """Run one prepared call: cache lookup, key check, budget reservation, the live call
        with its retries, settlement, cache store. Caller mistakes raise before anything is
        sent; failures of the call come back as a failed :class:`AgentResult`."""
        cached = await self._cache_lookup(call)
        if cached is not None:
            if on_text is not None:
                on_text(cached.output)
            return cached
        self._transport.ready()  # a missing API key is a caller mistake: raise before the budget
        self._on_ready()
        self._gate.limiter.check_admissible(call.max_tokens)
        reservation = self._ledger.reserve(call)
        return await self._execute_live(call, reservation, on_text, on_cancelled)

    async def _execute_live(
        self,
        call: PreparedCall,
        reservation: Reservation,
        on_text: Callable[[str], None] | None,
        on_cancelled: OnCancelled | None = None,
    ) -> AgentResult:
        """The live call; every outcome is charged, recorded and settled against the budget.

        A cancelled call is settled too (what it was billed so far), recorded with status
        ``cancelled``, handed to ``on_cancelled``, and then the cancellation propagates.
        """
        progress = Progress()
        started = time.perf_counter()
        try:
            answer = await self._attempts(call, progress, on_text)
        except (APIError, CircuitOpenError, DeadlineExceededError) as exc:
            result = self._ledger.settle_failure(call, reservation, progress, exc, started)
            self._log.info(
                "agent %s failed after %d attempt(s): %s",
                call.agent.name,
                progress.attempts,
                type(exc).__name__,
            )
            return result
        except BaseException as exc:
            # Cancelled (or a bug): no await until the end, so the settlement cannot be cut.
            result = self._ledger.settle_failure(call, reservation, progress, exc, started)
            if on_cancelled is not None and isinstance(exc, asyncio.CancelledError):
                try:
                    on_cancelled(result)
                except Exception as cb_exc:
                    self._log.warning("on_cancelled callback failed: %s", type(cb_exc).__name__)
            raise
        result, answer_cost = self._ledger.settle_success(
            call, reservation, progress, answer, started
        )
        result.metadata["cache_stored"] = await self._cache_store(call, answer, answer_cost)
        return result
