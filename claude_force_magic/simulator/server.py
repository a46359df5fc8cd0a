"""The HTTP server: an ``aiohttp.web`` application that speaks the Messages API.

:class:`Simulator` runs it either on the caller's event loop (``async with``) or on its own
loop in a daemon thread (``with``). See ``docs/simulator.md`` for the behaviours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hmac
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .batches import Batch, BatchSettings, BatchStore, NotFound, result_chunks
from .behaviour import Behaviour, Fault, Latency
from .prompt_cache import PromptCache, check_min_tokens, find_breakpoints, key_fingerprint
from .ratelimit import RateLimits
from .text import answer_digest, compose_answer, count_input_tokens, shape_answer, task_text
from .validation import InvalidRequest, parse_count_tokens, parse_create
from .wire import StreamPlan, error_body, message_body, stream_plan

__all__ = ["RequestRecord", "Simulator"]

MAX_BODY_BYTES = 32 * 1024 * 1024
REQUEST_LOG_SIZE = 100_000
LISTEN_BACKLOG = 4096
# How long stop() lets a handler finish before cancelling it (handlers are cancelled first).
_SHUTDOWN_GRACE = 0.25
_MASKED = frozenset({"x-api-key", "authorization", "proxy-authorization"})
# HTTP status recorded when the client went away before the response was complete.
CLIENT_CLOSED = 499

_FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    Fault.RATE_LIMIT: (429, "rate_limit_error", "Number of requests has exceeded your rate limit."),
    Fault.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    Fault.STREAM_ERROR: (529, "overloaded_error", "Overloaded"),
    Fault.SERVER_ERROR: (500, "api_error", "Internal server error"),
    Fault.UNAVAILABLE: (503, "api_error", "Service unavailable"),
}


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET


@dataclass
class RequestRecord:
    """One request as the simulator saw it (credentials in ``headers`` are ``"***"``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    time: float
    duration: float
    fault: str | None
    #: The ``request-id`` header it was answered with (None before one was given).
    request_id: str | None = None
    #: For a paced stream: the seconds the simulator meant to wait before the first text
    #: delta (also sent as the ``x-sim-ttft-ms`` response header), else None.
    ttft_s: float | None = None
    #: For a paced stream: seconds from the request's arrival to writing the first text delta.
    first_delta_s: float | None = None


class _Exchange:
    """What a handler learns about its request, for the log."""

    __slots__ = ("arrived", "body", "fault", "first_delta_s", "request_id", "status", "ttft_s")

    def __init__(self) -> None:
        self.arrived = time.monotonic()
        self.body: Any = None
        self.status = 0
        self.fault: str | None = None
        self.request_id: str | None = None
        self.ttft_s: float | None = None
        self.first_delta_s: float | None = None


_Handler = Callable[[web.Request, _Exchange], Awaitable[web.StreamResponse]]
# A batch endpoint's work after auth and rate limiting: (request, exchange, owner, request_id).
_BatchAction = Callable[[web.Request, "_Exchange", str, str], Awaitable[web.StreamResponse]]


class _ClientGone(Exception):
    """The client closed the connection while the answer was being written."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client closed the connection")
        self.response = response


class _TooLarge(Exception):
    """The request body is larger than the server accepts."""


def _batch_settings(
    old: BatchSettings,
    seconds: float | _Unset,
    cancel_seconds: float | _Unset,
    retention_seconds: float | _Unset,
    fault_rates: Mapping[str, float] | _Unset | None,
    max_requests: int | _Unset,
    max_bytes: int | _Unset,
) -> BatchSettings:
    """``old`` with the given values replaced, validated (``ValueError`` names the bad one)."""
    changes: dict[str, Any] = {}
    for name, value in (
        ("seconds", seconds),
        ("cancel_seconds", cancel_seconds),
        ("retention_seconds", retention_seconds),
        ("max_requests", max_requests),
        ("max_bytes", max_bytes),
    ):
        if value is not _UNSET:
            changes[name] = value
    if fault_rates is not _UNSET:
        rates = dict(fault_rates or {})
        unknown = set(rates) - {"errored", "expired"}
        if unknown:
            raise ValueError(
                f"batch_fault_rates: unknown outcome(s) {sorted(unknown)}; use 'errored' or "
                "'expired'"
            )
        changes["errored_rate"] = rates.get("errored", 0.0)
        changes["expired_rate"] = rates.get("expired", 0.0)
    return dataclasses.replace(old, **changes).check()


def _masked_headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): ("***" if k.lower() in _MASKED else v) for k, v in request.headers.items()}


class Simulator:
    """A local HTTP server that answers like the Anthropic Messages API.

    Use ``with Simulator(...) as sim:`` from synchronous code (the server runs on its own event
    loop in a daemon thread) or ``async with Simulator(...) as sim:`` inside a running loop
    (the server runs on that loop). Point a client at :attr:`base_url`.

    All the public methods are thread-safe. The behaviour arguments are those of
    :meth:`configure`; ``port=0`` picks a free port.
    """

    def __init__(
        self,
        *,
        latency: Latency | None = None,
        script: Iterable[str] | None = None,
        fault_rates: Mapping[str, float] | None = None,
        rpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        seed: int = 0,
        api_key: str | None = None,
        stall_seconds: float = 30.0,
        retry_after: float = 1.0,
        prompt_cache_min_tokens: Mapping[str, int] | None = None,
        batch_seconds: float = 2.0,
        batch_cancel_seconds: float = 0.5,
        batch_retention_seconds: float = 29 * 24 * 3600.0,
        batch_fault_rates: Mapping[str, float] | None = None,
        batch_max_requests: int = 100_000,
        batch_max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self._behaviour = Behaviour(
            latency=latency,
            script=script,
            fault_rates=fault_rates,
            seed=seed,
            stall_seconds=stall_seconds,
            retry_after=retry_after,
        )
        self._limits = RateLimits(rpm, input_tpm, output_tpm)
        self._api_key = api_key
        self._clock = clock or time.monotonic
        self._clock0, self._wall0 = self._clock(), time.time()
        self._prompt_cache = PromptCache(self._clock, prompt_cache_min_tokens)
        settings = _batch_settings(
            BatchSettings(),
            batch_seconds,
            batch_cancel_seconds,
            batch_retention_seconds,
            batch_fault_rates,
            batch_max_requests,
            batch_max_bytes,
        )
        self._batches = BatchStore(self._clock, self._wall, settings, seed)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._count = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._disconnects = 0
        self._by_status: Counter[int] = Counter()
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- public surface

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server. Raises ``RuntimeError`` if not started."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with ``port=0`` and started)."""
        return self._port

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first (the last 100,000 finished requests)."""
        with self._lock:
            return list(self._log)

    def intended_ttft(self) -> dict[str, float]:
        """``{request id: seconds}`` the simulator meant to wait before each paced stream's
        first text delta (from the request log; what a benchmark compares its TTFT with)."""
        with self._lock:
            return {
                r.request_id: r.ttft_s
                for r in self._log
                if r.request_id is not None and r.ttft_s is not None
            }

    def served_ttft(self) -> dict[str, float]:
        """``{request id: seconds}`` from each paced stream's arrival to the moment the
        simulator wrote its first text delta: what it did, where :meth:`intended_ttft` says
        what it meant (the two differ by the server's own scheduling delay)."""
        with self._lock:
            return {
                r.request_id: r.first_delta_s
                for r in self._log
                if r.request_id is not None and r.first_delta_s is not None
            }

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot: requests, in_flight, max_in_flight, disconnects, by_status, prompt_cache.

        ``prompt_cache`` counts requests with breakpoints that read (``hits``) or did not read
        (``misses``) a cached prefix, entries ``writes``, and ``read_tokens``/``written_tokens``.
        """
        cache = self._prompt_cache.stats()
        with self._lock:
            return {
                "requests": self._count,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "disconnects": self._disconnects,
                "by_status": dict(self._by_status),
                "prompt_cache": cache,
            }

    @property
    def prompt_cache(self) -> list[dict[str, Any]]:
        """The live prompt-cache entries (a snapshot).

        Each is a dict: ``api_key_sha256`` (a fingerprint, never the key), ``model``,
        ``ends_at`` (where the prefix ends, e.g. ``"system.0"``), ``tokens``, ``ttl``
        (``"5m"``/``"1h"``), ``expires_at`` (on the simulator's clock), ``expires_in`` and
        ``reads``.
        """
        return self._prompt_cache.entries()

    def clear_prompt_cache(self) -> None:
        """Forget every prompt-cache entry and reset ``stats["prompt_cache"]``."""
        self._prompt_cache.clear()

    def _wall(self, when: float) -> float:
        """Wall-clock epoch seconds for a time on the simulator's clock."""
        return self._wall0 + (when - self._clock0)

    @property
    def script(self) -> list[str]:
        """The scripted faults not yet applied."""
        return self._behaviour.script

    def reset(self) -> None:
        """Clear the request log and the statistics (behaviour, rate-limit state, prompt-cache
        entries and batches stay)."""
        self._prompt_cache.reset_stats()
        with self._lock:
            self._log.clear()
            self._count = 0
            self._max_in_flight = self._in_flight
            self._disconnects = 0
            self._by_status.clear()

    def set_script(self, script: Iterable[str]) -> None:
        """Apply these faults to the next ``POST /v1/messages`` requests, in order.

        Raises ``ValueError`` on an unknown fault name (nothing is changed then).
        """
        self._behaviour.set_script(script)

    def set_answers(self, answers: Iterable[str]) -> None:
        """Answer the next successful ``POST /v1/messages`` requests with these texts, verbatim.

        Each text replaces the composed answer of one request (still cut by ``max_tokens`` and
        stop sequences, and streamed in the usual deltas); after the last one, answers are
        composed as usual. A request that gets an error fault does not use up an answer.
        Raises ``TypeError`` if an answer is not a ``str``.
        """
        self._behaviour.set_answers(answers)

    @property
    def answers(self) -> list[str]:
        """The scripted answers not yet given."""
        return self._behaviour.answers

    def configure(
        self,
        *,
        latency: Latency | _Unset | None = _UNSET,
        script: Iterable[str] | _Unset | None = _UNSET,
        fault_rates: Mapping[str, float] | _Unset | None = _UNSET,
        rpm: int | _Unset | None = _UNSET,
        input_tpm: int | _Unset | None = _UNSET,
        output_tpm: int | _Unset | None = _UNSET,
        seed: int | _Unset = _UNSET,
        api_key: str | _Unset | None = _UNSET,
        stall_seconds: float | _Unset = _UNSET,
        retry_after: float | _Unset = _UNSET,
        prompt_cache_min_tokens: Mapping[str, int] | _Unset | None = _UNSET,
        batch_seconds: float | _Unset = _UNSET,
        batch_cancel_seconds: float | _Unset = _UNSET,
        batch_retention_seconds: float | _Unset = _UNSET,
        batch_fault_rates: Mapping[str, float] | _Unset | None = _UNSET,
        batch_max_requests: int | _Unset = _UNSET,
        batch_max_bytes: int | _Unset = _UNSET,
    ) -> None:
        """Change the given behaviours of a running (or not yet started) simulator.

        - ``latency``: a :class:`Latency` (``None`` means no delay).
        - ``script``: fault names for the next requests, then normal behaviour.
        - ``fault_rates``: ``{fault: probability}`` drawn per request with the seeded RNG.
        - ``rpm``, ``input_tpm``, ``output_tpm``: per-minute limits (``None`` turns one off);
          changing any of them starts all buckets full.
        - ``seed``: reseeds the RNG and changes every answer's text.
        - ``api_key``: the only accepted key, or ``None`` for any non-empty key.
        - ``stall_seconds``: how long the ``stall`` fault hangs.
        - ``retry_after``: seconds advertised by the ``rate_limit`` fault's ``retry-after``.
        - ``prompt_cache_min_tokens``: ``{model prefix: tokens}`` merged over the defaults
          (``"*"`` is the fallback); shorter prefixes are not cached.
        - ``batch_seconds``: how long a Message Batch takes to process (on the clock).
        - ``batch_cancel_seconds``: how long a cancelled batch stays ``canceling``.
        - ``batch_retention_seconds``: a batch and its results vanish this long after creation.
        - ``batch_fault_rates``: ``{"errored": p, "expired": p}`` per batch item (seeded RNG).
        - ``batch_max_requests``, ``batch_max_bytes``: the batch size limits.

        The batch settings apply to batches created afterwards (the retention applies to all).
        Validates everything before changing anything; raises ``ValueError`` on a bad value.
        """
        batch_settings = _batch_settings(
            self._batches.settings,
            batch_seconds,
            batch_cancel_seconds,
            batch_retention_seconds,
            batch_fault_rates,
            batch_max_requests,
            batch_max_bytes,
        )
        if prompt_cache_min_tokens is not _UNSET:
            check_min_tokens(prompt_cache_min_tokens)
        limits: RateLimits | None = None
        if not (rpm is _UNSET and input_tpm is _UNSET and output_tpm is _UNSET):
            old = self._limits.limits
            limits = RateLimits(
                old["requests"] if rpm is _UNSET else rpm,
                old["input-tokens"] if input_tpm is _UNSET else input_tpm,
                old["output-tokens"] if output_tpm is _UNSET else output_tpm,
            )
        scripted = None if script is _UNSET else list(script or ())
        for name in scripted or ():
            Fault.check(name)
        self._behaviour.configure(
            latency=None if latency is _UNSET else (latency or Latency.fixed(0.0)),
            fault_rates=None if fault_rates is _UNSET else (fault_rates or {}),
            seed=None if seed is _UNSET else seed,
            stall_seconds=None if stall_seconds is _UNSET else stall_seconds,
            retry_after=None if retry_after is _UNSET else retry_after,
        )
        if scripted is not None:
            self._behaviour.set_script(scripted)
        if limits is not None:
            self._limits = limits
        if api_key is not _UNSET:
            self._api_key = api_key
        if prompt_cache_min_tokens is not _UNSET:
            self._prompt_cache.set_min_tokens(prompt_cache_min_tokens)
        self._batches.configure(batch_settings, None if seed is _UNSET else seed)

    # ----------------------------------------------------------------- lifecycle

    async def astart(self) -> Simulator:
        """Start serving on the running event loop; returns ``self``."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self._add_batch_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_GRACE,
        )
        await runner.setup()
        # aiohttp's default listen backlog (128) drops connections when hundreds of clients
        # connect at once, which the real service never does: the SDK would see ReadError.
        site = web.TCPSite(runner, self._host, self._port, backlog=LISTEN_BACKLOG)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._runner = runner
        return self

    async def astop(self) -> None:
        """Stop serving: cancel handlers, close every connection and release the port."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()

    def start(self) -> Simulator:
        """Start serving on a new event loop in a daemon thread; returns ``self`` when ready."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("the simulator is already running")
        ready: Future[None] = Future()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._serve_forever, args=(loop, ready), name="claude-sim", daemon=True
        )
        thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            thread.join(timeout=5)
            raise
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop the background server started by :meth:`start` and join its thread.

        Idempotent. Raises ``RuntimeError`` if called on the server's own thread, or for a
        simulator started with :meth:`astart` (stop that one with :meth:`astop`).
        """
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            if self._runner is not None:
                raise RuntimeError("this simulator was started with astart(); use await astop()")
            return
        if threading.current_thread() is thread:
            raise RuntimeError("stop() cannot run on the simulator's own thread; use astop()")
        self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    def _serve_forever(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.astart())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        where = f"http://{self._host}:{self._port}" if self._runner else "stopped"
        return f"<Simulator {where}>"

    # ----------------------------------------------------------------- request plumbing

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_sim_{self._id_prefix}{next(self._ids):012x}"

    def _error(
        self,
        status: int,
        kind: str,
        message: str,
        request_id: str,
        extra: Mapping[str, str] | None = None,
    ) -> web.Response:
        headers = {"Content-Type": "application/json", "request-id": request_id}
        if extra:
            headers.update(extra)
        return web.Response(
            status=status, body=error_body(kind, message, request_id), headers=headers
        )

    @staticmethod
    def _api_key_of(request: web.Request) -> str:
        key = request.headers.get("x-api-key")
        if not key:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else ""
        return key

    def _check_headers(self, request: web.Request, request_id: str) -> web.Response | None:
        key = self._api_key_of(request)
        if not key:
            return self._error(
                401,
                "authentication_error",
                "x-api-key header or Authorization: Bearer is required",
                request_id,
            )
        expected = self._api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            return self._error(401, "authentication_error", "invalid x-api-key", request_id)
        if not request.headers.get("anthropic-version"):
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required", request_id
            )
        return None

    async def _read_json(
        self, request: web.Request, exchange: _Exchange, max_bytes: int | None = None
    ) -> Any:
        if max_bytes is not None:
            request = request.clone(client_max_size=max_bytes)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _TooLarge() from None
        try:
            exchange.body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("the request body is not valid JSON") from None
        return exchange.body

    async def _tracked(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        exchange = _Exchange()
        started = exchange.arrived
        task = asyncio.current_task()
        with self._lock:
            self._count += 1
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
        if task is not None:
            self._tasks.add(task)
        try:
            response: web.StreamResponse = await handler(request, exchange)
            return response
        except _ClientGone as gone:
            self._client_gone(exchange)
            return gone.response
        except asyncio.CancelledError:
            self._client_gone(exchange)
            raise
        finally:
            if task is not None:
                self._tasks.discard(task)
            record = RequestRecord(
                request.method,
                request.path,
                _masked_headers(request),
                exchange.body,
                exchange.status,
                started,
                time.monotonic() - started,
                exchange.fault,
                exchange.request_id,
                exchange.ttft_s,
                exchange.first_delta_s,
            )
            with self._lock:
                self._in_flight -= 1
                self._by_status[exchange.status] += 1
                self._log.append(record)

    def _client_gone(self, exchange: _Exchange) -> None:
        exchange.status = CLIENT_CLOSED
        if not self._closing:
            with self._lock:
                self._disconnects += 1

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, self._handle_messages)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, self._handle_count_tokens)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, self._handle_not_found)

    async def _handle_not_found(self, request: web.Request, exchange: _Exchange) -> web.Response:
        exchange.status = 404
        message = f"Not found: {request.method} {request.path}"
        return self._error(404, "not_found_error", message, self._next_id("req"))

    async def _handle_count_tokens(self, request: web.Request, exchange: _Exchange) -> web.Response:
        request_id = self._next_id("req")
        response = self._check_headers(request, request_id)
        if response is None:
            try:
                system, messages = parse_count_tokens(await self._read_json(request, exchange))
            except InvalidRequest as exc:
                response = self._error(400, "invalid_request_error", str(exc), request_id)
            except _TooLarge:
                response = self._too_large(request_id)
            else:
                body = json.dumps({"input_tokens": count_input_tokens(system, messages)})
                response = web.Response(
                    body=body.encode(),
                    headers={"Content-Type": "application/json", "request-id": request_id},
                )
        exchange.status = response.status
        return response

    def _too_large(self, request_id: str, limit: int = MAX_BODY_BYTES) -> web.Response:
        message = f"Request exceeds the maximum allowed size of {limit} bytes"
        return self._error(413, "request_too_large", message, request_id)

    async def _handle_messages(
        self, request: web.Request, exchange: _Exchange
    ) -> web.StreamResponse:
        request_id = self._next_id("req")
        limits = self._limits
        response = self._check_headers(request, request_id)
        if response is None:
            try:
                parsed = parse_create(await self._read_json(request, exchange))
                breakpoints = find_breakpoints(parsed.system, parsed.messages)
            except InvalidRequest as exc:
                response = self._error(400, "invalid_request_error", str(exc), request_id)
            except _TooLarge:
                response = self._too_large(request_id)
        if response is not None:
            if limits.enabled:
                response.headers.update(limits.headers())
            exchange.status = response.status
            return response

        behaviour = self._behaviour
        fault = exchange.fault = behaviour.next_fault()
        input_tokens = count_input_tokens(parsed.system, parsed.messages)

        if fault in _FAULT_ERRORS and not (fault == Fault.STREAM_ERROR and parsed.stream):
            status, kind, message = _FAULT_ERRORS[fault]
            extra = limits.headers() if limits.enabled else {}
            if fault == Fault.RATE_LIMIT:
                extra["retry-after"] = str(math.ceil(behaviour.retry_after))
            else:
                await self._sleep(behaviour.sample_latency())
            exchange.status = status
            return self._error(status, kind, message, request_id, extra)

        admission = limits.admit(input_tokens, parsed.max_tokens)
        if not admission.admitted:
            exchange.status = 429
            headers = dict(admission.headers)
            headers["retry-after"] = str(admission.retry_after)
            return self._error(429, "rate_limit_error", admission.message, request_id, headers)

        if fault == Fault.STALL:
            await asyncio.sleep(behaviour.stall_seconds)

        cache = self._prompt_cache.apply(self._api_key_of(request), parsed.model, breakpoints)
        digest = answer_digest(behaviour.seed, parsed.model, parsed.system, parsed.messages)
        scripted = behaviour.next_answer()
        full = compose_answer(digest, task_text(parsed.messages)) if scripted is None else scripted
        answer = shape_answer(full, parsed.max_tokens, parsed.stop_sequences)
        msg_id = self._next_id("msg")
        headers = {"request-id": request_id}
        headers.update(admission.headers)

        if parsed.stream:
            plan = stream_plan(msg_id, parsed.model, fault, answer, input_tokens, request_id, cache)
            limits.refund_output(parsed.max_tokens - plan.answer.output_tokens)
            exchange.request_id = request_id
            return await self._stream(request, exchange, plan, headers)

        await self._sleep(behaviour.sample_latency())
        body, given = message_body(msg_id, parsed.model, fault, answer, input_tokens, cache)
        limits.refund_output(parsed.max_tokens - given.output_tokens)
        headers["Content-Type"] = "application/json"
        if fault == Fault.DISCONNECT:
            return await self._drop(request, exchange, body, headers)
        exchange.status = 200
        return web.Response(body=body, headers=headers)

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _drop(
        self, request: web.Request, exchange: _Exchange, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Send the headers and half the body, then abort the connection (``disconnect``)."""
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        exchange.status = 200
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        self._abort(request)
        return response

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _stream(
        self,
        request: web.Request,
        exchange: _Exchange,
        plan: StreamPlan,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Write the planned events, waiting ttft before the first delta and per-token after.

        The first delta is due ``ttft`` after the request arrived (the time spent reading and
        planning the answer is part of it, as on a real server), and the deltas after it are
        paced against its time (each is due at ``first + per_token x tokens before it``), so
        sleep overshoot does not accumulate and a client's TTFT and TPOT can be checked against
        the latency model. A stream that fell more than a delta behind (a stalled process)
        resumes the pace from there instead of sending what it missed in a burst. A paced
        stream's intended ttft is sent as ``x-sim-ttft-ms`` and logged with when the first
        delta was written.
        """
        latency = self._behaviour.latency
        ttft = self._behaviour.sample_first_token()
        headers["Content-Type"] = "text/event-stream; charset=utf-8"
        headers["Cache-Control"] = "no-cache"
        exchange.status = 200
        events = plan.events
        if ttft == 0.0 and latency.per_token == 0.0 and not plan.abort:
            # Nothing to pace: one write of the whole event stream is much cheaper.
            return web.Response(body=b"".join(e for e, _ in events), headers=headers)
        headers["x-sim-ttft-ms"] = f"{ttft * 1000:.3f}"
        exchange.ttft_s = ttft
        arrived = exchange.arrived
        response = web.StreamResponse(headers=headers)
        try:
            await response.prepare(request)
            if latency.per_token == 0.0:
                await response.write(b"".join(e for e, _ in events[: plan.first_delta]))
                await self._sleep(arrived + ttft - time.monotonic())
                exchange.first_delta_s = served = time.monotonic() - arrived
                plan.with_served_ttft(served)
                await response.write(b"".join(e for e, _ in events[plan.first_delta :]))
            else:
                await self._paced(response, exchange, plan, ttft, latency.per_token, arrived)
            if plan.abort:
                self._abort(request)
                return response
            await response.write_eof()
        except ConnectionResetError:
            raise _ClientGone(response) from None
        return response

    async def _paced(
        self,
        response: web.StreamResponse,
        exchange: _Exchange,
        plan: StreamPlan,
        ttft: float,
        per_token: float,
        arrived: float,
    ) -> None:
        """Write ``plan``'s events one by one, each delta on its schedule (see :meth:`_stream`)."""
        first_at = 0.0
        tokens_sent = 0
        for i, (event, tokens) in enumerate(plan.events):
            if i == plan.first_delta:
                await self._sleep(arrived + ttft - time.monotonic())
                first_at = time.monotonic()
                exchange.first_delta_s = first_at - arrived
                plan.with_served_ttft(exchange.first_delta_s)
            elif i > plan.first_delta:
                tokens_sent += tokens
                wait = first_at + tokens_sent * per_token - time.monotonic()
                if wait < -tokens * per_token:
                    # More than a delta behind (the process was stalled): start the schedule
                    # afresh rather than send the missed deltas in a burst.
                    first_at -= wait
                    wait = 0.0
                await self._sleep(wait)
            await response.write(event)

    # ----------------------------------------------------------------- Message Batches

    def _add_batch_routes(self, app: web.Application) -> None:
        root = "/v1/messages/batches"
        routes: list[tuple[str, str, _BatchAction]] = [
            ("POST", root, self._batch_create),
            ("GET", root, self._batch_list),
            ("GET", root + "/{batch_id}", self._batch_retrieve),
            ("DELETE", root + "/{batch_id}", self._batch_delete),
            ("POST", root + "/{batch_id}/cancel", self._batch_cancel),
            ("GET", root + "/{batch_id}/results", self._batch_results),
        ]
        for method, path, action in routes:
            app.router.add_route(method, path, self._batch_endpoint(action))

    def _batch_endpoint(
        self, action: _BatchAction
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            async def handle(request: web.Request, exchange: _Exchange) -> web.StreamResponse:
                return await self._handle_batch(request, exchange, action)

            return await self._tracked(request, handle)

        return endpoint

    async def _handle_batch(
        self, request: web.Request, exchange: _Exchange, action: _BatchAction
    ) -> web.StreamResponse:
        """Auth, the request-rate limit, then ``action``; its errors become API error bodies."""
        request_id = self._next_id("req")
        response: web.StreamResponse | None = self._check_headers(request, request_id)
        if response is None:
            admission = self._limits.admit(0, 0)
            if not admission.admitted:
                headers = dict(admission.headers)
                headers["retry-after"] = str(admission.retry_after)
                response = self._error(
                    429, "rate_limit_error", admission.message, request_id, headers
                )
        if response is None:
            owner = key_fingerprint(self._api_key_of(request))
            try:
                response = await action(request, exchange, owner, request_id)
            except InvalidRequest as exc:
                response = self._error(400, "invalid_request_error", str(exc), request_id)
            except NotFound as exc:
                message = f"Message Batch {exc.args[0]!r} not found (or past its retention)"
                response = self._error(404, "not_found_error", message, request_id)
            except _TooLarge:
                response = self._too_large(request_id, self._batches.settings.max_bytes)
        exchange.status = response.status
        return response

    def _json(self, data: Any, request_id: str) -> web.Response:
        headers = {"Content-Type": "application/json", "request-id": request_id}
        return web.Response(body=json.dumps(data).encode(), headers=headers)

    def _batch_wire(self, batch: Batch) -> dict[str, Any]:
        url = f"{self.base_url}/v1/messages/batches/{batch.id}/results"
        return self._batches.wire(batch, url)

    async def _batch_create(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        limit = self._batches.settings.max_bytes
        body = await self._read_json(request, exchange, max_bytes=limit)
        batch = self._batches.create(owner, body)
        return self._json(self._batch_wire(batch), request_id)

    async def _batch_retrieve(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        batch = self._batches.get(owner, request.match_info["batch_id"])
        return self._json(self._batch_wire(batch), request_id)

    async def _batch_cancel(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        batch = self._batches.cancel(owner, request.match_info["batch_id"])
        return self._json(self._batch_wire(batch), request_id)

    async def _batch_delete(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        batch_id = request.match_info["batch_id"]
        self._batches.delete(owner, batch_id)
        return self._json({"id": batch_id, "type": "message_batch_deleted"}, request_id)

    async def _batch_list(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        query = request.query
        raw_limit = query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise InvalidRequest(f"limit: must be an integer from 1 to 1000, got {raw_limit!r}")
        after_id, before_id = query.get("after_id"), query.get("before_id")
        if after_id is not None and before_id is not None:
            raise InvalidRequest("after_id, before_id: give at most one of the two cursors")
        batches, has_more = self._batches.page(owner, int(raw_limit), after_id, before_id)
        data = [self._batch_wire(b) for b in batches]
        page = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return self._json(page, request_id)

    async def _batch_results(
        self, request: web.Request, exchange: _Exchange, owner: str, request_id: str
    ) -> web.StreamResponse:
        """Stream the results as JSONL, a chunk of lines per write (never one big string)."""
        batch = self._batches.get(owner, request.match_info["batch_id"])
        if not self._batches.is_ended(batch):
            raise InvalidRequest(
                f"Message Batch {batch.id} has not finished processing; its results are "
                "available once processing_status is 'ended'"
            )
        headers = {"Content-Type": "application/binary", "request-id": request_id}
        response = web.StreamResponse(headers=headers)
        exchange.status = 200
        try:
            await response.prepare(request)
            for chunk in result_chunks(batch, self._behaviour.seed):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            raise _ClientGone(response) from None
        return response
