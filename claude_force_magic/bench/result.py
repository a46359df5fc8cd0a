"""What a benchmark measured: :class:`CallSample` per call, :class:`BenchResult` per run.

Four latency metrics, all in seconds, with the conventions of vLLM's ``benchmark_serving``:

- ``e2e``: end to end as the caller sees it (perf_counter around the call, including client-side
  queueing, rate limiting and retries);
- ``ttft``: time to first token, from the request being sent (after the client's queue) to the
  first text delta;
- ``tpot``: time per output token after the first, ``(last delta - first delta) / (tokens - 1)``;
- ``itl``: inter-token latency, every gap between two text deltas of every call, pooled.

``ttft``, ``tpot`` and ``itl`` exist only for streamed calls (the default). Percentiles use
:func:`~claude_force_magic.metrics.percentile`, the package's one definition. Nothing heavy is
imported until a frame or plot is asked for.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..metrics import QUANTILES, percentile, quantile_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METRICS", "SLO", "BenchResult", "CallSample"]

#: The latency metrics a result reports, each in seconds (see the module docstring).
METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2e")
#: The columns of a ``brief`` frame (what ``%agent bench`` shows); optional ones are left out
#: when they hold nothing (no task sets, no SLO, no reference, nothing streamed).
BRIEF_COLUMNS: tuple[str, ...] = (
    "agent",
    "model",
    "tasks",
    "load",
    "ok",
    "errors",
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
    "itl_p50",
    "p50",
    "p95",
    "p99",
    "throughput_per_s",
    "output_tokens_per_s",
    "goodput_per_s",
    "ttft_bias_p50",
    "cost_per_1k_calls_usd",
    "error_types",
)
_OPTIONAL = frozenset(
    {
        "tasks",
        "ttft_p50",
        "ttft_p99",
        "tpot_p50",
        "itl_p50",
        "goodput_per_s",
        "ttft_bias_p50",
        "error_types",
    }
)


def brief(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` cut to :data:`BRIEF_COLUMNS`, without optional columns that hold nothing."""
    keep = []
    for column in BRIEF_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column]
        empty = values.isna().all() or (values.astype(str) == "").all()
        if column in _OPTIONAL and empty:
            continue
        keep.append(column)
    cut: pd.DataFrame = frame[keep]
    return cut


@dataclass(frozen=True)
class CallSample:
    """One benchmarked call.

    ``sent_s`` is when it was dispatched (seconds after the run started; for an open-loop run
    its scheduled arrival), ``latency_s`` its end-to-end latency. The streaming metrics are
    None for a call that was not streamed or failed; ``ttft_bias_s`` is the measured TTFT minus
    the TTFT the server says it served, from the request's arrival to its first text delta
    (only against a server that says so, such as the simulator): what the client adds.
    """

    index: int
    latency_s: float
    success: bool
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    attempts: int = 1
    sent_s: float = 0.0
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_p50_s: float | None = None
    output_tokens_per_s: float | None = None
    request_id: str | None = None
    ttft_bias_s: float | None = None


