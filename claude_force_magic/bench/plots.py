"""The plots people expect from a serving benchmark, as matplotlib figures.

Each function draws into a given Axes (or a new one on its own ``Figure``: pyplot's global
state is never touched, so nothing depends on the notebook's backend) and returns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..metrics import percentile
from .result import METRICS, BenchResult

__all__ = ["cdf", "distribution", "figure", "latency_vs_throughput"]

KINDS = ("all", "throughput", "box", "violin", "cdf")


def _axes(ax: Any, size: tuple[float, float] = (7, 3.6)) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size).subplots()


def _series(results: Sequence[BenchResult]) -> dict[str, list[BenchResult]]:
    """Results grouped by agent · model (· tasks), in sweep order."""
    groups: dict[str, list[BenchResult]] = {}
    for r in results:
        label = " · ".join(p for p in (r.agent, r.model, r.tasks) if p)
        groups.setdefault(label, []).append(r)
    return groups


def latency_vs_throughput(
    results: Sequence[BenchResult], *, metric: str = "e2e", quantile: float = 0.5, ax: Any = None
) -> Any:
    """One line per agent x model: throughput (calls/s) against the ``quantile`` of ``metric``,
    each point labelled with its load. Where the line turns up is where latency breaks."""
    _check(metric)
    ax = _axes(ax)
    for label, runs in _series(results).items():
        points = [
            (r.throughput, percentile(v, quantile), r.load) for r in runs if (v := r.values(metric))
        ]
        if not points:
            continue
        xs = [x for x, _, _ in points]
        ys = [y for _, y, _ in points]
        ax.plot(xs, ys, marker="o", label=label)
        for x, y, load in points:
            ax.annotate(
                load.split("=")[1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    ax.set_xlabel("throughput (successful calls/s)")
    ax.set_ylabel(f"{metric} p{quantile * 100:g} (s)")
    ax.set_title(f"{metric} p{quantile * 100:g} vs throughput")
    _legend(ax)
    return ax


def distribution(
    results: Sequence[BenchResult], *, metric: str = "ttft", kind: str = "box", ax: Any = None
) -> Any:
    """A box (or violin) of ``metric`` per agent x model x load."""
    _check(metric)
    if kind not in ("box", "violin"):
        raise ConfigurationError(f"kind must be 'box' or 'violin', got {kind!r}")
    ax = _axes(ax)
    data, labels = [], []
    for r in results:
        values = r.values(metric)
        if values:
            data.append(values)
            labels.append("\n".join(p for p in (r.agent, r.model, r.tasks, r.load) if p))
    if data:
        positions = list(range(1, len(data) + 1))
        if kind == "box":
            ax.boxplot(data, positions=positions, showfliers=False)
        else:
            ax.violinplot(data, positions=positions, showmedians=True)
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel(f"{metric} (s)")
    ax.set_title(f"{metric} by agent x model x load")
    return ax


def cdf(
    results: Sequence[BenchResult], *, metrics: Sequence[str] = ("ttft", "e2e"), ax: Any = None
) -> Any:
    """Empirical CDFs of ``metrics`` (solid, dashed, dotted... in that order), one colour per
    run; the legend names each run once."""
    ax = _axes(ax)
    styles = ("-", "--", ":", "-.")
    for metric in metrics:
        _check(metric)
    for i, r in enumerate(results):
        colour = f"C{i % 10}"
        label: str | None = " · ".join(p for p in (r.agent, r.model, r.tasks, r.load) if p)
        for metric, style in zip(metrics, styles, strict=False):
            values = sorted(r.values(metric))
            if values:
                ys = [(k + 1) / len(values) for k in range(len(values))]
                ax.step(values, ys, where="post", linestyle=style, color=colour, label=label)
                label = None
    ax.set_xlabel("seconds")
    ax.set_ylabel("fraction of calls")
    ax.set_ylim(0, 1.02)
    named = ", ".join(
        f"{m} ({n})"
        for m, n in zip(metrics, ("solid", "dashed", "dotted", "dash-dot"), strict=False)
    )
    ax.set_title(f"CDF: {named}")
    _legend(ax)
    return ax


def figure(
    results: Sequence[BenchResult],
    *,
    kind: str = "all",
    metric: str = "e2e",
    quantile: float = 0.5,
) -> Any:
    """A Figure of ``kind`` (see :data:`KINDS`); ``all`` stacks the three plots."""
    from matplotlib.figure import Figure

    if kind not in KINDS:
        raise ConfigurationError(f"plot kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "all":
        fig = Figure(figsize=(8, 11), layout="constrained")
        top, middle, bottom = fig.subplots(3, 1)
        latency_vs_throughput(results, metric=metric, quantile=quantile, ax=top)
        distribution(results, metric="ttft" if metric == "e2e" else metric, ax=middle)
        cdf(results, ax=bottom)
        return fig
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    if kind == "throughput":
        latency_vs_throughput(results, metric=metric, quantile=quantile, ax=ax)
    elif kind == "cdf":
        cdf(results, ax=ax)
    else:
        distribution(results, metric=metric, kind=kind, ax=ax)
    return fig


def _check(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigurationError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
