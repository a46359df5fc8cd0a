"""The cache inspector that ``%agent cache`` opens: filter, sort, page, preview and act on
cached answers.

Layout (ipywidgets): a health header (entries, size against the limit, hit rates, money saved,
integrity failures, evictions, oldest and newest entry, a plot of hits and misses per minute);
filters (agent, model, age, text); one button per sortable column (click again to reverse);
a list of the page's entries (pages of 100; pick one or several); a preview pane that
renders the first picked answer through :mod:`.render`, exactly as a cell would; actions on
the picked entries: delete, extend TTL, refresh (re-run live and replace: it costs money, so
it asks first) and export (JSON lines).

The same display carries a ``text/html`` table of the first page (and a ``text/plain``
summary) for front-ends that do not render widgets. Nothing shown can execute in the browser:
answers go through the safe renderer; every other string (previews, agent names, messages)
is escaped, or set as widget *text* (option labels, button descriptions), never as HTML.

The state and the actions live in :class:`CacheInspector` and work without widgets (tests and
scripts drive them directly); :meth:`CacheInspector.show` builds the widgets on top.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..cache.inspect import SORTS, CacheView, Health, Page, Query, health
from ..errors import CacheError, ClaudeForceError, IntegrityError
from .render import NO_MATH, escape, output_html

if TYPE_CHECKING:
    from ..cache.store import ResponseCache
    from .session import AgentSession

__all__ = [
    "AGES",
    "CacheInspector",
    "Refresher",
    "activity_svg",
    "export_entries",
    "health_html",
    "health_text",
    "show_health",
]

#: Re-runs one entry live and replaces it; returns a one-line outcome (raises to refuse).
Refresher = Callable[[dict[str, Any]], str]
#: The age filter's choices: label -> (newer_than_hours, older_than_hours).
AGES: dict[str, tuple[float | None, float | None]] = {
    "any age": (None, None),
    "last hour": (1.0, None),
    "last day": (24.0, None),
    "last week": (168.0, None),
    "older than a day": (None, 24.0),
    "older than a week": (None, 168.0),
}
#: Column header -> the sort it selects (None: not sortable).
COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("key", None),
    ("agent", "agent"),
    ("model", "model"),
    ("age", "age"),
    ("hits", "hits"),
    ("saved", "saved"),
    ("size", "size"),
    ("task", None),
)
_ALL = "(all)"
#: Our own static style for the widget (no text from the cache): a monospaced entry list.
_STYLE = "<style>.cfm-rows select { font-family: monospace; font-size: 11px; }</style>"
_TABLE = "border-collapse:collapse;font-size:12px"
_CELL = "padding:1px 6px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap"


# -- formatting ----------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _size(count: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


#: Widths of the list's columns (the list is monospaced; the task column is last).
_WIDTHS = (8, 20, 18, 6, 5, 8, 9)
_RIGHT = frozenset({3, 4, 5, 6})


def _line(row: dict[str, Any], now: float) -> str:
    """One entry as a line of the list, in aligned columns."""
    cells = _cells(row, now)
    padded = [
        cell[:width].rjust(width) if i in _RIGHT else cell[:width].ljust(width)
        for i, (cell, width) in enumerate(zip(cells, _WIDTHS, strict=False))
    ]
    return "  ".join([*padded, cells[-1]])


def _cells(row: dict[str, Any], now: float) -> list[str]:
    """One entry as the table's cell texts (plain text: escape before use as HTML)."""
    return [
        row["key"][:8],
        row["agent_name"],
        row["model"],
        _age(now - row["created_at"]),
        f"{row['hits']:,}",
        f"${row['saved_usd']:.4f}",
        _size(row["size_bytes"]),
        (row["preview"] or "(no preview: stored by an older version)").replace("\n", " ")[:70],
    ]


