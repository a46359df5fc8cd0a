"""How a request reaches the Messages API: the :class:`MessagesTransport` protocol.

The orchestrator's pipeline (gate, retries, billing, cache) does not know the SDK: it hands a
transport the request parameters and gets back an :class:`~.response.Answer` or one of *our*
:class:`~claude_force_magic.errors.APIError` subclasses. The transport is the one boundary
where foreign errors are mapped (as httpx maps socket errors in its transport and nowhere
else): :class:`SDKTransport` calls :func:`~.client.map_api_error` and is the only code of the
pipeline that does. Cancellation (``CancelledError``) is never mapped: it propagates.

Billing an attempt that did not finish needs what the stream showed so far (input tokens from
``message_start``, the last output count, the text received). The caller passes an
:class:`AttemptState` that the transport fills in as the attempt progresses, so it is there
even when ``send`` raises or is cancelled; ``error_headers`` holds the headers of an error
response for the rate limiter.

Streaming metrics are measured here, where the bytes arrive: a streamed attempt gets a
:class:`StreamTiming` (``state.timing``) that notes, on a monotonic clock, when the request was
sent and when each text delta arrived. It keeps the time to the first delta, the time of the
last one and a bounded summary of the gaps between deltas (:class:`GapSummary`), never every
gap. Non-streamed attempts leave ``state.timing`` as None.

Message Batches and recorded replays can be further transports; :class:`InMemoryTransport` is
a scripted one for fast tests of the pipeline (no sockets).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import APIError, APITimeoutError, ConfigurationError
from ..metrics import percentile
from . import defaults
from .client import StreamState, create_message, map_api_error, stream_message
from .estimate import estimate_input_tokens, estimate_text_tokens
from .response import Answer, Usage, check_message

if TYPE_CHECKING:
    from .client import ClientHandle

__all__ = [
    "GAP_SAMPLES",
    "AttemptState",
    "GapSummary",
    "InMemoryTransport",
    "MessagesTransport",
    "PieceDeadline",
    "SDKTransport",
    "StreamTiming",
]

#: How many inter-delta gaps a :class:`GapSummary` holds (a uniform sample past that).
GAP_SAMPLES = 1024


class GapSummary:
    """Count, mean, max and percentiles of the gaps between text deltas, in bounded memory.

    Count, mean and max are exact. The percentiles come from at most ``capacity`` gaps: every
    gap while there are no more than that (then exact, by :func:`~..metrics.percentile`'s
    definition), else a uniform reservoir sample of them (seeded, so runs repeat).
    """

    __slots__ = ("_capacity", "_rng", "_sample", "count", "max", "total")

    def __init__(self, capacity: int = GAP_SAMPLES) -> None:
        self._capacity = max(1, capacity)
        self._sample: list[float] = []
        self._rng: random.Random | None = None
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, gap: float) -> None:
        """Add one gap (seconds). O(1)."""
        self.count += 1
        self.total += gap
        self.max = max(self.max, gap)
        if len(self._sample) < self._capacity:
            self._sample.append(gap)
            return
        if self._rng is None:
            self._rng = random.Random(self._capacity)
        slot = self._rng.randrange(self.count)
        if slot < self._capacity:
            self._sample[slot] = gap

    @property
    def held(self) -> int:
        """How many gaps are held (at most the capacity)."""
        return len(self._sample)

    def summary(self) -> dict[str, float | int] | None:
        """``{"count", "mean_s", "p50_s", "p90_s", "p99_s", "max_s"}``, or None with no gap."""
        if not self.count:
            return None
        ordered = sorted(self._sample)
        return {
            "count": self.count,
            "mean_s": self.total / self.count,
            "p50_s": percentile(ordered, 0.5),
            "p90_s": percentile(ordered, 0.9),
            "p99_s": percentile(ordered, 0.99),
            "max_s": self.max,
        }


class StreamTiming:
    """When one streamed attempt was sent and when its text deltas arrived (monotonic clock).

    ``sent_at`` starts as the time the attempt began and is moved by :meth:`sent` to when the
    built request was handed to the HTTP layer (so the SDK's request building is not part of
    the time to first token); :meth:`delta` is called as each text delta arrives.
    ``first_at``/``last_at`` are None until the first delta. ``server_ttft_s`` is the
    server's own account of its time to first token, when it gives one (the simulator does).
    """

    __slots__ = ("deltas", "first_at", "gaps", "last_at", "sent_at", "server_ttft_s")

    def __init__(self, sent_at: float | None = None) -> None:
        self.sent_at = time.monotonic() if sent_at is None else sent_at
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.deltas = 0
        self.gaps = GapSummary()
        self.server_ttft_s: float | None = None

    def sent(self, at: float) -> None:
        """Note that the request was handed to the HTTP layer at ``at`` (monotonic), before
        any delta; a later call (a redirect) moves it again."""
        if self.first_at is None:
            self.sent_at = at

    def delta(self, now: float | None = None) -> None:
        """Note one text delta arriving now (or at ``now``)."""
        at = time.monotonic() if now is None else now
        if self.last_at is None:
            self.first_at = at
        else:
            self.gaps.add(max(0.0, at - self.last_at))
        self.last_at = at
        self.deltas += 1

    @property
    def ttft_s(self) -> float | None:
        """Seconds from sending the request to the first text delta (None without one)."""
        return None if self.first_at is None else self.first_at - self.sent_at

    def tpot_s(self, output_tokens: int) -> float | None:
        """Seconds per output token after the first: (last - first delta) / (tokens - 1).

        None without two deltas or with fewer than two output tokens.
        """
        if self.first_at is None or self.last_at is None or self.deltas < 2:
            return None
        if output_tokens < 2:
            return None
        return (self.last_at - self.first_at) / (output_tokens - 1)

    def tokens_per_s(self, output_tokens: int) -> float | None:
        """Output tokens per second over the attempt (request sent to last delta)."""
        if self.last_at is None or output_tokens <= 0:
            return None
        elapsed = self.last_at - self.sent_at
        return output_tokens / elapsed if elapsed > 0 else None


@dataclass
class AttemptState(StreamState):
    """What one attempt showed so far (headers, request id, usage, text; see the module
    docstring), and for a streamed attempt its :class:`StreamTiming` (else None)."""

    timing: StreamTiming | None = None


OnText = Callable[[str], None]


class PieceDeadline:
    """A per-piece timeout for the running task that needs no task per piece (Python 3.10+).

    Made inside the task it guards, it cancels that task when ``timeout`` seconds pass without
    a :meth:`reset`. :meth:`reset` is O(1) (it notes the time; no timer is re-armed per piece):
    one timer runs at a time, and when it fires early because a piece came since, it re-arms
    itself for the new due time. When the guarded code sees ``CancelledError``,
    :meth:`expired` says whether this deadline caused it (turn it into a timeout) or not (an
    outside cancel: let it propagate). Where tasks count cancel requests (3.11+), an outside
    cancel that came after the deadline fired wins; on 3.10 a fired deadline is a timeout.
    :meth:`cancel` stops the timer; call it in ``finally``.
    """

    __slots__ = ("_before", "_due", "_fired", "_handle", "_loop", "_task", "_timeout")

    def __init__(self, timeout: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("PieceDeadline must be made inside a task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._fired = False
        self._before = 0
        self._due = self._loop.time() + timeout
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._due, self._check)

    def reset(self, now: float | None = None) -> None:
        """A piece arrived (at ``now``, monotonic): the next one is due ``timeout`` later."""
        self._due = (self._loop.time() if now is None else now) + self._timeout

    def _check(self) -> None:
        if self._loop.time() < self._due:
            self._handle = self._loop.call_at(self._due, self._check)
            return
        self._handle = None
        self._fired = True
        # The task's cancel count before ours: not always 0, as a library that cancels the
        # task inside its own scope may not take its request back on 3.10 (anyio does not).
        cancelling = getattr(self._task, "cancelling", None)
        self._before = cancelling() if cancelling is not None else 0
        self._task.cancel()

    def expired(self) -> bool:
        """True when this deadline cancelled the task and nobody else did since (takes our
        cancel request back where tasks count them, so the task is not left cancelling)."""
        if not self._fired:
            return False
        uncancel = getattr(self._task, "uncancel", None)
        return uncancel is None or uncancel() <= self._before

    def cancel(self) -> None:
        """Stop the timer (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@runtime_checkable
class MessagesTransport(Protocol):
    """Sends one Messages API request per :meth:`send` call."""

    def ready(self) -> None:
        """Raise :class:`ConfigurationError` if no request can be sent (e.g. no API key)."""

    async def send(
        self,
        params: Mapping[str, Any],
        *,
        timeout: float,
        on_text: OnText | None,
        state: AttemptState,
    ) -> Answer:
        """Send ``params`` once; ``timeout`` bounds the attempt (for a stream, each piece).

        ``on_text`` (when given) receives each text piece as it arrives. Fills ``state`` as the
        attempt progresses. Raises only :class:`APIError` subclasses (or ``CancelledError``).
        """
        ...

    async def aclose(self) -> None:
        """Release connections the transport owns (idempotent)."""
        ...


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers if headers is not None else None


class SDKTransport:
    """The ``anthropic`` SDK's ``AsyncAnthropic`` (one per event loop, from ``handle``).

    Streams when ``on_text`` is given or ``max_tokens`` is above
    :data:`~.defaults.STREAMING_REQUIRED_ABOVE` (the SDK refuses such non-streaming calls).
    """

    __slots__ = ("_handle",)

    def __init__(self, handle: ClientHandle) -> None:
        self._handle = handle

    @property
    def handle(self) -> ClientHandle:
        """The client handle (API key, base URL)."""
        return self._handle

    def ready(self) -> None:
        """Raise :class:`ConfigurationError` when no API key is set."""
        self._handle.get()

    async def aclose(self) -> None:
        """Close the SDK client of the running loop (an injected http client stays open)."""
        await self._handle.aclose()

    async def send(
        self,
        params: Mapping[str, Any],
        *,
        timeout: float,
        on_text: OnText | None,
        state: AttemptState,
    ) -> Answer:
        """One attempt through the SDK; every SDK error leaves as an :class:`APIError`."""
        client = self._handle.get()
        max_tokens = int(params["max_tokens"])
        try:
            if on_text is None and max_tokens <= defaults.STREAMING_REQUIRED_ABOVE:
                raw = await asyncio.wait_for(
                    create_message(client, params, timeout=timeout + 5), timeout
                )
                state.headers, state.request_id = raw.headers, raw.request_id
                return check_message(raw.message, max_tokens=max_tokens, request_id=raw.request_id)
            await self._stream(client, params, timeout, on_text, state)
            return check_message(state.message, max_tokens=max_tokens, request_id=state.request_id)
        except Exception as exc:
            state.error_headers = _headers_of(exc)
            mapped = map_api_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    @staticmethod
    async def _stream(
        client: Any,
        params: Mapping[str, Any],
        timeout: float,
        on_text: OnText | None,
        state: AttemptState,
    ) -> None:
        state.streamed = True
        timing = state.timing = StreamTiming()
        chunks = stream_message(client, params, state, timeout=timeout + 5, on_sent=timing.sent)
        deadline = PieceDeadline(timeout)
        try:
            try:
                async for piece in chunks:
                    timing.delta()
                    deadline.reset()
                    if on_text is not None:
                        on_text(piece)
            finally:
                deadline.cancel()
                timing.server_ttft_s = state.server_ttft_s
                await chunks.aclose()
        except asyncio.CancelledError:
            if deadline.expired():
                raise APITimeoutError(
                    f"No part of the streamed answer arrived within {timeout:g}s (the per-piece "
                    "timeout); raise timeout_seconds, or retry."
                ) from None
            raise


Reply = str | Answer | APIError


class InMemoryTransport:
    """A scripted transport for tests: each :meth:`send` takes the next reply of the script.

    A reply is a text (answered with ``stop_reason="end_turn"`` and usage estimated from the
    request and the text), a full :class:`Answer`, or an :class:`APIError` to raise. When the
    script is exhausted, ``default`` answers (``None``: raise :class:`ConfigurationError`).
    Text is delivered to ``on_text`` in word-sized pieces, ``piece_delay`` seconds apart
    (``timeout`` bounds each piece, as for the SDK). ``sent`` lists every request's params.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: str | None = "OK",
        piece_delay: float = 0.0,
    ) -> None:
        self._script: deque[Reply] = deque(replies)
        self._default = default
        self._piece_delay = piece_delay
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def ready(self) -> None:
        """Always ready (no key needed)."""

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def _next(self) -> Reply:
        if self._script:
            return self._script.popleft()
        if self._default is None:
            raise ConfigurationError("InMemoryTransport: the script of replies is exhausted.")
        return self._default

    async def send(
        self,
        params: Mapping[str, Any],
        *,
        timeout: float,
        on_text: OnText | None,
        state: AttemptState,
    ) -> Answer:
        """Answer from the script, filling ``state`` like a stream would."""
        self.sent.append(dict(params))
        reply = self._next()
        state.request_id = f"req_mem_{len(self.sent)}"
        if isinstance(reply, APIError):
            raise reply
        answer = reply if isinstance(reply, Answer) else self._answer(params, reply, state)
        state.streamed = on_text is not None
        timing = state.timing = StreamTiming() if state.streamed else None
        state.started = True
        state.input_tokens = answer.usage.input_tokens
        for piece in _pieces(answer.text):
            if self._piece_delay:
                try:
                    await asyncio.wait_for(asyncio.sleep(self._piece_delay), timeout)
                except asyncio.TimeoutError as exc:
                    raise APITimeoutError("InMemoryTransport: a piece took too long.") from exc
            state.text.append(piece)
            state.output_tokens = estimate_text_tokens("".join(state.text))
            if timing is not None:
                timing.delta()
            if on_text is not None:
                on_text(piece)
        return answer

    @staticmethod
    def _answer(params: Mapping[str, Any], text: str, state: AttemptState) -> Answer:
        usage = Usage(
            input_tokens=estimate_input_tokens(
                *_texts(params.get("system")), *_message_texts(params)
            ),
            output_tokens=estimate_text_tokens(text),
        )
        return Answer(text, "end_turn", False, usage, request_id=state.request_id)


def _texts(content: Any) -> list[str]:
    """The text of a system prompt or message content: a string, or its text blocks."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        ]
    return []


def _message_texts(params: Mapping[str, Any]) -> list[str]:
    return [text for m in params["messages"] for text in _texts(m.get("content"))]


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else [])
