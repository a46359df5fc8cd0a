"""The Message Batches API: batch validation, the processing-time model, results lines.

Nothing here touches the network; the server turns HTTP requests into calls on a
:class:`BatchStore`. Time is the simulator's clock (injectable), so a test can move a batch
from ``in_progress`` to ``ended`` without sleeping.

The model (see ``docs/simulator.md``): a batch of ``n`` requests created at ``t0`` finishes
item ``i`` at ``t0 + seconds * (i + 1) / n`` and ends at ``t0 + seconds``. While it runs,
``request_counts`` move from ``processing`` to ``succeeded``/``errored`` as items finish;
items drawn as ``expired`` stay ``processing`` until the end. Each item's outcome is decided at
creation: an item whose ``params`` the Messages API would refuse is ``errored`` with that
``invalid_request_error`` (the API validates ``params`` asynchronously); otherwise the seeded
RNG picks ``errored`` (``api_error``) or ``expired`` with the configured rates, else
``succeeded``. Cancelling at ``tc`` turns every item not finished by ``tc`` into ``canceled``;
the batch is ``canceling`` for ``cancel_seconds``, then ``ended``. A batch and its results
vanish ``retention_seconds`` after creation.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .behaviour import Fault
from .prompt_cache import find_breakpoints
from .text import answer_digest, compose_answer, count_input_tokens, shape_answer, task_text
from .validation import InvalidRequest, MessageRequest, parse_create
from .wire import message_body

__all__ = ["Batch", "BatchSettings", "BatchStore", "NotFound"]

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
EXPIRY_SECONDS = 24 * 3600.0
RESULT_LINES_PER_CHUNK = 256

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# Outcomes decided at creation.
SUCCEEDED, ERRORED, EXPIRED = 0, 1, 2


class NotFound(LookupError):
    """No such batch for this API key (never created, deleted, or past its retention)."""


@dataclass(frozen=True)
class BatchSettings:
    """How batches behave; see :meth:`check` for the valid ranges."""

    seconds: float = 2.0
    cancel_seconds: float = 0.5
    retention_seconds: float = 29 * 24 * 3600.0
    errored_rate: float = 0.0
    expired_rate: float = 0.0
    max_requests: int = 100_000
    max_bytes: int = 256 * 1024 * 1024

    def check(self) -> BatchSettings:
        """Return ``self`` if every value is valid; raise ``ValueError`` naming the bad one."""
        for name in ("seconds", "cancel_seconds", "retention_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"batch {name}: must be a finite number >= 0, got {value!r}")
        for name in ("errored_rate", "expired_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ValueError(f"batch {name}: must be a probability in [0, 1], got {value!r}")
        if self.errored_rate + self.expired_rate > 1:
            raise ValueError("batch errored_rate + expired_rate must not exceed 1")
        for name in ("max_requests", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"batch {name}: must be a positive integer, got {value!r}")
        return self


@dataclass(frozen=True)
class _Item:
    custom_id: str
    outcome: int
    request: MessageRequest | None
    error: str | None


class Batch:
    """One batch: its items (outcomes fixed at creation) and its timeline on the clock."""

    __slots__ = (
        "cancel_at",
        "cancel_seconds",
        "created",
        "done_counts",
        "id",
        "items",
        "owner",
        "seconds",
    )

    def __init__(
        self,
        batch_id: str,
        owner: str,
        items: list[_Item],
        created: float,
        seconds: float,
        cancel_seconds: float,
    ) -> None:
        self.id = batch_id
        self.owner = owner
        self.items = items
        self.created = created
        self.seconds = seconds
        self.cancel_seconds = cancel_seconds
        self.cancel_at: float | None = None
        # done_counts[k] = (succeeded, errored) among the first k items.
        succeeded = errored = 0
        self.done_counts = [(0, 0)]
        for item in items:
            succeeded += item.outcome == SUCCEEDED
            errored += item.outcome == ERRORED
            self.done_counts.append((succeeded, errored))

    def finished(self, now: float) -> int:
        """How many items (in order) had finished processing at ``now``."""
        n = len(self.items)
        if self.seconds <= 0 or now >= self.created + self.seconds:
            return n
        return max(0, min(n, math.floor((now - self.created) / self.seconds * n)))

    def ends_at(self) -> float:
        """When processing ends (or ended) on the clock."""
        if self.cancel_at is not None:
            return self.cancel_at + self.cancel_seconds
        return self.created + self.seconds

    def status(self, now: float) -> str:
        """``in_progress``, ``canceling`` or ``ended`` at ``now``."""
        if now >= self.ends_at():
            return "ended"
        return "in_progress" if self.cancel_at is None else "canceling"

    def counts(self, now: float) -> dict[str, int]:
        """``request_counts`` at ``now`` (they always sum to the number of requests)."""
        n = len(self.items)
        status = self.status(now)
        if self.cancel_at is not None:
            succeeded, errored = self.done_counts[self.finished(self.cancel_at)]
            rest = n - succeeded - errored
            ended = status == "ended"
            return _counts(rest if not ended else 0, succeeded, errored, rest if ended else 0, 0)
        if status == "ended":
            succeeded, errored = self.done_counts[n]
            return _counts(0, succeeded, errored, 0, n - succeeded - errored)
        succeeded, errored = self.done_counts[self.finished(now)]
        return _counts(n - succeeded - errored, succeeded, errored, 0, 0)

    def result_type(self, index: int) -> str:
        """The final result type of item ``index`` (valid once the batch has ended)."""
        outcome = self.items[index].outcome
        if self.cancel_at is not None and (
            outcome == EXPIRED or index >= self.finished(self.cancel_at)
        ):
            return "canceled"
        return ("succeeded", "errored", "expired")[outcome]


def _counts(
    processing: int, succeeded: int, errored: int, canceled: int, expired: int
) -> dict[str, int]:
    return {
        "processing": processing,
        "succeeded": succeeded,
        "errored": errored,
        "canceled": canceled,
        "expired": expired,
    }


def _check_item(raw: Any, where: str, seen: dict[str, int], index: int) -> tuple[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: must be an object with custom_id and params")
    for key in raw:
        if key not in ("custom_id", "params"):
            raise InvalidRequest(f"{where}.{key}: Extra inputs are not permitted")
    for key in ("custom_id", "params"):
        if key not in raw:
            raise InvalidRequest(f"{where}.{key}: Field required")
    custom_id = raw["custom_id"]
    if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
        raise InvalidRequest(
            f"{where}.custom_id: must be 1-64 characters of letters, digits, '_' and '-', "
            f"got {custom_id!r}"
        )
    if custom_id in seen:
        raise InvalidRequest(
            f"{where}.custom_id: {custom_id!r} is not unique within the batch "
            f"(requests.{seen[custom_id]} uses it too); give every request its own custom_id"
        )
    seen[custom_id] = index
    if not isinstance(raw["params"], dict):
        raise InvalidRequest(f"{where}.params: must be an object of Messages API parameters")
    return custom_id, raw["params"]


def parse_params(params: Mapping[str, Any]) -> MessageRequest:
    """Validate one item's ``params`` like ``POST /v1/messages`` (no streaming in batches)."""
    request = parse_create(params)
    if request.stream:
        raise InvalidRequest("stream: streaming is not supported in Message Batches; remove it")
    find_breakpoints(request.system, request.messages)
    return request


