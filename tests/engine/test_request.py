"""CallOptions, RequestBuilder and conversations (prior turns) through the real pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.agents import AgentRegistry
from claude_force_magic.cache.store import ResponseCache
from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.engine.request import (
    OPTION_NAMES,
    CallOptions,
    RequestBuilder,
)
from claude_force_magic.errors import ConfigurationError, InvalidTaskError
from claude_force_magic.simulator import Simulator

AGENT = "python-expert"
SECRET = b"0123456789abcdef0123456789abcdef"
MakeOrch = Callable[..., AsyncAgentOrchestrator]
HISTORY = [
    {"role": "user", "content": "What is a semaphore?"},
    {"role": "assistant", "content": "A counter that bounds concurrent access."},
]


def test_from_kwargs_refuses_unknown_options_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        CallOptions.from_kwargs(max_token=10)
    message = str(info.value)
    assert "'max_token'" in message
    assert all(name in message for name in OPTION_NAMES)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", 2.0),
        ("timeout_seconds", -1),
        ("ttl_hours", 0),
        ("use_cache", "no"),
        ("screen_task", None),
        ("stop_sequences", ["", "x"]),
        ("stop_sequences", "END"),
        ("untrusted", ["not", "a", "mapping"]),
        ("injection_policy", "sometimes"),
        ("model", " "),
    ],
)
def test_bad_values_raise_naming_the_option(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name.split("_")[0]):
        CallOptions.from_kwargs(**{name: value})


def test_values_are_normalised_once() -> None:
    options = CallOptions(stop_sequences=["END"], injection_policy=" WARN ", untrusted={})  # type: ignore[arg-type]
    assert options.stop_sequences == ("END",)
    assert options.injection_policy == "warn"
    assert options.untrusted is None
    assert options.replace(max_tokens=5).max_tokens == 5
    with pytest.raises(ConfigurationError, match="valid options"):
        options.replace(colour="red")


def _agent() -> Any:
    return AgentRegistry.load(None).get(AGENT)


def test_history_goes_before_the_new_turn_and_into_the_cache_identity() -> None:
    builder = RequestBuilder()
    agent = _agent()
    single = builder.build(agent, "And a lock?", CallOptions())
    turn = builder.build(agent, "And a lock?", CallOptions(), HISTORY)
    assert turn.params["messages"] == [*HISTORY, {"role": "user", "content": "And a lock?"}]
    assert turn.cache_task == single.cache_task == "And a lock?"
    assert turn.cache_request != single.cache_request
    assert turn.cache_request["history"] == HISTORY
    assert turn.input_estimate > single.input_estimate + 10
    assert "system" not in turn.cache_request  # the definition hash stands for the prompt
    assert turn.cache_request["definition_hash"] == agent.definition_hash


@pytest.mark.parametrize(
    "history",
    [
        [{"role": "assistant", "content": "x"}],
        [{"role": "user", "content": "x"}],
        [{"role": "user", "content": ["block"]}, {"role": "assistant", "content": "y"}],
        [{"role": "user", "content": "x", "extra": 1}, {"role": "assistant", "content": "y"}],
        ["user: hi"],
    ],
)
def test_malformed_history_is_refused_before_sending(history: list[Any]) -> None:
    with pytest.raises(InvalidTaskError, match="history"):
        RequestBuilder().build(_agent(), "Next", CallOptions(), history)


async def test_a_conversation_turn_is_sent_and_cached_per_history(
    sim: Simulator, make_orch: MakeOrch, tmp_path: Path
) -> None:
    orch = make_orch(cache=ResponseCache(tmp_path / "c", cache_secret=SECRET))
    first = await orch.execute(AGENT, "And a lock?", history=HISTORY)
    assert first.success and not first.cached
    again = await orch.execute_agent(AGENT, "And a lock?", history=HISTORY)
    assert again.cached and again.output == first.output
    alone = await orch.execute_agent(AGENT, "And a lock?")
    assert not alone.cached  # another history: another cache entry
    assert sim.stats["requests"] == 2
    assert first.metadata["input_tokens"] > alone.metadata["input_tokens"]


class _RecordingCache(ResponseCache):
    """The real disk cache, recording the request options the engine keys entries by."""

    seen: list[dict[str, Any]]

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> Any:
        self.seen.append(request)
        return super().get(agent_name, task, model, **request)


async def test_the_cache_key_does_not_carry_the_system_prompt(
    sim: Simulator, make_orch: MakeOrch, tmp_path: Path
) -> None:
    cache = _RecordingCache(tmp_path / "c", cache_secret=SECRET)
    cache.seen = []
    orch = make_orch(cache=cache)
    await orch.execute_agent(AGENT, "Explain asyncio.Event")
    [request] = cache.seen
    assert "system" not in request
    assert request["definition_hash"] == orch.registry.get(AGENT).definition_hash
    cache.close()
