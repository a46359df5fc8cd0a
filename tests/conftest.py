"""Shared fixtures: every test runs with its own config and cache directories and no real key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point every path setting at a fresh private directory and drop real credentials.

    Tests never see the developer's ``ANTHROPIC_API_KEY`` or cache, and never reach the internet.
    """
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)
    monkeypatch.setenv("CLAUDE_FORCE_MAGIC_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("CLAUDE_CACHE_DIR", str(home / "cache"))
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CACHE_SECRET",
        "CLAUDE_FORCE_CONFIG",
    ):
        monkeypatch.delenv(var, raising=False)
    yield home
