"""The SDK boundary: one ``AsyncAnthropic`` per orchestrator and event loop, and error mapping.

Everything that touches ``anthropic`` lives here, imported inside functions so that
``import claude_force_magic`` stays light. :func:`map_api_error` turns the SDK's exceptions
into ours; the pipeline calls it in exactly one place, :class:`~.transport.SDKTransport`
(``create_message`` and ``stream_message`` let SDK errors propagate unmapped to it).

The SDK's own retries are switched off (``max_retries=0``): :mod:`.retry` owns retries, so the
attempts of the two layers never multiply.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import json
import math
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    OverloadedError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from ..settings import API_KEY_ENV, Secret

if TYPE_CHECKING:
    import anthropic
    import httpx2

__all__ = [
    "SERVED_TTFT_FIELD",
    "ClientHandle",
    "RateLimitInfo",
    "RawAnswer",
    "SSEDecoder",
    "StreamState",
    "StreamedBlock",
    "StreamedMessage",
    "create_message",
    "map_api_error",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "resolve_api_key",
    "stream_message",
]

_MISSING_KEY = (
    f"No Anthropic API key. Set the {API_KEY_ENV} environment variable "
    f"(export {API_KEY_ENV}=sk-ant-...), pass api_key=... to AsyncAgentOrchestrator, or run "
    "offline against the simulator: python -m claude_force_magic.simulator, then "
    "base_url='http://127.0.0.1:<port>' with any key."
)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    Returns None when neither header is present or parseable; never negative.
    """
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RateLimitInfo:
    """What the server said about its rate limits in one response.

    ``*_remaining`` are the server's counts left in its current bucket, ``*_limit`` its per-minute
    limits; ``retry_after`` is seconds (set on 429/529 answers). Missing headers are None.
    """

    requests_limit: float | None = None
    requests_remaining: float | None = None
    input_tokens_limit: float | None = None
    input_tokens_remaining: float | None = None
    output_tokens_limit: float | None = None
    output_tokens_remaining: float | None = None
    retry_after: float | None = None

    @property
    def empty(self) -> bool:
        """True when the response carried no rate-limit information at all."""
        return all(v is None for v in self.__dict__.values())


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_rate_limit_headers(headers: Mapping[str, str] | None) -> RateLimitInfo:
    """Read ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining}`` and
    ``retry-after``; unknown or malformed values are ignored, never raised."""
    if not headers:
        return RateLimitInfo()
    p = "anthropic-ratelimit-"
    return RateLimitInfo(
        requests_limit=_number(headers, p + "requests-limit"),
        requests_remaining=_number(headers, p + "requests-remaining"),
        input_tokens_limit=_number(headers, p + "input-tokens-limit"),
        input_tokens_remaining=_number(headers, p + "input-tokens-remaining"),
        output_tokens_limit=_number(headers, p + "output-tokens-limit"),
        output_tokens_remaining=_number(headers, p + "output-tokens-remaining"),
        retry_after=parse_retry_after(headers),
    )


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers is not None else None


def _describe(exc: Any) -> str:
    api_message = getattr(exc, "api_message", None)
    if isinstance(api_message, str) and api_message:
        return api_message
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(getattr(exc, "message", "") or exc)[:300]


def _stream_error(exc: Any, request_id: str | None) -> APIError:
    """An ``event: error`` inside a 200 stream: map by the error type in its body."""
    body = getattr(exc, "body", None)
    kind = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        kind = body["error"].get("type")
    text = _describe(exc)
    if kind == "overloaded_error":
        return OverloadedError(
            f"The API reported overload in the middle of the stream: {text}",
            status_code=529,
            request_id=request_id,
        )
    if kind == "rate_limit_error":
        return RateLimitError(
            f"Rate limited in the middle of the stream: {text}", request_id=request_id
        )
    if kind in ("api_error", "internal_server_error"):
        return ServerError(
            f"The API failed in the middle of the stream: {text}",
            status_code=500,
            request_id=request_id,
        )
    return ResponseError(
        f"The stream ended with an error event ({kind or 'unknown'}): {text}",
        status_code=200,
        request_id=request_id,
    )


