"""Running the agents of one ``%%agent`` cell: concurrently, streamed, each in its own output.

The coroutine side (on the background loop) only calls the orchestrator and puts chunks on
the :class:`~.display.Pump`; the kernel thread renders them while it waits.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..errors import ClaudeForceError, ResponseError
from .display import DONE, Finished, Pump, StreamView
from .options import check_variable_name
from .session import SIMULATED_KEY, price_table, require_api_key
from .widgets import Progress

if TYPE_CHECKING:
    from ..bench import BenchResult
    from ..engine.orchestrator import AsyncAgentOrchestrator
    from ..engine.result import AgentResult
    from .options import CellRequest
    from .session import AgentSession

__all__ = ["failure_of", "run_bench_command", "run_cell"]


def failure_of(outcome: AgentResult | BaseException) -> BaseException | None:
    """The error behind a failed outcome, or None if it succeeded."""
    if isinstance(outcome, BaseException):
        return outcome
    if outcome.success:
        return None
    if outcome.error is not None:
        return outcome.error
    return ResponseError("; ".join(outcome.errors) or "the call failed")


def run_cell(
    session: AgentSession, request: CellRequest, view: StreamView, *, simulated: bool
) -> list[AgentResult | BaseException]:
    """Run every agent of ``request`` and render into ``view``; return outcomes in order.

    Unknown agents raise :class:`~..errors.UnknownAgentError` before anything is sent. Other
    failures are returned (and shown in their output when the cell has several agents). A
    ``KeyboardInterrupt`` cancels every request and propagates.
    """
    orch = session.orchestrator(simulated)
    for name in request.agents:
        orch.registry.get(name)
    pump = Pump(view)
    view.simulated = simulated
    view.open()
    try:
        outcomes = session.run(
            _run_all(orch, request, pump), pump=pump.drain, wake=lambda: pump.put(DONE)
        )
    except KeyboardInterrupt as exc:
        view.flush(force=True)
        for index, slot in enumerate(view.slots):
            if slot.output.text:  # mark a partly streamed answer as cut off
                view.finish(index, None, simulated=simulated, error=exc)
        raise
    finally:
        view.flush(force=True)
    pump.drain_queued()  # agents that finished last are shown as they finished
    for index, outcome in enumerate(outcomes):
        result = None if isinstance(outcome, BaseException) else outcome
        error = failure_of(outcome) if len(outcomes) > 1 else None
        if result is not None or error is not None:
            view.finish(index, result, simulated=simulated, error=error)
    view.close()
    return outcomes


async def _run_all(
    orch: AsyncAgentOrchestrator, request: CellRequest, pump: Pump
) -> list[AgentResult | BaseException]:
    calls = [_run_one(orch, i, name, request, pump) for i, name in enumerate(request.agents)]
    outcomes: Sequence[Any] = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancellation and the like are not per-agent outcomes
    return list(outcomes)


async def _run_one(
    orch: AsyncAgentOrchestrator, index: int, name: str, request: CellRequest, pump: Pump
) -> AgentResult:
    """One agent's call; its outcome is also put on the pump so it is shown when it ends."""
    try:
        result = await _call_one(orch, index, name, request, pump)
    except Exception as exc:
        pump.put(Finished(index, None, exc))
        raise
    pump.put(Finished(index, result, failure_of(result)))
    return result


async def _call_one(
    orch: AsyncAgentOrchestrator, index: int, name: str, request: CellRequest, pump: Pump
) -> AgentResult:
    options: dict[str, Any] = dict(request.call_options)
    if request.untrusted:
        options["untrusted"] = dict(request.untrusted)
    if not request.stream:
        result: AgentResult = await orch.execute_agent(name, request.task, **options)
        return result
    final: AgentResult | None = None
    async for item in orch.stream_agent(name, request.task, **options):
        if isinstance(item, str):
            pump.put((index, item))
        else:
            final = item
    if final is None:
        raise ClaudeForceError(f"{name}: the stream ended without a result.")
    return final