class BatchStore:
    """Every batch the simulator knows, per API key fingerprint. Thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        wall: Callable[[float], float],
        settings: BatchSettings,
        seed: int,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._settings = settings.check()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    @property
    def settings(self) -> BatchSettings:
        """The current settings."""
        return self._settings

    def configure(self, settings: BatchSettings, seed: int | None = None) -> None:
        """New settings for batches created from now on (and a new RNG seed if given)."""
        settings.check()
        with self._lock:
            self._settings = settings
            if seed is not None:
                self._rng = random.Random(seed)

    def clear(self) -> None:
        """Forget every batch."""
        with self._lock:
            self._batches.clear()

    def create(self, owner: str, body: Any) -> Batch:
        """Validate a create body and start a batch. Raises :class:`InvalidRequest`."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object with 'requests'")
        for key in body:
            if key != "requests":
                raise InvalidRequest(f"{key}: Extra inputs are not permitted")
        requests = body.get("requests")
        if not isinstance(requests, list):
            raise InvalidRequest("requests: Field required (a list of {custom_id, params})")
        settings = self._settings
        if not requests:
            raise InvalidRequest("requests: at least one request is required")
        if len(requests) > settings.max_requests:
            raise InvalidRequest(
                f"requests: a batch holds at most {settings.max_requests} requests, got "
                f"{len(requests)}; split it into several batches"
            )
        seen: dict[str, int] = {}
        checked = [_check_item(r, f"requests.{i}", seen, i) for i, r in enumerate(requests)]
        with self._lock:
            items = [self._item(custom_id, params, settings) for custom_id, params in checked]
            batch_id = f"msgbatch_sim_{self._id_prefix}{next(self._ids):012x}"
            batch = Batch(
                batch_id, owner, items, self._clock(), settings.seconds, settings.cancel_seconds
            )
            self._batches[batch_id] = batch
        return batch

    def _item(self, custom_id: str, params: Mapping[str, Any], settings: BatchSettings) -> _Item:
        try:
            request = parse_params(params)
        except InvalidRequest as exc:
            return _Item(custom_id, ERRORED, None, str(exc))
        u = self._rng.random()
        if u < settings.errored_rate:
            return _Item(custom_id, ERRORED, request, None)
        if u < settings.errored_rate + settings.expired_rate:
            return _Item(custom_id, EXPIRED, request, None)
        return _Item(custom_id, SUCCEEDED, request, None)

    def _purge(self, now: float) -> None:
        keep = self._settings.retention_seconds
        for batch_id in [b.id for b in self._batches.values() if now >= b.created + keep]:
            del self._batches[batch_id]

    def get(self, owner: str, batch_id: str) -> Batch:
        """The batch, or :class:`NotFound`."""
        with self._lock:
            self._purge(self._clock())
            batch = self._batches.get(batch_id)
        if batch is None or batch.owner != owner:
            raise NotFound(batch_id)
        return batch

    def cancel(self, owner: str, batch_id: str) -> Batch:
        """Start cancelling an ``in_progress`` batch (others are returned unchanged)."""
        batch = self.get(owner, batch_id)
        with self._lock:
            now = self._clock()
            if batch.cancel_at is None and batch.status(now) == "in_progress":
                batch.cancel_at = now
        return batch

    def delete(self, owner: str, batch_id: str) -> None:
        """Delete an ended batch; raises :class:`InvalidRequest` while it is still processing."""
        batch = self.get(owner, batch_id)
        with self._lock:
            status = batch.status(self._clock())
            if status != "ended":
                raise InvalidRequest(
                    f"Message Batch {batch_id} is {status} and cannot be deleted until processing "
                    "has ended; cancel it first if you do not need its results"
                )
            self._batches.pop(batch_id, None)

    def page(
        self, owner: str, limit: int, after_id: str | None, before_id: str | None
    ) -> tuple[list[Batch], bool]:
        """The caller's batches, newest first, after/before a cursor; and whether more exist."""
        with self._lock:
            self._purge(self._clock())
            mine = [b for b in reversed(self._batches.values()) if b.owner == owner]
        ids = [b.id for b in mine]
        for name, cursor in (("after_id", after_id), ("before_id", before_id)):
            if cursor is not None and cursor not in ids:
                raise InvalidRequest(f"{name}: no Message Batch {cursor!r} for this API key")
        if before_id is not None:
            end = ids.index(before_id)
            start = max(0, end - limit)
            return mine[start:end], start > 0
        start = ids.index(after_id) + 1 if after_id is not None else 0
        return mine[start : start + limit], start + limit < len(mine)

    def wire(self, batch: Batch, results_url: str) -> dict[str, Any]:
        """The ``MessageBatch`` object as the API sends it."""
        now = self._clock()
        status = batch.status(now)
        ended = status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": batch.counts(now),
            "ended_at": self._rfc3339(batch.ends_at()) if ended else None,
            "created_at": self._rfc3339(batch.created),
            "expires_at": self._rfc3339(batch.created + EXPIRY_SECONDS),
            "cancel_initiated_at": (
                None if batch.cancel_at is None else self._rfc3339(batch.cancel_at)
            ),
            "archived_at": None,
            "results_url": results_url if ended else None,
        }

    def _rfc3339(self, when: float) -> str:
        stamp = datetime.fromtimestamp(self._wall(when), timezone.utc)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def is_ended(self, batch: Batch) -> bool:
        """True once the batch's processing has ended (its results can be read)."""
        return batch.status(self._clock()) == "ended"


