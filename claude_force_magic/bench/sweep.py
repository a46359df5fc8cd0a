"""Sweeps: every combination of agents x models x task sets x loads, one tidy result.

::

    sweep = await run_sweep(orch, ["python-expert", "code-reviewer"],
                            models=["claude-haiku-4-5", "claude-sonnet-4-5"],
                            concurrency=[1, 4, 16], n=40, slo="ttft=2,e2e=20")
    sweep.frame()                       # a row per agent x model x tasks x load
    sweep.plot()                        # a matplotlib Figure
    text = sweep.to_json()              # settings, machine, versions, every call
    SweepResult.from_json(text).compare(sweep)   # before / after, metric by metric
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .load import ProgressCallback, TimingReference, check_fits_orchestrator, run_benchmark
from .result import SLO, BenchResult, CallSample, samples_from
from .result import brief as brief_frame

if TYPE_CHECKING:
    import pandas as pd

    from ..engine.orchestrator import AsyncAgentOrchestrator

__all__ = ["COMPARED", "JSON_SCHEMA", "SweepResult", "run_sweep", "task_sets"]

#: The ``schema`` field of :meth:`SweepResult.to_json` documents.
JSON_SCHEMA = "claude-force-magic/bench-sweep/1"
#: The columns :meth:`SweepResult.compare` puts side by side.
COMPARED: tuple[str, ...] = (
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
    "tpot_p99",
    "itl_p50",
    "itl_p99",
    "p50",
    "p99",
    "throughput_per_s",
    "output_tokens_per_s",
    "goodput_per_s",
    "cost_per_call_usd",
    "errors",
)
#: The columns that identify a row of :meth:`SweepResult.frame`.
KEYS: tuple[str, ...] = ("agent", "model", "tasks", "load")


def task_sets(
    tasks: Sequence[str] | Mapping[str, Sequence[str]] | None,
) -> dict[str, list[str] | None]:
    """``{label: tasks}`` from ``tasks``: None (generated tasks) or one list of strings (both
    labelled ``""``), or a mapping of labels to lists (one sweep dimension, to
    compare prompts). Raises ``ConfigurationError`` for an empty list or a non-string task."""
    if tasks is None:
        return {"": None}
    named = dict(tasks) if isinstance(tasks, Mapping) else {"": tasks}
    if not named:
        raise ConfigurationError("tasks is an empty mapping: give at least one task set")
    out: dict[str, list[str] | None] = {}
    for label, items in named.items():
        if isinstance(items, str):
            raise ConfigurationError(
                f"task set {label!r} is one string; give a list of strings (one per call)"
            )
        listed = list(items)
        bad = next((t for t in listed if not isinstance(t, str)), None)
        if not listed or bad is not None:
            raise ConfigurationError(
                f"task set {label!r} must be a non-empty list of strings"
                + ("" if bad is None else f" (found a {type(bad).__name__})")
            )
        out[str(label)] = listed
    return out


async def run_sweep(
    orch: AsyncAgentOrchestrator,
    agents: Sequence[str] | str,
    *,
    models: Sequence[str | None] | None = None,
    concurrency: Sequence[int] | None = None,
    rate: Sequence[float] | None = None,
    tasks: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    n: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    burstiness: float = 1.0,
    max_concurrency: int | None = None,
    slo: SLO | str | None = None,
    stream: bool = True,
    seed: int = 0,
    reference: TimingReference | None = None,
    on_progress: ProgressCallback | None = None,
    options: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run :func:`~.load.run_benchmark` for every agent x model x task set x load, in order.

    Loads are ``concurrency`` (closed loop, default ``[8]``) or ``rate`` (open loop, calls/s;
    with ``burstiness`` and ``max_concurrency``), not both. ``models`` default to the
    orchestrator's (``None`` in the list means "the agent's own model"). ``tasks`` is one list
    of prompts or ``{label: prompts}`` to compare prompt sets. The other arguments are
    :func:`~.load.run_benchmark`'s, applied to every point; ``on_progress(done, total, sample)``
    counts calls over the whole sweep.

    Raises ``ConfigurationError`` before anything is sent for bad lists, both or neither of
    the loads, a load above the orchestrator's ``max_concurrent`` (it would cap the calls in
    flight and the numbers would lie), or any argument ``run_benchmark`` refuses.
    """
    grid = _Grid.build(orch, agents, models, concurrency, rate, tasks, max_concurrency)
    goal = SLO.parse(slo) if isinstance(slo, str) else slo
    points = grid.points()
    per_point = n if n is not None else (None if duration is not None else 50)
    done = 0
    results: list[BenchResult] = []
    for index, (agent, model, label, load) in enumerate(points):

        def progress(
            count: int,
            total: int,
            sample: CallSample,
            _base: int = done,
            _left: int = len(points) - index - 1,
        ) -> None:
            if on_progress is not None:
                on_progress(_base + count, _base + total + _left * (per_point or total), sample)

        call_options = dict(options or {})
        if model is not None:
            call_options["model"] = model
        result = await run_benchmark(
            orch,
            agent,
            grid.tasks[label],
            n=per_point,
            duration=duration,
            warmup=warmup,
            burstiness=burstiness,
            concurrency=int(load) if grid.kind == "concurrency" else 1,
            rate=load if grid.kind == "rate" else None,
            max_concurrency=max_concurrency,
            slo=goal,
            stream=stream,
            seed=seed,
            reference=reference,
            on_progress=progress,
            options=call_options,
            tasks_label=label,
        )
        done += len(result.samples)
        results.append(result)
    settings = {
        "agents": grid.agents,
        "models": grid.models,
        "load": grid.kind,
        "loads": grid.loads,
        "tasks": {k: _digest(v) for k, v in grid.tasks.items()},
        "n": n,
        "duration": duration,
        "warmup": warmup,
        "burstiness": burstiness,
        "max_concurrency": max_concurrency,
        "slo": str(goal) if goal else None,
        "stream": stream,
        "seed": seed,
        "options": _jsonable(dict(options or {})),
    }
    return SweepResult(results, settings, environment())


