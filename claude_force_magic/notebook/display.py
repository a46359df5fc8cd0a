"""What a ``%%agent`` cell shows: the streamed answer, the one-line footer, and short errors.

Rendering always happens on the kernel thread (the thread that runs the cell), so output lands
in the cell that asked; the background loop only puts chunks on a queue (see :class:`Pump`).

In a notebook each agent gets one display whose Markdown is updated in place as chunks arrive
(``display_data`` then ``update_display_data`` with the same ``display_id``). In a terminal
IPython, a single agent's chunks are printed as they arrive and several agents are printed one
after another when each finishes.

Errors never show a traceback: :func:`short_error` attaches ``_render_traceback_`` to the
exception (IPython's hook for custom tracebacks), so the cell shows one red message naming the
cause and the fix while still failing (``execute_reply`` status ``error``: Run All stops).
"""

from __future__ import annotations

import json
import queue
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .. import errors

if TYPE_CHECKING:
    from ..engine.result import AgentResult

__all__ = [
    "DONE",
    "AgentOutput",
    "OutputFormat",
    "Pump",
    "StreamView",
    "explain",
    "first_code_block",
    "format_footer",
    "short_error",
    "show",
]

OutputFormat = Literal["markdown", "code", "text", "json"]

#: Queue item that wakes the kernel thread when all work is finished.
DONE = object()
#: Minimum seconds between two in-place updates of one display while streaming.
UPDATE_INTERVAL = 0.05
#: What an agent's output shows until its first tokens arrive.
PLACEHOLDER = "…waiting for the first tokens…"

_FENCE = re.compile(r"^(```+|~~~+)[ \t]*([^\n`]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
_RED, _DIM, _RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"


def show(obj: Any, **kwargs: Any) -> Any:
    """``IPython.display.display`` with a type: returns the DisplayHandle when asked for one."""
    from IPython.display import display

    return display(obj, **kwargs)  # type: ignore[no-untyped-call]


def _redact(text: str) -> str:
    # The guard's redactor: Anthropic-shaped keys and every registered secret (a key passed
    # to the orchestrator, the cache secret). Imported here: errors are not on the load path.
    from ..guard.logs import SecretRedactor

    return SecretRedactor.redact(text)


# ---------------------------------------------------------------------------- footer and errors


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"


def _money(value: float | None) -> str:
    if value is None:
        return "cost unknown"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def format_footer(result: AgentResult, *, simulated: bool = False, caching: bool = True) -> str:
    """The one-line footer: agent, model, latency, tokens, cost, cache state, simulated mark.

    ``caching=False`` (``--no-cache`` or the cache turned off) says so instead of "stored".
    """
    meta = result.metadata
    parts = [
        result.agent_name,
        str(meta.get("model") or "?"),
        f"{float(meta.get('latency_s') or 0.0):.2f} s",
        f"{int(meta.get('input_tokens') or 0):,} → {int(meta.get('output_tokens') or 0):,} tok",
    ]
    if meta.get("cached"):
        saved = _money(meta.get("saved_usd"))
        age = meta.get("cache_age_s")
        age_text = f", age {_age(float(age))}" if age is not None else ""
        parts += ["$0", f"cache hit (saved {saved}{age_text})"]
    else:
        state = "cache miss (stored)" if caching else "cache off"
        parts += [_money(meta.get("cost_usd")), state if result.success else "failed"]
        if meta.get("attempts", 1) and int(meta.get("attempts", 1)) > 1:
            parts.append(f"{int(meta['attempts'])} attempts")
    if meta.get("truncated"):
        parts.append("truncated at max_tokens")
    if simulated:
        parts.append("simulated")
    return " · ".join(parts)


def explain(exc: BaseException) -> tuple[str, str]:
    """Return ``(cause, fix)`` for an error shown in a cell; both one line, key-free."""
    if isinstance(exc, KeyboardInterrupt):
        return "the request was cancelled; the next cell can run as usual.", ""
    cause = _redact(str(exc)) or type(exc).__name__
    fix = ""
    if isinstance(exc, errors.BudgetExceededError):
        fix = "Raise the budget with `%agent budget USD`, or remove it with `%agent budget off`."
    elif isinstance(exc, errors.PromptInjectionError):
        fix = "If the text is yours and safe, re-run the cell with --trust."
    elif isinstance(exc, errors.PricingError):
        fix = (
            "Add the price with `%config AgentMagics.prices = {model: {'input': ..., 'output': "
            "..., 'cache_write_5m': ..., 'cache_write_1h': ..., 'cache_read': ...}}` (USD per "
            "million tokens), choose a priced --model, or `%agent budget off`."
        )
    elif isinstance(exc, errors.UnknownAgentError):
        fix = "`%agent list` shows the agents you can use."
    elif isinstance(exc, errors.AuthenticationError):
        fix = "Check ANTHROPIC_API_KEY, or work offline with `%agent simulate on`."
    elif isinstance(exc, errors.RateLimitError):
        wait = f" about {exc.retry_after:.0f} s" if exc.retry_after else " a minute"
        fix = f"Wait{wait}, or lower `%config AgentMagics.calls_per_minute`."
    elif isinstance(exc, errors.CircuitOpenError):
        fix = f"Too many failures in a row; the next try is allowed in {exc.retry_in:.0f} s."
    elif isinstance(exc, (errors.APITimeoutError, errors.DeadlineExceededError, TimeoutError)):
        fix = "Raise --timeout (or `%config AgentMagics.timeout`), or ask for a shorter answer."
    elif isinstance(exc, (errors.OverloadedError, errors.ServerError, errors.APIConnectionError)):
        fix = "The service failed after retries; re-run the cell in a moment."
    elif isinstance(exc, errors.IntegrityError):
        fix = "Run `%agent cache verify` to drop tampered entries."
    elif isinstance(exc, errors.ResponseError):
        fix = "Rephrase the task, raise --max-tokens, or try another --model."
    return cause, fix


def _error_lines(exc: BaseException, label: str | None = None) -> list[str]:
    cause, fix = explain(exc)
    head = f"{label}: " if label else ""
    lines = [f"{_RED}{head}{type(exc).__name__}: {cause}{_RESET}"]
    if fix and fix not in cause:
        lines.append(f"{_DIM}→ {fix}{_RESET}")
    return lines


def short_error(exc: BaseException, *, label: str | None = None) -> BaseException:
    """Make IPython show ``exc`` as one short red message instead of a traceback; return it.

    The cell still fails. ``%tb`` shows the full traceback when someone needs it.
    """
    lines = _error_lines(exc, label)
    exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]
    return exc


