"""Turning a ``%%agent`` line and body into a validated :class:`CellRequest`.

Pure functions, no IPython state: the magic passes in the parsed arguments and the user
namespace. Every mistake raises IPython's ``UsageError`` (a short message, no traceback) before
anything is sent.
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core import getipython, magic, magic_arguments
from IPython.core.error import UsageError

from ..settings import MAX_TTL_HOURS
from .display import OutputFormat

if TYPE_CHECKING:
    from ..engine.request import CallOptions

__all__ = [
    "MAX_VALUE_CHARS",
    "CellRequest",
    "argument",
    "build_cell_request",
    "cell_magic",
    "check_variable_name",
    "get_ipython",
    "interpolate",
    "line_magic",
    "magic_args",
    "no_var_expand",
    "parse_args",
    "parse_usd",
    "screen_cell_data",
]

F = TypeVar("F", bound=Callable[..., Any])

# IPython's decorators are untyped in IPython 8 (Python 3.10) and typed as unions in IPython 9;
# these typed names let mypy --strict check the magics the same way under both.
argument: Callable[..., Callable[[F], F]] = magic_arguments.argument
magic_args: Callable[..., Callable[[F], F]] = magic_arguments.magic_arguments
cell_magic = cast("Callable[[str], Callable[[F], F]]", magic.cell_magic)
line_magic = cast("Callable[[str], Callable[[F], F]]", magic.line_magic)
no_var_expand = cast("Callable[[F], F]", magic.no_var_expand)
#: The running IPython shell, or None (typed the same under IPython 8 and 9).
get_ipython: Callable[[], Any] = getipython.get_ipython


def parse_args(func: Callable[..., Any], line: str) -> argparse.Namespace:
    """Parse ``line`` with the ``magic_arguments`` parser of ``func``; UsageError if invalid."""
    namespace: argparse.Namespace = magic_arguments.parse_argstring(func, line)  # type: ignore[no-untyped-call]
    return namespace


_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FORMATS: tuple[OutputFormat, ...] = ("markdown", "code", "text", "json")
#: Longest text taken from one interpolated value; longer values are cut with a note.
MAX_VALUE_CHARS = 50_000


@dataclass(frozen=True)
class CellRequest:
    """Everything one ``%%agent`` cell asks for, validated."""

    agents: tuple[str, ...]
    task: str
    #: ``--workflow NAME``: run that workflow's agents in order instead of ``agents``.
    workflow: str | None = None
    untrusted: Mapping[str, str] = field(default_factory=dict)
    #: The options the cell's flags set (``--model``: ``model`` and so on), by keyword.
    call_options: Mapping[str, Any] = field(default_factory=dict)
    output_var: str | None = None
    fmt: OutputFormat = "markdown"
    stream: bool = True
    quiet: bool = False
    simulate: bool = False
    #: Things the user should know before the answer (a notebook value that was cut).
    notes: tuple[str, ...] = ()
    #: The policy this cell's data is screened under (``off`` with ``--trust``); workflow
    #: cells screen each step's input from the previous agent with it too.
    data_policy: str = "block"
    #: ``--thread NAME``: the conversation thread each agent continues (None: see below).
    thread: str | None = None
    #: ``--continue``: continue each agent's latest thread (a plain cell is a single turn).
    continue_thread: bool = False
    #: What identifies this cell across re-runs (see :func:`~.threads.cell_key`).
    cell_key: str | None = None

    @property
    def options(self) -> CallOptions:
        """The per-call options of every call of this cell: the flags (``call_options``) and
        the ``{name}`` values as untrusted data. Raises :class:`~..errors.ConfigurationError`
        for a value the engine refuses."""
        from ..engine.request import CallOptions

        return CallOptions.from_kwargs(
            **self.call_options, untrusted=dict(self.untrusted) or None, origin=_cell_origin()
        )


def _cell_origin() -> str:
    """``notebook cell [N]`` (the kernel's execution count when there is one), kept with
    the cached answer so ``%agent cache`` can say which cell stored it."""
    count = getattr(get_ipython(), "execution_count", None)
    return f"notebook cell [{count}]" if isinstance(count, int) else "notebook cell"


def _describe(value: Any, name: str = "value") -> str:
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception as exc:  # a __str__ that raises or returns a non-string
        raise UsageError(
            f"{{{name}}} could not be turned into text ({type(exc).__name__} in its "
            f"__str__); pass a string instead, e.g. {{{name}_text}} with "
            f"{name}_text = repr({name})."
        ) from None
    _check_encodable(text, f"{{{name}}}")
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"\n…(cut: {len(text) - MAX_VALUE_CHARS:,} more chars)"
    return text


def _check_encodable(text: str, where: str) -> None:
    """UsageError when ``text`` holds a lone surrogate (it cannot be sent as UTF-8)."""
    match = _SURROGATE.search(text)
    if match is not None:
        line = text.count("\n", 0, match.start()) + 1
        raise UsageError(
            f"{where} contains a lone surrogate character U+{ord(match.group()):04X} (line "
            f"{line}), which cannot be sent; remove it, or clean the text with "
            ".encode('utf-8', 'replace').decode()."
        )


_SURROGATE = re.compile("[\ud800-\udfff]")


def interpolate(body: str, namespace: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """Replace ``{name}`` in ``body`` by a reference to an untrusted-data block.

    Returns the task text and ``{name: str(value)}`` for every name used. ``{{`` and ``}}``
    stand for literal braces; any other brace (a dict literal in pasted code) is left alone.
    Raises ``UsageError`` naming an undefined variable and how to escape it.
    """
    used: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in namespace:
            raise UsageError(
                f"{{{name}}} in the cell refers to a variable that is not defined. Define "
                f"{name}, write {{{{{name}}}}} for literal braces, or add --no-interpolate."
            )
        used[name] = _describe(namespace[name], name)
        return f'(the untrusted-data block "{name}" below)'

    return _FIELD.sub(replace, body), used


def screen_cell_data(
    untrusted: Mapping[str, str], policy: str, *, trusted: bool = False, cell: bool = True
) -> tuple[str, ...]:
    """Screen a cell's ``{name}`` values (untrusted data) under ``policy``; return notes.

    The cell body is the user's own words and is not screened; this screens the values it
    refers to, with every rule for data. ``block``: ``UsageError`` naming each flagged
    variable, the rule and the matched phrase, and how to send it anyway (``--trust`` when
    ``cell``, the session policy otherwise). ``warn``: one note line per
    flagged variable (the caller prints it; the value is still sent, wrapped). ``off`` or
    ``trusted`` (``--trust``): nothing. Never repeats the value beyond the matched phrase.
    """
    from ..guard import InjectionPolicy, describe, find_injections

    chosen = InjectionPolicy.parse(policy)
    if trusted or chosen is InjectionPolicy.OFF:
        return ()
    flagged = {
        name: findings
        for name, text in untrusted.items()
        if (findings := find_injections(text, "data"))
    }
    if not flagged:
        return ()
    lines = [
        f"{{{name}}} looks like a prompt injection ({describe(f)})" for name, f in flagged.items()
    ]
    if chosen is InjectionPolicy.BLOCK:
        names = ", ".join(flagged)
        trust = (
            "add --trust to the %%agent line (its values are still sent wrapped as data), or "
            if cell
            else ""
        )
        raise UsageError(
            "; ".join(lines) + f". Nothing was sent. If you trust {names}, {trust}set "
            "%config AgentMagics.injection_policy = 'warn'."
        )
    return tuple(
        f"Warning: {line}; sent as data because injection_policy is 'warn'." for line in lines
    )


def parse_usd(text: str) -> float:
    """Parse a dollar amount such as ``5``, ``0.25`` or ``$2.50``; UsageError if invalid."""
    try:
        value = float(text.strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise UsageError(f"{text!r} is not an amount in USD; write e.g. 5 or 0.25.") from None
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"The budget must be a positive amount in USD, not {text!r}.")
    return value


#: Names IPython keeps for itself in the notebook namespace; storing a result there breaks it.
_IPYTHON_NAMES = frozenset(
    [
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_oh",
        "_dh",
        "_ih",
        "_sh",
        "_exit_code",
    ]
)
#: ``_i7`` (input of cell 7), ``_7`` (its output), ``_ih``-style history names.
_IPYTHON_PATTERN = re.compile(r"_i?\d+")


def check_variable_name(name: str | None, flag: str = "-o/--output") -> str | None:
    """Refuse a name a result cannot safely be stored under; return a warning or None.

    Raises ``UsageError`` for a non-identifier, a keyword, a dunder name (``__builtins__``)
    and IPython's own names (``In``, ``Out``, ``get_ipython``, ``_``, ``_i3``, ``_3`` ...).
    Returns a one-line warning when the name shadows a Python builtin (``list``, ``id``),
    which works but hides the builtin in the notebook.
    """
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"{flag} needs a Python variable name, not {name!r}.")
    if (name.startswith("__") and name.endswith("__")) or name in _IPYTHON_NAMES:
        raise UsageError(
            f"{flag} {name}: that name belongs to Python or IPython and storing a result there "
            "would break the notebook; choose another name, e.g. answer."
        )
    if _IPYTHON_PATTERN.fullmatch(name):
        raise UsageError(
            f"{flag} {name}: IPython uses names like _i3 and _3 for its input and output "
            "history; choose another name, e.g. answer."
        )
    if hasattr(builtins, name):
        return (
            f"Warning: {flag} {name} hides Python's builtin {name}() in this notebook "
            f"(`del {name}` brings it back)."
        )
    return None


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is None:
        return
    if not value > 0 or (integer and int(value) != value):
        kind = "a positive whole number" if integer else "a positive number"
        raise UsageError(f"{name} must be {kind}, not {value!r}.")


def build_cell_request(
    args: argparse.Namespace, body: str, namespace: Mapping[str, Any], *, policy: str = "block"
) -> CellRequest:
    """Validate parsed ``%%agent`` arguments and the cell body; UsageError on any mistake.

    The body is trusted (never screened); its ``{name}`` values are screened under ``policy``
    (see :func:`screen_cell_data`) unless ``--trust`` is given, so a refused value stops the
    cell before anything is sent.
    """
    if not body.strip():
        raise UsageError(
            "The cell is empty: write the task below the %%agent line, e.g.\n"
            "%%agent python-expert\nExplain asyncio.Semaphore with an example."
        )
    workflow = getattr(args, "workflow", None)
    if bool(workflow) == bool(args.agents):
        raise UsageError(
            "Name the AGENT(s) to ask, or --workflow NAME, on the %%agent line (not both), "
            "e.g. %%agent python-expert   or   %%agent --workflow full-review"
        )
    agents = tuple(dict.fromkeys(args.agents))
    if len(agents) != len(args.agents):
        raise UsageError("Each agent may appear only once in a %%agent line.")
    _positive("--max-tokens", args.max_tokens, integer=True)
    _positive("--timeout", args.timeout)
    _positive("--ttl", args.ttl)
    if args.ttl is not None and args.ttl > MAX_TTL_HOURS:  # 87600000 broke `%agent cache`
        raise UsageError(
            f"--ttl must be at most {MAX_TTL_HOURS} hours (ten years), not {args.ttl}."
        )
    if args.no_cache and args.refresh:
        raise UsageError("--no-cache and --refresh contradict each other; choose one.")
    thread, continue_thread = _thread_flags(args, workflow)
    shadowing = check_variable_name(args.output)
    fmt = args.format
    if fmt not in _FORMATS:
        raise UsageError(f"--format must be one of {', '.join(_FORMATS)}, not {fmt!r}.")
    _check_encodable(body, "The cell")
    untrusted: dict[str, str] = {}
    if args.no_interpolate:
        task = body
    else:
        task, untrusted = interpolate(body, namespace)
    screen_notes = screen_cell_data(untrusted, policy, trusted=args.trust)
    notes = (
        screen_notes
        + tuple(
            f"Note: {{{name}}} is longer than {MAX_VALUE_CHARS:,} characters; only the first "
            f"{MAX_VALUE_CHARS:,} were sent (the model is told the rest was cut)."
            for name, text in untrusted.items()
            if len(text) > MAX_VALUE_CHARS  # only a cut value is longer (it carries the cut note)
        )
        + ((shadowing,) if shadowing else ())
    )
    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.max_tokens is not None:
        options["max_tokens"] = int(args.max_tokens)
    if args.timeout is not None:
        options["timeout_seconds"] = float(args.timeout)
    if args.ttl is not None:
        options["ttl_hours"] = float(args.ttl)
    if args.no_cache:
        options["use_cache"] = False
    if args.refresh:
        options["refresh"] = True
    if getattr(args, "prompt_cache", None):
        options["prompt_cache"] = args.prompt_cache
    # The body is the user's own words; the values were screened above under the policy.
    options["screen_task"] = False
    options["injection_policy"] = "off"
    return CellRequest(
        agents=agents,
        task=task.strip("\n"),
        workflow=workflow,
        untrusted=untrusted,
        call_options=options,
        output_var=args.output,
        fmt=fmt,
        stream=not args.no_stream and fmt != "json",
        quiet=args.quiet,
        simulate=args.simulate,
        notes=notes,
        data_policy="off" if args.trust else policy,
        thread=thread,
        continue_thread=continue_thread,
    )


def _thread_flags(args: argparse.Namespace, workflow: str | None) -> tuple[str | None, bool]:
    """``--thread NAME`` and ``--continue``, checked: UsageError for a bad name or a
    combination that has no meaning."""
    from .threads import check_thread_name

    thread = getattr(args, "thread", None)
    continued = bool(getattr(args, "continue_thread", False))
    if thread is None and not continued:
        return None, False
    if workflow:
        raise UsageError(
            "--workflow runs single turns; --continue and --thread are for agents "
            "(%%agent AGENT --thread NAME)."
        )
    if thread is not None and continued:
        raise UsageError(
            "--thread NAME already continues that thread; use --thread NAME or --continue."
        )
    return (check_thread_name(thread) if thread is not None else None), continued
