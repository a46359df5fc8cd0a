"""Tests for engine/client.py: each simulator fault maps to our error type via the real SDK."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import pytest

from claude_force_magic.engine.client import ClientHandle, map_api_error, parse_retry_after
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.errors import (
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
from claude_force_magic.settings import Secret
from claude_force_magic.simulator import Simulator

MAPPING = [
    ("rate_limit", RateLimitError),
    ("overloaded", OverloadedError),
    ("server_error", ServerError),
    ("unavailable", ServerError),
    ("disconnect", APIConnectionError),
    ("stall", APITimeoutError),
    ("malformed_json", ResponseError),
    ("null_content", ResponseError),
    ("empty_content", ResponseError),
    ("empty_text", ResponseError),
    ("refusal", ResponseError),
]


@pytest.mark.parametrize(("fault", "expected"), MAPPING)
async def test_each_simulator_fault_maps_to_our_type(
    sim: Simulator,
    make_orch: Callable[..., AsyncAgentOrchestrator],
    fault: str,
    expected: type[APIError],
) -> None:
    sim.configure(stall_seconds=5.0)
    sim.set_script([fault])
    orch = make_orch(timeout_seconds=0.5, enable_cache=False)
    result = await orch.execute_agent("python-expert", "Explain context managers")
    assert not result.success
    assert type(result.error) is expected, result.errors
    assert result.errors and result.errors[0].startswith(expected.__name__)
    assert sim.stats["requests"] == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("stream_error", OverloadedError),
        ("disconnect", APIConnectionError),
        ("malformed_json", ResponseError),
    ],
)
async def test_stream_faults_map_to_our_type(
    sim: Simulator,
    make_orch: Callable[..., AsyncAgentOrchestrator],
    fault: str,
    expected: type[APIError],
) -> None:
    sim.set_script([fault])
    orch = make_orch(enable_cache=False)
    items = [i async for i in orch.stream_agent("python-expert", "Explain iterators")]
    result = items[-1]
    assert not isinstance(result, str)
    assert not result.success
    assert type(result.error) is expected, result.errors


async def test_status_codes_map(sim: Simulator) -> None:
    client = anthropic.AsyncAnthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0)
    try:
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(model="m", max_tokens=10, messages=[])
        mapped = map_api_error(bad.value)
        assert isinstance(mapped, BadRequestError)
        assert mapped.status_code == 400
        assert mapped.request_id
        sim.set_script(["rate_limit"])
        with pytest.raises(anthropic.RateLimitError) as limited:
            await client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        rate = map_api_error(limited.value)
        assert isinstance(rate, RateLimitError)
        assert rate.retry_after == 1.0  # the simulator sends whole seconds, rounded up
    finally:
        await client.close()


async def test_wrong_key_is_authentication_error_and_key_not_in_message() -> None:
    async with Simulator(api_key="sk-right-key") as sim:
        client = anthropic.AsyncAnthropic(
            api_key="sk-ant-wrong-secret-123456", base_url=sim.base_url, max_retries=0
        )
        try:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await client.messages.create(
                    model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
                )
        finally:
            await client.close()
    mapped = map_api_error(info.value)
    assert isinstance(mapped, AuthenticationError)
    assert "wrong-secret" not in str(mapped)
    assert "ANTHROPIC_API_KEY" in str(mapped)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after": "3"}) == 3
    assert parse_retry_after(
        {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0
    ) == (pytest.approx(10.0))
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-4"}) == 0
    assert parse_retry_after(None) is None


def test_foreign_exceptions_become_api_error() -> None:
    assert type(map_api_error(RuntimeError("x"))) is APIError
    already = ServerError("kept")
    assert map_api_error(already) is already


async def test_missing_key_is_configuration_error_at_first_call() -> None:
    handle = ClientHandle(api_key=None, base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY") as info:
        handle.get()
    assert "simulator" in str(info.value)


async def test_client_reused_on_one_loop_and_closed(sim: Simulator) -> None:
    handle = ClientHandle(api_key=Secret("sk-test"), base_url=sim.base_url)
    first = handle.get()
    assert handle.get() is first
    assert first.max_retries == 0
    await handle.aclose()
    assert first.is_closed()
