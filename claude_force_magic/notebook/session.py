"""The extension's state for one IPython session: loop, orchestrators, simulator, listeners.

Everything heavy (anthropic, the cache, the simulator) is created on first use, on the
background loop, and closed by :meth:`AgentSession.close` (``%unload_ext``). Two orchestrators
can exist side by side: the live one (the real API) and the simulated one (an in-process
simulator). Simulated answers are cached in a sibling directory, ``<cache_dir>-simulated``, so a
simulated answer is never served as a real one. Each mode records into its own
:class:`~..metrics.Metrics` (:meth:`AgentSession.metrics`), so pretend dollars are never added to
real ones: ``%agent history``, ``%agent cost`` and ``%agent stats`` show both, labelled by mode.
The modes are :class:`Mode`; every orchestrator comes from :meth:`AgentSession.build_orchestrator`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..engine import defaults
from ..errors import ConfigurationError
from ..settings import API_KEY_ENV
from .runner import BackgroundLoop
from .threads import ThreadStore

if TYPE_CHECKING:
    from ..agents import AgentRegistry
    from ..engine.budget import Budget
    from ..engine.orchestrator import AsyncAgentOrchestrator
    from ..metrics import Metrics
    from ..pricing import PriceTable
    from ..simulator import Simulator

__all__ = [
    "NO_KEY_MESSAGE",
    "SIMULATED_KEY",
    "AgentSession",
    "Mode",
    "SessionConfig",
    "price_table",
    "require_api_key",
]


class Mode(enum.Enum):
    """Where a call goes: the Messages API (``LIVE``) or the offline simulator (``SIMULATED``).

    Iterating ``Mode`` gives the modes in the order the tables list them; ``mode.label`` is
    the word shown in their ``mode`` column.
    """

    LIVE = "live"
    SIMULATED = "simulated"

    @property
    def label(self) -> str:
        """``"live"`` or ``"simulated"``."""
        return self.value

    @property
    def simulated(self) -> bool:
        """True for the offline simulator."""
        return self is Mode.SIMULATED

    @classmethod
    def of(cls, value: Mode | bool) -> Mode:
        """``value`` as a Mode; ``True`` means simulated, ``False`` live."""
        if isinstance(value, Mode):
            return value
        return cls.SIMULATED if value else cls.LIVE


T = TypeVar("T")

#: The key the simulated orchestrator sends; the in-process simulator accepts any key.
SIMULATED_KEY = "sk-simulated-offline"

NO_KEY_MESSAGE = (
    "No API key: run `%agent key` and paste the key at the hidden prompt (kept in memory only, "
    "never saved in the notebook), or set ANTHROPIC_API_KEY in the environment the notebook "
    "server was started from; or work offline with `%agent simulate on` (or --simulate on "
    "this cell)."
)


def require_api_key(mode: Mode | bool, session_key: str | None = None) -> None:
    """Raise :class:`ConfigurationError` (:data:`NO_KEY_MESSAGE`) when live work has no key.

    Checks only that a key was given with ``%agent key`` (``session_key``) or that
    ``$ANTHROPIC_API_KEY`` is set and not empty; the engine validates it.
    """
    if not Mode.of(mode).simulated and not session_key and not os.environ.get(API_KEY_ENV):
        raise ConfigurationError(NO_KEY_MESSAGE)


@dataclass(frozen=True)
class SessionConfig:
    """The settings an orchestrator is built from (a snapshot of the ``AgentMagics`` traits).

    The defaults are the engine's (:mod:`~..engine.defaults`), as are the traits'.
    """

    model: str = defaults.MODEL
    max_tokens: int = defaults.MAX_TOKENS
    timeout: float = defaults.TIMEOUT_SECONDS
    deadline: float = defaults.DEADLINE_SECONDS
    max_concurrent: int = defaults.MAX_CONCURRENT
    calls_per_minute: float | None = defaults.CALLS_PER_MINUTE
    budget_usd: float | None = None
    budget_window: str = "total"
    cache_dir: str = ""
    ttl_hours: float = defaults.CACHE_TTL_HOURS
    enable_cache: bool = True
    injection_policy: str = defaults.INJECTION_POLICY
    config_path: str = ""
    simulator_latency: float = 0.2
    simulator_per_token: float = 0.0
    prices: Mapping[str, Any] = field(default_factory=dict)
    prompt_cache: str = defaults.PROMPT_CACHE
    redis_url: str = ""
    redis_namespace: str = ""


def _team_arguments(cfg: SessionConfig, mode: Mode) -> dict[str, Any]:
    """``redis_url`` and ``namespace`` for the orchestrator: the traits, else the environment
    (an empty URL turns the team off). Simulated calls use ``<namespace>-simulated``, so
    pretend dollars and simulated answers never mix with the team's real ones."""
    from ..settings import team_redis

    url, namespace = team_redis(cfg.redis_url or None, cfg.redis_namespace or None)
    if url is None:
        return {"redis_url": ""}
    if mode.simulated:
        from ..redis_link import DEFAULT_NAMESPACE

        namespace = f"{namespace or DEFAULT_NAMESPACE}-simulated"
    return {"redis_url": url, "namespace": namespace}


