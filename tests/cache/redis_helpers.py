"""Helpers for the RedisResponseCache tests: building caches and checking Redis's bookkeeping."""

from __future__ import annotations

from typing import Any

import redis

from claude_force_magic.cache.redis import RedisResponseCache

SECRET = "test-secret-0123456789abcdef-XYZ"
OTHER_SECRET = "another-secret-0123456789abcdef-Q"


def raw(url: str) -> redis.Redis:
    """A plain redis-py client: what an attacker with access to the server would use."""
    return redis.Redis.from_url(url)


def entry_key(cache: RedisResponseCache, key: str) -> str:
    return f"{cache.namespace}:cache:e:{key}"


def store(cache: RedisResponseCache, task: str, answer: str = "the answer", **kw: Any) -> bool:
    return cache.set("python-expert", task, "m", answer, 10, 20, 0.001, **kw)


def fetch(cache: RedisResponseCache, task: str) -> dict[str, Any] | None:
    return cache.get("python-expert", task, "m")


def check_bookkeeping(client: redis.Redis, namespace: str = "cfm") -> dict[str, int]:
    """Assert that the namespace's bookkeeping is consistent; return entries and bytes.

    Every entry in ``meta`` is in both sorted sets and has its value; the byte total is the
    sum of the recorded sizes, and each recorded size is the value's length.
    """
    p = f"{namespace}:cache:"
    metas = {k.decode(): v.decode() for k, v in client.hgetall(p + "meta").items()}
    lru = {m.decode() for m in client.zrange(p + "lru", 0, -1)}
    exp = {m.decode() for m in client.zrange(p + "exp", 0, -1)}
    assert set(metas) == lru == exp, "meta, lru and exp must list the same keys"
    total = 0
    for key, meta in metas.items():
        size = int(meta.split(":")[1])
        value = client.get(p + "e:" + key)
        assert value is not None, f"entry {key[:12]} has bookkeeping but no value"
        assert len(value) == size
        total += size
    recorded = int(client.hget(p + "stats", "bytes") or 0)
    assert recorded == total, f"stats bytes {recorded} != sum of sizes {total}"
    return {"entries": len(metas), "bytes": total}
