"""Tests for engine/response.py: every unusable answer is a typed ResponseError (BUG-004)."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from claude_force_magic.engine.response import check_message, read_usage
from claude_force_magic.errors import ResponseError


def msg(content: Any, stop: str | None = "end_turn", **usage: int) -> NS:
    return NS(content=content, stop_reason=stop, usage=NS(**usage) if usage else None)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (msg(None), "content is null"),
        (msg([]), "no content blocks"),
        (msg([NS(type="tool_use", id="x")]), "no text block (only: tool_use)"),
        (msg([NS(type="text", text="  ")]), "empty"),
        (msg([NS(type="text", text=None)]), "no text block"),
        (msg([NS(type="text", text="sorry")], stop="refusal"), "declined"),
        (msg("not a list"), "no content blocks"),
        (NS(), "content is null"),
    ],
)
def test_bug_004_unusable_answers_raise_response_error(message: Any, words: str) -> None:
    with pytest.raises(ResponseError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_message(message, max_tokens=10, request_id="req_1")


def test_text_blocks_joined_and_truncation_flagged() -> None:
    answer = check_message(
        msg(
            [NS(type="text", text="a"), NS(type="thinking"), NS(type="text", text="b")],
            stop="max_tokens",
            input_tokens=3,
            output_tokens=10,
        ),
        max_tokens=10,
    )
    assert answer.text == "ab"
    assert answer.truncated and "max_tokens=10" in answer.warnings[0]
    assert answer.usage.input_tokens == 3 and answer.usage.output_tokens == 10


def test_usage_tolerates_missing_and_bad_fields() -> None:
    usage = read_usage(NS(usage=NS(input_tokens=None, output_tokens=-1, cache_read_input_tokens=5)))
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (0, 0, 5)
    assert read_usage(object()).input_tokens == 0
