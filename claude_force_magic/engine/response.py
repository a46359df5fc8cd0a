"""Validate a Messages API answer before anyone uses it (BUG-004).

``content`` may be None, empty, hold no text block, or hold only empty text; ``stop_reason``
may be ``refusal`` or ``max_tokens``. Each case becomes a typed :class:`ResponseError` or a
``truncated`` warning here, never a ``TypeError`` further on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ResponseError

__all__ = ["Answer", "Usage", "check_message", "read_usage"]


@dataclass(frozen=True)
class Usage:
    """Token counts of one answer (0 when the server did not say).

    ``cache_creation_input_tokens`` is every prompt-cache write; ``ephemeral_5m_input_tokens``
    and ``ephemeral_1h_input_tokens`` are its split by TTL as the API reports it in
    ``usage.cache_creation`` (a write the server did not split is priced at the 5-minute
    rate). :attr:`cache_creation` gives the split in the API's shape, so a :class:`Usage` is
    priced by :meth:`~claude_force_magic.pricing.PriceTable.cost` like the SDK's own.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def cache_creation(self) -> dict[str, int]:
        """The cache writes by TTL, as the API's ``usage.cache_creation`` object."""
        return {
            "ephemeral_5m_input_tokens": self.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": self.ephemeral_1h_input_tokens,
        }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_usage(message: Any) -> Usage:
    """The usage of ``message`` (an SDK ``Message`` or anything shaped like it); never raises."""
    usage = getattr(message, "usage", None)
    if usage is None:
        return Usage()
    split = getattr(usage, "cache_creation", None)
    return Usage(
        input_tokens=_int(getattr(usage, "input_tokens", 0)),
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cache_creation_input_tokens=_int(getattr(usage, "cache_creation_input_tokens", 0)),
        cache_read_input_tokens=_int(getattr(usage, "cache_read_input_tokens", 0)),
        ephemeral_5m_input_tokens=_int(getattr(split, "ephemeral_5m_input_tokens", 0)),
        ephemeral_1h_input_tokens=_int(getattr(split, "ephemeral_1h_input_tokens", 0)),
    )


@dataclass(frozen=True)
class Answer:
    """A usable answer: its text, stop reason, and whether it was cut at ``max_tokens``."""

    text: str
    stop_reason: str | None
    truncated: bool
    usage: Usage
    request_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_message(message: Any, *, max_tokens: int, request_id: str | None = None) -> Answer:
    """Return the :class:`Answer` in ``message`` or raise :class:`ResponseError`.

    Raises when ``content`` is None or empty, has no text block, or its text is empty, and
    when ``stop_reason`` is ``refusal`` (the error's ``stop_reason`` says so); the error's
    ``usage`` holds the billed tokens so the caller can still charge them. A
    ``max_tokens`` stop is not an error: the answer is returned with ``truncated=True`` and a
    warning telling how to get the rest.
    """
    stop_reason = getattr(message, "stop_reason", None)
    stop = stop_reason if isinstance(stop_reason, str) else None
    usage = read_usage(message)
    content = getattr(message, "content", None)
    where = f" (request id {request_id})" if request_id else ""
    if stop == "refusal":
        raise ResponseError(
            f"The model declined to answer (stop_reason 'refusal'){where}. Rephrase the task; "
            "retrying the same request will not help.",
            request_id=request_id,
            stop_reason=stop,
            usage=usage,
        )
    if content is None:
        raise ResponseError(
            f"The answer had no content (content is null){where}.",
            request_id=request_id,
            stop_reason=stop,
            usage=usage,
        )
    if not isinstance(content, (list, tuple)) or not content:
        raise ResponseError(
            f"The answer had no content blocks{where}.",
            request_id=request_id,
            stop_reason=stop,
            usage=usage,
        )
    texts = [
        block_text
        for block in content
        if getattr(block, "type", None) == "text"
        and isinstance(block_text := getattr(block, "text", None), str)
    ]
    if not texts:
        kinds = ", ".join(sorted({str(getattr(b, "type", "?")) for b in content}))
        raise ResponseError(
            f"The answer had no text block (only: {kinds}){where}.",
            request_id=request_id,
            stop_reason=stop,
            usage=usage,
        )
    text = "".join(texts)
    if not text.strip():
        raise ResponseError(
            f"The answer's text was empty{where}.",
            request_id=request_id,
            stop_reason=stop,
            usage=usage,
        )
    truncated = stop == "max_tokens"
    warnings = (
        [
            f"The answer was cut off at max_tokens={max_tokens}; pass a larger max_tokens "
            "for the complete answer."
        ]
        if truncated
        else []
    )
    return Answer(
        text=text,
        stop_reason=stop,
        truncated=truncated,
        usage=usage,
        request_id=request_id,
        warnings=warnings,
    )
