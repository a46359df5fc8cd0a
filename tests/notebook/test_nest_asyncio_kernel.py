"""The extension keeps working after the user applied nest_asyncio in the kernel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_harness import Kernel, start_kernel, stop_kernel

pytestmark = pytest.mark.kernel


@pytest.fixture
def fresh_kernel(tmp_path: Path) -> Iterator[Kernel]:
    kernel = start_kernel(tmp_path)
    yield kernel
    stop_kernel(kernel)


@pytest.mark.parametrize("module", ["nest_asyncio", "nest_asyncio2"])
def test_works_after_nest_asyncio_apply_including_run_all(
    fresh_kernel: Kernel, module: str
) -> None:
    kernel = fresh_kernel
    kernel.ok(f"import {module}\n{module}.apply()")
    kernel.ok("%load_ext claude_force_magic")
    kernel.ok("%config AgentMagics.simulator_latency = 0.05")
    kernel.ok("%agent simulate on")
    kernel.ok("%%agent python-expert -o r\nExplain asyncio.gather briefly.")
    kernel.ok("assert r.success")
    ids = [
        kernel.send(f"%%agent python-expert --quiet -o n{i}\nQueued question {i}.")
        for i in range(4)
    ]
    runs = [kernel.collect(i, timeout=30) for i in ids]
    assert [r.status for r in runs] == ["ok"] * 4
    kernel.ok(
        "x = await get_ipython().magics_manager.registry['AgentMagics'].session.runner.wrap("
        "__import__('asyncio').sleep(0, result=5))\nassert x == 5"
    )
    kernel.ok("%unload_ext claude_force_magic")
