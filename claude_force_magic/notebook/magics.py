"""``%%agent`` and ``%agent``: the IPython magics, thin by design.

Each magic parses its arguments (``magic_arguments``, so ``%%agent?`` is the manual), validates
them, calls one helper, and displays. The work lives in :mod:`.cells`, :mod:`.session`,
:mod:`.display`, :mod:`.widgets`, :mod:`.frames` and :mod:`..bench`.

Loading (``%load_ext claude_force_magic``) only registers the magics: anthropic, pandas,
ipywidgets and aiohttp are imported on first use. ``%unload_ext`` closes the orchestrators and
the simulator and stops the background loop.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Float, Int, Unicode, default, observe
from traitlets import Enum as EnumTrait

from ..errors import ClaudeForceError
from ..settings import API_KEY_ENV
from .display import StreamView, first_code_block, short_error
from .options import (
    argument,
    build_cell_request,
    cell_magic,
    line_magic,
    magic_args,
    parse_args,
    parse_usd,
)
from .session import MODES, AgentSession, SessionConfig

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ..bench import BenchResult
    from ..engine.result import AgentResult

__all__ = ["AgentMagics", "load_ipython_extension", "unload_ipython_extension"]

_ENV_PREFIX = "CLAUDE_FORCE_MAGIC_"
_REBUILD = (
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
)

LINE_HELP = """\
%agent SUBCOMMAND ...   (every table is returned, so `df = %agent history` works)

  list                      agents: name, description, domains, priority, source
  show NAME                 one agent's definition
  stats                     live dashboard: cache, latency percentiles, spend and savings
  cache                     cache entries (no response text)
  cache clear [AGENT]       remove all entries, or one agent's
  cache verify              check every signature; tampered entries are removed
  history                   this session's calls, live and simulated (a mode column)
  cost                      spend and savings by mode, agent and model
  budget USD | budget off   stop calls that would take spending past USD
  config                    the effective configuration (API key masked)
  simulate on|off           use the offline simulator for every cell
  bench AGENT [--n 50] [--concurrency 8] [--simulate] [--task TEXT | --tasks VAR]
