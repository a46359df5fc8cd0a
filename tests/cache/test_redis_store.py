"""RedisResponseCache against a real redis-server: the disk cache's behaviour, shared."""

from __future__ import annotations

import json
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer

from claude_force_magic.cache import CacheSkipWarning, RedisResponseCache
from claude_force_magic.engine.store import ResponseStore
from claude_force_magic.errors import CacheError, ConfigurationError, IntegrityError, SecretError

from .conftest import FakeClock
from .redis_helpers import OTHER_SECRET, SECRET, check_bookkeeping, fetch, raw, store

pytestmark = pytest.mark.redis

Make = Callable[..., RedisResponseCache]


@pytest.fixture
def make(redis_server: RedisServer, clock: FakeClock) -> Iterator[Make]:
    made: list[RedisResponseCache] = []

    def build(**kwargs: Any) -> RedisResponseCache:
        kwargs.setdefault("cache_secret", SECRET)
        kwargs.setdefault("clock", clock)
        cache = RedisResponseCache(kwargs.pop("url", redis_server.url), **kwargs)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make: Make) -> RedisResponseCache:
    return make()


def test_it_is_a_response_store(cache: RedisResponseCache) -> None:
    assert isinstance(cache, ResponseStore)


def test_round_trip_and_counts(cache: RedisResponseCache, clock: FakeClock) -> None:
    assert fetch(cache, "t") is None
    assert store(cache, "t", "ünïcode answer", metadata={"stop_reason": "end_turn"})
    clock.advance(5)
    got = fetch(cache, "t")
    assert got is not None
    assert got["response"] == "ünïcode answer"
    assert got["metadata"] == {"stop_reason": "end_turn"}
    assert got["age_seconds"] == 5
    assert got["key"] == cache.key_for("python-expert", "t", "m")
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"], stats["sets"], stats["entries"]) == (1, 1, 1, 1)
    assert stats["hit_rate"] == 0.5 and stats["backend"] == "redis"
    assert stats["size_bytes"] == check_bookkeeping(raw(cache.target.display))["bytes"] > 0


def test_request_options_are_part_of_the_key(cache: RedisResponseCache) -> None:
    cache.set("a", "t", "m", "cold", 1, 1, 0.0, temperature=0.0)
    assert cache.get("a", "t", "m", temperature=1.0) is None
    got = cache.get("a", "t", "m", temperature=0.0)
    assert got is not None and got["response"] == "cold"


def test_two_caches_on_one_namespace_share_entries_and_counts(make: Make) -> None:
    first, second = make(), make()
    store(first, "shared")
    got = fetch(second, "shared")
    assert got is not None and got["response"] == "the answer"
    assert first.get_stats()["hits"] == 1 == second.get_stats()["hits"]


def test_culling_keeps_the_size_bound_and_the_newest_entry(cache: RedisResponseCache) -> None:
    small = RedisResponseCache(
        cache.target, cache_secret=SECRET, namespace="small", max_size_mb=10 / 1024, max_entry_kb=4
    )
    for i in range(12):
        assert store(small, f"t{i}", "x" * 3000)
        assert fetch(small, f"t{i}") is not None, "the entry just written is never evicted"
    stats = small.get_stats()
    assert stats["size_bytes"] <= stats["max_size_bytes"]
    assert stats["evictions"] == 12 - stats["entries"] > 0
    check_bookkeeping(raw(cache.target.display), "small")
    small.close()


def test_least_recently_used_goes_first(cache: RedisResponseCache) -> None:
    small = RedisResponseCache(
        cache.target, cache_secret=SECRET, namespace="lru", max_size_mb=10 / 1024, max_entry_kb=4
    )
    for name in ("a", "b", "c"):
        store(small, name, "x" * 3000)
    assert fetch(small, "a") is not None  # "a" is now younger than "b"
    store(small, "d", "x" * 3000)
    assert fetch(small, "b") is None
    assert fetch(small, "a") is not None and fetch(small, "d") is not None
    small.close()


def test_an_entry_over_max_entry_kb_is_skipped_and_counted(make: Make) -> None:
    cache = make(max_entry_kb=1)
    with pytest.warns(CacheSkipWarning, match="max_entry_kb=1"):
        assert not store(cache, "big", "x" * 2000)
    assert fetch(cache, "big") is None
    assert cache.get_stats()["oversized_skipped"] == 1


def test_excluded_agents_and_a_disabled_cache_store_nothing(make: Make) -> None:
    excluded = make(exclude_agents="python-expert")
    with pytest.warns(CacheSkipWarning, match="excluded"):
        assert not store(excluded, "t")
    assert fetch(excluded, "t") is None
    disabled = make(enabled=False)
    with pytest.warns(CacheSkipWarning, match="disabled"):
        assert not store(disabled, "t")
    assert fetch(disabled, "t") is None
    assert disabled.get_stats()["hits"] == 0 and disabled.entries() == []
    assert excluded.get_stats()["sets"] == 0


