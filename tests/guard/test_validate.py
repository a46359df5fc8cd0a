"""Task validation: type, emptiness, size and control characters."""

from __future__ import annotations

import pytest

from claude_force_magic.errors import ConfigurationError, InvalidTaskError
from claude_force_magic.guard import validate_task


def test_valid_task_is_returned_unchanged() -> None:
    task = "Line one\n\tindented\r\nwindows line"
    assert validate_task(task) is task


@pytest.mark.parametrize("task", ["", "   ", "\n\t \r\n"])
def test_empty_or_whitespace_task_refused(task: str) -> None:
    with pytest.raises(InvalidTaskError, match="empty"):
        validate_task(task)


@pytest.mark.parametrize("task", [None, b"bytes", 42, ["a"]])
def test_non_str_task_refused(task: object) -> None:
    with pytest.raises(InvalidTaskError, match="must be a str"):
        validate_task(task)


def test_too_long_task_names_length_limit_and_fix() -> None:
    with pytest.raises(InvalidTaskError) as info:
        validate_task("x" * 101, max_chars=100)
    message = str(info.value)
    assert "101 characters" in message
    assert "limit is 100" in message
    assert "max_task_chars=101" in message


def test_task_at_the_limit_passes() -> None:
    assert validate_task("x" * 100, max_chars=100) == "x" * 100


def test_default_limit_is_100k() -> None:
    validate_task("y" * 100_000)
    with pytest.raises(InvalidTaskError):
        validate_task("y" * 100_001)


@pytest.mark.parametrize(
    ("task", "position", "code"),
    [
        ("abc\x00def", 3, "U+0000 (NUL)"),
        ("\x1b[31mred", 0, "U+001B (ESC)"),
        ("a\rb", 1, "U+000D"),
        ("ok\x7f", 2, "U+007F (DEL)"),
        ("c1 \x85 range", 3, "U+0085"),
        ("bell\x07", 4, "U+0007 (BEL)"),
    ],
)
def test_control_character_reported_with_position_and_code(
    task: str, position: int, code: str
) -> None:
    with pytest.raises(InvalidTaskError) as info:
        validate_task(task)
    assert f"at position {position}" in str(info.value)
    assert code in str(info.value)


def test_several_control_characters_are_counted() -> None:
    with pytest.raises(InvalidTaskError, match=r"3 such characters"):
        validate_task("a\x00b\x01c\x02")


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_bad_limit_is_a_configuration_error(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_task_chars"):
        validate_task("fine", max_chars=bad)  # type: ignore[arg-type]
