"""``AsyncAgentOrchestrator``: run named agents through the safe, cost-aware call pipeline.

The orchestrator is a facade. It checks its settings, builds the pieces once, and hands every
call to them:

- :mod:`.defaults` - every default value;
- :mod:`.request` - :class:`CallOptions` (the per-call options) and :class:`RequestBuilder`
  (task checks, injection screen, request parameters, cache identity, token estimate; prior
  turns of a conversation);
- :mod:`.pipeline` - the order of one call, shared by every entry point;
- :mod:`.transport` - the SDK (the one place its errors are mapped), or any other transport;
- :mod:`.gate` - breaker, concurrency slot and rate limits per attempt;
- :mod:`.ledger` - budget reservation, settlement, metadata and metrics;
- :mod:`.store` - the response store, called off the event loop.

Caller mistakes raise before anything is sent (:class:`UnknownAgentError`,
:class:`InvalidTaskError`, :class:`PromptInjectionError`, :class:`ConfigurationError`,
:class:`BudgetExceededError`). Failures of the call itself come back as
``AgentResult(success=False, error=...)``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    ClaudeForceError,
    ConfigurationError,
    PromptInjectionError,
)
from ..settings import Secret, check_ttl_hours
from ..validation import check_flag, check_int, check_number
from . import defaults
from .breaker import CircuitBreaker
from .budget import Budget
from .client import ClientHandle
from .gate import AttemptBreaker, AttemptGate, AttemptLimiter
from .ledger import Ledger
from .limits import RateLimiter
from .pipeline import CallPipeline, OnCancelled
from .prompt_cache import check_prompt_cache
from .request import CallOptions, PreparedCall, RequestBuilder
from .result import AgentResult
from .retry import RetryPolicy
from .store import ResponseStore, StoreThread
from .transport import MessagesTransport, SDKTransport

if TYPE_CHECKING:
    import httpx2

    from ..agents import AgentRegistry
    from ..cache.store import ResponseCache
    from ..metrics import Metrics
    from ..pricing import PriceTable
    from .batch import BatchContext, BatchJob, BatchLimits
    from .batch_registry import BatchRegistry
    from .conversation import Conversation
    from .team import Team

__all__ = [
    "DEFAULT_MODEL",
    "AsyncAgentOrchestrator",
    "CallOptions",
    "OnCancelled",
    "workflow_step_options",
]


DEFAULT_MODEL = defaults.MODEL
STREAMING_REQUIRED_ABOVE = defaults.STREAMING_REQUIRED_ABOVE
_STOP = object()
_T = TypeVar("_T")


def _require(value: _T, protocol: type, name: str) -> _T:
    """``value`` if it has the methods of ``protocol``; :class:`ConfigurationError` otherwise."""
    if not isinstance(value, protocol):
        raise ConfigurationError(
            f"{name} must implement claude_force_magic.engine.{protocol.__module__.split('.')[-1]}"
            f".{protocol.__name__}, got {type(value).__name__}."
        )
    return value


class AsyncAgentOrchestrator:
    """Run named Claude agents with caching, rate limits, retries, a circuit breaker and a budget.

    Construct anywhere (no event loop needed, nothing is read or sent); every async component
    binds to the running loop lazily, so one orchestrator can serve successive loops
    (``asyncio.run`` twice) but not two loops at once. The API key comes from ``api_key`` or
    ``$ANTHROPIC_API_KEY``; a missing key raises :class:`ConfigurationError` at the first live
    call. Raises :class:`ConfigurationError` at once for invalid numeric options.

    ``max_concurrent`` bounds requests in flight (the semaphore exists from construction:
    BUG-002); ``calls_per_minute`` / ``input_tokens_per_minute`` / ``output_tokens_per_minute``
    are client-side token buckets (None: unlimited); ``timeout_seconds`` bounds each attempt
    (for streams: the wait for each piece), ``deadline_seconds`` the whole call with its
    retries; ``max_retries`` counts retries after the first attempt; ``budget_usd`` caps
    spending; ``budget`` (a :class:`~.budget.Budget`) shares one account of spending between
    orchestrators, e.g. one rebuilt with new settings (``budget_usd``, when given, sets its
    cap); ``breaker_threshold`` consecutive server failures open the circuit for
    ``breaker_cooldown_seconds``. ``http_client`` (an ``httpx2.AsyncClient``) is used as is
    and never closed by the orchestrator. ``cache_encrypt=True`` stores the disk cache's
    answers encrypted (None: ``$CLAUDE_CACHE_ENCRYPT`` decides; see docs/cache.md).
    ``prompt_cache`` (``"auto"``, ``"5m"``, ``"1h"``, ``"off"``; per call the ``prompt_cache``
    option) marks agent definitions and conversation histories cacheable at the API (see
    :mod:`.prompt_cache`). ``redis_url`` (default ``$CLAUDE_FORCE_MAGIC_REDIS_URL``) and
    ``namespace`` (default ``$CLAUDE_FORCE_MAGIC_REDIS_NAMESPACE``) move the cache, the budget
    and the rate limits to a team's Redis together, with this kernel's own as the fallback
    while it is unreachable (docs/team.md); without them nothing changes.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        max_tokens: int = defaults.MAX_TOKENS,
        max_concurrent: int = defaults.MAX_CONCURRENT,
        timeout_seconds: float = defaults.TIMEOUT_SECONDS,
        deadline_seconds: float | None = defaults.DEADLINE_SECONDS,
        max_retries: int = defaults.MAX_RETRIES,
        calls_per_minute: float | None = defaults.CALLS_PER_MINUTE,
        input_tokens_per_minute: float | None = defaults.INPUT_TOKENS_PER_MINUTE,
        output_tokens_per_minute: float | None = defaults.OUTPUT_TOKENS_PER_MINUTE,
        budget_usd: float | None = None,
        enable_cache: bool = True,
        cache: ResponseCache | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_ttl_hours: float = defaults.CACHE_TTL_HOURS,
        cache_encrypt: bool | None = None,
        injection_policy: str = defaults.INJECTION_POLICY,
        max_task_chars: int = defaults.MAX_TASK_CHARS,
        registry: AgentRegistry | None = None,
        prices: PriceTable | None = None,
        metrics: Metrics | None = None,
        breaker_threshold: int = defaults.BREAKER_THRESHOLD,
        breaker_cooldown_seconds: float = defaults.BREAKER_COOLDOWN_SECONDS,
        http_client: httpx2.AsyncClient | None = None,
        budget: Budget | None = None,
        transport: MessagesTransport | None = None,
        store: ResponseStore | None = None,
        limiter: AttemptLimiter | None = None,
        breaker: AttemptBreaker | None = None,
        prompt_cache: str = defaults.PROMPT_CACHE,
        redis_url: str | None = None,
        namespace: str | None = None,
    ) -> None:
        from ..guard import InjectionPolicy, SecretRedactor, get_logger

        self._log = get_logger(__name__)

        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError("model must be a model id such as 'claude-sonnet-5-5'.")
        if base_url is not None and (
            not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
        ):
            raise ConfigurationError(
                f"base_url must be an http:// or https:// URL such as "
                f"'http://127.0.0.1:8765', or None for the API's own, got {base_url!r}."
            )
        self._config_path = config_path
        self._model = model
        self._max_tokens = check_int("max_tokens", max_tokens)
        self._max_concurrent = check_int("max_concurrent", max_concurrent)
        self._timeout = check_number("timeout_seconds", timeout_seconds)
        self._deadline = check_number("deadline_seconds", deadline_seconds, allow_none=True)
        self._retry = RetryPolicy(max_retries=max_retries)
        self._policy = InjectionPolicy.parse(injection_policy)
        self._max_task_chars = check_int("max_task_chars", max_task_chars)
        self._cache_ttl_hours = check_ttl_hours("cache_ttl_hours", cache_ttl_hours)
        self._cache_encrypt = cache_encrypt  # None: $CLAUDE_CACHE_ENCRYPT decides
        self._builder = RequestBuilder(
            model=self._model,
            max_tokens=self._max_tokens,
            timeout_seconds=self._timeout,
            injection_policy=self._policy,
            max_task_chars=self._max_task_chars,
            prompt_cache=check_prompt_cache(prompt_cache),
            min_cacheable_tokens=lambda model: self.prices.min_cacheable_tokens(model),
        )
        self._client = ClientHandle(api_key=api_key, base_url=base_url, http_client=http_client)
        self._key_registered = self._client.api_key is not None
        if self._client.api_key is not None:
            SecretRedactor.register(self._client.api_key)
        self._owns_transport = transport is None
        self._transport: MessagesTransport = (
            SDKTransport(self._client)
            if transport is None
            else _require(transport, MessagesTransport, "transport")
        )
        rates = (
            check_number("calls_per_minute", calls_per_minute, allow_none=True),
            check_number("input_tokens_per_minute", input_tokens_per_minute, allow_none=True),
            check_number("output_tokens_per_minute", output_tokens_per_minute, allow_none=True),
        )
        # built even when breaker= is given, so bad breaker_* numbers still raise here
        checked_breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_seconds)
        self._gate = AttemptGate(
            self._max_concurrent,
            RateLimiter(*rates)
            if limiter is None
            else _require(limiter, AttemptLimiter, "limiter"),
            checked_breaker if breaker is None else _require(breaker, AttemptBreaker, "breaker"),
        )
        if budget is None:
            self._budget = Budget(budget_usd)
        elif isinstance(budget, Budget):
            self._budget = budget
            if budget_usd is not None:
                budget.set_limit(budget_usd)
        else:
            raise ConfigurationError(
                f"budget must be a claude_force_magic.engine.budget.Budget, got {budget!r}."
            )
        self._registry = registry
        self._prices = prices
        self._owns_metrics = metrics is None
        self._metrics = metrics
        if cache is not None and cache_dir is not None:
            raise ConfigurationError(
                "Pass cache= (an open ResponseCache) or cache_dir=, not both: with cache= the "
                "directory is the cache's own and cache_dir would be ignored."
            )
        if store is not None and (cache is not None or cache_dir is not None):
            raise ConfigurationError(
                "Pass store= (any ResponseStore) or cache=/cache_dir= (the disk cache), not both."
            )
        if store is not None:
            _require(store, ResponseStore, "store")
        self._cache: ResponseStore | None = cache if store is None else store
        self._owns_cache = cache is None and store is None
        self._open_lock = threading.Lock()
        self._store_thread = StoreThread()
        self._cache_enabled = check_flag("enable_cache", enable_cache)
        self._cache_dir = cache_dir
        self._cache_problem: str | None = None
        self._closed = False
        self._team = self._join_team(redis_url, namespace, rates, own_limiter=limiter is None)
        self._ledger = Ledger(self._budget, lambda: self.prices, lambda: self.metrics, self._log)
        self._pipeline = CallPipeline(
            transport=self._transport,
            gate=self._gate,
            ledger=self._ledger,
            store=lambda: self.store,
            store_usable=lambda: self._cache_enabled and self._cache_problem is None,
            store_thread=self._store_thread,
            retry=self._retry,
            deadline=self._deadline,
            log=self._log,
            is_closed=lambda: self._closed,
            on_ready=self._register_key,
        )

    # -- properties ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"AsyncAgentOrchestrator(model={self._model!r}, base_url={self._client.base_url!r}, "
            f"max_concurrent={self._max_concurrent}, "
            f"cache={'on' if self._cache_enabled else 'off'}, "
            f"budget_usd={self._budget.limit!r}, spent_usd={self._budget.spent:.4f})"
        )

    @property
    def registry(self) -> AgentRegistry:
        """The agents and workflows (loaded on first use; :class:`AgentConfigError` if invalid)."""
        if self._registry is None:
            from ..agents import AgentRegistry

            self._registry = AgentRegistry.load(self._config_path)
        return self._registry

    @property
    def prices(self) -> PriceTable:
        """The price table used for cost and budget (the bundled one unless given)."""
        if self._prices is None:
            from ..pricing import PriceTable

            self._prices = PriceTable.bundled()
        return self._prices

    @property
    def metrics(self) -> Metrics:
        """Bounded call metrics (created on first use unless given)."""
        if self._metrics is None:
            from ..metrics import Metrics

            self._metrics = Metrics()
        return self._metrics

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings are fixed at construction: `orch.timeout_seconds = 10` used to be accepted
        # and ignored. Only the orchestrator's own (private) state may be assigned.
        if not name.startswith("_"):
            raise AttributeError(
                f"AsyncAgentOrchestrator.{name} cannot be set: settings are fixed when the "
                f"orchestrator is built. Pass {name}=... to AsyncAgentOrchestrator(...), or "
                "per call where it is a call option (run(..., timeout_seconds=...)), or build "
                "a new orchestrator."
            )
        object.__setattr__(self, name, value)

    @property
    def cache(self) -> ResponseCache | None:
        """The disk response cache, or None when caching is off, the cache cannot be opened,
        or the store is not a disk cache (``store=``; see :attr:`store`).

        Opened on first use. When opening fails (a bad secret, an unsafe or unwritable
        directory...) calls run without the cache: one warning is logged and
        :attr:`cache_problem` says why and how to fix it.
        """
        from ..cache.store import ResponseCache

        store = self.store
        return store if isinstance(store, ResponseCache) else None

    @property
    def store(self) -> ResponseStore | None:
        """The response store calls use (the disk cache unless ``store=`` was given), or None
        when caching is off or the disk cache cannot be opened. Opened on first use."""
        if not self._cache_enabled or self._cache_problem is not None:
            return None
        if self._cache is None:
            with self._open_lock:  # store calls run on two threads: open it once
                if self._cache is None and self._cache_problem is None:
                    self._cache = self._open_disk_cache()
        return self._cache

    def _open_disk_cache(self) -> ResponseStore | None:
        from ..cache.store import ResponseCache

        try:
            return ResponseCache(
                self._cache_dir, ttl_hours=self._cache_ttl_hours, encrypt=self._cache_encrypt
            )
        except ClaudeForceError as exc:
            self._cache_problem = (
                f"The response cache could not be opened, so calls run without it: {exc} "
                "Fix that, or turn the cache off (enable_cache=False; in a notebook "
                "%config AgentMagics.enable_cache = False)."
            )
            self._log.warning("%s", self._cache_problem)
            return None

    def _join_team(
        self,
        redis_url: str | None,
        namespace: str | None,
        rates: tuple[float | None, float | None, float | None],
        *,
        own_limiter: bool,
    ) -> Team | None:
        """With a Redis URL (the argument or ``$CLAUDE_FORCE_MAGIC_REDIS_URL``): the budget,
        the limiter (unless injected) and the cache (unless given) move to the team's Redis,
        with this kernel's own as the fallback (:mod:`.team`). Without one: None, and
        nothing is imported."""
        from ..settings import team_redis

        url, namespace = team_redis(redis_url, namespace)
        if url is None:
            return None
        from .team import Team

        team = Team(url, namespace)
        self._budget = team.budget(self._budget)
        if own_limiter and isinstance(self._gate.limiter, RateLimiter):
            self._gate.limiter = team.limiter(self._gate.limiter, rates)
        if self._owns_cache:
            self._cache = team.store(self._open_team_cache, self._open_local_cache)
        return team

    def _open_team_cache(self) -> ResponseStore:
        from ..cache.redis import RedisResponseCache

        assert self._team is not None
        link = self._team.link
        return RedisResponseCache(
            link.target,
            namespace=link.namespace,
            ttl_hours=self._cache_ttl_hours,
            encrypt=self._cache_encrypt,
        )

    def _open_local_cache(self) -> ResponseStore | None:
        """The kernel's own cache beside the team's (None, with a warning, if it cannot be
        opened: the team's still works)."""
        from ..cache.store import ResponseCache

        try:
            return ResponseCache(
                self._cache_dir, ttl_hours=self._cache_ttl_hours, encrypt=self._cache_encrypt
            )
        except ClaudeForceError as exc:
            self._log.warning("The kernel's own response cache could not be opened: %s", exc)
            return None

    @property
    def team(self) -> Team | None:
        """The team's Redis (cache, budget, limits; ``figures()`` for a dashboard), or None
        without ``redis_url``."""
        return self._team

    @property
    def cache_problem(self) -> str | None:
        """Why the response cache could not be opened (calls run without it), else None."""
        return self._cache_problem

    @property
    def cache_ttl_hours(self) -> float:
        """Hours a stored answer stays valid unless a call passes ``ttl_hours``."""
        return self._cache_ttl_hours

    @property
    def max_tokens(self) -> int:
        """The default upper bound on answer tokens."""
        return self._max_tokens

    @property
    def max_concurrent(self) -> int:
        """Requests in flight at once."""
        return self._max_concurrent

    @property
    def timeout_seconds(self) -> float:
        """Seconds one attempt may take (per call: the ``timeout_seconds`` option)."""
        return self._timeout

    @property
    def deadline_seconds(self) -> float | None:
        """Seconds a whole call may take, retries included, or None."""
        return self._deadline

    @property
    def model(self) -> str:
        """The default model for agents that do not name their own."""
        return self._model

    @property
    def budget_usd(self) -> float | None:
        """The spending cap in USD, or None."""
        return self._budget.limit

    @property
    def spent_usd(self) -> float:
        """USD spent by this orchestrator's live calls (known prices only)."""
        return self._budget.spent

    @property
    def budget_remaining(self) -> float | None:
        """USD left under the cap (reservations of calls in flight excluded), or None."""
        return self._budget.remaining

    @property
    def breaker(self) -> AttemptBreaker:
        """The circuit breaker (``state``, ``times_opened``)."""
        return self._gate.breaker

    @property
    def limiter(self) -> AttemptLimiter:
        """The client-side rate limiter."""
        return self._gate.limiter

    def set_budget(self, usd: float | None) -> None:
        """Set or remove (None) the spending cap; raises :class:`ConfigurationError` if invalid."""
        self._budget.set_limit(usd)

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the SDK client, and the metrics and cache if this orchestrator created them.

        Cancels nothing the caller owns (an injected ``http_client`` stays open). Idempotent.
        Later calls raise :class:`ConfigurationError`, and so do calls still in flight when
        their attempt fails or a retry is due (no new client is opened for them).
        """
        self._closed = True
        if self._owns_transport:
            await self._transport.aclose()
        if self._owns_metrics and self._metrics is not None:
            self._metrics.close()
        if self._owns_cache:
            await self._store_thread.close(self._cache)  # its SQLite connection lives there
            if self._cache is not None:
                self._cache.close()  # and this thread's, if a command read the cache here
        else:
            await self._store_thread.close(None)
        if self._team is not None:
            self._team.close()

    async def __aenter__(self) -> AsyncAgentOrchestrator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- preparation (no I/O except the registry's first load) -----------------------------------

    def _prepare(
        self,
        agent_name: str,
        task: str,
        options: CallOptions | Mapping[str, Any],
        history: Sequence[Mapping[str, Any]] = (),
    ) -> PreparedCall:
        if self._closed:
            raise ConfigurationError("This orchestrator is closed; create a new one.")
        if not isinstance(options, CallOptions):
            options = CallOptions.from_kwargs(**options)
        agent = self.registry.get(agent_name)
        return self._builder.build(agent, task, options, history)

    # -- cache ---------------------------------------------------------------------------------

    async def _execute(
        self,
        call: PreparedCall,
        on_text: Callable[[str], None] | None = None,
        on_cancelled: OnCancelled | None = None,
    ) -> AgentResult:
        return await self._pipeline.run(call, on_text, on_cancelled)

    def _register_key(self) -> None:
        """Register a key read from the environment at first use with the log redactor."""
        if not self._key_registered and self._client.api_key is not None:
            from ..guard import SecretRedactor

            SecretRedactor.register(self._client.api_key)
            self._key_registered = True

    # -- public calls --------------------------------------------------------------------------

    async def execute_agent(
        self,
        agent_name: str,
        task: str,
        *,
        on_cancelled: OnCancelled | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        **options: Any,
    ) -> AgentResult:
        """Run one agent on ``task`` and return its :class:`AgentResult`.

        Options: ``model``, ``max_tokens``, ``timeout_seconds``, ``use_cache`` (default True),
        ``refresh`` (skip the lookup, store the new answer), ``ttl_hours``,
        ``injection_policy`` (``block``/``warn``/``off`` for this call), ``untrusted``
        (name -> text: wrapped as data and always screened under the policy),
        ``screen_task`` (default True; False when the task is your own text, as a notebook
        cell is: the task is then sent unscreened), ``stop_sequences`` (see
        :class:`~.request.CallOptions`). ``history``: the prior turns of a conversation, as
        in :meth:`execute`.

        Raises, before anything is sent: :class:`UnknownAgentError`, :class:`InvalidTaskError`,
        :class:`PromptInjectionError`, :class:`ConfigurationError` (bad option, missing API
        key, closed orchestrator, ``max_tokens`` above the output-tokens-per-minute limit the
        API reported), :class:`BudgetExceededError`, :class:`PricingError`
        (budget set, price unknown). Failures of the call itself are returned as
        ``success=False``. Cancelling the awaiting task stops the request and leaves no task;
        what the API billed until then (input, and output streamed so far) is still charged,
        recorded with status ``cancelled`` and counted against the budget, and
        ``on_cancelled(result)`` receives that settled result before the cancellation
        propagates. Safe to run concurrently on one loop.
        """
        return await self.execute(
            agent_name,
            task,
            CallOptions.from_kwargs(**options),
            history=history,
            on_cancelled=on_cancelled,
        )

    async def execute(
        self,
        agent_name: str,
        task: str,
        options: CallOptions | None = None,
        *,
        history: Sequence[Mapping[str, Any]] = (),
        on_text: Callable[[str], None] | None = None,
        on_cancelled: OnCancelled | None = None,
    ) -> AgentResult:
        """The typed form of :meth:`execute_agent`: ``options`` is a :class:`CallOptions`.

        ``history`` holds the prior turns of a conversation (Messages API ``{"role",
        "content"}`` dicts, oldest first, ending with an assistant turn); ``task`` is the new
        user turn. The cache identity covers the whole history. ``on_text`` receives each
        piece of text as it arrives (the call then streams). Same errors and outcomes as
        :meth:`execute_agent`.
        """
        call = self._prepare(agent_name, task, options or CallOptions(), history)
        return await self._execute(call, on_text=on_text, on_cancelled=on_cancelled)

    async def stream_agent(
        self,
        agent_name: str,
        task: str,
        *,
        on_cancelled: OnCancelled | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        **options: Any,
    ) -> AsyncIterator[str | AgentResult]:
        """Yield the answer's text pieces as they arrive, then exactly one :class:`AgentResult`.

        A cache hit yields the whole text as one piece, then the result. Retries happen only
        before the first piece arrives; a stream that breaks afterwards ends with a failed
        result holding the partial ``output``. Same options and raised errors as
        :meth:`execute_agent` (raised on the first ``__anext__``). Closing the generator early
        cancels the request; it is charged and reported to ``on_cancelled`` as in
        :meth:`execute_agent`.
        """
        call = self._prepare(agent_name, task, options, history)
        queue: asyncio.Queue[object] = asyncio.Queue()
        task_ = asyncio.ensure_future(
            self._execute(call, on_text=queue.put_nowait, on_cancelled=on_cancelled)
        )
        task_.add_done_callback(lambda _t: queue.put_nowait(_STOP))
        try:
            while True:
                item = await queue.get()
                if item is _STOP:
                    break
                yield str(item)
            yield task_.result()
        finally:
            if not task_.done():
                task_.cancel()
                await asyncio.gather(task_, return_exceptions=True)

    def conversation(self, agent_name: str, **options: Any) -> Conversation:
        """A :class:`~.conversation.Conversation` with ``agent_name``: ``await conv.send(task)``
        asks the next turn with the history so far (see :mod:`.conversation`).

        ``options`` are the call options of every turn (as for :meth:`execute_agent`; a turn
        may override them). Raises :class:`UnknownAgentError` and :class:`ConfigurationError`
        (a bad option, a closed orchestrator) at once.
        """
        from .conversation import Conversation

        if self._closed:
            raise ConfigurationError("This orchestrator is closed; create a new one.")
        return Conversation(self, agent_name, CallOptions.from_kwargs(**options))

    async def execute_multiple(
        self,
        tasks: Iterable[tuple[str, str] | tuple[str, str, Mapping[str, Any]]],
        on_progress: Callable[[int, int, AgentResult], None] | None = None,
        **options: Any,
    ) -> list[AgentResult]:
        """Run many ``(agent, task)`` or ``(agent, task, options)`` items concurrently.

        Results keep the input order. Concurrency is bounded by ``max_concurrent``; one item's
        failure (even a raised caller error such as an unknown agent) becomes that item's failed
        result and never cancels the others. ``on_progress(done, total, result)`` runs after each
        item (its exceptions are logged, not raised). ``options`` apply to every item; an item's
        own options override them.
        """
        items = list(tasks)
        total = len(items)
        results: list[AgentResult | None] = [None] * total
        queue = iter(enumerate(items))
        done = 0

        async def worker() -> None:
            # A fixed pool of workers rather than one task per item keeps memory flat for
            # 100,000-item lists; the semaphore still bounds requests in flight.
            nonlocal done
            for index, item in queue:
                result = await self._one_item(item, options)
                results[index] = result
                done += 1
                if on_progress is not None:
                    try:
                        on_progress(done, total, result)
                    except Exception as exc:
                        self._log.warning("on_progress callback failed: %s", type(exc).__name__)

        workers = min(total, 2 * self._max_concurrent)
        await asyncio.gather(*(worker() for _ in range(workers)))
        return [r for r in results if r is not None]

    async def _one_item(self, item: tuple[Any, ...], options: Mapping[str, Any]) -> AgentResult:
        name = str(item[0]) if item else "?"
        try:
            if len(item) not in (2, 3):
                raise ConfigurationError(
                    "Each task must be (agent_name, task) or (agent_name, task, options)."
                )
            merged = dict(options)
            if len(item) == 3:
                if not isinstance(item[2], Mapping):
                    raise ConfigurationError("A task's third element must be a dict of options.")
                merged.update(item[2])
            return await self.execute_agent(item[0], item[1], **merged)
        except ClaudeForceError as exc:
            return AgentResult.failure(name, exc)
        except Exception as exc:  # a bug must not take the other items down
            wrapped = ClaudeForceError(f"Unexpected {type(exc).__name__}: {exc}")
            return AgentResult.failure(name, wrapped)

    async def run_workflow(self, name: str, task: str, **options: Any) -> list[AgentResult]:
        """Run the agents of workflow ``name`` in order; each gets ``task`` plus the previous
        agent's output wrapped as untrusted data (``"<agent>-output"``), screened under the
        injection policy like any untrusted value. Stops at the first failed step (its result
        is the last in the list); a previous output refused by the screen (``block``) is such
        a failed step (``error`` is the :class:`PromptInjectionError`). Raises
        :class:`UnknownAgentError` for an unknown workflow and the same caller errors as
        :meth:`execute_agent` (for the first step)."""
        agents = self.registry.workflow(name)
        results: list[AgentResult] = []
        previous: AgentResult | None = None
        for agent_name in agents:
            step = workflow_step_options(options, previous)
            try:
                previous = await self.execute_agent(agent_name, task, **step)
            except PromptInjectionError as exc:
                if previous is None:  # the caller's own task or data: a caller error
                    raise
                # the previous agent's output was refused as data: keep the earlier results
                previous = AgentResult.failure(agent_name, exc)
            results.append(previous)
            if not previous.success:
                break
        return results

    # -- Message Batches (engine/batch.py) ------------------------------------------------------

    async def submit_batch(
        self,
        items: Iterable[Any],
        *,
        limits: BatchLimits | None = None,
        **options: Any,
    ) -> BatchJob:
        """Send many calls as Message Batches (half the price; results within 24 hours).

        ``items`` are ``(agent, task)`` or ``(agent, task, options)`` pairs, or dicts with
        ``agent``, ``task``, optionally ``custom_id`` (1-64 letters, digits, ``_``, ``-``;
        default ``item-N``) and call options; ``options`` apply to every item. Each item is
        checked, screened and looked up in the response cache like a live call: cached items
        are answered from the cache and not sent; the rest are split into batches within
        ``limits`` (default: the API's 100,000 requests and 256 MB) and their worst case is
        reserved against the budget at the batch rate. The job is registered in the cache
        directory (``batches/``), so :meth:`batch` re-attaches to it after a restart.

        Raises before anything is sent: the caller errors of :meth:`execute_agent` (naming
        the item), :class:`ConfigurationError` for malformed items or duplicate custom ids,
        :class:`BudgetExceededError`; :class:`APIError` subclasses if the first batch cannot
        be created (if a later one cannot, its items end as failed results, not sent).
        """
        from .batch import submit

        return await submit(self._batch_context(), items, options, limits)

    async def batch(self, job_id: str) -> BatchJob:
        """Re-attach to a job submitted earlier (this process or another) by its job id or
        one of its API batch ids. Raises :class:`~..errors.BatchJobNotFoundError` and
        :class:`~..errors.IntegrityError` (a registry file that fails its signature)."""
        from .batch import attach

        return await attach(self._batch_context(), job_id)

    def batch_jobs(self) -> list[dict[str, Any]]:
        """The registered batch jobs, newest first, as last seen (no request is sent): id,
        created, items, status, counts, estimated and settled cost."""
        from .batch import job_rows

        return job_rows(self._batch_context())

    def _batch_context(self) -> BatchContext:
        if self._closed:
            raise ConfigurationError("This orchestrator is closed; create a new one.")
        from .batch import BatchContext

        return BatchContext(
            prepare=lambda agent, task, options: self._prepare(agent, task, options),
            agents=lambda: self.registry,
            pipeline=self._pipeline,
            ledger=self._ledger,
            client=self._client,
            retry=self._retry,
            registry=self._batch_registry,
            log=self._log,
        )

    def _batch_registry(self) -> BatchRegistry:
        """The job registry: ``batches/`` in the cache directory (the configured one when the
        cache is off or another store is used)."""
        from ..settings import cache_dir
        from .batch_registry import BatchRegistry

        cache = self.cache
        if cache is not None:
            base = cache.directory
        else:
            base = Path(self._cache_dir) if self._cache_dir is not None else cache_dir()
        return BatchRegistry(base / "batches")


def workflow_step_options(
    options: Mapping[str, Any], previous: AgentResult | None
) -> dict[str, Any]:
    """The options of one workflow step: ``options`` plus the previous step's output (if any)
    as the untrusted-data block ``"<agent>-output"``. Shared by :meth:`run_workflow` and the
    notebook's ``%%agent --workflow`` so both chain steps the same way."""
    step = dict(options)
    if previous is not None:
        untrusted = dict(step.get("untrusted") or {})
        untrusted[f"{previous.agent_name}-output"] = previous.output
        step["untrusted"] = untrusted
    return step
