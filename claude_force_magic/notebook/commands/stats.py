"""``%agent stats``: the live dashboard of the cache, latency, spend and budget."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .registry import command, in_kernel, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["show_stats"]

#: Dashboards kept up to date after each cell (the newest ones; older ones stop refreshing).
_MAX_DASHBOARDS = 5


@command("stats", ("stats", "live dashboard: cache, latency percentiles, spend and savings"))
@subcommand_args("agent stats")
def show_stats(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Show a dashboard that refreshes after every cell that runs agents."""
    from ..inspector import show_health
    from ..widgets import StatsDashboard

    show_health(magics.session, notebook=in_kernel(magics.shell))  # issue 16
    board = StatsDashboard(magics.session, notebook=in_kernel(magics.shell))
    board.show()
    magics.dashboards = [*magics.dashboards[-(_MAX_DASHBOARDS - 1) :], board]
    if len(magics.dashboards) == 1:
        magics.session.add_listener(lambda: _refresh(magics))
    return None


def _refresh(magics: AgentMagics) -> None:
    for board in magics.dashboards:
        board.refresh()
