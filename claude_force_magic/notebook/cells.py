"""Running the agents of one ``%%agent`` cell: concurrently, streamed, each in its own output.

The coroutine side (on the background loop) only calls the orchestrator and puts chunks on
the :class:`~.display.Pump`; the kernel thread renders them while it waits.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..errors import ResponseError
from .display import DONE, Finished, Pump, StreamView
from .options import check_variable_name, interpolate, screen_cell_data
from .session import Mode, require_api_key
from .widgets import Progress

if TYPE_CHECKING:
    from ..bench import BenchResult, SweepResult
    from ..bench.spec import BenchSpec
    from ..engine.orchestrator import AsyncAgentOrchestrator
    from ..engine.result import AgentResult
    from .options import CellRequest
    from .session import AgentSession
    from .threads import Thread

__all__ = [
    "BenchRequest",
    "failure_of",
    "prompt_api_key",
    "run_bench_command",
    "run_cell",
    "run_workflow_cell",
]


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
    session: AgentSession,
    request: CellRequest,
    view: StreamView,
    *,
    simulated: bool,
    on_interrupted: Callable[[list[AgentResult | BaseException]], None] | None = None,
) -> list[AgentResult | BaseException]:
    """Run every agent of ``request`` and render into ``view``; return outcomes in order.

    Unknown agents raise :class:`~..errors.UnknownAgentError` before anything is sent. Other
    failures are returned (and shown in their output when the cell has several agents). A
    ``KeyboardInterrupt`` cancels every request and propagates; before it does, each agent's
    answer area keeps the text streamed so far with a footer saying it was interrupted and
    what it cost (no error text there: the cell's one red line says it), and
    ``on_interrupted`` receives the outcomes: each agent's settled partial result (see
    :data:`~..engine.orchestrator.OnCancelled`), or the ``KeyboardInterrupt`` for an agent
    whose call had not settled in time.
    """
    orch = session.orchestrator(simulated)
    for name in request.agents:
        orch.registry.get(name)
    plans = thread_turns(session, request)
    pump = Pump(view)
    view.simulated = simulated
    view.open()
    partials: dict[int, AgentResult] = {}  # filled on the loop thread by on_cancelled
    try:
        outcomes = session.run(
            _run_all(orch, request, pump, partials, plans),
            pump=pump.drain,
            wake=lambda: pump.put(DONE),
        )
    except KeyboardInterrupt as exc:
        view.interrupted()  # no "waiting" line left, also when the stop came outside the pump
        view.flush(force=True)
        cut: list[AgentResult | BaseException] = []
        for index, slot in enumerate(view.slots):
            partial = partials.get(index)
            shown = slot.output.text or slot.handle is not None or _charged(partial)
            if partial is not None and shown:
                view.finish(index, partial, simulated=simulated)  # text so far, cost, "cut"
            cut.append(exc if partial is None else partial)
        if on_interrupted is not None:
            on_interrupted(cut)
        raise
    finally:
        view.flush(force=True)
    pump.drain_queued()  # agents that finished last are shown as they finished
    for index, plan in plans.items():
        note = plan.replaced_note(outcomes[index])
        if note:
            print(note)
    for index, outcome in enumerate(outcomes):
        result = None if isinstance(outcome, BaseException) else outcome
        error = failure_of(outcome) if len(outcomes) > 1 else None
        if result is not None or error is not None:
            view.finish(index, result, simulated=simulated, error=error)
    view.close()
    return outcomes


def _charged(result: AgentResult | None) -> bool:
    """True when an interrupted call was charged something (worth a footer on its own)."""
    return result is not None and bool(result.cost_usd)


def run_workflow_cell(
    session: AgentSession,
    request: CellRequest,
    make_view: Callable[[str], StreamView],
    *,
    simulated: bool,
) -> list[tuple[str, AgentResult | BaseException]]:
    """``%%agent --workflow NAME``: run the workflow's agents in order, each streamed into its
    own labelled output (``make_view(label)``), and return ``(agent, outcome)`` per step run.

    Each step gets the cell's task and values plus the previous step's output as untrusted
    data, chained exactly as :meth:`AsyncAgentOrchestrator.run_workflow` does, and screened
    like the cell's own ``{name}`` values (``request.data_policy``: a flagged output stops the
    workflow with ``UsageError`` under ``block``, prints one line under ``warn``). Stops after
    the first failed step. Raises ``UsageError`` for an unknown workflow (listing the workflows)
    before anything is sent; ``KeyboardInterrupt`` propagates.
    """
    from dataclasses import replace

    from ..engine.orchestrator import workflow_step_options
    from .options import screen_cell_data

    orch = session.orchestrator(simulated)
    workflow = request.workflow or ""
    if workflow not in orch.registry.workflows:
        if f"workflow {workflow}" in orch.registry.disabled:
            orch.registry.workflow(workflow)  # raises why that entry was left out
        known = ", ".join(sorted(orch.registry.workflows)) or "none"
        raise UsageError(f"There is no workflow named {workflow!r}; the workflows: {known}.")
    steps = orch.registry.workflow(workflow)
    for name in steps:
        orch.registry.get(name)
    done: list[tuple[str, AgentResult | BaseException]] = []
    previous: AgentResult | None = None
    for number, name in enumerate(steps, 1):
        if previous is not None:
            earlier = {f"{previous.agent_name}-output": previous.output}
            for note in screen_cell_data(earlier, request.data_policy):
                print(note)
        options = workflow_step_options({"untrusted": dict(request.untrusted)}, previous)
        step = replace(request, agents=(name,), untrusted=options["untrusted"])
        label = f"{workflow} · step {number}/{len(steps)}: {name}"
        (outcome,) = run_cell(session, step, make_view(label), simulated=simulated)
        done.append((name, outcome))
        if failure_of(outcome) is not None or isinstance(outcome, BaseException):
            break
        previous = outcome
    return done


@dataclass
class ThreadTurn:
    """Where a thread cell's turn goes: ``thread``'s turn ``index + 1``; ``later`` turns
    after it are dropped when it succeeds (a re-run cell replaces its own turn)."""

    thread: Thread
    index: int
    rerun: bool
    later: int

    def replaced_note(self, outcome: AgentResult | BaseException) -> str | None:
        """The one line a re-run cell prints once its turn succeeded, else None."""
        if not self.rerun or failure_of(outcome) is not None:
            return None
        where = f"turn {self.index + 1} of thread {self.thread.name} ({self.thread.agent})"
        dropped = (
            f" and the {self.later} later turn{'s' if self.later > 1 else ''} were dropped"
            if self.later
            else ""
        )
        return f"This cell re-ran {where}: its new answer replaced that turn{dropped}."


def thread_turns(session: AgentSession, request: CellRequest) -> dict[int, ThreadTurn]:
    """The thread turn of each agent of a ``--continue`` / ``--thread`` cell (empty for a
    plain cell): a new last turn, or the turn this cell asked before (a re-run)."""
    if request.thread is None and not request.continue_thread:
        return {}
    plans = {}
    for index, agent in enumerate(request.agents):
        thread = session.threads.resolve(agent, request.thread, request.cell_key)
        earlier = thread.turn_of(request.cell_key) if request.cell_key else None
        at = len(thread.turns) if earlier is None else earlier
        plans[index] = ThreadTurn(thread, at, earlier is not None, len(thread.turns) - at - 1)
    return plans


async def _run_all(
    orch: AsyncAgentOrchestrator,
    request: CellRequest,
    pump: Pump,
    partials: dict[int, AgentResult],
    plans: Mapping[int, ThreadTurn],
) -> list[AgentResult | BaseException]:
    calls = [
        _run_one(orch, i, name, request, pump, partials.__setitem__, plans.get(i))
        for i, name in enumerate(request.agents)
    ]
    outcomes: Sequence[Any] = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancellation and the like are not per-agent outcomes
    return list(outcomes)


async def _run_one(
    orch: AsyncAgentOrchestrator,
    index: int,
    name: str,
    request: CellRequest,
    pump: Pump,
    keep_partial: Callable[[int, AgentResult], None],
    plan: ThreadTurn | None = None,
) -> AgentResult:
    """One agent's call; its outcome is also put on the pump so it is shown when it ends."""
    try:
        result = await _call_one(orch, index, name, request, pump, keep_partial, plan)
    except Exception as exc:
        pump.put(Finished(index, None, exc))
        raise
    pump.put(Finished(index, result, failure_of(result)))
    return result