"""


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
    timeout = Float(30.0, help="Seconds one attempt may take (--timeout per cell).").tag(
        config=True
    )
    deadline = Float(120.0, help="Seconds a call may take across all its retries.").tag(config=True)
    max_concurrent = Int(10, help="Requests in flight at once.").tag(config=True)
    calls_per_minute = Float(50.0, allow_none=True, help="Client-side request rate limit.").tag(
        config=True
    )
    budget_usd = Float(None, allow_none=True, help="Refuse calls past this spend (USD).").tag(
        config=True
    )
    cache_dir = Unicode("", help="Response cache directory (default: $CLAUDE_CACHE_DIR).").tag(
        config=True
    )
    ttl_hours = Float(24.0, help="How long cached answers stay valid (--ttl per cell).").tag(
        config=True
    )
    enable_cache = Bool(True, help="Read and write the response cache.").tag(config=True)
    injection_policy = EnumTrait(
        ["block", "warn", "off"], "block", help="Prompt-injection screening (--trust: off)."
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
    prices = Dict(
        help="Prices to add or change, in USD per million tokens: {model: {'input': ..., "
        "'output': ..., 'cache_write_5m': ..., 'cache_write_1h': ..., 'cache_read': ...}}."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = AgentSession(self._snapshot)
        self.session.simulate = self.simulate
        self.dashboards: list[Any] = []

    @property
    def ip(self) -> InteractiveShell:
        """The shell these magics are registered with."""
        if self.shell is None:
            raise UsageError("AgentMagics is not attached to an IPython shell.")
        return self.shell

    # ------------------------------------------------------------------ configuration

    @default("model")
    def _default_model(self) -> str:
        return _env("model") or "claude-sonnet-5-5"

    @default("max_tokens")
    def _default_max_tokens(self) -> int:
        value = _env("max_tokens")
        return 4096 if value is None else int(_env_number("max_tokens", value, integer=True))

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
            cache_dir=self.cache_dir,
            ttl_hours=self.ttl_hours,
            enable_cache=self.enable_cache,
            injection_policy=self.injection_policy,
            config_path=self.config_path,
            simulator_latency=self.simulator_latency,
            simulator_per_token=self.simulator_per_token,
            prices=dict(self.prices),
        )

    @observe(*_REBUILD)
    def _settings_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.invalidate()

    @observe("budget_usd")
    def _budget_changed(self, change: Any) -> None:
        if hasattr(self, "session"):
            self.session.set_budget(change["new"])

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
    @argument("agents", nargs="+", metavar="AGENT", help="one or more agents, run concurrently")
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
    @argument("--trust", action="store_true", help="turn injection screening off for this cell")
    @argument("--simulate", action="store_true", help="answer from the offline simulator")
    @argument("--no-interpolate", action="store_true", help="send {name} literally")
    @argument("--math", action="store_true", help="typeset $...$ in the answer as math")
    @cell_magic("agent")
    def agent_cell(self, line: str, cell: str) -> None:
        """Ask one or more agents; the cell body is the task.

        ``{name}`` in the body is replaced by the notebook variable ``name``, sent as untrusted
        data (``{{`` and ``}}`` are literal braces). The answer streams in as Markdown, then a
        footer: agent, model, latency, tokens, cost and cache state. A failed call shows one
        red line naming the cause and the fix, and fails the cell (Run All stops).

        Example::

            %%agent python-expert code-reviewer --max-tokens 800 -o answers
            Review this function: {source}
        """
        args = parse_args(self.agent_cell, line)
        request = build_cell_request(args, cell, self.ip.user_ns)
        for note in request.notes:
            print(note)
        simulated = request.simulate or self.session.simulate
        view = StreamView(
            labels=request.agents if len(request.agents) > 1 else [None],
            notebook=_in_kernel(self.shell),
            quiet=request.quiet,
            fmt=request.fmt,
            caching=self.enable_cache and request.call_options.get("use_cache", True),
            math=bool(self.math or args.math),
            notes=request.notes,
        )
        if not self.stream:
            request = _replace(request, stream=False)
        from .cells import failure_of, run_cell

        try:
            outcomes = run_cell(self.session, request, view, simulated=simulated)
        except (ClaudeForceError, KeyboardInterrupt) as exc:
            raise short_error(exc) from None
        finally:
            self.session.notify()
        self._deliver(request, outcomes)
        failures = [(n, failure_of(o)) for n, o in zip(request.agents, outcomes, strict=True)]
        failed = [(n, e) for n, e in failures if e is not None]
        if failed:
            name, error = failed[0]
            raise short_error(error, label=name if len(outcomes) > 1 else None)

    def _deliver(self, request: Any, outcomes: list[AgentResult | BaseException]) -> None:
        from ..engine.result import AgentResult

        results = [
            o
            if isinstance(o, AgentResult)
            else AgentResult.failure(n, o)
            if isinstance(o, ClaudeForceError)
            else AgentResult(agent_name=n, success=False, errors=[str(o)])
            for n, o in zip(request.agents, outcomes, strict=True)
        ]
        if request.output_var:
            self.ip.user_ns[request.output_var] = results[0] if len(results) == 1 else results
        if request.fmt == "code":
            code = next((c for r in results if (c := first_code_block(r.output))), None)
            if code is not None:
                self.ip.set_next_input(code, replace=False)
            elif any(r.success for r in results):
                print("(--format code: the answer has no fenced code block)")

    # ------------------------------------------------------------------ %agent

    @line_magic("agent")
    def agent_line(self, line: str) -> Any:
        """Inspect and control the extension; ``%agent`` alone lists the subcommands.

        (Replaced below by the full manual: the subcommands and ``%agent bench``'s options.)
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise UsageError(f"%agent {line}: {exc}; check the quotes.") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(LINE_HELP)
            return None
        command, rest = words[0], words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(f"Unknown subcommand {command!r}.\n\n{LINE_HELP}")
        try:
            return handler(rest, line.split(None, 1)[1] if len(words) > 1 else "")
        except (ClaudeForceError, KeyboardInterrupt) as exc:
            raise short_error(exc) from None

    def _cmd_list(self, rest: list[str], raw: str) -> Any:
        _no_args("list", rest)
        from .frames import agents_frame

        return agents_frame(self.session.registry.rows())

    def _cmd_show(self, rest: list[str], raw: str) -> Any:
        if len(rest) != 1:
            raise UsageError("Usage: %agent show NAME")
        definition = self.session.registry.get(rest[0])
        from IPython.display import Markdown

        from .display import show

        head = (
            f"### {definition.name}\n\n{definition.description}\n\n"
            f"domains: {', '.join(definition.domains) or '-'} · priority {definition.priority}"
            f" · source: {definition.source}\n\n---\n\n"
        )
        text = head + definition.system_prompt
        if _in_kernel(self.shell):
            show(Markdown(text))  # type: ignore[no-untyped-call]
        else:  # a terminal shows Markdown objects as their repr
            print(text)
        return None

    def _cmd_stats(self, rest: list[str], raw: str) -> Any:
        _no_args("stats", rest)
        from .widgets import StatsDashboard

        board = StatsDashboard(self.session, notebook=_in_kernel(self.shell))
        board.show()
        self.dashboards = [*self.dashboards[-4:], board]
        if len(self.dashboards) == 1:
            self.session.add_listener(self._refresh_dashboards)
        return None

    def _refresh_dashboards(self) -> None:
        for board in self.dashboards:
            board.refresh()

    def _cmd_cache(self, rest: list[str], raw: str) -> Any:
        if rest and rest != ["verify"] and not (rest[0] == "clear" and len(rest) <= 2):
            raise UsageError(
                "Usage: %agent cache | %agent cache clear [AGENT] | %agent cache verify"
            )
        # The cache is local: inspecting or clearing it needs no API key.
        cache = self.session.orchestrator(require_key=False).cache
        if cache is None:
            raise UsageError("The response cache is off (AgentMagics.enable_cache = False).")
        if not rest:
            from .frames import cache_frame

            return cache_frame(cache.entries())
        if rest[0] == "clear" and len(rest) <= 2:
            removed = cache.clear(rest[1] if len(rest) == 2 else None)
            print(f"Removed {removed} cache entr{'y' if removed == 1 else 'ies'}.")
            return None
        return cache.verify()

    def _cmd_history(self, rest: list[str], raw: str) -> Any:
        _no_args("history", rest)
        from .frames import mode_history_frame

        return mode_history_frame({m: self.session.metrics(sim).recent() for sim, m in MODES})

    def _cmd_cost(self, rest: list[str], raw: str) -> Any:
        _no_args("cost", rest)
        from .frames import cost_frame

        return cost_frame(
            {"mode": mode, **row}
            for simulated, mode in MODES
            for row in self.session.metrics(simulated).cost_by(("agent_name", "model"))
        )

    def _cmd_budget(self, rest: list[str], raw: str) -> Any:
        if len(rest) != 1:
            raise UsageError("Usage: %agent budget USD   or   %agent budget off")
        self.budget_usd = None if rest[0].lower() in ("off", "none") else parse_usd(rest[0])
        print("Budget off." if self.budget_usd is None else f"Budget: ${self.budget_usd:,.2f}.")
        return None

    def _cmd_config(self, rest: list[str], raw: str) -> Any:
        _no_args("config", rest)
        from .frames import config_frame

        return config_frame(self._effective_config())

    def _effective_config(self) -> dict[str, Any]:
        key = os.environ.get(API_KEY_ENV, "")
        masked = (
            f"{key[:7]}…{key[-2:]} (set)" if len(key) > 12 else ("(set)" if key else "(not set)")
        )
        values: dict[str, Any] = {
            name: getattr(self, name) for name in self.trait_names(config=True)
        }
        values["cache_dir"] = str(self.session.cache_dir(False))
        values["simulate"] = self.session.simulate
        values["api_key"] = masked
        for simulated, orch in self.session.live_orchestrators().items():
            label = "simulated" if simulated else "live"
            values[f"spent_usd ({label})"] = orch.spent_usd
        return values

    def _cmd_simulate(self, rest: list[str], raw: str) -> Any:
        if len(rest) != 1 or rest[0].lower() not in ("on", "off"):
            raise UsageError("Usage: %agent simulate on   or   %agent simulate off")
        self.simulate = rest[0].lower() == "on"
        if self.simulate:
            self.session.simulator()
            print(
                "Simulation on: answers come from the offline simulator and are marked simulated."
            )
        else:
            print("Simulation off: cells call the Messages API.")
            if not os.environ.get(API_KEY_ENV):
                print(
                    "ANTHROPIC_API_KEY is not set, so cells will fail until you set it "
                    "(`%env ANTHROPIC_API_KEY=...`) or turn simulation back on."
                )
        return None

    def _cmd_bench(self, rest: list[str], raw: str) -> Any:
        args = parse_args(_bench_arguments, raw)
        from .cells import run_bench_command

        result: BenchResult = run_bench_command(self, args)
        if args.output:
            self.ip.user_ns[args.output] = result
        return result.summary_frame()


@magic_args("agent bench")
@argument("agent", help="the agent to benchmark")
@argument("--n", type=int, default=50, help="number of calls (default 50)")
@argument("--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
@argument("--simulate", action="store_true", help="against the offline simulator")
@argument("--task", help="the task text (default: numbered generated tasks)")
@argument("--tasks", metavar="VAR", help="a notebook variable holding a list of tasks")
@argument("--max-tokens", type=int, default=256, help="answer token bound (default 256)")
@argument("--no-plot", action="store_true", help="skip the latency histogram")
@argument("-o", "--output", metavar="VAR", help="store the BenchResult")
def _bench_arguments() -> None:
    """Run many calls at a chosen concurrency and report latency percentiles and throughput."""


# `%agent?` shows this: every subcommand, then bench's options from its parser.
AgentMagics.agent_line.__doc__ = (
    "Inspect and control the extension; `%agent` alone prints this list.\n\n"
    f"{LINE_HELP}\n{_bench_arguments.__doc__}"
)


def _no_args(command: str, rest: list[str]) -> None:
    if rest:
        raise UsageError(f"%agent {command} takes no arguments (got {' '.join(rest)!r}).")


def _in_kernel(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


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
