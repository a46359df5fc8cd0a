"""Message Batches: many agent calls at half the price, collected once, surviving restarts.

:meth:`~.orchestrator.AsyncAgentOrchestrator.submit_batch` runs every item through the same
pieces as a live call, up to the send: the request builder (task checks, injection screen,
request parameters, cache identity), the response-cache lookup and the budget reservation
(each batch's worst case at the batch rate, 50 %). Items answered by the cache are not sent.
The rest go out as Message Batches of at most :attr:`BatchLimits.max_requests` requests and
:attr:`BatchLimits.max_bytes` bytes each (100,000 and 256 MB: the API's limits), split
transparently; one :class:`BatchJob` tracks them all.

Collecting a batch (:meth:`BatchJob.iter_results`, :meth:`BatchJob.results`) streams the
results JSONL through the SDK's decoder line by line; each line is validated like a live
answer (:func:`~.response.check_message`), priced at 50 %, written to a private spool file,
and its answer stored in the response cache, so a later interactive call with the same task
is a hit. When the whole file was read, the results are recorded in the metrics (call mode
``batch``), the batch is marked collected in the job registry (:mod:`.batch_registry`) and the
budget is settled with what it cost, in that order: a batch is charged at most once, whichever
process collects it; one collected before (after a kernel restart, by another kernel) is read
again for its results without being charged, recorded or stored again. Results are yielded in
item order from the spool, so a 100,000-item job never holds its answers in memory at once.

Errors: caller mistakes raise before anything is sent (as for a live call, the item's index
and custom id are named in the message); an item that errored, expired or was canceled is a
failed result whose ``error`` is a :class:`~..errors.BatchItemError` (not billed; resubmit
with :meth:`BatchJob.retry_failed`). Failures of the Batches API itself (create, poll,
results) raise the usual :class:`~..errors.APIError` subclasses after the orchestrator's
retries.
"""

from __future__ import annotations

import array
import asyncio
import functools
import json
import logging
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar

from ..errors import (
    APIError,
    BatchItemError,
    CacheError,
    ClaudeForceError,
    ConfigurationError,
    OverloadedError,
    RateLimitError,
    ResponseError,
    UnknownAgentError,
)
from .budget import Reservation
from .client import map_api_error
from .request import OPTION_NAMES, CallOptions, PreparedCall
from .response import Answer, check_message
from .result import AgentResult
from .retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    import pandas as pd

    from ..agents import AgentDefinition, AgentRegistry
    from .batch_registry import BatchRegistry
    from .client import ClientHandle
    from .ledger import Ledger
    from .pipeline import CallPipeline

__all__ = [
    "CACHED",
    "BatchContext",
    "BatchJob",
    "BatchLimits",
    "BatchStatus",
    "attach",
    "submit",
]

_T = TypeVar("_T")

#: Where an item went: an index into the job's batches, or one of these.
CACHED = -1
NOT_SENT = -2
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: JSON around each request in the create body ({"custom_id":..,"params":..}, commas).
_ITEM_OVERHEAD = 2
_BODY_OVERHEAD = len('{"requests":[]}')
#: Items looked up in, or stored into, the response cache per hop to its thread.
_STORE_CHUNK = 256
DEFAULT_POLL_SECONDS = 5.0
MAX_POLL_SECONDS = 60.0
POLL_BACKOFF = 1.5
COUNT_NAMES = ("processing", "succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class BatchLimits:
    """How large one Message Batch may be: requests and bytes of the create body.

    The defaults are the API's limits. Raises :class:`ConfigurationError` for a value below 1.
    """

    max_requests: int = 100_000
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"BatchLimits.{name} must be an integer >= 1.")


@dataclass(frozen=True)
class BatchStatus:
    """Where a job stands: ``processing_status`` (``in_progress``, ``canceling`` or
    ``ended``) and ``counts`` per outcome: ``processing``, ``succeeded``, ``errored``,
    ``canceled``, ``expired`` (as the API counts its batches), plus ``cached`` (answered from
    the response cache, never sent) and ``not_sent`` (their batch could not be created)."""

    job_id: str
    processing_status: str
    counts: Mapping[str, int]
    total: int
    batch_ids: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        """True when every batch of the job has ended (results can be collected)."""
        return self.processing_status == "ended"

    @property
    def done(self) -> int:
        """Items no longer processing."""
        return self.total - self.counts.get("processing", 0)

    def __str__(self) -> str:
        shown = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        return f"{self.job_id}: {self.processing_status}, {self.done}/{self.total} done ({shown})"


@dataclass(frozen=True)
class BatchContext:
    """What a job needs from its orchestrator (built by it; see ``_batch_context``)."""

    prepare: Callable[[str, str, CallOptions], PreparedCall]
    agents: Callable[[], AgentRegistry]
    pipeline: CallPipeline
    ledger: Ledger
    client: ClientHandle
    retry: RetryPolicy
    registry: Callable[[], BatchRegistry]
    log: logging.Logger


# -- the Batches API through the SDK ---------------------------------------------------------


