"""Running a cell's agents on the background loop (no kernel needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from claude_force_magic.notebook.cells import run_cell
from claude_force_magic.notebook.display import StreamView
from claude_force_magic.notebook.options import CellRequest
from claude_force_magic.notebook.session import AgentSession, SessionConfig

# A long wait slice: a cell that sat one out would take at least this long. A quarter of it
# is the bound: on a loaded 2-core machine the first simulated cell took up to 4.2 s, which
# a 5 s slice (2.5 s bound) failed 2 runs in 5, while a missing wake-up still takes 60 s.
SLICE = 60.0


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentSession]:
    s = AgentSession(lambda: SessionConfig(simulator_latency=0.0))
    s.simulate = True
    run = s.run

    def run_with_long_slices(coro: Any, **kwargs: Any) -> Any:
        return run(coro, poll=SLICE, **kwargs)

    monkeypatch.setattr(s, "run", run_with_long_slices)
    yield s
    s.close()


@pytest.mark.parametrize("stream", [False, True])
def test_the_kernel_thread_wakes_as_soon_as_the_agents_finish(
    session: AgentSession, stream: bool
) -> None:
    session.orchestrator()  # built outside the measurement
    request = CellRequest(agents=("python-expert",), task="Wake promptly.", stream=stream)
    view = StreamView(labels=[None], notebook=False, quiet=True)
    start = time.perf_counter()
    outcomes = run_cell(session, request, view, simulated=True)
    elapsed = time.perf_counter() - start
    assert not isinstance(outcomes[0], BaseException) and outcomes[0].success
    assert elapsed < SLICE / 4, f"the cell waited out a {SLICE} s slice ({elapsed:.1f} s)"
