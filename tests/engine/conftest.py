"""Fixtures for engine tests: a simulator on the test's loop and an orchestrator pointed at it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.engine.orchestrator import AsyncAgentOrchestrator
from claude_force_magic.simulator import Latency, Simulator

TEST_KEY = "sk-test-engine-key"
ROOT = Path(__file__).resolve().parents[2]


def _python310() -> str | None:
    candidates = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    found = shutil.which("python3.10")
    for exe in [*map(str, candidates), *([found] if found else [])]:
        proc = subprocess.run([exe, "-c", "pass"], capture_output=True, timeout=30)
        if proc.returncode == 0:
            return exe
    return None


@pytest.fixture
def run_on_python310() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run a script under a Python 3.10 interpreter with this checkout's package on its path
    (the test is skipped on a machine without one)."""
    exe = _python310()
    if exe is None:
        pytest.skip("no python3.10 interpreter on this machine")

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )

    return run


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=Latency.fixed(0.0), retry_after=0.5) as s:
        yield s


@pytest.fixture
async def make_orch(sim: Simulator) -> AsyncIterator[Callable[..., AsyncAgentOrchestrator]]:
    made: list[AsyncAgentOrchestrator] = []

    def factory(**kwargs: Any) -> AsyncAgentOrchestrator:
        kwargs.setdefault("api_key", TEST_KEY)
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("calls_per_minute", None)
        kwargs.setdefault("max_retries", 0)
        orch = AsyncAgentOrchestrator(**kwargs)
        made.append(orch)
        return orch

    yield factory
    for orch in made:
        await orch.close()
