"""Each review finding the engine answers (REVIEW.md), made impossible and proved here."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

import claude_force_magic
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.errors import (
    APITimeoutError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    ResponseError,
    ServerError,
)
from claude_force_magic.metrics import CallRecord, Metrics
from claude_force_magic.simulator import Latency, Simulator

PACKAGE = Path(claude_force_magic.__file__).parent
ENGINE = PACKAGE / "engine"


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms without blocking the loop; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- BUG-001: no asyncio.timeout; timeouts that work on 3.10 -----------------------------------


def test_bug_001_no_asyncio_timeout_or_311_only_syntax_in_package() -> None:
    offenders = []
    pattern = re.compile(r"asyncio\.timeout(_at)?\(|TaskGroup\(|except\s*\*")
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert offenders == []


PY310_CHECK = """
import asyncio, sys
assert sys.version_info[:2] == (3, 10), sys.version
from claude_force_magic.engine import orchestrator, limits, retry, breaker, budget, result, response
from claude_force_magic.engine.client import parse_retry_after

async def main():
    lim = limits.RateLimiter(6000)
    for _ in range(101):
        await lim.acquire()
    try:  # the per-attempt timeout primitive used by the engine
        await asyncio.wait_for(asyncio.sleep(1), 0.01)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("wait_for did not time out")
    orch = orchestrator.AsyncAgentOrchestrator(api_key="sk-x", base_url="http://127.0.0.1:9")
    assert orch.budget_remaining is None

