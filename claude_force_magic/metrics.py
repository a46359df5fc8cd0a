"""Bounded call metrics: recent records, latency percentiles, tokens, cost and savings.

Memory does not grow with the number of calls (BUG-005): :class:`Metrics` keeps a ring buffer
of the last ``history`` :class:`CallRecord` objects, and per (agent, model, cached) group one
:class:`QuantileSketch` (the first 512 latencies, exact, then at most ~1,100 counters) plus a few
running sums. The number of groups
is bounded by ``max_groups``; later groups are folded into an ``(other)`` group. A group that
has streamed calls also gets one sketch for time to first token and one for time per output
token (:meth:`Metrics.stream_percentiles`), created on its first streamed call.

A sink is a callable that receives each record (for a CSV writer, a dashboard, ...). A sink
that raises never fails the call that is being recorded (BUG-008): the failure is logged as a
sanitized warning on the first failure and then once per 100 failures of that sink.

Standard library only; importing this module is cheap.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigurationError
from .guard.logs import get_logger, sanitize_for_log

__all__ = [
    "CALL_MODES",
    "CALL_STATUSES",
    "OTHER",
    "QUANTILES",
    "STREAM_QUANTILES",
    "CallRecord",
    "Metrics",
    "QuantileSketch",
    "Sink",
    "percentile",
    "quantile_label",
]

_log = get_logger(__name__)

OTHER = "(other)"
#: How a recorded call ended.
CALL_STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "cancelled")
#: How a call reached the API: ``interactive`` (the Messages API) or ``batch`` (an item of a
#: Message Batch, billed at 50 %).
CALL_MODES: tuple[str, ...] = ("interactive", "batch")
_GROUP_KEYS = ("agent_name", "model", "cached")


_STREAM_FIELDS = ("ttft_s", "tpot_s", "itl_p50_s", "output_tokens_per_s")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call (live or served from the cache), as recorded by the engine.

    ``cost_usd`` is ``None`` when the model's price is unknown; ``saved_usd`` is what a cache
    hit would have cost live. ``cache_write_tokens`` counts every prompt-cache write and
    ``cache_write_1h_tokens`` the 1-hour part of it (the rest was written for 5 minutes);
    ``prompt_cache_saved_usd`` is what prompt caching saved on the call (its cache tokens
    priced as plain input minus what they cost; negative for a call that only wrote), kept
    apart from the response cache's ``saved_usd``.
    ``latency_s`` is wall-clock seconds for the whole call, retries
    included. ``status`` is how the call ended (:data:`CALL_STATUSES`): ``ok``, ``error``,
    ``timeout`` or ``cancelled``; a cancelled or timed-out call still carries the tokens and
    cost the API billed for it. The streaming metrics (``ttft_s``: request sent to first text
    delta; ``tpot_s``: seconds per output token after the first; ``itl_p50_s``: median gap
    between text deltas; ``output_tokens_per_s``) are those of the attempt that produced a
    streamed answer, and None for non-streamed calls, cache hits and failures. ``call_mode``
    is ``batch`` for an item of a Message Batch (:data:`CALL_MODES`). Raises
    :class:`ConfigurationError` for negative token counts, a negative or non-finite latency or
    streaming metric, or an unknown status or call mode.
    """

    timestamp: float
    agent_name: str
    model: str
    latency_s: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    saved_usd: float = 0.0
    cached: bool = False
    success: bool = True
    error_type: str | None = None
    attempts: int = 1
    stop_reason: str | None = None
    request_id: str | None = None
    status: str = "ok"
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_p50_s: float | None = None
    output_tokens_per_s: float | None = None
    call_mode: str = "interactive"
    cache_write_1h_tokens: int = 0
    prompt_cache_saved_usd: float = 0.0

    def __post_init__(self) -> None:
        if self.call_mode not in CALL_MODES:
            raise ConfigurationError(
                f"call_mode must be one of {', '.join(CALL_MODES)}, got {self.call_mode!r}"
            )
        if self.status not in CALL_STATUSES:
            raise ConfigurationError(
                f"status must be one of {', '.join(CALL_STATUSES)}, got {self.status!r}"
            )
        if not (self.latency_s >= 0.0 and math.isfinite(self.latency_s)):
            raise ConfigurationError(f"latency_s must be finite and >= 0, got {self.latency_s!r}")
        if (
            min(
                self.input_tokens,
                self.output_tokens,
                self.cache_read_tokens,
                self.cache_write_tokens,
                self.cache_write_1h_tokens,
            )
            < 0
        ):
            raise ConfigurationError("token counts in a CallRecord must be >= 0")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ConfigurationError(
                "cache_write_1h_tokens is part of cache_write_tokens and cannot exceed it"
            )
        for name in _STREAM_FIELDS:
            value = getattr(self, name)
            if value is not None and not (value >= 0.0 and math.isfinite(value)):
                raise ConfigurationError(
                    f"{name} must be None or finite and >= 0 in a CallRecord, got {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (one DataFrame row)."""
        return asdict(self)


#: How many values a :class:`QuantileSketch` keeps exactly (its percentiles are then exact).
EXACT_VALUES = 512


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation between closest ranks.

    The one definition the package uses (``%agent stats``, ``%agent bench``): numpy's default
    ("linear") method, so ``percentile(v, 0.99)`` equals ``numpy.percentile(v, 99)``. It never
    lies outside ``[min(values), max(values)]`` and never decreases as ``q`` grows. Raises
    ``ValueError`` for an empty sequence or ``q`` outside [0, 1].
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, not {q}")
    if not values:
        raise ValueError("percentile of an empty sequence")
    return _interpolate(sorted(values).__getitem__, len(values), q)


def _interpolate(at_rank: Callable[[int], float], count: int, q: float) -> float:
    """Linear interpolation between the values at the two ranks around ``q * (count - 1)``."""
    pos = (count - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, count - 1)
    low, high = at_rank(lo), at_rank(hi)
    return low + (high - low) * (pos - lo) if pos > lo else low


class QuantileSketch:
    """Bounded latency distribution: count, min, max, mean and quantiles.

    The first ``exact_values`` values (default :data:`EXACT_VALUES`) are kept as they are, so
    while a sketch holds no more than that its quantiles are exact (:func:`percentile`). Past
    that, the values are only counted in a log-bucketed histogram (the DDSketch idea): bucket
    ``i`` holds values in ``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)``, so
    reporting a bucket's midpoint is within relative error ``a`` (default 0.01) of any value
    in it, and quantiles interpolate between the ranks around them as :func:`percentile`
    does. Values are clamped to ``[min_value, max_value]`` (default 1 µs .. 1 h) for bucketing
    only; min, max and mean stay exact. At most ``bucket_count`` counters exist however many
    values are added.
    Not thread-safe on its own; :class:`Metrics` guards its sketches with a lock.
    """

    __slots__ = (
        "_buckets",
        "_exact",
        "_exact_limit",
        "_gamma",
        "_log_gamma",
        "_max_index",
        "_min_index",
        "count",
        "max",
        "min",
        "relative_accuracy",
        "total",
    )

    def __init__(
        self,
        relative_accuracy: float = 0.01,
        *,
        min_value: float = 1e-6,
        max_value: float = 3600.0,
        exact_values: int = EXACT_VALUES,
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ConfigurationError(
                f"relative_accuracy must be between 0 and 1, got {relative_accuracy!r}"
            )
        if not 0.0 < min_value < max_value:
            raise ConfigurationError("QuantileSketch needs 0 < min_value < max_value")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._min_index = self._index_unclamped(min_value)
        self._max_index = self._index_unclamped(max_value)
        self._buckets: dict[int, int] = {}
        self._exact_limit = max(0, exact_values)
        # The values themselves while there are at most _exact_limit of them; None after.
        # (an array of doubles: 8 bytes a value, 4 KB for 512, where a list of floats takes 25 KB)
        self._exact: array[float] | None = array("d") if self._exact_limit else None
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def bucket_count(self) -> int:
        """The most counters this sketch can ever hold."""
        return self._max_index - self._min_index + 1

    def _index_unclamped(self, value: float) -> int:
        return math.ceil(math.log(value) / self._log_gamma)

    def _index(self, value: float) -> int:
        if value <= 0.0:
            return self._min_index
        return min(max(self._index_unclamped(value), self._min_index), self._max_index)

    def _value(self, index: int) -> float:
        return 2.0 * self._gamma**index / (self._gamma + 1.0)

    def add(self, value: float) -> None:
        """Add one value (seconds). O(1)."""
        index = self._index(value)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self._keep_exact([value])
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` into this sketch.

        Raises :class:`ConfigurationError` if the two sketches were built with different
        parameters (their buckets would not line up).
        """
        if (self._gamma, self._min_index, self._max_index) != (
            other._gamma,
            other._min_index,
            other._max_index,
        ):
            raise ConfigurationError("Only sketches with the same accuracy and range can merge")
        for index, n in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + n
        if other._exact is None or other.count > len(other._exact):
            self._exact = None
        else:
            self._keep_exact(other._exact)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _keep_exact(self, values: Sequence[float]) -> None:
        exact = self._exact
        if exact is None:
            return
        if len(exact) + len(values) > self._exact_limit:
            self._exact = None  # from here on the histogram answers (memory stays bounded)
        else:
            exact.extend(values)

    @property
    def exact(self) -> bool:
        """True while every value is held, so the quantiles are exact."""
        return self._exact is not None

    @property
    def mean(self) -> float:
        """The exact mean, or ``nan`` when empty."""
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (see :func:`percentile`), or ``nan`` if empty.

        Exact while the sketch holds every value; after that within the relative accuracy,
        and always between ``min`` and ``max``. Raises :class:`ConfigurationError` unless
        ``0 <= q <= 1``.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Several quantiles at once (see :meth:`quantile`); non-decreasing in ``q``."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ConfigurationError(f"quantiles must be between 0 and 1, got {q!r}")
        if not self.count:
            return [math.nan for _ in qs]
        if self._exact is not None:
            ordered = sorted(self._exact)
            return [_interpolate(ordered.__getitem__, self.count, q) for q in qs]
        at_rank = self._rank_lookup()
        return [_interpolate(at_rank, self.count, q) for q in qs]

    def _rank_lookup(self) -> Callable[[int], float]:
        """The value at rank ``k`` (0-based): exact at both ends, else its bucket's midpoint."""
        indices = sorted(self._buckets)
        cumulative: list[int] = []
        seen = 0
        for index in indices:
            seen += self._buckets[index]
            cumulative.append(seen)

        def at_rank(k: int) -> float:
            if k <= 0:
                return self.min
            if k >= self.count - 1:
                return self.max
            pos = bisect.bisect_right(cumulative, k)
            return min(max(self._value(indices[pos]), self.min), self.max)

        return at_rank


Sink = Callable[[CallRecord], None]
_SINK_WARN_EVERY = 100


@dataclass
class _SinkState:
    fn: Sink
    failures: int = 0


def _to_pico(usd: float) -> int:
    return round(usd * _PICO)


def _money_to_usd(row: dict[str, Any]) -> dict[str, Any]:
    row["cost_usd"] /= _PICO
    row["saved_usd"] /= _PICO
    row["prompt_cache_saved_usd"] /= _PICO
    return row


_PICO = 10**12


@dataclass
class _Group:
    sketch: QuantileSketch = field(default_factory=QuantileSketch)
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cost_pusd: int = 0  # pico-USD: integer sums are exact and independent of order
    unknown_cost_calls: int = 0
    saved_pusd: int = 0
    prompt_cache_saved_pusd: int = 0
    ttft: QuantileSketch | None = None  # created on the group's first streamed call
    tpot: QuantileSketch | None = None
    streamed: int = 0
    stream_tokens: int = 0
    stream_seconds: float = 0.0

    def add(self, rec: CallRecord) -> None:
        self.calls += 1
        if rec.success:
            self.sketch.add(rec.latency_s)
            self._add_stream(rec)
        else:
            self.errors += 1
        self.input_tokens += rec.input_tokens
        self.output_tokens += rec.output_tokens
        self.cache_read_tokens += rec.cache_read_tokens
        self.cache_write_tokens += rec.cache_write_tokens
        self.cache_write_1h_tokens += rec.cache_write_1h_tokens
        self.prompt_cache_saved_pusd += _to_pico(rec.prompt_cache_saved_usd)
        if rec.cost_usd is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_pusd += _to_pico(rec.cost_usd)
        self.saved_pusd += _to_pico(rec.saved_usd)

    def _add_stream(self, rec: CallRecord) -> None:
        if rec.ttft_s is None:
            return
        if self.ttft is None:
            self.ttft = QuantileSketch()
        self.ttft.add(rec.ttft_s)
        self.streamed += 1
        if rec.tpot_s is not None:
            if self.tpot is None:
                self.tpot = QuantileSketch()
            self.tpot.add(rec.tpot_s)
        if rec.output_tokens_per_s:
            self.stream_tokens += rec.output_tokens
            self.stream_seconds += rec.output_tokens / rec.output_tokens_per_s

    def sums(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "cost_usd": self.cost_pusd,
            "unknown_cost_calls": self.unknown_cost_calls,
            "saved_usd": self.saved_pusd,
            "prompt_cache_saved_usd": self.prompt_cache_saved_pusd,
        }


#: The latency quantiles reported by default here and by :mod:`..bench`.
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
#: The TTFT / TPOT quantiles :meth:`Metrics.stream_percentiles` reports by default.
STREAM_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def quantile_label(q: float) -> str:
    """The column name of quantile ``q``: ``p50``, ``p99``, ``p99.9``."""
    return f"p{q * 100:g}"


class Metrics:
    """Thread-safe, bounded metrics for every call an orchestrator makes.

    ``history`` is how many recent records :meth:`recent` can return; ``max_groups`` bounds the
    (agent, model) groups kept for percentiles and costs: further groups are counted under
    ``("(other)", "(other)", cached)``, so at most ``max_groups + 2`` groups exist. All methods
    may be called from any thread; each takes one lock for O(1) work (the reporting methods
    for O(groups)). Sinks run in the recording thread, outside the lock, in the order added.
    Raises :class:`ConfigurationError` if ``history`` or ``max_groups`` is below 1.
    """

    def __init__(self, *, history: int = 10_000, max_groups: int = 256) -> None:
        if history < 1 or max_groups < 1:
            raise ConfigurationError("Metrics needs history >= 1 and max_groups >= 1")
        self._lock = threading.Lock()
        self._history: deque[CallRecord] = deque(maxlen=history)
        self._max_groups = max_groups
        self._groups: dict[tuple[str, str, bool], _Group] = {}
        self._named_groups = 0
        self._sinks: list[_SinkState] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def _group_for(self, rec: CallRecord) -> _Group:
        key = (rec.agent_name, rec.model, rec.cached)
        group = self._groups.get(key)
        if group is None:
            if self._named_groups >= self._max_groups:
                key = (OTHER, OTHER, rec.cached)
                group = self._groups.get(key)
            else:
                self._named_groups += 1
            if group is None:
                group = self._groups[key] = _Group()
        return group

    def record(self, rec: CallRecord) -> None:
        """Add one record and pass it to every sink; a no-op after :meth:`close`.

        O(1) under the lock. Never raises because of a sink (BUG-008); raises
        :class:`ConfigurationError` only if ``rec`` is not a :class:`CallRecord`.
        """
        if not isinstance(rec, CallRecord):
            raise ConfigurationError(f"Metrics.record needs a CallRecord, got {type(rec).__name__}")
        with self._lock:
            if self._closed:
                return
            self._history.append(rec)
            self._group_for(rec).add(rec)
            sinks = tuple(self._sinks)
        for state in sinks:
            self._call_sink(state, rec)

    def _call_sink(self, state: _SinkState, rec: CallRecord) -> None:
        try:
            state.fn(rec)
        except Exception as exc:
            with self._lock:
                state.failures += 1
                failures = state.failures
            if failures == 1 or failures % _SINK_WARN_EVERY == 0:
                name = getattr(state.fn, "__qualname__", type(state.fn).__name__)
                _log.warning(
                    "Metrics sink %s failed (%s: %s); %d failure(s) so far, logged once per %d. "
                    "The call itself was not affected.",
                    sanitize_for_log(name, 80),
                    type(exc).__name__,
                    sanitize_for_log(exc, 160),
                    failures,
                    _SINK_WARN_EVERY,
                )

    def add_sink(self, fn: Sink) -> None:
        """Call ``fn(record)`` for every later record; adding an equal ``fn`` twice is a no-op.

        Raises :class:`ConfigurationError` if ``fn`` is not callable or metrics are closed.
        """
        if not callable(fn):
            raise ConfigurationError(f"A metrics sink must be callable, got {type(fn).__name__}")
        with self._lock:
            if self._closed:
                raise ConfigurationError("These metrics are closed; sinks can no longer be added")
            if all(s.fn != fn for s in self._sinks):
                self._sinks.append(_SinkState(fn))

    def remove_sink(self, fn: Sink) -> None:
        """Stop calling ``fn``; does nothing if it was not added."""
        with self._lock:
            self._sinks = [s for s in self._sinks if s.fn != fn]

    def recent(self, n: int | None = None) -> list[CallRecord]:
        """The last ``n`` records (all kept ones if ``None``), oldest first.

        Raises :class:`ConfigurationError` for a negative ``n``.
        """
        if n is not None and n < 0:
            raise ConfigurationError(f"n must be >= 0, got {n}")
        with self._lock:
            items = list(self._history)
        return items if n is None else items[len(items) - n :] if n else []

    def latency_percentiles(self, quantiles: Iterable[float] = QUANTILES) -> list[dict[str, Any]]:
        """One row per (agent_name, model, cached) group over all calls since the last reset.

        Each row: ``agent_name, model, cached, count`` (successful calls, whose latencies are
        in the percentiles), ``errors``, one ``pNN`` column per quantile (``p50``, ``p99.9``
        ...), ``mean`` and ``max``, in seconds (``nan`` for a group with no success). Rows are
        sorted by agent, model, cached. Raises :class:`ConfigurationError` for a quantile
        outside [0, 1].
        """
        qs = tuple(quantiles)
        with self._lock:
            rows = []
            for (agent, model, cached), group in sorted(self._groups.items()):
                sketch = group.sketch
                row: dict[str, Any] = {
                    "agent_name": agent,
                    "model": model,
                    "cached": cached,
                    "count": sketch.count,
                    "errors": group.errors,
                }
                row.update(zip(map(quantile_label, qs), sketch.quantiles(qs), strict=True))
                row["mean"] = sketch.mean
                row["max"] = sketch.max if sketch.count else math.nan
                rows.append(row)
        return rows

    def stream_percentiles(
        self, quantiles: Iterable[float] = STREAM_QUANTILES
    ) -> list[dict[str, Any]]:
        """Streaming metrics per (agent_name, model) group that has streamed calls.

        Each row: ``agent_name, model, streamed`` (successful streamed calls), one
        ``ttft_pNN`` and one ``tpot_pNN`` column per quantile (seconds; ``nan`` when no call
        had a TPOT) and ``tokens_per_s`` (output tokens over the streaming seconds of all of
        them). Cache hits are never streamed calls. Rows are sorted by agent and model.
        Raises :class:`ConfigurationError` for a quantile outside [0, 1].
        """
        qs = tuple(quantiles)
        labels = [quantile_label(q) for q in qs]
        rows = []
        with self._lock:
            for (agent, model, _), group in sorted(self._groups.items()):
                if group.ttft is None:
                    continue
                row: dict[str, Any] = {"agent_name": agent, "model": model}
                row["streamed"] = group.streamed
                ttft = group.ttft.quantiles(qs)
                tpot = group.tpot.quantiles(qs) if group.tpot else [math.nan] * len(qs)
                row.update((f"ttft_{lab}", v) for lab, v in zip(labels, ttft, strict=True))
                row.update((f"tpot_{lab}", v) for lab, v in zip(labels, tpot, strict=True))
                seconds = group.stream_seconds
                row["tokens_per_s"] = group.stream_tokens / seconds if seconds else math.nan
                rows.append(row)
        return rows

    def totals(self) -> dict[str, Any]:
        """Sums over all calls since the last reset.

        Keys: ``calls, live_calls, cached_calls, errors, input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, cost_usd`` (sum of known
        costs), ``unknown_cost_calls, saved_usd`` (the response cache's savings),
        ``prompt_cache_saved_usd`` (prompt caching's).
        """
        with self._lock:
            groups = list(self._groups.items())
        total: dict[str, Any] = dict.fromkeys(_Group().sums(), 0)
        live = cached = 0
        for (_, _, is_cached), group in groups:
            for key, value in group.sums().items():
                total[key] += value
            if is_cached:
                cached += group.calls
            else:
                live += group.calls
        _money_to_usd(total)
        return {"calls": total.pop("calls"), "live_calls": live, "cached_calls": cached, **total}

    def cost_by(self, keys: Sequence[str] = ("agent_name", "model")) -> list[dict[str, Any]]:
        """Tokens, cost and savings over all calls, grouped by ``keys``.

        ``keys`` is any ordered subset of ``agent_name``, ``model``, ``cached``. Each row holds
        the key values, then ``calls, errors, input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens, cache_write_1h_tokens, cost_usd, unknown_cost_calls, saved_usd,
        prompt_cache_saved_usd``; rows are sorted by key.
        Raises :class:`ConfigurationError` for an unknown key.
        """
        keys = tuple(keys)
        bad = [k for k in keys if k not in _GROUP_KEYS]
        if bad:
            raise ConfigurationError(
                f"cost_by keys must be among {', '.join(_GROUP_KEYS)}; got {bad!r}"
            )
        with self._lock:
            groups = [
                (dict(zip(_GROUP_KEYS, k, strict=True)), g.sums()) for k, g in self._groups.items()
            ]
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        for key_values, sums in groups:
            row_key = tuple(key_values[k] for k in keys)
            row = merged.get(row_key)
            if row is None:
                merged[row_key] = {**dict(zip(keys, row_key, strict=True)), **sums}
            else:
                for name, value in sums.items():
                    row[name] += value
        return [_money_to_usd(merged[k]) for k in sorted(merged)]

    def reset(self) -> None:
        """Forget all records, groups and sums; sinks stay."""
        with self._lock:
            self._history.clear()
            self._groups.clear()
            self._named_groups = 0
            for state in self._sinks:
                state.failures = 0

    def close(self) -> None:
        """Drop sinks and history; later :meth:`record` calls do nothing. Idempotent.

        Totals, percentiles and costs stay readable, so a final summary can still be shown.
        """
        with self._lock:
            self._closed = True
            self._sinks.clear()
            self._history.clear()
