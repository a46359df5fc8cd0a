"""The signed, tamper-proof response cache (see ``docs/cache.md``).

``ResponseCache`` stores model answers in a private diskcache directory as HMAC-signed
envelopes; forged or damaged entries are misses, never code execution.
"""

from __future__ import annotations

from .disk import CacheWriteError
from .keys import key_for
from .store import CacheSkipWarning, ResponseCache
from .verify import VerifyReport

__all__ = ["CacheSkipWarning", "CacheWriteError", "ResponseCache", "VerifyReport", "key_for"]
