"""The Messages API wire shapes: Message objects, error bodies and Server-Sent Events.

Everything returns ``bytes`` ready to send (compact JSON, UTF-8), so the server does no
formatting of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .behaviour import Fault
from .prompt_cache import CacheUsage
from .text import REFUSAL_TEXT, Answer, chunk_text, estimate_tokens

__all__ = [
    "SERVED_TTFT_FIELD",
    "StreamPlan",
    "build_content",
    "error_body",
    "message_body",
    "stream_plan",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

#: The extra field of a paced stream's ``message_delta`` event that says, in milliseconds, how
#: long the simulator took from the request's arrival to writing the first text delta (what it
#: served, per request, so a client in another process can compute its own overhead). Clients
#: that do not know it ignore it, as they ignore any unknown field.
SERVED_TTFT_FIELD = "sim_served_ttft_ms"

REFUSAL_DETAILS: dict[str, Any] = {"type": "refusal", "category": None, "explanation": None}


def error_body(kind: str, message: str, request_id: str) -> bytes:
    """``{"type":"error","error":{"type":kind,"message":message},"request_id":...}``."""
    return _dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    ).encode()


def usage(input_tokens: int, output_tokens: int, cache: CacheUsage | None = None) -> dict[str, Any]:
    """A ``usage`` object as the API sends it; ``input_tokens`` excludes cached tokens."""
    cache = cache or CacheUsage()
    return {
        "input_tokens": max(0, input_tokens - cache.read - cache.written),
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.written_5m,
            "ephemeral_1h_input_tokens": cache.written_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def build_content(fault: str, answer: Answer) -> tuple[list[dict[str, Any]] | None, Answer]:
    """The ``content`` list for a fault, and the answer actually given (refusal replaces it)."""
    if fault == Fault.REFUSAL:
        return [{"type": "text", "text": REFUSAL_TEXT}], Answer(
            REFUSAL_TEXT, "refusal", None, estimate_tokens(REFUSAL_TEXT)
        )
    empty = Answer("", answer.stop_reason, answer.stop_sequence, 1)
    if fault == Fault.NULL_CONTENT:
        return None, empty
    if fault == Fault.EMPTY_CONTENT:
        return [], empty
    if fault == Fault.EMPTY_TEXT:
        return [{"type": "text", "text": ""}], empty
    return [{"type": "text", "text": answer.text}], answer


def _message(
    msg_id: str,
    model: str,
    content: list[dict[str, Any]] | None,
    stop_reason: str | None,
    stop_sequence: str | None,
    input_tokens: int,
    output_tokens: int,
    cache: CacheUsage | None = None,
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "stop_details": REFUSAL_DETAILS if stop_reason == "refusal" else None,
        "usage": usage(input_tokens, output_tokens, cache),
    }


def message_body(
    msg_id: str,
    model: str,
    fault: str,
    answer: Answer,
    input_tokens: int,
    cache: CacheUsage | None = None,
) -> tuple[bytes, Answer]:
    """The JSON body of a non-streaming answer (``malformed_json``: cut in the middle).

    ``input_tokens`` is the request's whole input; ``cache`` says how much of it was read from
    or written to the prompt cache.
    """
    content, given = build_content(fault, answer)
    body = _dumps(
        _message(
            msg_id,
            model,
            content,
            given.stop_reason,
            given.stop_sequence,
            input_tokens,
            given.output_tokens,
            cache,
        )
    ).encode()
    if fault == Fault.MALFORMED_JSON:
        body = body[: len(body) // 2]
    return body, given


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data).encode() + b"\n\n"


def _text_delta(index: int, text: str) -> bytes:
    """A ``content_block_delta`` event; only the text goes through the JSON encoder (hot path)."""
    return b"".join(
        (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":',
            str(index).encode(),
            b',"delta":{"type":"text_delta","text":',
            _dumps(text).encode(),
            b"}}\n\n",
        )
    )


PING = _event("ping", {"type": "ping"})
MESSAGE_STOP = _event("message_stop", {"type": "message_stop"})


@dataclass
class StreamPlan:
    """What to write for a streamed answer.

    ``events[i]`` is ``(bytes, tokens)``: write the bytes after waiting ``tokens`` times the
    per-token delay. ``first_delta`` is the index of the first text delta (where time to first
    token applies). If ``abort`` is set, the connection is aborted after the last event.
    ``message_delta`` is the index of the (well-formed) ``message_delta`` event and its payload,
    for :meth:`with_served_ttft`; None when the stream has none (an error or a broken one).
    """

    events: list[tuple[bytes, int]]
    first_delta: int
    abort: bool
    answer: Answer
    message_delta: tuple[int, dict[str, Any]] | None = None

    def with_served_ttft(self, seconds: float) -> None:
        """Rewrite the ``message_delta`` event to carry :data:`SERVED_TTFT_FIELD` (``seconds``
        in ms); no-op without a well-formed ``message_delta``. Call once the first delta is out."""
        if self.message_delta is None:
            return
        index, payload = self.message_delta
        data = {**payload, SERVED_TTFT_FIELD: round(seconds * 1000.0, 3)}
        self.events[index] = (_event("message_delta", data), self.events[index][1])


def _broken(event: bytes) -> bytes:
    """The event with its JSON cut short (for ``malformed_json``)."""
    head = event.index(b"\ndata: ") + len(b"\ndata: ")
    return event[: head + (len(event) - head) // 2] + b"\n\n"


def stream_plan(
    msg_id: str,
    model: str,
    fault: str,
    answer: Answer,
    input_tokens: int,
    request_id: str,
    cache: CacheUsage | None = None,
) -> StreamPlan:
    """The Server-Sent Events of a streamed answer, in the real service's order.

    ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``...,
    ``content_block_stop``, ``message_delta``, ``message_stop``. The deltas concatenate to the
    non-streamed text. ``stream_error`` replaces the second half with an ``error`` event,
    ``disconnect`` stops after the first half, ``malformed_json`` breaks the JSON of the middle
    delta (or of ``message_delta`` when there is no text).
    """
    content, given = build_content(fault, answer)
    start = _message(
        msg_id, model, None if content is None else [], None, None, input_tokens, 1, cache
    )
    events: list[tuple[bytes, int]] = [
        (_event("message_start", {"type": "message_start", "message": start}), 0)
    ]
    failing = fault in (Fault.STREAM_ERROR, Fault.DISCONNECT)
    broken = False
    first_delta = 0
    for index, block in enumerate(content or []):
        block_start = {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
        events.append((_event("content_block_start", block_start), 0))
        if index == 0:
            events.append((PING, 0))
            first_delta = len(events)
        chunks = chunk_text(block["text"])
        middle = len(chunks) // 2
        for n, chunk in enumerate(chunks):
            if failing and n == max(1, middle):
                return _fail(events, first_delta, fault, given, request_id)
            data = _text_delta(index, chunk)
            if fault == Fault.MALFORMED_JSON and n == middle:
                data, broken = _broken(data), True
            events.append((data, estimate_tokens(chunk)))
        if failing:
            return _fail(events, first_delta, fault, given, request_id)
        stop = {"type": "content_block_stop", "index": index}
        events.append((_event("content_block_stop", stop), 0))
    if not content:
        events.append((PING, 0))
        first_delta = len(events)
        if failing:
            return _fail(events, first_delta, fault, given, request_id)
    message_delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": given.stop_reason,
            "stop_sequence": given.stop_sequence,
            "stop_details": REFUSAL_DETAILS if given.stop_reason == "refusal" else None,
        },
        "usage": {"output_tokens": given.output_tokens},
    }
    data = _event("message_delta", message_delta)
    well_formed: tuple[int, dict[str, Any]] | None = (len(events), message_delta)
    if fault == Fault.MALFORMED_JSON and not broken:
        data, well_formed = _broken(data), None
    events.append((data, 0))
    events.append((MESSAGE_STOP, 0))
    return StreamPlan(events, first_delta, False, given, well_formed)


def _fail(
    events: list[tuple[bytes, int]], first_delta: int, fault: str, given: Answer, request_id: str
) -> StreamPlan:
    if fault == Fault.STREAM_ERROR:
        payload = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": request_id,
        }
        events.append((_event("error", payload), 0))
    return StreamPlan(events, first_delta, fault == Fault.DISCONNECT, given)
