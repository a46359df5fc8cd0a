"""Encryption at rest in Redis: a dump of the server reveals no answer text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis_server import RedisServer

from claude_force_magic.cache import RedisResponseCache

from .conftest import FakeClock
from .redis_helpers import SECRET, check_bookkeeping, entry_key, fetch, raw, store

pytestmark = pytest.mark.redis

ANSWER = "The launch code is PLUGH-XYZZY-42, keep it private."


def everything_in(client: redis.Redis) -> bytes:
    """Every byte stored on the server, as an attacker reading a dump would see it."""
    parts: list[bytes] = []
    for name in client.scan_iter("*"):
        kind = client.type(name)
        if kind == b"string":
            parts.append(client.get(name) or b"")
        elif kind == b"hash":
            parts.extend(b"%s=%s" % kv for kv in client.hgetall(name).items())
        elif kind == b"zset":
            parts.extend(client.zrange(name, 0, -1))
        parts.append(name)
    return b"\n".join(parts)


@pytest.fixture
def encrypted(redis_server: RedisServer, clock: FakeClock) -> Iterator[RedisResponseCache]:
    cache = RedisResponseCache(redis_server.url, cache_secret=SECRET, encrypt=True, clock=clock)
    yield cache
    cache.close()


def test_a_dump_reveals_no_answer_text(
    encrypted: RedisResponseCache, redis_server: RedisServer
) -> None:
    assert store(encrypted, "secret plans", ANSWER, metadata={"stop_reason": "end_turn"})
    got = fetch(encrypted, "secret plans")
    assert got is not None and got["response"] == ANSWER
    dump = everything_in(raw(redis_server.url))
    assert b"PLUGH" not in dump and ANSWER.encode() not in dump
    assert b"end_turn" not in dump, "the signed header (metadata) is encrypted too"
    assert b"python-expert" in dump, "agent names are bookkeeping: documented as not hidden"
    assert encrypted.get_stats()["encrypt"] is True


def test_without_encryption_the_answer_is_in_the_dump(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    """The control for the test above: it would have caught a cache that stores clear text."""
    with RedisResponseCache(redis_server.url, cache_secret=SECRET, clock=clock) as plain:
        store(plain, "secret plans", ANSWER)
    assert b"PLUGH" in everything_in(raw(redis_server.url))


def test_encrypted_entries_are_authenticated(
    encrypted: RedisResponseCache, redis_server: RedisServer
) -> None:
    client = raw(redis_server.url)
    store(encrypted, "t", ANSWER)
    name = entry_key(encrypted, encrypted.key_for("python-expert", "t", "m"))
    value = bytearray(client.get(name) or b"")
    value[-20] ^= 0x01  # inside the ciphertext
    client.set(name, bytes(value), keepttl=True)
    assert fetch(encrypted, "t") is None
    stats = encrypted.get_stats()
    assert (stats["integrity_failures"], stats["hits"]) == (1, 0)
    check_bookkeeping(client)


def test_an_encrypting_cache_refuses_entries_stored_in_clear(
    encrypted: RedisResponseCache, redis_server: RedisServer, clock: FakeClock
) -> None:
    with RedisResponseCache(redis_server.url, cache_secret=SECRET, clock=clock) as plain:
        store(plain, "old", ANSWER)
        assert fetch(encrypted, "old") is None
        assert encrypted.get_stats()["integrity_failures"] == 1
        store(encrypted, "new", ANSWER)
        got = fetch(plain, "new")  # a kernel without encrypt still reads encrypted entries
        assert got is not None and got["response"] == ANSWER


def test_verify_removes_clear_entries_from_an_encrypted_namespace(
    encrypted: RedisResponseCache, redis_server: RedisServer, clock: FakeClock
) -> None:
    with RedisResponseCache(redis_server.url, cache_secret=SECRET, clock=clock) as plain:
        store(plain, "clear", ANSWER)
    store(encrypted, "sealed", ANSWER)
    report = encrypted.verify()
    assert (report.valid, len(report.invalid)) == (1, 1)
    assert "unencrypted" in report.invalid[0][1]
    assert b"PLUGH" not in everything_in(raw(redis_server.url))


def test_encrypt_follows_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CACHE_ENCRYPT", "1")
    with RedisResponseCache(redis_server.url, cache_secret=SECRET) as cache:
        assert cache.encrypt and "encrypt=True" in repr(cache)
        store(cache, "t", ANSWER)
    assert b"PLUGH" not in everything_in(raw(redis_server.url))
