"""The ``%agent`` subcommand table: each subcommand is one :class:`Command`.

A subcommand is a handler function declared with IPython's ``magic_arguments`` (its parser)
and wrapped by :func:`command` with the lines it adds to ``%agent help``. ``%agent`` looks the
first word up in a :class:`CommandTable`, parses the rest with that command's parser (a mistake
is a ``UsageError`` with the command's usage line) and calls the handler with the magics
object and the parsed arguments.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import parse_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["Command", "CommandTable", "Handler", "command", "in_kernel"]

#: A subcommand's handler: the magics object and the parsed arguments -> what ``%agent`` returns.
Handler = Callable[["AgentMagics", argparse.Namespace], Any]

#: Width of the synopsis column in ``%agent help``.
_SYNOPSIS_WIDTH = 25
_QUOTES = "'\""


@dataclass(frozen=True)
class Command:
    """One ``%agent`` subcommand: its name, its handler (which carries the parser) and help.

    ``help`` holds ``(synopsis, summary)`` lines for ``%agent help``; ``manual`` adds the
    parser's full help to ``%agent?``; ``secret`` keeps what was typed out of error messages
    (``%agent key``: it may be the key itself).
    """

    name: str
    handler: Handler
    help: tuple[tuple[str, str], ...]
    manual: bool = False
    secret: bool = False

    @property
    def usage(self) -> str:
        """The usage line argparse writes, e.g. ``%agent show NAME``."""
        parser = self.handler.parser  # type: ignore[attr-defined]
        words: list[str] = parser.format_usage().split()
        # IPython's formatter writes "::" (reST) before the usage line; drop it and "usage:"
        return " ".join(w for w in words if w not in ("::", "usage:"))

    def parse(self, line: str) -> argparse.Namespace:
        """Parse the text after the subcommand's name.

        Raises ``UsageError`` naming the mistake and showing the usage line. String values
        lose one pair of surrounding quotes (``magic_arguments`` splits like a non-POSIX
        shell, so ``--task "two words"`` would keep them).
        """
        parser = self.handler.parser  # type: ignore[attr-defined]
        if line.strip() and not parser._actions:
            got = " ".join(shlex.split(line))
            raise UsageError(f"%agent {self.name} takes no arguments (got {got!r}).")
        try:
            args = parse_args(self.handler, line)
        except UsageError as exc:
            problem = "" if self.secret else f"%agent {self.name}: {exc}.\n"
            raise UsageError(f"{problem}Usage: {self.usage}") from None
        for key, value in vars(args).items():
            setattr(args, key, _unquote(value))
        return args

    def manual_text(self) -> str:
        """The parser's full help (usage, description, options)."""
        return self.handler.__doc__ or ""


def _unquote(value: Any) -> Any:
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] in _QUOTES:
        return value[1:-1]
    return value


def command(
    name: str,
    *help_lines: tuple[str, str],
    manual: bool = False,
    secret: bool = False,
) -> Callable[[Handler], Command]:
    """Make a handler declared with ``@magic_args``/``@argument`` into a :class:`Command`.

    ``help_lines`` are ``(synopsis, summary)`` pairs shown by ``%agent help``.
    """

    def wrap(handler: Handler) -> Command:
        if not hasattr(handler, "parser"):
            raise TypeError(f"%agent {name}: declare the handler with @magic_args first.")
        return Command(name, handler, tuple(help_lines), manual=manual, secret=secret)

    return wrap


class CommandTable:
    """The subcommands of ``%agent`` by name, in the order ``%agent help`` lists them."""

    def __init__(self, commands: Iterable[Command], *, heading: str) -> None:
        self._commands: dict[str, Command] = {}
        self._heading = heading
        for cmd in commands:
            if cmd.name in self._commands:
                raise ValueError(f"%agent {cmd.name} is registered twice.")
            self._commands[cmd.name] = cmd

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def get(self, name: str) -> Command:
        """The command called ``name``; ``UsageError`` with the help text for another word."""
        cmd = self._commands.get(name)
        if cmd is None:
            raise UsageError(f"Unknown subcommand {name!r}.\n\n{self.help()}")
        return cmd

    def help(self) -> str:
        """``%agent help``: one line (or two) per subcommand, from each command's help."""
        lines = [self._heading, ""]
        for cmd in self:
            for synopsis, summary in cmd.help:
                if not summary:
                    lines.append(f"  {synopsis}")
                elif len(synopsis) <= _SYNOPSIS_WIDTH:
                    lines.append(f"  {synopsis:<{_SYNOPSIS_WIDTH}} {summary}")
                else:
                    lines += [f"  {synopsis}", f"  {'':<{_SYNOPSIS_WIDTH}} {summary}"]
        return "\n".join(lines) + "\n"

    def manual(self) -> str:
        """``%agent?``: the help, then the full options of the commands that have a manual."""
        details = [cmd.manual_text() for cmd in self if cmd.manual]
        return "\n".join([self.help(), *details])


def in_kernel(shell: Any) -> bool:
    """True when ``shell`` is a Jupyter kernel's (rich output), False in a terminal."""
    return getattr(shell, "kernel", None) is not None
