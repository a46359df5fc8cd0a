"""What a ``%%agent`` cell shows: the streamed answer, the one-line footer, and short errors.

Rendering always happens on the kernel thread (the thread that runs the cell), so output lands
in the cell that asked; the background loop only puts chunks on a queue (see :class:`Pump`).

In a notebook an answer is shown as safe HTML made by :mod:`.render` (never ``text/markdown``);
it streams in pieces whose display traffic is a few times the answer's size, and ends as one
output with its footer (see :class:`StreamView`). In a terminal IPython, a single agent's
chunks are printed as they arrive and several agents' answers are each printed as soon as
that agent finishes.

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
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .. import errors
from .render import scan_blocks

if TYPE_CHECKING:
    from ..engine.result import AgentResult

__all__ = [
    "DONE",
    "HOLD",
    "PLACEHOLDER",
    "STREAM_BUDGET",
    "STREAM_LAG",
    "STREAM_SLACK",
    "UPDATE_INTERVAL",
    "AgentOutput",
    "Finished",
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
#: Minimum seconds between two lines printed while streaming to a terminal.
UPDATE_INTERVAL = 0.05
#: Streamed text is shown once its oldest unshown character is this many seconds old.
STREAM_LAG = 0.2
#: A word still arriving is held back (not split across pieces) for at most this long.
HOLD = 0.04
#: While streaming, bytes of display data sent per byte of answer before pieces are frozen.
STREAM_BUDGET = 1.2
#: Extra bytes every answer may use while streaming (short answers stream as one piece).
STREAM_SLACK = 2048
#: What an agent's output shows until its first tokens arrive.
PLACEHOLDER = "…waiting for the first tokens…"

_FENCE = re.compile(r"^(```+|~~~+)[ \t]*([^\n`]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
#: What MathJax could take for math in a streamed piece: such pieces are wrapped to be ignored.
_MATHY = re.compile(r"\$|\\[(\[]|\\begin")
#: The marker of a fence a piece continues (re-opened without its info string: fewer bytes).
_FENCE_MARK = re.compile(r" {0,3}(`{3,}|~{3,})")
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
    """USD for people (:func:`~..pricing.format_usd`: never rounds a non-zero amount to $0)."""
    from ..pricing import format_usd

    return format_usd(value)


def format_footer(result: AgentResult, *, simulated: bool = False, caching: bool = True) -> str:
    """The one-line footer: agent, model, latency, tokens, cost, cache state, simulated mark.

    ``caching=False`` (``--no-cache`` or the cache turned off) says so instead of "stored".
    """
    meta = result.metadata
    thread = meta.get("thread")
    parts = [
        result.agent_name,
        *([f"thread {thread} · turn {int(meta.get('turn') or 0)}"] if thread else []),
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
        if caching and meta.get("cache_stored") is False:  # read-only, full or unopenable cache
            state = "cache miss (not stored)"
        ended = {"cancelled": "interrupted, answer cut off", "timeout": "timed out"}
        failed = ended.get(str(meta.get("status")), "failed")
        parts += [_money(meta.get("cost_usd")), state if result.success else failed]
        if meta.get("attempts", 1) and int(meta.get("attempts", 1)) > 1:
            parts.append(f"{int(meta['attempts'])} attempts")
    prompt_cache = _prompt_cache_part(meta)
    if prompt_cache:
        parts.append(prompt_cache)
    if meta.get("truncated"):
        parts.append("truncated at max_tokens")
    if simulated:
        parts.append("simulated")
    return " · ".join(parts)


def _prompt_cache_part(meta: Mapping[str, Any]) -> str:
    """``prompt cache read 3,012 · wrote 140 tok (saved $0.0051)``; empty when a live call
    neither read nor wrote the prompt cache (a cache hit sent nothing: no such part)."""
    if meta.get("cached"):
        return ""
    read = int(meta.get("cache_read_input_tokens") or 0)
    wrote = int(meta.get("cache_creation_input_tokens") or 0)
    if not read and not wrote:
        return ""
    saved = meta.get("prompt_cache_saved_usd")
    money = ""
    if isinstance(saved, (int, float)):
        money = f" (saved {_money(saved)})" if saved >= 0 else f" (cost {_money(-saved)} extra)"
    return f"prompt cache read {read:,} · wrote {wrote:,} tok{money}"


#: Library settings and calls that mean nothing in a notebook: advice naming them is dropped
#: from an error's message (the fix line says what to do in the notebook instead).
_LIBRARY_SPEAK = re.compile(
    r"max_task_chars|timeout_seconds|deadline_seconds|set_budget|budget_usd|base_url|"
    r"calls_per_minute|registry\.\w+|PriceTable|prices=|max_tokens"
)
_CLAUSE = re.compile(r"(?<=[.;!?])\s+")
_NEGATIVE_ZERO = re.compile(r"-(0(?:\.0+)?)(?=\s?s\b)")


def _user_cause(text: str) -> str:
    """``text`` without the library advice it carries, as one line: the cause in user terms."""
    text = " ".join(text.split())  # one line, whatever the message held
    text = _NEGATIVE_ZERO.sub(r"\1", text)
    text = re.sub(r"deadline_seconds=(\S+?)(?=[\s,;)]|$)", r"the \1 s deadline", text)
    clauses = _CLAUSE.split(text)
    kept = [c for i, c in enumerate(clauses) if i == 0 or not _LIBRARY_SPEAK.search(c)]
    cause = " ".join(kept)
    return cause[:-1] + "." if cause.endswith((";", ",")) else cause


def _retries(attempts: int | None) -> str:
    return f" after {attempts} attempts" if attempts is not None and attempts > 1 else ""


def _unknown_agent(exc: errors.UnknownAgentError) -> str:
    kind = "workflow" if str(exc).startswith("Unknown workflow") else "agent"
    name = "".join(ch if ch.isprintable() else "?" for ch in exc.name[:60])
    closest = ", ".join(exc.suggestions)
    hint = f"; the closest: {closest}" if closest else ""
    where = "`%agent list` shows every agent" if kind == "agent" else "`%agent list` shows them"
    note = " (it has a non-ASCII character)" if not name.isascii() else ""
    return f"There is no {kind} named {name!r}{note}{hint}. {where}."


def _response_fix(exc: errors.ResponseError) -> str:
    text = str(exc)
    if getattr(exc, "stop_reason", None) == "max_tokens":
        return "The answer hit the token limit before any text: raise --max-tokens."
    if getattr(exc, "stop_reason", None) == "refusal":
        return "Rephrase the task, or try another --model."
    if "malformed JSON" in text or "does not match" in text or "error event" in text:
        return "The answer could not be read; re-run the cell, or try another --model."
    return "Rephrase the task, or try another --model."


def _circuit_fix(exc: errors.CircuitOpenError) -> str:
    wait = max(0.0, float(exc.retry_in))
    if wait < 1:
        return "Too many failures in a row; re-run the cell to try again."
    return f"Too many failures in a row; the next try is allowed in about {wait:.0f} s."


def _task_fix(cause: str) -> str:
    if "the limit is" in cause:
        return "Shorten the cell, or put the long text in a variable and write {name} in the cell."
    if "control character" in cause:
        return "Remove the control characters (often pasted terminal output)."
    return ""


def explain(exc: BaseException, *, attempts: int | None = None) -> tuple[str, str]:
    """Return ``(cause, fix)`` for an error shown in a cell; both one line, key-free.

    The cause is the error's message without advice about library settings the notebook does
    not have; the fix says what to do in the notebook. ``attempts`` (how many requests were
    made, when known) keeps the fix from claiming retries that did not happen.
    """
    if isinstance(exc, KeyboardInterrupt):
        return "the request was cancelled; the next cell can run as usual.", ""
    if isinstance(exc, errors.UnknownAgentError):
        return _redact(_unknown_agent(exc)), ""
    cause = _user_cause(_redact(str(exc))) or type(exc).__name__
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
    elif isinstance(exc, errors.AuthenticationError):
        fix = "Enter the key again with `%agent key`, or work offline with `%agent simulate on`."
    elif isinstance(exc, errors.RateLimitError):
        wait = f" about {exc.retry_after:.0f} s" if exc.retry_after else " a minute"
        fix = f"Wait{wait}, or lower `%config AgentMagics.calls_per_minute`."
    elif isinstance(exc, errors.CircuitOpenError):
        fix = _circuit_fix(exc)
    elif isinstance(exc, errors.DeadlineExceededError):
        fix = "Raise `%config AgentMagics.deadline` (seconds across retries), or try later."
    elif isinstance(exc, (errors.APITimeoutError, TimeoutError)):
        fix = "Raise --timeout (or `%config AgentMagics.timeout`), or ask for a shorter answer."
    elif isinstance(exc, (errors.OverloadedError, errors.ServerError, errors.APIConnectionError)):
        fix = f"The service failed{_retries(attempts)}; re-run the cell in a moment."
    elif isinstance(exc, errors.IntegrityError):
        fix = "Run `%agent cache verify` to drop tampered entries."
    elif isinstance(exc, errors.ResponseError):
        fix = _response_fix(exc)
    elif isinstance(exc, errors.InvalidTaskError):
        fix = _task_fix(cause)
    return cause, fix


def _error_lines(
    exc: BaseException, label: str | None = None, attempts: int | None = None
) -> list[str]:
    """One line (what a front-end shows as one red line): the cause, then the fix after ``→``."""
    cause, fix = explain(exc, attempts=attempts)
    head = f"{label}: " if label else ""
    line = f"{_RED}{head}{type(exc).__name__}: {cause}{_RESET}"
    if fix and fix not in cause:
        line += f" {_DIM}→ {fix}{_RESET}"
    return [line]


def _full_traceback(exc: BaseException, cause: BaseException | None) -> list[str]:
    """The complete traceback of ``exc`` (its original cause included), secrets redacted."""
    from .options import get_ipython

    shell = get_ipython()
    if shell is None:
        import traceback

        return [_redact("".join(traceback.format_exception(exc)))]
    suppressed = exc.__cause__, exc.__suppress_context__
    exc.__cause__ = exc.__cause__ or cause  # `raise short_error(exc) from None` dropped it
    try:
        lines = shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
    finally:
        exc.__cause__, exc.__suppress_context__ = suppressed
    return [_redact(line) for line in lines]


def short_error(
    exc: BaseException, *, label: str | None = None, attempts: int | None = None
) -> BaseException:
    """Make IPython show ``exc`` as one short red message instead of a traceback; return it.

    The cell still fails. Only that first display is short: ``%tb`` afterwards shows the full
    traceback, with the original cause (secrets redacted).
    """
    lines = _error_lines(exc, label, attempts)
    cause = exc.__cause__
    shown: list[bool] = []

    def render() -> list[str]:
        if shown:  # %tb (or any later display) gets the whole story
            return _full_traceback(exc, cause)
        shown.append(True)
        return lines

    exc._render_traceback_ = render  # type: ignore[attr-defined]
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

        finished = self.error or self.footer  # a finished slot never waits for tokens
        return output_html(
            self.text,
            label=self.label,
            footer=self.footer,
            error=self.error,
            placeholder="" if finished else self.placeholder,
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
    handle: Any = None  # the agent's first display: placeholder, then its first piece
    dirty: bool = False
    last_update: float = 0.0
    printed: int = 0
    finished: bool = False
    # streaming into a notebook (see StreamView's docstring)
    tail: Any = None  # the live display of the current piece, or None
    head_free: bool = False  # the first display still shows the placeholder
    displays: int = 0  # displays this agent's answer is spread over
    start: int = 0  # where the current piece starts in output.text
    fence: str = ""  # opening line of the code fence the current piece continues
    shown: int = 0  # how much of output.text is on screen
    arrivals: deque[tuple[int, float]] = field(default_factory=deque)  # (text end, time)
    received: int = 0  # bytes of answer text received
    sent: int = 0  # bytes of display data sent while streaming


@dataclass
class StreamView:
    """The displays for one cell: one slot per agent, updated from the kernel thread only.

    ``notebook=True`` uses display outputs; ``False`` prints to stdout (a terminal IPython:
    one agent prints as it streams, several print each answer whole as soon as it finishes).
    ``quiet=True`` shows nothing. Not thread-safe by design: only the kernel thread touches
    it, through :class:`Pump`.

    Streaming into a notebook costs O(answer), not O(answer²). Re-sending the whole answer on
    every update (as ``update_display_data`` must) sent 174x a 20 KB answer. Instead the
    answer is cut into *pieces*, each its own display: the live piece is re-sent as it grows
    only while everything sent so far stays within ``STREAM_BUDGET`` times the answer's bytes
    (plus ``STREAM_SLACK``, so short answers stream in one piece); otherwise it is frozen as
    shown and the new text starts the next piece. When a Markdown block finishes (a blank
    line, a closing fence) the piece is completed and frozen there, so pieces follow blocks
    where the budget allows; a piece that starts inside a code fence re-opens it, so a huge
    code block stays code. Text is shown once its oldest unshown character is
    ``STREAM_LAG`` s old (a word still arriving is held back for at most ``HOLD`` s), so the
    screen is never more than about 0.25 s behind. When the agent finishes, its pieces are
    consolidated into one output (``clear_output(wait=True)``, the cell's notes printed
    again, one final display), so the saved notebook holds one clean output with its footer.
    With several agents each keeps its one labelled display (pieces of several agents would
    interleave), which shows the live piece as a plain-text preview under the agent's name,
    then the whole rendered answer as soon as that agent finishes. ``shared_cell=True`` (a
    workflow step: other views write to the same cell) works the same way, so finishing one
    view never clears what the others showed.
    """

    labels: Sequence[str | None]
    notebook: bool = True
    quiet: bool = False
    fmt: OutputFormat = "markdown"
    caching: bool = True
    math: bool = False
    notes: Sequence[str] = ()
    simulated: bool = False
    shared_cell: bool = False
    slots: list[_Slot] = field(default_factory=list)

    def open(self) -> None:
        """Prepare one slot per agent (nothing is shown yet: see :meth:`show_waiting`)."""
        self.slots = [
            _Slot(AgentOutput(label, fmt=self.fmt, math=self.math)) for label in self.labels
        ]

    def show_waiting(self) -> None:
        """Show each agent a "waiting for the first tokens" line, once.

        :class:`Pump` calls this when the kernel thread starts waiting, so a stop in that wait
        can take the lines away again (:meth:`interrupted`).
        """
        if not self._displays:
            return
        for slot in self.slots:
            if slot.handle is None and not slot.finished and not slot.displays:
                # counted before show(): a stop that lands inside show() still removes it
                slot.head_free, slot.displays = True, 1
                slot.handle = show(slot.output, display_id=True)

    @property
    def _labelled_displays(self) -> bool:
        """Each agent keeps one display updated in place (several agents, or a shared cell)."""
        return len(self.slots) > 1 or self.shared_cell

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
        slot.received += len(chunk.encode())
        slot.arrivals.append((len(slot.output.text), time.monotonic()))
        slot.dirty = True

    def next_due(self) -> float | None:
        """Seconds until some streamed text must be shown, or None if nothing waits."""
        waiting = [s.arrivals[0][1] for s in self.slots if s.arrivals and not s.finished]
        if not waiting or not self._displays:
            return None
        return max(0.0, min(waiting) + STREAM_LAG - time.monotonic())

    def flush(self, *, force: bool = False) -> None:
        """Show pending text: pieces in a notebook (see the class docstring), stdout otherwise.

        ``force`` shows everything received at once.
        """
        if self.quiet:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.finished:
                continue
            if self._displays:
                self._stream(slot, now, force=force)
            elif self._live_print and slot.dirty:
                self._print_live(slot, now, force=force)

    def _print_live(self, slot: _Slot, now: float, *, force: bool) -> None:
        if force or now - slot.last_update >= UPDATE_INTERVAL:
            slot.dirty, slot.last_update = False, now
            sys.stdout.write(slot.output.text[slot.printed :])
            sys.stdout.flush()
            slot.printed = len(slot.output.text)

    # ------------------------------------------------------------------ notebook pieces

    def _stream(self, slot: _Slot, now: float, *, force: bool) -> None:
        text = slot.output.text
        if slot.shown >= len(text) or not slot.arrivals:
            return
        if not force and now - slot.arrivals[0][1] < STREAM_LAG:
            return
        end = len(text) if force else self._visible_end(slot, now)
        if end > slot.shown:
            self._advance(slot, end)
        while slot.arrivals and slot.arrivals[0][0] <= slot.shown:
            slot.arrivals.popleft()

    def _visible_end(self, slot: _Slot, now: float) -> int:
        """Everything received, less a word still arriving (at most HOLD s, 24 characters)."""
        text = slot.output.text
        cut = max(text.rfind(" ", slot.shown), text.rfind("\n", slot.shown)) + 1
        if cut <= slot.shown or len(text) - cut > 24:
            return len(text)
        held_since = next((t for end, t in slot.arrivals if end > cut), now)
        return cut if now - held_since < HOLD else len(text)

    def _advance(self, slot: _Slot, end: int) -> None:
        boundary, _ = scan_blocks(slot.output.text[slot.start : end], slot.fence)
        boundary += slot.start
        allowance = STREAM_BUDGET * slot.received + STREAM_SLACK - slot.sent
        if slot.tail is not None and boundary > max(slot.shown, slot.start):
            cost = _bytes(self._piece(slot, slot.start, boundary)) + _bytes(
                self._piece(slot, boundary, end)
            )
            if cost > allowance:
                self._freeze(slot, slot.shown)
            else:
                self._put(slot, self._piece(slot, slot.start, boundary))
                self._freeze(slot, boundary)
        elif slot.tail is not None and _bytes(self._piece(slot, slot.start, end)) > allowance:
            self._freeze(slot, slot.shown)
        if end > slot.start:
            self._put(slot, self._piece(slot, slot.start, end))
        slot.shown = end

    def _freeze(self, slot: _Slot, at: int) -> None:
        """End the live piece at ``at``: it stays as shown; new text starts the next one."""
        _, fence = scan_blocks(slot.output.text[slot.start : at], slot.fence)
        slot.start, slot.fence, slot.tail = at, fence, None

    def _piece(self, slot: _Slot, start: int, end: int) -> dict[str, str]:
        """The display data of ``output.text[start:end]`` shown as one piece.

        With several agents the live piece is a plain-text preview under the agent's name
        (its display is replaced, not appended to, so rendering would only cost bytes).
        """
        from .render import NO_MATH, markdown_to_html, plain_html

        text = slot.output.text[start:end]
        if self._labelled_displays:
            return {"text/plain": f"{slot.output.label} · …{text}"}
        if self.fmt == "text":
            fragment = plain_html(text)
        else:
            fence = _FENCE_MARK.match(slot.fence) if start == slot.start else None
            body = f"{fence.group(0)}\n{text}" if fence else text.lstrip(" \t")
            fragment = markdown_to_html(body, math=self.math).strip()
        if self.math or not _MATHY.search(text):
            return {"text/html": fragment}  # nothing MathJax could typeset: no wrapper to send
        # live pieces never reach nbconvert (they are consolidated), so MathJax 3's class does
        return {"text/html": f'<div class="{NO_MATH.split()[-1]}">{fragment}</div>'}

    def _put(self, slot: _Slot, bundle: dict[str, str]) -> None:
        """Show ``bundle`` as the live piece: a new display, or an update of the live one."""
        slot.sent += _bytes(bundle)
        if slot.tail is not None:
            slot.tail.update(bundle, raw=True)
        elif slot.head_free or self._labelled_displays:
            slot.tail, slot.head_free = slot.handle, False
            slot.tail.update(bundle, raw=True)
        else:
            slot.tail = show(bundle, raw=True, display_id=True)
            slot.displays += 1
            slot.handle = slot.handle or slot.tail

    # ------------------------------------------------------------------ the end

    def finish(
        self,
        index: int,
        result: AgentResult | None,
        *,
        simulated: bool,
        error: BaseException | None = None,
    ) -> None:
        """Show agent ``index``'s final text, footer and (short, red) error if it failed.

        In a notebook the answer ends as one output. Called once per agent; later calls for
        the same agent do nothing.
        """
        slot = self.slots[index]
        if slot.finished:
            return
        slot.finished = True
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
            self._show_final(slot)
            return
        self._print_final(slot)

    def _show_final(self, slot: _Slot) -> None:
        if slot.displays > 1:  # consolidate the pieces into one output
            self._clear_cell()
            slot.handle, slot.displays = show(slot.output, display_id=True), 1
        elif slot.handle is None:
            slot.handle, slot.displays = show(slot.output, display_id=True), 1
        else:
            slot.handle.update(slot.output)
        slot.tail, slot.dirty = None, False

    def close(self) -> None:
        """End the cell's displays: an agent that never finished leaves no placeholder.

        Its partly streamed text (if any) is consolidated into one output; a placeholder with
        nothing under it is removed, so an error shown next stands alone.
        """
        for slot in self.slots:
            if slot.finished or not self._displays or slot.handle is None:
                continue
            slot.finished = True
            if slot.output.text:
                slot.output.placeholder = ""
                self._show_final(slot)
            else:
                self._retire(slot, "no answer")

    def interrupted(self) -> None:
        """The cell was stopped: no "waiting" line stays above the "cancelled" message.

        Agents with text are left to :meth:`finish` (which marks them cut); a single agent's
        placeholder is removed, several agents' placeholders say the request was cancelled.
        """
        for slot in self.slots:
            if slot.finished or slot.output.text or not slot.displays:
                continue
            slot.finished = True
            self._retire(slot, "cancelled")

    def _retire(self, slot: _Slot, why: str) -> None:
        """A slot that will show no answer: a single agent's placeholder is removed (the
        cell's notes stay), several agents' labelled displays say ``why`` instead."""
        if not self._labelled_displays:
            self._clear_cell()
        elif slot.handle is not None:  # None: stopped inside show(), its update is lost anyway
            slot.output.placeholder = why
            slot.handle.update(slot.output)

    def _clear_cell(self) -> None:
        """Clear the cell's outputs (when the next one arrives) and print its notes again."""
        _clear_output()
        for note in self.notes:
            print(note)

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