async def _call_one(
    orch: AsyncAgentOrchestrator,
    index: int,
    name: str,
    request: CellRequest,
    pump: Pump,
    keep_partial: Callable[[int, AgentResult], None],
    plan: ThreadTurn | None = None,
) -> AgentResult:
    def on_cancelled(result: AgentResult) -> None:
        keep_partial(index, result)

    def on_text(piece: str) -> None:
        pump.put((index, piece))

    if plan is not None:
        return await _thread_turn(orch, name, request, plan, on_text, on_cancelled)
    result: AgentResult = await orch.execute(
        name,
        request.task,
        request.options,
        on_text=on_text if request.stream else None,
        on_cancelled=on_cancelled,
    )
    return result


async def _thread_turn(
    orch: AsyncAgentOrchestrator,
    name: str,
    request: CellRequest,
    plan: ThreadTurn,
    on_text: Callable[[str], None],
    on_cancelled: Callable[[AgentResult], None],
) -> AgentResult:
    """One turn of a thread, sent with the thread's turns before ``plan.index`` as history.

    On success the thread's turns from ``plan.index`` on become this answer; a failed or
    interrupted turn leaves the thread as it was. What the call cost is added either way.
    """
    from ..engine.conversation import Conversation

    thread = plan.thread
    conv = Conversation(orch, name, request.options, turns=thread.turns[: plan.index])
    try:
        result = await conv.send(
            request.task, on_text=on_text if request.stream else None, on_cancelled=on_cancelled
        )
    finally:
        thread.add_usage(conv.usage)
    if result.success:
        thread.replace_from(plan.index, conv.turns[plan.index :], request.cell_key or "")
        thread.model = result.metadata.get("model") or thread.model
    result.metadata["thread"] = thread.name
    result.metadata["turn"] = plan.index + 1
    return result