def test_signed_expiry_is_a_counted_miss(cache: RedisResponseCache, clock: FakeClock) -> None:
    store(cache, "t", ttl_hours=1)
    clock.advance(3601)
    assert fetch(cache, "t") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["hits"], stats["misses"], stats["entries"]) == (1, 0, 1, 0)
    check_bookkeeping(raw(cache.target.display))


def test_redis_ttl_expiry_is_accounted_for(cache: RedisResponseCache) -> None:
    """Redis deletes the value when its TTL passes; the next lookup, store or statistics
    settle the bookkeeping (size, LRU order) and count the expiration."""
    client = raw(cache.target.display)
    store(cache, "gone")
    store(cache, "kept")
    key = cache.key_for("python-expert", "gone", "m")
    client.delete(f"cfm:cache:e:{key}")  # what Redis does when the TTL passes
    assert fetch(cache, "gone") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["entries"]) == (1, 1)
    assert check_bookkeeping(client)["entries"] == 1


def test_stats_account_for_ttls_that_passed_unseen(cache: RedisResponseCache) -> None:
    client = raw(cache.target.display)
    for i in range(3):
        store(cache, f"t{i}")
    for key in client.zrange("cfm:cache:exp", 0, -1)[:2]:  # their time is up, as Redis sees it
        client.zadd("cfm:cache:exp", {key: 1})
        client.delete(b"cfm:cache:e:" + key)
    stats = cache.get_stats()
    assert (stats["entries"], stats["expirations"]) == (1, 2)
    check_bookkeeping(client)


def test_the_redis_ttl_matches_ttl_hours(cache: RedisResponseCache) -> None:
    store(cache, "t", ttl_hours=2)
    key = cache.key_for("python-expert", "t", "m")
    ttl = raw(cache.target.display).pttl(f"cfm:cache:e:{key}")
    assert 2 * 3_600_000 - 60_000 < ttl <= 2 * 3_600_000


def test_delete_clear_and_clear_by_agent(cache: RedisResponseCache) -> None:
    for i in range(5):
        store(cache, f"t{i}")
    cache.set("writer", "w", "m", "text", 1, 1, 0.0)
    assert cache.delete("python-expert", "t0", "m")
    assert not cache.delete("python-expert", "t0", "m")
    assert cache.clear("writer") == 1
    assert cache.clear() == 4
    stats = cache.get_stats()
    assert (stats["deletes"], stats["cleared"], stats["entries"], stats["size_bytes"]) == (
        1,
        5,
        0,
        0,
    )


def test_clear_works_in_pages_beyond_one_page(cache: RedisResponseCache) -> None:
    for i in range(450):
        store(cache, f"t{i}", "a")
    assert cache.clear() == 450
    assert cache.get_stats()["entries"] == 0


def test_entries_entry_search_and_delete_key(cache: RedisResponseCache, clock: FakeClock) -> None:
    store(cache, "first", "alpha answer", metadata={"preview": "first task", "origin": "library"})
    clock.advance(1)
    store(cache, "second", "beta answer")
    fetch(cache, "second")
    listed = cache.entries()
    assert [e["preview"] for e in listed] == ["first task", ""]
    assert listed[1]["hits"] == 1 and listed[0]["origin"] == "library"
    key = listed[1]["key"]
    shown = cache.entry(key[:10])
    assert shown is not None and shown["response"] == "beta answer" and shown["hits"] == 1
    assert [e["key"] for e in cache.search("ANSWER")] == [key, listed[0]["key"]]
    assert [e["preview"] for e in cache.search("first")] == ["first task"]
    assert cache.search("answer", agent="nobody") == []
    with pytest.raises(CacheError, match="not a cache key"):
        cache.entry("xyz")
    assert cache.delete_key(key[:8])
    assert cache.entry(key) is None
    assert cache.get_stats()["deletes"] == 1


def test_an_ambiguous_prefix_asks_for_more_digits(cache: RedisResponseCache) -> None:
    # Two keys sharing 8 hex digits are too rare to make by hashing: write their bookkeeping.
    client = raw(cache.target.display)
    client.hset(
        "cfm:cache:meta", mapping={"abcdef01" + "0" * 56: "1:1:a", "abcdef01" + "1" * 56: "2:1:a"}
    )
    with pytest.raises(CacheError, match="more than one"):
        cache.resolve_key("abcdef01")
    assert cache.resolve_key("abcdef011") == "abcdef01" + "1" * 56
    assert cache.resolve_key("12345678") is None


