"""Message Batches through the orchestrator: the real SDK over loopback against the simulator.

The simulator runs on a hand-moved clock, so a batch moves from ``in_progress`` to ``ended``
when the test says so, never by sleeping.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.engine.batch import BatchLimits, BatchStatus
from claude_force_magic.engine.budget import Budget
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.errors import (
    BatchItemError,
    BatchJobNotFoundError,
    BudgetExceededError,
    ConfigurationError,
    IntegrityError,
    UnknownAgentError,
    UnsafePathError,
)
from claude_force_magic.simulator import Latency, Simulator


class FakeClock:
    """The simulator's clock, moved by hand (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


AGENT = "python-expert"
KEY = "sk-test-batch-key"
SECONDS = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def bsim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with Simulator(
        latency=Latency.fixed(0.0), clock=clock, batch_seconds=SECONDS, batch_cancel_seconds=1.0
    ) as s:
        yield s


@pytest.fixture
async def make(
    bsim: Simulator, tmp_path: Path
) -> AsyncIterator[Callable[..., AsyncAgentOrchestrator]]:
    made: list[AsyncAgentOrchestrator] = []

    def factory(**kwargs: Any) -> AsyncAgentOrchestrator:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("base_url", bsim.base_url)
        kwargs.setdefault("calls_per_minute", None)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        orch = AsyncAgentOrchestrator(**kwargs)
        made.append(orch)
        return orch

    yield factory
    for orch in made:
        await orch.close()


def tasks(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(AGENT, f"Explain topic number {i}") for i in range(start, start + n)]


def creates(sim: Simulator) -> list[list[dict[str, Any]]]:
    """The ``requests`` of every batch the simulator was asked to create."""
    return [
        r.body["requests"]
        for r in sim.requests
        if r.method == "POST" and r.path == "/v1/messages/batches"
    ]


def sent_tasks(sim: Simulator) -> list[str]:
    return [req["params"]["messages"][-1]["content"] for batch in creates(sim) for req in batch]


async def finish(clock: FakeClock, job: Any) -> BatchStatus:
    """Move the clock past the end of every batch and poll once."""
    clock.now += SECONDS + 1
    return await job.wait(poll=0.01)


# -- submitting ------------------------------------------------------------------------------


