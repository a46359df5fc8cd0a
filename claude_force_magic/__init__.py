"""claude-force-magic: named Claude agents in Jupyter, through a signed response cache.

In a notebook::

    %load_ext claude_force_magic

    %%agent python-expert
    Write a function that parses ISO 8601 durations, with tests.

As a library::

    from claude_force_magic import AsyncAgentOrchestrator

    async with AsyncAgentOrchestrator() as orch:
        result = await orch.execute_agent("python-expert", "Explain asyncio.Semaphore")

Public names are imported lazily, so ``import claude_force_magic`` and ``%load_ext`` stay
fast and pull in neither ``anthropic``, ``pandas`` nor ``ipywidgets``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors as _errors

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "ResponseCache": ".cache.store",
    "RedisResponseCache": ".cache.redis",
    "AsyncAgentOrchestrator": ".engine.orchestrator",
    "Conversation": ".engine.conversation",
    "AgentResult": ".engine.result",
    "AgentRegistry": ".agents",
    "AgentDefinition": ".agents",
    "PriceTable": ".pricing",
    "Secret": ".settings",
}
_LAZY.update(dict.fromkeys(_errors.__all__, ".errors"))  # errors.py is tiny: no cost

__all__ = sorted([*_LAZY, "__version__", "load_ipython_extension", "unload_ipython_extension"])

if TYPE_CHECKING:
    from .agents import AgentDefinition as AgentDefinition
    from .agents import AgentRegistry as AgentRegistry
    from .cache.redis import RedisResponseCache as RedisResponseCache
    from .cache.store import ResponseCache as ResponseCache
    from .engine.conversation import Conversation as Conversation
    from .engine.orchestrator import AsyncAgentOrchestrator as AsyncAgentOrchestrator
    from .engine.result import AgentResult as AgentResult
    from .errors import *  # noqa: F403
    from .pricing import PriceTable as PriceTable
    from .settings import Secret as Secret


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'claude_force_magic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%agent`` and ``%%agent`` (called by ``%load_ext claude_force_magic``)."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop the background loop and close the client (called by ``%unload_ext``)."""
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
