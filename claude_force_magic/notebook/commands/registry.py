"""The ``%agent`` subcommand table: each subcommand is one :class:`Command`.

A subcommand is a handler function declared with IPython's ``magic_arguments`` (its parser:
``@subcommand_args`` + ``@argument``) and wrapped by :func:`command` with the lines it adds to
``%agent help``. ``%agent`` looks the
first word up in a :class:`CommandTable`, parses the rest with that command's parser (a mistake
is a ``UsageError`` with the command's usage line) and calls the handler with the magics
object and the parsed arguments.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError

from ..options import parse_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["Command", "CommandTable", "Handler", "command", "in_kernel", "subcommand_args"]

#: A subcommand's handler: the magics object and the parsed arguments -> what ``%agent`` returns.
Handler = Callable[["AgentMagics", argparse.Namespace], Any]

#: Width of the synopsis column in ``%agent help``.
_SYNOPSIS_WIDTH = 25
_QUOTES = "'\""


class Command:
    """One ``%agent`` subcommand: its name, its handler (which carries the parser) and help.

    ``help`` holds ``(synopsis, summary)`` lines for ``%agent help``; ``manual`` adds the
    parser's full help to ``%agent?``; ``secret`` keeps what was typed out of error messages
    (``%agent key``: it may be the key itself). (A plain class, not a dataclass: building a
    dataclass at import costs ``%load_ext`` about a millisecond.)
    """

    __slots__ = ("handler", "help", "manual", "name", "secret")

    def __init__(
        self,
        name: str,
        handler: Handler,
        help: tuple[tuple[str, str], ...],
        *,
        manual: bool = False,
        secret: bool = False,
    ) -> None:
        self.name = name
        self.handler = handler
        self.help = help
        self.manual = manual
        self.secret = secret

    def __repr__(self) -> str:
        return f"<Command %agent {self.name}>"

    @property
    def parser(self) -> Any:
        """The handler's ``magic_arguments`` parser (built on first use)."""
        parser = getattr(self.handler, "parser", None)
        if parser is None:
            parser = magic_arguments.construct_parser(self.handler)  # type: ignore[no-untyped-call]
            self.handler.parser = parser  # type: ignore[attr-defined]
        return parser

    @property
    def usage(self) -> str:
        """The usage line argparse writes, e.g. ``%agent show NAME``."""
        parser = self.parser
        words: list[str] = parser.format_usage().split()
        # IPython's formatter writes "::" (reST) before the usage line; drop it and "usage:"
        return " ".join(w for w in words if w not in ("::", "usage:"))

    def parse(self, line: str) -> argparse.Namespace:
        """Parse the text after the subcommand's name.

        Raises ``UsageError`` naming the mistake and showing the usage line. String values
        lose one pair of surrounding quotes (``magic_arguments`` splits like a non-POSIX
        shell, so ``--task "two words"`` would keep them).
        """
        parser = self.parser  # built now if this is the subcommand's first run
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
        return str(self.parser.format_help())


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
    """Make a handler declared with ``@subcommand_args`` (or IPython's ``@magic_arguments``)
    and ``@argument`` into a :class:`Command`.

    ``help_lines`` are ``(synopsis, summary)`` pairs shown by ``%agent help``.
    """

    def wrap(handler: Handler) -> Command:
        if not hasattr(handler, "argcmd_name"):
            raise TypeError(f"%agent {name}: declare the handler with @subcommand_args first.")
        return Command(name, handler, tuple(help_lines), manual=manual, secret=secret)

    return wrap


class subcommand_args(magic_arguments.magic_arguments):
    """IPython's ``@magic_arguments(name)``, except that the parser is built when the
    subcommand first runs (or its manual is shown) rather than at import: a dozen parsers
    built at ``%load_ext`` would cost it several milliseconds."""

    def __init__(self, name: str) -> None:
        super().__init__(name)  # type: ignore[no-untyped-call]

    def __call__(self, func: Handler) -> Handler:
        if not getattr(func, "has_arguments", False):
            func.has_arguments = True  # type: ignore[attr-defined]
            func.decorators = []  # type: ignore[attr-defined]
        func.argcmd_name = self.name  # type: ignore[attr-defined]
        return func


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
