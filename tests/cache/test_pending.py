"""The in-memory batch of lookups (cache/pending.py): what one flush writes."""

from __future__ import annotations

from claude_force_magic.cache.pending import PendingCounts


def test_a_batch_sums_hits_per_row_version_and_keeps_the_last_access() -> None:
    pending = PendingCounts(interval=3600.0, max_ops=1000)
    for rowid, stored in [(7, 1.0), (3, 5.0), (7, 1.0), (7, 1.0), (3, 6.0), (9, 2.0)]:
        assert not pending.hit(rowid, stored)
    assert not pending.miss()
    batch = pending.take()
    assert (batch.hits, batch.misses) == (6, 1) and batch
    rows = batch.touch_rows()
    assert [(rowid, hits, stored) for _accessed, hits, rowid, stored in rows] == [
        (3, 1, 6.0),  # rewritten between its two hits: only the new version's hit counts
        (7, 3, 1.0),
        (9, 1, 2.0),
    ]
    accessed = [row[0] for row in rows]
    assert all(isinstance(t, float) and t > 1e9 for t in accessed)  # wall-clock times
    empty = pending.take()
    assert (empty.hits, empty.misses, bool(empty), empty.touch_rows()) == (0, 0, False, [])


def test_a_batch_is_due_after_max_ops_lookups() -> None:
    pending = PendingCounts(interval=3600.0, max_ops=3)
    assert not pending.hit(1, 1.0)
    assert not pending.miss()
    assert pending.hit(1, 1.0)  # the third lookup
    assert pending.take().hits == 2
    assert pending.empty


def test_a_batch_is_due_after_interval_seconds() -> None:
    now = [0.0]
    pending = PendingCounts(interval=1.0, max_ops=1000, monotonic=lambda: now[0])
    assert not pending.miss()
    now[0] = 1.0
    assert pending.hit(1, 1.0)