def prompt_api_key() -> str:
    """Ask for the API key at a hidden prompt (``getpass``: never echoed, not in the history).

    Raises ``UsageError`` when the front end cannot prompt, or when nothing usable was entered.
    """
    import getpass

    from IPython.core.error import StdinNotImplementedError

    try:
        # Looked up at call time: ipykernel swaps getpass.getpass for its input_request.
        key = getpass.getpass("Anthropic API key (hidden, kept in memory only): ")
    except (StdinNotImplementedError, EOFError):
        raise UsageError(
            "This front end cannot show a prompt; set ANTHROPIC_API_KEY in the environment "
            "the notebook server starts from instead."
        ) from None
    key = key.strip()
    if not key:
        raise UsageError("No key was entered; nothing changed. Run `%agent key` again.")
    if not key.isprintable() or any(ch.isspace() for ch in key):
        raise UsageError(
            "That does not look like an API key (it has spaces or control characters); "
            "nothing changed. Copy the key again and run `%agent key`."
        )
    return key


@dataclass(frozen=True)
class BenchRequest:
    """What ``%agent bench`` needs besides the session."""

    #: The parsed ``%agent bench`` arguments.
    args: argparse.Namespace
    #: The notebook's variables: ``--tasks VAR`` and the ``{name}`` values of ``--task``.
    namespace: Mapping[str, Any]
    #: The injection policy ``{name}`` values of ``--task`` are screened under.
    policy: str
    #: True in a kernel (progress widget, latency plot); False in a terminal.
    notebook: bool