def map_api_error(exc: BaseException) -> APIError:
    """Translate an exception from the ``anthropic`` SDK (or a timeout) into our error tree.

    Use as ``raise map_api_error(exc) from exc``. 401/403 -> :class:`AuthenticationError`,
    429 -> :class:`RateLimitError` (``retry_after`` from ``retry-after-ms``/``retry-after``),
    529 -> :class:`OverloadedError`, 408 and timeouts -> :class:`APITimeoutError`, other 5xx and
    409 -> :class:`ServerError`, other 4xx -> :class:`BadRequestError`, connection failures ->
    :class:`APIConnectionError`, a mid-stream ``event: error`` by its type, an unparseable
    answer -> :class:`ResponseError`. Messages carry the status, the server's explanation and
    the request id, never the API key. Never raises.
    """
    import anthropic

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, anthropic.APITimeoutError)):
        return APITimeoutError(
            "The request took longer than its per-attempt timeout; raise timeout_seconds for "
            "long answers, or use streaming."
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return APIConnectionError(
            f"Could not reach the Messages API or the connection dropped ({_describe(exc)}). "
            "Check the network and base_url."
        )
    import httpx2

    if isinstance(exc, httpx2.TimeoutException):
        return APITimeoutError(
            "The connection timed out while reading the answer; raise timeout_seconds or retry."
        )
    if isinstance(exc, httpx2.TransportError):  # raised mid-stream, after the SDK handed over
        return APIConnectionError(
            f"The connection dropped while the answer was streaming ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Retry, or check the network."
        )
    if isinstance(exc, anthropic.APIStatusError):
        return _map_status(exc)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ResponseError(
            f"The API answered with data that does not match the Messages schema: {_describe(exc)}",
            status_code=exc.status_code,
        )
    if isinstance(exc, (ValueError, KeyError)) and "json" in type(exc).__name__.lower():
        return ResponseError(f"The API answered with malformed JSON: {str(exc)[:200]}")
    if isinstance(exc, anthropic.AnthropicError):
        return APIError(f"The Anthropic SDK failed: {type(exc).__name__}: {str(exc)[:300]}")
    return APIError(f"The call failed unexpectedly: {type(exc).__name__}: {str(exc)[:300]}")


def _map_status(exc: anthropic.APIStatusError) -> APIError:
    status = exc.status_code
    request_id = exc.request_id
    text = _describe(exc)
    where = f" (request id {request_id})" if request_id else ""
    if status == 200:
        return _stream_error(exc, request_id)
    if status in (401, 403):
        return AuthenticationError(
            f"HTTP {status}: the API key was refused: {text}{where}. Check {API_KEY_ENV} "
            "or the api_key argument.",
            status_code=status,
            request_id=request_id,
        )
    if status == 429:
        retry_after = parse_retry_after(_headers_of(exc))
        hint = f"; the server asks to wait {retry_after:g}s" if retry_after is not None else ""
        return RateLimitError(
            f"HTTP 429: rate limited: {text}{where}{hint}. Lower calls_per_minute or the token "
            "limits to stay under your organisation's limits.",
            request_id=request_id,
            retry_after=retry_after,
        )
    if status == 529:
        return OverloadedError(
            f"HTTP 529: the API is overloaded: {text}{where}.",
            status_code=status,
            request_id=request_id,
        )
    if status == 408:
        err = APITimeoutError(
            f"HTTP 408: the server timed out the request: {text}{where}.",
            status_code=status,
            request_id=request_id,
        )
        return err
    if status >= 500 or status == 409:
        return ServerError(
            f"HTTP {status}: the API failed: {text}{where}.",
            status_code=status,
            request_id=request_id,
        )
    return BadRequestError(
        f"HTTP {status}: the request was rejected: {text}{where}. Retrying will not help; fix the "
        "request (model name, max_tokens, size).",
        status_code=status,
        request_id=request_id,
    )


def _checked_key(key: Secret, where: str) -> Secret:
    """``key`` if it can go in an HTTP header; else :class:`ConfigurationError` (never echoing
    the key: httpx would otherwise refuse it with the whole header in its message)."""
    value = key.reveal()
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigurationError(
            f"The API key from {where} contains whitespace or control characters (often a "
            "trailing newline from a file or a paste); strip it, e.g. api_key=key.strip()."
        )
    return key


def resolve_api_key(api_key: str | Secret | None) -> Secret | None:
    """The explicit key, else ``$ANTHROPIC_API_KEY``, wrapped in a masked :class:`Secret`.

    Raises :class:`ConfigurationError` for a key that is not a string or that contains
    whitespace or control characters (the message never contains the key).
    """
    if isinstance(api_key, Secret):
        return _checked_key(api_key, "api_key") if api_key else None
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a str or None, got {type(api_key).__name__}.")
    if api_key:
        return _checked_key(Secret(api_key), "api_key")
    env = os.environ.get(API_KEY_ENV)
    return _checked_key(Secret(env), f"${API_KEY_ENV}") if env else None


#: The extra field of a ``message_delta`` event in which the project's simulator says how many
#: milliseconds it took from the request's arrival to writing the first text delta (the
#: simulator's ``wire.SERVED_TTFT_FIELD``; it imports nothing from the package, so the name is
#: repeated here). Read into :attr:`StreamState.server_ttft_s`; absent from the real API.
SERVED_TTFT_FIELD = "sim_served_ttft_ms"

#: Set while an attempt's request is being built and sent: called with the monotonic time at
#: which the http client takes the request (see :func:`_request_sent`). A context variable, so
#: concurrent attempts on one client each see their own.
_ON_SENT: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "claude_force_magic_on_sent", default=None
)


