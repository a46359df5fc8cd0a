"""The Message Batches API in the simulator, driven by the real anthropic SDK over loopback."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from claude_force_magic.simulator import Simulator, estimate_tokens

from .helpers import HEADERS, MODEL, FakeClock, ask

SECONDS = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(5000.0)


@pytest.fixture
def bsim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(clock=clock, batch_seconds=SECONDS, batch_cancel_seconds=2.0) as running:
        yield running


@pytest.fixture
def bclient(bsim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-test", base_url=bsim.base_url, max_retries=0) as c:
        yield c


def item(n: int, **overrides: Any) -> dict[str, Any]:
    """One batch request asking task ``n``."""
    return {"custom_id": f"req-{n}", "params": ask(f"Explain topic number {n}", **overrides)}


def items(count: int) -> list[dict[str, Any]]:
    return [item(n) for n in range(count)]


def results_by_id(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result for line in client.messages.batches.results(batch_id)}


def raw(sim: Simulator, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    return httpx2.request(method, sim.base_url + path, headers=HEADERS, **kwargs)


# ---------------------------------------------------------------- lifecycle


def test_create_returns_an_in_progress_batch(bclient: anthropic.Anthropic) -> None:
    batch = bclient.messages.batches.create(requests=items(4))
    assert batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 4
    assert batch.request_counts.succeeded == 0
    assert batch.ended_at is None
    assert batch.results_url is None
    assert batch.cancel_initiated_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(24 * 3600)


def test_items_complete_progressively_then_the_batch_ends(
    clock: FakeClock, bclient: anthropic.Anthropic
) -> None:
    batch = bclient.messages.batches.create(requests=items(10))
    seen = []
    for _ in range(4):
        clock.now += SECONDS / 4
        counts = bclient.messages.batches.retrieve(batch.id).request_counts
        assert counts.processing + counts.succeeded == 10
        seen.append(counts.succeeded)
    assert seen == sorted(seen)
    assert 0 < seen[0] < seen[1] < 10 == seen[-1]
    ended = bclient.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.ended_at is not None
    assert (ended.ended_at - ended.created_at).total_seconds() == pytest.approx(SECONDS)
    assert ended.results_url is not None
    assert ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")


def test_results_look_like_messages_answers(
    clock: FakeClock, bsim: Simulator, bclient: anthropic.Anthropic
) -> None:
    requests = [item(0), item(1, max_tokens=8), item(2, stop_sequences=["##"])]
    batch = bclient.messages.batches.create(requests=requests)
    clock.now += SECONDS
    results = results_by_id(bclient, batch.id)
    assert set(results) == {"req-0", "req-1", "req-2"}
    for request in requests:
        result = results[request["custom_id"]]
        assert result.type == "succeeded"
        direct = bclient.messages.create(**request["params"])
        message = result.message
        assert message.id.startswith("msg_")
        assert message.model == MODEL
        assert message.content == direct.content
        assert message.stop_reason == direct.stop_reason
        assert message.usage.input_tokens == direct.usage.input_tokens
        assert message.usage.output_tokens == direct.usage.output_tokens
    assert results["req-1"].message.stop_reason == "max_tokens"
    assert results["req-2"].message.stop_reason == "stop_sequence"
    # Reading the results twice gives the same file.
    again = results_by_id(bclient, batch.id)
    assert again["req-0"].message.id == results["req-0"].message.id


def test_results_before_the_end_are_refused(bsim: Simulator, bclient: anthropic.Anthropic) -> None:
    batch = bclient.messages.batches.create(requests=items(2))
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        bclient.messages.batches.results(batch.id)
    response = raw(bsim, "GET", f"/v1/messages/batches/{batch.id}/results")
    assert response.status_code == 400
    assert "has not finished processing" in response.json()["error"]["message"]


async def test_async_client_runs_a_batch(clock: FakeClock) -> None:
    async with (
        Simulator(clock=clock, batch_seconds=1.0) as sim,
        anthropic.AsyncAnthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        batch = await client.messages.batches.create(requests=items(3))
        clock.now += 1.0
        assert (await client.messages.batches.retrieve(batch.id)).processing_status == "ended"
        lines = [line async for line in await client.messages.batches.results(batch.id)]
    assert sorted(line.custom_id for line in lines) == ["req-0", "req-1", "req-2"]
    assert {line.result.type for line in lines} == {"succeeded"}


# ---------------------------------------------------------------- list and paging


def test_list_pages_newest_first(bclient: anthropic.Anthropic) -> None:
    ids = [bclient.messages.batches.create(requests=items(1)).id for _ in range(5)]
    page = bclient.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True
    assert page.first_id == ids[4]
    assert page.last_id == ids[3]
    # Auto-paging follows after_id to the end.
    assert [b.id for b in bclient.messages.batches.list(limit=2)] == ids[::-1]
    older = bclient.messages.batches.list(limit=10, after_id=ids[2])
    assert [b.id for b in older.data] == [ids[1], ids[0]]
    assert older.has_more is False
    newer = bclient.messages.batches.list(limit=1, before_id=ids[2])
    assert [b.id for b in newer.data] == [ids[3]]
    assert newer.has_more is True
    # Paging with before_id walks towards the newest.
    walked = [b.id for b in bclient.messages.batches.list(limit=1, before_id=ids[1])]
    assert walked == [ids[2], ids[3], ids[4]]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit: must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit: must be an integer from 1 to 1000"),
        ({"after_id": "msgbatch_nope"}, "after_id: no Message Batch"),
    ],
)
def test_bad_list_queries_are_refused(bsim: Simulator, query: dict[str, str], message: str) -> None:
    response = raw(bsim, "GET", "/v1/messages/batches", params=query)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


# ---------------------------------------------------------------- cancel and delete


def test_cancel_moves_unfinished_items_to_canceled(
    clock: FakeClock, bclient: anthropic.Anthropic
) -> None:
    batch = bclient.messages.batches.create(requests=items(10))
    clock.now += SECONDS / 2
    canceling = bclient.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    done = canceling.request_counts.succeeded
    assert 0 < done < 10
    assert canceling.request_counts.processing == 10 - done
    clock.now += 1.0
    assert bclient.messages.batches.retrieve(batch.id).request_counts.succeeded == done
    clock.now += 1.0  # batch_cancel_seconds=2 have passed
    ended = bclient.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 10 - done
    assert ended.request_counts.processing == 0
    kinds = Counter(r.type for r in results_by_id(bclient, batch.id).values())
    assert kinds == {"succeeded": done, "canceled": 10 - done}
    # Cancelling an ended batch changes nothing.
    assert bclient.messages.batches.cancel(batch.id).request_counts == ended.request_counts


def test_delete_is_refused_while_processing(
    clock: FakeClock, bsim: Simulator, bclient: anthropic.Anthropic
) -> None:
    batch = bclient.messages.batches.create(requests=items(2))
    with pytest.raises(anthropic.BadRequestError, match="cannot be deleted"):
        bclient.messages.batches.delete(batch.id)
    bclient.messages.batches.cancel(batch.id)
    with pytest.raises(anthropic.BadRequestError, match="canceling and cannot be deleted"):
        bclient.messages.batches.delete(batch.id)
    clock.now += SECONDS
    deleted = bclient.messages.batches.delete(batch.id)
    assert deleted.id == batch.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        bclient.messages.batches.retrieve(batch.id)
    assert raw(bsim, "GET", f"/v1/messages/batches/{batch.id}/results").status_code == 404


# ---------------------------------------------------------------- validation


def test_per_item_param_errors_become_errored_results(
    clock: FakeClock, bclient: anthropic.Anthropic
) -> None:
    no_max = {"custom_id": "no-max", "params": {"model": MODEL, "messages": ask()["messages"]}}
    streaming = item(1, stream=True)
    streaming["custom_id"] = "streaming"
    five = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}] * 5
    too_many = item(2, system=five)
    too_many["custom_id"] = "too-many"
    batch = bclient.messages.batches.create(requests=[item(0), no_max, streaming, too_many])
    clock.now += SECONDS
    ended = bclient.messages.batches.retrieve(batch.id)
    assert ended.request_counts.succeeded == 1
    assert ended.request_counts.errored == 3
    results = results_by_id(bclient, batch.id)
    assert results["req-0"].type == "succeeded"
    for custom_id, message in [
        ("no-max", "max_tokens: Field required"),
        ("streaming", "streaming is not supported"),
        ("too-many", "A maximum of 4 blocks with cache_control"),
    ]:
        result = results[custom_id]
        assert result.type == "errored"
        assert result.error.type == "error"
        assert result.error.error.type == "invalid_request_error"
        assert message in result.error.error.message


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: at least one request is required"),
        ([item(0), item(0)], "requests.1.custom_id: 'req-0' is not unique"),
        ([{"custom_id": "x" * 65, "params": ask()}], "requests.0.custom_id: must be 1-64"),
        ([{"custom_id": "bad id!", "params": ask()}], "requests.0.custom_id: must be 1-64"),
        ([{"custom_id": "", "params": ask()}], "requests.0.custom_id: must be 1-64"),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
        ([{"custom_id": "a", "params": "hi"}], "requests.0.params: must be an object"),
        ([{"custom_id": "a", "params": ask(), "x": 1}], "requests.0.x: Extra inputs"),
    ],
)
def test_bad_batch_shapes_are_refused(
    bsim: Simulator, bclient: anthropic.Anthropic, requests: list[Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        bclient.messages.batches.create(requests=requests)
    assert message in str(err.value)
    assert bclient.messages.batches.list().data == []


def test_a_body_that_is_not_a_batch_is_refused(bsim: Simulator) -> None:
    for body, message in [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"requests": [], "stream": true}', "stream: Extra inputs"),
    ]:
        response = raw(bsim, "POST", "/v1/messages/batches", content=body)
        assert response.status_code == 400
        assert message in response.json()["error"]["message"]


def test_size_limits_are_configurable(clock: FakeClock) -> None:
    with (
        Simulator(clock=clock, batch_max_requests=3, batch_max_bytes=2000) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        with pytest.raises(anthropic.BadRequestError, match="at most 3 requests, got 4"):
            client.messages.batches.create(requests=items(4))
        big = {"custom_id": "big", "params": ask("word " * 500)}
        with pytest.raises(anthropic.APIStatusError) as err:
            client.messages.batches.create(requests=[big])
        assert err.value.status_code == 413
        assert "2000 bytes" in str(err.value)
        assert client.messages.batches.create(requests=items(3)).request_counts.processing == 3


def test_bad_batch_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch seconds"):
        Simulator(batch_seconds=-1)
    with pytest.raises(ValueError, match="unknown outcome"):
        Simulator(batch_fault_rates={"canceled": 0.1})
    with pytest.raises(ValueError, match="must not exceed 1"):
        Simulator(batch_fault_rates={"errored": 0.6, "expired": 0.6})


# ---------------------------------------------------------------- faults


def test_fault_rates_give_errored_and_expired_items(clock: FakeClock) -> None:
    rates = {"errored": 0.2, "expired": 0.1}
    with (
        Simulator(clock=clock, batch_seconds=SECONDS, batch_fault_rates=rates, seed=7) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        batch = client.messages.batches.create(requests=items(400))
        clock.now += SECONDS * 0.999
        running = client.messages.batches.retrieve(batch.id).request_counts
        assert running.expired == 0  # expired items stay "processing" until the end
        clock.now += SECONDS
        counts = client.messages.batches.retrieve(batch.id).request_counts
        assert running.processing >= counts.expired > 0
        kinds = Counter(r.type for r in results_by_id(client, batch.id).values())
        for error in (
            r.error for r in results_by_id(client, batch.id).values() if r.type == "errored"
        ):
            assert error.error.type == "api_error"
    assert kinds == {
        "succeeded": counts.succeeded,
        "errored": counts.errored,
        "expired": counts.expired,
    }
    assert 40 < counts.errored < 120
    assert 15 < counts.expired < 70


def test_the_seed_makes_outcomes_reproducible(clock: FakeClock) -> None:
    outcomes = []
    for _ in range(2):
        with (
            Simulator(clock=clock, batch_seconds=0, batch_fault_rates={"errored": 0.5}) as sim,
            anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
        ):
            batch = client.messages.batches.create(requests=items(50))
            outcomes.append({k: r.type for k, r in results_by_id(client, batch.id).items()})
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0].values()) == {"succeeded", "errored"}


# ---------------------------------------------------------------- retention, keys, limits


def test_batches_vanish_after_the_retention(clock: FakeClock) -> None:
    with (
        Simulator(clock=clock, batch_seconds=1.0, batch_retention_seconds=100.0) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        batch = client.messages.batches.create(requests=items(2))
        clock.now += 99.0
        assert len(results_by_id(client, batch.id)) == 2
        clock.now += 1.0
        with pytest.raises(anthropic.NotFoundError, match="not found"):
            client.messages.batches.retrieve(batch.id)
        assert client.messages.batches.list().data == []
        response = raw(sim, "GET", f"/v1/messages/batches/{batch.id}/results")
        assert response.status_code == 404


def test_batches_belong_to_their_api_key(bsim: Simulator, bclient: anthropic.Anthropic) -> None:
    batch = bclient.messages.batches.create(requests=items(1))
    with anthropic.Anthropic(api_key="sk-two", base_url=bsim.base_url, max_retries=0) as other:
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.retrieve(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.cancel(batch.id)
        assert other.messages.batches.list().data == []
    assert [b.id for b in bclient.messages.batches.list()] == [batch.id]


def test_auth_rate_limits_and_the_request_log_apply(clock: FakeClock) -> None:
    with Simulator(clock=clock, api_key="sk-right", rpm=2) as sim:
        wrong = anthropic.Anthropic(api_key="sk-wrong", base_url=sim.base_url, max_retries=0)
        with wrong, pytest.raises(anthropic.AuthenticationError):
            wrong.messages.batches.list()
        with anthropic.Anthropic(api_key="sk-right", base_url=sim.base_url, max_retries=0) as c:
            batch = c.messages.batches.create(requests=items(1))
            c.messages.batches.retrieve(batch.id)
            with pytest.raises(anthropic.RateLimitError) as err:
                c.messages.batches.list()
        assert err.value.response.headers["retry-after"]
        log = [(r.method, r.path, r.status) for r in sim.requests]
        assert log == [
            ("GET", "/v1/messages/batches", 401),
            ("POST", "/v1/messages/batches", 200),
            ("GET", f"/v1/messages/batches/{batch.id}", 200),
            ("GET", "/v1/messages/batches", 429),
        ]
        assert sim.requests[1].body["requests"][0]["custom_id"] == "req-0"
        assert all("sk-right" not in value for value in sim.requests[1].headers.values())


# ---------------------------------------------------------------- a large batch


def test_a_20000_item_batch_streams_its_results(clock: FakeClock) -> None:
    count = 20_000
    requests = [
        {"custom_id": f"r{n}", "params": {**ask(f"Task {n} about intervals"), "max_tokens": 16}}
        for n in range(count)
    ]
    with (
        Simulator(clock=clock, batch_seconds=60.0) as sim,
        anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        batch = client.messages.batches.create(requests=requests)
        clock.now += 30.0
        half = client.messages.batches.retrieve(batch.id).request_counts
        assert half.succeeded == count // 2
        clock.now += 30.0
        seen: set[str] = set()
        output_tokens = 0
        for line in client.messages.batches.results(batch.id):
            assert line.result.type == "succeeded"
            seen.add(line.custom_id)
            output_tokens += line.result.message.usage.output_tokens
        assert len(seen) == count
        assert output_tokens == 16 * count  # every answer was cut at max_tokens
        # The file is sent chunked as it is generated, never as one body with a length.
        url = f"{sim.base_url}/v1/messages/batches/{batch.id}/results"
        with httpx2.stream("GET", url, headers=HEADERS) as response:
            assert response.headers["content-type"] == "application/binary"
            assert "content-length" not in response.headers
            assert response.headers.get("transfer-encoding") == "chunked"
            first = json.loads(next(response.iter_lines()))
        assert first["custom_id"] == "r0"
        assert first["result"]["message"]["usage"]["input_tokens"] == estimate_tokens(
            "Task 0 about intervals"
        )
