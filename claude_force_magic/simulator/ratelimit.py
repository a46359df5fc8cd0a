"""Server-side rate limits, as the real service applies them.

Three token buckets refill continuously; each holds at most its per-minute limit:
requests per minute, input tokens per minute, output tokens per minute. A request is admitted
only if every configured bucket can pay for it (1 request, its input tokens, and its
``max_tokens`` as the output estimate); otherwise nothing is taken and the answer is a 429
with ``retry-after``. When the answer is known, the unused part of the output estimate is
given back, as the real API does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = ["Admission", "RateLimits", "TokenBucket"]


class TokenBucket:
    """A bucket of ``per_minute`` capacity refilled at ``per_minute / 60`` units per second."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: int, now: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a per-minute limit must be positive, got {per_minute}")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        """Add what accrued since the last call (never above capacity)."""
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 now; ``inf`` if it exceeds capacity)."""
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.level) / self.rate

    def until_full(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.level) / self.rate


@dataclass
class Admission:
    """The limiter's verdict on one request."""

    admitted: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int = 0
    message: str = ""


_NAMES = ("requests", "input-tokens", "output-tokens")
_UNITS = {"requests": "requests", "input-tokens": "input tokens", "output-tokens": "output tokens"}


def _rfc3339(epoch: float) -> str:
    # Whole seconds, rounded up: a reset time never claims the bucket is full before it is.
    return datetime.fromtimestamp(math.ceil(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RateLimits:
    """The configured buckets of one simulator (any of them may be off).

    Not thread-safe: the server uses it from its event loop only. ``clock`` is monotonic
    seconds and ``wallclock`` epoch seconds; both are injectable for tests.
    """

    def __init__(
        self,
        rpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wallclock = wallclock
        now = clock()
        limits = dict(zip(_NAMES, (rpm, input_tpm, output_tpm), strict=True))
        self.buckets: dict[str, TokenBucket] = {
            name: TokenBucket(limit, now) for name, limit in limits.items() if limit is not None
        }
        self.limits: dict[str, int | None] = limits

    @property
    def enabled(self) -> bool:
        """True if at least one limit is configured."""
        return bool(self.buckets)

    def _refill(self) -> float:
        now = self._clock()
        for bucket in self.buckets.values():
            bucket.refill(now)
        return now

    def _headers(self) -> dict[str, str]:
        wall = self._wallclock()
        headers: dict[str, str] = {}
        for name, bucket in self.buckets.items():
            prefix = "anthropic-ratelimit-" + name
            headers[prefix + "-limit"] = str(int(bucket.capacity))
            headers[prefix + "-remaining"] = str(max(0, int(bucket.level)))
            headers[prefix + "-reset"] = _rfc3339(wall + bucket.until_full())
        return headers

    def headers(self) -> dict[str, str]:
        """The ``anthropic-ratelimit-*`` headers for the current state."""
        self._refill()
        return self._headers()

    def admit(self, input_tokens: int, max_tokens: int) -> Admission:
        """Take 1 request, the input tokens and ``max_tokens`` if all fit; else refuse."""
        if not self.buckets:
            return Admission(True)
        self._refill()
        costs = {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
        waits = {name: b.wait_for(costs[name]) for name, b in self.buckets.items()}
        worst = max(waits, key=waits.__getitem__)
        if waits[worst] > 0:
            wait = waits[worst]
            limit = int(self.buckets[worst].capacity)
            if math.isinf(wait):
                retry = 60
                message = (
                    f"This request needs {costs[worst]} {_UNITS[worst]}, more than your rate "
                    f"limit of {limit} {_UNITS[worst]} per minute allows."
                )
            else:
                retry = max(1, math.ceil(wait))
                message = (
                    f"This request would exceed your rate limit of {limit} {_UNITS[worst]} "
                    f"per minute. Please retry after {retry} seconds."
                )
            return Admission(False, self._headers(), retry, message)
        for name, bucket in self.buckets.items():
            bucket.level -= costs[name]
        return Admission(True, self._headers())

    def refund_output(self, unused: int) -> None:
        """Give back output tokens charged at admission but not generated."""
        bucket = self.buckets.get("output-tokens")
        if bucket is not None and unused > 0:
            self._refill()
            bucket.level = min(bucket.capacity, bucket.level + unused)
