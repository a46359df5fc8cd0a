"""Fixtures for the notebook tests: one real Jupyter kernel per test module."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from kernel_harness import Kernel, start_kernel, stop_kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One real kernel for the whole test module, with the extension loaded in simulate mode."""
    root = tmp_path_factory.mktemp("kernel")
    k = start_kernel(root)
    try:
        k.ok(f"import sys; assert sys.executable == {sys.executable!r}, sys.executable")
        yield k
    finally:
        stop_kernel(k)


@pytest.fixture(scope="module")
def simulated_kernel(kernel: Kernel) -> Kernel:
    """The module's kernel with the extension loaded, answering from the simulator at once."""
    kernel.ok("%load_ext claude_force_magic")
    kernel.ok("%config AgentMagics.simulator_latency = 0.0")
    kernel.ok("%agent simulate on")
    return kernel


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A terminal-style IPython shell (no kernel) with the extension loaded; unloading it must
    leave no thread behind."""
    ip = InteractiveShell.instance()
    before = {t.name for t in threading.enumerate()}
    ip.run_line_magic("load_ext", "claude_force_magic")
    ip.run_line_magic("config", "AgentMagics.simulator_latency = 0.0")
    yield ip
    ip.run_line_magic("unload_ext", "claude_force_magic")
    leftover = {t.name for t in threading.enumerate()} - before
    assert not leftover, f"threads left running after %unload_ext: {leftover}"
