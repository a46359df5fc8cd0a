"""What a call to a Claude model costs, from a price table with an effective date.

The bundled table (``data/prices.json``) holds list prices in USD per million tokens for
input, output, 5-minute cache writes, 1-hour cache writes and cache reads. Users can add or
override models with :meth:`PriceTable.with_overrides`. A model the table does not know is
reported as unknown (``None`` and a warning), never priced as another model.

>>> table = PriceTable.bundled()
>>> table.cost("claude-sonnet-4-5", {"input_tokens": 1_000, "output_tokens": 1_000})
0.018
>>> table.lookup("claude-sonnet-4-5-20250929") == table.lookup("claude-sonnet-4-5")
True

Arithmetic is done in :class:`~decimal.Decimal` and converted to ``float`` once at the end,
so known prices come out exact. Tables are immutable and safe to share between threads.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PricingError

__all__ = [
    "DEFAULT_MIN_CACHEABLE_TOKENS",
    "PRICE_FIELDS",
    "LongContextPrice",
    "ModelPrice",
    "PriceTable",
    "UnknownModelPriceWarning",
    "cost",
    "default_table",
    "format_usd",
]


def format_usd(value: float | None) -> str:
    """USD for people: cents from $1 up, else four decimals or three significant digits,
    trailing zeros dropped ($0.001, $0.0123, $0.000042): a non-zero amount never shows as $0.

    >>> format_usd(0.001), format_usd(1234.5), format_usd(0), format_usd(None)
    ('$0.001', '$1,234.50', '$0', 'cost unknown')
    """
    if value is None:
        return "cost unknown"
    if value == 0:
        return "$0"
    decimals = max(4, 2 - math.floor(math.log10(abs(value))))
    whole, _, fraction = f"{value:.{decimals}f}".partition(".")
    if abs(value) >= 1 or whole.lstrip("-") != "0":  # 0.99999 rounds up to a dollar
        return f"${value:,.2f}"
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


#: The prompt-cache minimum (tokens) of a model the table gives none for (the API's usual one).
DEFAULT_MIN_CACHEABLE_TOKENS = 1024

#: The five rates every price has, in USD per million tokens.
PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")

_MILLION = Decimal(1_000_000)
_HALF = Decimal("0.5")
_BUNDLED_PATH = Path(__file__).parent / "data" / "prices.json"
# Only a dated snapshot suffix or "-latest" is stripped: "claude-fable-5-2" must never become
# "claude-fable-5", nor "claude-opus-4-1" become "claude-opus-4".
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{8}|latest)\Z")
_MAX_MODEL_ID = 200


class UnknownModelPriceWarning(UserWarning):
    """The price table has no entry for a model, so its cost is reported as unknown."""


@dataclass(frozen=True)
class ModelPrice:
    """The rates of one model in USD per million tokens.

    ``long_context`` (optional) replaces every rate for requests whose prompt (input plus
    cache write plus cache read tokens) exceeds its threshold. ``min_cacheable_tokens``
    (optional) is the shortest prompt prefix the API caches for the model (None: the table's
    default). Raises :class:`PricingError` when a rate is negative or not a finite number.
    """

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    long_context: LongContextPrice | None = None
    min_cacheable_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in PRICE_FIELDS:
            object.__setattr__(self, name, _to_rate(getattr(self, name), name))
        if self.min_cacheable_tokens is not None:
            _check_min_tokens(self.min_cacheable_tokens, "min_cacheable_tokens")

    def as_dict(self) -> dict[str, float]:
        """The five rates as floats, keyed by field name."""
        return {name: float(getattr(self, name)) for name in PRICE_FIELDS}


@dataclass(frozen=True)
class LongContextPrice:
    """Rates that apply to the whole request once its prompt exceeds ``threshold`` tokens."""

    threshold: int
    price: ModelPrice

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise PricingError(
                f"long_context threshold must be a whole number of tokens, got {self.threshold!r}."
            )
        if self.threshold < 0:
            raise PricingError(f"long_context threshold must be >= 0, got {self.threshold}.")
        if self.price.long_context is not None:
            raise PricingError("A long_context price cannot have its own long_context.")


@dataclass(frozen=True)
class _Usage:
    input: int
    output: int
    write_5m: int
    write_1h: int
    read: int

    @property
    def prompt(self) -> int:
        return self.input + self.write_5m + self.write_1h + self.read


class PriceTable:
    """An immutable mapping from model ids to :class:`ModelPrice`, with aliases.

    Build one with :meth:`bundled`, :meth:`from_file` or :meth:`from_mapping`; derive a
    changed copy with :meth:`with_overrides`. Lookups and cost calculations are thread-safe;
    the only mutable state is the set of models already warned about, guarded by a lock.
    """

    __slots__ = (
        "_aliases",
        "_lock",
        "_min_cacheable_default",
        "_models",
        "_warned",
        "effective_date",
        "source",
    )

    def __init__(
        self,
        models: Mapping[str, ModelPrice],
        *,
        aliases: Mapping[str, str] | None = None,
        effective_date: str | None = None,
        source: str = "",
        min_cacheable_default: int = 0,
    ) -> None:
        """Raises :class:`PricingError` when an alias points at a model the table lacks.

        ``min_cacheable_default`` is the prompt-cache minimum of models without their own
        (0: :data:`DEFAULT_MIN_CACHEABLE_TOKENS`).
        """
        aliases = dict(aliases or {})
        for alias, target in aliases.items():
            if target not in models:
                raise PricingError(
                    f"Price alias {alias!r} points at {target!r}, which the table does not have."
                )
        self._models: Mapping[str, ModelPrice] = MappingProxyType(dict(models))
        self._aliases: Mapping[str, str] = MappingProxyType(aliases)
        self.effective_date = effective_date
        self.source = source
        self._min_cacheable_default = (
            _check_min_tokens(min_cacheable_default, "default")
            if min_cacheable_default
            else DEFAULT_MIN_CACHEABLE_TOKENS
        )
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def bundled(cls) -> PriceTable:
        """The table shipped with the package (``data/prices.json``).

        Raises :class:`PricingError` if the bundled file is damaged.
        """
        return cls.from_file(_BUNDLED_PATH, source="bundled")

    @classmethod
    def from_file(cls, path: str | Path, *, source: str | None = None) -> PriceTable:
        """Read a table in the format of ``data/prices.json`` (at most 1 MB).

        Raises :class:`PricingError` when the file is missing, too large, not JSON, or invalid.
        """
        p = Path(path).expanduser()
        try:
            with p.open("rb") as fh:
                raw = fh.read(1_000_001)
        except OSError as exc:
            raise PricingError(f"Cannot read price table {p}: {exc.strerror}.") from exc
        if len(raw) > 1_000_000:
            raise PricingError(f"Price table {p} is larger than 1 MB; refusing to read it.")
        try:
            data = json.loads(raw.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PricingError(f"Price table {p} is not valid UTF-8 JSON: {exc}.") from exc
        return cls.from_mapping(data, source=source or str(p))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "") -> PriceTable:
        """Build a table from ``{"effective_date", "models": {...}, "aliases": {...}}``.

        Raises :class:`PricingError` naming the model and field that is wrong.
        """
        if not isinstance(data, Mapping):
            raise PricingError(f"A price table must be a JSON object, got {type(data).__name__}.")
        models_raw = data.get("models")
        if not isinstance(models_raw, Mapping):
            raise PricingError('A price table needs a "models" object mapping model ids to prices.')
        aliases_raw = data.get("aliases", {})
        if not isinstance(aliases_raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases_raw.items()
        ):
            raise PricingError('"aliases" must map model ids (strings) to model ids (strings).')
        effective = data.get("effective_date")
        if effective is not None and not isinstance(effective, str):
            raise PricingError('"effective_date" must be a string such as "2026-11-01".')
        minimums = data.get("min_cacheable_tokens", {})
        if not isinstance(minimums, Mapping):
            raise PricingError(
                '"min_cacheable_tokens" must map model ids (and "default") to token counts.'
            )
        minimums = {k: v for k, v in minimums.items() if k != "description"}
        models = {
            _check_model_id(model): _parse_price(
                model, _with_minimum(spec, minimums.get(model)), partial_of=None
            )
            for model, spec in models_raw.items()
        }
        unknown = sorted(set(minimums) - set(models) - {"default"})
        if unknown:
            raise PricingError(
                f'"min_cacheable_tokens" names models the table lacks: {", ".join(unknown)}.'
            )
        return cls(
            models,
            aliases=aliases_raw,
            effective_date=effective,
            source=source,
            min_cacheable_default=_check_min_tokens(minimums.get("default", 0), "default"),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        """A copy of this table with models added or changed; this table is left alone.

        ``overrides`` maps a model id to a :class:`ModelPrice` or a mapping of rates in USD
        per million tokens (``input``, ``output``, ``cache_write_5m``, ``cache_write_1h``,
        ``cache_read``, optional ``long_context``). A model the table does not know needs all
        five rates; a known model (or its alias or dated snapshot) may give only the rates
        that change. Raises :class:`PricingError` for a missing, negative, non-numeric or
        unknown field.
        """
        if not isinstance(overrides, Mapping):
            raise PricingError("Price overrides must be a mapping of model id to prices.")
        models = dict(self._models)
        for model, spec in overrides.items():
            model_id = _check_model_id(model)
            if isinstance(spec, ModelPrice):
                models[model_id] = spec
                continue
            models[model_id] = _parse_price(model_id, spec, partial_of=self.lookup(model_id))
        return PriceTable(
            models,
            aliases={a: t for a, t in self._aliases.items() if a not in overrides},
            effective_date=self.effective_date,
            source=f"{self.source} + overrides" if self.source else "overrides",
            min_cacheable_default=self._min_cacheable_default,
        )

    # -- queries ------------------------------------------------------------------------

    def resolve(self, model: str) -> str | None:
        """The canonical id for ``model`` (exact id, alias or dated snapshot), else None."""
        for candidate in (model, _SNAPSHOT_SUFFIX.sub("", model)):
            if candidate in self._models:
                return candidate
            if candidate in self._aliases:
                return self._aliases[candidate]
        return None

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or ``None`` if the table does not know it.

        Matches the exact id, then an alias, then the id with a trailing ``-YYYYMMDD`` or
        ``-latest`` removed. Never falls back to a shorter or similar model id.
        """
        canonical = self.resolve(model) if isinstance(model, str) else None
        return None if canonical is None else self._models[canonical]

    def models(self) -> list[str]:
        """The canonical model ids in the table, in table order."""
        return list(self._models)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return (
            f"PriceTable({len(self._models)} models, effective_date={self.effective_date!r}, "
            f"source={self.source!r})"
        )

    def cost(self, model: str, usage: Any, *, batch: bool = False) -> float | None:
        """The cost in USD of one call, from its ``usage``; ``None`` for an unknown model.

        ``usage`` is a mapping or an object (such as the SDK's ``Usage``) with
        ``input_tokens``, ``output_tokens``, ``cache_creation_input_tokens``,
        ``cache_read_input_tokens`` and ``cache_creation`` (with ``ephemeral_5m_input_tokens``
        and ``ephemeral_1h_input_tokens``). Missing or ``None`` fields count as 0. With the
        ``cache_creation`` breakdown, writes are priced at the 5-minute and 1-hour rates (any
        remainder of ``cache_creation_input_tokens`` at the 5-minute rate); without it, all
        cache writes use the 5-minute rate. ``batch=True`` halves every rate (the batch
        discount applies to all token types). An unknown model gives ``None`` and an
        :class:`UnknownModelPriceWarning`, once per model per table. Raises
        :class:`PricingError` when a token count is negative or not an integer.
        """
        price = self._price_or_warn(model)
        if price is None:
            return None
        return float(_charge(price, _read_usage(usage), batch=batch))

    def prompt_cache_saving(self, model: str, usage: Any, *, batch: bool = False) -> float | None:
        """What prompt caching saved on one call, in USD: the prompt-cache tokens of ``usage``
        (reads and both kinds of writes) priced as plain input, minus what they cost.

        Negative when the call only wrote to the cache (a write costs more than plain input;
        later reads earn it back). ``None`` for an unknown model (no warning: :meth:`cost`
        gives it). Same ``usage`` shapes and errors as :meth:`cost`.

        >>> PriceTable.bundled().prompt_cache_saving(
        ...     "claude-haiku-4-5", {"cache_read_input_tokens": 1_000_000})
        0.9
        """
        price = self.lookup(model)
        if price is None:
            return None
        used = _read_usage(usage)
        plain = _Usage(used.prompt, used.output, 0, 0, 0)
        return float(_charge(price, plain, batch=batch) - _charge(price, used, batch=batch))

    def min_cacheable_tokens(self, model: str) -> int:
        """The shortest prompt prefix (tokens) the API caches for ``model``.

        The model's own ``min_cacheable_tokens`` (bundled data, overridable like a rate with
        :meth:`with_overrides`), else the table's default (:data:`DEFAULT_MIN_CACHEABLE_TOKENS`
        unless the file says otherwise): an unknown model is never refused a breakpoint.
        """
        price = self.lookup(model)
        if price is not None and price.min_cacheable_tokens is not None:
            return price.min_cacheable_tokens
        return self._min_cacheable_default

    def estimate(
        self, model: str, input_tokens: int, max_output_tokens: int, *, batch: bool = False
    ) -> float | None:
        """The worst-case cost in USD of a call before it is sent; ``None`` for an unknown model.

        Assumes every input token is billed at the input rate (no cache discount) and the
        answer uses all ``max_output_tokens``. Used by the budget check. Raises
        :class:`PricingError` for negative or non-integer counts.
        """
        price = self._price_or_warn(model)
        if price is None:
            return None
        usage = _Usage(
            input=_count(input_tokens, "input_tokens"),
            output=_count(max_output_tokens, "max_output_tokens"),
            write_5m=0,
            write_1h=0,
            read=0,
        )
        return float(_charge(price, usage, batch=batch))

    def rows(self) -> list[dict[str, Any]]:
        """One row per model (rates as floats, aliases, long-context threshold) for a DataFrame."""
        aliases: dict[str, list[str]] = {}
        for alias, target in self._aliases.items():
            aliases.setdefault(target, []).append(alias)
        rows = []
        for model, price in self._models.items():
            row: dict[str, Any] = {"model": model, **price.as_dict()}
            row["long_context_threshold"] = (
                price.long_context.threshold if price.long_context else None
            )
            row["aliases"] = ", ".join(aliases.get(model, []))
            row["effective_date"] = self.effective_date
            rows.append(row)
        return rows

    def _price_or_warn(self, model: str) -> ModelPrice | None:
        price = self.lookup(model)
        if price is None:
            shown = _shown(model)
            with self._lock:
                first = shown not in self._warned
                self._warned.add(shown)
            if first:
                warnings.warn(
                    f"No price is known for model {shown}, so its cost is reported as unknown "
                    "(None). Add it with PriceTable.with_overrides({model: {input, output, "
                    "cache_write_5m, cache_write_1h, cache_read}}) in USD per million tokens.",
                    UnknownModelPriceWarning,
                    stacklevel=3,
                )
        return price


