"""Every default of the call pipeline, in one place.

The orchestrator's constructor, the per-call options (:class:`~.request.CallOptions`), the
circuit breaker, the retry policy, the response cache the engine opens, and the notebook's
``AgentMagics`` traits and ``SessionConfig`` all read these names, so a default is changed
once and the library and the notebook cannot drift apart (they used to be written in three
modules). This module imports nothing (only constants live here), so ``%load_ext`` and the
notebook can read it without pulling in the engine.

>>> from claude_force_magic.engine import defaults
>>> defaults.MAX_TOKENS
4096
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BREAKER_COOLDOWN_SECONDS",
    "BREAKER_THRESHOLD",
    "CACHE_TTL_HOURS",
    "CALLS_PER_MINUTE",
    "DEADLINE_SECONDS",
    "INJECTION_POLICY",
    "INPUT_TOKENS_PER_MINUTE",
    "MAX_CONCURRENT",
    "MAX_RETRIES",
    "MAX_TASK_CHARS",
    "MAX_TOKENS",
    "MODEL",
    "OUTPUT_TOKENS_PER_MINUTE",
    "PROMPT_CACHE",
    "STREAMING_REQUIRED_ABOVE",
    "TIMEOUT_SECONDS",
]

#: The model every call uses unless the agent, the orchestrator or the call names another.
MODEL: Final = "claude-sonnet-5-5"
#: Upper bound on answer tokens when neither the agent nor the call sets ``max_tokens``.
MAX_TOKENS: Final = 4096
#: Seconds one attempt may take (for a stream: the wait for each piece).
TIMEOUT_SECONDS: Final = 30.0
#: Seconds one call may take across all its retries (None in the constructor: no deadline).
DEADLINE_SECONDS: Final = 120.0
#: Retries after the first attempt (so at most ``MAX_RETRIES + 1`` requests per call).
MAX_RETRIES: Final = 3
#: Requests in flight at once per orchestrator.
MAX_CONCURRENT: Final = 10
#: Client-side request rate (None: unlimited).
CALLS_PER_MINUTE: Final = 50.0
#: Client-side input-token rate (None: unlimited).
INPUT_TOKENS_PER_MINUTE: Final[float | None] = None
#: Client-side output-token rate (None: unlimited).
OUTPUT_TOKENS_PER_MINUTE: Final[float | None] = None
#: How long a cached answer stays valid, in hours.
CACHE_TTL_HOURS: Final = 24.0
#: Prompt-injection screening of untrusted text: ``block``, ``warn`` or ``off``.
INJECTION_POLICY: Final = "block"
#: The longest task (characters) a call accepts.
MAX_TASK_CHARS: Final = 100_000
#: Consecutive server failures that open the circuit breaker.
BREAKER_THRESHOLD: Final = 5
#: Seconds an open circuit refuses calls before one probe is let through.
BREAKER_COOLDOWN_SECONDS: Final = 30.0
#: Prompt caching: ``auto`` (breakpoints where they pay, TTL by expected reuse), ``5m``,
#: ``1h`` or ``off`` (see :mod:`~claude_force_magic.engine.prompt_cache`).
PROMPT_CACHE: Final = "auto"
#: Above this ``max_tokens`` the SDK refuses non-streaming calls; such calls stream internally.
STREAMING_REQUIRED_ABOVE: Final = 21_333
