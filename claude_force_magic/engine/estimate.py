"""Token estimates made before a request is sent, for the budget and the rate limiter.

They must not undercount: a low estimate lets a budget be overshot and a token bucket admit
more than the server will. English text and code average about four characters per token;
text in other scripts (Chinese, Japanese, Cyrillic, emoji ...) takes about one token per
character or more, so each non-ASCII character is counted as a whole token.
"""

from __future__ import annotations

import math

__all__ = ["estimate_input_tokens", "estimate_text_tokens"]

#: Tokens the Messages API adds around the system prompt and the user turn.
MESSAGE_OVERHEAD_TOKENS = 8


def _text_tokens(text: str) -> int:
    if text.isascii():
        return math.ceil(len(text) / 4)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def estimate_text_tokens(text: str) -> int:
    """A cautious token count of ``text`` (no message overhead), e.g. of a partial answer.

    >>> estimate_text_tokens("a" * 400)
    100
    """
    return _text_tokens(text)


def estimate_input_tokens(*texts: str) -> int:
    """A cautious estimate of the input tokens of a request made of ``texts``.

    >>> estimate_input_tokens("a" * 400)
    108
    >>> estimate_input_tokens("数据" * 50)
    108
    """
    return sum(_text_tokens(t) for t in texts) + MESSAGE_OVERHEAD_TOKENS