@functools.lru_cache(maxsize=1)
def default_table() -> PriceTable:
    """The bundled :class:`PriceTable`, read once per process and shared (it is immutable)."""
    return PriceTable.bundled()


def cost(
    model: str, usage: Any, *, batch: bool = False, table: PriceTable | None = None
) -> float | None:
    """The cost in USD of one call; see :meth:`PriceTable.cost`. Uses the bundled table
    unless ``table`` is given. Returns ``None`` (with a warning) for an unknown model."""
    return (table or default_table()).cost(model, usage, batch=batch)


# -- helpers ------------------------------------------------------------------------------


def _shown(model: object) -> str:
    """A model id made safe to print: printable characters only, bounded length."""
    text = model if isinstance(model, str) else repr(model)
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:_MAX_MODEL_ID])
    return repr(clean)


def _check_model_id(model: object) -> str:
    if not isinstance(model, str) or not model or len(model) > _MAX_MODEL_ID:
        raise PricingError(f"A model id must be a non-empty string, got {_shown(model)}.")
    if any(ch.isspace() or not ch.isprintable() for ch in model):
        raise PricingError(f"Model id {_shown(model)} contains whitespace or control characters.")
    return model


def _to_rate(value: object, field: str, model: str = "") -> Decimal:
    where = f"{field} of {model!r}" if model else field
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise PricingError(
            f"Price {where} must be a number (USD per million tokens), got {_shown(value)}."
        )
    try:
        rate = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise PricingError(f"Price {where} must be a number, got {_shown(value)}.") from None
    if not rate.is_finite():
        raise PricingError(f"Price {where} must be finite, got {_shown(value)}.")
    if rate < 0:
        raise PricingError(f"Price {where} must be >= 0, got {value}.")
    return rate


