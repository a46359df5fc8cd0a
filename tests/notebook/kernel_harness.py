"""Driving a real Jupyter kernel from tests (used by conftest.py and the kernel tests).

``kernel.run(code)`` executes a cell and returns its reply status and every iopub message it
caused; ``kernel.send(code)`` queues a cell without waiting (as Run All does) and
``kernel.collect(msg_id)`` gathers its outcome later. The kernel's config and cache directories
are private temporary directories; it never sees a real API key.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KERNEL_STARTUP_TIMEOUT = 60


@dataclass
class CellRun:
    """What one executed cell produced."""

    status: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        """Contents of the iopub messages of these types, in order."""
        return [m["content"] for m in self.messages if m["header"]["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(c["text"] for c in self.of_type("stream") if c["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(c["text"] for c in self.of_type("stream") if c["name"] == "stderr")

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0] if errors else None

    def texts(self, mime: str = "text/plain") -> list[str]:
        """The ``mime`` data of every display/update/result message, in order."""
        out = []
        for content in self.of_type("display_data", "update_display_data", "execute_result"):
            data = content.get("data", {})
            if mime in data:
                value = data[mime]
                out.append(value if isinstance(value, str) else str(value))
        return out

    @property
    def ename(self) -> str | None:
        """The error name from the execute_reply (set for every failed cell, UsageError too)."""
        value = self.reply.get("ename")
        return str(value) if value else None

    @property
    def result_text(self) -> str:
        results = self.of_type("execute_result")
        return results[-1]["data"].get("text/plain", "") if results else ""


class Kernel:
    """A thin synchronous driver around a jupyter_client kernel."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client
        self._iopub: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._idle: set[str] = set()
        self._replies: dict[str, dict[str, Any]] = {}
        self.sockets: Path | None = None

    def send(self, code: str) -> str:
        return str(self.client.execute(code, allow_stdin=False))

    def _pump(self, timeout: float) -> None:
        """File at most one iopub message under its cell, waiting up to ``timeout`` s."""
        try:
            msg = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return
        parent = msg.get("parent_header", {}).get("msg_id")
        if not parent:
            return
        if msg["header"]["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                self._idle.add(parent)
            return
        self._iopub[parent].append(msg)

    def wait_for(
        self, msg_id: str, predicate: Callable[[CellRun], bool], timeout: float = 30.0
    ) -> None:
        """Wait until the running cell's output so far satisfies ``predicate`` (not a sleep)."""
        deadline = time.monotonic() + timeout
        while not predicate(CellRun("running", list(self._iopub[msg_id]))):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or msg_id in self._idle:
                raise TimeoutError(f"cell {msg_id} never showed the awaited output")
            self._pump(min(remaining, 1.0))

    def collect(self, msg_id: str, timeout: float = 60.0) -> CellRun:
        deadline = time.monotonic() + timeout
        while msg_id not in self._idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell {msg_id} did not finish within {timeout} s")
            self._pump(min(remaining, 1.0))
        while msg_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no execute_reply for {msg_id}")
            try:
                reply = self.client.get_shell_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            self._replies[reply["parent_header"].get("msg_id", "")] = reply
        reply = self._replies.pop(msg_id)
        self._idle.discard(msg_id)
        return CellRun(reply["content"]["status"], self._iopub.pop(msg_id, []), reply["content"])

    def run_answering(
        self, code: str, answer: str, timeout: float = 60.0
    ) -> tuple[CellRun, dict[str, Any]]:
        """Run a cell that asks for input (``input()``/``getpass``) and answer its first
        ``input_request`` on the stdin channel, as a notebook front end does; return the
        cell's outcome and the request's content (``prompt``, ``password``)."""
        msg_id = str(self.client.execute(code, allow_stdin=True))
        request = self.client.get_stdin_msg(timeout=timeout)
        assert request["header"]["msg_type"] == "input_request", request
        self.client.input(answer)
        return self.collect(msg_id, timeout), dict(request["content"])

    def run(self, code: str, timeout: float = 60.0) -> CellRun:
        return self.collect(self.send(code), timeout)

    def ok(self, code: str, timeout: float = 60.0) -> CellRun:
        """Run a cell that must succeed; fail the test with its error otherwise."""
        run = self.run(code, timeout)
        assert run.status == "ok", f"cell failed: {run.error or run.reply}\n--- code:\n{code}"
        return run


def kernel_env(root: Path) -> dict[str, str]:
    """The environment a test kernel runs with: private dirs, no credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CACHE_SECRET",
            "CLAUDE_FORCE_CONFIG",
        )
        and not k.startswith("CLAUDE_FORCE_MAGIC_")
        and not k.startswith("PYTEST")
    }
    root.chmod(0o700)
    env["CLAUDE_FORCE_MAGIC_CONFIG_DIR"] = str(root / "config")
    env["CLAUDE_CACHE_DIR"] = str(root / "cache")
    env["HOME"] = str(root)
    env["MPLBACKEND"] = "Agg"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def start_kernel(root: Path, cwd: Path | None = None) -> Kernel:
    from claude_force_magic.demo import kernel_manager

    # Unix sockets in a short private directory (socket paths are limited to about 100 bytes):
    # no TCP port, and no "Kernel is running over TCP without encryption" in the test output.
    sockets = Path(tempfile.mkdtemp(prefix="cfm-kernel-"))
    manager = kernel_manager(sockets)
    manager.start_kernel(env=kernel_env(root), cwd=str(cwd or root), extra_arguments=[])
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=KERNEL_STARTUP_TIMEOUT)
    kernel = Kernel(manager, client)
    kernel.sockets = sockets
    return kernel


def stop_kernel(kernel: Kernel) -> None:
    kernel.client.stop_channels()
    kernel.manager.shutdown_kernel(now=True)
    if kernel.sockets is not None:
        shutil.rmtree(kernel.sockets, ignore_errors=True)