def health_parts(found: Health) -> list[str]:
    """The health summary as short phrases (joined with `` · ``)."""
    parts = [
        f"{found.entries:,} entr{'y' if found.entries == 1 else 'ies'}",
        f"{_size(found.size_bytes)} of {_size(found.max_size_bytes)}",
        f"hit rate {_rate(found.hit_rate_last_hour)} last hour, {_rate(found.hit_rate)} all time",
        f"{found.hits:,} hit{'' if found.hits == 1 else 's'}, {found.misses:,}"
        f" miss{'' if found.misses == 1 else 'es'}",
        f"saved ${found.saved_usd:.4f}",
        f"integrity failures {found.integrity_failures:,}",
        f"evictions {found.evictions:,}",
        f"expired {found.expirations:,}",
        f"oldest {_when(found.oldest)}",
        f"newest {_when(found.newest)}",
    ]
    return [*parts, "read-only"] if found.read_only else parts


def team_health_parts(stats: dict[str, Any]) -> list[str]:
    """The team's Redis cache (its ``get_stats()``) as short phrases (joined with `` · ``)."""
    hits, misses = stats["hits"], stats["misses"]
    return [
        f"{stats['entries']:,} entr{'y' if stats['entries'] == 1 else 'ies'}",
        f"{_size(stats['size_bytes'])} of {_size(stats['max_size_bytes'])}",
        f"{hits:,} hit{'' if hits == 1 else 's'}, {misses:,} miss{'' if misses == 1 else 'es'}"
        + (f" (hit rate {stats['hit_rate']:.0%})" if hits + misses else ""),
        f"integrity failures {stats['integrity_failures']:,}",
        f"evictions {stats['evictions']:,}",
        f"expired {stats['expirations']:,}",
    ]


def team_health_title(stats: dict[str, Any]) -> str:
    """Which team cache the phrases describe (the URL's password is already masked)."""
    return f"Team cache (Redis at {stats['url']}, namespace {stats['namespace']!r})"


