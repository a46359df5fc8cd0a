"""Per-call options and the request a call sends, checked and built before anything is sent.

:class:`CallOptions` is the one definition of every per-call option (``execute_agent(...,
**options)``, an ``execute_multiple`` item's options, a workflow step, a notebook cell): a
frozen, typed dataclass whose fields are checked once, when it is built. ``None`` means
"inherit" (from the agent, then the orchestrator). :meth:`CallOptions.from_kwargs` keeps the
historical keyword surface: an unknown name raises :class:`ConfigurationError` listing the
valid ones, so mistakes still fail loudly.

:class:`RequestBuilder` turns an agent, a task, optional prior turns and the options into a
:class:`PreparedCall`: it owns every guard call (task validation, injection screening of the
task and of untrusted data, building the Messages API parameters with system prompt and task
kept apart), the cache identity and the token estimate. It knows about conversations: prior
turns (``history``, Messages API ``{"role", "content"}`` dicts, oldest first, ending with an
assistant turn) are sent before the new user turn, the cache identity covers the whole
history and the estimate covers the system prompt plus every message. Prior turns are sent as
given: they were screened when they were first sent (user turns) or are the model's own
answers; callers that put third-party text into a turn should pass it as ``untrusted``
instead.

The cache identity no longer carries the system prompt: the agent's ``definition_hash`` is the
SHA-256 of it and is already part of the key, so hashing the prompt again on every get and set
only cost time (key version 2, see docs/cache.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidTaskError
from ..settings import check_ttl_hours
from ..validation import check_flag, check_int, check_number
from . import defaults
from .estimate import estimate_input_tokens
from .prompt_cache import ReusePlanner, check_prompt_cache, mark_breakpoints

if TYPE_CHECKING:
    from ..agents import AgentDefinition
    from ..guard import InjectionPolicy

__all__ = [
    "OPTION_NAMES",
    "PREVIEW_CHARS",
    "CallOptions",
    "PreparedCall",
    "RequestBuilder",
    "task_preview",
]

#: Tokens the Messages API adds around each message beyond the first user turn (cautious).
PER_TURN_OVERHEAD_TOKENS = 4


def _check_model(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"model must be a model id such as '{defaults.MODEL}', got {value!r}."
        )
    return value


def _check_stop(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
        raise ConfigurationError("stop_sequences must be a list of non-empty strings.")
    return tuple(value) or None


@dataclass(frozen=True)
class CallOptions:
    """The options of one call; every field is checked when the object is built.

    ``None`` inherits: ``model`` and ``max_tokens`` from the agent, then the orchestrator;
    ``timeout_seconds`` and ``injection_policy`` from the orchestrator; ``ttl_hours`` from the
    cache. ``use_cache`` (read and write the cache), ``refresh`` (skip the lookup, store the
    new answer), ``screen_task`` (False when the task is your own text, as a notebook cell
    is: the task is then sent unscreened; ``untrusted`` values are always screened),
    ``untrusted`` (name -> text, wrapped as data) and ``stop_sequences``. ``origin`` says
    where the call came from (``"library"`` when None; the notebook passes
    ``"notebook cell [N]"``); it is kept with the cached answer, not part of its key.
    ``prompt_cache`` (``"auto"``, ``"5m"``, ``"1h"`` or ``"off"``; None inherits from the
    orchestrator) marks the agent definition and the history cacheable (see
    :mod:`.prompt_cache`); it changes what a call costs, never its answer, so it is not part
    of the response cache's key either.

    Raises :class:`ConfigurationError` naming the option for a bad value.

    >>> CallOptions(max_tokens=256).max_tokens
    256
    """

    model: str | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None
    use_cache: bool = True
    refresh: bool = False
    ttl_hours: float | None = None
    injection_policy: str | None = None
    untrusted: Mapping[str, str] | None = None
    screen_task: bool = True
    stop_sequences: tuple[str, ...] | None = None
    origin: str | None = None
    prompt_cache: str | None = None

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {
            "use_cache": check_flag("use_cache", self.use_cache),
            "refresh": check_flag("refresh", self.refresh),
            "screen_task": check_flag("screen_task", self.screen_task),
            "ttl_hours": check_ttl_hours("ttl_hours", self.ttl_hours, allow_none=True),
            "stop_sequences": _check_stop(self.stop_sequences),
        }
        if self.model is not None:
            checked["model"] = _check_model(self.model)
        if self.max_tokens is not None:
            checked["max_tokens"] = check_int("max_tokens", self.max_tokens)
        if self.timeout_seconds is not None:
            checked["timeout_seconds"] = check_number("timeout_seconds", self.timeout_seconds)
        if self.injection_policy is not None:
            from ..guard import InjectionPolicy

            checked["injection_policy"] = InjectionPolicy.parse(self.injection_policy).value
        if self.prompt_cache is not None:
            checked["prompt_cache"] = check_prompt_cache(self.prompt_cache)
        if self.origin is not None and not isinstance(self.origin, str):
            raise ConfigurationError(f"origin must be a str, not {type(self.origin).__name__}.")
        if self.untrusted is not None:
            if not isinstance(self.untrusted, Mapping):
                raise ConfigurationError("untrusted must be a mapping of name -> text.")
            checked["untrusted"] = dict(self.untrusted) or None
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_kwargs(cls, **options: Any) -> CallOptions:
        """Build from keyword arguments; unknown names raise :class:`ConfigurationError`
        listing the valid options."""
        unknown = sorted(set(options) - OPTION_NAMES)
        if unknown:
            raise ConfigurationError(
                f"Unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(sorted(OPTION_NAMES))}."
            )
        return cls(**options)

    def replace(self, **options: Any) -> CallOptions:
        """A copy with ``options`` changed (same checks as :meth:`from_kwargs`)."""
        unknown = sorted(set(options) - OPTION_NAMES)
        if unknown:
            return CallOptions.from_kwargs(**options)  # raises, listing the valid options
        return dataclasses.replace(self, **options)


#: The name of every per-call option.
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(CallOptions))


@dataclass
class PreparedCall:
    """Everything one call needs, checked and built before anything is sent.

    ``params`` are the Messages API parameters; ``cache_task`` and ``cache_request`` are the
    cache identity (with ``agent.name`` and ``model``); ``input_estimate`` covers the system
    prompt and every message; ``warnings`` are the injection findings sent anyway (``warn``).
    ``preview`` (the task's start, ``{name}`` for untrusted data) and ``origin`` are kept
    with a cached answer so that it can be recognised (see :func:`task_preview`).
    """

    agent: AgentDefinition
    model: str
    max_tokens: int
    timeout: float
    params: dict[str, Any]
    cache_task: str
    cache_request: dict[str, Any]
    use_cache: bool
    refresh: bool
    ttl_hours: float | None
    input_estimate: int
    warnings: list[str] = field(default_factory=list)
    preview: str = ""
    origin: str = "library"


def _check_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Prior turns as plain dicts: alternating user/assistant text, oldest first, ending with
    an assistant turn (the new user turn follows). :class:`InvalidTaskError` otherwise."""
    turns: list[dict[str, str]] = []
    for i, turn in enumerate(history):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, Mapping) or set(turn) != {"role", "content"}:
            raise InvalidTaskError(
                f"history[{i}] must be a dict with exactly 'role' and 'content', got {turn!r:.80}."
            )
        if turn["role"] != expected or not isinstance(turn["content"], str):
            raise InvalidTaskError(
                f"history[{i}] must be a {expected!r} turn with str content (turns alternate "
                f"user/assistant, oldest first), got role {turn['role']!r}."
            )
        turns.append({"role": expected, "content": turn["content"]})
    if turns and turns[-1]["role"] != "assistant":
        raise InvalidTaskError(
            "history must end with an assistant turn: the new task is the next user turn."
        )
    return turns


