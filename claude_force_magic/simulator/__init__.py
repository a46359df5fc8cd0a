"""A local server that speaks the Anthropic Messages API, for tests and benchmarks.

It imports nothing from the rest of ``claude_force_magic``: the real ``anthropic`` SDK is pointed
at it with ``base_url=sim.base_url`` and talks to it over loopback HTTP::

    from claude_force_magic.simulator import Simulator, Latency, Fault

    with Simulator(latency=Latency.fixed(0.05), script=[Fault.RATE_LIMIT]) as sim:
        client = anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0)
        ...
"""

from __future__ import annotations

from .behaviour import Fault, Latency
from .server import RequestRecord, Simulator
from .text import estimate_tokens

__all__ = ["Fault", "Latency", "RequestRecord", "Simulator", "estimate_tokens"]
