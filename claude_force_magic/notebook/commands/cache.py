"""``%agent cache``: list, clear and verify the response cache (no API key needed)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["cache"]

_USAGE = "Usage: %agent cache | %agent cache clear [AGENT] | %agent cache verify"


@command(
    "cache",
    ("cache", "cache entries (no response text)"),
    ("cache clear [AGENT]", "remove all entries, or one agent's"),
    ("cache verify", "check every signature; tampered entries are removed"),
)
@subcommand_args("agent cache")
@argument("action", nargs="?", metavar="clear|verify", help="clear or verify (default: list)")
@argument("agent", nargs="?", metavar="AGENT", help="with clear: only this agent's entries")
def cache(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """The cache's entries as a DataFrame; ``clear [AGENT]`` removes entries, ``verify``
    checks every signature and removes tampered entries."""
    action, agent = args.action, args.agent
    if action not in (None, "clear", "verify") or (agent is not None and action != "clear"):
        raise UsageError(_USAGE)
    # The cache is local: inspecting or clearing it needs no API key.
    orch = magics.session.orchestrator(require_key=False)
    store = orch.cache
    if store is None:
        raise UsageError(
            orch.cache_problem or "The response cache is off (AgentMagics.enable_cache = False)."
        )
    if store.read_only and action is None:
        print(f"(read-only: {store.directory} cannot be written; answers are served, not stored)")
    if action is None:
        from ..frames import cache_frame

        return cache_frame(store.entries())
    if action == "clear":
        removed = store.clear(agent)
        print(f"Removed {removed} cache entr{'y' if removed == 1 else 'ies'}.")
        return None
    return store.verify()