async def _request_sent(request: Any) -> None:
    """The http client's request hook: tell the attempt being sent (if any) that its request,
    fully built, is handed to the HTTP layer now (connection pool, then the socket)."""
    on_sent = _ON_SENT.get()
    if on_sent is not None:
        on_sent(time.monotonic())


class ClientHandle:
    """Owns the orchestrator's ``AsyncAnthropic``: created lazily on the running loop.

    One client per event loop: when used from a new loop (``asyncio.run`` twice) the client of
    the previous loop is closed if that loop still runs, otherwise abandoned with its transport
    shut, and a fresh client is made. Not for use from two loops at the same time.
    :meth:`get` raises :class:`ConfigurationError` when no API key is available.

    The http client it makes (the SDK's default one) has a request hook that tells a streamed
    attempt when its request was handed to the HTTP layer, where its time to first token
    starts. An injected ``http_client`` is used as is (no hook): its attempts' TTFT then starts
    just before the SDK builds the request.
    """

    __slots__ = ("_api_key", "_base_url", "_client", "_http_client", "_loop")

    def __init__(
        self,
        *,
        api_key: str | Secret | None,
        base_url: str | None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        self._base_url = base_url
        self._http_client = http_client
        self._client: anthropic.AsyncAnthropic | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def api_key(self) -> Secret | None:
        """The key in use (masked), or None when none is configured yet."""
        return self._api_key

    @property
    def base_url(self) -> str | None:
        """The API base URL, or None for the SDK's default."""
        return self._base_url

    def get(self) -> anthropic.AsyncAnthropic:
        """The client for the running loop, created on first use (must be called on a loop)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._api_key is None:
            self._api_key = resolve_api_key(None)
        if self._api_key is None:
            raise ConfigurationError(_MISSING_KEY)
        self._abandon()
        import anthropic

        key = self._api_key.reveal()
        http_client = self._http_client
        if http_client is None:
            # The SDK's own default client (its defaults, and its close-on-collection, a private
            # name: the public DefaultAsyncHttpxClient if it ever moves), plus our hook.
            from anthropic import _base_client

            default = getattr(
                _base_client, "AsyncHttpxClientWrapper", anthropic.DefaultAsyncHttpxClient
            )
            http_client = default(event_hooks={"request": [_request_sent]})
        self._client = anthropic.AsyncAnthropic(
            api_key=key if isinstance(key, str) else key.decode("utf-8"),
            base_url=self._base_url,
            max_retries=0,
            http_client=http_client,
        )
        self._loop = loop
        return self._client

    def _abandon(self) -> None:
        """Forget the client of an earlier loop without scheduling work on the current one."""
        old, self._client, self._loop = self._client, None, None
        if old is None or self._http_client is not None:
            return  # an injected http client belongs to the caller: never closed by us
        # The SDK's __del__ would schedule aclose() on whatever loop runs at collection time,
        # closing sockets that belong to a finished loop: the client would hang or raise
        # 'Event loop is closed' on whichever loop runs the collection.
        # Mark the finished loop's transport closed so that never happens; its sockets are
        # released with their own transports.
        inner = getattr(old, "_client", None)
        state = getattr(inner, "_state", None)
        if state is not None:
            inner._state = type(state).CLOSED  # type: ignore[union-attr]

    async def aclose(self) -> None:
        """Close the client if it belongs to the running loop; abandon it otherwise."""
        client, loop = self._client, self._loop
        if client is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running:
            self._client, self._loop = None, None
            if self._http_client is None:
                await client.close()
        else:
            self._abandon()


@dataclass
class RawAnswer:
    """A parsed answer plus the response headers the limiter learns from."""

    message: Any
    headers: Mapping[str, str]
    request_id: str | None


async def create_message(
    client: anthropic.AsyncAnthropic, params: Mapping[str, Any], *, timeout: float
) -> RawAnswer:
    """One non-streaming ``messages.create`` attempt; SDK errors propagate unmapped."""
    raw = await client.messages.with_raw_response.create(**params, timeout=timeout)
    message = await raw.parse()
    headers = raw.headers
    return RawAnswer(message=message, headers=headers, request_id=headers.get("request-id"))


@dataclass
class StreamState:
    """Filled in by :func:`stream_message` as a stream progresses.

    ``input_tokens`` (and the prompt-cache counts) come from the ``message_start`` event,
    ``output_tokens`` from the last ``usage`` seen in a ``message_delta`` (None until then), and
    ``text_chars`` / ``text`` count the text received: enough to bill an answer that was
    interrupted, timed out or failed before its final message. A transport fills one per
    attempt (:class:`~.transport.AttemptState` extends it with the stream's timing).
    """

    headers: Mapping[str, str] | None = None
    request_id: str | None = None
    message: Any = None
    started: bool = False
    input_tokens: int | None = None
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    #: The 1-hour part of ``cache_creation_input_tokens`` (the rest was written for 5 minutes).
    cache_creation_1h_input_tokens: int = 0
    output_tokens: int | None = None
    text: list[str] = field(default_factory=list)
    #: True once the attempt was sent as a stream.
    streamed: bool = False
    #: The headers of an error response (for the rate limiter), else None.
    error_headers: Mapping[str, str] | None = None
    #: Seconds from the request's arrival to the first text delta, as the server reported it
    #: (:data:`SERVED_TTFT_FIELD`, sent by the simulator only), else None.
    server_ttft_s: float | None = None

    def observe(self, event: Any) -> None:
        """Record the usage carried by one stream event: an SDK event or anything shaped like
        one, with attribute access (never raises on odd shapes)."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.started = True
            usage = getattr(getattr(event, "message", None), "usage", None)
            self.input_tokens = _count(getattr(usage, "input_tokens", None))
            self.cache_creation_input_tokens = (
                _count(getattr(usage, "cache_creation_input_tokens", None)) or 0
            )
            self.cache_read_input_tokens = (
                _count(getattr(usage, "cache_read_input_tokens", None)) or 0
            )
            split = getattr(usage, "cache_creation", None)
            self.cache_creation_1h_input_tokens = (
                _count(getattr(split, "ephemeral_1h_input_tokens", None)) or 0
            )
            self.output_tokens = _count(getattr(usage, "output_tokens", None))
        elif kind == "message_delta":
            seen = _count(getattr(getattr(event, "usage", None), "output_tokens", None))
            if seen is not None:
                self.output_tokens = seen
            served = getattr(event, SERVED_TTFT_FIELD, None)
            if isinstance(served, (int, float)) and not isinstance(served, bool) and served >= 0:
                self.server_ttft_s = served / 1000.0


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (odd shapes are read as absent)."""
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> int | None:
    """A token count from the wire: a non-negative int, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class StreamedBlock:
    """One content block of a streamed answer: its ``type``, and for a text block its text
    (kept as pieces, joined when read: appending to one string would copy it per delta)."""

    __slots__ = ("_parts", "type")

    def __init__(self, type: str, text: str | None = None) -> None:
        self.type = type
        self._parts: list[str] | None = None if type != "text" else ([text] if text else [])

    @property
    def text(self) -> str | None:
        """The block's text so far (None for a block that is not text)."""
        return None if self._parts is None else "".join(self._parts)

    def append(self, text: str) -> None:
        """Add a text delta (ignored for a block that is not text)."""
        if self._parts is not None:
            self._parts.append(text)


@dataclass
class StreamedMessage:
    """The final message of a stream, accumulated from its events (see :func:`stream_message`).

    Shaped like the SDK's ``Message`` where the engine reads it (``content`` blocks with
    ``type``/``text``, ``stop_reason``, ``stop_sequence``, ``usage`` with attribute access), so
    :func:`~.response.check_message` reads either.
    """

    id: str | None = None
    model: str | None = None
    content: list[StreamedBlock] = field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Any = None

    def apply(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Fold one decoded ``message_start``, ``content_block_start`` or ``message_delta``."""
        if kind == "message_start":
            message = _mapping(payload.get("message"))
            self.id, self.model = message.get("id"), message.get("model")
            self.usage = _namespace(_mapping(message.get("usage")))
        elif kind == "content_block_start":
            block = _mapping(payload.get("content_block"))
            text = block.get("text")
            self.content.append(
                StreamedBlock(str(block.get("type")), text if isinstance(text, str) else None)
            )
        elif kind == "message_delta":
            delta = _mapping(payload.get("delta"))
            self.stop_reason = delta.get("stop_reason")
            self.stop_sequence = delta.get("stop_sequence")
            usage = _mapping(payload.get("usage"))
            if self.usage is None:
                self.usage = SimpleNamespace()
            # Cumulative totals: they overwrite; absent optional ones keep message_start's.
            for name, value in usage.items():
                if value is not None:
                    setattr(self.usage, name, _namespace(value))

    def add_text(self, index: object, text: str) -> None:
        """Append a text delta to the text block at ``index``."""
        if isinstance(index, int) and 0 <= index < len(self.content):
            self.content[index].append(text)


def _namespace(value: Any) -> Any:
    """A JSON value with its objects turned into attribute-access namespaces."""
    if isinstance(value, Mapping):
        return SimpleNamespace(**{str(k): _namespace(v) for k, v in value.items()})
    return value


class SSEDecoder:
    """Splits a byte stream into Server-Sent Events: ``(event name, data bytes)`` pairs.

    Implements what the Messages API uses of the format: ``event:`` and ``data:`` fields
    (several ``data:`` lines are joined with a newline), comment lines (``:``) and other
    fields ignored, LF, CRLF or CR line ends, events split anywhere across chunks. An event
    without data is not dispatched; an unterminated event at the end is dropped (as the
    format says).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """The events completed by ``chunk``, in order."""
        buffer = self._buffer + chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # its LF may be in the next chunk
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[tuple[str | None, bytes]] = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            event = _sse_event(buffer[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:] + held
        return events


def _sse_event(block: bytes) -> tuple[str | None, bytes] | None:
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        key, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if key == b"data":
            data.append(value)
        elif key == b"event":
            name = value.decode("utf-8", "replace") or None
    return (name, b"\n".join(data)) if data else None


def _error_event(data: bytes, response: Any) -> Exception:
    """The SDK's exception for an ``event: error`` inside a 200 stream (mapped by
    :func:`map_api_error` as the SDK's own stream would be)."""
    import anthropic

    text = data.decode("utf-8", "replace")
    body: object = text
    with contextlib.suppress(ValueError):  # a body that is not JSON is kept as text
        body = json.loads(text)
    return anthropic.APIStatusError(f"{body}", response=response, body=body)


#: Stream events whose payload the engine reads (the rest are not even JSON-decoded).
_READ_EVENTS = frozenset(("message_start", "content_block_start", "message_delta"))


async def stream_message(
    client: anthropic.AsyncAnthropic,
    params: Mapping[str, Any],
    state: StreamState,
    *,
    timeout: float,
    on_sent: Callable[[float], None] | None = None,
) -> AsyncGenerator[str, None]:
    """Yield the text deltas of one streamed ``messages.create`` attempt.

    ``state.message`` is the final :class:`StreamedMessage` once the generator is exhausted,
    and ``state`` holds the usage seen so far at any moment (see :class:`StreamState`).

    The SDK sends the request and raises for an error status as usual; the body is read as
    raw Server-Sent Events (:class:`SSEDecoder`) and only the events the engine uses are
    JSON-decoded (no SDK model per event: the SDK's per-event parsing and snapshotting cost
    more than the rest of a short call). An ``event: error`` raises the SDK's
    ``APIStatusError``, malformed JSON a ``json.JSONDecodeError``, a dropped connection the
    ``httpx2`` error: all propagate unmapped. The caller bounds each step in time; closing the
    generator closes the HTTP response.

    ``on_sent`` is called with the monotonic time at which the built request is handed to the
    HTTP layer (by the request hook of a :class:`ClientHandle`'s own http client).
    """
    manager = client.messages.with_streaming_response.create(**params, stream=True, timeout=timeout)
    token = _ON_SENT.set(on_sent)
    try:
        response = await manager.__aenter__()
    finally:
        # Reset before the first yield: an async generator runs in its caller's context.
        _ON_SENT.reset(token)
    try:
        http = response.http_response
        state.headers = http.headers
        state.request_id = http.headers.get("request-id")
        message = StreamedMessage()
        decoder = SSEDecoder()
        loads = json.loads
        async for chunk in http.aiter_bytes():
            for kind, data in decoder.feed(chunk):
                if kind == "content_block_delta":
                    payload = loads(data)
                    delta = payload.get("delta") if isinstance(payload, dict) else None
                    if isinstance(delta, dict) and delta.get("type") == "text_delta":
                        text = delta.get("text")
                        if isinstance(text, str):
                            message.add_text(payload.get("index"), text)
                            state.text.append(text)
                            yield text
                elif kind in _READ_EVENTS:
                    payload = loads(data)
                    if isinstance(payload, dict):
                        if kind != "content_block_start":
                            state.observe(_namespace(payload))
                        message.apply(kind, payload)
                elif kind == "error":
                    raise _error_event(data, http)
        state.message = message if state.started else None
    finally:
        await manager.__aexit__(None, None, None)