class _BatchAPI:
    """``client.messages.batches`` with our error mapping and the orchestrator's retries."""

    def __init__(self, ctx: BatchContext) -> None:
        self._ctx = ctx

    async def _call(self, name: str, *args: Any, refused_only: bool = False, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            try:
                method = getattr(self._ctx.client.get().messages.batches, name)
                return await method(*args, **kwargs)
            except ClaudeForceError:
                raise
            except Exception as exc:  # the one place SDK errors of the Batches API are mapped
                mapped = map_api_error(exc)
                if refused_only and not isinstance(mapped, (RateLimitError, OverloadedError)):
                    mapped.retryable = False
                raise mapped from exc

        return await call_with_retries(attempt, self._ctx.retry)

    async def create(self, requests: list[dict[str, Any]]) -> Any:
        """``POST /v1/messages/batches``: the new ``MessageBatch``. Retried only when the
        server refused it (429, 529): after a timeout or a dropped connection the batch may
        exist already, and a second one would be billed too."""
        return await self._call("create", requests=requests, refused_only=True)

    async def retrieve(self, batch_id: str) -> Any:
        """The ``MessageBatch`` as it stands."""
        return await self._call("retrieve", batch_id)

    async def cancel(self, batch_id: str) -> Any:
        """Start cancelling; the ``MessageBatch``."""
        return await self._call("cancel", batch_id)

    async def results(self, batch_id: str) -> Any:
        """The results decoder (an async iterator of result lines, read as they arrive)."""
        return await self._call("results", batch_id)


# -- items -----------------------------------------------------------------------------------


@dataclass
class _Item:
    """One item of a job: what was asked (for retries), its prepared call, where it went."""

    custom_id: str
    agent: str
    task: str
    options: dict[str, Any]
    call: PreparedCall
    batch: int = NOT_SENT


def _options_of(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(raw) - OPTION_NAMES)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: "
            f"{', '.join(sorted(OPTION_NAMES))}."
        )
    return dict(raw)


def _normalize(
    items: Iterable[Any], options: Mapping[str, Any]
) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """``(agent, task, options, custom_id)`` per item; :class:`ConfigurationError` naming the
    item for a malformed one."""
    out: list[tuple[str, str, dict[str, Any], str | None]] = []
    base = _options_of(options, "submit_batch")
    for i, item in enumerate(items):
        where = f"Batch item {i}"
        custom_id = None
        if isinstance(item, Mapping):
            rest = dict(item)
            if "agent" not in rest or "task" not in rest:
                raise ConfigurationError(f"{where}: a dict item needs 'agent' and 'task' keys.")
            agent, task = rest.pop("agent"), rest.pop("task")
            custom_id = rest.pop("custom_id", None)
            nested = rest.pop("options", None) or {}
            if not isinstance(nested, Mapping):
                raise ConfigurationError(f"{where}: 'options' must be a dict of call options.")
            own = {**_options_of(nested, where), **_options_of(rest, where)}
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            agent, task = item[0], item[1]
            own = {}
            if len(item) == 3:
                if not isinstance(item[2], Mapping):
                    raise ConfigurationError(f"{where}: the third element must be a dict.")
                own = _options_of(item[2], where)
        else:
            raise ConfigurationError(
                f"{where}: expected (agent, task), (agent, task, options) or a dict with "
                f"'agent', 'task' and optionally 'custom_id' and options; got "
                f"{type(item).__name__}."
            )
        if not isinstance(agent, str) or not isinstance(task, str):
            raise ConfigurationError(f"{where}: agent and task must be str.")
        if custom_id is not None and (
            not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id)
        ):
            raise ConfigurationError(
                f"{where}: custom_id must be 1-64 letters, digits, '_' or '-', got {custom_id!r}."
            )
        out.append((agent, task, {**base, **own}, custom_id))
    return out


def _custom_ids(given: list[str | None]) -> list[str]:
    """The given ids, with ``item-N`` for the others; :class:`ConfigurationError` if two
    items share one (the API requires unique ids within a batch, and so do we within a job)."""
    ids = [cid if cid is not None else f"item-{i}" for i, cid in enumerate(given)]
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in seen:
            raise ConfigurationError(
                f"Batch items {seen[cid]} and {i} share the custom_id {cid!r}; give every item "
                "its own (or none: item-N is used)."
            )
        seen[cid] = i
    return ids


def _prepare_all(
    ctx: BatchContext, normalized: list[tuple[str, str, dict[str, Any], str | None]]
) -> list[_Item]:
    ids = _custom_ids([n[3] for n in normalized])
    items: list[_Item] = []
    for i, (agent, task, opts, _) in enumerate(normalized):
        try:
            call = ctx.prepare(agent, task, CallOptions.from_kwargs(**opts))
        except ClaudeForceError as exc:
            # the caller's mistake, raised before anything is sent; say which item it was
            exc.args = (f"Batch item {i} ({ids[i]}): {exc.args[0] if exc.args else exc}",)
            raise
        items.append(_Item(ids[i], agent, task, opts, call))
    return items