@dataclass(frozen=True)
class SLO:
    """Latency objectives, in seconds; a call meets the SLO when it succeeded and every given
    objective holds (``ttft``, ``tpot``: its own value; ``e2e``: its latency).

    ``SLO.parse("ttft=2,e2e=20")`` reads the notebook syntax. Raises
    :class:`~claude_force_magic.errors.ConfigurationError` for an unknown name, a value that is
    not a positive number, or no objective at all.
    """

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def __post_init__(self) -> None:
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in given.items():
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigurationError(
                    f"SLO {name} must be a positive number of seconds, got {value!r}"
                )
        if all(v is None for v in given.values()):
            raise ConfigurationError("an SLO needs at least one of ttft, tpot, e2e (seconds)")

    @classmethod
    def parse(cls, spec: str) -> SLO:
        """``"ttft=2,e2e=20"`` -> ``SLO(ttft=2.0, e2e=20.0)`` (seconds)."""
        known = [f.name for f in fields(cls)]
        values: dict[str, float] = {}
        for part in (p.strip() for p in spec.split(",")):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ConfigurationError(
                    f"bad SLO item {part!r} in {spec!r}: use NAME=SECONDS with NAME one of "
                    f"{', '.join(known)}, e.g. ttft=2,e2e=20"
                )
            if name in values:
                raise ConfigurationError(f"SLO {name} is given twice in {spec!r}")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ConfigurationError(
                    f"SLO {name}={raw.strip()!r} is not a number of seconds (e.g. {name}=2)"
                ) from None
        return cls(**values)

    def met(self, sample: CallSample) -> bool:
        """True when ``sample`` succeeded and meets every objective (a missing TTFT or TPOT
        fails an objective on it)."""
        if not sample.success:
            return False
        checks = ((self.ttft, sample.ttft_s), (self.tpot, sample.tpot_s), (self.e2e, None))
        for bound, value in checks[:2]:
            if bound is not None and (value is None or value > bound):
                return False
        return self.e2e is None or sample.latency_s <= self.e2e

    def __str__(self) -> str:
        return ",".join(
            f"{f.name}={getattr(self, f.name):g}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        )


@dataclass
class BenchResult:
    """Everything measured by :func:`~claude_force_magic.bench.run_benchmark`.

    ``concurrency`` is the cap on calls in flight (closed loop: the number of workers; open
    loop: ``max_concurrency``, or ``n`` when uncapped). ``rate`` is None for a closed-loop run,
    else the arrival rate (calls/s, ``inf`` for all at once) with its ``burstiness``.
    ``itl_gaps`` holds every inter-delta gap of the counted calls (warm-up excluded).
    """

    agent: str
    model: str
    n: int
    concurrency: int
    wall_s: float
    samples: list[CallSample] = field(default_factory=list)
    rate: float | None = None
    burstiness: float = 1.0
    warmup: int = 0
    slo: SLO | None = None
    tasks: str = ""
    itl_gaps: array[float] = field(default_factory=lambda: array("d"), repr=False)

    @property
    def load(self) -> str:
        """``"concurrency=8"`` or ``"rate=2/s"``: the load this run was driven at."""
        if self.rate is None:
            return f"concurrency={self.concurrency}"
        return f"rate={self.rate:g}/s"

    @property
    def latencies(self) -> list[float]:
        """End-to-end latencies (s) of the successful calls, in completion order."""
        return [s.latency_s for s in self.samples if s.success]

    @property
    def succeeded(self) -> int:
        """How many calls succeeded."""
        return sum(1 for s in self.samples if s.success)

    @property
    def throughput(self) -> float:
        """Successful calls per second of wall time."""
        return self.succeeded / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens of the successful calls per second of wall time."""
        total = sum(s.output_tokens for s in self.samples if s.success)
        return total / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def goodput(self) -> float | None:
        """Calls per second of wall time meeting every objective of :attr:`slo` (None
        without an SLO)."""
        if self.slo is None:
            return None
        met = sum(1 for s in self.samples if self.slo.met(s))
        return met / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def errors_by_type(self) -> dict[str, int]:
        """Failed calls counted by error type."""
        return dict(Counter(s.error_type or "unknown" for s in self.samples if not s.success))

    def values(self, metric: str) -> list[float]:
        """The measured values (s) of ``metric`` (one of :data:`METRICS`) over the successful
        calls; ``itl`` gives every pooled gap. Raises ``ConfigurationError`` for another name."""
        if metric == "e2e":
            return self.latencies
        if metric == "itl":
            return list(self.itl_gaps)
        if metric not in METRICS:
            raise ConfigurationError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        attr = f"{metric}_s"
        return [v for s in self.samples if s.success and (v := getattr(s, attr)) is not None]

    def percentiles(
        self, quantiles: Sequence[float] = QUANTILES, metric: str = "e2e"
    ) -> dict[str, float]:
        """``{"p50": seconds, ...}`` of ``metric`` (default end to end; NaN without values)."""
        data = self.values(metric)
        return {quantile_label(q): (percentile(data, q) if data else math.nan) for q in quantiles}

    @property
    def ttft_bias(self) -> list[float]:
        """Measured minus intended TTFT (s) per call, where a reference said what it meant."""
        return [s.ttft_bias_s for s in self.samples if s.ttft_bias_s is not None]

    def summary(self) -> dict[str, Any]:
        """One flat dict: counts, end-to-end percentiles (``p50``...), ``ttft_p50``...,
        ``tpot_*``, ``itl_*`` (each with ``_mean``), throughput, tokens/s, goodput, cost,
        errors, and the TTFT bias against a reference when there was one."""
        lat = self.latencies
        costs = [s.cost_usd for s in self.samples if s.cost_usd is not None]
        row: dict[str, Any] = {
            "agent": self.agent,
            "model": self.model,
            "tasks": self.tasks,
            "load": self.load,
            "n": self.n,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "burstiness": self.burstiness if self.rate is not None else None,
            "ok": self.succeeded,
            "errors": len(self.samples) - self.succeeded,
            **self.percentiles(),
            "mean": sum(lat) / len(lat) if lat else math.nan,
            "max": max(lat) if lat else math.nan,
        }
        for metric in ("ttft", "tpot", "itl"):
            data = self.values(metric)
            for label, value in self.percentiles(metric=metric).items():
                row[f"{metric}_{label}"] = value
            row[f"{metric}_mean"] = sum(data) / len(data) if data else math.nan
        bias = self.ttft_bias
        row["ttft_bias_p50"] = percentile(bias, 0.5) if bias else math.nan
        row["ttft_bias_p99"] = percentile(bias, 0.99) if bias else math.nan
        row.update(
            throughput_per_s=self.throughput,
            output_tokens_per_s=self.output_tokens_per_s,
            goodput_per_s=self.goodput if self.slo is not None else math.nan,
            slo=str(self.slo) if self.slo is not None else "",
            wall_s=self.wall_s,
            cost_usd=sum(costs),
            cost_per_call_usd=sum(costs) / len(costs) if costs else math.nan,
            cost_per_1k_calls_usd=1000 * sum(costs) / len(costs) if costs else math.nan,
            error_types=", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_type.items())),
        )
        return row

    def to_frame(self) -> pd.DataFrame:
        """One row per call (pandas imported here)."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame([asdict(s) for s in self.samples])
        return frame

    def summary_frame(self, *, brief: bool = False) -> pd.DataFrame:
        """:meth:`summary` as a one-row DataFrame (``brief``: the main columns only)."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame([self.summary()])
        return _brief(frame) if brief else frame

    def plot(self, ax: Any = None, *, bins: int = 30) -> Any:
        """An end-to-end latency histogram with p50/p95/p99 lines; returns the matplotlib Axes."""
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(7, 3.2)).subplots()
        lat = self.latencies
        ax.hist(lat, bins=max(1, min(bins, len(lat))), color="#4c78a8", alpha=0.85)
        for name, value in self.percentiles((0.5, 0.95, 0.99)).items():
            if not math.isnan(value):
                ax.axvline(value, linestyle="--", linewidth=1, color="#333")
                ax.text(value, ax.get_ylim()[1] * 0.95, f" {name}", fontsize=8, va="top")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("calls")
        ax.set_title(f"{self.agent} · n={self.n} · {self.load} · {self.throughput:.1f} calls/s")
        return ax

    def __repr__(self) -> str:
        p = self.percentiles()
        ttft = self.percentiles((0.5,), "ttft")["p50"]
        return (
            f"BenchResult({self.agent} n={self.n} {self.load} ok={self.succeeded} "
            f"p50={p['p50']:.3f}s p95={p['p95']:.3f}s p99={p['p99']:.3f}s "
            f"ttft_p50={ttft:.3f}s {self.throughput:.1f}/s errors={self.errors_by_type or 0})"
        )


_brief = brief


def samples_from(rows: Iterable[dict[str, Any]]) -> list[CallSample]:
    """:class:`CallSample` objects from their dict form (as :meth:`BenchResult.to_frame` and
    the sweep JSON write them); unknown keys are ignored."""
    names = {f.name for f in fields(CallSample)}
    return [CallSample(**{k: v for k, v in row.items() if k in names}) for row in rows]