def test_namespaces_are_isolated(make: Make) -> None:
    team_a, team_b = make(namespace="team-a"), make(namespace="team-b")
    store(team_a, "t", "a's answer")
    assert fetch(team_b, "t") is None
    assert team_b.clear() == 0
    got = fetch(team_a, "t")
    assert got is not None and got["response"] == "a's answer"
    assert team_a.get_stats()["hits"] == 1 and team_b.get_stats()["hits"] == 0


def test_another_secret_is_refused_not_allowed_to_delete(make: Make) -> None:
    owner = make()
    store(owner, "t")
    with pytest.raises(SecretError, match="another cache secret") as info:
        make(cache_secret=OTHER_SECRET)
    assert OTHER_SECRET not in str(info.value) and SECRET not in str(info.value)
    assert fetch(owner, "t") is not None
    assert owner.get_stats()["integrity_failures"] == 0
    make(cache_secret=OTHER_SECRET, namespace="elsewhere")  # its own namespace is fine


def test_the_secret_never_reaches_redis(cache: RedisResponseCache) -> None:
    store(cache, "t", metadata={"k": "v"})
    fetch(cache, "t")
    cache.get_stats()
    client = raw(cache.target.display)
    readers = {b"string": client.get, b"hash": client.hgetall, b"zset": client.zrange}
    for name in client.scan_iter("*"):
        reader = readers[client.type(name)]
        blob = repr(reader(name, 0, -1) if reader == client.zrange else reader(name))
        assert SECRET not in blob and SECRET.encode().hex() not in blob


def test_bad_settings_are_refused_before_connecting() -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisResponseCache("redis://127.0.0.1:1/0", cache_secret=SECRET, namespace="a b")
    with pytest.raises(ConfigurationError, match="max_size_mb"):
        RedisResponseCache("redis://127.0.0.1:1/0", cache_secret=SECRET, max_size_mb=0.5)
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisResponseCache("http://127.0.0.1:1/0", cache_secret=SECRET)


def test_repr_and_pickle_never_show_the_password(redis_server: RedisServer) -> None:
    cache = RedisResponseCache(
        f"redis://:pw-secret-123@127.0.0.1:{redis_server.port}/0",
        cache_secret=SECRET,
        enabled=False,
    )
    assert "pw-secret-123" not in repr(cache) and "****" in repr(cache)
    assert "pw-secret-123" not in str(cache.get_stats())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(cache)


