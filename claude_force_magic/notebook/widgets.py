"""The ``%agent stats`` dashboard and the ``%agent bench`` progress bar.

The dashboard is three ipywidgets ``HTML`` panes (cache, latency, spend) that are refreshed after
every ``%%agent`` cell. It is displayed as one bundle holding the widget view *and* the same
content as ``text/html``, kept current with ``update_display``: a front-end without widget
support (nbconvert, GitHub, a plain kernel client) renders the HTML tables instead. In a
terminal IPython the tables are printed as text.

ipywidgets is imported only when a dashboard or progress bar is shown.
"""

from __future__ import annotations

import contextlib
import html
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import AgentSession, Mode

__all__ = [
    "TEXT_WIDTH",
    "WIDGET_VIEW",
    "Progress",
    "StatsDashboard",
    "WidgetBar",
    "html_table",
    "stats_sections",
    "widget_view",
]

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
_STREAM_FIELDS = (
    "mode",
    "agent_name",
    "model",
    "streamed",
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "tpot_p50",
    "tpot_p90",
    "tpot_p99",
    "tokens_per_s",
)
#: Widest line of a text table (a terminal's default width); wider tables become records.
TEXT_WIDTH = 80
_STREAMING_TITLE = "Streaming (seconds; TTFT = time to first token, TPOT = per output token)"
#: What an empty section says.
_EMPTY = {"Cache": "no cache entries yet", _STREAMING_TITLE: "no streamed calls yet"}
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


def html_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], empty: str = "no calls yet"
) -> str:
    """A small escaped HTML table; one row saying ``empty`` when there is nothing to show."""
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
        or f"<tr><td colspan='{len(columns)}' style='{_CELL_STYLE}'>{html.escape(empty)}</td></tr>"
    )
    return f"<table style='{_TABLE_STYLE}'><tr>{head}</tr>{body}</table>"


def _text_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    empty: str = "no calls yet",
    width: int = TEXT_WIDTH,
) -> str:
    """Rows as aligned text no wider than ``width``; a wider table becomes one record per row.

    A record is the row's identifying values (the leading text columns) on one line, then
    ``column=value`` pairs wrapped at ``width``; words and values are never broken.
    """
    cells = [list(columns)] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    if not rows:
        return "\n".join([*lines[:1], f"({empty})"]) if len(lines[0]) <= width else f"({empty})"
    if max(map(len, lines)) <= width:
        return "\n".join(lines)
    keys = _key_columns(rows, columns)
    out: list[str] = []
    for row in rows:
        label = " · ".join(_label(c, row.get(c)) for c in columns[:keys])
        pairs = "  ".join(f"{c}={_fmt(row.get(c))}" for c in columns[keys:])
        out += _wrap(label, width, "")
        out += _wrap(pairs, width, "    ")
    return "\n".join(out)


def _label(column: str, value: Any) -> str:
    """A row's identifying value; a yes/no one says what it is ("cached", "not cached")."""
    if isinstance(value, bool):
        return column if value else f"not {column}"
    return _fmt(value)


def _key_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> int:
    """How many leading columns identify a row (text or yes/no values, not numbers)."""
    for index, column in enumerate(columns):
        values = [r.get(column) for r in rows]
        if all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
        ):
            return max(index, 1)
    return 1


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def stats_sections(session: AgentSession) -> list[tuple[str, list[dict[str, Any]], Sequence[str]]]:
    """``(title, rows, columns)`` for the cache, latency, streaming, spend and budget sections.

    The streaming section shows, beside the end-to-end latency, the TTFT and TPOT percentiles
    and output tokens per second of the successful streamed live calls.

    Live and simulated calls are recorded apart and shown apart (a ``mode`` column): spend is
    one row per mode, never a sum of real and pretend dollars. The cache rows come from the
    cache's own statistics, so they show what is on disk before this session's first call.
    """
    from .session import Mode

    cache_rows: list[dict[str, Any]] = []
    spend_rows: list[dict[str, Any]] = []
    orchestrators = session.live_orchestrators()
    for mode in Mode:
        orch = orchestrators.get(mode)
        stats = _cache_stats(session, mode, orch)
        if stats is not None:
            cache_rows.append({"mode": mode.label, **{k: stats.get(k) for k in _CACHE_FIELDS}})
        if orch is None:
            continue
        spend_rows.append(
            {
                "mode": mode.label,
                "spent_usd": orch.spent_usd,
                "budget_usd": orch.budget_usd,
                "budget_left": orch.budget_remaining,
            }
        )
    summary: list[dict[str, Any]] = []
    prompt_cache: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    streaming: list[dict[str, Any]] = []
    for mode in Mode:
        metrics = session.metrics(mode)
        totals = metrics.totals()
        summary.append(
            {
                "mode": mode.label,
                "calls": totals.get("calls"),
                "cached_calls": totals.get("cached_calls"),
                "errors": totals.get("errors"),
                "spent_usd": totals.get("cost_usd"),
                "saved_usd": totals.get("saved_usd"),
            }
        )
        if totals.get("cache_read_tokens") or totals.get("cache_write_tokens"):
            prompt_cache.append({"mode": mode.label, **_prompt_cache_row(totals)})
        latency.extend({"mode": mode.label, **r} for r in metrics.latency_percentiles())
        streaming.extend({"mode": mode.label, **r} for r in metrics.stream_percentiles())
    sections: list[tuple[str, list[dict[str, Any]], Sequence[str]]] = [
        ("Cache", cache_rows, ("mode", *_CACHE_FIELDS)),
        ("Latency (seconds; by mode, cache hits apart)", latency, _LATENCY_FIELDS),
        (_STREAMING_TITLE, streaming, _STREAM_FIELDS),
        ("Spend", summary, ("mode", "calls", "cached_calls", "errors", "spent_usd", "saved_usd")),
        ("Budget", spend_rows, ("mode", "spent_usd", "budget_usd", "budget_left")),
        (_PROMPT_CACHE_TITLE, prompt_cache, _PROMPT_CACHE_FIELDS),
    ]
    team = team_rows(orchestrators)
    if team:  # only with the team switch on (docs/team.md)
        sections.append(("Team (shared through Redis)", team, _TEAM_FIELDS))
    return sections