def _request_size(item: _Item) -> int:
    body = {"custom_id": item.custom_id, "params": item.call.params}
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def _split(items: list[_Item], pending: list[int], limits: BatchLimits) -> list[list[int]]:
    """Group the pending item indices into batches within ``limits`` (in item order)."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = _BODY_OVERHEAD
    for i in pending:
        need = _request_size(items[i]) + _ITEM_OVERHEAD
        if need + _BODY_OVERHEAD > limits.max_bytes:
            raise ConfigurationError(
                f"Batch item {i} ({items[i].custom_id}) alone is {need:,} bytes, more than a "
                f"batch may hold ({limits.max_bytes:,}); shorten its task."
            )
        if current and (len(current) >= limits.max_requests or size + need > limits.max_bytes):
            groups.append(current)
            current, size = [], _BODY_OVERHEAD
        current.append(i)
        size += need
    if current:
        groups.append(current)
    return groups


def _item_record(item: _Item) -> dict[str, Any]:
    """What the registry keeps of an item: enough to settle, store and retry it later."""
    call = item.call
    record = {
        "custom_id": item.custom_id,
        "agent": item.agent,
        "task": item.task,
        "options": item.options,
        "batch": item.batch,
        "model": call.model,
        "max_tokens": call.max_tokens,
        "cache_task": call.cache_task,
        "cache_request": call.cache_request,
        "use_cache": call.use_cache,
        "ttl_hours": call.ttl_hours,
        "input_estimate": call.input_estimate,
        "warnings": call.warnings,
        "preview": call.preview,
        "origin": call.origin,
    }
    if call.cache_task == item.task:  # the usual case: the task is sent as it is; kept once
        del record["cache_task"]
    return record


def _placeholder_agent(name: str, definition_hash: str) -> AgentDefinition:
    from ..agents import AgentDefinition

    return AgentDefinition(
        name=name,
        description="",
        domains=(),
        priority=0,
        model=None,
        max_tokens=None,
        system_prompt="",
        source="batch registry",
        definition_hash=definition_hash,
    )


def _item_from_record(record: Mapping[str, Any], agents: AgentRegistry | None) -> _Item:
    """An item rebuilt from the registry (after a restart): the cache identity is the one
    it was sent with, even if the agent's file changed since."""
    cache_request = dict(record["cache_request"])
    agent: AgentDefinition | None = None
    if agents is not None:
        try:
            agent = agents.get(record["agent"])
        except UnknownAgentError:
            agent = None
    if agent is None:
        agent = _placeholder_agent(record["agent"], str(cache_request.get("definition_hash")))
    call = PreparedCall(
        agent=agent,
        model=record["model"],
        max_tokens=int(record["max_tokens"]),
        timeout=0.0,
        params={},
        cache_task=record.get("cache_task", record["task"]),
        cache_request=cache_request,
        use_cache=bool(record["use_cache"]),
        refresh=False,
        ttl_hours=record["ttl_hours"],
        input_estimate=int(record["input_estimate"]),
        warnings=list(record["warnings"]),
        preview=record["preview"],
        origin=record["origin"],
    )
    return _Item(
        record["custom_id"], record["agent"], record["task"], dict(record["options"]), call,
        int(record["batch"]),
    )  # fmt: skip


# -- cache lookups and stores on the store thread ---------------------------------------------
# The pipeline's own lookup and store (CallPipeline.lookup_many / store_many) are used, a chunk
# of items per hop to the store thread: one hop per item costs more than the lookup itself at
# 100,000.


def _store_usable(ctx: BatchContext) -> bool:
    return ctx.pipeline.store_usable()


async def _lookup_all(ctx: BatchContext, items: list[_Item]) -> dict[int, dict[str, Any]]:
    """Index -> cache entry for every item the response cache answers."""
    found: dict[int, dict[str, Any]] = {}
    if not _store_usable(ctx):
        return found
    wanted = [i for i, it in enumerate(items) if it.call.use_cache and not it.call.refresh]
    for start in range(0, len(wanted), _STORE_CHUNK):
        chunk = wanted[start : start + _STORE_CHUNK]
        try:
            entries = await ctx.pipeline.lookup_many([items[i].call for i in chunk])
        except CacheError as exc:
            ctx.log.warning("cache lookup failed; the items are sent: %s", exc)
            return found
        found.update((i, e) for i, e in zip(chunk, entries, strict=True) if e is not None)
    return found


async def _store_answers(
    ctx: BatchContext, pending: list[tuple[PreparedCall, Answer, Any]]
) -> None:
    if not pending or not _store_usable(ctx):
        return
    try:
        await ctx.pipeline.store_many(pending)
    except CacheError as exc:
        ctx.log.warning("storing batch answers in the cache failed: %s", exc)


# -- results: outcome of one JSONL line, and the spool ------------------------------------------


def _outcome(line: Any, call: PreparedCall) -> tuple[str, Answer | APIError]:
    """The result type of one results line and the checked answer or the item's error."""
    result = getattr(line, "result", None)
    kind = str(getattr(result, "type", "unknown"))
    if kind == "succeeded":
        message = getattr(result, "message", None)
        msg_id = getattr(message, "id", None)
        try:
            return kind, check_message(message, max_tokens=call.max_tokens, request_id=msg_id)
        except ResponseError as exc:
            return kind, exc
    if kind == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        etype = getattr(error, "type", None)
        text = str(getattr(error, "message", "") or "")[:300]
        fix = (
            "fix the request; resubmitting it unchanged fails again"
            if etype == "invalid_request_error"
            else "resubmit it with job.retry_failed()"
        )
        return kind, BatchItemError(
            f"The batch item errored ({etype}: {text}); {fix}.",
            result_type=kind,
            error_type=etype if isinstance(etype, str) else None,
        )
    words = {
        "expired": "expired before it was processed (batches have 24 hours)",
        "canceled": "was canceled before it was processed",
    }.get(kind, f"ended with an unknown result type {kind!r}")
    return kind, BatchItemError(
        f"The batch item {words}; it was not billed. Resubmit it with job.retry_failed().",
        result_type=kind,
    )


