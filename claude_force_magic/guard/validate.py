"""Task validation: type, emptiness, size and control characters, checked before anything else.

Allowed whitespace: newline (``\\n``), tab (``\\t``) and the Windows line ending ``\\r\\n``
(text pasted from Windows editors). A lone carriage return is refused: terminals and log viewers
use it to overwrite a line, which hides text from a human reviewing the task. Every other
control character (NUL, ESC, BEL, DEL, the C1 range ...) is refused with its position and
code. The task is returned unchanged (line endings included), so the cache key is exactly the
text the user wrote.
"""

from __future__ import annotations

import re

from ..errors import ConfigurationError, InvalidTaskError

__all__ = ["DEFAULT_MAX_TASK_CHARS", "validate_task"]

DEFAULT_MAX_TASK_CHARS = 100_000

_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
_NAMES = {
    0x00: "NUL",
    0x07: "BEL",
    0x08: "BACKSPACE",
    0x0B: "VERTICAL TAB",
    0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN without a following newline",
    0x1B: "ESC",
    0x7F: "DEL",
}


def _describe(ch: str) -> str:
    code = ord(ch)
    name = _NAMES.get(code, "control character")
    return f"U+{code:04X} ({name})"


def validate_task(task: object, *, max_chars: int = DEFAULT_MAX_TASK_CHARS) -> str:
    """Check that ``task`` can be sent as a user message and return it unchanged.

    Raises :class:`InvalidTaskError` when the task is not a ``str``, is empty or only
    whitespace, is longer than ``max_chars`` characters (the message gives both numbers and how
    to raise the limit with ``max_task_chars=...``), or contains a control character other than
    newline, tab and ``\\r\\n`` (the message gives the first one's position and code, and how
    many there are). Raises :class:`ConfigurationError` if ``max_chars`` is not a positive int.
    Pure function: safe from any thread.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigurationError(f"max_task_chars must be a positive integer, got {max_chars!r}")
    if not isinstance(task, str):
        raise InvalidTaskError(f"The task must be a str, got {type(task).__name__}.")
    if not task.strip():
        raise InvalidTaskError("The task is empty; write what the agent should do.")
    if len(task) > max_chars:
        raise InvalidTaskError(
            f"The task is {len(task):,} characters; the limit is {max_chars:,}. Shorten it, "
            f"pass large data as an interpolated value, or raise the limit with "
            f"max_task_chars={len(task)}."
        )
    match = _FORBIDDEN.search(task)
    if match is not None:
        count = len(_FORBIDDEN.findall(task))
        more = f" ({count} such characters in all)" if count > 1 else ""
        raise InvalidTaskError(
            f"The task contains the control character {_describe(match.group()[0])} at "
            f"position {match.start()}{more}. Only newline, tab and \\r\\n line endings are "
            "allowed; remove the others (often pasted terminal output or binary data)."
        )
    return task