_TEAM_FIELDS = (
    "mode",
    "connected",
    "team_spent_usd",
    "own_spent_usd",
    "team_reserved_usd",
    "pending_charges",
    "team_cache_hits",
    "team_cache_misses",
    "requests_left",
    "requests_per_minute",
)


def team_rows(orchestrators: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """One row per mode whose orchestrator shares a team's Redis: the team's spend beside
    this kernel's own, the shared cache's hits and the rate limiter's requests bucket (the
    team's, or this kernel's while Redis is down: ``connected`` says which)."""
    rows: list[dict[str, Any]] = []
    for mode, orch in orchestrators.items():
        team = getattr(orch, "team", None)
        if team is None:
            continue
        figures = team.figures()
        bucket = (figures.get("limits") or {}).get("requests") or {}
        rows.append(
            {
                "mode": mode.label,
                **{k: figures.get(k) for k in _TEAM_FIELDS[1:8]},
                "requests_left": bucket.get("level"),
                "requests_per_minute": bucket.get("per_minute"),
            }
        )
    return rows


#: The prompt-cache section of ``%agent stats``: its own table, apart from the response
#: cache's ``saved_usd`` in "Spend" (a different saving).
_PROMPT_CACHE_TITLE = "Prompt cache (tokens the API read from / wrote to its cache)"
_PROMPT_CACHE_FIELDS = ("mode", "read_tokens", "write_5m_tokens", "write_1h_tokens", "saved_usd")


def _prompt_cache_row(totals: dict[str, Any]) -> dict[str, Any]:
    written = int(totals.get("cache_write_tokens") or 0)
    one_hour = int(totals.get("cache_write_1h_tokens") or 0)
    return {
        "read_tokens": int(totals.get("cache_read_tokens") or 0),
        "write_5m_tokens": written - one_hour,
        "write_1h_tokens": one_hour,
        "saved_usd": totals.get("prompt_cache_saved_usd"),
    }


def _empty(title: str) -> str:
    if title == _PROMPT_CACHE_TITLE:
        return "no call read or wrote the prompt cache yet"
    return _EMPTY.get(title, "no calls yet")


def team_cache_stats(orch: Any) -> dict[str, Any] | None:
    """The statistics of the team's Redis cache that ``orch`` (in team mode) stores answers
    in, else None. Raises ``TeamDown`` while Redis cannot be reached."""
    from ..cache.redis import RedisResponseCache

    team = orch.team
    shared = None if team is None else team.team_store
    if shared is None:
        return None
    remote = shared.remote
    if not isinstance(remote, RedisResponseCache):
        return None
    return dict(team.link.call(remote.get_stats))


def _cache_stats(session: AgentSession, mode: Mode, orch: Any) -> dict[str, Any] | None:
    """The cache's own statistics (shared on disk, so they predate this session's calls).

    Read from the orchestrator's cache when one is built (in team mode: the team's Redis
    cache, which its cells use); else from the cache directory when
    it exists (opened read-only in effect: nothing is looked up or stored). None when there is
    no cache, or it cannot be opened (the dashboard never fails because of the cache).
    """
    if orch is not None and orch.team is not None:
        with contextlib.suppress(Exception):  # Redis down: the team section says so
            return team_cache_stats(orch)
        return None
    if orch is not None:
        return None if orch.cache is None else dict(orch.cache.get_stats())
    cfg = session.config()
    directory = session.cache_dir(mode)
    if not cfg.enable_cache or not directory.is_dir():
        return None
    from ..cache.store import ResponseCache

    with contextlib.suppress(Exception), ResponseCache(directory, ttl_hours=cfg.ttl_hours) as c:
        return dict(c.get_stats())
    return None


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
            f"<b>{html.escape(title)}</b>" + html_table(rows, cols, _empty(title))
            for title, rows, cols in stats_sections(self._session)
        ]
        stamp = time.strftime("%H:%M:%S")
        return "<div>" + "".join(parts) + f"<sub style='color:#777'>updated {stamp}</sub></div>"

    def text(self) -> str:
        """The whole dashboard as plain text."""
        return "\n\n".join(
            f"{title}\n{_text_table(rows, cols, _empty(title))}"
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
            widgets.HTML(f"<b>{html.escape(t)}</b>" + html_table(r, c, _empty(t)))
            for t, r, c in sections
        ]
        self._box = widgets.VBox(self._panes)
        self._handle = show(self._bundle(content), raw=True, display_id=True)

    def _bundle(self, content: str) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/html": content, "text/plain": self.text()}
        if self._box is not None:
            bundle[WIDGET_VIEW] = widget_view(self._box)
        return bundle

    def refresh(self) -> None:
        """Recompute every section and update the widgets and the HTML fallback."""
        if not self._notebook or self._handle is None:
            return
        sections = stats_sections(self._session)
        for pane, (title, rows, cols) in zip(self._panes, sections, strict=False):
            pane.value = f"<b>{html.escape(title)}</b>" + html_table(rows, cols, _empty(title))
        self._handle.update(self._bundle(self.html()), raw=True)


