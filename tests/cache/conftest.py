"""Fixtures for the response cache: a private directory, a secret and a controllable clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.cache import ResponseCache

SECRET = "test-secret-0123456789abcdef-XYZ"


class FakeClock:
    """A clock the test moves by hand: no sleeping, no flaky timing."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_cache(cache_path: Path, clock: FakeClock) -> Iterator[Callable[..., ResponseCache]]:
    made: list[ResponseCache] = []

    def make(**kwargs: Any) -> ResponseCache:
        kwargs.setdefault("cache_secret", SECRET)
        kwargs.setdefault("clock", clock)
        cache = ResponseCache(kwargs.pop("cache_dir", cache_path), **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make_cache: Callable[..., ResponseCache]) -> ResponseCache:
    return make_cache()


def db_execute(directory: Path, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on cache.db with plain sqlite3, as an attacker with file access would."""
    con = sqlite3.connect(directory / "cache.db", isolation_level=None)
    try:
        return con.execute(statement, args).fetchall()
    finally:
        con.close()


def put(cache: ResponseCache, task: str, response: str = "an answer", **kwargs: Any) -> None:
    """Store one answer for agent 'python-expert' / model 'm'."""
    assert cache.set("python-expert", task, "m", response, 10, 20, 0.001, **kwargs)


def fetch(cache: ResponseCache, task: str, **request: Any) -> dict[str, Any] | None:
    return cache.get("python-expert", task, "m", **request)
