"""The shared setting checks: each names the setting and refuses what would switch a limit off."""

from __future__ import annotations

import doctest
import math
from decimal import Decimal

import pytest

from claude_force_magic import validation
from claude_force_magic.errors import ConfigurationError
from claude_force_magic.validation import check_flag, check_int, check_number


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, True, "3", None, [1]])
def test_positive_numbers_refuse_what_is_not_one(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"timeout_seconds must be a positive number"):
        check_number("timeout_seconds", bad)


def test_numbers_accept_ints_floats_and_decimals_as_float() -> None:
    assert check_number("x", 3) == 3.0
    assert check_number("x", Decimal("0.25")) == 0.25
    assert check_number("budget_usd", 0, strict=False) == 0.0


def test_minimum_and_strictness() -> None:
    with pytest.raises(ConfigurationError, match=r"x must be a finite number >= 2"):
        check_number("x", 1.5, minimum=2, strict=False)
    assert check_number("x", 2, minimum=2, strict=False) == 2.0
    with pytest.raises(ConfigurationError, match=r"x must be a finite number > 2"):
        check_number("x", 2, minimum=2)


def test_none_only_when_allowed_and_said_so() -> None:
    assert check_number("deadline_seconds", None, allow_none=True) is None
    with pytest.raises(ConfigurationError, match="or None, got 0"):
        check_number("deadline_seconds", 0, allow_none=True)


def test_hint_is_appended() -> None:
    with pytest.raises(ConfigurationError, match="Use None for no limit"):
        check_number("a per-minute limit", -5, hint="Use None for no limit.")


@pytest.mark.parametrize("bad", [0, -3, 1.0, True, "2"])
def test_ints_refuse_bools_floats_and_small_values(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"max_concurrent must be an integer >= 1"):
        check_int("max_concurrent", bad)
    assert check_int("max_retries", 0, minimum=0) == 0


@pytest.mark.parametrize("bad", ["no", 0, 1, None])
def test_flags_refuse_truthy_stand_ins(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="enable_cache must be True or False"):
        check_flag("enable_cache", bad)
    assert check_flag("refresh", False) is False


def test_docstring_examples() -> None:
    assert doctest.testmod(validation).failed == 0
