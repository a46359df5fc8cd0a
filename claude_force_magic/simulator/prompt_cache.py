"""Prompt caching as the Messages API models it: breakpoints, prefixes, TTLs and usage.

A request marks *breakpoints* with ``"cache_control": {"type": "ephemeral", "ttl": "5m"|"1h"}``
on system text blocks and on message content blocks (``ttl`` defaults to ``"5m"``). The prompt
is read in the API's order (system, then messages; tools are not modelled) as a list of
*segments*: a string system prompt or string message content is one segment, each block of a
list is one. The prefix up to and including a breakpoint's segment is what that breakpoint
caches, keyed by API key (a SHA-256 fingerprint, never the key itself), model and the exact
prefix content (``cache_control`` itself excluded).

For a request, :meth:`PromptCache.apply` finds the longest live prefix ending within
:data:`LOOKBACK_BLOCKS` blocks before (or at) one of its breakpoints and reads it
(``cache_read_input_tokens``; the read refreshes the entry for its TTL), then writes every
later breakpoint whose prefix reaches the model's minimum cacheable
length (``cache_creation_input_tokens``, split 5m/1h by the ttl of the breakpoint that closes
each span). The remaining tokens are plain ``input_tokens``. Token counts use the same
estimator as the rest of the simulator, so read + written + input equals the request's input
token count. Entries expire on the simulator's clock.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .text import block_tokens, estimate_tokens
from .validation import InvalidRequest

__all__ = [
    "DEFAULT_MIN_TOKENS",
    "LOOKBACK_BLOCKS",
    "MAX_BREAKPOINTS",
    "TTL_SECONDS",
    "Boundary",
    "Breakpoint",
    "CacheUsage",
    "PromptCache",
    "check_min_tokens",
    "find_breakpoints",
    "key_fingerprint",
]

MAX_BREAKPOINTS = 4
# How many blocks, counting its own, a breakpoint looks back for a cached prefix (the API
# documents "about 20"): moving the breakpoint to the newest turn still reads the older prefix.
LOOKBACK_BLOCKS = 20
TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
# Minimum cacheable prefix length in tokens, by model-name prefix (the longest matching prefix
# wins; "*" is the fallback). From the API's prompt-caching documentation.
DEFAULT_MIN_TOKENS: dict[str, int] = {
    "*": 1024,
    "claude-3-haiku": 2048,
    "claude-3-5-haiku": 2048,
    "claude-haiku-3": 2048,
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-sonnet-4-6": 2048,
}

_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode


@dataclass(frozen=True)
class Boundary:
    """The end of one block in the prompt: its ordinal, where, the prefix's tokens and digest."""

    index: int
    where: str
    tokens: int
    digest: bytes


@dataclass(frozen=True)
class Breakpoint:
    """A ``cache_control`` mark: where it is, the prefix's tokens and digest, and its ttl.

    ``window`` holds the boundaries a cache lookup checks for this breakpoint, newest first:
    its own (always ``window[0]``) and those of up to :data:`LOOKBACK_BLOCKS` - 1 blocks
    before it.
    """

    where: str
    tokens: int
    ttl: str
    digest: bytes
    window: tuple[Boundary, ...]


@dataclass(frozen=True)
class CacheUsage:
    """What prompt caching did for one request, in tokens."""

    read: int = 0
    written_5m: int = 0
    written_1h: int = 0

    @property
    def written(self) -> int:
        """All tokens written to the cache (both TTLs)."""
        return self.written_5m + self.written_1h


def _ttl_of(control: Any, where: str) -> str:
    if not isinstance(control, dict):
        raise InvalidRequest(f"{where}: must be an object like {{'type': 'ephemeral'}}")
    if control.get("type") != "ephemeral":
        raise InvalidRequest(f"{where}.type: must be 'ephemeral', got {control.get('type')!r}")
    for key in control:
        if key not in ("type", "ttl"):
            raise InvalidRequest(f"{where}.{key}: Extra inputs are not permitted")
    ttl = control.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise InvalidRequest(f"{where}.ttl: must be '5m' or '1h', got {ttl!r}")
    return str(ttl)


def _segments(system: str | list[Any] | None, messages: Sequence[Any]) -> Iterator[tuple[str, Any]]:
    """``(where, piece)`` in prompt order; a piece is a string or a content block."""
    if isinstance(system, str):
        if system:
            yield "system", system
    elif system:
        for i, block in enumerate(system):
            yield f"system.{i}", block
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            yield f"messages.{i}.content", (message.get("role"), content)
        elif isinstance(content, list):
            for j, block in enumerate(content):
                yield f"messages.{i}.content.{j}", (message.get("role"), block)


def _piece_tokens(piece: Any) -> int:
    if isinstance(piece, tuple):
        piece = piece[1]
    return estimate_tokens(piece) if isinstance(piece, str) else block_tokens(piece)


def _canonical(where: str, piece: Any) -> bytes:
    role, body = piece if isinstance(piece, tuple) else (None, piece)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "cache_control"}
    message = where.split(".content")[0] if role is not None else "system"
    return _dumps([message, role, body]).encode("utf-8", "surrogatepass") + b"\n"


