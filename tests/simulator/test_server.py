"""The server over real loopback HTTP, driven by the unmodified anthropic SDK (and raw httpx2)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import anthropic
import httpx2
import pytest

from claude_force_magic.simulator import Latency, Simulator, estimate_tokens
from claude_force_magic.simulator import server as server_module

from .helpers import HEADERS, MODEL, TASK, ask, async_wait_until, text_of, wait_until


def post(sim: Simulator, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx2.post(
        sim.base_url + "/v1/messages",
        content=content,
        headers=HEADERS if headers is None else headers,
    )


# ---------------------------------------------------------------- successful answers


def test_sdk_parses_a_complete_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**ask())
    text = text_of(message)
    assert message.id.startswith("msg_sim_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert text.startswith("## ")
    assert "```python" in text
    assert message.usage.input_tokens == estimate_tokens(TASK)
    assert message.usage.output_tokens == estimate_tokens(text)
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 0
    assert message.usage.service_tier == "standard"
    assert message._request_id is not None
    assert message._request_id.startswith("req_sim_")


async def test_async_sdk_parses_a_complete_message(aclient: anthropic.AsyncAnthropic) -> None:
    message = await aclient.messages.create(**ask(model="claude-opus-5"))
    assert message.model == "claude-opus-5"
    assert text_of(message).startswith("## ")
    assert message.stop_reason == "end_turn"


def test_same_request_and_seed_give_the_same_text_and_another_seed_does_not() -> None:
    def text(seed: int) -> str:
        with (
            Simulator(seed=seed) as sim,
            anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
        ):
            return text_of(client.messages.create(**ask()))

    assert text(0) == text(0)
    assert text(0) != text(1)


def test_max_tokens_cuts_the_answer(client: anthropic.Anthropic) -> None:
    full = text_of(client.messages.create(**ask()))
    cut = client.messages.create(**ask(max_tokens=10))
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 10
    assert text_of(cut) == full[:40]


def test_stop_sequences_stop_the_answer(client: anthropic.Anthropic) -> None:
    full = text_of(client.messages.create(**ask()))
    message = client.messages.create(**ask(stop_sequences=["```"]))
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "```"
    assert text_of(message) == full[: full.index("```")]


def test_system_prompt_counts_as_input_and_changes_the_answer(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(**ask())
    system = "You are a careful Python expert."
    with_system = client.messages.create(**ask(system=[{"type": "text", "text": system}]))
    assert with_system.usage.input_tokens == plain.usage.input_tokens + estimate_tokens(system)
    assert text_of(with_system) != text_of(plain)


def test_count_tokens_matches_the_usage_of_create(client: anthropic.Anthropic) -> None:
    kwargs = ask(system="Be brief.")
    counted = client.messages.count_tokens(
        model=kwargs["model"], messages=kwargs["messages"], system=kwargs["system"]
    )
    assert counted.input_tokens == client.messages.create(**kwargs).usage.input_tokens
    assert counted.input_tokens == estimate_tokens(TASK) + estimate_tokens("Be brief.")


def test_non_ascii_text_round_trips(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**ask("Écris une fonction qui trie des données 🐍"))
    assert text_of(message).startswith("## ")
    assert message.usage.input_tokens == estimate_tokens(
        "Écris une fonction qui trie des données 🐍"
    )


# ---------------------------------------------------------------- credentials and headers


def test_x_api_key_is_accepted_as_well_as_bearer(sim: Simulator) -> None:
    response = post(sim, ask())
    assert response.status_code == 200
    assert response.json()["content"][0]["type"] == "text"
    assert response.headers["request-id"].startswith("req_sim_")


@pytest.mark.parametrize(
    "headers",
    [
        {"anthropic-version": "2023-06-01"},
        {"anthropic-version": "2023-06-01", "authorization": "Bearer"},
        {"anthropic-version": "2023-06-01", "authorization": "Basic abc"},
        {"anthropic-version": "2023-06-01", "x-api-key": ""},
    ],
)
def test_missing_credentials_are_401(sim: Simulator, headers: dict[str, str]) -> None:
    response = post(sim, ask(), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_only_the_configured_key_is_accepted() -> None:
    with Simulator(api_key="sk-right") as sim:
        with (
            anthropic.Anthropic(api_key="sk-wrong", base_url=sim.base_url, max_retries=0) as c,
            pytest.raises(anthropic.AuthenticationError) as caught,
        ):
            c.messages.create(**ask())
        assert caught.value.status_code == 401
        assert caught.value.type == "authentication_error"
        with anthropic.Anthropic(api_key="sk-right", base_url=sim.base_url, max_retries=0) as c:
            assert c.messages.create(**ask()).content
        sim.configure(api_key=None)
        with anthropic.Anthropic(api_key="sk-other", base_url=sim.base_url, max_retries=0) as c:
            assert c.messages.create(**ask()).content


def test_missing_anthropic_version_is_400(sim: Simulator) -> None:
    response = post(sim, ask(), headers={"x-api-key": "sk-test"})
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


def test_error_bodies_have_exactly_the_api_shape(sim: Simulator) -> None:
    response = post(sim, {"model": MODEL})
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["request_id"] == response.headers["request-id"]
    assert response.headers["content-type"].startswith("application/json")


def test_unknown_paths_are_404_in_the_api_shape(sim: Simulator) -> None:
    response = httpx2.get(sim.base_url + "/v1/models", headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


# ---------------------------------------------------------------- request validation


def without(key: str) -> dict[str, Any]:
    body = ask()
    del body[key]
    return body


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (without("max_tokens"), "max_tokens: Field required"),
        (without("model"), "model: Field required"),
        (without("messages"), "messages: Field required"),
        (ask(temperature=0.2), "temperature"),
        (ask(top_p=0.9), "top_p"),
        (ask(top_k=5), "top_k"),
        (ask(messages=[]), "messages: at least one"),
        (ask(messages=[{"role": "assistant", "content": "hi"}]), "messages.0.role"),
        (ask(messages=[{"role": "system", "content": "hi"}]), "messages.0.role"),
        (ask(messages=[{"role": "user"}]), "messages.0.content"),
        (ask(messages=[{"role": "user", "content": 3}]), "messages.0.content"),
        (ask(messages=[{"role": "user", "content": [{"type": "text"}]}]), "content.0.text"),
        (ask(max_tokens=0), "max_tokens"),
        (ask(max_tokens="10"), "max_tokens"),
        (ask(max_tokens=True), "max_tokens"),
        (ask(model=""), "model"),
        (ask(system=5), "system"),
        (ask(system=[{"type": "image", "source": {}}]), "system.0.type"),
        (ask(stream="yes"), "stream"),
        (ask(stop_sequences=[""]), "stop_sequences"),
        (ask(metadata={"user_id": 5}), "metadata.user_id"),
        (ask(metadata={"user_id": "u1", "session": "x"}), "metadata.session: Extra inputs"),
        (ask(messages=[{"role": "user", "content": ""}]), "messages.0.content: all messages"),
        (ask(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), "non-empty"),
        (ask(system=[{"type": "text", "text": ""}]), "system.0.text"),
        (ask(frobnicate=True), "frobnicate: Extra inputs are not permitted"),
        ([1, 2], "JSON object"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(sim: Simulator, body: Any, fragment: str) -> None:
    response = post(sim, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]


def test_sdk_raises_bad_request_for_smuggled_temperature(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="temperature") as caught:
        client.messages.create(**ask(), extra_body={"temperature": 0.5})
    assert caught.value.status_code == 400
    assert caught.value.request_id is not None
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.create(**ask(messages=[]))


def test_count_tokens_validates_too(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body={"top_k": 1}
        )
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.count_tokens(model=MODEL, messages=[])


# ---------------------------------------------------------------- log and statistics


def test_requests_are_logged_with_credentials_masked(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    client.messages.create(**ask())
    post(sim, ask(max_tokens=0))
    first, second = sim.requests
    assert (first.method, first.path, first.status, first.fault) == (
        "POST",
        "/v1/messages",
        200,
        "ok",
    )
    assert first.headers["authorization"] == "***"
    assert "sk-test" not in repr(first)
    assert first.body["messages"][0]["content"] == TASK
    assert first.duration >= 0
    assert first.time <= second.time
    assert second.status == 400
    assert second.headers["x-api-key"] == "***"
    assert second.fault is None


def test_the_request_log_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "REQUEST_LOG_SIZE", 3)
    with Simulator() as sim:
        for n in range(5):
            post(sim, ask(max_tokens=n + 1))
        assert [r.body["max_tokens"] for r in sim.requests] == [3, 4, 5]
        assert sim.stats["requests"] == 5


def test_stats_and_reset(sim: Simulator, client: anthropic.Anthropic) -> None:
    client.messages.create(**ask())
    post(sim, ask(temperature=1.0))
    assert sim.stats == {
        "requests": 2,
        "in_flight": 0,
        "max_in_flight": 1,
        "disconnects": 0,
        "by_status": {200: 1, 400: 1},
        "prompt_cache": {
            "hits": 0,
            "misses": 0,
            "writes": 0,
            "read_tokens": 0,
            "written_tokens": 0,
        },
    }
    sim.reset()
    assert sim.requests == []
    assert sim.stats["requests"] == 0
    assert sim.stats["by_status"] == {}


async def test_max_in_flight_sees_concurrent_requests() -> None:
    async with (
        Simulator(latency=Latency.fixed(0.3)) as sim,
        anthropic.AsyncAnthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
    ):
        messages = await asyncio.gather(
            *(client.messages.create(**ask(f"task {n}")) for n in range(20))
        )
        assert all(m.content for m in messages)
        stats = sim.stats
    assert stats["max_in_flight"] >= 15
    assert stats["in_flight"] == 0
    assert stats["by_status"] == {200: 20}


async def test_a_client_that_gives_up_is_counted_as_a_disconnect() -> None:
    with Simulator(latency=Latency.fixed(10.0)) as sim:
        async with anthropic.AsyncAnthropic(
            api_key="k", base_url=sim.base_url, max_retries=0
        ) as client:
            task = asyncio.create_task(client.messages.create(**ask()))
            await async_wait_until(lambda: sim.stats["in_flight"] == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await async_wait_until(lambda: sim.stats["disconnects"] == 1)
        assert sim.stats["in_flight"] == 0
        assert sim.requests[-1].status == 499


# ---------------------------------------------------------------- configuration and lifecycle


def test_configure_while_running_changes_the_next_request(
    sim: Simulator, client: anthropic.Anthropic
) -> None:
    before = text_of(client.messages.create(**ask()))
    sim.configure(seed=99)
    after = text_of(client.messages.create(**ask()))
    assert before != after
    sim.configure(latency=Latency.fixed(0.2))
    started = time.monotonic()
    client.messages.create(**ask())
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ValueError, match="unknown fault"):
        sim.configure(script=["ok", "explode"], seed=1)
    assert sim.script == []


def test_async_form_serves_on_the_running_loop() -> None:
    async def scenario() -> str:
        async with Simulator() as sim:
            assert sim.base_url.startswith("http://127.0.0.1:")
            async with anthropic.AsyncAnthropic(
                api_key="k", base_url=sim.base_url, max_retries=0
            ) as client:
                message = await client.messages.create(**ask())
        return text_of(message)

    assert asyncio.run(scenario()).startswith("## ")


def test_fixed_port_and_restart_on_the_same_port() -> None:
    with Simulator() as first:
        port = first.port
    with Simulator(port=port) as second:
        assert second.base_url == f"http://127.0.0.1:{port}"
        assert post(second, ask()).status_code == 200


def test_stop_closes_connections_joins_the_thread_and_releases_the_port() -> None:
    sim = Simulator().start()
    port = sim.port
    request = (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: v\r\n"
        "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n{body}"
    )
    body = json.dumps(ask(max_tokens=5))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request.format(n=len(body), body=body).encode())
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 3
        assert conn.recv(65536) == b""  # the idle keep-alive connection was closed
    assert not [t for t in threading.enumerate() if t.name == "claude-sim"]
    with socket.socket() as probe:
        # As a server would rebind it: allowed over TIME_WAIT, refused if still listening.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.base_url


def test_stop_does_not_wait_for_stalled_requests() -> None:
    sim = Simulator(script=["stall"], stall_seconds=30).start()
    errors: list[BaseException] = []

    def call() -> None:
        with anthropic.Anthropic(
            api_key="k", base_url=sim.base_url, max_retries=0, timeout=20
        ) as c:
            try:
                c.messages.create(**ask())
            except anthropic.APIError as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: sim.stats["in_flight"] == 1)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 3
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert isinstance(errors[0], anthropic.APIConnectionError)
    assert sim.stats["disconnects"] == 0  # shutting down is not a client disconnect


def test_starting_twice_is_an_error(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        sim.start()


async def test_stop_is_refused_for_a_simulator_started_on_the_caller_loop() -> None:
    sim = await Simulator().astart()
    try:
        with pytest.raises(RuntimeError, match="astop"):
            sim.stop()
        assert sim.base_url.startswith("http://127.0.0.1:")
    finally:
        await sim.astop()
    sim.stop()  # stopped: a no-op


def test_an_empty_final_assistant_prefill_and_metadata_user_id_are_accepted(
    client: anthropic.Anthropic,
) -> None:
    prefill = [{"role": "user", "content": TASK}, {"role": "assistant", "content": ""}]
    message = client.messages.create(**ask(messages=prefill, metadata={"user_id": "u-42"}))
    assert message.content[0].text


async def test_hundreds_of_simultaneous_new_connections_are_all_served() -> None:
    async with Simulator(latency=Latency.fixed(0.2)) as sim:
        async with anthropic.AsyncAnthropic(
            api_key="sk-test", base_url=sim.base_url, max_retries=0
        ) as client:
            answers = await asyncio.gather(
                *(client.messages.create(**ask(f"task {i}")) for i in range(400)),
                return_exceptions=True,
            )
        failures = [repr(a) for a in answers if isinstance(a, BaseException)]
        assert failures == []
        assert sim.stats["by_status"] == {200: 400}