async def test_results_come_back_in_item_order_at_half_the_price(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    orch = make()
    job = await orch.submit_batch(tasks(6))
    assert job.id.startswith("job_") and len(job.ids) == 1
    assert len(creates(bsim)[0]) == 6
    status = await finish(clock, job)
    assert status.ended and status.counts["succeeded"] == 6
    results = await job.results()
    assert [r.metadata["custom_id"] for r in results] == [f"item-{i}" for i in range(6)]
    for result in results:
        assert result.success, result.errors
        meta = result.metadata
        live_price = orch.prices.cost(meta["model"], meta)
        assert live_price is not None and meta["cost_usd"] == pytest.approx(live_price / 2)
        assert meta["result_type"] == "succeeded" and meta["batch_id"] == job.ids[0]
    assert orch.spent_usd == pytest.approx(sum(r.metadata["cost_usd"] for r in results))
    for i in (0, 5):  # the simulator's answer depends on the request: the order is right
        live = await orch.execute_agent(AGENT, f"Explain topic number {i}", use_cache=False)
        assert live.output == results[i].output
        assert live.metadata["cost_usd"] == pytest.approx(2 * results[i].metadata["cost_usd"])


async def test_cached_items_are_answered_from_the_cache_and_not_sent(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    orch = make()
    live = await orch.execute_agent(AGENT, "Explain topic number 2")
    job = await orch.submit_batch(tasks(4))
    sent = sent_tasks(bsim)
    assert len(sent) == 3 and "Explain topic number 2" not in sent
    status = await finish(clock, job)
    assert status.counts["cached"] == 1 and status.counts["succeeded"] == 3
    results = await job.results()
    assert results[2].cached and results[2].output == live.output
    assert results[2].metadata["cost_usd"] == 0.0
    assert [r.success for r in results] == [True] * 4


async def test_a_job_answered_entirely_from_the_cache_sends_nothing(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    orch = make(budget_usd=1.0)
    await orch.execute_multiple(tasks(3))
    spent = orch.spent_usd
    job = await orch.submit_batch(tasks(3))
    assert job.ids == [] and creates(bsim) == []
    status = await job.status()
    assert status.ended and status.counts["cached"] == 3
    assert all(r.cached for r in await job.results())
    assert orch.spent_usd == spent and orch._budget.reserved == pytest.approx(0.0, abs=1e-12)


async def test_a_later_interactive_call_is_a_cache_hit_and_metrics_say_batch(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    orch = make()
    job = await orch.submit_batch(tasks(3))
    await finish(clock, job)
    results = await job.results()
    before = len(bsim.requests)
    again = await orch.execute_agent(AGENT, "Explain topic number 1")
    assert again.cached and again.output == results[1].output
    assert len(bsim.requests) == before  # nothing sent
    modes = [r.call_mode for r in orch.metrics.recent(100)]
    assert modes.count("batch") == 3


async def test_items_over_the_limits_are_split_into_several_batches(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    bsim.configure(batch_max_requests=3)  # the server refuses larger batches
    orch = make()
    job = await orch.submit_batch(tasks(8), limits=BatchLimits(max_requests=3))
    assert [len(b) for b in creates(bsim)] == [3, 3, 2]
    assert len(job.ids) == 3
    await finish(clock, job)
    results = await job.results()
    assert [r.metadata["custom_id"] for r in results] == [f"item-{i}" for i in range(8)]
    assert all(r.success for r in results)
    assert {r.metadata["batch_id"] for r in results} == set(job.ids)


async def test_the_byte_limit_splits_too(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    orch = make()
    one = len(str(tasks(1))) * 4  # far less than one request's JSON with the system prompt
    with pytest.raises(ConfigurationError, match="alone is"):
        await orch.submit_batch(tasks(2), limits=BatchLimits(max_bytes=one))
    assert creates(bsim) == []
    job = await orch.submit_batch(tasks(4), limits=BatchLimits(max_bytes=200_000))
    sizes = [len(b) for b in creates(bsim)]
    assert sum(sizes) == 4 and len(job.ids) == len(sizes)


async def test_custom_ids_and_per_item_options(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    orch = make()
    job = await orch.submit_batch(
        [
            {"agent": AGENT, "task": "Explain topic A", "custom_id": "row-17", "max_tokens": 64},
            (AGENT, "Explain topic B", {"max_tokens": 128}),
        ],
        max_tokens=256,
    )
    requests = creates(bsim)[0]
    assert [r["custom_id"] for r in requests] == ["row-17", "item-1"]
    assert [r["params"]["max_tokens"] for r in requests] == [64, 128]
    await finish(clock, job)
    assert [r.metadata["custom_id"] for r in await job.results()] == ["row-17", "item-1"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"agent": AGENT, "task": "a", "custom_id": "x"}] * 2, "share the custom_id 'x'"),
        ([{"agent": AGENT, "task": "a", "custom_id": "no spaces"}], "custom_id must be"),
        ([(AGENT,)], "Batch item 0"),
        ([(AGENT, "ok"), (AGENT, "b", {"colour": 1})], "Batch item 1: unknown option"),
        ([], "at least one"),
    ],
)
async def test_malformed_items_are_refused_before_anything_is_sent(
    make: Callable[..., AsyncAgentOrchestrator],
    bsim: Simulator,
    items: list[Any],
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await make().submit_batch(items)
    assert bsim.requests == []


async def test_an_unknown_agent_names_the_item(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    with pytest.raises(UnknownAgentError, match=r"Batch item 1 \(item-1\)"):
        await make().submit_batch([(AGENT, "fine"), ("no-such-agent", "task")])
    assert bsim.requests == []


async def test_no_api_key_is_refused_before_anything_is_sent(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    orch = make(api_key=None)
    with pytest.raises(ConfigurationError, match="API key"):
        await orch.submit_batch(tasks(2))
    assert bsim.requests == []


async def test_a_create_whose_answer_is_lost_is_not_sent_again(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    import httpx2

    from claude_force_magic.errors import APIError

    class LoseCreateAnswers(httpx2.AsyncBaseTransport):
        """Loopback, except that the answer to a batch create never arrives (it was made)."""

        def __init__(self) -> None:
            self.inner = httpx2.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            response = await self.inner.handle_async_request(request)
            if request.method == "POST" and request.url.path == "/v1/messages/batches":
                await response.aread()
                await response.aclose()
                raise httpx2.ReadTimeout("the answer was lost", request=request)
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    async with httpx2.AsyncClient(transport=LoseCreateAnswers()) as http:
        orch = make(max_retries=3, http_client=http, budget_usd=5.0)
        with pytest.raises(APIError):
            await orch.submit_batch(tasks(2))
        # retrying would create (and bill) a second batch: a timeout is not a refusal
        assert len(creates(bsim)) == 1
        assert orch._budget.reserved == 0.0


# -- money -----------------------------------------------------------------------------------


async def test_budget_reserves_the_worst_case_at_half_price_and_settles_once(
    make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock
) -> None:
    orch = make(budget_usd=10.0, max_tokens=512)
    job = await orch.submit_batch(tasks(5))
    reserved = orch._budget.reserved
    live_worst = sum(
        orch.prices.estimate(c.model, c.input_estimate, c.max_tokens) or 0.0
        for c in (item.call for item in job._items)
    )
    assert reserved == pytest.approx(live_worst / 2) and reserved > 0
    assert job.estimated_usd == pytest.approx(reserved)
    await finish(clock, job)
    results = await job.results()
    cost = sum(r.metadata["cost_usd"] for r in results)
    assert orch._budget.reserved == pytest.approx(0.0)
    assert orch.spent_usd == pytest.approx(cost) and 0 < cost < reserved
    await job.results()  # collected already: not charged again
    assert orch.spent_usd == pytest.approx(cost)
    assert job.settled_usd == pytest.approx(cost)


async def test_a_batch_over_the_budget_is_not_sent(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    orch = make(budget_usd=0.001, max_tokens=4096)
    with pytest.raises(BudgetExceededError):
        await orch.submit_batch(tasks(20), limits=BatchLimits(max_requests=5))
    assert bsim.requests == []
    assert orch._budget.reserved == 0.0  # the batches reserved before the refusal are released


async def test_an_unknown_price_under_a_budget_is_refused_before_sending(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator
) -> None:
    from claude_force_magic.errors import PricingError

    orch = make(budget_usd=5.0)
    with pytest.warns(UserWarning), pytest.raises(PricingError, match="claude-unpriced-9"):
        await orch.submit_batch([(AGENT, "a"), (AGENT, "b", {"model": "claude-unpriced-9"})])
    assert bsim.requests == [] and orch._budget.reserved == 0.0


# -- faults, cancel, retries -----------------------------------------------------------------


async def test_errored_and_expired_items_are_failed_unbilled_results_and_can_be_retried(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    bsim.configure(batch_fault_rates={"errored": 0.3, "expired": 0.3}, seed=7)
    orch = make(budget_usd=10.0)
    job = await orch.submit_batch(tasks(20))
    status = await finish(clock, job)
    assert status.counts["errored"] > 0 and status.counts["expired"] > 0
    results = await job.results()
    failed = [r for r in results if not r.success]
    assert {r.metadata["result_type"] for r in failed} == {"errored", "expired"}
    for r in failed:
        assert isinstance(r.error, BatchItemError) and r.error.retryable
        assert r.metadata["cost_usd"] == 0.0 and r.output == ""
    assert orch.spent_usd == pytest.approx(sum(r.metadata["cost_usd"] for r in results))

    bsim.configure(batch_fault_rates={})
    retry = await job.retry_failed()
    assert retry is not None and retry.total == len(failed)
    resent = creates(bsim)[-1]
    assert [r["custom_id"] for r in resent] == [r.metadata["custom_id"] for r in failed]
    await finish(clock, retry)
    assert all(r.success for r in await retry.results())
    assert await retry.retry_failed() is None


def test_an_invalid_item_errors_unbilled_and_is_not_worth_retrying() -> None:
    # The request builder never sends an invalid request, so the line is the API's own JSON
    # decoded by the SDK's type, as the results decoder does.
    from anthropic.types.messages import MessageBatchIndividualResponse

    from claude_force_magic.engine.batch import _outcome

    line = MessageBatchIndividualResponse.model_validate(
        {
            "custom_id": "item-0",
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
                },
            },
        }
    )
    kind, error = _outcome(line, None)  # type: ignore[arg-type]
    assert kind == "errored" and isinstance(error, BatchItemError)
    assert error.error_type == "invalid_request_error" and not error.retryable
    assert "max_tokens: too big" in str(error) and "fix the request" in str(error)


async def test_cancel_ends_unprocessed_items_as_canceled(
    make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock
) -> None:
    orch = make(budget_usd=10.0)
    job = await orch.submit_batch(tasks(10))
    clock.now += SECONDS * 0.35  # 3 of 10 done
    status = await job.cancel()
    assert status.processing_status == "canceling"
    clock.now += 2
    status = await job.wait(poll=0.01)
    assert status.ended and status.counts["succeeded"] == 3 and status.counts["canceled"] == 7
    results = await job.results()
    assert [r.metadata["result_type"] for r in results] == ["succeeded"] * 3 + ["canceled"] * 7
    assert orch.spent_usd == pytest.approx(sum(r.metadata["cost_usd"] for r in results[:3]))


async def test_results_before_the_end_say_to_wait(
    make: Callable[..., AsyncAgentOrchestrator],
) -> None:
    job = await make().submit_batch(tasks(2))
    with pytest.raises(ConfigurationError, match="still processing"):
        await job.results()
    with pytest.raises(ConfigurationError, match="not been collected"):
        job.to_frame()


async def test_wait_backs_off_and_reports_progress(
    make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock
) -> None:
    job = await make().submit_batch(tasks(4))
    slept: list[float] = []
    seen: list[int] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    status = await job.wait(
        poll=1.0, max_poll=3.0, sleep=sleep, on_progress=lambda s: seen.append(s.done)
    )
    assert status.ended
    assert slept[:4] == [1.0, 1.5, 2.25, 3.0] and set(slept[3:]) == {3.0}
    assert seen == sorted(seen) and seen[-1] == 4


async def test_wait_is_cancellable_and_the_job_runs_on(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock
) -> None:
    orch = make()
    job = await orch.submit_batch(tasks(2))
    waiter = asyncio.ensure_future(job.wait(poll=0.01))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    again = await orch.batch(job.id)
    status = await finish(clock, again)
    assert status.ended and status.counts["succeeded"] == 2


async def test_to_frame(make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock) -> None:
    job = await make().submit_batch(tasks(3))
    await finish(clock, job)
    await job.results()
    frame = job.to_frame()
    assert list(frame["custom_id"]) == ["item-0", "item-1", "item-2"]
    assert {"task", "output", "status", "cost_usd", "input_tokens"} <= set(frame.columns)
    assert (frame["status"] == "ok").all()


# -- the registry: re-attach, exactly once, tampering -------------------------------------------


async def test_reattach_by_job_or_batch_id_and_collect_exactly_once(
    make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock
) -> None:
    first = make(budget_usd=10.0)
    job = await first.submit_batch(tasks(4))
    await finish(clock, job)
    second = make(budget=first._budget)  # a rebuilt orchestrator on the same budget
    by_batch = await second.batch(job.ids[0])
    assert by_batch.id == job.id
    results = await by_batch.results()
    spent = second.spent_usd
    assert spent == pytest.approx(sum(r.metadata["cost_usd"] for r in results)) and spent > 0
    recorded = len(second.metrics.recent(100))
    replayed = await job.results()  # the first object: the registry says it was collected
    assert [r.output for r in replayed] == [r.output for r in results]
    assert first.spent_usd == pytest.approx(spent)  # not charged twice
    assert len(second.metrics.recent(100)) == recorded
    rows = first.batch_jobs()
    assert rows[0]["job_id"] == job.id and rows[0]["collected"] and rows[0]["cached"] == 0
    assert rows[0]["settled_usd"] == pytest.approx(spent)


async def test_a_stale_job_object_never_undoes_a_collection(
    make: Callable[..., AsyncAgentOrchestrator], clock: FakeClock
) -> None:
    orch = make(budget_usd=10.0)
    stale = await orch.submit_batch(tasks(2))
    other = await orch.batch(stale.id)  # e.g. the status widget's object and the results cell's
    await finish(clock, other)
    await other.results()
    spent = orch.spent_usd
    assert spent > 0
    await stale.status()  # it last saw 'in_progress': it writes the header again
    third = await orch.batch(stale.id)
    await third.results()
    assert orch.spent_usd == pytest.approx(spent)  # still collected: not charged again


async def test_unknown_job_ids_are_refused(make: Callable[..., AsyncAgentOrchestrator]) -> None:
    orch = make()
    with pytest.raises(BatchJobNotFoundError, match="No batch job or Message Batch"):
        await orch.batch("../../etc/passwd")
    with pytest.raises(BatchJobNotFoundError, match="No batch job"):
        await orch.batch("job_0123456789abcdef")
    with pytest.raises(BatchJobNotFoundError, match="msgbatch_nope"):
        await orch.batch("msgbatch_nope")


async def test_a_tampered_registry_is_refused(
    make: Callable[..., AsyncAgentOrchestrator], tmp_path: Path
) -> None:
    orch = make()
    job = await orch.submit_batch(tasks(2))
    other = await orch.submit_batch(tasks(1, start=10))
    folder = tmp_path / "cache" / "batches"
    header = folder / f"{job.id}.job"
    original = header.read_bytes()
    assert header.stat().st_mode & 0o777 == 0o600

    header.write_bytes(original.replace(b"in_progress", b"ended______", 1))
    with pytest.raises(IntegrityError, match="signature"):
        await orch.batch(job.id)
    header.write_bytes((folder / f"{other.id}.job").read_bytes())  # another job's, validly signed
    with pytest.raises(IntegrityError):
        await orch.batch(job.id)
    header.write_bytes(original)
    header.chmod(0o622)
    with pytest.raises(UnsafePathError, match="chmod 600"):
        await orch.batch(job.id)
    header.chmod(0o600)
    assert (await orch.batch(job.id)).id == job.id
    rows = {r["job_id"]: r for r in orch.batch_jobs()}
    assert set(rows) == {job.id, other.id}


async def test_a_registry_signed_with_another_secret_is_refused(
    make: Callable[..., AsyncAgentOrchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = make()
    job = await orch.submit_batch(tasks(1))
    monkeypatch.setenv("CLAUDE_CACHE_SECRET", "another-secret-0123456789abcdef")
    with pytest.raises(IntegrityError, match="signature"):
        await make().batch(job.id)


_COLLECT = textwrap.dedent(
    """
    import asyncio, json, sys
    from claude_force_magic.engine.budget import Budget
    from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator

    async def main():
        base_url, cache_dir, ledger, job_id = sys.argv[1:5]
        budget = Budget.persistent(ledger, limit_usd=10.0)
        async with AsyncAgentOrchestrator(
            api_key="sk-test-batch-key", base_url=base_url, cache_dir=cache_dir,
            max_retries=0, calls_per_minute=None, budget=budget,
        ) as orch:
            job = await orch.batch(job_id)
            results = await job.results()
            print(json.dumps({"costs": [r.metadata["cost_usd"] for r in results],
                              "spent": orch.spent_usd}))

    asyncio.run(main())
    """
)


async def test_a_second_process_reattaches_and_the_results_are_charged_once(
    make: Callable[..., AsyncAgentOrchestrator], bsim: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    ledger = tmp_path / "cache" / "spend.jsonl"
    orch = make(budget=Budget.persistent(ledger, limit_usd=10.0))
    job = await orch.submit_batch(tasks(3))
    assert orch._budget.reserved > 0
    await finish(clock, job)

    async def collect_elsewhere() -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _COLLECT,
            bsim.base_url,
            str(tmp_path / "cache"),
            str(ledger),
            job.id,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        import json

        data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return data

    other = await collect_elsewhere()
    cost = sum(other["costs"])
    assert cost > 0 and other["spent"] == pytest.approx(cost)
    again = await collect_elsewhere()  # a third process: already collected, nothing charged
    assert again["spent"] == pytest.approx(cost)
    results = await job.results()  # this process: replayed, not charged
    assert [r.metadata["cost_usd"] for r in results] == other["costs"]
    assert orch.spent_usd == pytest.approx(cost)
    assert orch._budget.reserved == 0.0  # what this process reserved was released


# -- memory --------------------------------------------------------------------------------------


def long_tasks(n: int, start: int = 0) -> list[tuple[str, str]]:
    """Tasks whose simulated answers are about 1.7 KB (the simulator reuses the task's words)."""
    words = "abcdefghij" * 6
    return [
        (AGENT, "Review function " + " ".join(f"component{i}_{words}{k}" for k in range(6)))
        for i in range(start, start + n)
    ]


@pytest.fixture
async def sim_process() -> AsyncIterator[str]:
    """A simulator in its own process (batches end after 0.2 s of real time), so that the
    memory measured here is the client's alone."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "claude_force_magic.simulator",
        "--batch-seconds",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    try:
        yield line.decode().strip()
    finally:
        proc.terminate()
        await proc.wait()


async def test_results_are_streamed_not_held_in_memory(sim_process: str, tmp_path: Path) -> None:
    from claude_force_magic.metrics import Metrics

    # metrics keep 10 records, so what is left to grow with the items is the collection itself
    orch = AsyncAgentOrchestrator(
        api_key=KEY,
        base_url=sim_process,
        max_retries=0,
        calls_per_minute=None,
        enable_cache=False,
        cache_dir=tmp_path / "cache",
        max_tokens=1024,
        metrics=Metrics(history=10),
    )

    async def collect(n: int, start: int) -> tuple[int, int]:
        """(most memory held between two results, characters of answers) over one job."""
        job = await orch.submit_batch(long_tasks(n, start))
        await job.wait(poll=0.1)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            total = held = 0
            async for result in job.iter_results():
                assert result.success
                total += len(result.output)
                held = max(held, tracemalloc.get_traced_memory()[0] - base)
            return held, total
        finally:
            tracemalloc.stop()

    async with orch:
        await collect(5, 5000)  # first use: imports, the client, pydantic's validators
        small_held, small_total = await collect(50, 0)
        large_held, large_total = await collect(200, 1000)
    # The answers stay on disk (the spool) until yielded, one at a time: 150 more answers of
    # ~1.7 KB leave what is held while the caller looks at a result almost unchanged (a list
    # of them would hold several times their weight). Ratios, not absolute bytes.
    grown, answers = large_held - small_held, large_total - small_total
    assert answers > 200_000 and large_total > 250_000
    assert large_held < 0.25 * large_total, (large_held, large_total)
    assert grown < 0.1 * answers, (grown, answers)
