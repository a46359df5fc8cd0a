"""The ``%agent stats`` dashboard and the ``%agent bench`` progress bar.

The dashboard is three ipywidgets ``HTML`` panes (cache, latency, spend) that are refreshed after
every ``%%agent`` cell. It is displayed as one bundle holding the widget view *and* the same
content as ``text/html``, kept current with ``update_display``: a front-end without widget
support (nbconvert, GitHub, a plain kernel client) renders the HTML tables instead. In a
terminal IPython the tables are printed as text.

ipywidgets is imported only when a dashboard or progress bar is shown.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import AgentSession

__all__ = ["Progress", "StatsDashboard", "html_table", "stats_sections"]

_CACHE_FIELDS = (
    "entries",
    "size_bytes",
    "hits",
    "misses",
    "hit_rate",
    "integrity_failures",
    "evictions",
)
_LATENCY_FIELDS = (
    "mode",
    "agent_name",
    "model",
    "cached",
    "count",
    "p50",
    "p90",
    "p95",
    "p99",
    "mean",
    "max",
)
_TABLE_STYLE = "border-collapse:collapse;font-size:12px;margin:2px 0 8px 0"
_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A small escaped HTML table; an em dash row when there is nothing to show."""
    head = "".join(f"<th style='{_CELL_STYLE}'>{html.escape(c)}</th>" for c in columns)
    body = (
        "".join(
            "<tr>"
            + "".join(
                f"<td style='{_CELL_STYLE}'>{html.escape(_fmt(r.get(c)))}</td>" for c in columns
            )
            + "</tr>"
            for r in rows
        )
        or f"<tr><td colspan='{len(columns)}' style='{_CELL_STYLE}'>no calls yet</td></tr>"
    )
    return f"<table style='{_TABLE_STYLE}'><tr>{head}</tr>{body}</table>"


def _text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [list(columns)] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines if rows else [*lines, "(no calls yet)"])


def stats_sections(session: AgentSession) -> list[tuple[str, list[dict[str, Any]], Sequence[str]]]:
    """``(title, rows, columns)`` for the cache, latency, spend and budget sections.

    Live and simulated calls are recorded apart and shown apart (a ``mode`` column): spend is
    one row per mode, never a sum of real and pretend dollars.
    """
    from .session import MODES

    cache_rows: list[dict[str, Any]] = []
    spend_rows: list[dict[str, Any]] = []
    for simulated, orch in sorted(session.live_orchestrators().items()):
        mode = "simulated" if simulated else "live"
        if orch.cache is not None:
            stats = orch.cache.get_stats()
            cache_rows.append({"mode": mode, **{k: stats.get(k) for k in _CACHE_FIELDS}})
        spend_rows.append(
            {
                "mode": mode,
                "spent_usd": orch.spent_usd,
                "budget_usd": orch.budget_usd,
                "budget_left": orch.budget_remaining,
            }
        )
    summary: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    for simulated, mode in MODES:
        metrics = session.metrics(simulated)
        totals = metrics.totals()
        summary.append(
            {
                "mode": mode,
                "calls": totals.get("calls"),
                "cached_calls": totals.get("cached_calls"),
                "errors": totals.get("errors"),
                "spent_usd": totals.get("cost_usd"),
                "saved_usd": totals.get("saved_usd"),
            }
        )
        latency.extend({"mode": mode, **r} for r in metrics.latency_percentiles())
    return [
        ("Cache", cache_rows, ("mode", *_CACHE_FIELDS)),
        ("Latency (seconds; by mode, cache hits apart)", latency, _LATENCY_FIELDS),
        ("Spend", summary, ("mode", "calls", "cached_calls", "errors", "spent_usd", "saved_usd")),
        ("Budget", spend_rows, ("mode", "spent_usd", "budget_usd", "budget_left")),
    ]


