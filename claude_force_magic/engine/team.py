"""The one switch for a team: cache, budget and rate limits in Redis, with a local fallback.

``AsyncAgentOrchestrator(redis_url=..., namespace=...)`` (or ``$CLAUDE_FORCE_MAGIC_REDIS_URL``)
builds one :class:`Team` and wraps the orchestrator's own pieces with it:

- :class:`TeamBudget` (a :class:`~.budget.Budget`): the limit is checked against the team's
  spend in Redis (:class:`~.team_budget.RedisBudget`); the kernel's own signed ledger still
  records every charge it made (its own record, shown beside the team's);
- :class:`TeamLimiter` (an :class:`~.gate.AttemptLimiter`): the team's shared buckets
  (:class:`~.team_limits.RedisRateLimiter`);
- :class:`TeamStore` (a :class:`~.store.ResponseStore`): the team's signed Redis cache.

This module is the only place that knows Redis can go away. :class:`TeamLink` watches the
connection: the first failure marks Redis down and warns once (:class:`TeamWarning`, and the
log); from then on every piece uses the kernel's local cache, budget and limits without
waiting on the network, and one probe (``PING``) at most every ``probe_seconds`` checks whether
Redis is back. When it is, what was settled during the outage is replayed into Redis first
(each settle is idempotent per reservation id, so a reservation made in Redis before it died is
charged once, locally at once and in Redis on return, never twice), then the team's state is
used again.

During an outage the budget refuses a call when the team spend last seen in Redis plus what
this kernel spent and reserved since would pass the limit; the rate limits are the configured
per-minute limits again, for this kernel alone (the server's ``retry-after`` still paces it).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BudgetExceededError, RedisUnavailableError, TeamUnavailableError
from ..pricing import format_usd
from .budget import Budget, Reservation
from .limits import RateLimiter, Ticket
from .team_budget import RedisBudget, new_reservation_id
from .team_limits import RedisRateLimiter, TeamTicket

if TYPE_CHECKING:
    import logging

    import redis

    from .account import SpendAccount
    from .client import RateLimitInfo
    from .store import ResponseStore

__all__ = [
    "Team",
    "TeamBudget",
    "TeamDown",
    "TeamLimiter",
    "TeamLink",
    "TeamReservation",
    "TeamStore",
    "TeamWarning",
]

T = TypeVar("T")


class TeamWarning(UserWarning):
    """Redis went away (or came back): the kernel works on its local state meanwhile."""


class TeamDown(Exception):
    """Redis cannot be used right now (internal: every caller falls back to local state)."""


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis is not reachable or not usable now"."""
    import redis.exceptions as rex

    return (
        RedisUnavailableError,
        rex.ConnectionError,
        rex.TimeoutError,
        rex.ReadOnlyError,
        rex.BusyLoadingError,
        rex.NoPermissionError,
        OSError,
    )


