"""The async engine: orchestrator pipeline, rate limits, retries, circuit breaker, budget.

Import the orchestrator from ``claude_force_magic`` (lazily) or from
``claude_force_magic.engine.orchestrator``. This package's ``__init__`` imports nothing heavy.
"""

from __future__ import annotations

__all__: list[str] = []