class StatsDashboard:
    """A live view of the session's cache, latency and spend (refresh with :meth:`refresh`).

    Kernel thread only. ``notebook=False`` prints text tables instead of displaying widgets.
    """

    def __init__(self, session: AgentSession, *, notebook: bool = True) -> None:
        self._session = session
        self._notebook = notebook
        self._panes: list[Any] = []
        self._box: Any = None
        self._handle: Any = None

    def html(self) -> str:
        """The whole dashboard as HTML (the fallback and the widgets' content)."""
        parts = [
            f"<b>{html.escape(title)}</b>" + html_table(rows, cols)
            for title, rows, cols in stats_sections(self._session)
        ]
        stamp = time.strftime("%H:%M:%S")
        return "<div>" + "".join(parts) + f"<sub style='color:#777'>updated {stamp}</sub></div>"

    def text(self) -> str:
        """The whole dashboard as plain text."""
        return "\n\n".join(
            f"{title}\n{_text_table(rows, cols)}"
            for title, rows, cols in stats_sections(self._session)
        )

    def show(self) -> None:
        """Display the dashboard (widgets with an HTML fallback; text in a terminal)."""
        if not self._notebook:
            print(self.text())
            return
        from .display import show

        sections = stats_sections(self._session)
        content = self.html()
        try:
            import ipywidgets as widgets
        except ImportError:  # no widget library: the HTML tables are the dashboard
            self._handle = show({"text/html": content}, raw=True, display_id=True)
            return
        self._panes = [
            widgets.HTML(f"<b>{html.escape(t)}</b>" + html_table(r, c)) for t, r, c in sections
        ]
        self._box = widgets.VBox(self._panes)
        self._handle = show(self._bundle(content), raw=True, display_id=True)

    def _bundle(self, content: str) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/html": content, "text/plain": self.text()}
        if self._box is not None:
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "model_id": self._box.model_id,
                "version_major": 2,
                "version_minor": 0,
            }
        return bundle

    def refresh(self) -> None:
        """Recompute every section and update the widgets and the HTML fallback."""
        if not self._notebook or self._handle is None:
            return
        sections = stats_sections(self._session)
        for pane, (title, rows, cols) in zip(self._panes, sections, strict=False):
            pane.value = f"<b>{html.escape(title)}</b>" + html_table(rows, cols)
        self._handle.update(self._bundle(self.html()), raw=True)


class Progress:
    """A progress bar for the kernel thread: ipywidgets ``IntProgress`` or a text line.

    The widget is displayed with a ``text/plain`` line as well, updated when the bar closes,
    so a front-end that does not render widgets (nbconvert, GitHub) shows "label: n/n done"
    instead of the widget's repr stuck at 0.
    """

    def __init__(self, total: int, *, notebook: bool, label: str = "") -> None:
        self.total = total
        self._notebook = notebook
        self._label = label
        self._bar: Any = None
        self._text: Any = None
        self._box: Any = None
        self._handle: Any = None
        self._done = -1

    def show(self) -> None:
        """Display the bar at 0."""
        if self._notebook:
            try:
                import ipywidgets as widgets

                from .display import show
            except ImportError:
                self._notebook = False
            else:
                self._bar = widgets.IntProgress(
                    value=0, min=0, max=self.total, description=self._label[:20]
                )
                self._text = widgets.Label(f"0/{self.total}")
                self._box = widgets.HBox([self._bar, self._text])
                self._handle = show(self._bundle(0), raw=True, display_id=True)
        self.update(0)

    def _bundle(self, done: int, note: str = "") -> dict[str, Any]:
        head = f"{self._label}: " if self._label else ""
        return {
            "text/plain": f"{head}{done}/{self.total}{note}",
            "application/vnd.jupyter.widget-view+json": {
                "model_id": self._box.model_id,
                "version_major": 2,
                "version_minor": 0,
            },
        }

    def update(self, done: int, note: str = "") -> None:
        """Show ``done`` of ``total`` (cheap when nothing changed)."""
        if done == self._done:
            return
        self._done = done
        if self._bar is not None:
            self._bar.value = done
            self._text.value = f"{done}/{self.total} {note}".rstrip()
            return
        width = 30
        filled = int(width * done / max(1, self.total))
        sys.stdout.write(
            f"\r{self._label} [{'#' * filled}{' ' * (width - filled)}] {done}/{self.total} {note}"
        )
        sys.stdout.flush()

    def close(self) -> None:
        """Finish the bar (a newline for the text form)."""
        if self._bar is not None:
            self._bar.bar_style = "success"
            self._handle.update(self._bundle(max(self._done, 0), " done"), raw=True)
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
