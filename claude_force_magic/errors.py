"""Every error claude-force-magic raises, in one tree, split by what the caller does next.

::

    ClaudeForceError                      catch-all for this package
    ├── ConfigurationError                fix a setting, a file or an argument, then retry
    │   ├── SecretError                   the cache secret is missing, a placeholder or too short
    │   ├── AgentConfigError              .claude/claude.json or an agent file is invalid
    │   │   └── UnknownAgentError         no agent (or workflow) of that name; suggests close names
    │   ├── BatchJobNotFoundError         no Message Batch job of that id in the cache directory
    │   └── PricingError                  the price table or an override is invalid
    ├── SecurityError                     refused on purpose; do not retry blindly
    │   ├── UnsafePathError               symlink, foreign owner, loose permissions, path escape
    │   └── PromptInjectionError          the screening policy blocked untrusted data (or a task)
    ├── InvalidTaskError                  the task is too long or has control characters
    ├── CacheError                        the response cache could not do its job
    │   ├── IntegrityError                an entry failed its signature check (served as a miss)
    │   └── RedisUnavailableError         Redis is down, unreachable or refused the credentials
    ├── BudgetExceededError               the call would exceed ``budget_usd``; raise the budget
    ├── TeamUnavailableError              the team's Redis is unreachable for a team-only action
    ├── CircuitOpenError                  too many consecutive failures; wait for the cool-down
    ├── DeadlineExceededError             the overall deadline ran out across attempts
    └── APIError                          the Messages API (or the network) failed the call
        ├── AuthenticationError           401/403: the API key is missing or wrong
        ├── BadRequestError               400/404/413/422: the request itself is wrong; not retried
        ├── RateLimitError                429: retried with back-off; ``retry_after`` in seconds
        ├── OverloadedError               529: retried with back-off
        ├── ServerError                   500/502/503/504: retried with back-off
        ├── APIConnectionError            the connection failed or dropped: retried
        ├── APITimeoutError               one attempt took longer than its timeout: retried
        ├── ResponseError                 the answer is unusable: no text, refusal, stream error
        └── BatchItemError                a Message Batch item errored, expired or was canceled

Retryable errors carry ``retryable = True``. No exception here ever holds an API key or the
cache secret in its message or attributes.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AgentConfigError",
    "AuthenticationError",
    "BadRequestError",
    "BatchItemError",
    "BatchJobNotFoundError",
    "BudgetExceededError",
    "CacheError",
    "CircuitOpenError",
    "ClaudeForceError",
    "ConfigurationError",
    "DeadlineExceededError",
    "IntegrityError",
    "InvalidTaskError",
    "OverloadedError",
    "PricingError",
    "PromptInjectionError",
    "RateLimitError",
    "RedisUnavailableError",
    "ResponseError",
    "SecretError",
    "SecurityError",
    "ServerError",
    "TeamUnavailableError",
    "UnknownAgentError",
    "UnsafePathError",
]


class ClaudeForceError(Exception):
    """Root of every error raised by claude-force-magic.

    ``retryable`` says whether trying the same call again later may succeed.
    """

    retryable: bool = False


class ConfigurationError(ClaudeForceError, ValueError):
    """A setting, file or argument is wrong; the message says which and how to fix it."""


class SecretError(ConfigurationError):
    """The cache secret is missing, a known placeholder, or shorter than 16 bytes."""


class AgentConfigError(ConfigurationError):
    """``.claude/claude.json`` or an agent definition file is malformed or unreadable."""


class UnknownAgentError(AgentConfigError, LookupError):
    """No agent or workflow has that name.

    ``suggestions`` holds the closest known names (at most a few, never the whole list).
    """

    def __init__(self, message: str, *, name: str = "", suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.suggestions = suggestions


class PricingError(ConfigurationError):
    """The price table, or a user's price override, is invalid."""


class SecurityError(ClaudeForceError):
    """Refused on purpose to protect the user; the message says why and what to change."""


class UnsafePathError(SecurityError):
    """A path is a symlink, owned by someone else, writable by others, or escapes its root."""