def health_text(found: Health, width: int = 80) -> str:
    """The health summary as lines no wider than ``width`` (phrases are never broken)."""
    lines: list[str] = []
    for part in health_parts(found):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def activity_svg(
    activity: Sequence[tuple[float, int, int]], now: float, *, width: int = 300, height: int = 40
) -> str:
    """A bar plot of hits (green) and misses (grey) per minute over the last hour, as SVG.

    Built from numbers only (no text from the cache), so it is safe to embed. An hour without
    a lookup says so in the box rather than showing it empty.
    """
    first = (int(now // 60) - 59) * 60
    per = dict.fromkeys(range(60), (0, 0))
    for start, hits, misses in activity:
        slot = int((start - first) // 60)
        if 0 <= slot < 60:
            per[slot] = (hits, misses)
    top = max((h + m for h, m in per.values()), default=0) or 1
    bar = width / 60
    rects = []
    for slot, (hits, misses) in per.items():
        x = slot * bar
        h_hits = height * hits / top
        h_miss = height * misses / top
        if h_hits:
            rects.append(
                f'<rect x="{x:.1f}" y="{height - h_hits:.1f}" width="{bar * 0.8:.1f}"'
                f' height="{h_hits:.1f}" fill="#3a3"/>'
            )
        if h_miss:
            rects.append(
                f'<rect x="{x:.1f}" y="{height - h_hits - h_miss:.1f}" width="{bar * 0.8:.1f}"'
                f' height="{h_miss:.1f}" fill="#aaa"/>'
            )
    if not rects:
        rects.append(
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle"'
            ' dominant-baseline="middle" font-size="11" fill="#888">'
            "no lookups in the last hour</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' class="cfm-activity" role="img" aria-label="hits and misses per minute, last hour">'
        f'<rect width="{width}" height="{height}" fill="#f6f6f6"/>{"".join(rects)}</svg>'
    )


def health_html(found: Health, now: float | None = None) -> str:
    """The health summary (escaped) beside the per-minute plot."""
    lines = escape(" · ".join(health_parts(found)))
    plot = activity_svg(found.activity, time.time() if now is None else now)
    legend = (
        '<sub style="color:#777">hits <span style="color:#3a3">■</span> and misses'
        ' <span style="color:#888">■</span> per minute: an hour ago … now</sub>'
    )
    return (
        f'<div class="cfm-health {NO_MATH}" style="display:flex;gap:12px;align-items:center;'
        f'font-size:12px"><div>{plot}<br>{legend}</div><div>{lines}</div></div>'
    )


def page_table_html(page: Page, now: float) -> str:
    """The page as an escaped HTML table (the fallback where widgets do not render)."""
    head = "".join(f"<th style='{_CELL}'>{escape(name)}</th>" for name, _sort in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL}'>{escape(c)}</td>" for c in _cells(r, now)) + "</tr>"
        for r in page.rows
    )
    if not page.rows:
        body = f"<tr><td colspan='{len(COLUMNS)}' style='{_CELL}'>no cache entries</td></tr>"
    return f"<table class='cfm-cache-table' style='{_TABLE}'><tr>{head}</tr>{body}</table>"


# -- export --------------------------------------------------------------------------------


def export_entries(cache: ResponseCache, keys: Sequence[str], path: str | os.PathLike[str]) -> int:
    """Write the entries under ``keys`` to a new file ``path`` as JSON lines (the same lines
    as :meth:`ResponseCache.export`); return how many. The file is created ``0600`` and an
    existing file or a symlink is refused (:class:`CacheError`); a tampered entry raises
    :class:`IntegrityError` (it is deleted) and the partial file is removed."""
    target = os.path.expanduser(os.fspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise CacheError(f"{target} exists (or is a link); choose a new file name.") from None
    except OSError as exc:
        raise CacheError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    written = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for key in keys:
                found = cache.entry(key)
                if found is None:
                    continue
                line = {
                    "key": found["key"],
                    "agent": found["agent_name"],
                    "model": found["model"],
                    "created": found["created_at"],
                    "expires": found["expires_at"],
                    "preview": found["preview"],
                    "answer": found["response"],
                    "metadata": found["metadata"],
                }
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
                written += 1
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return written


# -- the inspector -------------------------------------------------------------------------


class CacheInspector:
    """Browse and act on a :class:`ResponseCache` (see the module docstring).

    ``refresh`` re-runs an entry live (the notebook passes one bound to the session's
    orchestrator; None: refresh is not offered). Kernel thread only. Methods that act return
    a one-line message for the status line and never raise for a cache problem: the message
    says what went wrong.
    """

    def __init__(self, cache: ResponseCache, *, refresh: Refresher | None = None) -> None:
        self.cache = cache
        self.view = CacheView(cache)
        self.query = Query()
        self.page: Page = Page([], 0, self.query.page_size, 0, 0)
        self.picked: list[str] = []
        self.status = ""
        self.failures: list[tuple[str, str]] = []
        self._refresh = refresh
        self._ui: _Widgets | None = None

    # -- state -----------------------------------------------------------------------------

    def load(self, query: Query | None = None) -> Page:
        """Run ``query`` (default: the current one) and keep its page; forget the picks."""
        if query is not None:
            self.query = query
        self.page = self.view.page(self.query)
        self.failures = self.page.failures
        keys = {row["key"] for row in self.page.rows}
        self.picked = [key for key in self.picked if key in keys]
        if self.failures:
            self.status = _failures_message(self.failures)
        return self.page

    def filter(
        self,
        *,
        agent: str | None = None,
        model: str | None = None,
        age: str = "any age",
        text: str | None = None,
    ) -> Page:
        """Show the first page of the entries that match (``age`` is a key of :data:`AGES`)."""
        if age not in AGES:
            raise ValueError(f"age must be one of {', '.join(AGES)}, not {age!r}.")
        newer, older = AGES[age]
        query = replace(
            self.query,
            agent=agent or None,
            model=model or None,
            newer_than_hours=newer,
            older_than_hours=older,
            text=(text or "").strip() or None,
            page=0,
        )
        return self.load(query)

    def sort(self, by: str) -> Page:
        """Sort by ``by`` (a key of :data:`SORTS`); the same column again reverses the order.
        A new column starts with the largest (for age: the newest) first."""
        if by not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {by!r}.")
        descending = not self.query.descending if by == self.query.sort else by != "age"
        return self.load(replace(self.query, sort=by, descending=descending, page=0))

    def turn(self, step: int) -> Page:
        """Move ``step`` pages forward (or back); stays within the pages there are."""
        number = max(0, self.query.page + step)
        if step > 0 and not self.page.has_next:
            number = self.query.page
        return self.load(replace(self.query, page=number))

    def pick(self, keys: Sequence[str]) -> None:
        """Pick entries of the page (by full key) for the preview and the actions."""
        shown = {row["key"] for row in self.page.rows}
        self.picked = [key for key in keys if key in shown]

    # -- preview ---------------------------------------------------------------------------

    def preview_html(self) -> str:
        """The first picked answer, rendered as a cell renders it (or why it is not shown)."""
        if not self.picked:
            return _note("Pick an entry to read its answer.")
        key = self.picked[0]
        try:
            found = self.cache.entry(key)
        except IntegrityError as exc:
            self.status = str(exc)
            return _note(str(exc), error=True)
        except ClaudeForceError as exc:
            return _note(str(exc), error=True)
        if found is None:
            return _note(f"The entry {key[:12]} is gone (deleted or expired).")
        return output_html(found["response"], label=_label(found), footer=_footer(found))

    # -- actions ---------------------------------------------------------------------------

    def delete(self) -> str:
        """Delete the picked entries (by key)."""
        if not self.picked:
            return self._say("Pick the entries to delete first.")
        try:
            removed = sum(self.cache.delete_key(key) for key in self.picked)
        except ClaudeForceError as exc:
            return self._say(f"Nothing deleted: {exc}")
        self.picked = []
        self.load()
        return self._say(f"Deleted {removed} entr{'y' if removed == 1 else 'ies'}.")

    def extend(self, hours: float) -> str:
        """Give the picked entries a new expiry ``hours`` from now."""
        if not self.picked:
            return self._say("Pick the entries to extend first.")
        done = 0
        try:
            for key in self.picked:
                done += self.cache.touch(key, hours) is not None
        except ClaudeForceError as exc:
            self.load()
            return self._say(f"Extended {done}; then: {exc}")
        self.load()
        return self._say(
            f"Extended {done} entr{'y' if done == 1 else 'ies'} to {hours:g} h from now."
        )

    def refresh_plan(self) -> str:
        """What a refresh of the picked entry would do (asked before it runs)."""
        if self._refresh is None:
            return "Refresh is not available here."
        if len(self.picked) != 1:
            return "Pick one entry to refresh."
        row = next(r for r in self.page.rows if r["key"] == self.picked[0])
        return (
            f"Re-run {row['agent_name']} on {row['model']} and replace entry {row['key'][:10]}? "
            f"This is a live call: it costs money (about ${row['estimated_cost']:.4f} last "
            "time) and counts against the budget."
        )

    def refresh(self) -> str:
        """Re-run the picked entry live and replace it (call :meth:`refresh_plan` first)."""
        if self._refresh is None or len(self.picked) != 1:
            return self._say(self.refresh_plan())
        try:
            found = self.cache.entry(self.picked[0])
            if found is None:
                return self._say("The entry is gone (deleted or expired); nothing was run.")
            outcome = self._refresh(found)
        except (ClaudeForceError, UsageError) as exc:  # UsageError: why it cannot be re-run
            return self._say(f"Not refreshed: {exc}")
        self.load()
        return self._say(outcome)

    def export(self, path: str) -> str:
        """Write the picked entries (or, with none picked, the page) to ``path`` as JSON lines."""
        keys = self.picked or [row["key"] for row in self.page.rows]
        if not path.strip():
            return self._say("Give a file name to export to.")
        try:
            written = export_entries(self.cache, keys, path.strip())
        except ClaudeForceError as exc:
            return self._say(f"Not exported: {exc}")
        return self._say(f"Wrote {written} entr{'y' if written == 1 else 'ies'} to {path.strip()}.")

    def _say(self, message: str) -> str:
        self.status = message
        return message

    # -- display ---------------------------------------------------------------------------

    def health(self) -> Health:
        """The cache's health now."""
        return health(self.cache, self.view)

    def html(self) -> str:
        """Header, page summary and table as HTML (the fallback and the widgets' header)."""
        now = self.cache._clock()
        return (
            f'<div class="cfm-inspector {NO_MATH}">{health_html(self.health())}'
            f"<div>{escape(self.summary())}</div>{page_table_html(self.page, now)}</div>"
        )

    def summary(self) -> str:
        """``page 1 of 3 · 250 entries`` (or ``at least N`` for a text filter)."""
        pages = self.page.pages
        count = (
            f"{self.page.total:,} entr{'y' if self.page.total == 1 else 'ies'}"
            if self.page.total is not None
            else f"at least {self.page.matched:,} matching entries"
            f" ({self.page.answers_read:,} answers read)"
        )
        of = f" of {pages}" if pages is not None else ""
        return f"page {self.query.page + 1}{of} · {count}"

    def text(self) -> str:
        """A plain-text summary (the ``text/plain`` of the display)."""
        return f"Cache inspector: {health_text(self.health())}\n{self.summary()}"

    def show(self) -> None:
        """Display the inspector: widgets, with the HTML table as the fallback."""
        from .display import show

        self.load()
        try:
            self._ui = _Widgets(self)
        except ImportError:  # no widget library: the HTML is the inspector
            show({"text/html": self.html(), "text/plain": self.text()}, raw=True)
            return
        show(self._ui.bundle(), raw=True)


def _label(found: dict[str, Any]) -> str:
    return f"{found['agent_name']} · {found['model']}"


def _footer(found: dict[str, Any]) -> str:
    hits = found["hits"]
    parts = [
        f"cache entry {found['key'][:12]}",
        f"stored by {found['origin'] or 'an older version'}",
        f"{hits} hit{'' if hits == 1 else 's'}",
        f"cost ${found['estimated_cost']:.4f} when bought",
    ]
    if found["preview"]:
        parts.append(f"task: {found['preview'][:80]}")
    return " · ".join(parts)


def _note(text: str, *, error: bool = False) -> str:
    color = "#b00" if error else "#777"
    return f'<div class="cfm-note {NO_MATH}" style="color:{color}">{escape(text)}</div>'


def _failures_message(failures: Sequence[tuple[str, str]]) -> str:
    keys = ", ".join(prefix for prefix, _why in failures[:5])
    more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
    return (
        f"{len(failures)} entr{'y' if len(failures) == 1 else 'ies'} failed the integrity check"
        f" and {'was' if len(failures) == 1 else 'were'} not shown (deleted): {keys}{more}."
    )


class _Widgets:
    """The ipywidgets face of a :class:`CacheInspector` (built by :meth:`CacheInspector.show`)."""

    def __init__(self, inspector: CacheInspector) -> None:
        import ipywidgets as w

        self.insp = inspector
        self.w = w
        self._drawing = False
        choices = inspector.view.choices()
        wide = w.Layout(width="auto")
        self.header = w.HTML()
        narrow = {"description_width": "45px"}
        self.agent = w.Dropdown(
            options=[_ALL, *choices["agent"]], description="agent", style=narrow,
            layout=w.Layout(width="250px"),
        )  # fmt: skip
        self.model = w.Dropdown(
            options=[_ALL, *choices["model"]], description="model", style=narrow,
            layout=w.Layout(width="220px"),
        )  # fmt: skip
        self.age = w.Dropdown(
            options=list(AGES), description="age", style=narrow, layout=w.Layout(width="200px")
        )
        self.text = w.Text(
            placeholder="text in task or answer (Enter)", description="text", style=narrow,
            continuous_update=False, layout=w.Layout(width="260px"),
        )  # fmt: skip
        self.sorts = [self._sort_button(name, by) for name, by in COLUMNS]
        self.rows = w.SelectMultiple(options=[], rows=12, layout=w.Layout(width="100%"))
        self.rows.add_class("cfm-rows")
        self.prev = w.Button(description="◀ previous", layout=wide)
        self.next = w.Button(description="next ▶", layout=wide)
        self.where = w.Label()
        self.preview = w.HTML()
        self.delete = w.Button(description="Delete", button_style="danger", layout=wide)
        self.hours = w.BoundedFloatText(
            value=24.0, min=0.01, max=87600.0, description="hours", layout=w.Layout(width="150px")
        )
        self.extend = w.Button(description="Extend TTL", layout=wide)
        self.refresh = w.Button(description="Refresh (live)…", layout=wide)
        self.refresh.disabled = inspector._refresh is None
        self.confirm_text = w.HTML()
        self.confirm = w.Button(description="Confirm refresh", button_style="warning", layout=wide)
        self.cancel = w.Button(description="Cancel", layout=wide)
        self.confirm_box = w.VBox([self.confirm_text, w.HBox([self.confirm, self.cancel])])
        self.confirm_box.layout.display = "none"
        self.path = w.Text(value="cache-export.jsonl", description="file")
        self.export = w.Button(description="Export", layout=wide)
        self.status = w.Label()
        self.box = w.VBox(
            [
                w.HTML(_STYLE),
                self.header,
                w.HBox([self.agent, self.model, self.age, self.text]),
                w.HBox(self.sorts),
                self.rows,
                w.HBox([self.prev, self.next, self.where]),
                w.HBox(
                    [self.delete, self.hours, self.extend, self.refresh, self.path, self.export]
                ),
                self.confirm_box,
                self.status,
                self.preview,
            ]
        )
        self.box.add_class("cfm-inspector")
        self._wire()
        self.redraw()

    def _sort_button(self, name: str, by: str | None) -> Any:
        button = self.w.Button(description=name, layout=self.w.Layout(width="auto"))
        button.add_class(f"cfm-sort-{name}")
        if by is None:
            button.disabled = True
        else:
            button.on_click(lambda _b: self._act(lambda: self.insp.sort(by)))
        return button

    def _wire(self) -> None:
        for control in (self.agent, self.model, self.age, self.text):
            control.observe(lambda _change: self._act(self._filter), names="value")
        self.rows.observe(self._picked, names="value")
        self.prev.on_click(lambda _b: self._act(lambda: self.insp.turn(-1)))
        self.next.on_click(lambda _b: self._act(lambda: self.insp.turn(1)))
        self.delete.on_click(lambda _b: self._act(self.insp.delete))
        self.extend.on_click(lambda _b: self._act(lambda: self.insp.extend(self.hours.value)))
        self.refresh.on_click(lambda _b: self._ask_refresh())
        self.confirm.on_click(lambda _b: self._act(self._confirmed))
        self.cancel.on_click(lambda _b: self._hide_confirm())
        self.export.on_click(lambda _b: self._act(lambda: self.insp.export(self.path.value)))

    def _filter(self) -> Page:
        return self.insp.filter(
            agent=None if self.agent.value == _ALL else self.agent.value,
            model=None if self.model.value == _ALL else self.model.value,
            age=self.age.value,
            text=self.text.value,
        )

    def _act(self, action: Callable[[], object]) -> None:
        self.insp.status = ""
        try:
            action()
        except ClaudeForceError as exc:  # a refused or damaged cache: say so, keep the UI
            self.insp.status = str(exc)
        self.redraw()

    def _picked(self, change: dict[str, Any]) -> None:
        if self._drawing:  # the list is being redrawn: the picks are the inspector's already
            return
        self.insp.pick(list(change["new"]))
        self.preview.value = self.insp.preview_html()
        self._hide_confirm()
        self.status.value = self.insp.status

    def _ask_refresh(self) -> None:
        self.confirm_text.value = _note(self.insp.refresh_plan())
        ready = self.insp._refresh is not None and len(self.insp.picked) == 1
        self.confirm.disabled = not ready
        self.confirm_box.layout.display = "flex"

    def _hide_confirm(self) -> None:
        self.confirm_box.layout.display = "none"

    def _confirmed(self) -> None:
        self._hide_confirm()
        self.status.value = "Refreshing…"
        self.insp.refresh()

    def redraw(self) -> None:
        """Show the inspector's current page, header, picks and status."""
        insp = self.insp
        now = insp.cache._clock()
        self.header.value = health_html(insp.health())
        for button, (name, by) in zip(self.sorts, COLUMNS, strict=True):
            arrow = ""  # ▼: the largest (for age: the oldest) first
            if by is not None and by == insp.query.sort:
                arrow = " ▼" if insp.query.descending else " ▲"
            button.description = name + arrow
        options = [(_line(row, now), row["key"]) for row in insp.page.rows]
        self._drawing = True
        try:
            self.rows.value = ()
            self.rows.options = options
            self.rows.value = tuple(k for k in insp.picked if k in {o[1] for o in options})
        finally:
            self._drawing = False
        self.where.value = insp.summary()
        self.prev.disabled = insp.query.page == 0
        self.next.disabled = not insp.page.has_next
        self.preview.value = insp.preview_html()
        self.status.value = insp.status

    def bundle(self) -> dict[str, Any]:
        """The display data: the widget, the HTML table and a text summary."""
        return {
            "application/vnd.jupyter.widget-view+json": {
                "model_id": self.box.model_id,
                "version_major": 2,
                "version_minor": 0,
            },
            "text/html": self.insp.html(),
            "text/plain": self.insp.text(),
        }


def show_health(session: AgentSession, *, notebook: bool) -> None:
    """Display the health of the session's cache (for ``%agent stats``); nothing when there
    is no cache or it cannot be read (the dashboard never fails because of the cache)."""
    from .display import show

    if session.config().redis_url:
        _show_team_health(session, notebook=notebook)
        return
    found = _session_health(session)
    if found is None:
        return
    title = "Cache health (entries, size, hit rates, savings; hits and misses per minute)"
    if not notebook:
        print(f"{title}\n{health_text(found)}")
        return
    show(
        {
            "text/html": f"<b>{escape(title)}</b>{health_html(found)}",
            "text/plain": health_text(found),
        },
        raw=True,
    )


def _show_team_health(session: AgentSession, *, notebook: bool) -> None:
    """Team mode: the team's Redis cache in one line (the kernel's own disk cache is not what
    cells use, so its health would mislead); a line saying so while Redis is down; nothing
    before the session's first call opens the team's cache."""
    from .display import show

    text = _team_health_line(session)
    if text is None:
        return
    if not notebook:
        print(text)
        return
    html = f'<div class="{NO_MATH}">{escape(text)}</div>'
    show({"text/html": html, "text/plain": text}, raw=True)


def _team_health_line(session: AgentSession) -> str | None:
    from ..engine.team import TeamDown
    from .widgets import team_cache_stats

    orch = session.live_orchestrators().get(session.mode)
    if orch is None or orch.team is None:
        return None
    try:
        stats = team_cache_stats(orch)
    except TeamDown:
        return f"Team cache: the team's Redis at {orch.team.link.where} cannot be reached."
    except ClaudeForceError:
        return None
    if stats is None:
        return None
    return f"{team_health_title(stats)}: " + " · ".join(team_health_parts(stats))


def _session_health(session: AgentSession) -> Health | None:
    from ..cache.store import ResponseCache

    orch = session.live_orchestrators().get(session.mode)
    try:
        if orch is not None:
            return None if orch.cache is None else health(orch.cache)
        cfg = session.config()
        directory = session.cache_dir(session.mode)
        if not cfg.enable_cache or not directory.is_dir():
            return None
        with ResponseCache(directory, ttl_hours=cfg.ttl_hours) as cache:
            return health(cache)
    except ClaudeForceError:
        return None
