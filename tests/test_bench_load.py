"""Load models and ground truth: the bench's measurements checked against the simulator.

The simulator's latency model is known, so what the bench measures can be checked against it:
TTFT and TPOT against ``ttft`` and ``per_token``, the arrival process against its rate and
distribution, the concurrency cap against what the server saw in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics

import pytest
from bench_helpers import bench_orchestrator
from scipy import stats as scistats

from claude_force_magic.bench import (
    SLO,
    BenchResult,
    CallSample,
    TimingReference,
    arrival_offsets,
    run_benchmark,
)
from claude_force_magic.errors import ConfigurationError
from claude_force_magic.simulator import Latency, Simulator

AGENT = "python-expert"
#: 800 characters the simulator streams as 50 deltas of exactly 4 tokens (200 tokens).
ANSWER_200 = "abc " * 200


# ------------------------------------------------------------------ arrival process


def test_arrivals_are_seeded_poisson_at_the_rate() -> None:
    offsets = arrival_offsets(20.0, n=200, seed=3)
    assert offsets == arrival_offsets(20.0, n=200, seed=3), "a seed repeats the schedule"
    assert offsets != arrival_offsets(20.0, n=200, seed=4)
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert 1 / statistics.fmean(gaps) == pytest.approx(20.0, rel=0.10)
    # Exponential gaps of mean 1/20 s: a Kolmogorov-Smirnov test does not reject them...
    assert scistats.kstest(gaps, "expon", args=(0, 1 / 20)).pvalue > 0.01
    # ...but rejects the same gaps as uniform (the test has power).
    assert scistats.kstest(gaps, "uniform", args=(0, 2 / 20)).pvalue < 0.01


def test_burstiness_is_the_gamma_shape() -> None:
    bursty = arrival_offsets(10.0, n=400, burstiness=0.25, seed=1)
    regular = arrival_offsets(10.0, n=400, burstiness=8.0, seed=1)
    for offsets, shape in ((bursty, 0.25), (regular, 8.0)):
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.2)
        assert scistats.kstest(gaps, "gamma", args=(shape, 0, 0.1 / shape)).pvalue > 0.01
        # Coefficient of variation of gamma(k) gaps is 1/sqrt(k): burstier means more varied.
        cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
        assert cv == pytest.approx(1 / math.sqrt(shape), rel=0.25)


def test_arrival_arguments_are_checked() -> None:
    assert arrival_offsets(math.inf, n=3) == [0.0, 0.0, 0.0]
    timed = arrival_offsets(50.0, duration=2.0, seed=0)
    assert max(timed) < 2.0 and len(timed) == pytest.approx(100, rel=0.3)
    for kwargs in (
        {"rate": 0.0, "n": 3},
        {"rate": 1.0, "n": 3, "burstiness": 0.0},
        {"rate": 1.0},
        {"rate": 1.0, "n": 3, "duration": 1.0},
        {"rate": math.inf, "duration": 1.0},
    ):
        with pytest.raises(ConfigurationError):
            arrival_offsets(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ground truth


async def test_ttft_and_tpot_match_the_simulators_latency_model() -> None:
    """ttft=0.3 s, per_token=10 ms, 200 output tokens: p50s within 5 %, bias reported.

    Open loop at 4/s after two short warm-up calls, so that a few streams overlap: new
    connections cost tens of ms of TTFT, and on a loaded 2-core machine a client and server
    sharing one process and many streams queue for the CPU (the harness's own cost, measured
    by benchmarks/bench_bench.py).
    """
    n, warm = 10, 2
    async with Simulator(latency=Latency.fixed(0.0, ttft=0.3, per_token=0.01)) as sim:
        sim.set_answers(["Warm."] * warm + [ANSWER_200] * n)
        assert isinstance(sim, TimingReference)
        async with bench_orchestrator(sim, n) as orch:
            result = await run_benchmark(
                orch,
                AGENT,
                n=n,
                rate=10.0,
                warmup=warm,
                reference=sim,
                options={"max_tokens": 256},
            )
    assert result.succeeded == n
    assert {s.output_tokens for s in result.samples} == {200}
    summary = result.summary()
    assert summary["ttft_p50"] == pytest.approx(0.3, rel=0.05)
    assert summary["tpot_p50"] == pytest.approx(0.01, rel=0.05)
    # 4-token deltas 40 ms apart: every pooled gap is one delta's worth.
    assert summary["itl_p50"] == pytest.approx(0.04, rel=0.05)
    assert len(result.itl_gaps) == n * 49
    # The bias is measured minus what the server did, per request; the server is never early
    # and the client never sees the first delta before the server wrote it.
    served = sim.served_ttft()
    assert len(result.ttft_bias) == n
    for s in result.samples:
        assert s.request_id is not None and served[s.request_id] >= 0.3
        assert s.ttft_bias_s == pytest.approx(s.ttft_s - served[s.request_id])
        assert s.ttft_bias_s > 0.0
    assert summary["p50"] > summary["ttft_p50"] + 1.9  # e2e holds the 199 token times


async def _arrivals_at_server(rate: float, n: int) -> tuple[list[float], BenchResult]:
    """Server-side arrival times (s) of an ``n``-call open loop at ``rate``, seed 0."""
    async with Simulator() as sim, bench_orchestrator(sim, n) as orch:
        # One warm-up call builds the SDK client: that blocks the loop for a moment, and
        # arrivals due meanwhile would reach the server together.
        result = await run_benchmark(
            orch, AGENT, n=n, rate=rate, seed=0, warmup=1, options={"max_tokens": 32}
        )
        times = sorted(r.time for r in sim.requests)[1:]
    assert result.succeeded == n and len(times) == n
    return times, result


async def test_open_loop_drives_the_rate_at_the_server() -> None:
    """200 Poisson arrivals at 40/s: the simulator sees 40/s +- 10 %, on the seeded schedule.

    The gaps' distribution is checked on the schedule (exactly what was sent when); at the
    server, a loaded machine's scheduling stalls bunch arrivals (the slow variant below checks
    the server's gaps at a rate the harness keeps up with under load).
    """
    times, result = await _arrivals_at_server(40.0, 200)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 1 / statistics.fmean(gaps) == pytest.approx(40.0, rel=0.10)
    schedule = arrival_offsets(40.0, n=200, seed=0)
    planned = [b - a for a, b in itertools.pairwise(schedule)]
    assert scistats.kstest(planned, "expon", args=(0, 1 / 40)).pvalue > 0.01
    sent = [s.sent_s for s in sorted(result.samples, key=lambda s: s.index)]
    assert sent == sorted(sent)
    # Every call was sent no earlier than planned (and the run as a whole kept the rate).
    assert all(s >= p - 1e-3 for s, p in zip(sent, schedule, strict=True))
    assert result.load == "rate=40/s" and result.summary()["burstiness"] == 1.0


@pytest.mark.slow
async def test_open_loop_gaps_at_the_server_are_exponential() -> None:
    """The same at 10/s (20 s): the server's own gaps pass a KS test for exponential."""
    times, _ = await _arrivals_at_server(10.0, 200)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 1 / statistics.fmean(gaps) == pytest.approx(10.0, rel=0.10)
    assert scistats.kstest(gaps, "expon", args=(0, 1 / 10)).pvalue > 0.01


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_concurrency_cap_is_never_exceeded_at_the_server(mode: str) -> None:
    cap = 5
    kwargs = (
        {"concurrency": cap} if mode == "closed" else {"rate": math.inf, "max_concurrency": cap}
    )
    async with Simulator(latency=Latency.fixed(0.0, ttft=0.03)) as sim:
        async with bench_orchestrator(sim, 40) as orch:
            result = await run_benchmark(orch, AGENT, n=30, options={"max_tokens": 32}, **kwargs)
        assert sim.stats["max_in_flight"] == cap
    assert result.succeeded == 30 and result.concurrency == cap