def _encode(result: AgentResult) -> bytes:
    error = result.error
    err = None
    if error is not None:
        err = {
            "cls": type(error).__name__,
            "message": str(error),
            "result_type": getattr(error, "result_type", None),
            "error_type": getattr(error, "error_type", None),
            "stop_reason": getattr(error, "stop_reason", None),
        }
    data = {"r": result.to_dict(), "e": err}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _decode(raw: bytes) -> AgentResult:
    data = json.loads(raw)
    r, err = data["r"], data["e"]
    error: ClaudeForceError | None = None
    if err is not None:
        if err["cls"] == "BatchItemError":
            error = BatchItemError(
                err["message"], result_type=err["result_type"], error_type=err["error_type"]
            )
        elif err["cls"] == "ResponseError":
            error = ResponseError(err["message"], stop_reason=err["stop_reason"])
        else:
            error = APIError(err["message"])
    return AgentResult(
        r["agent_name"], r["success"], r["output"], list(r["errors"]), r["metadata"], error
    )


class _Spool:
    """A batch's results on disk (an anonymous, private temporary file), readable in item
    order whatever order the JSONL came in: an offset per item, never the answers in memory."""

    def __init__(self, size: int) -> None:
        # kept open for the job's life (closed by close()): not a with-block
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="cfm-batch-")  # noqa: SIM115
        self._offsets = array.array("q", [-1]) * size
        self._lengths = array.array("l", [0]) * size

    def put(self, index: int, result: AgentResult) -> None:
        data = _encode(result)
        self._file.seek(0, 2)
        self._offsets[index] = self._file.tell()
        self._lengths[index] = len(data)
        self._file.write(data)

    def has(self, index: int) -> bool:
        return self._offsets[index] >= 0

    def get(self, index: int) -> AgentResult:
        self._file.seek(self._offsets[index])
        return _decode(self._file.read(self._lengths[index]))

    def close(self) -> None:
        self._file.close()


def _failed_item(item: _Item, result_type: str, why: str) -> AgentResult:
    """The failed result of an item that has no answer (``why`` says so), to resubmit."""
    error = BatchItemError(f"{why} Resubmit it with job.retry_failed().", result_type=result_type)
    return AgentResult.failure(item.call.agent.name, error)


def _missing(item: _Item, batch_id: str) -> AgentResult:
    return _failed_item(
        item,
        "missing",
        f"The results of batch {batch_id} have no line for {item.custom_id}; it was not billed.",
    )


def _not_sent(item: _Item, reason: str) -> AgentResult:
    return _failed_item(
        item,
        "not_sent",
        f"This item's batch could not be created ({reason}); nothing was sent or billed.",
    )


def _seconds_between(start: Any, end: Any) -> float:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds())
    return 0.0


# -- the job ------------------------------------------------------------------------------------


