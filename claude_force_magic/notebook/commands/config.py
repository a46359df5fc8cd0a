"""``%agent config``: the effective configuration, API key masked."""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING, Any

from ...settings import API_KEY_ENV
from ..session import Mode
from .registry import command, subcommand_args

if TYPE_CHECKING:
    from ..magics import AgentMagics

__all__ = ["config", "effective_config"]


@command("config", ("config", "the effective configuration (API key masked)"))
@subcommand_args("agent config")
def config(magics: AgentMagics, args: argparse.Namespace) -> Any:
    """Every setting's effective value as a DataFrame (the API key masked)."""
    from ..frames import config_frame

    return config_frame(effective_config(magics))


def effective_config(magics: AgentMagics) -> dict[str, Any]:
    """The configurable settings, the cache directory, the mode, the masked key and spend."""
    session = magics.session
    values: dict[str, Any] = {
        name: getattr(magics, name) for name in magics.trait_names(config=True)
    }
    values["cache_dir"] = str(session.cache_dir(Mode.LIVE))
    values["simulate"] = session.simulate
    values["api_key"] = _masked_key(session.api_key)
    if values.get("redis_url"):  # never show a password in the URL
        values["redis_url"] = re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:****@", values["redis_url"])
    for mode, orch in session.live_orchestrators().items():
        values[f"spent_usd ({mode.label})"] = orch.spent_usd
    return values


def _masked_key(session_key: str | None) -> str:
    if session_key:  # never shown, not even in part
        return "(set with %agent key)"
    key = os.environ.get(API_KEY_ENV, "")
    if len(key) > 12:
        return f"{key[:7]}…{key[-2:]} (set)"
    return "(set)" if key else "(not set)"
