"""What the disk and the Redis response caches share about an entry, as plain functions.

:class:`~.store.ResponseCache` and :class:`~.redis.RedisResponseCache` store the same signed
body in different places. Everything that does not depend on where the body lives is here,
once: the checks of the constructor's limits and of ``set``'s arguments, the body ``set``
signs, the dict a hit returns, the dict ``entries`` lists, the key-prefix check of
``resolve_key``, ``search``'s matching and newest-first selection, and ``export``'s file and
lines. Nothing here reads or writes a store, so both caches keep their own storage, locking
and counting.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TextIO

from .. import settings
from ..errors import CacheError, ConfigurationError
from ..guard.logs import get_logger, sanitize_for_log
from ..validation import check_number
from .keys import require_json
from .signing import Fields

__all__ = [
    "MIN_PREFIX",
    "CacheSkipWarning",
    "Newest",
    "ambiguous_prefix",
    "check_key_prefix",
    "check_limits",
    "check_search",
    "entry_view",
    "exclusions",
    "export_line",
    "json_copy",
    "listing",
    "matches",
    "new_body",
    "public_view",
    "skip_warning",
    "stamp",
    "write_export",
]

log = get_logger("claude_force_magic.cache")

#: A key may be given by its first ``MIN_PREFIX`` hex digits (or more) when they are unique.
MIN_PREFIX = 8
_PREFIX_PATTERN = re.compile(r"\A[0-9a-f]{8,64}\Z")


class CacheSkipWarning(UserWarning):
    """A response was not stored: the cache is disabled, the agent excluded, or it was too big."""


# -- construction --------------------------------------------------------------------------


def check_limits(
    ttl_hours: float, max_size_mb: float, max_entry_kb: float
) -> tuple[float, int, int]:
    """``(ttl_hours, max_size_bytes, max_entry_bytes)`` checked; :class:`ConfigurationError`
    for a bad value or a ``max_size_mb`` smaller than one ``max_entry_kb`` entry."""
    ttl = settings.check_ttl_hours("ttl_hours", ttl_hours)
    max_size_bytes = int(check_number("max_size_mb", max_size_mb) * 2**20)
    max_entry_bytes = int(check_number("max_entry_kb", max_entry_kb) * 1024)
    if max_size_bytes < max_entry_bytes:
        raise ConfigurationError(
            f"max_size_mb={max_size_mb!r} is smaller than one entry may be "
            f"(max_entry_kb={max_entry_kb!r}): every large answer would evict the whole "
            "cache. Raise max_size_mb or lower max_entry_kb."
        )
    return ttl, max_size_bytes, max_entry_bytes


def exclusions(exclude_agents: Iterable[str]) -> frozenset[str]:
    """The excluded agents' names (a single str is one name, not its letters)."""
    if isinstance(exclude_agents, str):
        return frozenset((exclude_agents,))
    return frozenset(exclude_agents)


