"""``%agent budget``: the spending limit, its window, and what each mode has spent."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..options import argument, parse_usd
from ..session import Mode
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["budget", "budget_summary"]

_WINDOWS = ("day", "session", "total")


@command(
    "budget",
    ("budget", "limit, window, spent and remaining (live and simulated)"),
    (
        "budget USD [--per day|session|total] | budget off | budget reset",
        "stop calls that would take spending past USD",
    ),
)
@subcommand_args("agent budget")
@argument("value", nargs="?", metavar="USD|off|reset", help="the limit in USD, off, or reset")
@argument("--per", metavar="day|session|total", help="what counts against the limit")
def budget(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Show the budget; ``USD`` sets the limit, ``off`` removes it, ``reset`` starts the
    spend over from $0, ``--per`` sets the window (since local midnight, since this kernel
    started, or in total since the last reset)."""
    if args.per is not None:
        if args.per not in _WINDOWS:
            raise UsageError(
                f"--per {args.per}: use day (since local midnight), session (since this "
                "kernel started) or total (since `%agent budget reset`)."
            )
        magics.budget_window = args.per
    value = args.value
    if value is not None and value.lower() == "reset":
        magics.session.reset_budget()
        print("Budget spend reset to $0 (live and simulated).")
    elif value is not None:
        magics.budget_usd = None if value.lower() in ("off", "none") else parse_usd(value)
    print(budget_summary(magics))
    return None


def budget_summary(magics: AgentMagics) -> str:
    """One line: the limit and its window, then each mode's spend and what is left."""
    from ..display import _money

    limit, window = magics.budget_usd, magics.budget_window
    per = "in total (until `%agent budget reset`)" if window == "total" else f"per {window}"
    head = "Budget off" if limit is None else f"Budget: {_money(limit)} {per}"
    parts = []
    for mode in Mode:
        spent = magics.session.budget(mode).spent
        left = "" if limit is None else f", {_money(max(0.0, limit - spent))} left"
        parts.append(f"{mode.label}: {_money(spent)} spent{left}")
    return f"{head}. " + "; ".join(parts) + "."
