"""Benchmark: a conversation with prompt caching against the same conversation without it.

Run::

    .venv/bin/python benchmarks/bench_conversation.py           # 10 turns, history at 50 turns
    .venv/bin/python benchmarks/bench_conversation.py --quick   # fewer timing repetitions

Two parts, each against a baseline measured in the same run (the machine is shared):

1. **Input cost over 10 turns** of a conversation with an agent whose definition is about
   3,000 tokens, through :class:`~claude_force_magic.engine.conversation.Conversation` and the
   real SDK against the project's simulator (which models the API's prompt cache), with
   ``prompt_cache="auto"`` and with ``"off"``. The input side of each turn is priced from
   the usage the simulator reported (plain input, 5-minute and 1-hour writes, reads; output
   left out: caching does not change it). Goal: ``auto`` costs at most 35 % of ``off``.
2. **History overhead at 50 turns**: what building a turn's request costs with 50 turns of
   history (the conversation's copy of the history, the request builder's checks, the
   response-cache identity, the token estimate, the breakpoints) minus the same for the first
   turn, median over many repetitions. Goal: under 1 ms, printed with its ratio to the
   first turn's preparation and to a whole turn's latency against a zero-latency simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from claude_force_magic.engine.conversation import Conversation
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.request import CallOptions
from claude_force_magic.pricing import PriceTable
from claude_force_magic.simulator import Latency, Simulator

MODEL = "claude-sonnet-5-5"
KEY = "sk-bench-conversation"
DEFINITION_CHARS = 12_000  # about 3,000 tokens at four characters per token
GOAL_RATIO = 0.35
GOAL_OVERHEAD_MS = 1.0
TASKS = [
    "Write a function that parses ISO 8601 dates.",
    "Now add tests for the edge cases.",
    "Handle time zones too.",
    "What about leap seconds?",
    "Refactor it into a small class.",
    "Add type hints everywhere.",
    "Write the docstring with an example.",
    "Make it faster for a million dates.",
    "Add a command-line entry point.",
    "Summarise every change we made.",
]


def write_agent(root: Path) -> Path:
    config = root / ".claude"
    (config / "agents").mkdir(parents=True)
    line = "You are a senior Python reviewer. Cite the rule behind every finding you report.\n"
    (config / "agents" / "reviewer.md").write_text(
        (line * (DEFINITION_CHARS // len(line) + 1))[:DEFINITION_CHARS], encoding="utf-8"
    )
    path = config / "claude.json"
    path.write_text(json.dumps({"agents": {"reviewer": {"file": "agents/reviewer.md"}}}))
    return path


def input_cost(prices: PriceTable, metadata: dict[str, Any]) -> float:
    """What the input side of one turn cost (plain input, cache writes by TTL, reads)."""
    usage = {
        "input_tokens": metadata["input_tokens"],
        "cache_read_input_tokens": metadata["cache_read_input_tokens"],
        "cache_creation_input_tokens": metadata["cache_creation_input_tokens"],
        "cache_creation": {
            "ephemeral_5m_input_tokens": metadata["cache_creation_5m_input_tokens"],
            "ephemeral_1h_input_tokens": metadata["cache_creation_1h_input_tokens"],
        },
    }
    return prices.cost(MODEL, usage) or 0.0


async def conversation_cost(orch: AsyncAgentOrchestrator, mode: str) -> list[dict[str, Any]]:
    conv = orch.conversation("reviewer", prompt_cache=mode, max_tokens=400)
    rows = []
    for number, task in enumerate(TASKS, 1):
        result = await conv.send(task)
        if not result.success:
            raise SystemExit(f"turn {number} failed: {result.errors}")
        rows.append({"turn": number, **result.metadata})
    return rows


def time_prepare(conv: Conversation, task: str, repeat: int) -> float:
    """Median seconds to build one turn's request with ``conv``'s history."""
    orch = conv._orch
    options = CallOptions(prompt_cache="auto")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        orch._prepare(conv.agent_name, task, options, conv.messages)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def history_overhead(orch: AsyncAgentOrchestrator, repeat: int) -> dict[str, float]:
    conv = orch.conversation("reviewer", max_tokens=400)
    first = time_prepare(conv, "A first question.", repeat)
    started = time.perf_counter()
    turns = 50
    for n in range(turns):
        await conv.send(f"Question {n}: {TASKS[n % len(TASKS)]}")
    per_turn = (time.perf_counter() - started) / turns
    at_50 = time_prepare(conv, "The 51st question.", repeat)
    return {"first": first, "at_50": at_50, "per_turn": per_turn, "turns": len(conv.turns)}


async def main(quick: bool) -> None:
    prices = PriceTable.bundled()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_agent(Path(tmp))
        async with Simulator(latency=Latency.fixed(0.0)) as sim, AsyncAgentOrchestrator(
            config, api_key=KEY, base_url=sim.base_url, model=MODEL,
            enable_cache=False, calls_per_minute=None, max_retries=0,
        ) as orch:  # fmt: skip
            off = await conversation_cost(orch, "off")
            auto = await conversation_cost(orch, "auto")
            overhead = await history_overhead(orch, 200 if quick else 2000)
    print(f"Conversation of {len(TASKS)} turns, agent definition of ~3,000 tokens, {MODEL}")
    print(f"{'turn':>4} {'off: input':>11} {'auto: input':>12} {'read':>7} {'written':>8} "
          f"{'off $':>10} {'auto $':>10}")  # fmt: skip
    total_off = total_auto = 0.0
    for a, b in zip(off, auto, strict=True):
        cost_off, cost_auto = input_cost(prices, a), input_cost(prices, b)
        total_off += cost_off
        total_auto += cost_auto
        print(
            f"{a['turn']:>4} {a['input_tokens']:>11,} {b['input_tokens']:>12,} "
            f"{b['cache_read_input_tokens']:>7,} {b['cache_creation_input_tokens']:>8,} "
            f"{cost_off:>10.6f} {cost_auto:>10.6f}"
        )
    ratio = total_auto / total_off
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"input cost over {len(TASKS)} turns: auto ${total_auto:.6f} vs off ${total_off:.6f}"
          f" = {ratio:.1%} of uncached (goal <= {GOAL_RATIO:.0%}: {verdict})")  # fmt: skip
    saved = sum(float(r["prompt_cache_saved_usd"]) for r in auto)
    print(f"prompt_cache_saved_usd reported by the engine: ${saved:.6f} (off - auto in this "
          f"run: ${total_off - total_auto:.6f}; the simulator's answers, and so the later "
          "turns' histories, differ slightly between the two runs)")  # fmt: skip
    first_ms, at_50_ms = overhead["first"] * 1000, overhead["at_50"] * 1000
    turn_ms = overhead["per_turn"] * 1000
    extra = at_50_ms - first_ms
    verdict = "met" if extra < GOAL_OVERHEAD_MS else "NOT met"
    print(
        f"history handling at {overhead['turns']:.0f} turns: prepare {at_50_ms:.3f} ms vs "
        f"{first_ms:.3f} ms for the first turn ({at_50_ms / first_ms:.1f}x); overhead "
        f"{extra:.3f} ms (goal < {GOAL_OVERHEAD_MS:g} ms: {verdict}), {extra / turn_ms:.1%} of "
        f"a whole turn ({turn_ms:.1f} ms against a zero-latency simulator)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing repetitions")
    asyncio.run(main(parser.parse_args().quick))
