"""Server-Sent Events: the real event order, the same text as without streaming, and timing."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx2
import pytest

from claude_force_magic.simulator import Latency, Simulator

from .helpers import HEADERS, ask, text_of


def raw_events(sim: Simulator, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """POST a streaming request and split the body into (event, data) pairs."""
    with httpx2.stream(
        "POST", sim.base_url + "/v1/messages", json=body, headers=HEADERS
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["request-id"].startswith("req_sim_")
        payload = response.read().decode()
    assert payload.endswith("\n\n")
    events = []
    for block in payload.split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ")
        assert data_line.startswith("data: ")
        events.append((name_line[7:], json.loads(data_line[6:])))
    return events


def test_events_come_in_the_real_order(sim: Simulator) -> None:
    events = raw_events(sim, ask(stream=True))
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 5
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert data["type"] == name
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert start["usage"]["input_tokens"] > 0
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "end_turn"


def test_streamed_text_equals_the_non_streamed_text(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(**ask())
    with client.messages.stream(**ask()) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 5
    assert "".join(pieces) == text_of(plain)
    assert text_of(final) == text_of(plain)
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.model == plain.model


async def test_async_stream_equals_the_non_streamed_text(aclient: anthropic.AsyncAnthropic) -> None:
    plain = await aclient.messages.create(**ask(max_tokens=25))
    async with aclient.messages.stream(**ask(max_tokens=25)) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == text_of(plain)
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 25


def test_create_with_stream_true_yields_typed_events(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(**ask(max_tokens=12), stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "ping" not in kinds  # the SDK drops pings
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.usage.output_tokens == 12
    assert delta.delta.stop_reason == "max_tokens"


def test_stop_sequence_in_a_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(**ask(stop_sequences=["```"])) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == "```"
    assert "```" not in text_of(final)


def test_ttft_and_per_token_pace_the_deltas() -> None:
    latency = Latency.fixed(0.0, ttft=0.2, per_token=0.003)
    with (
        Simulator(latency=latency) as sim,
        anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
    ):
        started = time.monotonic()
        arrivals = []
        with client.messages.stream(**ask()) as stream:
            for _ in stream.text_stream:
                arrivals.append(time.monotonic() - started)
            output_tokens = stream.get_final_message().usage.output_tokens
    assert arrivals[0] >= 0.2
    # Every delta after the first waits per_token for each of its (at least one) tokens.
    assert arrivals[-1] - arrivals[0] >= 0.003 * (len(arrivals) - 1) * 0.9
    assert arrivals[-1] >= 0.2 + 0.003 * (output_tokens - 8) * 0.9
    assert arrivals[-1] < 10


def test_stream_without_ttft_waits_one_latency_sample() -> None:
    with (
        Simulator(latency=Latency.fixed(0.25)) as sim,
        anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
    ):
        started = time.monotonic()
        with client.messages.stream(**ask()) as stream:
            first = next(iter(stream.text_stream))
            elapsed = time.monotonic() - started
    assert first
    assert elapsed >= 0.25


@pytest.mark.parametrize("max_tokens", [1, 7, 64])
def test_cut_streams_match_cut_messages(client: anthropic.Anthropic, max_tokens: int) -> None:
    plain = client.messages.create(**ask(max_tokens=max_tokens))
    with client.messages.stream(**ask(max_tokens=max_tokens)) as stream:
        final = stream.get_final_message()
    assert text_of(final) == text_of(plain)
    assert final.usage.output_tokens == plain.usage.output_tokens == max_tokens