@dataclass
class _BatchState:
    """One API batch of a job, as the registry header records it."""

    id: str | None
    count: int
    reserved_usd: float
    estimated_usd: float | None = None
    processing_status: str = "in_progress"
    counts: dict[str, int] = field(default_factory=dict)
    collected: bool = False
    settled_usd: float | None = None
    error: str | None = None
    turnaround_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BatchJob:
    """Message Batches submitted together: status, waiting, results, cancel, retries.

    ``id`` is the job's id (``job_...``: give it to ``orch.batch(id)`` to re-attach after a
    restart); ``ids`` are the API's batch ids (``msgbatch_...``), one per batch the items were
    split into. Methods are coroutines on the orchestrator's loop except :meth:`to_frame`.
    Results are collected once per batch (see the module docstring), also when several
    :class:`BatchJob` objects (or processes) share the job.
    """

    def __init__(
        self,
        ctx: BatchContext,
        job_id: str,
        header: dict[str, Any],
        items: list[_Item],
        reservations: dict[int, Reservation],
        cached: dict[int, AgentResult],
    ) -> None:
        self._ctx = ctx
        self._api = _BatchAPI(ctx)
        self.id = job_id
        self._header = header
        self._batches = [_BatchState(**b) for b in header["batches"]]
        self._items = items
        self._reservations = reservations
        self._cached = cached
        self._spools: dict[int, _Spool] = {}
        self._lock = asyncio.Lock()  # bound lazily to the loop that first collects

    def __repr__(self) -> str:
        return (
            f"BatchJob(id={self.id!r}, items={len(self._items)}, batches={len(self._batches)}, "
            f"cached={len(self._cached) or self._count_where(CACHED)})"
        )

    def __del__(self) -> None:
        for spool in getattr(self, "_spools", {}).values():
            spool.close()

    @property
    def ids(self) -> list[str]:
        """The API batch ids of this job (``msgbatch_...``), in item order."""
        return [b.id for b in self._batches if b.id is not None]

    @property
    def total(self) -> int:
        """How many items the job has (cached ones included)."""
        return len(self._items)

    @property
    def cached_count(self) -> int:
        """How many items were answered from the response cache (never sent)."""
        return self._count_where(CACHED)

    @property
    def custom_ids(self) -> list[str]:
        """Every item's custom id, in item order."""
        return [item.custom_id for item in self._items]

    @property
    def estimated_usd(self) -> float | None:
        """The worst case of the job's sent items at 50 % in USD (None: a price unknown)."""
        return _sum_estimates(self._batches)

    @property
    def settled_usd(self) -> float | None:
        """What the collected batches cost (None until one is collected)."""
        done = [b.settled_usd for b in self._batches if b.collected and b.settled_usd is not None]
        return float(sum(done)) if done else None

    def _count_where(self, batch: int) -> int:
        return sum(1 for item in self._items if item.batch == batch)

    # -- status, waiting, cancelling --------------------------------------------------------

    def _save_header(self, *, locked: bool = False) -> None:
        """Write the header, merged with the one on disk: a batch another object or process
        marked collected stays collected (with its cost). Takes the job's lock unless the
        caller holds it (``locked``). Blocks: run it in a worker thread."""
        registry = self._ctx.registry()
        handle = None if locked else registry.acquire(self.id)
        try:
            try:
                on_disk = registry.load_header(self.id)["batches"]
            except ClaudeForceError:  # not written yet (submitting), or damaged: ours stands
                on_disk = []
            for state, saved in zip(self._batches, on_disk, strict=False):
                if saved.get("collected") and not state.collected:
                    state.collected, state.settled_usd = True, saved.get("settled_usd")
            self._header["batches"] = [b.to_json() for b in self._batches]
            registry.save_header(self.id, self._header)
        finally:
            if handle is not None:
                registry.release(handle)

    async def _refresh(self, fn: Callable[[str], Awaitable[Any]]) -> None:
        changed = False
        for state in self._batches:
            if state.id is None or state.processing_status == "ended":
                continue
            batch = await fn(state.id)
            counts = getattr(batch, "request_counts", None)
            new_counts = {k: int(getattr(counts, k, 0) or 0) for k in COUNT_NAMES}
            status = str(batch.processing_status)
            if status != state.processing_status or new_counts != state.counts:
                changed = changed or status != state.processing_status
                state.processing_status, state.counts = status, new_counts
                state.turnaround_s = _seconds_between(
                    getattr(batch, "created_at", None), getattr(batch, "ended_at", None)
                )
        if changed:
            await asyncio.to_thread(self._save_header)

    def _status(self) -> BatchStatus:
        counts = dict.fromkeys(COUNT_NAMES, 0)
        for state in self._batches:
            if state.id is None:
                continue
            if state.counts:
                for k in COUNT_NAMES:
                    counts[k] += state.counts.get(k, 0)
            else:
                counts["processing"] += state.count
        counts["cached"] = self._count_where(CACHED)
        counts["not_sent"] = self._count_where(NOT_SENT)
        states = {b.processing_status for b in self._batches if b.id is not None}
        status = (
            "in_progress"
            if "in_progress" in states
            else "canceling"
            if "canceling" in states
            else "ended"
        )
        return BatchStatus(self.id, status, counts, self.total, tuple(self.ids))

    async def status(self) -> BatchStatus:
        """Ask the API where each unfinished batch stands; the job's :class:`BatchStatus`.

        Raises :class:`~..errors.APIError` subclasses when the API cannot be reached."""
        await self._refresh(self._api.retrieve)
        return self._status()

    async def wait(
        self,
        *,
        on_progress: Callable[[BatchStatus], None] | None = None,
        poll: float = DEFAULT_POLL_SECONDS,
        max_poll: float = MAX_POLL_SECONDS,
        timeout: float | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> BatchStatus:
        """Poll until every batch has ended; return the final status.

        The first wait is ``poll`` seconds, each next one 1.5 times longer, up to ``max_poll``
        (batches take minutes to hours: polling every second would only spend requests).
        ``on_progress(status)`` runs after each poll (its exceptions are logged). With
        ``timeout`` (seconds), returns the status then even if not ended (check
        ``status.ended``). Cancelling the awaiting task stops the waiting only: the batches run
        on, and ``orch.batch(job.id)`` re-attaches later. ``sleep`` is injectable for tests.
        """
        if not poll > 0 or not max_poll >= poll:
            raise ConfigurationError("wait() needs poll > 0 and max_poll >= poll (seconds).")
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            status = await self.status()
            if on_progress is not None:
                try:
                    on_progress(status)
                except Exception as exc:
                    self._ctx.log.warning("on_progress callback failed: %s", type(exc).__name__)
            if status.ended:
                return status
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return status
                delay = min(delay, left)
            await sleep(delay)
            delay = min(delay * POLL_BACKOFF, max_poll)

    async def cancel(self) -> BatchStatus:
        """Ask the API to cancel every batch still processing; returns the status (items
        not yet processed end as ``canceled`` and are not billed; the rest still are)."""
        await self._refresh(self._api.cancel)
        return self._status()

    # -- results --------------------------------------------------------------------------

    async def iter_results(self) -> AsyncIterator[AgentResult]:
        """Yield every item's :class:`AgentResult` in item order (see :meth:`results`)."""
        await self._collect_all()
        for result in self._ordered():
            yield result

    async def results(self) -> list[AgentResult]:
        """Every item's :class:`AgentResult`, in item order, once the job has ended.

        The first call collects each batch: its results are streamed, validated, priced at
        50 %, stored in the response cache, recorded (call mode ``batch``) and charged to
        the budget, exactly once across calls, objects and processes. Each result's
        ``metadata`` also holds ``custom_id``, ``batch_id`` and ``result_type``. Raises
        :class:`ConfigurationError` while a batch is still processing (``await
        job.wait()`` first) and :class:`~..errors.APIError` subclasses if the results cannot
        be read (nothing is charged then; call again).
        """
        return [result async for result in self.iter_results()]

    def to_frame(self) -> pd.DataFrame:
        """The collected results as a DataFrame: custom_id, agent, task, output, status,
        result_type, cached, input/output tokens, cost_usd, error. Raises
        :class:`ConfigurationError` before the results were collected (``await
        job.results()`` first)."""
        import pandas as pd

        if not self._collected():
            raise ConfigurationError(
                f"The results of {self.id} have not been collected yet: await job.results() "
                "(or `%agent batch results ID`) first."
            )
        rows = []
        for item, result in zip(self._items, self._ordered(), strict=True):
            meta = result.metadata
            rows.append(
                {
                    "custom_id": item.custom_id,
                    "agent": item.agent,
                    "task": item.call.preview,
                    "output": result.output,
                    "status": "ok" if result.success else "failed",
                    "result_type": meta.get("result_type"),
                    "cached": bool(meta.get("cached")),
                    "input_tokens": meta.get("input_tokens"),
                    "output_tokens": meta.get("output_tokens"),
                    "cost_usd": meta.get("cost_usd"),
                    "error": result.errors[0] if result.errors else None,
                }
            )
        frame: pd.DataFrame = pd.DataFrame(rows)
        return frame

    def _collected(self) -> bool:
        needed = {item.batch for item in self._items if item.batch >= 0}
        cached_ready = len(self._cached) == self._count_where(CACHED)
        return needed <= set(self._spools) and cached_ready

    def _ordered(self) -> Iterator[AgentResult]:
        for index, item in enumerate(self._items):
            if item.batch == CACHED:
                yield self._cached[index]
            elif item.batch == NOT_SENT:
                yield _not_sent(item, self._batch_error(index))
            else:
                spool = self._spools[item.batch]
                yield spool.get(index) if spool.has(index) else _missing(item, str(item.batch))

    def _batch_error(self, index: int) -> str:
        errors = [b.error for b in self._batches if b.error]
        return errors[0] if errors else "not submitted"

    async def _collect_all(self) -> None:
        status = self._status()
        if not status.ended:
            status = await self.status()
        if not status.ended:
            raise ConfigurationError(
                f"Batch job {self.id} is still processing ({status.done} of {status.total} "
                "done): await job.wait() first, or check with `%agent batch status`."
            )
        async with self._lock:
            for k, state in enumerate(self._batches):
                if state.id is not None and k not in self._spools:
                    self._spools[k] = await self._collect(k)
            if len(self._cached) < self._count_where(CACHED):
                await self._load_cached()

    async def _load_cached(self) -> None:
        """Cached answers of a re-attached job: read from the cache again (a hit each)."""
        wanted = [i for i, item in enumerate(self._items) if item.batch == CACHED]
        entries = await _lookup_all(self._ctx, [self._items[i] for i in wanted])
        for pos, index in enumerate(wanted):
            item = self._items[index]
            entry = entries.get(pos)
            if entry is None:
                result = AgentResult.failure(
                    item.call.agent.name,
                    BatchItemError(
                        "This item was answered from the response cache when the job was "
                        "submitted, but the entry has expired or was removed since. Resubmit "
                        "it with job.retry_failed().",
                        result_type="cache_gone",
                    ),
                )
            else:
                result = self._ctx.ledger.cache_hit(item.call, entry, time.perf_counter())
            result.metadata.update(custom_id=item.custom_id, batch_id=None, result_type="cached")
            self._cached[index] = result

    async def _collect(self, k: int) -> _Spool:
        """Read batch ``k``'s results into a spool; charge, record and store them unless the
        registry says the batch was collected before (exactly once, under the job's lock)."""
        registry = self._ctx.registry()
        handle = await _acquire(registry, self.id)
        try:
            header = await asyncio.to_thread(registry.load_header, self.id)
            saved = _BatchState(**header["batches"][k])
            state = self._batches[k]
            replay = saved.collected
            spool, cost = await self._read_results(k, record=not replay)
            if not replay:
                state.collected, state.settled_usd = True, cost
                # marked before charged: a crash in between under-charges, never charges twice
                await asyncio.to_thread(functools.partial(self._save_header, locked=True))
                reservation = self._reservations.pop(k, None) or Reservation(0.0)
                self._ctx.ledger.budget.settle(reservation, cost)
            else:  # collected elsewhere: what this process held for it is no longer needed
                state.collected, state.settled_usd = True, saved.settled_usd
                held = self._reservations.pop(k, None)
                if held is not None:
                    self._ctx.ledger.budget.release(held)
            return spool
        finally:
            registry.release(handle)

    async def _read_results(self, k: int, *, record: bool) -> tuple[_Spool, float]:
        state = self._batches[k]
        assert state.id is not None
        batch_id = state.id
        by_id = {item.custom_id: i for i, item in enumerate(self._items) if item.batch == k}
        spool = _Spool(len(self._items))
        total = 0.0
        pending: list[tuple[PreparedCall, Answer, Any]] = []
        latency = state.turnaround_s
        store = record and _store_usable(self._ctx)
        try:
            decoder = await self._api.results(batch_id)
            try:
                async for line in decoder:
                    index = by_id.get(getattr(line, "custom_id", None))  # type: ignore[arg-type]
                    if index is None or spool.has(index):
                        self._ctx.log.warning("batch %s: unexpected result line skipped", batch_id)
                        continue
                    call = self._items[index].call
                    kind, outcome = _outcome(line, call)
                    result, cost = self._ctx.ledger.batch_result(call, outcome, latency_s=latency)
                    result.metadata.update(
                        custom_id=line.custom_id, batch_id=batch_id, result_type=kind
                    )
                    total += cost or 0.0
                    spool.put(index, result)
                    if store and isinstance(outcome, Answer):
                        pending.append((call, outcome, cost))
                        if len(pending) >= _STORE_CHUNK:
                            await _store_answers(self._ctx, pending)
                            pending = []
            except ClaudeForceError:
                raise
            except Exception as exc:  # the stream broke while reading: nothing is charged
                raise map_api_error(exc) from exc
            await _store_answers(self._ctx, pending)
        except BaseException:
            spool.close()
            raise
        if record:
            for index in by_id.values():
                if spool.has(index):
                    self._ctx.ledger.record_batch(spool.get(index))
        return spool, total

    # -- retries ----------------------------------------------------------------------------

    async def retry_failed(
        self, *, limits: BatchLimits | None = None, **options: Any
    ) -> BatchJob | None:
        """Resubmit the items whose result failed and may succeed if sent again (errored
        with a server error, expired, canceled, not sent), as a new job under the same rules
        (screening, cache, budget at 50 %); ``options`` override theirs. Returns the new job,
        or None when nothing is worth resubmitting. Collects this job's results first."""
        await self._collect_all()
        retry: list[dict[str, Any]] = []
        for item, result in zip(self._items, self._ordered(), strict=True):
            error = result.error
            if result.success or (error is not None and not error.retryable):
                continue
            retry.append(
                {
                    "agent": item.agent,
                    "task": item.task,
                    "custom_id": item.custom_id,
                    **{**item.options, **options},
                }
            )
        if not retry:
            return None
        return await submit(self._ctx, retry, {}, limits, retry_of=self.id)


async def _acquire(registry: BatchRegistry, job_id: str) -> int:
    """The job's lock, taken in a worker thread; if the waiting task is cancelled, the lock
    the thread still obtains is released at once rather than leaked."""
    pending = asyncio.ensure_future(asyncio.to_thread(registry.acquire, job_id))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:

        def release(done: asyncio.Future[int]) -> None:
            if not done.cancelled() and done.exception() is None:
                registry.release(done.result())

        pending.add_done_callback(release)
        raise


# -- submitting and re-attaching --------------------------------------------------------------


async def submit(
    ctx: BatchContext,
    items: Iterable[Any],
    options: Mapping[str, Any],
    limits: BatchLimits | None = None,
    *,
    retry_of: str | None = None,
) -> BatchJob:
    """Build, screen, look up, reserve and send ``items`` as Message Batches (see
    :meth:`~.orchestrator.AsyncAgentOrchestrator.submit_batch`)."""
    limits = limits or BatchLimits()
    prepared = _prepare_all(ctx, _normalize(items, options))
    if not prepared:
        raise ConfigurationError("submit_batch needs at least one (agent, task) item.")
    ctx.client.get()  # no API key: a caller mistake, raised before anything is reserved
    registry = ctx.registry()
    entries = await _lookup_all(ctx, prepared)
    cached: dict[int, AgentResult] = {}
    for index, entry in entries.items():
        item = prepared[index]
        item.batch = CACHED
        result = ctx.ledger.cache_hit(item.call, entry, time.perf_counter())
        result.metadata.update(custom_id=item.custom_id, batch_id=None, result_type="cached")
        cached[index] = result
    pending = [i for i, item in enumerate(prepared) if item.batch != CACHED]
    groups = _split(prepared, pending, limits)
    reservations: dict[int, Reservation] = {}
    try:
        for k, group in enumerate(groups):
            reservations[k] = ctx.ledger.reserve_batch([prepared[i].call for i in group])
    except BaseException:
        for reservation in reservations.values():
            ctx.ledger.budget.release(reservation)
        raise
    for k, group in enumerate(groups):
        for i in group:
            prepared[i].batch = k
    job_id = registry.new_id()
    header: dict[str, Any] = {
        "job_id": job_id,
        "created_at": time.time(),
        "items": len(prepared),
        "cached": len(cached),
        "retry_of": retry_of,
        "base_url": ctx.client.base_url,
        "batches": [
            _BatchState(
                None,
                len(g),
                reservations[k].amount,
                ctx.ledger.estimate_batch([prepared[i].call for i in g]),
            ).to_json()
            for k, g in enumerate(groups)
        ],
    }
    try:
        await asyncio.to_thread(registry.save_items, job_id, [_item_record(i) for i in prepared])
        await asyncio.to_thread(registry.save_header, job_id, header)
    except BaseException:
        for reservation in reservations.values():
            ctx.ledger.budget.release(reservation)
        raise
    job = BatchJob(ctx, job_id, header, prepared, reservations, cached)
    await _create_batches(ctx, job, groups)
    return job


async def _create_batches(ctx: BatchContext, job: BatchJob, groups: list[list[int]]) -> None:
    """Create each batch and record its id at once; when a create fails, its items (and those
    of the batches after it) are not sent and their reservations released; if none was
    created the error is raised, otherwise the job goes on with the batches that exist."""
    api = _BatchAPI(ctx)
    items = job._items
    for k, group in enumerate(groups):
        requests = [
            {"custom_id": items[i].custom_id, "params": items[i].call.params} for i in group
        ]
        try:
            batch = await api.create(requests)
        except (APIError, asyncio.CancelledError) as exc:
            for j in range(k, len(groups)):
                ctx.ledger.budget.release(job._reservations.pop(j))
                job._batches[j].error = f"{type(exc).__name__}: {str(exc)[:200]}"
                job._batches[j].processing_status = "ended"
                for i in groups[j]:
                    items[i].batch = NOT_SENT
            if getattr(exc, "status_code", None) is None:  # no answer: it may have been made
                ctx.log.warning(
                    "batch %d of job %s: the answer to its create was lost, so the API may "
                    "have made it anyway; see client.messages.batches.list()",
                    k,
                    job.id,
                )
            await asyncio.to_thread(_save_items_and_header, ctx, job)
            if k == 0 or isinstance(exc, asyncio.CancelledError):
                raise
            ctx.log.warning("batch %d of job %s could not be created: %s", k, job.id, exc)
            return
        state = job._batches[k]
        state.id = str(batch.id)
        state.processing_status = str(batch.processing_status)
        await asyncio.to_thread(job._save_header)


def _save_items_and_header(ctx: BatchContext, job: BatchJob) -> None:
    ctx.registry().save_items(job.id, [_item_record(i) for i in job._items])
    job._save_header()


async def attach(ctx: BatchContext, job_or_batch_id: str) -> BatchJob:
    """The registered job ``job_or_batch_id`` (a job id or one of its batch ids), rebuilt
    from the registry; raises :class:`~..errors.BatchJobNotFoundError`, or
    :class:`~..errors.IntegrityError` for a tampered registry file."""
    registry = ctx.registry()
    job_id = await asyncio.to_thread(registry.find, job_or_batch_id)
    header = await asyncio.to_thread(registry.load_header, job_id)
    records = await asyncio.to_thread(registry.load_items, job_id)
    try:
        agents: AgentRegistry | None = ctx.agents()
    except ClaudeForceError:
        agents = None
    items = [_item_from_record(r, agents) for r in records]
    return BatchJob(ctx, job_id, header, items, {}, {})


def _sum_estimates(states: Iterable[_BatchState]) -> float | None:
    values = [s.estimated_usd for s in states]
    return None if any(v is None for v in values) else float(sum(v or 0.0 for v in values))


def job_rows(ctx: BatchContext) -> list[dict[str, Any]]:
    """One row per registered job, newest first, from the registry alone (no request):
    job_id, created, items, batches, status, counts, estimated_usd, settled_usd. A file that
    fails its check is listed with status ``damaged``."""
    registry = ctx.registry()
    rows: list[dict[str, Any]] = []
    for job_id in registry.job_ids():
        try:
            header = registry.load_header(job_id)
        except ClaudeForceError as exc:
            rows.append({"job_id": job_id, "status": "damaged", "error": str(exc)[:200]})
            continue
        states = [_BatchState(**b) for b in header["batches"]]
        sent = [s for s in states if s.id is not None]
        counts = dict.fromkeys(COUNT_NAMES, 0)
        for s in sent:
            for k in COUNT_NAMES:
                counts[k] += (
                    s.counts.get(k, 0) if s.counts else (s.count if k == "processing" else 0)
                )
        status = "ended" if all(s.processing_status == "ended" for s in sent) else "in_progress"
        settled = [s.settled_usd for s in sent if s.collected and s.settled_usd is not None]
        rows.append(
            {
                "job_id": job_id,
                "created": datetime.fromtimestamp(float(header["created_at"])),
                "items": int(header["items"]),
                "batches": len(sent),
                "status": status,
                **counts,
                "cached": int(header.get("cached", 0)),
                "collected": bool(sent) and all(s.collected for s in sent),
                "estimated_usd": _sum_estimates(states),
                "settled_usd": float(sum(settled)) if settled else None,
                "batch_ids": ", ".join(str(s.id) for s in sent),
            }
        )
    return rows
