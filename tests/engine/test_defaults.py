"""The engine's defaults live in one module and every constructor reads them."""

from __future__ import annotations

import inspect

from claude_force_magic.engine import defaults
from claude_force_magic.engine.breaker import CircuitBreaker
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.retry import RetryPolicy
from claude_force_magic.guard import DEFAULT_MAX_TASK_CHARS


def _signature_defaults(fn: object) -> dict[str, object]:
    params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def test_orchestrator_constructor_defaults_come_from_the_defaults_module() -> None:
    got = _signature_defaults(AsyncAgentOrchestrator.__init__)
    expected = {
        "model": defaults.MODEL,
        "max_tokens": defaults.MAX_TOKENS,
        "max_concurrent": defaults.MAX_CONCURRENT,
        "timeout_seconds": defaults.TIMEOUT_SECONDS,
        "deadline_seconds": defaults.DEADLINE_SECONDS,
        "max_retries": defaults.MAX_RETRIES,
        "calls_per_minute": defaults.CALLS_PER_MINUTE,
        "input_tokens_per_minute": defaults.INPUT_TOKENS_PER_MINUTE,
        "output_tokens_per_minute": defaults.OUTPUT_TOKENS_PER_MINUTE,
        "cache_ttl_hours": defaults.CACHE_TTL_HOURS,
        "injection_policy": defaults.INJECTION_POLICY,
        "max_task_chars": defaults.MAX_TASK_CHARS,
        "breaker_threshold": defaults.BREAKER_THRESHOLD,
        "breaker_cooldown_seconds": defaults.BREAKER_COOLDOWN_SECONDS,
    }
    assert {name: got[name] for name in expected} == expected


def test_breaker_retry_and_guard_share_the_defaults() -> None:
    breaker = CircuitBreaker()
    assert breaker.threshold == defaults.BREAKER_THRESHOLD
    assert breaker.cooldown_seconds == defaults.BREAKER_COOLDOWN_SECONDS
    assert RetryPolicy().max_retries == defaults.MAX_RETRIES
    assert DEFAULT_MAX_TASK_CHARS == defaults.MAX_TASK_CHARS


def test_defaults_module_is_import_light() -> None:
    source = inspect.getsource(defaults)
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "from typing import Final"]
