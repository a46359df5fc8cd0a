"""Cache keys: SHA-256 over a canonical JSON of everything that changes the answer.

The key covers the agent name, the task, the model and every other request option passed as
keyword arguments (system prompt or agent definition hash, ``max_tokens``, stop sequences...).
Two calls get the same key exactly when their canonical JSON is the same text::

    {"agent":...,"model":...,"request":{...},"task":...,"v":1}

serialized with sorted keys, no whitespace and ``ensure_ascii=False``. Tuples serialize like
lists. Pure functions: safe from any thread or process.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["KEY_VERSION", "canonical_json", "key_for", "key_of", "require_json"]

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

#: Bump when the meaning of a key changes; old entries then simply stop matching.
KEY_VERSION = 1
_VERSION_TAIL = f',"v":{KEY_VERSION}}}'
_quote = json.encoder.encode_basestring  # what the encoder uses with ensure_ascii=False


def _check_text(name: str, value: object) -> None:
    if type(value) is not str and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


_SCALARS = frozenset({str, int, bool, type(None)})


def _find_unjsonable(value: Any) -> tuple[list[str], str] | None:
    """Return (reversed path parts, problem) for the first value JSON cannot represent.

    The path is only built on failure, so checking a valid value allocates nothing.
    """
    kind = type(value)
    if kind in _SCALARS:
        return None
    if kind is float or isinstance(value, float):
        return None if math.isfinite(value) else ([], f"non-finite float {value!r}")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_unjsonable(item)
            if found:
                found[0].append(f"[{i}]")
                return found
        return None
    if isinstance(value, Mapping):
        for k, item in value.items():
            if type(k) is not str:
                return [], f"dict key {k!r} is {type(k).__name__}, not str"
            found = _find_unjsonable(item)
            if found:
                found[0].append(f"[{k!r}]")
                return found
        return None
    if isinstance(value, (str, int)):  # subclasses such as enums serialize as their base
        return None
    return [], type(value).__name__


def require_json(value: Any, name: str) -> None:
    """Raise TypeError naming the first part of ``value`` that JSON cannot represent.

    Only str, int, float (finite), bool, None, lists, tuples and str-keyed dicts are accepted.
    """
    try:
        found = _find_unjsonable(value)
    except RecursionError:
        raise TypeError(
            f"The cache needs JSON values, but {name} is nested too deeply or circular."
        ) from None
    if found:
        parts, problem = found
        where = name + "".join(reversed(parts))
        raise TypeError(
            f"The cache needs JSON values, but {where} ({problem}) is not JSON-serializable. "
            "Pass str, int, float, bool, None, lists or str-keyed dicts "
            "(hash bigger objects first)."
        )


def canonical_json(value: Any) -> str:
    """Serialize ``value`` canonically (sorted keys, no spaces); TypeError if not JSON."""
    require_json(value, "value")
    return _ENCODER.encode(value)


#: How the encoder writes the three JSON constants.
_CONSTANTS = {None: "null", True: "true", False: "false"}


def _encode_flat(request: dict[str, Any]) -> str | None:
    """``canonical_json(request)`` for the common case of options that are all exact ``int``,
    ``str``, ``bool`` or None (``max_tokens``, a definition hash, ``stop_sequences=None``...),
    built by hand; None for anything else (float, containers, subclasses), which takes the
    general path.

    Exactly what the encoder writes: keys sorted as strings, an int as ``int.__repr__``, a
    str quoted as with ``ensure_ascii=False``, ``null``, ``true`` and ``false``.
    """
    parts = []
    for name in sorted(request):
        value = request[name]
        kind = type(value)
        if kind is int:
            parts.append(_quote(name) + ":" + int.__repr__(value))
        elif kind is str:
            parts.append(_quote(name) + ":" + _quote(value))
        elif kind is bool or value is None:
            parts.append(_quote(name) + ":" + _CONSTANTS[value])
        else:
            return None
    return "{" + ",".join(parts) + "}"


def _encode_request(request: dict[str, Any]) -> str:
    if not request:
        return "{}"
    flat = _encode_flat(request)
    if flat is not None:
        return flat
    require_json(request, "request")
    return _ENCODER.encode(request)


def key_for(agent_name: str, task: str, model: str, **request: Any) -> str:
    """Return the hex SHA-256 cache key of one request.

    Raises TypeError when ``agent_name``, ``task`` or ``model`` is not a str, or when a
    ``request`` value is not JSON-serializable (the message names the offending option).
    """
    return key_of(agent_name, task, model, request)


def key_of(agent_name: str, task: str, model: str, request: dict[str, Any]) -> str:
    """:func:`key_for` with the request options as one dict (a caller that already holds
    them as a dict, such as ``ResponseCache.get``, passes it as it is)."""
    if type(agent_name) is not str or type(task) is not str or type(model) is not str:
        _check_text("agent_name", agent_name)  # subclasses of str pass; others raise
        _check_text("task", task)
        _check_text("model", model)
    # Exactly canonical_json({"v":..., "agent":..., "task":..., "model":..., "request":...}),
    # assembled by hand in sorted-key order: it runs on every get and set.
    text = "".join(
        (
            '{"agent":',
            _quote(agent_name),
            ',"model":',
            _quote(model),
            ',"request":',
            _encode_request(request),
            ',"task":',
            _quote(task),
            _VERSION_TAIL,
        )
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
