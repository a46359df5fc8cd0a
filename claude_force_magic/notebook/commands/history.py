"""``%agent history`` and ``%agent cost``: this session's calls and spend, by mode."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..session import Mode
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["cost", "history"]


@command("history", ("history", "this session's calls, live and simulated (a mode column)"))
@subcommand_args("agent history")
def history(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """This session's calls, live and simulated, as a DataFrame with a ``mode`` column."""
    from ..frames import mode_history_frame

    session = magics.session
    return mode_history_frame({mode.label: session.metrics(mode).recent() for mode in Mode})


@command("cost", ("cost", "spend and savings by mode, agent and model"))
@subcommand_args("agent cost")
def cost(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Spend and savings by mode, agent and model, as a DataFrame."""
    from ..frames import cost_frame
    from ..widgets import team_rows

    session = magics.session
    rows = [
        {"mode": mode.label, **row}
        for mode in Mode
        for row in session.metrics(mode).cost_by(("agent_name", "model"))
    ]
    # with the team switch on: the team's spend as one more row per mode, beside this kernel's
    rows += [
        {
            "mode": t["mode"],
            "agent_name": "(whole team)",
            "model": "",
            "cost_usd": t["team_spent_usd"],
        }
        for t in team_rows(session.live_orchestrators())
    ]
    return cost_frame(rows)
