"""``%%agent`` and ``%agent``: the IPython magics, thin by design.

Each magic parses its arguments (``magic_arguments``, so ``%%agent?`` is the manual), validates
them, calls one helper, and displays. ``%agent`` only dispatches: its subcommands live in
:mod:`.commands` (one module per family, one table; ``%agent help`` and ``%agent?`` are
generated from it). The work lives in :mod:`.cells`, :mod:`.session`, :mod:`.display`,
:mod:`.widgets`, :mod:`.frames` and :mod:`..bench`.

Loading (``%load_ext claude_force_magic``) only registers the magics: anthropic, pandas,
ipywidgets and aiohttp are imported on first use. ``%unload_ext`` closes the orchestrators and
the simulator and stops the background loop.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, default, observe, validate
from traitlets import Enum as EnumTrait

from ..engine import defaults
from ..errors import ClaudeForceError
from ..settings import check_ttl_hours
from .commands import COMMANDS
from .commands.registry import in_kernel
from .display import StreamView, first_code_block, short_error
from .options import (
    argument,
    build_cell_request,
    cell_magic,
    line_magic,
    magic_args,
    no_var_expand,
    parse_args,
)
from .session import AgentSession, SessionConfig

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ..engine.result import AgentResult

__all__ = ["AgentMagics", "load_ipython_extension", "unload_ipython_extension"]

_ENV_PREFIX = "CLAUDE_FORCE_MAGIC_"
_REBUILD = (
    "redis_url",
    "redis_namespace",
    "model",
    "max_tokens",
    "timeout",
    "deadline",
    "max_concurrent",
    "calls_per_minute",
    "cache_dir",
    "ttl_hours",
    "enable_cache",
    "injection_policy",
    "config_path",
    "prices",
    "prompt_cache",
)


def _env(name: str) -> str | None:
    return os.environ.get(_ENV_PREFIX + name.upper()) or None


def _env_number(name: str, value: str, *, integer: bool = False) -> float:
    """``value`` of the environment variable for ``name`` as a number; UsageError if it is not."""
    try:
        return int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise UsageError(
            f"{_ENV_PREFIX}{name.upper()} must be {kind}, not {value!r}; fix or unset it."
        ) from None


@magics_class
class AgentMagics(Magics):
    """The ``%%agent`` cell magic and the ``%agent`` line magic.

    A traitlets ``Configurable`` (IPython's ``Magics`` is one): set options with
    ``%config AgentMagics.model = "claude-haiku-5-5"``; the defaults of ``model``,
    ``max_tokens``, ``budget_usd`` and ``simulate`` can also come from the environment
    variables ``CLAUDE_FORCE_MAGIC_MODEL``, ``..._MAX_TOKENS``, ``..._BUDGET_USD`` and
    ``..._SIMULATE``. ``%agent config`` shows the effective values.
    """

    model = Unicode(help="Model for every call unless --model says otherwise.").tag(config=True)
    max_tokens = Int(help="Upper bound on answer tokens (--max-tokens per cell).").tag(config=True)
    timeout = Float(
        defaults.TIMEOUT_SECONDS, help="Seconds one attempt may take (--timeout per cell)."
    ).tag(config=True)
    deadline = Float(
        defaults.DEADLINE_SECONDS, help="Seconds a call may take across all its retries."
    ).tag(config=True)
    max_concurrent = Int(defaults.MAX_CONCURRENT, help="Requests in flight at once.").tag(
        config=True
    )
    calls_per_minute = Float(
        defaults.CALLS_PER_MINUTE, allow_none=True, help="Client-side request rate limit."
    ).tag(config=True)
    budget_usd = Float(None, allow_none=True, help="Refuse calls past this spend (USD).").tag(
        config=True
    )
    budget_window = EnumTrait(
        ["total", "day", "session"],
        "total",
        help="What counts against budget_usd: total (since `%agent budget reset`), day (since "
        "local midnight) or session (since this kernel started).",
    ).tag(config=True)
    cache_dir = Unicode("", help="Response cache directory (default: $CLAUDE_CACHE_DIR).").tag(
        config=True
    )
    ttl_hours = Float(
        defaults.CACHE_TTL_HOURS, help="How long cached answers stay valid (--ttl per cell)."
    ).tag(config=True)
    enable_cache = Bool(True, help="Read and write the response cache.").tag(config=True)
    injection_policy = EnumTrait(
        ["block", "warn", "off"],
        defaults.INJECTION_POLICY,
        help="Prompt-injection screening (--trust: off).",
    ).tag(config=True)
    simulate = Bool(help="Answer every cell from the offline simulator.").tag(config=True)
    stream = Bool(True, help="Stream answers into the cell (--no-stream per cell).").tag(
        config=True
    )
    math = Bool(
        False, help="Typeset $...$ in answers as math (--math per cell); footers never are."
    ).tag(config=True)
    config_path = Unicode("", help="An explicit .claude/claude.json for agents.").tag(config=True)
    simulator_latency = Float(0.2, help="Seconds the offline simulator takes per answer.").tag(
        config=True
    )
    simulator_per_token = Float(0.0, help="Extra simulated seconds per streamed token.").tag(
        config=True
    )
    prompt_cache = EnumTrait(
        ["auto", "5m", "1h", "off"],
        defaults.PROMPT_CACHE,
        help="Prompt caching of agent definitions and thread histories: auto (where it pays, "
        "1-hour entries only when reuse is slower than 5 minutes), 5m, 1h or off "
        "(--prompt-cache per cell).",
    ).tag(config=True)
    redis_url = Unicode(
        "",
        help="A team's Redis (redis://, rediss:// for TLS): cache, budget and rate limits are "
        "shared there (default: $CLAUDE_FORCE_MAGIC_REDIS_URL; see docs/team.md).",
    ).tag(config=True)
    redis_namespace = Unicode(
        "",
        help="The team's key prefix in that Redis (default: $CLAUDE_FORCE_MAGIC_REDIS_NAMESPACE).",
    ).tag(config=True)
    prices = Dict(
        help="Prices to add or change, in USD per million tokens: {model: {'input': ..., "
        "'output': ..., 'cache_write_5m': ..., 'cache_write_1h': ..., 'cache_read': ...}}."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        init: Callable[..., None] = super().__init__  # untyped in IPython 8
        init(shell=shell, **kwargs)
        self.session = AgentSession(self._snapshot)
        self.session.simulate = self.simulate
        self.dashboards: list[Any] = []

    @property
    def ip(self) -> InteractiveShell:
        """The shell these magics are registered with."""
        if self.shell is None:
            raise UsageError("AgentMagics is not attached to an IPython shell.")
        shell: InteractiveShell = self.shell  # Any under IPython 8
        return shell

    # ------------------------------------------------------------------ configuration

    @default("model")
    def _default_model(self) -> str:
        return _env("model") or defaults.MODEL

    @default("max_tokens")
    def _default_max_tokens(self) -> int:
        value = _env("max_tokens")
        return (
            defaults.MAX_TOKENS
            if value is None
            else int(_env_number("max_tokens", value, integer=True))
        )

    @default("budget_usd")
    def _default_budget(self) -> float | None:
        value = _env("budget_usd")
        return None if value is None else _env_number("budget_usd", value)

    @default("simulate")
    def _default_simulate(self) -> bool:
        return (_env("simulate") or "").lower() in ("1", "true", "on", "yes")

    def _snapshot(self) -> SessionConfig:
        return SessionConfig(
            model=self.model,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
            deadline=self.deadline,
            max_concurrent=self.max_concurrent,
            calls_per_minute=self.calls_per_minute,
            budget_usd=self.budget_usd,
            budget_window=self.budget_window,
            cache_dir=self.cache_dir,
            ttl_hours=self.ttl_hours,
            enable_cache=self.enable_cache,
            injection_policy=self.injection_policy,
            config_path=self.config_path,
            simulator_latency=self.simulator_latency,
            simulator_per_token=self.simulator_per_token,
            prices=dict(self.prices),
            prompt_cache=self.prompt_cache,
            redis_url=self.redis_url,
            redis_namespace=self.redis_namespace,
        )

    @validate("ttl_hours")
    def _check_ttl_hours(self, proposal: Any) -> float:
        # Refused at %config, before anything is sent or stored (87600000 broke %agent cache).
        try:
            return check_ttl_hours("AgentMagics.ttl_hours", proposal["value"])
        except ClaudeForceError as exc:
            raise TraitError(str(exc)) from None

    @observe(*_REBUILD)
    def _settings_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.invalidate()

    @observe("budget_usd")
    def _budget_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.set_budget(change["new"])

    @observe("budget_window")
    def _budget_window_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.set_budget_window(change["new"])

    @observe("simulate")
    def _simulate_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.simulate = bool(change["new"])

    @observe("simulator_latency", "simulator_per_token")
    def _latency_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.reconfigure_simulator()

    # ------------------------------------------------------------------ %%agent

    @magic_args("%agent")  # the usage line reads "%%agent ...", not "%agent_cell ..."
    @argument("agents", nargs="*", metavar="AGENT", help="one or more agents, run concurrently")
    @argument("--model", help="model for this cell (default: AgentMagics.model)")
    @argument("--max-tokens", type=int, help="upper bound on answer tokens")
    @argument("--timeout", type=float, help="seconds one attempt may take")
    @argument("--no-cache", action="store_true", help="neither read nor write the cache")
    @argument("--refresh", action="store_true", help="skip the cache read, store the new answer")
    @argument("--ttl", type=float, help="hours the stored answer stays valid")
    @argument("-o", "--output", metavar="VAR", help="store the AgentResult (a list for several)")
    @argument(
        "--format",
        default="markdown",
        help="markdown (default) | code (put the first code block in a new cell) | text | json",
    )
    @argument("--no-stream", action="store_true", help="show the answer only when complete")
    @argument("--quiet", action="store_true", help="show nothing (use with -o)")
    @argument(
        "--trust",
        action="store_true",
        help="this cell's {name} values are trusted: not screened (still wrapped as data)",
    )
    @argument("--simulate", action="store_true", help="answer from the offline simulator")
    @argument("--no-interpolate", action="store_true", help="send {name} literally")
    @argument("--math", action="store_true", help="typeset $...$ in the answer as math")
    @argument(
        "--workflow",
        metavar="NAME",
        help="run a workflow's agents in order, each given the previous output as data",
    )
    @argument(
        "-c",
        "--continue",
        dest="continue_thread",
        action="store_true",
        help="continue this session's latest thread with the agent (a new one if none)",
    )
    @argument("--thread", metavar="NAME", help="continue thread NAME (a new name starts it)")
    @argument(
        "--prompt-cache",
        choices=["auto", "5m", "1h", "off"],
        help="prompt caching for this cell (default: AgentMagics.prompt_cache)",
    )
    @cell_magic("agent")
    def agent_cell(self, line: str, cell: str) -> None:
        """Ask one or more agents; the cell body is the task.

        ``{name}`` in the body is replaced by the notebook variable ``name``, sent as untrusted
        data (``{{`` and ``}}`` are literal braces). The answer streams in, its Markdown rendered
        as safe HTML (raw HTML in an answer is shown as text, never run), then a footer:
        agent, model, latency, tokens, cost and cache state. A failed call shows one
        red line naming the cause and the fix, and fails the cell (Run All stops).
        ``--workflow NAME`` (instead of agents) runs a workflow's agents in order, each step in
        its own output and given the previous step's answer as untrusted data.

        Example::

            %%agent python-expert code-reviewer --max-tokens 800 -o answers
            Review this function: {source}
        """
        args = parse_args(self.agent_cell, line)
        request = build_cell_request(args, cell, self.ip.user_ns, policy=self.injection_policy)
        if request.thread is not None or request.continue_thread:
            from .threads import cell_key

            request = _replace(request, cell_key=cell_key(self.ip, line, cell))
        for note in request.notes:
            print(note)
        simulated = request.simulate or self.session.simulate
        view = StreamView(
            labels=request.agents if len(request.agents) > 1 else [None],
            notebook=in_kernel(self.shell),
            quiet=request.quiet,
            fmt=request.fmt,
            caching=self.enable_cache and request.options.use_cache,
            math=bool(self.math or args.math),
            notes=request.notes,
        )
        if not self.stream:
            request = _replace(request, stream=False)
        from .cells import failure_of, run_cell, run_workflow_cell

        def interrupted(outcomes: list[AgentResult | BaseException]) -> None:
            self._deliver(request, outcomes, complete=False)

        try:
            if request.workflow:
                steps = run_workflow_cell(
                    self.session, request, partial(_step_view, view), simulated=simulated
                )
                request = _replace(request, agents=tuple(name for name, _ in steps))
                outcomes = [outcome for _, outcome in steps]
            else:
                outcomes = run_cell(
                    self.session, request, view, simulated=simulated, on_interrupted=interrupted
                )
        except (ClaudeForceError, KeyboardInterrupt) as exc:
            raise short_error(exc) from None
        finally:
            self.session.notify()
        self._deliver(request, outcomes)
        failures = [(n, failure_of(o)) for n, o in zip(request.agents, outcomes, strict=True)]
        failed = [(n, e) for n, e in failures if e is not None]
        if failed:
            if len(failed) > 1:
                raise _summary_error(failed)
            name, error = failed[0]
            outcome = outcomes[request.agents.index(name)]
            meta = {} if isinstance(outcome, BaseException) else outcome.metadata
            attempts = int(meta["attempts"]) if meta.get("attempts") is not None else None
            label = name if len(outcomes) > 1 or request.workflow else None
            raise short_error(error, label=label, attempts=attempts)

    def _deliver(
        self,
        request: Any,
        outcomes: list[AgentResult | BaseException],
        *,
        complete: bool = True,
    ) -> None:
        """Store the results in ``-o VAR`` (an interrupted cell stores its partial results,
        ``success=False`` with the text so far) and, for a complete cell, apply ``--format
        code``."""
        from ..engine.result import AgentResult

        results = [
            o
            if isinstance(o, AgentResult)
            else AgentResult.failure(n, o)
            if isinstance(o, ClaudeForceError)
            else AgentResult(agent_name=n, success=False, errors=[str(o) or type(o).__name__])
            for n, o in zip(request.agents, outcomes, strict=True)
        ]
        if request.output_var and not all(map(_refused_before_sending, outcomes)):
            single = len(results) == 1 and not request.workflow  # a workflow: always a list
            self.ip.user_ns[request.output_var] = results[0] if single else results
        if complete and request.fmt == "code":
            code = next((c for r in results if (c := first_code_block(r.output))), None)
            if code is not None:
                self.ip.set_next_input(code, replace=False)
            elif any(r.success for r in results):
                print("(--format code: the answer has no fenced code block)")

    # ------------------------------------------------------------------ %agent

    @no_var_expand  # {name} in --task is untrusted data, not text to paste in (as %timeit)
    @line_magic("agent")
    def agent_line(self, line: str) -> Any:
        """Inspect and control the extension; ``%agent`` alone lists the subcommands.

        (Replaced below by the manual generated from the subcommand table.)
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise UsageError(f"%agent {line}: {exc}; check the quotes.") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(COMMANDS.help())
            return None
        command = COMMANDS.get(words[0])
        args = command.parse(line.split(None, 1)[1] if len(words) > 1 else "")
        try:
            return command.handler(self, args)
        except (ClaudeForceError, KeyboardInterrupt) as exc:
            raise short_error(exc) from None


# `%agent?` shows this: every subcommand from the table, then the options of those with a manual.
AgentMagics.agent_line.__doc__ = (
    "Inspect and control the extension; `%agent` alone prints this list.\n\n" + COMMANDS.manual()
)


def _summary_error(failed: list[tuple[str, BaseException]]) -> BaseException:
    """One red line naming every agent that failed, with the first error's cause and fix
    (each agent's own error is shown in its output; the line says when they differ)."""
    first = failed[0][1]
    names = ", ".join(name for name, _ in failed)
    (line,) = short_error(first, label=names)._render_traceback_()  # type: ignore[attr-defined]
    if any(type(error) is not type(first) for _, error in failed[1:]):
        line += " (the other agents failed differently: see their outputs)"
    first._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]
    return first


