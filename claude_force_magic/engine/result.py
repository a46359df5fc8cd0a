"""``AgentResult``: what one agent call produced, successful or not.

A result is a plain dataclass: ``success`` and ``output`` for the answer, ``errors`` for
human-readable messages, ``metadata`` for numbers (tokens, cost, latency, attempts, cache,
and for a streamed answer ``ttft_s``, ``tpot_s``, ``itl`` and ``output_tokens_per_s``: None
for non-streamed calls, cache hits and failures),
and ``error`` for the typed exception behind a failure (kept out of :meth:`AgentResult.to_dict`
so results stay JSON-able).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ClaudeForceError

__all__ = ["METADATA_KEYS", "AgentResult", "empty_metadata"]

#: The keys every result's ``metadata`` carries (values may be ``None`` when unknown).
METADATA_KEYS: tuple[str, ...] = (
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "cost_usd",
    "saved_usd",
    "prompt_cache_saved_usd",
    "latency_s",
    "attempts",
    "cached",
    "cache_age_s",
    "stop_reason",
    "request_id",
    "truncated",
    "warnings",
    "status",
    "cut",
    "ttft_s",
    "tpot_s",
    "itl",
    "output_tokens_per_s",
    "server_ttft_s",
)


def empty_metadata(model: str | None = None) -> dict[str, Any]:
    """A metadata dict with every key of :data:`METADATA_KEYS` set to its neutral value."""
    return {
        "model": model,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_5m_input_tokens": 0,
        "cache_creation_1h_input_tokens": 0,
        "cost_usd": None,
        "saved_usd": 0.0,
        "prompt_cache_saved_usd": 0.0,
        "latency_s": 0.0,
        "attempts": 0,
        "cached": False,
        "cache_age_s": None,
        "stop_reason": None,
        "request_id": None,
        "truncated": False,
        "warnings": [],
        "status": None,
        "cut": False,
        "ttft_s": None,
        "tpot_s": None,
        "itl": None,
        "output_tokens_per_s": None,
        "server_ttft_s": None,
    }


@dataclass
class AgentResult:
    """The outcome of one agent call.

    ``success`` is False when the call failed after it was accepted (API errors after retries,
    an open circuit, the deadline, an unusable answer); ``errors`` then says why in words and
    ``error`` holds the typed exception. Caller mistakes (unknown agent, bad task, budget) are
    raised, not returned, except inside :meth:`AsyncAgentOrchestrator.execute_multiple`.
    """

    agent_name: str
    success: bool
    output: str = ""
    errors: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=empty_metadata)
    error: ClaudeForceError | None = field(default=None, compare=False)

    @classmethod
    def failure(
        cls,
        agent_name: str,
        error: ClaudeForceError,
        *,
        metadata: dict[str, Any] | None = None,
        output: str = "",
    ) -> AgentResult:
        """A failed result carrying ``error``'s message and the typed exception."""
        meta = empty_metadata()
        if metadata:
            meta.update(metadata)
        return cls(
            agent_name=agent_name,
            success=False,
            output=output,
            errors=[f"{type(error).__name__}: {error}"],
            metadata=meta,
            error=error,
        )

    @property
    def cached(self) -> bool:
        """True when the answer came from the response cache."""
        return bool(self.metadata.get("cached", False))

    @property
    def cost_usd(self) -> float | None:
        """What the call cost in USD (0.0 for cache hits, None when the price is unknown)."""
        value = self.metadata.get("cost_usd")
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the result (the ``error`` object is left out; see ``errors``)."""
        return {
            "agent_name": self.agent_name,
            "success": self.success,
            "output": self.output,
            "errors": list(self.errors),
            "metadata": _jsonable(self.metadata),
            "error_type": None if self.error is None else type(self.error).__name__,
        }

    def __repr__(self) -> str:
        meta = self.metadata
        mark = "✓" if self.success else "✗"
        parts = [f"{self.agent_name} {mark}"]
        latency = meta.get("latency_s")
        if isinstance(latency, (int, float)):
            parts.append(f"{latency:.2f}s")
        parts.append(f"{_int(meta.get('input_tokens')):,}→{_int(meta.get('output_tokens')):,} tok")
        cost = meta.get("cost_usd")
        parts.append("$?" if cost is None else f"${cost:.4f}")
        parts.append(f"cached={bool(meta.get('cached', False))}")
        if meta.get("truncated"):
            parts.append("truncated")
        if not self.success and self.error is not None:
            parts.append(type(self.error).__name__)
        return f"AgentResult({' '.join(parts)})"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