class TeamLink:
    """One connection to the team's Redis and whether it is usable.

    :meth:`call` runs a Redis operation or raises :class:`TeamDown` at once while Redis is
    marked down (no network wait); every ``probe_seconds`` one caller probes it. Warns once per
    outage. ``on_return`` hooks run when Redis is back, before the call that found it back.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        probe_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        from ..guard import get_logger
        from ..redis_link import RedisKeys, check_namespace, connect, parse_redis_url

        self.target = parse_redis_url(url)  # ConfigurationError for a bad URL
        self.namespace = check_namespace(namespace)
        self.keys = RedisKeys(self.namespace)
        self.probe_seconds = probe_seconds
        self.client: redis.Redis = connect(self.target, ping=False)  # fails fast, no retries
        self._errors = _unavailable_errors()
        self._clock = clock
        self._log = log or get_logger(__name__)
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._hooks: list[Callable[[], None]] = []
        self.outages = 0

    @property
    def where(self) -> str:
        """The server and namespace, without credentials."""
        return f"{self.target.display} (namespace {self.namespace!r})"

    @property
    def up(self) -> bool:
        """False from a failure until Redis answers again."""
        return self._down_since is None

    def on_return(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` when Redis answers again after an outage (it may call :meth:`call`)."""
        self._hooks.append(hook)

    def call(self, fn: Callable[[], T], *, probe_now: bool = False) -> T:
        """``fn()`` (one Redis operation), or :class:`TeamDown` when Redis cannot be used
        (``probe_now``: check it now rather than at the next probe time)."""
        if probe_now:
            self._next_probe = 0.0
        if not self.up and not self._probe():
            raise TeamDown(self.where)
        try:
            return fn()
        except self._errors as exc:
            self._mark_down(exc)
            raise TeamDown(self.where) from exc

    def _probe(self) -> bool:
        with self._lock:
            if self.up:
                return True
            if self._clock() < self._next_probe:
                return False
            self._next_probe = self._clock() + self.probe_seconds  # one prober per period
        for _ in range(2):  # a pooled connection the server dropped fails the first one
            try:
                self.client.ping()
                break
            except self._errors:
                continue
        else:
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = self._clock()
            self._next_probe = self._down_since + self.probe_seconds
            self.outages += 1
        message = (
            f"The team's Redis at {self.where} cannot be reached ({type(exc).__name__}); "
            "cells go on with this kernel's own cache, budget and rate limits, and the team's "
            f"are used again when it answers (checked every {self.probe_seconds:g} s)."
        )
        self._log.warning("%s", message)
        warnings.warn(message, TeamWarning, stacklevel=4)

    def _mark_up(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            lasted = self._clock() - self._down_since
            self._down_since = None
        self._log.warning(
            "The team's Redis at %s answers again after %.0f s; the team's cache, budget and "
            "rate limits are used again.",
            self.where,
            lasted,
        )
        for hook in list(self._hooks):
            try:
                hook()
            except Exception as exc:  # a hook that fails must not fail the call that probed
                self._log.warning("replaying into Redis failed: %s", type(exc).__name__)

    def close(self) -> None:
        """Close the connections."""
        with contextlib.suppress(Exception):
            self.client.close()


# ---------------------------------------------------------------------------------- budget


@dataclass
class TeamReservation(Reservation):
    """A reservation in the team's budget (``remote``) or, during an outage, in this kernel."""

    id: str = ""
    remote: bool = False


class TeamBudget(Budget):
    """The team's spend against this kernel's limit, with the kernel's own record beside it.

    ``local`` is the kernel's budget: its limit is the limit (``set_limit`` changes it) and its
    (signed, persistent) account records every charge this kernel made (:attr:`own_spent`).
    :attr:`spent`, :attr:`reserved` and :attr:`remaining` are the team's. See the module
    docstring for what happens while Redis is down.
    """

    __slots__ = (
        "_link",
        "_local",
        "_outage_reserved",
        "_outage_spent",
        "_pending",
        "_remote",
        "_team",
        "_tlock",
    )

    def __init__(self, local: Budget, remote: RedisBudget, link: TeamLink) -> None:
        super().__init__(None)
        self._local = local
        self._remote = remote
        self._link = link
        self._tlock = threading.Lock()
        self._team = (0.0, 0.0)  # team (spent, reserved) last seen in Redis
        self._outage_spent = 0.0  # charged here and not yet in Redis
        self._outage_reserved = 0.0  # reserved here while Redis was down
        self._pending: list[tuple[str, float | None]] = []  # settles to replay into Redis
        link.on_return(self._replay)

    @property
    def local(self) -> Budget:
        """The kernel's own budget (its limit and its signed record)."""
        return self._local

    @property
    def account(self) -> SpendAccount | None:
        return self._local.account

    @property
    def window(self) -> str:
        """The local account's window; ``total`` for a budget kept in memory (whose own
        ``session`` window would make the cap per kernel, not per team)."""
        return self._local.window if self._local.account is not None else "total"

    @property
    def limit(self) -> float | None:
        return self._local.limit

    def set_limit(self, limit_usd: float | None) -> None:
        self._local.set_limit(limit_usd)

    @property
    def own_spent(self) -> float:
        """USD this kernel spent in the window (its own signed record)."""
        return self._local.spent

    def _figures(self) -> tuple[float, float]:
        try:
            spent, reserved, _ = self._link.call(lambda: self._remote.figures(window=self.window))
        except TeamDown:
            with self._tlock:
                return (
                    self._team[0] + self._outage_spent,
                    self._team[1] + self._outage_reserved,
                )
        with self._tlock:
            self._team = (spent, reserved)
            return spent + self._outage_spent, reserved + self._outage_reserved

    @property
    def spent(self) -> float:
        """USD the team spent in the window (during an outage: as last seen plus this
        kernel's charges since)."""
        return self._figures()[0]

    @property
    def reserved(self) -> float:
        """USD the team holds for calls in flight."""
        return self._figures()[1]

    @property
    def remaining(self) -> float | None:
        limit = self.limit
        if limit is None:
            return None
        spent, reserved = self._figures()
        return max(0.0, limit - spent - reserved)

    @property
    def pending(self) -> int:
        """Charges made during an outage and not yet written to Redis."""
        with self._tlock:
            return len(self._pending)

    def reset(self) -> None:
        """Start the team's spend over (and this kernel's record). Raises
        :class:`TeamUnavailableError` when Redis cannot be reached (nothing is reset)."""
        try:
            self._link.call(lambda: self._remote.reset(window=self.window))
        except TeamDown as exc:
            raise TeamUnavailableError(
                f"The team's spend could not be reset: its Redis at {self._link.where} cannot "
                "be reached. Try again when it is back; nothing was reset."
            ) from exc
        with self._tlock:
            self._team = (0.0, self._team[1])
            self._outage_spent = 0.0
            self._pending.clear()
        self._local.reset()

    def reserve(self, estimate: float | None, *, model: str) -> Reservation:
        """Hold ``estimate`` USD in the team's budget (see :meth:`Budget.reserve`)."""
        limit = self.limit
        if estimate is None:
            return self._local.reserve(None, model=model)  # PricingError under a limit
        rid = new_reservation_id()
        try:
            outcome = self._link.call(
                lambda: self._remote.reserve(rid, estimate, limit, window=self.window)
            )
        except TeamDown:
            return self._reserve_during_outage(rid, estimate, limit)
        with self._tlock:
            self._team = (outcome.spent, outcome.reserved)
        if not outcome.granted:
            self._refuse(estimate, outcome.spent + outcome.reserved, limit)
        return TeamReservation(estimate, id=rid, remote=True)

    def _refuse(self, estimate: float, held: float, limit: float | None) -> None:
        raise BudgetExceededError(
            f"This call could cost up to {format_usd(estimate)}; with {format_usd(held)} spent "
            f"or reserved by the team of the {format_usd(limit or 0.0)} budget it was not "
            "sent. Raise the budget (set_budget / budget_usd; every member checks its own), "
            "lower max_tokens, or use the cache.",
            spent=held,
            budget=limit or 0.0,
            estimate=estimate,
        )

    def _reserve_during_outage(
        self, rid: str, estimate: float, limit: float | None
    ) -> TeamReservation:
        with self._tlock:
            held = sum(self._team) + self._outage_spent + self._outage_reserved
            if limit is not None and held + estimate > limit:
                self._refuse(estimate, held, limit)
            self._outage_reserved += estimate
        return TeamReservation(estimate, id=rid, remote=False)

    def settle(self, reservation: Reservation, actual: float | None) -> None:
        """Charge ``actual`` once: in this kernel's record at once, in the team's Redis now
        or, if it is down, when it returns."""
        first = not reservation.done
        reservation.done = True
        self._local.settle(Reservation(0.0, done=True), actual)
        held = first and isinstance(reservation, TeamReservation)
        if isinstance(reservation, TeamReservation) and held and not reservation.remote:
            with self._tlock:
                self._outage_reserved = max(0.0, self._outage_reserved - reservation.amount)
        if isinstance(reservation, TeamReservation) and held:
            self._settle_remote(reservation.id, actual, reservation.amount * reservation.remote)
        elif actual is not None and actual > 0:  # nothing held in Redis: charge it alone
            self._settle_remote(new_reservation_id(), actual)

    def _settle_remote(self, rid: str, actual: float | None, held: float = 0.0) -> None:
        """Settle ``rid`` in Redis, or queue it for when Redis returns; ``held`` is what the
        reservation holds there (no longer counted as reserved while it waits)."""
        usd = actual if actual is not None and math.isfinite(actual) and actual > 0 else 0.0
        with self._tlock:
            queued = bool(self._pending)
        if not queued:
            try:
                spent = self._link.call(lambda: self._remote.settle(rid, usd, window=self.window))
            except TeamDown:
                pass
            else:
                with self._tlock:
                    self._team = (spent, self._team[1])
                return
        with self._tlock:
            self._pending.append((rid, usd))
            self._outage_spent += usd
            self._team = (self._team[0], max(0.0, self._team[1] - held))

    def _replay(self) -> None:
        """Write the charges made during the outage into Redis (idempotent per id)."""
        while True:
            with self._tlock:
                if not self._pending:
                    return
                rid, usd = self._pending[0]
            try:
                self._link.call(partial(self._remote.settle, rid, usd, window=self.window))
            except TeamDown:
                return
            with self._tlock:
                if self._pending and self._pending[0][0] == rid:
                    self._pending.pop(0)
                    self._outage_spent = max(0.0, self._outage_spent - (usd or 0.0))

    def release(self, reservation: Reservation) -> None:
        self.settle(reservation, None)


# ---------------------------------------------------------------------------------- limits


class TeamLimiter:
    """The team's shared rate limits, or this kernel's own while Redis is down.

    Satisfies :class:`~.gate.AttemptLimiter`. What the server says (limits, ``retry-after``)
    is told to both, so the local limiter is ready when it is needed.
    """

    __slots__ = ("_link", "local", "remote")

    def __init__(self, remote: RedisRateLimiter, local: RateLimiter, link: TeamLink) -> None:
        self.remote = remote
        self.local = local
        self._link = link

    def check_admissible(self, output_tokens: int) -> None:
        self.remote.check_admissible(output_tokens)
        self.local.check_admissible(output_tokens)

    async def acquire(
        self, input_tokens: float = 0, output_tokens: float = 0, *, deadline: float | None = None
    ) -> Ticket:
        with contextlib.suppress(TeamDown):  # raised at once while Redis is marked down
            return await self.remote.acquire(input_tokens, output_tokens, deadline=deadline)
        return await self.local.acquire(input_tokens, output_tokens, deadline=deadline)

    def settle(self, ticket: Ticket, *, output_tokens: int | None) -> None:
        if isinstance(ticket, TeamTicket):
            with contextlib.suppress(TeamDown):
                self.remote.settle(ticket, output_tokens=output_tokens)
        else:
            self.local.settle(ticket, output_tokens=output_tokens)

    def observe(self, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        if isinstance(ticket, TeamTicket):
            with contextlib.suppress(TeamDown):
                self.remote.observe(info, ticket)
            self.local.observe(info, None)
        else:
            self.local.observe(info, ticket)
            with contextlib.suppress(TeamDown):
                self.remote.observe(info, None)

    def pause(self, seconds: float) -> None:
        self.local.pause(seconds)
        with contextlib.suppress(TeamDown):
            self.remote.pause(seconds)

    def snapshot(self) -> dict[str, Any]:
        """The team's buckets (``team: True``), or this kernel's while Redis is down."""
        with contextlib.suppress(TeamDown):
            return {**self.remote.snapshot(), "team": True}
        return {**self.local.snapshot(), "team": False}


# ---------------------------------------------------------------------------------- cache


class TeamStore:
    """The team's Redis cache, or this kernel's own while Redis is down.

    Satisfies :class:`~.store.ResponseStore`. Both stores are opened on first use (``remote``
    and ``local`` are factories); an answer bought during an outage is stored locally."""

    def __init__(
        self,
        remote: Callable[[], ResponseStore],
        local: Callable[[], ResponseStore | None],
        link: TeamLink,
    ) -> None:
        self._remote_factory = remote
        self._local_factory = local
        self._link = link
        self._remote: ResponseStore | None = None
        self._local: ResponseStore | None = None
        self._lock = threading.Lock()

    @property
    def remote(self) -> ResponseStore:
        """The team's Redis cache (opened on first use)."""
        with self._lock:
            if self._remote is None:
                self._remote = self._remote_factory()
            return self._remote

    @property
    def local(self) -> ResponseStore | None:
        """This kernel's own cache (opened on first use; None if it cannot be opened)."""
        with self._lock:
            if self._local is None:
                self._local = self._local_factory()
            return self._local

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> dict[str, Any] | None:
        with contextlib.suppress(TeamDown):
            return self._link.call(lambda: self.remote.get(agent_name, task, model, **request))
        local = self.local
        return None if local is None else local.get(agent_name, task, model, **request)

    def set(self, agent_name: str, task: str, model: str, *args: Any, **kwargs: Any) -> bool:
        with contextlib.suppress(TeamDown):
            return self._link.call(
                lambda: self.remote.set(agent_name, task, model, *args, **kwargs)
            )
        local = self.local
        return False if local is None else local.set(agent_name, task, model, *args, **kwargs)

    def close(self) -> None:
        for store in (self._remote, self._local):
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()


# ---------------------------------------------------------------------------------- facade


class Team:
    """The team's Redis for one orchestrator: wraps its budget, limiter and store."""

    def __init__(
        self,
        url: str,
        namespace: str | None = None,
        *,
        probe_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from ..redis_link import DEFAULT_NAMESPACE

        self.link = TeamLink(
            url, namespace or DEFAULT_NAMESPACE, probe_seconds=probe_seconds, clock=clock
        )
        self.team_budget: TeamBudget | None = None
        self.team_limiter: TeamLimiter | None = None
        self.team_store: TeamStore | None = None

    @property
    def client(self) -> redis.Redis:
        """The ``redis.Redis`` client."""
        return self.link.client

    def budget(self, local: Budget) -> TeamBudget:
        """``local`` wrapped: the limit checked against the team's spend."""
        self.team_budget = TeamBudget(
            local, RedisBudget(self.client, self.link.keys.name("budget", "")), self.link
        )
        return self.team_budget

    def limiter(self, local: RateLimiter, rates: tuple[float | None, ...]) -> TeamLimiter:
        """The team's buckets at ``rates`` (requests, input, output per minute); ``local``
        while Redis is down."""
        key = self.link.keys.name("limits", "state")
        remote = RedisRateLimiter(self.client, key, *rates, run=self.link.call)
        self.team_limiter = TeamLimiter(remote, local, self.link)
        return self.team_limiter

    def store(
        self, remote: Callable[[], ResponseStore], local: Callable[[], ResponseStore | None]
    ) -> TeamStore:
        """The team's cache (``remote``), ``local`` while Redis is down."""
        self.team_store = TeamStore(remote, local, self.link)
        return self.team_store

    def figures(self) -> dict[str, Any]:
        """What the dashboard shows: the connection, the team's spend beside this kernel's,
        the shared cache's counters and the limiter's buckets (each read once; while Redis is
        down, what is known locally)."""
        out: dict[str, Any] = {"redis": self.link.where}
        if self.team_budget is not None:
            budget = self.team_budget
            out.update(
                team_spent_usd=budget.spent,
                team_reserved_usd=budget.reserved,
                own_spent_usd=budget.own_spent,
                pending_charges=budget.pending,
            )
        if self.team_store is not None:
            out.update(self._cache_figures(self.team_store))
        if self.team_limiter is not None:
            out["limits"] = self.team_limiter.snapshot()
        out["connected"] = self.link.up
        return out

    def _cache_figures(self, store: TeamStore) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            remote: Any = store.remote
            return dict(remote.get_stats())

        try:
            stats = self.link.call(read)
        except TeamDown:
            return {}
        return {
            "team_cache_hits": stats.get("hits"),
            "team_cache_misses": stats.get("misses"),
            "team_cache_entries": stats.get("entries"),
        }

    def close(self) -> None:
        """Write charges still waiting for Redis if it answers now, then close the connection
        (the stores are closed by their owner)."""
        if self.team_budget is not None and self.team_budget.pending:
            with contextlib.suppress(TeamDown):
                self.link.call(self.client.ping, probe_now=True)  # replays on the way back
        self.link.close()