asyncio.run(main())
assert "anthropic" not in sys.modules
print("ok")
"""


def test_bug_001_engine_imports_and_runs_under_python_310(
    run_on_python310: Callable[[str], subprocess.CompletedProcess[str]],
) -> None:
    proc = run_on_python310(PY310_CHECK)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


async def test_bug_001_per_attempt_timeout_on_stall_is_retried_as_api_timeout(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(stall_seconds=10.0)
    sim.set_script(["stall", "ok"])
    orch = make_orch(timeout_seconds=0.3, max_retries=1, enable_cache=False)
    started = time.monotonic()
    result = await orch.execute_agent("python-expert", "Explain generators")
    assert result.success, result.errors
    assert result.metadata["attempts"] == 2
    assert time.monotonic() - started < 5
    sim.set_script(["stall"])
    failed = await make_orch(timeout_seconds=0.3, enable_cache=False).execute_agent(
        "python-expert", "Explain generators again"
    )
    assert isinstance(failed.error, APITimeoutError)


async def test_bug_001_overall_deadline_gives_deadline_exceeded(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(stall_seconds=10.0)
    sim.set_script(["stall"] * 10)
    orch = make_orch(timeout_seconds=0.4, deadline_seconds=1.0, max_retries=8, enable_cache=False)
    started = time.monotonic()
    result = await orch.execute_agent("python-expert", "Explain closures")
    elapsed = time.monotonic() - started
    assert isinstance(result.error, DeadlineExceededError), result.errors
    # 0.4 s attempts fit at most three starts into the 1 s deadline; without it, nine are sent
    assert 1 <= sim.stats["requests"] <= 3
    assert elapsed < 3.0


# -- BUG-002: semaphore created eagerly, limit holds, reusable across loops ------------------


def test_bug_002_semaphore_created_eagerly_and_limit_holds() -> None:
    with Simulator(latency=Latency.fixed(0.05)) as sim:
        orch = AsyncAgentOrchestrator(  # constructed outside any event loop
            api_key="sk-test",
            base_url=sim.base_url,
            max_concurrent=5,
            calls_per_minute=None,
            enable_cache=False,
        )

        async def burst(tag: str) -> list[bool]:
            tasks = [(("python-expert", f"{tag} question {i}")) for i in range(50)]
            results = await orch.execute_multiple(tasks)
            return [r.success for r in results]

        assert all(asyncio.run(burst("first")))
        assert sim.stats["max_in_flight"] == 5
        sim.reset()
        assert all(asyncio.run(burst("second")))  # a second loop: rebinding works
        assert sim.stats["max_in_flight"] == 5
        assert sim.stats["requests"] == 50
        asyncio.run(orch.close())


# -- BUG-004: unusable answers are typed failures, never TypeError ----------------------------


@pytest.mark.parametrize("fault", ["null_content", "empty_content", "empty_text", "refusal"])
async def test_bug_004_unusable_content_is_a_clear_failure(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], fault: str
) -> None:
    sim.set_script([fault])
    result = await make_orch().execute_agent("python-expert", "Explain decorators")
    assert result.success is False
    assert isinstance(result.error, ResponseError)
    assert result.output == ""
    word = "declined" if fault == "refusal" else "content" if "content" in fault else "empty"
    assert word in result.errors[0]
    # unusable answers are never cached
    sim.set_script(["ok"])
    again = await make_orch().execute_agent("python-expert", "Explain decorators")
    assert again.success and not again.cached


@pytest.mark.parametrize("fault", ["null_content", "empty_text", "refusal"])
async def test_bug_004_unusable_content_in_streams(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], fault: str
) -> None:
    sim.set_script([fault])
    items = [i async for i in make_orch().stream_agent("python-expert", "Explain decorators")]
    final = items[-1]
    assert not isinstance(final, str)
    assert isinstance(final.error, ResponseError)


@pytest.mark.parametrize("fault", ["refusal", "empty_text"])
async def test_bug_004_billed_unusable_answer_is_charged_not_lost(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator], fault: str
) -> None:
    """A refusal or an empty answer still used (and was billed for) tokens: the budget, the
    result and the metrics count them, so a failed call never under-reports spending."""
    orch = make_orch(budget_usd=1.0)
    sim.set_script([fault])
    result = await orch.execute_agent("python-expert", "Explain decorators")
    assert result.success is False
    usage = sim.requests[-1]
    assert usage.status == 200
    assert result.metadata["input_tokens"] > 0
    cost = result.metadata["cost_usd"]
    assert cost is not None and cost > 0
    assert orch.spent_usd == pytest.approx(cost)
    totals = orch.metrics.totals()
    assert totals["errors"] == 1
    assert totals["cost_usd"] == pytest.approx(cost)
    assert totals["unknown_cost_calls"] == 0


async def test_bug_004_error_answers_cost_nothing_and_release_the_budget(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    orch = make_orch(budget_usd=1.0)
    sim.set_script(["server_error"])
    result = await orch.execute_agent("python-expert", "Explain decorators")
    assert isinstance(result.error, ServerError)
    assert result.metadata["cost_usd"] == 0.0
    assert orch.spent_usd == 0.0 and orch.budget_remaining == pytest.approx(1.0)
    assert orch.metrics.totals()["unknown_cost_calls"] == 0


async def test_bug_004_max_tokens_truncation_is_a_flagged_success(
    make_orch: Callable[..., AsyncAgentOrchestrator],
) -> None:
    result = await make_orch().execute_agent("python-expert", "Explain metaclasses", max_tokens=8)
    assert result.success
    assert result.metadata["truncated"] is True
    assert result.metadata["stop_reason"] == "max_tokens"
    assert "max_tokens=8" in result.metadata["warnings"][0]


# -- BUG-005 / BUG-006: bounded memory -----------------------------------------------------------


async def test_bug_005_bounded_metrics_and_memory_over_many_cached_calls(
    make_orch: Callable[..., AsyncAgentOrchestrator],
) -> None:
    orch = make_orch(metrics=Metrics(history=500))
    first = await orch.execute_agent("python-expert", "Explain memory growth")
    assert first.success

    async def hits(n: int) -> None:
        for _ in range(n):
            r = await orch.execute_agent("python-expert", "Explain memory growth")
            assert r.cached

    await hits(500)  # warm up caches, interned strings, sketch buckets
    gc.collect()
    tracemalloc.start()
    await hits(500)
    gc.collect()
    base, _ = tracemalloc.get_traced_memory()
    await hits(4000)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(orch.metrics.recent()) == 500
    assert after - base < 256 * 1024, f"grew {after - base} bytes over 4,000 calls"


# -- BUG-008: a failing metrics sink never fails the call -------------------------------------


async def test_bug_008_failing_metrics_sink_never_fails_the_call(
    make_orch: Callable[..., AsyncAgentOrchestrator], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    seen: list[CallRecord] = []

    def broken(_: CallRecord) -> None:
        raise RuntimeError("sink is down")

    metrics.add_sink(broken)
    metrics.add_sink(seen.append)
    orch = make_orch(metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="claude_force_magic"):
        result = await orch.execute_agent("python-expert", "Explain sinks")
    assert result.success
    assert len(seen) == 1
    # not silent either: the failure is reported as a warning naming the sink
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("broken" in r.getMessage() for r in warned), caplog.text


async def test_bug_008_even_a_failing_record_never_fails_the_call(
    make_orch: Callable[..., AsyncAgentOrchestrator],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics()

    def explode(_: CallRecord) -> None:
        raise MemoryError("metrics store unavailable")

    monkeypatch.setattr(metrics, "record", explode)
    orch = make_orch(metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="claude_force_magic"):
        result = await orch.execute_agent("python-expert", "Explain sinks twice")
    assert result.success
    assert "recording metrics failed" in caplog.text


# -- SEC-004: rate limits, budget -------------------------------------------------------------


async def test_sec_004_budget_refusal_before_send(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    orch = make_orch(budget_usd=0.001, max_tokens=4096)
    with pytest.raises(BudgetExceededError) as info:
        await orch.execute_agent("python-expert", "Explain budgets")
    assert sim.stats["requests"] == 0
    assert info.value.budget == 0.001
    assert orch.spent_usd == 0


async def test_sec_004_budget_tracks_spending_and_stops_calls(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    orch = make_orch(budget_usd=0.02, max_tokens=300, enable_cache=False)
    done = 0
    with pytest.raises(BudgetExceededError):
        for i in range(100):
            await orch.execute_agent("python-expert", f"Explain item {i}")
            done += 1
    assert 0 < orch.spent_usd <= 0.02
    assert sim.stats["requests"] == done
    orch.set_budget(None)
    assert (await orch.execute_agent("python-expert", "Explain more")).success


async def test_sec_004_budget_estimate_does_not_undercount_non_ascii_tasks(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    """20,000 CJK characters are about 20,000 tokens, not 5,000: the worst case is refused
    before sending where an ASCII task of the same length fits the budget."""
    orch = make_orch(budget_usd=0.02, max_tokens=16, enable_cache=False)
    with pytest.raises(BudgetExceededError):
        await orch.execute_agent("python-expert", "解析" * 10_000)
    assert sim.stats["requests"] == 0
    assert (await orch.execute_agent("python-expert", "x" * 20_000)).success


async def test_sec_004_shared_budget_spans_orchestrators(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    """One Budget shared by successive orchestrators (a notebook rebuilding after a settings
    change, a benchmark run): spending in one counts against the cap of all."""
    from claude_force_magic.engine.budget import Budget

    budget = Budget()
    first = make_orch(budget=budget, budget_usd=0.02, max_tokens=300, enable_cache=False)
    with pytest.raises(BudgetExceededError):
        for i in range(100):
            await first.execute_agent("python-expert", f"Explain item {i}")
    spent = budget.spent
    assert 0 < spent <= 0.02
    second = make_orch(budget=budget, max_tokens=300, enable_cache=False)
    assert second.spent_usd == spent and second.budget_usd == 0.02
    before = sim.stats["requests"]
    with pytest.raises(BudgetExceededError):
        await second.execute_agent("python-expert", "Explain one more")
    assert sim.stats["requests"] == before  # refused before sending: the cap is shared
    with pytest.raises(ConfigurationError, match="budget must be"):
        make_orch(budget=0.5)


async def test_sec_004_max_tokens_above_the_server_output_limit_is_refused_before_sending(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    """The API books max_tokens against its output-tokens-per-minute limit on arrival: a call
    asking for more could only ever get 429s. Once a response has reported the limit, such a
    call is refused at once, naming the limit, instead of being retried until the deadline."""
    sim.configure(output_tpm=2_000)
    orch = make_orch(max_retries=3, enable_cache=False)
    assert (await orch.execute_agent("python-expert", "Explain limits", max_tokens=100)).success
    sent = sim.stats["requests"]
    with pytest.raises(ConfigurationError, match="max_tokens=4,000 is more than the 2,000"):
        await orch.execute_agent("python-expert", "Explain more limits", max_tokens=4_000)
    assert sim.stats["requests"] == sent
    assert (await orch.execute_agent("python-expert", "Explain again", max_tokens=1_500)).success


async def test_sec_004_retry_after_pauses_the_limiter(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.set_script(["rate_limit", "ok"])
    orch = make_orch(max_retries=2, enable_cache=False)
    result = await orch.execute_agent("python-expert", "Explain retry-after")
    assert result.success
    assert result.metadata["attempts"] == 2
    first, second = sim.requests[0], sim.requests[1]
    assert second.time - first.time >= 0.45  # retry-after 0.5 s, rounded up to 1 by the server


async def test_sec_004_server_ratelimit_headers_tighten_the_limiter_no_429(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.configure(rpm=240)  # 4 per second, bucket of 240
    orch = make_orch(calls_per_minute=100_000, enable_cache=False)
    assert (await orch.execute_agent("python-expert", "warm up")).success
    snap = orch.limiter.snapshot()["requests"]
    assert snap is not None
    assert snap["per_minute"] == 240
    tasks = [("python-expert", f"question {i}") for i in range(245)]
    started = time.monotonic()
    results = await orch.execute_multiple(tasks)
    assert all(r.success for r in results), {r.errors[0] for r in results if not r.success}
    assert sim.stats["by_status"].get(429, 0) == 0
    assert time.monotonic() - started >= 1.0  # the last few waited for refill


# -- retries: attempts never multiply -----------------------------------------------------------


async def test_retries_do_not_multiply_three_requests_for_two_failures(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.set_script(["server_error", "server_error", "ok"])
    result = await make_orch(max_retries=3, enable_cache=False).execute_agent(
        "python-expert", "Explain retries"
    )
    assert result.success
    assert result.metadata["attempts"] == 3
    assert sim.stats["requests"] == 3


async def test_4xx_not_retried_exactly_one_request(sim: Simulator) -> None:
    orch = AsyncAgentOrchestrator(
        api_key="sk-test",
        base_url=sim.base_url + "/no-such-prefix",
        max_retries=3,
        calls_per_minute=None,
        enable_cache=False,
    )
    try:
        result = await orch.execute_agent("python-expert", "Explain 404")
    finally:
        await orch.close()
    assert not result.success
    assert result.error is not None and getattr(result.error, "status_code", None) == 404
    assert sim.stats["requests"] == 1


async def test_retries_used_up_return_the_last_error(
    sim: Simulator, make_orch: Callable[..., AsyncAgentOrchestrator]
) -> None:
    sim.set_script(["overloaded"] * 5)
    result = await make_orch(max_retries=2, enable_cache=False).execute_agent(
        "python-expert", "Explain overload"
    )
    assert not result.success
    assert result.metadata["attempts"] == 3
    assert sim.stats["requests"] == 3


# -- circuit breaker -------------------------------------------------------------------------------


async def test_breaker_opens_fails_fast_then_probe_closes(
    sim: Simulator,
    make_orch: Callable[..., AsyncAgentOrchestrator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orch = make_orch(breaker_threshold=2, breaker_cooldown_seconds=0.3, enable_cache=False)
    now = [1000.0]  # the breaker's clock, so a slow machine cannot end the cooldown early
    monkeypatch.setattr(orch.breaker, "_clock", lambda: now[0])
    sim.set_script(["server_error", "server_error"])
    for i in range(2):
        r = await orch.execute_agent("python-expert", f"fail {i}")
        assert isinstance(r.error, ServerError)
    assert orch.breaker.state == "open"
    fast = await orch.execute_agent("python-expert", "fail fast")
    assert isinstance(fast.error, CircuitOpenError)
    assert fast.error.retry_in > 0
    assert sim.stats["requests"] == 2  # nothing reached the server
    now[0] += 0.35
    probe = await orch.execute_agent("python-expert", "probe")
    assert probe.success
    assert orch.breaker.state == "closed"


async def test_breaker_not_tripped_by_4xx(sim: Simulator) -> None:
    orch = AsyncAgentOrchestrator(
        api_key="sk-test",
        base_url=sim.base_url + "/nope",
        breaker_threshold=2,
        calls_per_minute=None,
        max_retries=0,
        enable_cache=False,
    )
    try:
        for i in range(5):
            r = await orch.execute_agent("python-expert", f"missing {i}")
            assert not r.success
    finally:
        await orch.close()
    assert orch.breaker.state == "closed"
    assert sim.stats["requests"] == 5


async def test_breaker_cancellation_does_not_count() -> None:
    with Simulator(latency=Latency.fixed(2.0)) as sim:
        orch = AsyncAgentOrchestrator(
            api_key="sk-test",
            base_url=sim.base_url,
            breaker_threshold=1,
            calls_per_minute=None,
            enable_cache=False,
        )
        for i in range(3):
            task = asyncio.ensure_future(orch.execute_agent("python-expert", f"slow {i}"))
            await wait_until(lambda: sim.stats["in_flight"] == 1)  # cancel a sent request
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert orch.breaker.state == "closed"
        await orch.close()


# -- cancellation ---------------------------------------------------------------------------


async def test_cancel_stops_the_request_promptly_and_leaves_no_task() -> None:
    with Simulator(latency=Latency.fixed(5.0)) as sim:  # its own thread: our loop holds only us
        orch = AsyncAgentOrchestrator(
            api_key="sk-test", base_url=sim.base_url, calls_per_minute=None, enable_cache=False
        )
        before = asyncio.all_tasks()
        task = asyncio.ensure_future(orch.execute_agent("python-expert", "a slow question"))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sim.stats["in_flight"] == 1:
                break
        assert sim.stats["in_flight"] == 1
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if sim.stats["disconnects"] >= 1:
                break
            await asyncio.sleep(0.01)
        assert sim.stats["disconnects"] == 1
        # The answer would take 5 s: well under that means the cancel reached the server.
        assert time.monotonic() - started < 3.0
        assert asyncio.all_tasks() - before == set()
        await orch.close()


async def test_cancelled_stream_leaves_no_task() -> None:
    with Simulator(latency=Latency.fixed(0.0, per_token=0.01)) as sim:
        orch = AsyncAgentOrchestrator(
            api_key="sk-test", base_url=sim.base_url, calls_per_minute=None, enable_cache=False
        )
        before = asyncio.all_tasks()
        agen = orch.stream_agent("python-expert", "stream something long")
        first = await agen.__anext__()
        assert isinstance(first, str)
        await agen.aclose()
        await wait_until(lambda: sim.stats["in_flight"] == 0)
        assert asyncio.all_tasks() - before == set()
        await orch.close()
