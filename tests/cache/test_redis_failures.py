"""Redis goes away, restarts, hangs, or drops connections mid-operation: the cache raises
RedisUnavailableError (or serves a clean miss), never a half-written or corrupt state, and
works again as soon as Redis is back."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from redis_server import RedisServer, free_port

from claude_force_magic import redis_link
from claude_force_magic.cache import RedisResponseCache
from claude_force_magic.errors import CacheError, RedisUnavailableError

from .redis_helpers import SECRET, check_bookkeeping, fetch, raw, store

pytestmark = pytest.mark.redis


@pytest.fixture
def cache(private_redis: RedisServer) -> Iterator[RedisResponseCache]:
    cache = RedisResponseCache(private_redis.url, cache_secret=SECRET)
    yield cache
    cache.close()


def test_no_server_at_construction() -> None:
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as info:
        RedisResponseCache(url, cache_secret=SECRET)
    assert "hunter2" not in str(info.value)
    assert isinstance(info.value, CacheError), "the engine treats it as a cache failure"


def test_server_down_then_back(cache: RedisResponseCache, private_redis: RedisServer) -> None:
    store(cache, "t")
    private_redis.stop()
    with pytest.raises(RedisUnavailableError, match="unavailable"):
        fetch(cache, "t")
    with pytest.raises(RedisUnavailableError):
        store(cache, "t")
    with pytest.raises(RedisUnavailableError):
        cache.get_stats()
    private_redis.start()  # persistence is off: an empty server, scripts not loaded
    assert fetch(cache, "t") is None
    assert store(cache, "t")
    assert fetch(cache, "t") is not None
    stats = cache.get_stats()
    assert (stats["sets"], stats["hits"], stats["misses"]) == (1, 1, 1)
    check_bookkeeping(raw(private_redis.url))


def test_a_hung_server_times_out(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_link, "SOCKET_TIMEOUT", 0.3)
    cache = RedisResponseCache(private_redis.url, cache_secret=SECRET)
    store(cache, "t")
    assert private_redis.process is not None
    pid = private_redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="unavailable"):
            fetch(cache, "t")
        # 0.3 s timeout, no retries; 30x slack for a loaded machine (redis-py's default
        # would retry 3 times with back-off).
        assert time.monotonic() - started < 9
    finally:
        os.kill(pid, signal.SIGCONT)
    assert fetch(cache, "t") is not None
    cache.close()


def test_client_kill_mid_operation_leaves_a_consistent_cache(
    cache: RedisResponseCache, private_redis: RedisServer
) -> None:
    """4 threads store and look up while another kills every client connection over and
    over. Each call either succeeds or raises RedisUnavailableError; afterwards the
    bookkeeping is consistent, nothing fails its check, and the counts agree with what the
    callers saw (a call whose reply was lost may have been counted: at most one per error)."""
    admin = raw(private_redis.url)
    admin.client_setname("admin")
    stop = threading.Event()
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def work(worker: int) -> None:
        mine: Counter[str] = Counter()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 2:
                    store(cache, f"w{worker}-{i % 40}", "x" * 200)
                    mine["sets"] += 1
                else:
                    found = fetch(cache, f"w{worker}-{(i - 1) % 40}")
                    mine["hits" if found else "misses"] += 1
            except RedisUnavailableError:
                mine["errors"] += 1
        with lock:
            seen.update(mine)

    def kill() -> None:
        while not stop.is_set():
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            time.sleep(0.005)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    killer = threading.Thread(target=kill)
    for t in [*threads, killer]:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in [*threads, killer]:
        t.join(30)
    assert seen["errors"] > 0, "the killer should have interrupted some calls"
    assert seen["sets"] > 0 and seen["hits"] > 0
    stats = cache.get_stats()
    assert stats["integrity_failures"] == 0
    assert seen["sets"] <= stats["sets"] <= seen["sets"] + seen["errors"]
    lookups = stats["hits"] + stats["misses"]
    assert (
        seen["hits"] + seen["misses"] <= lookups <= seen["hits"] + seen["misses"] + seen["errors"]
    )
    check_bookkeeping(admin)
    assert cache.verify().ok


def test_the_documented_acl_rights_are_enough(private_redis: RedisServer) -> None:
    """docs/cache.md lists the rights a team's ACL user needs; with exactly those, every
    operation works, and without scripting the cache says which right is missing."""
    admin = raw(private_redis.url)
    rights = ["~team:*", "+@read", "+@write", "+@scripting", "+ping", "+time"]
    admin.execute_command("ACL", "SETUSER", "member", "on", ">member-pass-123", *rights)
    url = f"redis://member:member-pass-123@127.0.0.1:{private_redis.port}/0"
    with RedisResponseCache(url, cache_secret=SECRET, namespace="team") as cache:
        store(cache, "t")
        assert fetch(cache, "t") is not None
        assert len(cache.entries()) == 1 and cache.verify().ok
        assert cache.get_stats()["hits"] == 1
        assert cache.clear() == 1
    for missing in ("-time", "-@scripting"):  # refused inside a script, and before one
        admin.execute_command("ACL", "SETUSER", "member", missing)
        with pytest.raises(RedisUnavailableError, match="ACL") as info:
            RedisResponseCache(url, cache_secret=SECRET, namespace="team")
        assert "member-pass-123" not in str(info.value)


def test_a_miss_whose_second_round_trip_fails_is_still_a_clean_miss(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A lookup's first round trip (native commands) works, its second (the miss script) is
    refused: the caller gets a miss and no exception, the cache logs it, and the lookup stays
    counted once (as the hit of the first round trip: the documented caveat)."""
    admin = raw(private_redis.url)
    rights = ["~team:*", "+@read", "+@write", "+@scripting", "+ping", "+time"]
    admin.execute_command("ACL", "SETUSER", "member", "on", ">member-pass-123", *rights)
    url = f"redis://member:member-pass-123@127.0.0.1:{private_redis.port}/0"
    with RedisResponseCache(url, cache_secret=SECRET, namespace="team") as cache:
        admin.execute_command("ACL", "SETUSER", "member", "-@scripting")
        with caplog.at_level("WARNING", logger="claude_force_magic.cache"):
            assert fetch(cache, "never stored") is None
        assert "could not count the cache miss" in caplog.text
        assert "member-pass-123" not in caplog.text
        admin.execute_command("ACL", "SETUSER", "member", "+@scripting")
        stats = cache.get_stats()
        assert (stats["hits"], stats["misses"]) == (1, 0)
