"""Turning a ``%%agent`` line and body into a validated :class:`CellRequest`.

Pure functions, no IPython state: the magic passes in the parsed arguments and the user
namespace. Every mistake raises IPython's ``UsageError`` (a short message, no traceback) before
anything is sent.
"""

from __future__ import annotations

import argparse
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from IPython.core import magic, magic_arguments
from IPython.core.error import UsageError

from ..settings import MAX_TTL_HOURS
from .display import OutputFormat

__all__ = [
    "CellRequest",
    "argument",
    "build_cell_request",
    "cell_magic",
    "check_variable_name",
    "interpolate",
    "line_magic",
    "magic_args",
    "parse_args",
    "parse_usd",
]

F = TypeVar("F", bound=Callable[..., Any])

# IPython's decorators are untyped (or typed as a union); these typed names let mypy --strict
# check the magics without a blanket ignore.
argument: Callable[..., Callable[[F], F]] = magic_arguments.argument
magic_args: Callable[..., Callable[[F], F]] = magic_arguments.magic_arguments
cell_magic: Callable[[str], Callable[[F], F]] = magic.cell_magic  # type: ignore[assignment]
line_magic: Callable[[str], Callable[[F], F]] = magic.line_magic  # type: ignore[assignment]


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
    untrusted: Mapping[str, str] = field(default_factory=dict)
    call_options: Mapping[str, Any] = field(default_factory=dict)
    output_var: str | None = None
    fmt: OutputFormat = "markdown"
    stream: bool = True
    quiet: bool = False
    simulate: bool = False
    #: Things the user should know before the answer (a notebook value that was cut).
    notes: tuple[str, ...] = ()


def _describe(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"\n…(cut: {len(text) - MAX_VALUE_CHARS:,} more chars)"
    return text


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
        used[name] = _describe(namespace[name])
        return f'(the untrusted-data block "{name}" below)'

    return _FIELD.sub(replace, body), used


def parse_usd(text: str) -> float:
    """Parse a dollar amount such as ``5``, ``0.25`` or ``$2.50``; UsageError if invalid."""
    try:
        value = float(text.strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise UsageError(f"{text!r} is not an amount in USD; write e.g. 5 or 0.25.") from None
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"The budget must be a positive amount in USD, not {text!r}.")
    return value


def check_variable_name(name: str | None, flag: str = "-o/--output") -> None:
    """UsageError unless ``name`` is None or a name a value can be stored under and read back."""
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UsageError(f"{flag} needs a Python variable name, not {name!r}.")


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is None:
        return
    if not value > 0 or (integer and int(value) != value):
        kind = "a positive whole number" if integer else "a positive number"
        raise UsageError(f"{name} must be {kind}, not {value!r}.")


def build_cell_request(
    args: argparse.Namespace, body: str, namespace: Mapping[str, Any]
) -> CellRequest:
    """Validate parsed ``%%agent`` arguments and the cell body; UsageError on any mistake."""
    if not body.strip():
        raise UsageError(
            "The cell is empty: write the task below the %%agent line, e.g.\n"
            "%%agent python-expert\nExplain asyncio.Semaphore with an example."
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
    check_variable_name(args.output)
    fmt = args.format
    if fmt not in _FORMATS:
        raise UsageError(f"--format must be one of {', '.join(_FORMATS)}, not {fmt!r}.")
    untrusted: dict[str, str] = {}
    if args.no_interpolate:
        task = body
    else:
        task, untrusted = interpolate(body, namespace)
    notes = tuple(
        f"Note: {{{name}}} is longer than {MAX_VALUE_CHARS:,} characters; only the first "
        f"{MAX_VALUE_CHARS:,} were sent (the model is told the rest was cut)."
        for name, text in untrusted.items()
        if len(text) > MAX_VALUE_CHARS  # only a cut value is longer (it carries the cut note)
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
    if args.trust:
        options["injection_policy"] = "off"
    return CellRequest(
        agents=agents,
        task=task.strip("\n"),
        untrusted=untrusted,
        call_options=options,
        output_var=args.output,
        fmt=fmt,
        stream=not args.no_stream and fmt != "json",
        quiet=args.quiet,
        simulate=args.simulate,
        notes=notes,
    )