# ------------------------------------------------------------------------------- answer objects


def first_code_block(text: str) -> str | None:
    """The body of the first fenced code block in Markdown ``text``, or None."""
    match = _FENCE.search(text)
    return match.group(3).rstrip("\n") if match else None


@dataclass
class AgentOutput:
    """One agent's answer as displayed: safe HTML for notebooks, plain text elsewhere.

    The HTML comes from :mod:`.render` (no ``text/markdown``: front-ends would render raw HTML
    in it). Label, placeholder, error and footer are never typeset as math; the answer is only
    when ``math`` is set.
    """

    label: str | None
    text: str = ""
    footer: str = ""
    fmt: OutputFormat = "markdown"
    result_dict: Mapping[str, Any] | None = None
    error: str = ""
    math: bool = False
    placeholder: str = PLACEHOLDER

    def _repr_html_(self) -> str | None:
        if self.fmt in ("text", "json"):
            return None
        from .render import output_html

        return output_html(
            self.text,
            label=self.label,
            footer=self.footer,
            error=self.error,
            placeholder=self.placeholder,
            math=self.math,
        )

    def _repr_json_(self) -> Any:
        return dict(self.result_dict) if self.fmt == "json" and self.result_dict else None

    def __repr__(self) -> str:
        head = f"[{self.label}]\n" if self.label else ""
        if self.fmt == "json" and self.result_dict is not None:
            body = json.dumps(self.result_dict, indent=2, ensure_ascii=False, default=str)
        else:
            body = self.text or ("" if self.error or self.footer else self.placeholder)
        tail = f"\n{self.error}" if self.error else ""
        tail += f"\n— {self.footer}" if self.footer else ""
        return head + body + tail


# --------------------------------------------------------------------------------- stream views


@dataclass
class _Slot:
    output: AgentOutput
    handle: Any = None
    dirty: bool = False
    last_update: float = 0.0
    printed: int = 0


