"""Entries this process has verified, so that a repeated hit skips the signature check and parse.

An entry is remembered under its cache key *with the version of the row it was read from*:
the row's ``rowid``, its ``store_time`` and a stamp of its stored bytes (the last 16 bytes of
an inline value: a version-2 envelope's tag, which changes with every seal because each seal
draws a new random nonce; for a value kept in its own file, the file's random name, new for
every write). Every lookup still reads the row (one SQLite read, as before); the remembered
entry is used only when the row is still that version, else the stored bytes are verified and
parsed as usual. Why this never serves a forged, edited or expired answer:

* only entries that passed :meth:`Signer.open_fields` in this process are remembered, so
  whatever the memo returns was verified; an attacker who edits the stored bytes cannot
  change it, and a caller cannot change it either: an entry is kept as immutable
  :data:`~.signing.Fields` (its metadata as JSON text, parsed anew for every lookup);
* a new answer stored under the key (by any process) rewrites the row with a new
  ``store_time`` (the writer's clock, taken when it stores), a deleted row is gone, a row
  inserted again has a new ``store_time`` too (SQLite may reuse the ``rowid``), and an entry
  re-sealed in place (a new expiry written without a new ``store_time``) has a new stamp:
  each makes the lookup read and verify the new bytes;
* forging a row that keeps the old version (``rowid``, ``store_time`` and stamp) only makes
  the lookup serve the answer verified earlier for that same key, never the forged bytes
  (``verify()`` still reads, finds and deletes them);
* expiry is checked on every hit from ``expires_at`` inside the remembered (signed) fields.

Bounded: at most ``max_entries`` entries and about ``max_bytes`` of memory (each counted as its
stored size plus :data:`ENTRY_OVERHEAD`; oldest remembered first out); entries larger than an
eighth of ``max_bytes`` are not remembered.
Thread-safe: lookups are single dict reads; inserts and evictions take a lock.
"""

from __future__ import annotations

import threading
from typing import Any

from .signing import Fields

__all__ = ["VerifiedMemo", "stamp"]

#: A row as a lookup reads it: (rowid, mode, filename, value, store_time) (backend.Found).
Found = tuple[Any, ...]
#: (rowid, store_time, stamp, verified fields, bytes counted for it): one tuple per entry,
#: holding only immutable values (so the garbage collector stops tracking it).
_Item = tuple[Any, Any, Any, Fields, int]
#: What one remembered entry costs beyond its stored size: its tuples, floats, ints and short
#: strings and its slot in the dict (measured with tracemalloc: well under 1 KB).
ENTRY_OVERHEAD = 1024


def stamp(found: Found) -> Any:
    """The stamp of a row's stored bytes: an inline value's last 16 bytes, else its file name."""
    value = found[3]
    return value[-16:] if type(value) is bytes else found[2]


class VerifiedMemo:
    """Verified entries by cache key, each valid only for one version of its row."""

    def __init__(self, *, max_bytes: int = 8 * 2**20, max_entries: int = 4096) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items: dict[str, _Item] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        """About the memory the remembered entries hold (at most ``max_bytes``)."""
        return self._bytes

    def get(self, key: str, found: Found) -> Fields | None:
        """The fields verified for ``key`` when its row was the version ``found`` is (a row as
        a lookup reads it: rowid, mode, filename, value, store_time), or None when nothing
        is remembered for that exact version."""
        item = self._items.get(key)
        if item is None or item[0] != found[0] or item[1] != found[4] or item[2] != stamp(found):
            return None
        return item[3]

    def put(self, key: str, found: Found, fields: Fields, size: int) -> None:
        """Remember ``fields``, verified from the row version ``found`` whose stored bytes
        were ``size`` long."""
        size += ENTRY_OVERHEAD
        if size > self.max_bytes // 8:
            return
        item = (found[0], found[4], stamp(found), fields, size)
        with self._lock:
            old = self._items.pop(key, None)
            self._items[key] = item
            self._bytes += size if old is None else size - old[4]
            if self._bytes > self.max_bytes or len(self._items) > self.max_entries:
                self._evict()

    def _evict(self) -> None:
        """Forget the oldest remembered entries until within both bounds (lock held)."""
        while self._bytes > self.max_bytes or len(self._items) > self.max_entries:
            oldest = next(iter(self._items))
            self._bytes -= self._items.pop(oldest)[4]

    def forget(self, key: str) -> None:
        """Drop what is remembered for ``key``."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[4]

    def clear(self) -> None:
        """Forget everything (the database was reopened: its rows are other rows)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
