"""Every injected fault surfaces as what the SDK raises (or returns) against the real service.

Each outcome below was measured with anthropic 2.14 against this simulator and matches the
SDK's handling of the real API's responses (status code -> exception class; connection drop
-> APIConnectionError; client timeout -> APITimeoutError; unparsable JSON -> JSONDecodeError;
``event: error`` mid-stream -> plain APIStatusError with status 200).
"""

from __future__ import annotations

import contextlib
import json
import time

import anthropic
import httpx2
import pytest

from claude_force_magic.simulator import Fault, Simulator

from .helpers import ask, text_of, wait_until

STATUS_FAULTS = [
    (Fault.RATE_LIMIT, anthropic.RateLimitError, 429, "rate_limit_error"),
    (Fault.OVERLOADED, anthropic.OverloadedError, 529, "overloaded_error"),
    (Fault.SERVER_ERROR, anthropic.InternalServerError, 500, "api_error"),
    (Fault.UNAVAILABLE, anthropic.ServiceUnavailableError, 503, "api_error"),
    (Fault.STREAM_ERROR, anthropic.OverloadedError, 529, "overloaded_error"),
]


@pytest.mark.parametrize(("fault", "error", "status", "kind"), STATUS_FAULTS)
def test_status_faults_raise_the_sdk_exception(
    sim: Simulator,
    client: anthropic.Anthropic,
    fault: str,
    error: type[anthropic.APIStatusError],
    status: int,
    kind: str,
) -> None:
    sim.set_script([fault])
    with pytest.raises(error) as caught:
        client.messages.create(**ask())
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert caught.value.type == kind
    assert caught.value.request_id == caught.value.response.headers["request-id"]
    assert sim.requests[-1].fault == fault
    assert sim.requests[-1].status == status
    assert client.messages.create(**ask()).content  # the script is used up: normal again


@pytest.mark.parametrize(("fault", "error", "status", "kind"), STATUS_FAULTS)
async def test_status_faults_raise_the_sdk_exception_async(
    sim: Simulator,
    aclient: anthropic.AsyncAnthropic,
    fault: str,
    error: type[anthropic.APIStatusError],
    status: int,
    kind: str,
) -> None:
    sim.set_script([fault])
    with pytest.raises(error) as caught:
        await aclient.messages.create(**ask())
    assert caught.value.status_code == status
    assert caught.value.type == kind


def test_rate_limit_fault_carries_retry_after(sim: Simulator, client: anthropic.Anthropic) -> None:
    sim.set_script([Fault.RATE_LIMIT])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**ask())
    assert caught.value.response.headers["retry-after"] == "1"
    sim.configure(retry_after=2.5, script=[Fault.RATE_LIMIT])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**ask())
    assert caught.value.response.headers["retry-after"] == "3"


def test_sdk_retries_honour_the_script(sim: Simulator) -> None:
    sim.configure(retry_after=0, script=[Fault.RATE_LIMIT, Fault.OVERLOADED])
    with anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=2) as client:
        message = client.messages.create(**ask())
    assert message.content
    assert [r.status for r in sim.requests] == [429, 529, 200]


def test_script_applies_in_order_then_normal(sim: Simulator, client: anthropic.Anthropic) -> None:
    sim.set_script(["rate_limit", "ok", "overloaded"])
    outcomes = []
    for _ in range(4):
        try:
            client.messages.create(**ask())
            outcomes.append("ok")
        except anthropic.APIStatusError as exc:
            outcomes.append(exc.type or "")
    assert outcomes == ["rate_limit_error", "ok", "overloaded_error", "ok"]


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_drops_the_connection(
    sim: Simulator, client: anthropic.Anthropic, stream: bool
) -> None:
    sim.set_script([Fault.DISCONNECT])
    if stream:
        # Mid-stream, the SDK lets the transport error through unwrapped (as it does against
        # the real service); before the response is read it becomes APIConnectionError.
        received: list[str] = []
        with pytest.raises(httpx2.RemoteProtocolError), client.messages.stream(**ask()) as s:
            received.extend(s.text_stream)
        assert received  # the first half of the deltas arrived
    else:
        with pytest.raises(anthropic.APIConnectionError) as caught:
            client.messages.create(**ask())
        assert not isinstance(caught.value, anthropic.APITimeoutError)
    wait_until(lambda: sim.stats["in_flight"] == 0)
    assert sim.requests[-1].fault == Fault.DISCONNECT
    assert sim.stats["disconnects"] == 0  # the server hung up, not the client


async def test_disconnect_drops_the_connection_async(
    sim: Simulator, aclient: anthropic.AsyncAnthropic
) -> None:
    sim.set_script([Fault.DISCONNECT, Fault.DISCONNECT])
    with pytest.raises(anthropic.APIConnectionError):
        await aclient.messages.create(**ask())
    with pytest.raises(httpx2.RemoteProtocolError):
        async with aclient.messages.stream(**ask()) as s:
            async for _ in s.text_stream:
                pass


