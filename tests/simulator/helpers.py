"""Shared request builders for the simulator tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

MODEL = "claude-sonnet-5"
TASK = "Write a Python function that merges overlapping intervals"
HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}


def ask(task: str = TASK, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``messages.create`` (or a raw body) with one user message."""
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": task}],
    }
    kwargs.update(overrides)
    return kwargs


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Like :func:`wait_until`, without blocking the running event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def text_of(message: Any) -> str:
    """The text of a message's first content block (which must be a text block)."""
    block = message.content[0]
    assert block.type == "text"
    return str(block.text)


class FakeClock:
    """A clock the test moves by hand (seconds): pass it as ``Simulator(clock=...)``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
