"""The engine's streamed-call reader: raw Server-Sent Events, JSON-decoding only what it uses.

Replacing the SDK's per-event models must change nothing the engine reports: the final message
(text, stop reason, usage) equals what the SDK's own ``messages.stream`` accumulates for the
same answer, and a mid-stream ``event: error`` maps to the same error types.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx2
import pytest

from claude_force_magic.engine.client import (
    ClientHandle,
    SSEDecoder,
    _error_event,
    map_api_error,
)
from claude_force_magic.engine.response import check_message, read_usage
from claude_force_magic.engine.transport import AttemptState, SDKTransport
from claude_force_magic.errors import OverloadedError, RateLimitError, ResponseError, ServerError
from claude_force_magic.simulator import Latency, Simulator

STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"m1"}}\n'
    b"\n"
    b": a comment line\n"
    b"event: content_block_delta\n"
    b"id: 7\n"
    b'data: {"text":\n'
    b'data: "two lines"}\n'
    b"\n"
    b"event: ping\n"
    b"\n"
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n'
    b"\n"
    b"event: content_block_delta\n"
    b'data: {"never": "terminated"}\n'
)
EXPECTED = [
    ("message_start", b'{"type":"message_start","message":{"id":"m1"}}'),
    ("content_block_delta", b'{"text":\n"two lines"}'),
    ("message_stop", b'{"type":"message_stop"}'),
]


def _feed_in_pieces(raw: bytes, cuts: list[int]) -> list[tuple[str | None, bytes]]:
    decoder = SSEDecoder()
    events = []
    bounds = [0, *cuts, len(raw)]
    for start, end in itertools.pairwise(bounds):
        events.extend(decoder.feed(raw[start:end]))
    return events


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_are_the_same_however_the_bytes_are_split(newline: bytes) -> None:
    raw = STREAM.replace(b"\n", newline)
    assert _feed_in_pieces(raw, []) == EXPECTED
    for cut in range(1, len(raw)):
        assert _feed_in_pieces(raw, [cut]) == EXPECTED, cut
    assert _feed_in_pieces(raw, list(range(1, len(raw)))) == EXPECTED  # a byte at a time


def test_an_error_event_maps_by_its_type_as_the_sdks_stream_did() -> None:
    response = httpx2.Response(
        200,
        headers={"request-id": "req_sse_1"},
        request=httpx2.Request("POST", "http://127.0.0.1/v1/messages"),
    )
    cases = {
        "overloaded_error": OverloadedError,
        "rate_limit_error": RateLimitError,
        "api_error": ServerError,
        "something_new": ResponseError,
    }
    for kind, expected in cases.items():
        data = json.dumps({"type": "error", "error": {"type": kind, "message": "boom"}})
        exc = _error_event(data.encode(), response)
        assert isinstance(exc, anthropic.APIStatusError)
        mapped = map_api_error(exc)
        assert type(mapped) is expected, kind
        assert mapped.request_id == "req_sse_1" and "boom" in str(mapped)
    not_json = map_api_error(_error_event(b"upstream died", response))
    assert type(not_json) is ResponseError and "upstream died" in str(not_json)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.0005)) as running:
        yield running


@pytest.fixture
async def handle(sim: Simulator) -> AsyncIterator[ClientHandle]:
    made = ClientHandle(api_key="sk-test-sse", base_url=sim.base_url)
    yield made
    await made.aclose()


@pytest.mark.parametrize("max_tokens", [5, 64, 2000])
async def test_the_final_message_equals_the_sdks_for_the_same_answer(
    handle: ClientHandle, max_tokens: int
) -> None:
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Write a python class with examples."}],
    }
    state = AttemptState()
    pieces: list[str] = []
    ours = await SDKTransport(handle).send(params, timeout=30, on_text=pieces.append, state=state)
    async with handle.get().messages.stream(**params) as stream:  # the SDK's own reader
        sdk = await stream.get_final_message()
    reference = check_message(sdk, max_tokens=max_tokens)
    assert ours.text == reference.text == "".join(pieces) == "".join(state.text)
    assert (ours.stop_reason, ours.truncated) == (reference.stop_reason, reference.truncated)
    assert ours.usage == reference.usage == read_usage(state.message)
    assert state.message.stop_sequence == sdk.stop_sequence
    assert state.request_id is not None and state.request_id.startswith("req_sim_")
    assert state.headers is not None and state.headers["request-id"] == state.request_id
    assert (state.input_tokens, state.output_tokens) == (
        sdk.usage.input_tokens,
        sdk.usage.output_tokens,
    )