def _bytes(bundle: Mapping[str, str]) -> int:
    return sum(len(value.encode()) for value in bundle.values())


def _clear_output() -> None:
    """Clear this cell's outputs when the next output arrives (no flicker)."""
    from IPython.display import clear_output

    clear_output(wait=True)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Finished:
    """Pump event: agent ``index`` is done (``error`` set when it failed)."""

    index: int
    result: AgentResult | None
    error: BaseException | None = None


class Pump:
    """Carries streamed events from the background loop to the kernel thread.

    The loop side calls :meth:`put` (thread-safe, never blocks). The kernel thread passes
    :meth:`drain` as the runner's ``pump``: it blocks up to the slice length for the first
    event (less when streamed text falls due sooner), applies everything queued to the
    :class:`StreamView`, and flushes the displays. Events are ``(index, str)`` chunks and
    :class:`Finished` (the agent's answer is shown at once, so a terminal prints each answer
    as soon as it is done); anything else only wakes the pump.
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

        Also flushes when nothing arrived, so text held back while the stream pauses shows
        up within ``STREAM_LAG`` (the wait is cut short when held-back text falls due).
        """
        try:
            self.view.show_waiting()
            due = self.view.next_due()
            try:
                item = self._queue.get(timeout=timeout if due is None else min(timeout, due))
            except queue.Empty:
                self.view.flush()  # text held back by the update rules, while the stream pauses
                return
            self._apply(item)
            self.drain_queued()
        except KeyboardInterrupt:  # the stop button, nearly always seen while waiting here
            self.view.interrupted()
            raise

    def drain_queued(self) -> None:
        """Apply every queued event without waiting, then flush the displays."""
        while True:
            try:
                self._apply(self._queue.get_nowait())
            except queue.Empty:
                break
        self.view.flush()

    def _apply(self, item: Any) -> None:
        view = self.view
        if isinstance(item, Finished):
            error = item.error if len(view.slots) > 1 else None
            if item.result is not None or error is not None:
                view.finish(item.index, item.result, simulated=view.simulated, error=error)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            view.add_chunk(item[0], item[1])
