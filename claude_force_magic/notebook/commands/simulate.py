"""``%agent simulate on|off``: answer every cell from the offline simulator, or not."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ...settings import API_KEY_ENV
from ..options import argument
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["simulate"]

_USAGE = "Usage: %agent simulate on   or   %agent simulate off"


@command("simulate", ("simulate on|off", "use the offline simulator for every cell"))
@subcommand_args("agent simulate")
@argument("state", nargs="?", metavar="on|off", help="on: the offline simulator; off: the API")
def simulate(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Answer every cell from the offline simulator (``on``) or the Messages API (``off``)."""
    state = (args.state or "").lower()
    if state not in ("on", "off"):
        raise UsageError(_USAGE)
    magics.simulate = state == "on"
    session = magics.session
    if magics.simulate:
        session.simulator()
        print("Simulation on: answers come from the offline simulator and are marked simulated.")
        return None
    print("Simulation off: cells call the Messages API.")
    if not (session.api_key or os.environ.get(API_KEY_ENV)):
        print(
            "No API key is set, so cells will fail until you run `%agent key` (a "
            "hidden prompt; the key stays out of the notebook) or turn simulation "
            "back on."
        )
    return None