class AgentSession:
    """Lazily built orchestrators on one background loop, plus the session's simulator.

    Thread-safe for the kernel thread and the loop thread; magics call it from the kernel
    thread only. Raises :class:`ConfigurationError` from :meth:`orchestrator` when a live
    call is wanted and no API key is set.
    """

    def __init__(self, config: Callable[[], SessionConfig]) -> None:
        self._config = config
        self.runner = BackgroundLoop()
        self.simulate = False
        self._lock = threading.RLock()
        self._orchestrators: dict[Mode, AsyncAgentOrchestrator] = {}
        self._simulator: Simulator | None = None
        # One Metrics per mode (created on first use), kept across rebuilds like the budgets.
        self._metrics: dict[Mode, Metrics] = {}
        self._registry: AgentRegistry | None = None
        self._listeners: list[Callable[[], None]] = []
        # One budget per mode, shared by every orchestrator of that mode (rebuilt ones and
        # %agent bench's), so changing a setting or benchmarking never resets it.
        self._budgets: dict[Mode, Budget] = {}
        # The key given with `%agent key`: in this process's memory only, never on disk.
        self._api_key: str | None = None
        #: The conversation threads of ``--continue`` / ``--thread`` cells.
        self.threads = ThreadStore()

    # ------------------------------------------------------------------ API key

    @property
    def api_key(self) -> str | None:
        """The key given with ``%agent key`` (None: the environment's is used)."""
        return self._api_key

    def set_api_key(self, key: str | None) -> None:
        """Use ``key`` for live calls from now on (None forgets it); the live orchestrator is
        rebuilt on next use. The key is registered with the secret redactor, kept in memory
        only, and never written to the environment or to disk."""
        if key is not None:
            from ..guard.logs import SecretRedactor

            SecretRedactor.register(key)
        with self._lock:
            self._api_key = key
            live = self._orchestrators.pop(Mode.LIVE, None)
        if live is not None:
            self._close_quietly(live)

    # ------------------------------------------------------------------ shared pieces

    @property
    def mode(self) -> Mode:
        """The session's mode: ``SIMULATED`` after ``%agent simulate on``, else ``LIVE``."""
        return Mode.SIMULATED if self.simulate else Mode.LIVE

    def metrics(self, mode: Mode | bool) -> Metrics:
        """The metrics of live or simulated calls (created on first use; every orchestrator
        of that mode records into it, so simulated dollars are never added to real ones)."""
        mode = Mode.of(mode)
        with self._lock:
            metrics = self._metrics.get(mode)
            if metrics is None:
                from ..metrics import Metrics

                metrics = self._metrics[mode] = Metrics()
            return metrics

    @property
    def registry(self) -> AgentRegistry:
        """The agent registry (bundled agents plus the discovered ``.claude/claude.json``)."""
        with self._lock:
            if self._registry is None:
                from ..agents import AgentRegistry

                path = self._config().config_path or None
                self._registry = AgentRegistry.load(path)
            return self._registry

    def live_orchestrators(self) -> Mapping[Mode, AsyncAgentOrchestrator]:
        """The orchestrators built so far, keyed by mode."""
        with self._lock:
            return dict(self._orchestrators)

    def config(self) -> SessionConfig:
        """The current settings (a fresh snapshot of the magics' traits)."""
        return self._config()

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` on the kernel thread after every cell that ran agents."""
        self._listeners.append(fn)

    def notify(self) -> None:
        """Tell the listeners (the stats dashboard) that a call finished; never raises."""
        for fn in list(self._listeners):
            with contextlib.suppress(Exception):
                fn()

    def run(self, coro: Coroutine[Any, Any, T], **kwargs: Any) -> T:
        """Run ``coro`` on the background loop; see :meth:`BackgroundLoop.run`."""
        return self.runner.run(coro, **kwargs)

    # ------------------------------------------------------------------ paths

    def cache_dir(self, mode: Mode | bool) -> Path:
        """The cache directory for live or simulated answers."""
        from ..settings import cache_dir

        configured = self._config().cache_dir
        base = Path(configured).expanduser() if configured else cache_dir()
        return base.with_name(base.name + "-simulated") if Mode.of(mode).simulated else base

    # ------------------------------------------------------------------ simulator

    def simulator(self) -> Simulator:
        """The in-process simulator (started on first use in its own thread)."""
        with self._lock:
            if self._simulator is None:
                from ..simulator import Simulator

                self._simulator = Simulator(latency=self._latency()).start()
            return self._simulator

    def _latency(self) -> Any:
        from ..simulator import Latency

        cfg = self._config()
        return Latency.fixed(cfg.simulator_latency, per_token=cfg.simulator_per_token)

    def reconfigure_simulator(self) -> None:
        """Apply the latency settings to a running simulator (no-op before it starts)."""
        with self._lock:
            if self._simulator is not None:
                self._simulator.configure(latency=self._latency())

    # ------------------------------------------------------------------ orchestrators

    def orchestrator(
        self, mode: Mode | bool | None = None, *, require_key: bool = True
    ) -> AsyncAgentOrchestrator:
        """The session's live or simulated orchestrator (default: the session's mode).

        Built on the background loop on first use (:meth:`build_orchestrator`) and kept until
        a setting changes. Raises :class:`ConfigurationError` for a live orchestrator when no
        API key is set, unless ``require_key`` is False (for work that sends nothing, such as
        inspecting the cache).
        """
        mode = self.mode if mode is None else Mode.of(mode)
        if require_key:
            require_api_key(mode, self._api_key)
        with self._lock:
            orch = self._orchestrators.get(mode)
            if orch is None:
                orch = self._orchestrators[mode] = self.build_orchestrator(mode)
            return orch

    def build_orchestrator(self, mode: Mode | bool, **overrides: Any) -> AsyncAgentOrchestrator:
        """A new orchestrator for ``mode`` from the current settings, built on the loop.

        It shares the session's registry and the mode's budget and metrics; ``overrides``
        replace any of :class:`AsyncAgentOrchestrator`'s keyword arguments (``%agent bench``
        turns the cache off, sets its concurrency and records into its own metrics). The
        caller closes it, unless it is the session's own (:meth:`orchestrator`). Checks no
        API key: callers that send live requests call :func:`require_api_key` first.
        """
        mode = Mode.of(mode)
        arguments = {**self._orchestrator_arguments(mode), **overrides}
        return self.run(_construct(arguments))

    def _orchestrator_arguments(self, mode: Mode) -> dict[str, Any]:
        """The orchestrator's keyword arguments for ``mode`` under the current settings."""
        cfg = self._config()
        return {
            # The simulator accepts any key; None for live: $ANTHROPIC_API_KEY.
            "api_key": SIMULATED_KEY if mode.simulated else self._api_key,
            "base_url": self.simulator().base_url if mode.simulated else None,
            "model": cfg.model,
            "max_tokens": cfg.max_tokens,
            "max_concurrent": cfg.max_concurrent,
            "timeout_seconds": cfg.timeout,
            "deadline_seconds": cfg.deadline,
            "calls_per_minute": cfg.calls_per_minute,
            "budget_usd": cfg.budget_usd,
            "enable_cache": cfg.enable_cache,
            "cache_dir": self.cache_dir(mode),
            "cache_ttl_hours": cfg.ttl_hours,
            "injection_policy": cfg.injection_policy,
            "registry": self.registry,
            "prices": price_table(cfg),
            "metrics": self.metrics(mode),
            "budget": self.budget(mode),
            "prompt_cache": cfg.prompt_cache,
            **_team_arguments(cfg, mode),
        }

    def budget(self, mode: Mode | bool) -> Budget:
        """The session's budget for live or simulated calls (created on first use with the
        configured ``budget_usd`` and ``budget_window``); every orchestrator of that mode
        spends from it.

        Its spend is kept in :meth:`spend_path` (a signed ledger beside the cached answers), so
        it survives ``%reload_ext`` and a kernel restart. If that file cannot be used (a bad
        cache secret or directory) the budget is kept in memory, with one warning.
        """
        mode = Mode.of(mode)
        with self._lock:
            budget = self._budgets.get(mode)
            if budget is None:
                budget = self._budgets[mode] = self._new_budget(mode)
            return budget

    def spend_path(self, mode: Mode | bool) -> Path:
        """The spend ledger of live or simulated calls: ``spend.jsonl`` in the cache directory."""
        return self.cache_dir(mode) / "spend.jsonl"

    def _new_budget(self, mode: Mode) -> Budget:
        from ..engine.budget import Budget
        from ..errors import ClaudeForceError

        cfg = self._config()
        try:
            return Budget.persistent(
                self.spend_path(mode), limit_usd=cfg.budget_usd, window=cfg.budget_window
            )
        except ClaudeForceError as exc:
            import warnings

            from ..engine.account import SpendAccountWarning

            warnings.warn(
                f"The budget's spend cannot be kept on disk ({exc}); it is counted in memory "
                "and starts over when the kernel restarts.",
                SpendAccountWarning,
                stacklevel=2,
            )
            return Budget(cfg.budget_usd)

    def spent_usd(self, mode: Mode | bool) -> float:
        """USD spent against the budget of live or simulated calls (its window's spend)."""
        return self.budget(mode).spent

    def set_budget(self, usd: float | None) -> None:
        """Apply a budget cap (or None for none) to both modes; what was spent stays spent."""
        with self._lock:
            budgets = list(self._budgets.values())
        for budget in budgets:
            budget.set_limit(usd)

    def set_budget_window(self, window: str) -> None:
        """Count spending per ``day``, ``session`` or ``total`` in both modes.

        Raises :class:`ConfigurationError` for another window.
        """
        from ..engine.account import check_window

        check_window(window)
        with self._lock:
            budgets = list(self._budgets.values())
        for budget in budgets:
            if budget.account is not None:
                budget.account.set_window(window)

    def reset_budget(self) -> None:
        """Start the spend of both modes over from 0 (the ledgers record the reset)."""
        for mode in Mode:
            self.budget(mode).reset()

    def invalidate(self) -> None:
        """Close the orchestrators so the next call builds them from the current settings.

        The registry is dropped too (a changed ``config_path``); metrics and the money spent
        so far (which the budget counts against) are kept.
        """
        with self._lock:
            orchestrators = list(self._orchestrators.items())
            self._orchestrators.clear()
            self._registry = None
        for _, orch in orchestrators:
            self._close_quietly(orch)

    def _close_quietly(self, orch: AsyncAgentOrchestrator) -> None:
        if self.runner.is_running:
            with contextlib.suppress(Exception):
                self.run(orch.close())

    def close(self) -> None:
        """Close orchestrators, stop the simulator and the loop thread (idempotent)."""
        self.invalidate()
        with self._lock:
            sim, self._simulator = self._simulator, None
            metrics = list(self._metrics.values())
            self._metrics.clear()
            self._listeners.clear()
        if sim is not None:
            with contextlib.suppress(Exception):
                sim.stop()
        for m in metrics:
            m.close()
        self.runner.stop()


async def _construct(arguments: Mapping[str, Any]) -> AsyncAgentOrchestrator:
    # Runs on the loop thread (the orchestrator's asyncio pieces belong to that loop); it must
    # not take the session's lock, which the kernel thread may hold while it waits.
    from ..engine.orchestrator import AsyncAgentOrchestrator

    return AsyncAgentOrchestrator(**arguments)


def price_table(cfg: SessionConfig) -> PriceTable | None:
    """The bundled prices with ``cfg.prices`` added (None: the engine's bundled default).

    Raises :class:`~..errors.PricingError` for a malformed override.
    """
    if not cfg.prices:
        return None
    from ..pricing import default_table

    return default_table().with_overrides(cfg.prices)  # a new table; the shared one is untouched