def run_bench_command(magics: Any, args: argparse.Namespace) -> BenchResult:
    """``%agent bench``: build a cache-less orchestrator, run, show progress, plot, return.

    The bench orchestrator is separate from the session's (its calls stay out of ``%agent
    history``), allows ``--concurrency`` requests in flight and, against the simulator, has
    no client-side rate limit. It spends from what the session's budget has left, and what it
    spends counts against that budget. Raises ``UsageError`` for bad arguments.
    """
    from ..bench import run_benchmark

    for flag, value in (
        ("--n", args.n),
        ("--concurrency", args.concurrency),
        ("--max-tokens", args.max_tokens),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}.")
    check_variable_name(args.output)
    session = magics.session
    session.registry.get(args.agent)
    tasks = _bench_tasks(args, magics.shell.user_ns)
    simulated = bool(args.simulate or session.simulate)
    orch = _bench_orchestrator(session, simulated=simulated, concurrency=args.concurrency)
    notebook = getattr(magics.shell, "kernel", None) is not None
    progress = Progress(args.n, notebook=notebook, label=f"{args.agent}")
    progress.show()
    events: queue.SimpleQueue[int] = queue.SimpleQueue()

    def pump(timeout: float) -> None:
        try:
            done = events.get(timeout=timeout)
        except queue.Empty:
            return
        while not events.empty():
            done = events.get_nowait()
        progress.update(done)

    async def bench() -> BenchResult:
        try:
            return await run_benchmark(
                orch,
                args.agent,
                tasks,
                n=args.n,
                concurrency=args.concurrency,
                on_progress=lambda done, total, sample: events.put(done),
                options={"max_tokens": args.max_tokens},
            )
        finally:
            await orch.close()

    result: BenchResult = session.run(bench(), pump=pump, wake=lambda: events.put(args.n))
    progress.update(args.n)
    progress.close()
    if not args.no_plot and result.latencies:
        _show_plot(result, notebook=notebook)
    return result


def _show_plot(result: BenchResult, *, notebook: bool) -> None:
    """Render the latency histogram as a PNG (independent of the matplotlib backend).

    A terminal gets no plot; ``BenchResult.plot()`` is there for it.
    """
    if not notebook:
        return
    import io

    from IPython.display import Image
    from matplotlib.figure import Figure

    from .display import show

    figure = Figure(figsize=(7, 3.2))
    result.plot(ax=figure.subplots())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    show(Image(data=buffer.getvalue(), format="png"))  # type: ignore[no-untyped-call]


def _bench_tasks(args: argparse.Namespace, namespace: Mapping[str, Any]) -> list[str] | None:
    if args.task and args.tasks:
        raise UsageError("Use either --task TEXT or --tasks VAR, not both.")
    if args.task:
        return [args.task]
    if args.tasks:
        value = namespace.get(args.tasks)
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(t, str) for t in value)
        ):
            raise UsageError(f"--tasks {args.tasks}: expected a non-empty list of strings.")
        return list(value)
    return None


def _bench_orchestrator(
    session: AgentSession, *, simulated: bool, concurrency: int
) -> AsyncAgentOrchestrator:
    cfg = session.config()
    require_api_key(simulated)
    base_url = session.simulator().base_url if simulated else None
    registry = session.registry
    # The session's own budget account: a bench run spends from it, never from a fresh one.
    budget = session.budget(simulated)

    async def build() -> AsyncAgentOrchestrator:
        from ..engine.orchestrator import AsyncAgentOrchestrator
        from ..metrics import Metrics

        return AsyncAgentOrchestrator(
            api_key=SIMULATED_KEY if simulated else None,
            base_url=base_url,
            model=cfg.model,
            max_concurrent=concurrency,
            timeout_seconds=cfg.timeout,
            deadline_seconds=cfg.deadline,
            calls_per_minute=None if simulated else cfg.calls_per_minute,
            budget=budget,
            enable_cache=False,
            injection_policy=cfg.injection_policy,
            registry=registry,
            prices=price_table(cfg),
            metrics=Metrics(),
        )

    return session.run(build())
