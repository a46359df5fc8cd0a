"""``%agent key``: enter the API key at a hidden prompt (memory only), or forget it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["key"]

_USAGE = (
    "Usage: %agent key   (then paste the key at the hidden prompt)   or   %agent key --clear. "
    "Never type the key into a cell: it would be saved in the notebook and its history."
)


# secret: an error never repeats what was typed (it may be the key itself)
@command(
    "key",
    ("key | key --clear", "enter the API key at a hidden prompt (memory only) / forget it"),
    secret=True,
)
@subcommand_args("agent key")
@argument("--clear", action="store_true", help="forget the key given with %%agent key")
@argument("typed", nargs="*", help=argparse.SUPPRESS)
def key(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Ask for the API key at a hidden prompt; it is kept in this kernel's memory only."""
    session = magics.session
    if args.typed:  # never echo what was typed: it may be the key itself
        raise UsageError(_USAGE)
    if args.clear:
        had = session.api_key is not None
        session.set_api_key(None)
        print("API key forgotten." if had else "No key was set with %agent key.")
        return None
    from ..cells import prompt_api_key

    session.set_api_key(prompt_api_key())
    print(
        "API key set for this session: kept in memory only (not in the notebook, its "
        "history or the environment). `%agent key --clear` forgets it."
    )
    return None