def test_wrong_arguments_raise_type_errors(cache: RedisResponseCache) -> None:
    with pytest.raises(TypeError, match="response"):
        cache.set("a", "t", "m", b"bytes", 1, 1, 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_tokens"):
        cache.set("a", "t", "m", "r", -1, 1, 0.0)
    with pytest.raises(TypeError, match="metadata"):
        cache.set("a", "t", "m", "r", 1, 1, 0.0, metadata={"x": object()})
    with pytest.raises(ConfigurationError, match="ttl_hours"):
        cache.set("a", "t", "m", "r", 1, 1, 0.0, ttl_hours=0)
    assert cache.get_stats()["sets"] == 0


def test_a_closed_cache_raises_a_cache_error(make: Make) -> None:
    cache = make()
    cache.close()
    cache.close()
    with pytest.raises(CacheError, match="closed"), warnings.catch_warnings():
        fetch(cache, "t")


def test_entry_reports_a_forged_entry(cache: RedisResponseCache) -> None:
    store(cache, "t")
    key = cache.key_for("python-expert", "t", "m")
    client = raw(cache.target.display)
    value = bytearray(client.get(f"cfm:cache:e:{key}") or b"")
    value[-1] ^= 1
    client.set(f"cfm:cache:e:{key}", bytes(value), keepttl=True)
    with pytest.raises(IntegrityError, match="deleted"):
        cache.entry(key)
    assert cache.get_stats()["integrity_failures"] == 1
    check_bookkeeping(client)


def _commands_sent(client: redis.Redis, action: Callable[[], object]) -> list[str]:
    """The top-level commands the server received while ``action`` ran (MONITOR; commands run
    inside scripts are marked "lua" and left out)."""
    seen: list[str] = []
    marker = redis.Redis(
        connection_pool=redis.ConnectionPool(**client.connection_pool.connection_kwargs)
    )
    marker.ping()  # connected before monitoring starts: it then sends only the ECHO
    with client.monitor() as monitor:
        action()
        marker.echo("end-of-action")
        while True:
            command = monitor.next_command()
            if command["client_type"] == "lua":
                continue
            if "end-of-action" in command["command"]:
                marker.close()
                return seen
            seen.append(command["command"].split()[0].upper())


def _reads(client: redis.Redis) -> int:
    """How many reads the server has made from client sockets (one per round trip of a
    client, plus one for this INFO)."""
    return int(client.info("stats")["total_reads_processed"])


def _round_trips(client: redis.Redis, action: Callable[[], object]) -> int:
    before = _reads(client)
    action()
    return _reads(client) - before - 1


HIT = ["GET", "ZADD", "HINCRBY", "HINCRBY"]


def test_a_hit_is_one_round_trip_of_native_commands(cache: RedisResponseCache) -> None:
    """The hot path runs no script: GET, ZADD XX and the two counters, pipelined."""
    store(cache, "t")
    client = raw(cache.target.display)
    assert _commands_sent(client, lambda: fetch(cache, "t")) == HIT
    assert _round_trips(client, lambda: fetch(cache, "t")) == 1
    assert _commands_sent(client, lambda: store(cache, "u")) == ["EVALSHA"]
    assert _round_trips(client, lambda: store(cache, "u")) == 1


def test_a_miss_is_a_second_round_trip_that_counts_it(cache: RedisResponseCache) -> None:
    store(cache, "t")
    client = raw(cache.target.display)
    assert _commands_sent(client, lambda: fetch(cache, "other")) == [*HIT, "EVALSHA"]
    assert _round_trips(client, lambda: fetch(cache, "other")) == 2
    assert fetch(cache, "t") is not None
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (1, 2)
    # the lookup's per-entry count of a key that has no entry is removed again
    assert client.hkeys("cfm:cache:hits") == [cache.key_for("python-expert", "t", "m").encode()]
    check_bookkeeping(client)


def test_export_writes_json_lines_privately(cache: RedisResponseCache, tmp_path: Path) -> None:
    store(cache, "t", "exported answer", metadata={"preview": "the task"})
    target = tmp_path / "out.jsonl"
    assert cache.export(target) == 1
    (line,) = target.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert (record["answer"], record["preview"], record["agent"]) == (
        "exported answer",
        "the task",
        "python-expert",
    )
    assert os.stat(target).st_mode & 0o777 == 0o600
    with pytest.raises(CacheError, match="exists"):
        cache.export(target)
    assert cache.export(target, force=True) == 1
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(CacheError, match="symbolic link"):
        cache.export(link, force=True)


def _small(cache: RedisResponseCache, namespace: str) -> RedisResponseCache:
    """Room for three 3,000-character answers, not four."""
    return RedisResponseCache(
        cache.target,
        cache_secret=SECRET,
        namespace=namespace,
        max_size_mb=10 / 1024,
        max_entry_kb=4,
    )


def test_culling_skips_the_new_entry_when_a_clock_ahead_made_it_oldest(
    cache: RedisResponseCache,
) -> None:
    """LRU scores are the members' clocks: entries touched by a member whose clock runs an
    hour ahead look younger than the one just written, which must still survive its store."""
    small = _small(cache, "skew")
    client = raw(cache.target.display)
    for name in ("a", "b", "c"):
        store(small, name, "x" * 3000)
    ahead = (time.time() + 3600) * 1e6
    client.zadd("skew:cache:lru", {m: ahead for m in client.zrange("skew:cache:lru", 0, -1)})
    store(small, "d", "x" * 3000)
    assert fetch(small, "d") is not None
    stats = small.get_stats()
    assert stats["evictions"] == 1 and stats["size_bytes"] <= stats["max_size_bytes"]
    check_bookkeeping(client, "skew")
    small.close()


def test_a_full_namespace_drops_expired_entries_before_live_ones(
    cache: RedisResponseCache,
) -> None:
    small = _small(cache, "reap")
    client = raw(cache.target.display)
    for name in ("a", "b", "c"):
        store(small, name, "x" * 3000)
    gone = small.key_for("python-expert", "a", "m")
    client.zadd("reap:cache:exp", {gone: 1})  # its time is up, as Redis sees it
    client.delete(f"reap:cache:e:{gone}")
    store(small, "d", "x" * 3000)
    stats = small.get_stats()
    assert (stats["expirations"], stats["evictions"], stats["entries"]) == (1, 0, 3)
    assert all(fetch(small, name) is not None for name in ("b", "c", "d"))
    check_bookkeeping(client, "reap")
    small.close()


def test_foreign_keys_of_the_wrong_type_are_a_cache_error(cache: RedisResponseCache) -> None:
    """An error reply inside the pipelined hit (or a script) is a CacheError, which the engine
    turns into a call to the API; every reply is read, so the connection stays usable."""
    store(cache, "t")
    client = raw(cache.target.display)
    client.delete("cfm:cache:lru")
    client.set("cfm:cache:lru", "not a sorted set")
    with pytest.raises(CacheError, match=r"WRONGTYPE.*another namespace"):
        fetch(cache, "t")
    with pytest.raises(CacheError, match="WRONGTYPE"):
        store(cache, "u")
    client.delete("cfm:cache:lru")
    assert fetch(cache, "t") is not None