async def test_uncapped_open_loop_sends_everything_at_once() -> None:
    async with Simulator(latency=Latency.fixed(0.0, ttft=0.2)) as sim:
        async with bench_orchestrator(sim, 12) as orch:
            await run_benchmark(orch, AGENT, n=12, rate=math.inf, options={"max_tokens": 32})
        assert sim.stats["max_in_flight"] == 12


# ------------------------------------------------------------------ run shape


async def test_warmup_calls_are_sent_but_not_counted() -> None:
    async with Simulator() as sim, bench_orchestrator(sim, 4) as orch:
        result = await run_benchmark(
            orch, AGENT, n=5, warmup=3, concurrency=2, options={"max_tokens": 32}
        )
        bodies = [r.body["messages"][0]["content"] for r in sim.requests]
    assert len(bodies) == 8 and len(set(bodies)) == 8
    assert sum("Warm-up task" in b for b in bodies) == 3
    assert result.n == 5 and sorted(s.index for s in result.samples) == list(range(5))
    assert result.warmup == 3


async def test_duration_runs_stop_issuing_calls_when_time_is_up() -> None:
    async with Simulator(latency=Latency.fixed(0.0, ttft=0.02)) as sim:
        async with bench_orchestrator(sim, 3) as orch:
            result = await run_benchmark(
                orch, AGENT, duration=0.4, concurrency=3, options={"max_tokens": 32}
            )
        assert sim.stats["requests"] == len(result.samples) == result.n
    assert result.n >= 3
    assert all(s.sent_s < 0.4 for s in result.samples)