def result_chunks(batch: Batch, seed: int) -> Iterator[bytes]:
    """The results file of an ended batch as JSONL, :data:`RESULT_LINES_PER_CHUNK` per chunk.

    Lines are generated as they are sent, so a large batch never exists as one string.
    """
    lines: list[bytes] = []
    for index in range(len(batch.items)):
        lines.append(_result_line(batch, index, seed))
        if len(lines) == RESULT_LINES_PER_CHUNK:
            yield b"".join(lines)
            lines = []
    if lines:
        yield b"".join(lines)


def _result_line(batch: Batch, index: int, seed: int) -> bytes:
    item = batch.items[index]
    kind = batch.result_type(index)
    if kind == "succeeded" and item.request is not None:
        payload = _succeeded(item.request, f"msg_sim_{batch.id[13:]}{index:08x}", seed)
    elif kind == "errored":
        error_type, message = (
            ("invalid_request_error", item.error)
            if item.error is not None
            else ("api_error", "Internal server error")
        )
        error = {"type": "error", "error": {"type": error_type, "message": message}}
        payload = b'{"type":"errored","error":' + _dumps(error).encode() + b"}"
    else:
        payload = b'{"type":"' + kind.encode() + b'"}'
    head = b'{"custom_id":' + _dumps(item.custom_id).encode() + b',"result":'
    return head + payload + b"}\n"


def _succeeded(request: MessageRequest, msg_id: str, seed: int) -> bytes:
    digest = answer_digest(seed, request.model, request.system, request.messages)
    full = compose_answer(digest, task_text(request.messages))
    answer = shape_answer(full, request.max_tokens, request.stop_sequences)
    input_tokens = count_input_tokens(request.system, request.messages)
    body, _ = message_body(msg_id, request.model, Fault.OK, answer, input_tokens)
    return b'{"type":"succeeded","message":' + body + b"}"
