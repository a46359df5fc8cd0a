"""Checks for numeric and on/off settings, shared by every layer.

Each check names the setting in its :class:`~.errors.ConfigurationError`, refuses ``bool``
where a number is meant (``True`` is an ``int`` to Python, never a sensible limit), and refuses
NaN and infinities, which would silently switch a limit off.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Literal, overload

from .errors import ConfigurationError

__all__ = ["check_flag", "check_int", "check_number"]


def _bounds(minimum: float, strict: bool) -> str:
    if minimum == 0 and strict:
        return "a positive number"
    return f"a finite number {'>' if strict else '>='} {minimum:g}"


@overload
def check_number(
    name: str,
    value: object,
    *,
    minimum: float = ...,
    strict: bool = ...,
    allow_none: Literal[False] = ...,
    hint: str = ...,
) -> float: ...
@overload
def check_number(
    name: str,
    value: object,
    *,
    minimum: float = ...,
    strict: bool = ...,
    allow_none: bool,
    hint: str = ...,
) -> float | None: ...
def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    strict: bool = True,
    allow_none: bool = False,
    hint: str = "",
) -> float | None:
    """``value`` as a float above ``minimum`` (or at least it, with ``strict=False``).

    ``None`` passes through when ``allow_none``. Raises :class:`ConfigurationError` naming
    ``name`` for anything else: a bool, a non-number, NaN, an infinity, or a value out of
    bounds. ``hint`` is appended to the message (how to turn the setting off, say).

    >>> check_number("timeout_seconds", 2)
    2.0
    >>> check_number("budget_usd", None, strict=False, allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    number = (
        float(value)
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
        else math.nan
    )
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        tail = " or None" if allow_none else ""
        extra = f" {hint}" if hint else ""
        raise ConfigurationError(
            f"{name} must be {_bounds(minimum, strict)}{tail}, got {value!r}.{extra}"
        )
    return number


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``; :class:`ConfigurationError` naming
    ``name`` otherwise (a bool or a float such as ``3.0`` included).

    >>> check_int("max_retries", 0, minimum=0)
    0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``; :class:`ConfigurationError` naming ``name``
    otherwise (``"no"`` is a true string, so strings are refused rather than guessed)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}.")
    return value