def run_bench_command(session: AgentSession, request: BenchRequest) -> BenchResult | SweepResult:
    """``%agent bench``: build a cache-less orchestrator, run, show progress, plot, return.

    One agent, model and load gives a :class:`~..bench.BenchResult` (as before); more give a
    :class:`~..bench.SweepResult` with a row per combination. The bench orchestrator is
    separate from the session's (its calls stay out of ``%agent history``), allows as many
    requests in flight as the largest load needs and, against the simulator, has no
    client-side rate limit (and TTFT is compared with what the simulator meant). It spends
    from what the session's budget has left, and what it spends counts against that budget.
    The progress line shows the live p50 TTFT and the errors so far. Raises ``UsageError``
    for bad arguments.
    """
    from ..bench import run_sweep

    args, notebook = request.args, request.notebook
    spec = _bench_spec(args)
    shadowing = check_variable_name(args.output)
    if shadowing:
        print(shadowing)
    for agent in spec.agents:
        session.registry.get(agent)
    tasks, task_options = _bench_tasks(args, request.namespace, request.policy)
    mode = Mode.SIMULATED if args.simulate else session.mode
    orch = _bench_orchestrator(session, mode, concurrency=spec.in_flight)
    reference = session.simulator() if mode.simulated else None
    sets = 1 if not isinstance(tasks, dict) else len(tasks)
    total = spec.points * sets * (spec.n or 0)
    progress = Progress(max(total, 1), notebook=notebook, label=" ".join(spec.agents))
    progress.show()
    live = _LiveBench()

    def pump(timeout: float) -> None:
        update = live.wait(timeout)
        if update is not None:
            progress.update(update[0], live.note(), total=update[1])

    async def bench() -> SweepResult:
        try:
            return await run_sweep(
                orch,
                list(spec.agents),
                models=list(spec.models),
                concurrency=[int(c) for c in spec.loads] if spec.kind == "concurrency" else None,
                rate=list(spec.loads) if spec.kind == "rate" else None,
                tasks=tasks,
                n=spec.n,
                duration=spec.duration,
                warmup=spec.warmup,
                burstiness=spec.burstiness,
                max_concurrency=spec.max_concurrency,
                slo=spec.slo,
                reference=reference,
                on_progress=live.record,
                options={"max_tokens": args.max_tokens, **task_options},
            )
        finally:
            await orch.close()

    sweep: SweepResult = session.run(bench(), pump=pump, wake=live.wake)
    progress.update(live.done, live.note(), total=max(live.done, 1))
    progress.close()
    single = len(sweep.results) == 1
    if not args.no_plot and any(r.latencies for r in sweep.results):
        _show_plot(sweep.results[0] if single else sweep, notebook=notebook)
    return sweep.results[0] if single else sweep


