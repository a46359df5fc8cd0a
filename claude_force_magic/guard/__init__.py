"""The guard: what a task must look like before it is sent, and how it is sent and logged.

* :mod:`.validate` — :func:`validate_task`: type, size and control-character checks.
* :mod:`.screen` — :func:`screen` (a task, or one named untrusted value) and
  :func:`screen_untrusted` (every untrusted value) under an :class:`InjectionPolicy`:
  override phrases, secret requests, jailbreak and role markers, chat-template tokens and
  encoded blobs, returned as :class:`Finding` objects or raised as
  :class:`~claude_force_magic.errors.PromptInjectionError`.
* :mod:`.prompt` — :func:`build_request`, :func:`build_user_content`, :func:`wrap_untrusted`:
  the agent definition in ``system``, the task in the user message, notebook values wrapped
  as untrusted data (SEC-002).
* :mod:`.logs` — :func:`sanitize_for_log`, :class:`SecretRedactor`, :func:`get_logger`:
  one-line, bounded log records without secrets (SEC-005).

Importing this package is cheap (standard library only).
"""

from __future__ import annotations

from .logs import SecretRedactor, get_logger, sanitize_for_log
from .prompt import (
    UNTRUSTED_NOTE,
    build_request,
    build_user_content,
    unwrap_untrusted,
    wrap_untrusted,
)
from .screen import (
    RULES,
    Finding,
    InjectionPolicy,
    InjectionWarning,
    Rule,
    Scope,
    describe,
    find_injections,
    screen,
    screen_untrusted,
)
from .validate import DEFAULT_MAX_TASK_CHARS, validate_task

__all__ = [
    "DEFAULT_MAX_TASK_CHARS",
    "RULES",
    "UNTRUSTED_NOTE",
    "Finding",
    "InjectionPolicy",
    "InjectionWarning",
    "Rule",
    "Scope",
    "SecretRedactor",
    "build_request",
    "build_user_content",
    "describe",
    "find_injections",
    "get_logger",
    "sanitize_for_log",
    "screen",
    "screen_untrusted",
    "unwrap_untrusted",
    "validate_task",
    "wrap_untrusted",
]
