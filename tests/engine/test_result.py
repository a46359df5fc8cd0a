"""Tests for engine/result.py: readable repr, JSON-able dict, failures carry the typed error."""

from __future__ import annotations

import json

from claude_force_magic.engine.result import METADATA_KEYS, AgentResult, empty_metadata
from claude_force_magic.errors import RateLimitError


def test_repr_is_readable() -> None:
    meta = empty_metadata("claude-sonnet-5-5")
    meta.update(latency_s=1.234, input_tokens=512, output_tokens=1024, cost_usd=0.0123)
    result = AgentResult("python-expert", True, "answer", [], meta)
    assert repr(result) == "AgentResult(python-expert ✓ 1.23s 512→1,024 tok $0.0123 cached=False)"


def test_failure_carries_error_and_message_and_to_dict_is_json() -> None:
    err = RateLimitError("HTTP 429: slow down", retry_after=2)
    result = AgentResult.failure("code-reviewer", err, metadata={"attempts": 4})
    assert not result.success and result.error is err
    assert result.errors == ["RateLimitError: HTTP 429: slow down"]
    assert "✗" in repr(result) and "$?" in repr(result) and "RateLimitError" in repr(result)
    data = result.to_dict()
    assert "error" not in data and data["error_type"] == "RateLimitError"
    assert data["metadata"]["attempts"] == 4
    assert set(METADATA_KEYS) <= set(data["metadata"])
    json.dumps(data)


def test_to_dict_stringifies_foreign_values() -> None:
    meta = empty_metadata()
    meta["odd"] = {1: object.__name__, "t": (1, 2)}
    data = AgentResult("a", True, "x", [], meta).to_dict()
    assert data["metadata"]["odd"] == {"1": "object", "t": [1, 2]}
    json.dumps(data)


def test_convenience_properties() -> None:
    meta = empty_metadata()
    meta.update(cached=True, cost_usd=0.0)
    result = AgentResult("a", True, "x", [], meta)
    assert result.cached and result.cost_usd == 0.0
