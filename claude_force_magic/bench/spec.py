"""A benchmark's shape from command-line text (``%agent bench``), checked before anything runs.

:func:`bench_spec` turns ``--models M1,M2 --concurrency 1,4,16`` or ``--rate 0.5,1,2`` and the
other options into a :class:`BenchSpec`; every mistake is a ``ConfigurationError`` whose
message names the option and shows a correct example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigurationError
from .result import SLO

__all__ = ["BenchSpec", "bench_spec", "parse_names", "parse_numbers"]


@dataclass(frozen=True)
class BenchSpec:
    """The validated grid and run shape of one ``%agent bench``."""

    agents: tuple[str, ...]
    models: tuple[str | None, ...]
    kind: str  # "concurrency" or "rate"
    loads: tuple[float, ...]
    n: int | None
    duration: float | None
    warmup: int
    burstiness: float
    max_concurrency: int | None
    slo: SLO | None

    @property
    def points(self) -> int:
        """How many runs (agents x models x loads; task sets multiply this further)."""
        return len(self.agents) * len(self.models) * len(self.loads)

    @property
    def in_flight(self) -> int:
        """The most calls in flight any run may have (what the orchestrator must allow)."""
        if self.kind == "concurrency":
            return int(max(self.loads))
        if self.max_concurrency is not None:
            return self.max_concurrency
        calls = self.n if self.n is not None else 0
        if self.duration is not None:
            calls = max(calls, math.ceil(max(self.loads) * self.duration * 2) + 10)
        return max(1, calls)


def parse_names(flag: str, text: str) -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")``; an empty item is an error naming ``flag``."""
    names = tuple(p.strip() for p in text.split(","))
    if not all(names):
        raise ConfigurationError(f"{flag} {text!r}: an item is empty; use e.g. {flag} M1,M2")
    return names


def parse_numbers(flag: str, text: str, *, whole: bool) -> tuple[float, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``: positive numbers (whole ones if ``whole``; ``inf``
    allowed otherwise). The error names ``flag`` and shows an example."""
    example = "1,4,16" if whole else "0.5,1,2"
    kind = "positive whole numbers" if whole else "positive numbers (or inf)"
    values: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(int(part)) if whole else float(part)
        except ValueError:
            value = math.nan
        if not value > 0:
            raise ConfigurationError(
                f"{flag} {text!r}: {part!r} is not valid; give {kind} separated by commas, "
                f"e.g. {flag} {example}"
            )
        values.append(value)
    return tuple(values)


def bench_spec(
    agents: list[str],
    *,
    models: str | None = None,
    concurrency: str | None = None,
    rate: str | None = None,
    n: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    burstiness: float | None = None,
    max_concurrency: int | None = None,
    slo: str | None = None,
) -> BenchSpec:
    """Check the command-line options of a benchmark and return its :class:`BenchSpec`.

    Raises ``ConfigurationError`` for a bad list, both ``--concurrency`` and ``--rate``, both
    ``--n`` and ``--duration``, an open-loop option without ``--rate``, a count below 1 or a
    bad ``--slo``.
    """
    if concurrency is not None and rate is not None:
        raise ConfigurationError(
            "use --concurrency (closed loop: calls in flight) or --rate (open loop: calls/s), "
            "not both"
        )
    if rate is None:
        for flag, value in (("--burstiness", burstiness), ("--max-concurrency", max_concurrency)):
            if value is not None:
                raise ConfigurationError(f"{flag} shapes open-loop arrivals: use it with --rate")
    if n is not None and duration is not None:
        raise ConfigurationError("use --n (a number of calls) or --duration (seconds), not both")
    for flag, count in (("--n", n), ("--max-concurrency", max_concurrency)):
        if count is not None and count < 1:
            raise ConfigurationError(f"{flag} must be at least 1, not {count}.")
    if warmup < 0:
        raise ConfigurationError(f"--warmup must be 0 or more, not {warmup}.")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise ConfigurationError(
            f"--duration must be a positive number of seconds, not {duration}."
        )
    if burstiness is not None and not (burstiness > 0 and math.isfinite(burstiness)):
        raise ConfigurationError(f"--burstiness must be a positive number, not {burstiness}.")
    if rate is not None:
        kind, loads = "rate", parse_numbers("--rate", rate, whole=False)
        if math.inf in loads and duration is not None:
            raise ConfigurationError(
                "--rate inf sends every call at once: give --n, not --duration"
            )
    else:
        kind, loads = "concurrency", parse_numbers("--concurrency", concurrency or "8", whole=True)
    return BenchSpec(
        agents=tuple(agents),
        models=parse_names("--models", models) if models else (None,),
        kind=kind,
        loads=loads,
        n=n if n is not None or duration is not None else 50,
        duration=duration,
        warmup=warmup,
        burstiness=burstiness if burstiness is not None else 1.0,
        max_concurrency=max_concurrency,
        slo=SLO.parse(slo) if slo else None,
    )
