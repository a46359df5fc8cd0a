"""Token estimates before sending must not undercount (budget and token buckets rely on them)."""

from __future__ import annotations

import doctest

from claude_force_magic.engine import estimate
from claude_force_magic.engine.estimate import MESSAGE_OVERHEAD_TOKENS, estimate_input_tokens


def test_ascii_text_counts_about_four_characters_a_token() -> None:
    assert estimate_input_tokens("x" * 4000) == 1000 + MESSAGE_OVERHEAD_TOKENS
    assert estimate_input_tokens("abc") == 1 + MESSAGE_OVERHEAD_TOKENS


def test_non_ascii_characters_count_a_token_each() -> None:
    """CJK text is about a token per character: a len/4 estimate would undercount 4x."""
    cjk = "解析持续时间" * 100  # 600 characters
    assert estimate_input_tokens(cjk) == 600 + MESSAGE_OVERHEAD_TOKENS
    mixed = "def f(): return '数据'"  # 18 ASCII + 2 CJK characters
    assert estimate_input_tokens(mixed) == 5 + 2 + MESSAGE_OVERHEAD_TOKENS


def test_every_text_is_counted() -> None:
    assert estimate_input_tokens("a" * 40, "b" * 40) == 20 + MESSAGE_OVERHEAD_TOKENS


def test_docstring_examples() -> None:
    assert doctest.testmod(estimate).failed == 0
