"""The signed, tamper-proof response cache (see ``docs/cache.md``).

``ResponseCache`` stores model answers in a private diskcache directory as HMAC-signed
envelopes; forged or damaged entries are misses, never code execution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .disk import CacheWriteError
from .keys import key_for
from .store import CacheSkipWarning, ResponseCache
from .verify import VerifyReport

__all__ = [
    "CacheSkipWarning",
    "CacheWriteError",
    "RedisResponseCache",
    "ResponseCache",
    "VerifyReport",
    "key_for",
]

if TYPE_CHECKING:
    from .redis import RedisResponseCache as RedisResponseCache


def __getattr__(name: str) -> Any:
    # RedisResponseCache imports redis-py: only when it is asked for.
    if name == "RedisResponseCache":
        from .redis import RedisResponseCache

        return RedisResponseCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