def _warning_lines(findings: Sequence[Any]) -> list[str]:
    return [
        f"Possible prompt injection ({f.rule}"
        + (f" in {f.source!r}" if f.source is not None else "")
        + ") sent anyway."
        for f in findings
    ]


@dataclass(frozen=True)
class RequestBuilder:
    """Builds :class:`PreparedCall` objects with an orchestrator's defaults.

    ``model``, ``max_tokens``, ``timeout_seconds``, ``injection_policy`` and
    ``prompt_cache`` apply when neither the call nor (for model and max_tokens) the agent sets
    them; ``max_task_chars`` bounds the task. ``min_cacheable_tokens(model)`` gives the
    shortest prefix worth a prompt-cache breakpoint (None: 1024 tokens for every model);
    ``planner`` picks the TTL of ``prompt_cache="auto"``. Pure apart from the injection
    screen's warnings and the planner's memory of when each agent was last used; safe from
    any thread.
    """

    model: str = defaults.MODEL
    max_tokens: int = defaults.MAX_TOKENS
    timeout_seconds: float = defaults.TIMEOUT_SECONDS
    injection_policy: InjectionPolicy | str = defaults.INJECTION_POLICY
    max_task_chars: int = defaults.MAX_TASK_CHARS
    prompt_cache: str = defaults.PROMPT_CACHE
    min_cacheable_tokens: Callable[[str], int] | None = None
    planner: ReusePlanner = field(default_factory=ReusePlanner)

    def build(
        self,
        agent: AgentDefinition,
        task: str,
        options: CallOptions,
        history: Sequence[Mapping[str, Any]] = (),
    ) -> PreparedCall:
        """Check ``task`` and screen it (unless ``options.screen_task`` is False) and the
        untrusted values, then build the request. Raises :class:`InvalidTaskError`,
        :class:`PromptInjectionError` (policy ``block``) or :class:`ConfigurationError`."""
        from ..guard import InjectionPolicy, build_request, screen, screen_untrusted, validate_task

        task = validate_task(task, max_chars=self.max_task_chars)
        turns = _check_history(history)
        model = _first(options.model, agent.model, self.model)
        model = _check_model(model)
        max_tokens = check_int(
            "max_tokens",
            _first(options.max_tokens, agent.max_tokens, self.max_tokens),
        )
        policy = InjectionPolicy.parse(
            options.injection_policy
            if options.injection_policy is not None
            else self.injection_policy
        )
        findings = screen(task, policy) if options.screen_task else ()
        findings += screen_untrusted(options.untrusted or {}, policy)
        stop = list(options.stop_sequences) if options.stop_sequences else None
        params = build_request(
            agent.system_prompt,
            task,
            model=model,
            max_tokens=max_tokens,
            untrusted=options.untrusted,
            **({"stop_sequences": stop} if stop else {}),
        )
        user_content: str = params["messages"][0]["content"]
        cache_request: dict[str, Any] = {
            "definition_hash": agent.definition_hash,
            "max_tokens": max_tokens,
            "stop_sequences": stop,
        }
        if turns:
            params["messages"] = [*turns, *params["messages"]]
            cache_request["history"] = turns
        self._mark_prompt_cache(params, turns, options, agent.definition_hash)
        return PreparedCall(
            agent=agent,
            model=model,
            max_tokens=max_tokens,
            timeout=options.timeout_seconds or self.timeout_seconds,
            params=params,
            cache_task=user_content,
            cache_request=cache_request,
            use_cache=options.use_cache,
            refresh=options.refresh,
            ttl_hours=options.ttl_hours,
            input_estimate=estimate_input_tokens(
                agent.system_prompt, *(t["content"] for t in turns), user_content
            )
            + PER_TURN_OVERHEAD_TOKENS * len(turns),
            warnings=_warning_lines(findings),
            preview=task_preview(task, options.untrusted or {}),
            origin=options.origin or "library",
        )

    def _mark_prompt_cache(
        self,
        params: dict[str, Any],
        turns: Sequence[Mapping[str, str]],
        options: CallOptions,
        definition_hash: str,
    ) -> None:
        """Add the prompt-cache breakpoints of ``options.prompt_cache`` (see
        :mod:`.prompt_cache`): on the system prompt and the last history turn."""
        mode = check_prompt_cache(options.prompt_cache or self.prompt_cache)
        if mode == "off":
            return
        model: str = params["model"]
        ttl = self.planner.ttl(f"{model}\0{definition_hash}") if mode == "auto" else mode
        minimum = 1024 if self.min_cacheable_tokens is None else self.min_cacheable_tokens(model)
        mark_breakpoints(params, turns, ttl=ttl, min_tokens=minimum)


#: How many characters of a task a cached entry keeps as its preview.
PREVIEW_CHARS = 200


def task_preview(task: str, untrusted: Mapping[str, str]) -> str:
    """The first :data:`PREVIEW_CHARS` characters of ``task``, with each reference to an
    untrusted-data block (the notebook's ``{name}`` interpolation) shown as ``{name}``.

    The untrusted data itself is never part of the preview: only the task text is.
    """
    for name in untrusted:
        task = task.replace(f'(the untrusted-data block "{name}" below)', f"{{{name}}}")
    return task[:PREVIEW_CHARS]


def _first(*values: Any) -> Any:
    """The first value that is not None (0 and "" count: they are checked, not skipped)."""
    return next((v for v in values if v is not None), None)