class PromptInjectionError(SecurityError):
    """The injection screen found an override in untrusted data (or in a task the caller
    asked to screen): override phrases, requests for the system prompt or secrets, role
    markers or chat-template tokens.

    ``findings`` names what was found; pass ``injection_policy="warn"`` or ``"off"`` for one
    call (``--trust`` in a notebook cell) to send it anyway.
    """

    def __init__(self, message: str, *, findings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class InvalidTaskError(ClaudeForceError, ValueError):
    """The task is empty, too long, or contains control characters."""


class CacheError(ClaudeForceError):
    """The response cache could not complete an operation."""


class IntegrityError(CacheError):
    """A cache entry failed its signature or format check.

    The cache deletes such entries and reports a miss; this exception is raised only by
    low-level helpers and by ``verify()`` reports.
    """


class BudgetExceededError(ClaudeForceError):
    """The call would take spending past ``budget_usd``; it was not sent.

    ``spent``, ``budget`` and ``estimate`` are in USD.
    """

    def __init__(self, message: str, *, spent: float, budget: float, estimate: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.budget = budget
        self.estimate = estimate


class CircuitOpenError(ClaudeForceError):
    """Calls fail fast after repeated failures; ``retry_in`` seconds until a probe is allowed."""

    retryable = True

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class DeadlineExceededError(ClaudeForceError, TimeoutError):
    """The overall deadline for a call ran out, retries included."""


class APIError(ClaudeForceError):
    """The Messages API or the network failed the call.

    ``status_code`` and ``request_id`` are set when the server answered.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class AuthenticationError(APIError):
    """The API key is missing, malformed or not allowed (401/403)."""


class BadRequestError(APIError):
    """The server rejected the request as invalid (400/404/413/422); retrying will not help."""


class RateLimitError(APIError):
    """429: too many requests or tokens per minute. ``retry_after`` is in seconds, if known."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.retry_after = retry_after


class OverloadedError(APIError):
    """529: the service is overloaded; retried with back-off."""

    retryable = True


class ServerError(APIError):
    """A 5xx answer from the server; retried with back-off."""

    retryable = True


class APIConnectionError(APIError):
    """The connection could not be made or dropped before the answer was complete."""

    retryable = True


class APITimeoutError(APIError, TimeoutError):
    """One attempt took longer than ``timeout_seconds``."""

    retryable = True


class ResponseError(APIError):
    """The server answered but the answer is unusable: no text, a refusal, or a stream error.

    ``stop_reason`` is the server's stop reason when there was one. ``usage`` is the token
    usage the server reported for the unusable answer (such answers are still billed), or
    None when it reported none.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        stop_reason: str | None = None,
        retryable: bool = False,
        usage: object | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.stop_reason = stop_reason
        self.retryable = retryable
        self.usage = usage


class RedisUnavailableError(CacheError):
    """Redis (the team's shared cache, budget or limits) could not be reached or refused the
    credentials: connection refused or dropped, a timeout, a wrong password, a missing ACL
    right. Retryable. The message names the server with its password masked; callers fall
    back to local state (the shared cache serves a miss)."""

    retryable = True


class TeamUnavailableError(ClaudeForceError):
    """The team's Redis (``redis_url``) cannot be reached for an operation that has no local
    fallback, such as resetting the team's spend; try again when it is back."""


class BatchJobNotFoundError(ConfigurationError, LookupError):
    """No Message Batch job of that id is registered in the cache directory (never submitted
    there, or its registry entry was deleted)."""


class BatchItemError(APIError):
    """One request of a Message Batch did not succeed, and was not billed.

    ``result_type`` is the batch result's type: ``errored`` (``error_type`` is the API's error
    type, e.g. ``invalid_request_error`` or ``api_error``), ``expired`` (not processed within
    24 hours) or ``canceled``. ``retryable`` is True when resubmitting the same request may
    succeed (``job.retry_failed()``): everything but an invalid request.
    """

    def __init__(
        self,
        message: str,
        *,
        result_type: str,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.result_type = result_type
        self.error_type = error_type
        self.retryable = error_type != "invalid_request_error"