def _refused_before_sending(outcome: Any) -> bool:
    """True when ``outcome`` is a call the caller's input stopped before anything was sent
    (a bad setting, a blocked task, the budget): such a cell assigns nothing to ``-o``."""
    from ..errors import (
        BudgetExceededError,
        ConfigurationError,
        InvalidTaskError,
        SecurityError,
    )
    from .cells import failure_of

    refused = (BudgetExceededError, ConfigurationError, InvalidTaskError, SecurityError)
    return isinstance(failure_of(outcome), refused)


def _step_view(cell_view: StreamView, label: str) -> StreamView:
    """The output of one workflow step: like the cell's, with its own label."""
    return StreamView(
        labels=[label],
        notebook=cell_view.notebook,
        quiet=cell_view.quiet,
        fmt=cell_view.fmt,
        caching=cell_view.caching,
        math=cell_view.math,
        shared_cell=True,  # the other steps' outputs stay: never clear the cell
    )


def _replace(request: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(request, **changes)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and make ``AgentMagics`` configurable with ``%config``."""
    magics = AgentMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the orchestrators and the simulator, stop the loop thread, remove the magics."""
    manager = ipython.magics_manager
    magics = manager.registry.pop("AgentMagics", None)
    for kind in ("line", "cell"):
        manager.magics[kind].pop("agent", None)
    if magics is None:
        return
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    magics.dashboards.clear()
    magics.session.close()