def _parse_price(model: str, spec: Any, *, partial_of: ModelPrice | None) -> ModelPrice:
    """Validate one model's price mapping; ``partial_of`` supplies rates left out."""
    if not isinstance(spec, Mapping):
        raise PricingError(
            f"The price of {model!r} must be an object of rates, got {_shown(spec)}."
        )
    unknown = sorted(set(spec) - {*PRICE_FIELDS, "long_context", "min_cacheable_tokens"})
    if unknown:
        raise PricingError(
            f"Unknown price field(s) {', '.join(map(repr, unknown))} for {model!r}; "
            f"expected {', '.join(PRICE_FIELDS)} and optionally long_context and "
            "min_cacheable_tokens."
        )
    missing = [f for f in PRICE_FIELDS if f not in spec]
    if missing and partial_of is None:
        raise PricingError(
            f"The price of {model!r} is missing {', '.join(missing)}. A new model needs all of "
            f"{', '.join(PRICE_FIELDS)} in USD per million tokens."
        )
    rates = {
        f: _to_rate(spec[f], f, model) if f in spec else getattr(partial_of, f)
        for f in PRICE_FIELDS
    }
    long_context = partial_of.long_context if partial_of is not None else None
    if "long_context" in spec:
        long_context = _parse_long_context(model, spec["long_context"])
    minimum = partial_of.min_cacheable_tokens if partial_of is not None else None
    if spec.get("min_cacheable_tokens") is not None:
        minimum = _check_min_tokens(
            spec["min_cacheable_tokens"], f"min_cacheable_tokens of {model!r}"
        )
    return ModelPrice(**rates, long_context=long_context, min_cacheable_tokens=minimum)


