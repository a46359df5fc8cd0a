"""Hits, misses and access times gathered in memory, so that a ``get`` never writes.

A hit used to be a SQLite write (its least-recently-used time, its hit count, the ``hits``
counter) and so was a miss (the ``misses`` counter). :class:`PendingCounts` collects them in
this process instead; :class:`~.store.ResponseCache` writes one batch in one transaction when
the batch is due (``interval`` seconds after the previous write or ``max_ops`` lookups,
whichever comes first), at ``close()``, at interpreter exit, and before it reads statistics or
entries. Counts are added, never overwritten, so the shared totals are exact once every
process has written its batch.

Thread-safe: one lock guards the batch; taking it swaps in an empty one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Batch", "PendingCounts"]


@dataclass
class Batch:
    """What one write adds: ``reads`` lists every hit as (rowid, store_time, access time) in
    the order they were counted (a list append is the cheapest record of a hit; rows are
    summed up only when the batch is written), and ``misses`` counts the misses."""

    reads: list[tuple[int, float, float]] = field(default_factory=list)
    misses: int = 0

    @property
    def hits(self) -> int:
        """How many hits the batch holds."""
        return len(self.reads)

    def __bool__(self) -> bool:
        return bool(self.reads or self.misses)

    def touch_rows(self) -> list[tuple[float, int, int, float]]:
        """``(access_time, hits, rowid, store_time)`` per row, in rowid order (for SQL): the
        last access counted and the hits on the row version read last (a row rewritten
        meanwhile starts again from its new version's hits)."""
        touched: dict[int, tuple[float, float, int]] = {}
        for rowid, stored, accessed in self.reads:
            old = touched.get(rowid)
            count = old[2] + 1 if old is not None and old[0] == stored else 1
            touched[rowid] = (stored, accessed, count)
        return [
            (accessed, count, rowid, stored)
            for rowid, (stored, accessed, count) in sorted(touched.items())
        ]


class PendingCounts:
    """The lookups of this process not yet written to the shared database.

    ``hit`` and ``miss`` return True when the batch is due: ``interval`` seconds have passed
    since the last :meth:`take` (on ``monotonic``), or ``max_ops`` lookups were gathered.
    """

    def __init__(
        self,
        *,
        interval: float = 1.0,
        max_ops: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_ops = max_ops
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._batch = Batch()
        self._ops = 0
        self._due = monotonic() + interval

    def hit(self, rowid: int, store_time: float) -> bool:
        """Count a hit on the row ``rowid`` (as stored at ``store_time``): LRU time and count."""
        accessed = time.time()  # access times are wall-clock, like diskcache's own
        with self._lock:
            self._batch.reads.append((rowid, store_time, accessed))
            self._ops += 1
            return self._ops >= self.max_ops or self._monotonic() >= self._due

    def miss(self) -> bool:
        """Count a miss."""
        with self._lock:
            self._batch.misses += 1
            self._ops += 1
            return self._ops >= self.max_ops or self._monotonic() >= self._due

    @property
    def empty(self) -> bool:
        """True when no lookup is waiting to be written."""
        return not self._ops

    def reset(self) -> None:
        """Forget the batch without taking the lock (in a forked child, where another thread
        of the parent may have held it at the fork)."""
        self._lock = threading.Lock()
        self._batch = Batch()
        self._ops = 0
        self._due = self._monotonic() + self.interval

    def take(self) -> Batch:
        """Return the gathered batch (possibly empty) and start a new one."""
        with self._lock:
            batch, self._batch = self._batch, Batch()
            self._ops = 0
            self._due = self._monotonic() + self.interval
        return batch