async def test_non_streamed_runs_have_no_stream_metrics() -> None:
    async with Simulator() as sim, bench_orchestrator(sim, 2) as orch:
        result = await run_benchmark(
            orch, AGENT, n=3, concurrency=2, stream=False, options={"max_tokens": 32}
        )
    assert result.succeeded == 3
    assert all(s.ttft_s is None for s in result.samples)
    assert math.isnan(result.summary()["ttft_p50"]) and not result.itl_gaps


async def test_goodput_counts_successes_meeting_every_objective() -> None:
    script = ["ok", "refusal", "ok", "ok"]
    sim = Simulator(latency=Latency.fixed(0.0, ttft=0.01), script=script)
    async with sim, bench_orchestrator(sim, 1) as orch:
        loose = await run_benchmark(
            orch, AGENT, n=4, concurrency=1, slo="ttft=10,e2e=60", options={"max_tokens": 32}
        )
        sim.set_script(script)
        tight = await run_benchmark(
            orch, AGENT, n=4, concurrency=1, slo=SLO(ttft=1e-6), options={"max_tokens": 32}
        )
    assert loose.goodput == pytest.approx(3 / loose.wall_s)
    assert loose.summary()["slo"] == "ttft=10,e2e=60"
    assert tight.goodput == 0.0
    assert math.isnan(tight.summary()["goodput_per_s"]) is False


