"""Someone with write access to the Redis server edits it: every edit is a counted miss.

The disk cache's tamper attacks, translated: flip a byte, swap values between keys, edit the
stored expiry, replay an old value, plant a value; and two that only a shared server has: a
value copied from another namespace, and a key planted by someone without the secret.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
import redis
from redis_server import RedisServer

from claude_force_magic.cache import RedisResponseCache

from .conftest import FakeClock
from .redis_helpers import SECRET, check_bookkeeping, entry_key, fetch, raw, store

pytestmark = pytest.mark.redis


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def cache(
    redis_server: RedisServer, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[RedisResponseCache]:
    """Every attack runs on a plain and on an encrypted cache."""
    cache = RedisResponseCache(
        redis_server.url, cache_secret=SECRET, clock=clock, encrypt=request.param
    )
    yield cache
    cache.close()


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return raw(redis_server.url)


def name(cache: RedisResponseCache, task: str) -> str:
    return entry_key(cache, cache.key_for("python-expert", task, "m"))


def assert_counted_miss(
    cache: RedisResponseCache, client: redis.Redis, task: str, failures: int = 1
) -> None:
    assert fetch(cache, task) is None
    stats = cache.get_stats()
    assert stats["integrity_failures"] == failures
    assert stats["hits"] == 0, "a forged value must not count as a hit"
    assert client.exists(name(cache, task)) == 0, "the failed value must be deleted"
    check_bookkeeping(client)


@pytest.mark.parametrize("position", [0, 4, 5, 20, 40, -1])
def test_flipped_byte(cache: RedisResponseCache, client: redis.Redis, position: int) -> None:
    store(cache, "t")
    value = bytearray(client.get(name(cache, "t")) or b"")
    value[position] ^= 0x01
    client.set(name(cache, "t"), bytes(value), keepttl=True)
    assert_counted_miss(cache, client, "t")


def test_values_swapped_between_keys(cache: RedisResponseCache, client: redis.Redis) -> None:
    store(cache, "a", "answer A")
    store(cache, "b", "answer B")
    value_a, value_b = client.get(name(cache, "a")), client.get(name(cache, "b"))
    client.set(name(cache, "a"), value_b or b"", keepttl=True)
    client.set(name(cache, "b"), value_a or b"", keepttl=True)
    assert fetch(cache, "a") is None and fetch(cache, "b") is None
    stats = cache.get_stats()
    assert (stats["integrity_failures"], stats["hits"], stats["misses"]) == (2, 0, 2)
    check_bookkeeping(client)


def test_removing_the_redis_ttl_does_not_extend_life(
    cache: RedisResponseCache, client: redis.Redis, clock: FakeClock
) -> None:
    store(cache, "t", ttl_hours=1)
    client.persist(name(cache, "t"))  # the stored expiry edited: now it never expires
    client.zadd("cfm:cache:exp", {cache.key_for("python-expert", "t", "m"): 2**50})
    clock.advance(3601)
    assert fetch(cache, "t") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["hits"], stats["entries"]) == (1, 0, 0)
    check_bookkeeping(client)


def test_shortening_the_redis_ttl_only_loses_the_entry(
    cache: RedisResponseCache, client: redis.Redis
) -> None:
    store(cache, "t")
    client.pexpire(name(cache, "t"), 1)
    while client.exists(name(cache, "t")):
        pass  # Redis deletes it within milliseconds
    assert fetch(cache, "t") is None
    assert cache.get_stats()["expirations"] == 1


def test_edited_expiry_inside_the_body_without_resigning(
    redis_server: RedisServer, client: redis.Redis, clock: FakeClock
) -> None:
    cache = RedisResponseCache(redis_server.url, cache_secret=SECRET, clock=clock)  # readable
    store(cache, "t", ttl_hours=1)
    value = client.get(name(cache, "t")) or b""
    expiry = clock.now + 3600
    # Find the signed expiry wherever the envelope keeps it: a big-endian double (version 2)
    # or JSON text (version 1); push it a long way into the future.
    packed, text = struct.pack(">d", expiry), str(expiry).encode()
    old, new = (packed, struct.pack(">d", expiry + 10**8)) if packed in value else (text, None)
    assert old in value, "the expiry should be findable in a plain envelope"
    new = new or str(expiry + 10**7).encode()[: len(text)].ljust(len(text), b"0")
    forged = value.replace(old, new)
    assert forged != value
    client.set(name(cache, "t"), forged, keepttl=True)
    clock.advance(3601)
    assert_counted_miss(cache, client, "t")


def test_replayed_old_value_past_its_signed_expiry(
    cache: RedisResponseCache, client: redis.Redis, clock: FakeClock
) -> None:
    store(cache, "t", "old answer", ttl_hours=1)
    old = client.get(name(cache, "t")) or b""
    clock.advance(7200)
    store(cache, "t", "new answer", ttl_hours=1)
    client.set(name(cache, "t"), old, keepttl=True)  # replay the answer that expired
    assert fetch(cache, "t") is None
    stats = cache.get_stats()
    assert (stats["expirations"], stats["hits"], stats["entries"]) == (1, 0, 0)
    check_bookkeeping(client)


def test_value_copied_from_another_namespace(
    cache: RedisResponseCache, client: redis.Redis, redis_server: RedisServer, clock: FakeClock
) -> None:
    other = RedisResponseCache(
        redis_server.url, cache_secret=SECRET, namespace="other", clock=clock
    )
    store(other, "t", "their answer")
    store(cache, "t", "our answer")
    key = cache.key_for("python-expert", "t", "m")
    client.set(name(cache, "t"), client.get(f"other:cache:e:{key}") or b"", keepttl=True)
    assert_counted_miss(cache, client, "t")
    got = fetch(other, "t")
    assert got is not None and got["response"] == "their answer"
    other.close()


def test_value_planted_without_bookkeeping(cache: RedisResponseCache, client: redis.Redis) -> None:
    client.set(name(cache, "t"), b"CFMC\x01" + b"\0" * 60 + b"planted")
    assert fetch(cache, "t") is None
    assert client.exists(name(cache, "t")) == 0
    stats = cache.get_stats()
    assert (stats["integrity_failures"], stats["hits"], stats["misses"]) == (1, 0, 1)


@pytest.mark.parametrize(
    "planted", [b"", b"garbage", b"\x80\x04\x95 pickle", b"CFMC\x02" + b"x" * 64]
)
def test_odd_values_are_misses(
    cache: RedisResponseCache, client: redis.Redis, planted: bytes
) -> None:
    store(cache, "t")
    client.set(name(cache, "t"), planted, keepttl=True)
    assert_counted_miss(cache, client, "t")


def test_verify_removes_only_the_broken_entries(
    cache: RedisResponseCache, client: redis.Redis, clock: FakeClock
) -> None:
    for task in ("good", "flip", "expired"):
        store(cache, task, ttl_hours=1 if task == "expired" else 24)
    value = bytearray(client.get(name(cache, "flip")) or b"")
    value[-1] ^= 1
    client.set(name(cache, "flip"), bytes(value), keepttl=True)
    client.set(name(cache, "planted"), b"forged")
    clock.advance(3601)
    report = cache.verify()
    assert (report.checked, report.valid, report.expired, len(report.invalid)) == (4, 1, 1, 2)
    assert report.removed == 3 and not report.ok
    assert fetch(cache, "good") is not None
    stats = cache.get_stats()
    assert (stats["integrity_failures"], stats["expirations"], stats["entries"]) == (2, 1, 1)
    check_bookkeeping(client)


def test_listings_skip_forged_entries(cache: RedisResponseCache, client: redis.Redis) -> None:
    store(cache, "good", "findable")
    store(cache, "bad", "findable too")
    value = bytearray(client.get(name(cache, "bad")) or b"")
    value[-1] ^= 1
    client.set(name(cache, "bad"), bytes(value), keepttl=True)
    assert [e["key"] for e in cache.entries()] == [cache.key_for("python-expert", "good", "m")]
    assert len(cache.search("findable")) == 1


def test_edited_bookkeeping_never_serves_a_forgery(
    cache: RedisResponseCache, client: redis.Redis
) -> None:
    """The counters and sizes are not protected (anyone who can write Redis can delete it
    all); what matters is that no edit makes a forged answer come back."""
    store(cache, "t")
    client.hset("cfm:cache:stats", mapping={"bytes": -(10**9), "hits": 10**6})
    key = cache.key_for("python-expert", "t", "m")
    client.hset("cfm:cache:meta", key, "1:5:someone-else")
    value = bytearray(client.get(name(cache, "t")) or b"")
    value[-1] ^= 1
    client.set(name(cache, "t"), bytes(value), keepttl=True)
    assert fetch(cache, "t") is None
    assert cache.get_stats()["integrity_failures"] == 1
