"""Shared fixtures: every test runs with its own config and cache directories and no real key."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer


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


# -- broken file systems for the cache tests (issue 9 §3) ---------------------------------


def _mount(*args: str) -> bool:
    done = subprocess.run(["mount", *args], capture_output=True, check=False)
    return done.returncode == 0


class SmallFs:
    """A mounted 512 KiB tmpfs at :attr:`path` that a test can fill or make read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_only(self) -> None:
        """Remount it read-only (nothing may hold a file open for writing on it)."""
        assert _mount("-o", "remount,ro", str(self.path)), "could not remount read-only"

    def fill(self) -> Path:
        """Write a file until no block is left; return it (delete it to free the space)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        with pytest.raises(OSError) as info:
            (self.path / "probe").write_bytes(b"\0" * 8192)
        assert info.value.errno == errno.ENOSPC
        return filler


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """A real 512 KiB tmpfs (skipped where mounting is not allowed). The tests run as root,
    where ``chmod`` stops nothing, so "full" and "read-only" are made for real."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield SmallFs(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


# -- a real redis-server for the team-scale tests (issue 14) -----------------------------


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the whole run, on a free loopback port, stopped at the end."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The shared ``redis-server``, empty at the start of the test and running at its end
    (a test may stop or restart it)."""
    if redis_server_session.process is None:
        redis_server_session.start()
    redis_server_session.flush()
    yield redis_server_session
    if redis_server_session.process is None:
        redis_server_session.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own (for tests that kill, restart or password it)."""
    server = RedisServer(tmp_path / "redis-private")
    server.directory.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