# -- set -------------------------------------------------------------------------------------


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _cost(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"estimated_cost must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise TypeError(f"estimated_cost must be a finite non-negative number, not {value!r}")
    return number


def new_body(
    response: str,
    agent_name: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    estimated_cost: float,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """The body ``set`` signs, its times still 0 (see :func:`stamp`); TypeError naming the
    argument that is wrongly typed, or metadata that is not JSON."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, not {type(response).__name__}")
    body = {
        "response": response,
        "agent_name": agent_name,
        "model": model,
        "input_tokens": _count("input_tokens", input_tokens),
        "output_tokens": _count("output_tokens", output_tokens),
        "estimated_cost": _cost(estimated_cost),
        "created_at": 0.0,
        "expires_at": 0.0,
        "metadata": {} if metadata is None else metadata,
    }
    if not isinstance(body["metadata"], dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    require_json(body["metadata"], "metadata")
    return body


def stamp(body: dict[str, Any], now: float, ttl_hours: float) -> None:
    """Set ``body``'s creation time to ``now`` and its expiry ``ttl_hours`` later."""
    body["created_at"] = now
    body["expires_at"] = now + ttl_hours * 3600.0


def skip_warning(reason: str, agent_name: str) -> bool:
    """Log and warn (:class:`CacheSkipWarning`) that an answer was not stored; False.

    Call it straight from ``set``: the warning points at ``set``'s caller."""
    message = f"Response not cached for agent {sanitize_for_log(agent_name, 64)}: {reason}."
    log.info(message)
    warnings.warn(message, CacheSkipWarning, stacklevel=3)
    return False


# -- what a lookup and a listing return ------------------------------------------------------


#: Types of JSON values that need no copy (immutable).
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def json_copy(value: Any) -> Any:
    """A deep copy of a parsed JSON value (dicts and lists are the only mutable parts)."""
    kind = type(value)
    if kind is dict:
        return {
            name: item if type(item) in _IMMUTABLE else json_copy(item)
            for name, item in value.items()
        }
    if kind is list:
        return [item if type(item) in _IMMUTABLE else json_copy(item) for item in value]
    return value


def public_view(key: str, fields: Fields, now: float, metadata: dict[str, Any]) -> dict[str, Any]:
    """The dict ``get`` returns for the verified ``fields`` under ``key``, with ``metadata``
    (the fields' metadata parsed: a dict of the caller's own). The cost and times are floats
    already (:meth:`.signing.Signer.open_fields` makes them so)."""
    created = fields[6]
    return {
        "response": fields[0],
        "agent_name": fields[1],
        "model": fields[2],
        "input_tokens": fields[3],
        "output_tokens": fields[4],
        "estimated_cost": fields[5],
        "created_at": created,
        "expires_at": fields[7],
        "age_seconds": now - created if now > created else 0.0,
        "metadata": metadata,
        "key": key,
    }


def listing(key: str, size: int, hits: int, body: dict[str, Any]) -> dict[str, Any]:
    """The dict ``entries`` lists for a verified ``body`` (no answer text)."""
    metadata = body["metadata"]
    preview, origin = metadata.get("preview"), metadata.get("origin")
    return {
        "key": key,
        "agent_name": body["agent_name"],
        "model": body["model"],
        "created_at": float(body["created_at"]),
        "expires_at": float(body["expires_at"]),
        "size_bytes": size,
        "hits": hits,
        "input_tokens": body["input_tokens"],
        "output_tokens": body["output_tokens"],
        "estimated_cost": float(body["estimated_cost"]),
        "preview": preview if isinstance(preview, str) else "",
        "origin": origin if isinstance(origin, str) else "",
    }


def entry_view(
    public: dict[str, Any], listed: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    """The dict ``entry`` returns: what ``get`` returns, what ``entries`` lists, and the
    options that shaped the key ({} for old entries)."""
    options = body["metadata"].get("options")
    return {**public, **listed, "options": options if isinstance(options, dict) else {}}


# -- resolve_key, search ---------------------------------------------------------------------


def check_key_prefix(key: object) -> str:
    """``key`` lower-cased if it is a key or a prefix of at least :data:`MIN_PREFIX` hex
    digits; else :class:`CacheError` saying what to give."""
    if not isinstance(key, str) or not _PREFIX_PATTERN.match(key.lower()):
        raise CacheError(
            f"{str(key)[:70]!r} is not a cache key: give the key (64 hex digits) or at "
            f"least {MIN_PREFIX} of its first digits, as %agent cache lists them."
        )
    return key.lower()


def ambiguous_prefix(prefix: str) -> CacheError:
    """The error for a key prefix that more than one entry starts with."""
    return CacheError(f"The key prefix {prefix!r} matches more than one entry; type more digits.")


def check_search(text: object, limit: object) -> str:
    """The case-folded needle of a search; TypeError for a ``text`` that is not a non-empty
    str or a ``limit`` that is not a positive int."""
    if not isinstance(text, str) or not text:
        raise TypeError(f"text must be a non-empty str, not {text!r:.40}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise TypeError(f"limit must be a positive int, not {limit!r}")
    return text.casefold()


def matches(body: dict[str, Any], needle: str, agent: str | None) -> bool:
    """True when ``body`` is ``agent``'s (any agent's for None) and its preview or answer
    contains the case-folded ``needle``."""
    if agent is not None and body["agent_name"] != agent:
        return False
    preview = str(body["metadata"].get("preview") or "")
    return needle in preview.casefold() or needle in body["response"].casefold()


class Newest:
    """The ``limit`` newest listings offered, by (created_at, a tiebreak), in a min-heap."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._heap: list[tuple[float, Any, dict[str, Any]]] = []

    def offer(self, created_at: float, tiebreak: Any, listed: dict[str, Any]) -> None:
        """Keep ``listed`` if it is among the ``limit`` newest so far."""
        item = (created_at, tiebreak, listed)
        if len(self._heap) < self._limit:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def newest_first(self) -> list[dict[str, Any]]:
        """The kept listings, newest first."""
        ordered = sorted(self._heap, key=lambda i: i[:2], reverse=True)
        return [listed for _, _, listed in ordered]


# -- export ----------------------------------------------------------------------------------


def export_line(key: str, body: dict[str, Any]) -> str:
    """One JSON line of an export (key, agent, model, created, expires, preview, answer,
    metadata), newline included."""
    line = {
        "key": key,
        "agent": body["agent_name"],
        "model": body["model"],
        "created": float(body["created_at"]),
        "expires": float(body["expires_at"]),
        "preview": str(body["metadata"].get("preview") or ""),
        "answer": body["response"],
        "metadata": body["metadata"],
    }
    return json.dumps(line, ensure_ascii=False) + "\n"


def write_export(
    path: str | os.PathLike[str], force: bool, write_lines: Callable[[TextIO], int]
) -> int:
    """Create ``path`` new (``0600``, never through a symlink; an existing file only with
    ``force``) and return what ``write_lines`` returns after writing it; a failed export
    removes the file. :class:`CacheError` for a file that exists, a symlink or a file that
    cannot be written."""
    target = os.path.expanduser(os.fspath(path))
    if os.path.islink(target):
        raise CacheError(f"{target} is a symbolic link; export writes only to a real file.")
    if force and os.path.lexists(target):
        try:
            os.unlink(target)
        except OSError as exc:
            raise CacheError(f"Cannot replace {target}: {exc.strerror or exc}.") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise CacheError(
            f"{target} exists; choose a new file name, or replace it with --force (force=True)."
        ) from None
    except OSError as exc:
        raise CacheError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            return write_lines(out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
