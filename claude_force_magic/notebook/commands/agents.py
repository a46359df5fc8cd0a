"""``%agent list`` and ``%agent show NAME``: the agents this session can call."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..options import argument
from .registry import command, in_kernel, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["list_agents", "show_agent"]


@command("list", ("list", "agents: name, description, domains, priority, source"))
@subcommand_args("agent list")
def list_agents(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """The agents: name, description, domains, priority and source, as a DataFrame."""
    from ..frames import agents_frame

    return agents_frame(magics.session.registry.rows())


@command("show", ("show NAME", "one agent's definition"))
@subcommand_args("agent show")
@argument("name", metavar="NAME", help="the agent to show")
def show_agent(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """One agent's definition: description, domains, priority, source and system prompt.

    A definition can come from a ``.claude/claude.json`` found in a parent directory (a cloned
    repository): it is untrusted text, rendered through the same safe path as answers.
    """
    definition = magics.session.registry.get(args.name)
    head = (
        f"### {definition.name}\n\n{definition.description}\n\n"
        f"domains: {', '.join(definition.domains) or '-'} · priority {definition.priority}"
        f" · source: {definition.source}\n\n---\n\n"
    )
    text = head + definition.system_prompt
    if in_kernel(magics.shell):
        from ..display import show
        from ..render import output_html

        show({"text/html": output_html(text), "text/plain": text}, raw=True)
    else:  # a terminal shows the Markdown source as it is
        print(text)
    return None
