"""The served time to first token of every paced stream, per request, on the wire.

A client in another process cannot read the simulator's log, so each paced stream's
``message_delta`` carries ``sim_served_ttft_ms``: what the simulator did for that request
(arrival to writing its first text delta), the figure a client's TTFT is compared with.
"""

from __future__ import annotations

import anthropic
import pytest

from claude_force_magic.engine.client import SERVED_TTFT_FIELD as ENGINE_FIELD
from claude_force_magic.simulator import Latency, Simulator
from claude_force_magic.simulator.wire import SERVED_TTFT_FIELD

from .helpers import ask, wait_until
from .test_streaming import raw_events


def _served_field(events: list[tuple[str, dict[str, object]]]) -> object:
    [delta] = [data for name, data in events if name == "message_delta"]
    return delta.get(SERVED_TTFT_FIELD)


@pytest.mark.parametrize("per_token", [0.0, 0.001])
def test_a_paced_stream_says_what_it_served_for_that_request(per_token: float) -> None:
    with Simulator(latency=Latency.fixed(0.0, ttft=0.02, per_token=per_token)) as sim:
        firsts = [raw_events(sim, ask(stream=True, max_tokens=32)) for _ in range(3)]
        wait_until(lambda: len(sim.served_ttft()) == 3)  # logged as each handler returns
        served = sim.served_ttft()
        ids = [r.request_id for r in sim.requests]
    assert len(served) == 3
    for events, request_id in zip(firsts, ids, strict=True):
        on_wire = _served_field(events)
        assert isinstance(on_wire, float)
        # The same measurement as the log's (rounded to the microsecond on the wire)...
        assert on_wire == pytest.approx(served[request_id] * 1000, abs=0.001)
        # ...and never less than what it meant to wait (it sleeps at least that long).
        assert on_wire >= 20.0


def test_unpaced_and_broken_streams_carry_no_served_ttft() -> None:
    with Simulator() as sim:  # nothing to pace: one write, no first-delta moment to report
        assert _served_field(raw_events(sim, ask(stream=True))) is None
    with Simulator(latency=Latency.fixed(0.0, ttft=0.01)) as sim:
        sim.set_script(["stream_error"])
        events = raw_events(sim, ask(stream=True))
        assert [name for name, _ in events][-1] == "error"
        assert "message_delta" not in [name for name, _ in events]


def test_the_sdk_passes_the_field_through_and_the_engine_reads_the_same_name() -> None:
    assert ENGINE_FIELD == SERVED_TTFT_FIELD  # the engine cannot import the simulator
    with (
        Simulator(latency=Latency.fixed(0.0, ttft=0.01)) as sim,
        anthropic.Anthropic(api_key="k", base_url=sim.base_url, max_retries=0) as client,
    ):
        events = list(client.messages.create(**ask(), stream=True))
        wait_until(lambda: len(sim.requests) == 1)
        [request] = sim.requests
    [delta] = [e for e in events if e.type == "message_delta"]
    assert getattr(delta, SERVED_TTFT_FIELD) == pytest.approx(
        sim.served_ttft()[request.request_id] * 1000, abs=0.001
    )