class _Grid:
    """The validated dimensions of a sweep."""

    def __init__(self) -> None:
        self.agents: list[str] = []
        self.models: list[str | None] = []
        self.kind = "concurrency"
        self.loads: list[float] = []
        self.tasks: dict[str, list[str] | None] = {}

    @classmethod
    def build(
        cls,
        orch: Any,
        agents: Sequence[str] | str,
        models: Sequence[str | None] | None,
        concurrency: Sequence[int] | None,
        rate: Sequence[float] | None,
        tasks: Sequence[str] | Mapping[str, Sequence[str]] | None,
        max_concurrency: int | None,
    ) -> _Grid:
        grid = cls()
        grid.agents = [agents] if isinstance(agents, str) else list(agents)
        if not grid.agents:
            raise ConfigurationError("agents is empty: name at least one agent")
        grid.models = list(models) if models is not None else [None]
        if not grid.models:
            raise ConfigurationError("models is empty: name at least one model (or pass None)")
        if concurrency is not None and rate is not None:
            raise ConfigurationError("sweep either concurrency (closed loop) or rate (open loop)")
        if rate is not None:
            grid.kind, grid.loads = "rate", [float(r) for r in rate]
        else:
            grid.loads = [int(c) for c in (concurrency if concurrency is not None else [8])]
        if not grid.loads or any(not v > 0 for v in grid.loads):
            raise ConfigurationError(f"{grid.kind} needs positive values, got {grid.loads}")
        grid.tasks = task_sets(tasks)
        if grid.kind == "concurrency":
            check_fits_orchestrator(orch, "concurrency", int(max(grid.loads)))
        else:
            check_fits_orchestrator(orch, "max_concurrency", max_concurrency)
        return grid

    def points(self) -> list[tuple[str, str | None, str, float]]:
        """Every (agent, model, task label, load), loads varying fastest."""
        return [
            (a, m, t, load)
            for a in self.agents
            for m in self.models
            for t in self.tasks
            for load in self.loads
        ]


