"""The ``%agent`` subcommands: one module per family, all registered in :data:`COMMANDS`.

A new family is one new module whose handlers are declared with ``@command`` (see
:mod:`.registry`) and one more entry in the table below; ``AgentMagics`` does not change.
Importing these modules is light: anything heavy is imported when a subcommand runs.
"""

from __future__ import annotations

from .agents import list_agents, show_agent
from .batch import batch
from .bench import bench
from .budget import budget
from .cache import cache
from .config import config
from .history import cost, history
from .key import key
from .registry import Command, CommandTable
from .simulate import simulate
from .stats import show_stats
from .threads import list_threads, thread

__all__ = ["COMMANDS", "Command", "CommandTable"]

#: Every ``%agent`` subcommand, in the order ``%agent help`` lists them.
COMMANDS = CommandTable(
    [
        list_agents,
        show_agent,
        show_stats,
        cache,
        history,
        cost,
        list_threads,
        thread,
        budget,
        config,
        key,
        simulate,
        bench,
        batch,
    ],
    heading="%agent SUBCOMMAND ...   (every table is returned, so `df = %agent history` works)",
)