@pytest.mark.parametrize("stream", [False, True])
def test_stall_outlasts_a_client_timeout(stream: bool) -> None:
    with Simulator(script=[Fault.STALL], stall_seconds=30) as sim:
        with anthropic.Anthropic(
            api_key="k", base_url=sim.base_url, max_retries=0, timeout=0.5
        ) as client:
            started = time.monotonic()
            with pytest.raises(anthropic.APITimeoutError):
                if stream:
                    with client.messages.stream(**ask()) as s:
                        s.get_final_message()
                else:
                    client.messages.create(**ask())
            assert time.monotonic() - started < 5
        wait_until(lambda: sim.stats["disconnects"] == 1)  # the client gave up
        assert sim.stats["by_status"] == {499: 1}


def test_stall_answers_after_stall_seconds(sim: Simulator, client: anthropic.Anthropic) -> None:
    sim.configure(stall_seconds=0.3, script=[Fault.STALL])
    started = time.monotonic()
    assert client.messages.create(**ask()).stop_reason == "end_turn"
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_raises_json_decode_error(
    sim: Simulator, client: anthropic.Anthropic, stream: bool
) -> None:
    sim.set_script([Fault.MALFORMED_JSON])
    with pytest.raises(json.JSONDecodeError):
        if stream:
            with client.messages.stream(**ask()) as s:
                s.get_final_message()
        else:
            client.messages.create(**ask())
    wait_until(lambda: sim.stats["in_flight"] == 0)
    assert sim.requests[-1].status == 200


@pytest.mark.parametrize("stream", [False, True])
def test_content_shapes_parse_and_are_visible(
    sim: Simulator, client: anthropic.Anthropic, stream: bool
) -> None:
    def final() -> anthropic.types.Message:
        if stream:
            with client.messages.stream(**ask()) as s:
                return s.get_final_message()
        message: anthropic.types.Message = client.messages.create(**ask())
        return message

    sim.set_script([Fault.NULL_CONTENT, Fault.EMPTY_CONTENT, Fault.EMPTY_TEXT])
    null, empty, empty_text = final(), final(), final()
    assert null.content is None
    assert empty.content == []
    assert len(empty_text.content) == 1
    assert empty_text.content[0].type == "text"
    assert text_of(empty_text) == ""
    for message in (null, empty, empty_text):
        assert message.stop_reason == "end_turn"
        assert message.usage.output_tokens == 1


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_sets_stop_reason(
    sim: Simulator, client: anthropic.Anthropic, stream: bool
) -> None:
    sim.set_script([Fault.REFUSAL])
    if stream:
        with client.messages.stream(**ask()) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**ask())
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None
    assert message.stop_details.type == "refusal"
    assert text_of(message) == "I can't help with that request."


def test_stream_error_arrives_mid_stream_as_status_200(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    sim.set_script([Fault.STREAM_ERROR])
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.stream(**ask()) as s:
        for text in s.text_stream:
            received.append(text)
    error = caught.value
    assert type(error) is anthropic.APIStatusError  # not InternalServerError: not retried
    assert error.status_code == 200
    assert error.type == "overloaded_error"
    assert len(received) >= 2  # some deltas arrived first
    full = text_of(client.messages.create(**ask()))
    assert full.startswith("".join(received))
    assert len("".join(received)) < len(full)


async def test_stream_error_async(sim: Simulator, aclient: anthropic.AsyncAnthropic) -> None:
    sim.set_script([Fault.STREAM_ERROR])
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream = await aclient.messages.create(**ask(), stream=True)
        async for _ in stream:
            pass
    assert caught.value.status_code == 200


@pytest.mark.parametrize("fault", [Fault.RATE_LIMIT, Fault.OVERLOADED, Fault.UNAVAILABLE])
def test_status_faults_on_streams_fail_before_the_stream(
    sim: Simulator, client: anthropic.Anthropic, fault: str
) -> None:
    sim.set_script([fault])
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.stream(**ask()) as s:
        s.get_final_message()
    assert caught.value.status_code != 200


def test_fault_rates_are_seeded_and_recorded() -> None:
    def statuses(seed: int) -> list[int]:
        with (
            Simulator(fault_rates={"overloaded": 0.3, "refusal": 0.2}, seed=seed) as sim,
            anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
        ):
            for _ in range(60):
                with contextlib.suppress(anthropic.OverloadedError):
                    client.messages.create(**ask())
            records = sim.requests
        for record in records:
            assert record.status == (529 if record.fault == "overloaded" else 200)
        return [r.status for r in records]

    first = statuses(5)
    assert first == statuses(5)
    assert first != statuses(6)
    assert 8 <= first.count(529) <= 30
