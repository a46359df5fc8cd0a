"""Prompt caching: where a request's ``cache_control`` breakpoints go, and with which TTL.

The Messages API caches a prompt's prefix up to each block marked ``"cache_control":
{"type": "ephemeral", "ttl": "5m" | "1h"}``: a later request with the same prefix reads it at
a tenth of the input price, and the write costs 1.25x (5 minutes) or 2x (1 hour) the input
price. The agent definition (the system prompt) is the same on every call of an agent and a
conversation's history is the same from turn to turn, so both are marked.

The option ``prompt_cache`` (per call, per orchestrator, ``%config AgentMagics.prompt_cache``,
``--prompt-cache`` per cell) is one of :data:`PROMPT_CACHE_MODES`:

- ``"off"``: no breakpoint; the request is sent as before.
- ``"5m"`` / ``"1h"``: breakpoints with that TTL.
- ``"auto"`` (the default): breakpoints with the TTL the expected reuse pays for.

Where (every mode but ``off``): on the system prompt when it reaches the model's minimum
cacheable length (:meth:`~..pricing.PriceTable.min_cacheable_tokens`, data beside the
prices), and on the last turn of the history (the model's previous answer) when the system
prompt plus the history reach it. The new task itself is not marked: a single-turn cell never
pays the write premium on text it may never send again; in a conversation it becomes part of
the history, and is written, on the next turn. A prefix shorter than the minimum gets no
breakpoint (the API would ignore it anyway).

Which TTL in ``auto`` (:class:`ReusePlanner`): a 5-minute entry is refreshed by every read,
so calls less than 5 minutes apart keep it alive at 1.25x once and 0.1x per read. When the
previous call of the same agent and model came more than 5 minutes but at most an hour
earlier, a 5-minute entry would have lapsed and be written again at 1.25x on every call; a
1-hour entry costs 2x once and 0.1x per read, so it pays as soon as it is read once more
(2 + 0.1 < 1.25 + 1.25). So ``auto`` uses ``"1h"`` when the last gap was in (5 min, 1 h],
``"5m"`` otherwise (the first call, quick follow-ups, and gaps over an hour, where neither
survives). Both breakpoints of a request get the same TTL (the API refuses a 1-hour
breakpoint after a 5-minute one).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from .estimate import estimate_text_tokens

__all__ = [
    "PROMPT_CACHE_MODES",
    "ReusePlanner",
    "check_prompt_cache",
    "mark_breakpoints",
]

#: The values of the ``prompt_cache`` option.
PROMPT_CACHE_MODES: tuple[str, ...] = ("auto", "5m", "1h", "off")
#: Seconds a 5-minute and a 1-hour cache entry live after their last use.
TTL_5M_SECONDS = 300.0
TTL_1H_SECONDS = 3600.0
#: Tokens the API adds around each message (the same cautious figure as the request's).
_PER_MESSAGE_TOKENS = 4


def check_prompt_cache(value: object, name: str = "prompt_cache") -> str:
    """``value`` if it is one of :data:`PROMPT_CACHE_MODES`; :class:`ConfigurationError`
    naming the valid values otherwise."""
    if not isinstance(value, str) or value not in PROMPT_CACHE_MODES:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(map(repr, PROMPT_CACHE_MODES))}, got {value!r}."
        )
    return value


class ReusePlanner:
    """Chooses ``"5m"`` or ``"1h"`` for ``prompt_cache="auto"`` from the gap between uses.

    :meth:`ttl` notes a use of ``key`` now and answers ``"1h"`` when the previous use of the
    same key was more than 5 minutes and at most an hour earlier, else ``"5m"`` (see the
    module docstring for why). Keeps the last ``max_keys`` keys (oldest forgotten first).
    ``clock`` (seconds, monotonic) is injectable for tests. Thread-safe.
    """

    __slots__ = ("_clock", "_last", "_lock", "_max_keys")

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 1024
    ) -> None:
        self._clock = clock
        self._max_keys = max(1, max_keys)
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def ttl(self, key: str) -> str:
        """The TTL for a use of ``key`` now (and remember this use)."""
        with self._lock:
            now = self._clock()
            last = self._last.pop(key, None)
            self._last[key] = now
            while len(self._last) > self._max_keys:
                self._last.popitem(last=False)
        if last is not None and TTL_5M_SECONDS < now - last <= TTL_1H_SECONDS:
            return "1h"
        return "5m"


def _control(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}


def _block(text: str, ttl: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if ttl is not None:
        block["cache_control"] = _control(ttl)
    return block


def mark_breakpoints(
    params: dict[str, Any],
    history: Sequence[Mapping[str, str]],
    *,
    ttl: str,
    min_tokens: int,
) -> int:
    """Add the breakpoints described in the module docstring to ``params`` (in place).

    ``params["messages"]`` holds ``history`` (string contents) followed by the new user turn.
    A marked system prompt becomes one text block; when the history is marked, every history
    turn becomes a text block (so the prefix reads the same on the next turn, when the
    breakpoint has moved on) and the last one carries ``cache_control``. Returns how many
    breakpoints were set (0, 1 or 2).
    """
    system = params.get("system")
    system_tokens = estimate_text_tokens(system) if isinstance(system, str) else 0
    marks = 0
    if isinstance(system, str) and system and system_tokens >= min_tokens:
        params["system"] = [_block(system, ttl)]
        marks += 1
    if not history:
        return marks
    prefix = system_tokens + sum(
        estimate_text_tokens(turn["content"]) + _PER_MESSAGE_TOKENS for turn in history
    )
    if prefix < min_tokens:
        return marks
    messages = params["messages"]
    last = len(history) - 1
    for i, turn in enumerate(history):
        messages[i] = {
            "role": turn["role"],
            "content": [_block(turn["content"], ttl if i == last else None)],
        }
    return marks + 1