class _LiveBench:
    """Progress of a running bench, fed on the loop thread and read on the kernel thread."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self.ttfts: list[float] = []
        self.errors = 0
        self.done = 0

    def record(self, done: int, total: int, sample: Any) -> None:
        """``on_progress`` of the sweep (loop thread; cheap)."""
        self.done = done
        if sample.ttft_s is not None:
            self.ttfts.append(sample.ttft_s)
        if not sample.success:
            self.errors += 1
        self.events.put((done, total))

    def wake(self) -> None:
        """Unblock :meth:`wait` (the run ended or was interrupted)."""
        self.events.put((self.done, max(self.done, 1)))

    def wait(self, timeout: float) -> tuple[int, int] | None:
        """The latest ``(done, total)`` after up to ``timeout`` seconds, or None."""
        try:
            latest = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        while not self.events.empty():
            latest = self.events.get_nowait()
        return latest

    def note(self) -> str:
        """``"p50 TTFT 312 ms · 0 errors"`` from what has finished so far."""
        from ..metrics import percentile

        ttfts = list(self.ttfts)
        head = f"p50 TTFT {percentile(ttfts, 0.5) * 1000:.0f} ms · " if ttfts else ""
        return f"{head}{self.errors} error{'s' if self.errors != 1 else ''}"


def _bench_spec(args: argparse.Namespace) -> BenchSpec:
    """The checked grid of ``%agent bench`` (``UsageError`` naming the bad option)."""
    from ..bench.spec import bench_spec
    from ..engine.request import CallOptions
    from ..errors import ConfigurationError

    if args.max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1, not {args.max_tokens}.")
    try:
        spec = bench_spec(
            list(args.agent),
            models=args.models,
            concurrency=args.concurrency,
            rate=args.rate,
            n=args.n,
            duration=args.duration,
            warmup=args.warmup,
            burstiness=args.burstiness,
            max_concurrency=args.max_concurrency,
            slo=args.slo,
        )
        for model in spec.models:
            CallOptions(model=model, max_tokens=args.max_tokens)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    return spec


def _show_plot(result: BenchResult | SweepResult, *, notebook: bool) -> None:
    """Render the latency histogram of one run, or the sweep's plots, as a PNG (independent
    of the matplotlib backend).

    A terminal gets no plot; ``.plot()`` on the result is there for it.
    """
    if not notebook:
        return
    import io

    from IPython.display import Image
    from matplotlib.figure import Figure

    from ..bench import SweepResult
    from .display import show

    if isinstance(result, SweepResult):
        figure = result.plot()
    else:
        figure = Figure(figsize=(7, 3.2))
        result.plot(ax=figure.subplots())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    show(Image(data=buffer.getvalue(), format="png"))  # type: ignore[no-untyped-call]


def _bench_tasks(
    args: argparse.Namespace, namespace: Mapping[str, Any], policy: str
) -> tuple[list[str] | dict[str, list[str]] | None, dict[str, Any]]:
    """The tasks for ``--task``/``--tasks`` and the call options they need.

    ``--task`` is the user's own text (not screened); its ``{name}`` values are untrusted data,
    wrapped and screened under ``policy`` as in a cell (``UsageError`` under ``block``, a
    printed line under ``warn``). ``--tasks VAR`` holds tasks from a variable: screened.
    """
    if args.task and args.tasks:
        raise UsageError("Use either --task TEXT or --tasks VAR, not both.")
    if args.task:
        task, untrusted = interpolate(args.task, namespace)
        for note in screen_cell_data(untrusted, policy, cell=False):
            print(note)
        options: dict[str, Any] = {"screen_task": False, "injection_policy": "off"}
        if untrusted:
            options["untrusted"] = untrusted
        return [task], options
    if args.tasks:
        return _task_variable(args.tasks, namespace), {}
    return None, {}


_TASKS_VAR = re.compile(r"^([A-Za-z_]\w*)(?:\[\s*(['\"]?)(.+?)\2\s*\])?$")


def _task_variable(ref: str, namespace: Mapping[str, Any]) -> list[str] | dict[str, list[str]]:
    """The tasks ``--tasks`` names: ``VAR`` (a list, tuple or Series of strings; a DataFrame,
    each string column a task set; a dict of named lists, each a task set) or
    ``VAR[COLUMN]``. Raises ``UsageError`` saying what was expected."""
    match = _TASKS_VAR.match(ref.strip())
    value = namespace.get(match.group(1)) if match else None
    expected = (
        f"--tasks {ref}: expected a notebook variable holding a non-empty list of strings, a "
        "pandas Series or DataFrame column of strings (VAR or VAR[COLUMN]), or a dict of "
        "named lists of strings."
    )
    if match is None or value is None:
        raise UsageError(expected)
    column = match.group(3)
    if column is not None:
        try:
            value = value[column]
        except (KeyError, TypeError, IndexError):
            raise UsageError(f"--tasks {ref}: {match.group(1)} has no column {column!r}.") from None
    if hasattr(value, "columns") and hasattr(value, "items"):  # a DataFrame: a set per column
        value = {str(name): list(col) for name, col in value.items()}
    if isinstance(value, dict):
        sets = {str(k): _task_list(v) for k, v in value.items()}
        if sets and all(v is not None for v in sets.values()):
            return {k: v for k, v in sets.items() if v is not None}
        raise UsageError(expected)
    tasks = _task_list(value)
    if tasks is None:
        raise UsageError(expected)
    return tasks


def _task_list(value: Any) -> list[str] | None:
    """``value`` as a non-empty list of strings (from a list, tuple or Series), else None."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        return None
    return list(value) if all(isinstance(t, str) for t in value) else None


def _bench_orchestrator(
    session: AgentSession, mode: Mode, *, concurrency: int
) -> AsyncAgentOrchestrator:
    """The bench's own orchestrator: no cache, ``concurrency`` calls in flight, its own metrics
    (out of ``%agent history``), the session's budget, no client-side rate limit against the
    simulator."""
    from ..metrics import Metrics

    require_api_key(mode, session.api_key)
    cfg = session.config()
    return session.build_orchestrator(
        mode,
        max_concurrent=concurrency,
        calls_per_minute=None if mode.simulated else cfg.calls_per_minute,
        enable_cache=False,
        metrics=Metrics(),
    )