#: The MIME type of a widget's view in a display bundle.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_view(widget: Any) -> dict[str, Any]:
    """The :data:`WIDGET_VIEW` entry of a display bundle that shows ``widget``."""
    return {"model_id": widget.model_id, "version_major": 2, "version_minor": 0}


class WidgetBar:
    """An ipywidgets ``IntProgress`` with a text beside it, displayed with a ``display_id`` as
    one bundle whose ``text/plain`` line stands in for front-ends that do not render widgets
    (nbconvert, GitHub). Widget changes are comm messages, which ipykernel sends from any
    thread, so :attr:`bar` and :attr:`text` may be set from a background thread.

    Used by :class:`Progress` (``%agent bench``, multi-agent cells) and ``%agent batch``.
    """

    def __init__(self) -> None:
        self.bar: Any = None
        self.text: Any = None
        self._box: Any = None
        self._handle: Any = None

    def open(
        self, total: int, text: str, plain: str, *, as_html: bool = False, description: str = ""
    ) -> bool:
        """Display the bar at 0 of ``total`` with ``text`` beside it (an ``HTML`` widget when
        ``as_html``, else a ``Label``) and ``plain`` as the text form. False (nothing shown)
        when ipywidgets is not installed: the caller falls back to text."""
        try:
            import ipywidgets as widgets

            from .display import show
        except ImportError:
            return False
        self.bar = widgets.IntProgress(value=0, min=0, max=total, description=description)
        self.text = widgets.HTML(text) if as_html else widgets.Label(text)
        self._box = widgets.HBox([self.bar, self.text])
        self._handle = show(self._bundle(plain), raw=True, display_id=True)
        return True

    def _bundle(self, plain: str) -> dict[str, Any]:
        return {"text/plain": plain, WIDGET_VIEW: widget_view(self._box)}

    def finish(self, style: str, plain: str) -> None:
        """Colour the bar (``success``, ``warning`` or ``danger``) and show ``plain`` as the
        display's text form from now on."""
        self.bar.bar_style = style
        self._handle.update(self._bundle(plain), raw=True)


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
        self._widget = WidgetBar()
        self._done = -1
        self._note = ""

    def show(self) -> None:
        """Display the bar at 0."""
        if self._notebook and not self._widget.open(
            self.total, f"0/{self.total}", self._plain(0), description=self._label[:20]
        ):
            self._notebook = False
        self.update(0)

    def _plain(self, done: int, note: str = "") -> str:
        head = f"{self._label}: " if self._label else ""
        return f"{head}{done}/{self.total}{note}"

    def update(self, done: int, note: str = "", *, total: int | None = None) -> None:
        """Show ``done`` of ``total`` (cheap when nothing changed); ``total`` may change (a
        run of a given duration learns its size as it goes)."""
        if total is not None and total != self.total:
            self.total = total
            if self._widget.bar is not None:
                self._widget.bar.max = total
        elif done == self._done and (not note or note == self._note):
            return
        self._done, self._note = done, note
        if self._widget.bar is not None:
            self._widget.bar.value = done
            self._widget.text.value = f"{done}/{self.total} {note}".rstrip()
            return
        width = 30
        filled = int(width * done / max(1, self.total))
        sys.stdout.write(
            f"\r{self._label} [{'#' * filled}{' ' * (width - filled)}] {done}/{self.total} {note}"
        )
        sys.stdout.flush()

    def close(self) -> None:
        """Finish the bar (a newline for the text form)."""
        if self._widget.bar is not None:
            self._widget.finish("success", self._plain(max(self._done, 0), " done"))
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