def _with_minimum(spec: Any, minimum: Any) -> Any:
    """``spec`` with the file's ``min_cacheable_tokens`` entry for its model (its own wins)."""
    if minimum is None or not isinstance(spec, Mapping) or "min_cacheable_tokens" in spec:
        return spec
    return {**spec, "min_cacheable_tokens": minimum}


def _check_min_tokens(value: Any, where: str) -> int:
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PricingError(f"{where} must be a whole number of tokens >= 0, got {_shown(value)}.")
    return value


def _parse_long_context(model: str, spec: Any) -> LongContextPrice | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or "threshold" not in spec:
        raise PricingError(
            f"long_context of {model!r} must be an object with a threshold and the five rates."
        )
    threshold = spec["threshold"]
    if isinstance(threshold, Decimal) and threshold == threshold.to_integral_value():
        threshold = int(threshold)
    rest = {k: v for k, v in spec.items() if k != "threshold"}
    price = _parse_price(f"{model} (long context)", rest, partial_of=None)
    return LongContextPrice(threshold=threshold, price=price)


def _count(value: object, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        else:
            raise PricingError(f"Usage field {field} must be a whole number, got {_shown(value)}.")
    if value < 0:
        raise PricingError(f"Usage field {field} must be >= 0, got {value}.")
    return value


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _read_usage(usage: Any) -> _Usage:
    """Token counts from an SDK ``Usage`` object or a mapping; missing and None are 0."""
    written = _count(_field(usage, "cache_creation_input_tokens"), "cache_creation_input_tokens")
    breakdown = _field(usage, "cache_creation")
    e5m = _field(breakdown, "ephemeral_5m_input_tokens")
    e1h = _field(breakdown, "ephemeral_1h_input_tokens")
    if e5m is None and e1h is None:
        write_5m, write_1h = written, 0
    else:
        write_5m = _count(e5m, "ephemeral_5m_input_tokens")
        write_1h = _count(e1h, "ephemeral_1h_input_tokens")
        write_5m += max(0, written - write_5m - write_1h)
    return _Usage(
        input=_count(_field(usage, "input_tokens"), "input_tokens"),
        output=_count(_field(usage, "output_tokens"), "output_tokens"),
        write_5m=write_5m,
        write_1h=write_1h,
        read=_count(_field(usage, "cache_read_input_tokens"), "cache_read_input_tokens"),
    )


def _charge(price: ModelPrice, usage: _Usage, *, batch: bool) -> Decimal:
    """USD for ``usage`` at ``price`` (long-context rates when the prompt is over threshold)."""
    lc = price.long_context
    if lc is not None and usage.prompt > lc.threshold:
        price = lc.price
    total = (
        usage.input * price.input
        + usage.output * price.output
        + usage.write_5m * price.cache_write_5m
        + usage.write_1h * price.cache_write_1h
        + usage.read * price.cache_read
    ) / _MILLION
    return total * _HALF if batch else total