@dataclass
class StreamView:
    """The displays for one cell: one slot per agent, updated from the kernel thread only.

    ``notebook=True`` uses display handles updated in place; ``False`` prints to stdout (a
    terminal IPython). ``quiet=True`` shows nothing. Not thread-safe by design: only the
    kernel thread touches it, through :class:`Pump`.
    """

    labels: Sequence[str | None]
    notebook: bool = True
    quiet: bool = False
    fmt: OutputFormat = "markdown"
    caching: bool = True
    slots: list[_Slot] = field(default_factory=list)

    def open(self) -> None:
        """Prepare one slot per agent; with several agents, display them all now, in order.

        A single agent's display appears with its first chunk, so a call refused before
        anything is sent leaves no empty output behind.
        """
        self.slots = [_Slot(AgentOutput(label, fmt=self.fmt)) for label in self.labels]
        if len(self.slots) > 1 and self._displays:
            for slot in self.slots:
                slot.handle = show(slot.output, display_id=True)

    @property
    def _displays(self) -> bool:
        return self.notebook and not self.quiet and self.fmt != "json"

    @property
    def _live_print(self) -> bool:
        return not self.notebook and len(self.slots) == 1 and self.fmt != "json"

    def add_chunk(self, index: int, chunk: str) -> None:
        """Append streamed text to agent ``index``; the display is refreshed by :meth:`flush`."""
        slot = self.slots[index]
        slot.output.text += chunk
        slot.dirty = True

    def flush(self, *, force: bool = False) -> None:
        """Push pending text to the displays, at most every ``UPDATE_INTERVAL`` per display."""
        if self.quiet:
            return
        now = time.monotonic()
        for slot in self.slots:
            if not slot.dirty or (not force and now - slot.last_update < UPDATE_INTERVAL):
                continue
            slot.dirty, slot.last_update = False, now
            if slot.handle is None and self._displays:
                slot.handle = show(slot.output, display_id=True)
            elif slot.handle is not None:
                slot.handle.update(slot.output)
            elif self._live_print:
                sys.stdout.write(slot.output.text[slot.printed :])
                sys.stdout.flush()
                slot.printed = len(slot.output.text)

    def finish(
        self,
        index: int,
        result: AgentResult | None,
        *,
        simulated: bool,
        error: BaseException | None = None,
    ) -> None:
        """Show agent ``index``'s final text, footer and (short, red) error if it failed."""
        slot = self.slots[index]
        out = slot.output
        if result is not None:
            out.text = result.output or out.text
            out.footer = format_footer(result, simulated=simulated, caching=self.caching)
            out.result_dict = result.to_dict()
        if error is not None:
            cause, fix = explain(error)
            out.error = f"{type(error).__name__}: {cause}" + (f" {fix}" if fix else "")
        slot.dirty = True
        if self.quiet:
            return
        if self.notebook:
            if slot.handle is None:
                slot.handle = show(out, display_id=True)
            else:
                slot.handle.update(out)
            slot.dirty = False
            return
        self._print_final(slot)

    def _print_final(self, slot: _Slot) -> None:
        out = slot.output
        if self._live_print:
            sys.stdout.write(out.text[slot.printed :] + "\n")
            if out.footer:
                sys.stdout.write(f"{_DIM}— {out.footer}{_RESET}\n")
        else:
            sys.stdout.write(repr(out) + "\n")
        sys.stdout.flush()
        slot.printed, slot.dirty = len(out.text), False


class Pump:
    """Carries streamed events from the background loop to the kernel thread.

    The loop side calls :meth:`put` (thread-safe, never blocks). The kernel thread passes
    :meth:`drain` as the runner's ``pump``: it blocks up to the slice length for the first
    event, applies everything queued to the :class:`StreamView`, and flushes the displays.
    Events are ``(index, str)`` chunks; anything else is ignored by the view (results are
    collected by the caller).
    """

    __slots__ = ("_queue", "view")

    def __init__(self, view: StreamView) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.view = view

    def put(self, item: Any) -> None:
        """Queue an event; safe from any thread."""
        self._queue.put(item)

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for events, apply all that are queued, flush the displays.

        Also flushes when nothing arrived, so text held back by ``UPDATE_INTERVAL`` shows up
        while the stream pauses.
        """
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            self.view.flush()  # text held back by the update interval, while the stream pauses
            return
        while True:
            if item is not DONE and isinstance(item, tuple) and isinstance(item[1], str):
                self.view.add_chunk(item[0], item[1])
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        self.view.flush()