@dataclass
class SweepResult:
    """The runs of one sweep (:attr:`results`, in order) with their settings and environment."""

    results: list[BenchResult]
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def frame(self, *, brief: bool = False) -> pd.DataFrame:
        """One tidy row per agent x model x tasks x load: every percentile of every metric
        (seconds), throughput, output tokens/s, goodput (NaN without an SLO), cost per call
        and per 1,000 calls, and ``errors_<Type>`` counts. ``brief``: the main columns only
        (what ``%agent bench`` shows)."""
        import pandas as pd

        kinds = sorted({k for r in self.results for k in r.errors_by_type})
        rows = []
        for r in self.results:
            row = r.summary()
            row.update({f"errors_{k}": r.errors_by_type.get(k, 0) for k in kinds})
            rows.append(row)
        frame: pd.DataFrame = pd.DataFrame(rows)
        return brief_frame(frame) if brief else frame

    def compare(self, other: SweepResult, columns: Sequence[str] = COMPARED) -> pd.DataFrame:
        """A before (``self``) / after (``other``) table: a row per matching agent x model x
        tasks x load and metric, with ``change`` and ``change_pct``. Rows present in only
        one sweep appear with NaN on the other side."""
        import pandas as pd

        before, after = self.frame(), other.frame()
        keep = [c for c in columns if c in before.columns or c in after.columns]
        merged = before.reindex(columns=[*KEYS, *keep]).merge(
            after.reindex(columns=[*KEYS, *keep]),
            on=list(KEYS),
            how="outer",
            suffixes=("_before", "_after"),
        )
        rows = []
        for _, rec in merged.iterrows():
            for col in keep:
                b, a = float(rec[f"{col}_before"]), float(rec[f"{col}_after"])
                change = a - b
                pct = 100 * change / b if b not in (0.0,) and not math.isnan(b) else math.nan
                rows.append(
                    {
                        **{k: rec[k] for k in KEYS},
                        "metric": col,
                        "before": b,
                        "after": a,
                        "change": change,
                        "change_pct": pct,
                    }
                )
        frame: pd.DataFrame = pd.DataFrame(rows)
        return frame

    def plot(self, kind: str = "all", *, metric: str = "e2e", quantile: float = 0.5) -> Any:
        """A matplotlib Figure: ``"throughput"`` (latency pNN vs throughput across the
        sweep), ``"box"`` / ``"violin"`` (``metric`` by agent x model x load), ``"cdf"``
        (TTFT and e2e), or ``"all"`` (the three in one figure)."""
        from . import plots

        return plots.figure(self.results, kind=kind, metric=metric, quantile=quantile)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """One JSON document: schema, settings, environment (machine, package and SDK
        versions), and for each run its summary row and every call; written to ``path`` too
        when given. Task texts are not included (a digest of each set is)."""
        doc = {
            "schema": JSON_SCHEMA,
            "settings": self.settings,
            "environment": self.environment,
            "runs": [_run_doc(r) for r in self.results],
        }
        text = json.dumps(_jsonable(doc), allow_nan=False, indent=1)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> SweepResult:
        """A sweep back from :meth:`to_json`'s text or a path to it (to compare runs later).

        Raises ``ConfigurationError`` when it is not such a document."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
            if doc.get("schema") != JSON_SCHEMA:
                raise ValueError(f"schema is {doc.get('schema')!r}, not {JSON_SCHEMA!r}")
            results = [_run_from(run) for run in doc["runs"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"not a benchmark sweep document: {exc}") from None
        return cls(results, doc.get("settings", {}), doc.get("environment", {}))

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"SweepResult({len(self.results)} runs: agents={s.get('agents')} "
            f"models={s.get('models')} {s.get('load')}={s.get('loads')})"
        )


def _run_doc(r: BenchResult) -> dict[str, Any]:
    return {
        "agent": r.agent,
        "model": r.model,
        "tasks": r.tasks,
        "n": r.n,
        "concurrency": r.concurrency,
        "rate": r.rate,
        "burstiness": r.burstiness,
        "warmup": r.warmup,
        "slo": str(r.slo) if r.slo else None,
        "wall_s": r.wall_s,
        "summary": r.summary(),
        "samples": [asdict(s) for s in r.samples],
        "itl_gaps": list(r.itl_gaps),
    }


def _run_from(run: Mapping[str, Any]) -> BenchResult:
    rate = run["rate"]
    return BenchResult(
        agent=run["agent"],
        model=run["model"],
        n=int(run["n"]),
        concurrency=int(run["concurrency"]),
        wall_s=float(run["wall_s"]),
        samples=samples_from(run["samples"]),
        rate=math.inf if rate == "inf" else rate,
        burstiness=float(run["burstiness"]),
        warmup=int(run["warmup"]),
        slo=SLO.parse(run["slo"]) if run.get("slo") else None,
        tasks=run.get("tasks", ""),
        itl_gaps=array("d", run.get("itl_gaps", [])),
    )


def _digest(tasks: list[str] | None) -> dict[str, Any]:
    if tasks is None:
        return {"generated": True}
    blob = "\x00".join(tasks).encode("utf-8")
    return {"count": len(tasks), "sha256": hashlib.sha256(blob).hexdigest()}


def _jsonable(value: Any) -> Any:
    """``value`` with NaN as None, ``inf`` as ``"inf"`` and anything odd as its ``str``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return "inf" if math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Where and with what a run was made: time, machine, Python, package and SDK versions."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
        "python": sys.version.split()[0],
        "versions": {
            name: _version(name)
            for name in ("claude-force-magic", "anthropic", "httpx", "pandas", "matplotlib")
        },
    }