def find_breakpoints(system: str | list[Any] | None, messages: Sequence[Any]) -> list[Breakpoint]:
    """The request's breakpoints in prompt order, with their prefixes' tokens and digests.

    Raises :class:`InvalidRequest` for a malformed ``cache_control``, more than
    :data:`MAX_BREAKPOINTS` of them, or a ``1h`` breakpoint after a ``5m`` one (the API wants
    longer TTLs first).
    """
    found: list[Breakpoint] = []
    running = hashlib.sha256()
    tokens = 0
    recent: deque[Boundary] = deque(maxlen=LOOKBACK_BLOCKS)
    for index, (where, piece) in enumerate(_segments(system, messages)):
        running.update(_canonical(where, piece))
        tokens += _piece_tokens(piece)
        recent.appendleft(Boundary(index, where, tokens, running.copy().digest()))
        block = piece[1] if isinstance(piece, tuple) else piece
        if not isinstance(block, dict) or block.get("cache_control") is None:
            continue
        ttl = _ttl_of(block["cache_control"], f"{where}.cache_control")
        found.append(Breakpoint(where, tokens, ttl, recent[0].digest, tuple(recent)))
    if len(found) > MAX_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    for earlier, later in itertools.pairwise(found):
        if earlier.ttl == "5m" and later.ttl == "1h":
            raise InvalidRequest(
                f"{later.where}.cache_control.ttl: a ttl='1h' cache_control block must not come "
                f"after a ttl='5m' one ({earlier.where}); put the longer TTLs first "
                "(tools, then system, then messages)"
            )
    return found


@dataclass
class _Entry:
    fingerprint: str
    model: str
    where: str
    tokens: int
    ttl: str
    expires_at: float
    reads: int = 0


def key_fingerprint(api_key: str) -> str:
    """A short SHA-256 fingerprint of an API key (what the cache keeps instead of the key)."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def check_min_tokens(table: Mapping[str, int] | None) -> dict[str, int]:
    """:data:`DEFAULT_MIN_TOKENS` updated with ``table``; raises ``ValueError`` on a bad value."""
    merged = dict(DEFAULT_MIN_TOKENS)
    for model, tokens in (table or {}).items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"prompt_cache_min_tokens: keys must be model prefixes, got {model!r}")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(
                f"prompt_cache_min_tokens[{model!r}]: must be an integer >= 0, got {tokens!r}"
            )
        merged[model] = tokens
    return merged


class PromptCache:
    """The simulator's prompt cache: thread-safe, expiring on an injectable clock."""

    def __init__(
        self, clock: Callable[[], float], min_tokens: Mapping[str, int] | None = None
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._min_tokens = check_min_tokens(min_tokens)
        self._entries: dict[tuple[str, str, bytes], _Entry] = {}
        self._stats = {"hits": 0, "misses": 0, "writes": 0, "read_tokens": 0, "written_tokens": 0}

    def set_min_tokens(self, table: Mapping[str, int] | None) -> None:
        """Replace the per-model minimums (merged over the defaults)."""
        merged = check_min_tokens(table)
        with self._lock:
            self._min_tokens = merged

    def min_tokens(self, model: str) -> int:
        """The minimum cacheable prefix length for ``model`` (longest matching prefix wins)."""
        with self._lock:
            table = self._min_tokens
        best = max((p for p in table if p != "*" and model.startswith(p)), key=len, default="*")
        return table[best]

    def apply(self, api_key: str, model: str, breakpoints: Sequence[Breakpoint]) -> CacheUsage:
        """Read the longest live prefix, write the later ones; return the token accounting."""
        if not breakpoints:
            return CacheUsage()
        fingerprint = key_fingerprint(api_key)
        minimum = self.min_tokens(model)
        with self._lock:
            now = self._clock()
            self._purge(now)
            start, read = self._read(fingerprint, model, breakpoints, now)
            written = {"5m": 0, "1h": 0}
            cursor = read
            for point in breakpoints[start:]:
                if point.tokens < minimum:
                    continue
                written[point.ttl] += point.tokens - cursor
                cursor = point.tokens
                self._entries[(fingerprint, model, point.digest)] = _Entry(
                    fingerprint,
                    model,
                    point.where,
                    point.tokens,
                    point.ttl,
                    now + TTL_SECONDS[point.ttl],
                )
                self._stats["writes"] += 1
            self._stats["hits" if read else "misses"] += 1
            self._stats["read_tokens"] += read
            self._stats["written_tokens"] += written["5m"] + written["1h"]
        return CacheUsage(read, written["5m"], written["1h"])

    def _read(
        self, fingerprint: str, model: str, breakpoints: Sequence[Breakpoint], now: float
    ) -> tuple[int, int]:
        """Refresh the longest live prefix in the breakpoints' windows.

        Returns how many breakpoints the read covers (the rest are still to write) and the
        tokens read.
        """
        for point in reversed(breakpoints):
            for boundary in point.window:
                entry = self._entries.get((fingerprint, model, boundary.digest))
                if entry is not None:
                    entry.expires_at = now + TTL_SECONDS[entry.ttl]
                    entry.reads += 1
                    covered = sum(1 for p in breakpoints if p.window[0].index <= boundary.index)
                    return covered, entry.tokens
        return 0, 0

    def _purge(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]

    def entries(self) -> list[dict[str, Any]]:
        """The live entries: key fingerprint, model, where the prefix ends, tokens, ttl, expiry."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            return [
                {
                    "api_key_sha256": e.fingerprint,
                    "model": e.model,
                    "ends_at": e.where,
                    "tokens": e.tokens,
                    "ttl": e.ttl,
                    "expires_at": e.expires_at,
                    "expires_in": e.expires_at - now,
                    "reads": e.reads,
                }
                for e in self._entries.values()
            ]

    def stats(self) -> dict[str, int]:
        """Counters since the last :meth:`clear`: hits, misses, writes, read/written tokens."""
        with self._lock:
            return dict(self._stats)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
        self.reset_stats()

    def reset_stats(self) -> None:
        """Reset the counters (the entries stay)."""
        with self._lock:
            for key in self._stats:
                self._stats[key] = 0