def test_slo_specs_are_checked_with_clear_messages() -> None:
    assert SLO.parse("ttft=2, e2e=20") == SLO(ttft=2.0, e2e=20.0)
    for spec, words in (
        ("ttft", "NAME=SECONDS"),
        ("latency=2", "ttft, tpot, e2e"),
        ("ttft=fast", "not a number"),
        ("ttft=-1", "positive"),
        ("ttft=1,ttft=2", "twice"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            SLO.parse(spec)
    miss = CallSample(0, 1.0, True, ttft_s=None)
    assert not SLO(ttft=5).met(miss), "a call without a TTFT cannot meet a TTFT objective"
    assert SLO(e2e=5).met(miss)


async def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    async with Simulator() as sim, bench_orchestrator(sim, 2) as orch:
        for kwargs in (
            {"n": 0},
            {"n": 3, "duration": 1.0},
            {"duration": -1.0},
            {"warmup": -1},
            {"concurrency": 0},
            {"rate": 2.0, "max_concurrency": 0},
            {"rate": -1.0},
            {"slo": "ttft"},
            {"options": {"max_tokens": "many"}},
        ):
            with pytest.raises(ConfigurationError):
                await run_benchmark(orch, AGENT, **kwargs)  # type: ignore[arg-type]
        assert sim.stats["requests"] == 0


async def test_cancelling_an_open_loop_run_leaves_nothing_running() -> None:
    async with Simulator(latency=Latency.fixed(0.0, ttft=5.0)) as sim:
        async with bench_orchestrator(sim, 50) as orch:
            before = len(asyncio.all_tasks())
            run = asyncio.ensure_future(
                run_benchmark(orch, AGENT, n=50, rate=20.0, options={"max_tokens": 32})
            )
            while sim.stats["in_flight"] < 2:
                await asyncio.sleep(0.01)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            assert len(asyncio.all_tasks()) <= before
            for _ in range(200):
                if sim.stats["in_flight"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert sim.stats["in_flight"] == 0
        assert sim.stats["requests"] < 50


async def test_simulator_paces_deltas_without_drift() -> None:
    """1 ms per token in 4-token deltas: sleep overshoot must not add up over 49 deltas.

    (Each delta used to sleep its own 4 ms, so every overshoot was added to the stream.)
    """
    async with Simulator(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.001)) as sim:
        sim.set_answers([ANSWER_200] * 4)
        async with bench_orchestrator(sim, 1) as orch:
            result = await run_benchmark(
                orch, AGENT, n=4, concurrency=1, reference=sim, options={"max_tokens": 256}
            )
    # The last delta is due 196 tokens after the first: 196 ms; TPOT = 196/199 ms.
    assert result.summary()["tpot_p50"] == pytest.approx(0.196 / 199, rel=0.05)
    assert set(sim.intended_ttft().values()) == {0.0}


async def test_the_orchestrators_cap_is_refused_or_reported_never_silent() -> None:
    """A benchmark once reported 13 calls/s at rate=400/s: the orchestrator allowed one call
    in flight and nothing said so."""
    async with Simulator() as sim, bench_orchestrator(sim, 3) as orch:
        with pytest.raises(ConfigurationError, match="max_concurrent=8 or more"):
            await run_benchmark(orch, AGENT, n=8, concurrency=8)
        with pytest.raises(ConfigurationError, match="max_concurrency=4 is above"):
            await run_benchmark(orch, AGENT, n=8, rate=100.0, max_concurrency=4)
        assert sim.stats["requests"] == 0
        result = await run_benchmark(orch, AGENT, n=8, rate=math.inf, options={"max_tokens": 32})
    assert result.concurrency == 3, "the open loop's real cap is the orchestrator's"


async def test_a_stalled_stream_resumes_its_pace_instead_of_bursting() -> None:
    """After the process stalls for 0.3 s, the simulator does not send the ~7 deltas it
    missed at once (a burst once made a JupyterLab stop-button test take 1.6 s)."""
    import time

    import anthropic

    async with Simulator(latency=Latency.fixed(0.0, ttft=0.0, per_token=0.01)) as sim:
        sim.set_answers([ANSWER_200])
        client = anthropic.AsyncAnthropic(api_key="sk-test", base_url=sim.base_url)
        arrivals: list[float] = []
        async with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": "pace"}],
        ) as stream:
            async for _text in stream.text_stream:
                arrivals.append(time.monotonic())
                if len(arrivals) == 10:
                    time.sleep(0.3)  # blocks the loop the simulator shares with us
        await client.close()
    after = [b - a for a, b in itertools.pairwise(arrivals[10:20])]
    # 40 ms apart when paced; a burst would put several within a few ms of each other.
    assert sum(gap < 0.01 for gap in after) <= 2, [round(g, 3) for g in after]
