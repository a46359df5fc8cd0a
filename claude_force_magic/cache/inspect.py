"""Paged, filtered and sorted views of a :class:`~.store.ResponseCache`, and its health.

Drawing a table of a large cache must not open every answer. diskcache's own columns say
little (``tag`` is the agent, ``size`` the stored bytes, ``access_count`` the hits) and the
model, the dates and the cost are inside the signed body. So :class:`CacheView` keeps a small
*index* beside the entries, one row per entry (``CfmIndex``: agent, model, created, expires,
size, cost; no text), and filters, counts, sorts and pages in SQL on it, joined to
diskcache's ``Cache`` table for the live hit counts:

* The index is filled incrementally: each query first indexes the rows added since the last
  one (rowids above the highest indexed: a primary-key range, cheap), and only when entries
  were deleted or rewritten in place (the cache's own ``row_deletes`` and ``updates`` counters
  moved) does it drop and re-read what changed. A cache opened for the first time is indexed
  once (every entry is read and verified: seconds for 100,000 entries, see
  ``benchmarks/bench_inspect.py``).
* The index is a hint, never trusted: every entry on the page shown is read and its signature
  verified before it is displayed; an entry that fails is not shown, it is deleted and counted
  as an integrity failure and reported in :attr:`Page.failures`; an index row that disagrees
  with its signed entry is dropped and re-read.
* It lives in ``cache.db`` (so it follows the cache's transactions and counts, a little, toward
  its size: about 100 bytes per entry); on a read-only cache it is a temporary table of this
  connection, built again in each process.
* A text filter (task preview or answer) necessarily reads answers: the candidates (after the
  SQL filters, in the chosen order) are read a batch at a time and the scan stops as soon as
  the page is full, so memory stays bounded and :attr:`Page.total` is None ("at least") unless
  the scan reached the end.

:func:`health` summarises the cache (entries, size against the limit, hit rates over the last
hour and all time, money saved, integrity failures, evictions, oldest and newest entry, hits
and misses per minute). The per-minute record (``CfmActivity``) is written by the cache's
deferred count flush (:meth:`.backend.Backend.write_counts`).

Thread-safety: a view uses the calling thread's connection; one view per thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CacheError, IntegrityError
from .backend import INDEX_ROW, INDEX_SCHEMA, Backend, Row

if TYPE_CHECKING:
    from .store import AnyBackend, ResponseCache

__all__ = [
    "PAGE_SIZE",
    "SORTS",
    "CacheView",
    "Health",
    "Page",
    "Query",
    "extend_ttl",
    "health",
]


#: Rows per page of the inspector.
PAGE_SIZE = 100
#: Sort keys and the SQL that orders by them (``i`` is the index, ``c`` diskcache's rows).
SORTS: dict[str, str] = {
    "age": "i.created",  # ascending age = newest first: see Query.descending
    "hits": "c.access_count",
    "saved": "c.access_count * i.cost",
    "size": "i.size",
    "cost": "i.cost",
    "agent": "i.agent",
    "model": "i.model",
    "expires": "i.expires",
}
_NEEDS_HITS = frozenset({"hits", "saved"})
_BATCH = 200  # rows indexed, or answers read by a text filter, per statement
#: Rows above the last indexed rowid that the index does not hold yet (entries written by
#: this release were indexed by the write itself; this reads older ones, once).
_ROWS_AFTER = (
    "SELECT c.rowid, c.key, c.mode, c.filename, c.value, c.access_count, c.store_time"
    " FROM Cache c LEFT JOIN CfmIndex i ON i.id = c.rowid AND i.store_time = c.store_time"
    " WHERE c.rowid > ? AND c.raw = 1 AND i.id IS NULL ORDER BY c.rowid LIMIT ?"
)
_ROW_COLUMNS = "c.rowid, c.key, c.mode, c.filename, c.value, c.access_count, c.store_time"
_PRUNE = (
    "DELETE FROM CfmIndex WHERE NOT EXISTS (SELECT 1 FROM Cache c WHERE c.rowid = CfmIndex.id"
    " AND c.store_time = CfmIndex.store_time)"
)
_CHANGED = (
    "SELECT c.rowid FROM Cache c LEFT JOIN CfmIndex i ON i.id = c.rowid"
    " AND i.store_time = c.store_time WHERE i.id IS NULL AND c.raw = 1"
    " AND c.rowid > ? AND c.rowid <= ? ORDER BY c.rowid LIMIT ?"
)


@dataclass(frozen=True)
class Query:
    """What the inspector shows: filters, order and page.

    ``agent`` and ``model`` keep exact matches; ``newer_than_hours`` / ``older_than_hours``
    keep entries by age; ``text`` keeps entries whose task preview or answer contains it
    (case-insensitive; this one reads answers, see the module docstring). ``sort`` is one of
    :data:`SORTS`; ``descending`` puts the largest first (for ``age``: the oldest). ``page``
    counts from 0. Raises :class:`ValueError` naming the field for a bad value.
    """

    agent: str | None = None
    model: str | None = None
    newer_than_hours: float | None = None
    older_than_hours: float | None = None
    text: str | None = None
    sort: str = "age"
    descending: bool = False
    page: int = 0
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}.")
        for name in ("newer_than_hours", "older_than_hours"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a number of hours >= 0, not {value!r}.")
        for name in ("page", "page_size"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (name == "page_size")
            ):
                raise ValueError(
                    f"{name} must be an int >= {int(name == 'page_size')}, not {value!r}."
                )
        for name in ("agent", "model", "text"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a str, not {type(value).__name__}.")


@dataclass
class Page:
    """One page of entries (what :meth:`ResponseCache.entries` lists, plus ``saved_usd``).

    ``total`` is the number of matching entries, or None when a text filter stopped reading
    once the page was full (then at least ``matched`` match). ``answers_read`` counts the
    answers a text filter opened. ``failures`` lists ``(key prefix, reason)`` of entries that
    failed their signature check on the way: they were not shown, and were deleted.
    """

    rows: list[dict[str, Any]]
    number: int
    size: int
    total: int | None
    matched: int
    answers_read: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def pages(self) -> int | None:
        """How many pages the matching entries fill (None while the total is unknown)."""
        if self.total is None:
            return None
        return max(1, -(-self.total // self.size))

    @property
    def has_next(self) -> bool:
        """True when a later page may hold entries."""
        if self.total is None:
            return True
        return (self.number + 1) * self.size < self.total


@dataclass(frozen=True)
class Health:
    """The cache at a glance (see :func:`health`). Times are epoch seconds."""

    entries: int
    size_bytes: int
    max_size_bytes: int
    hits: int
    misses: int
    hit_rate: float | None
    hits_last_hour: int
    misses_last_hour: int
    hit_rate_last_hour: float | None
    saved_usd: float
    integrity_failures: int
    evictions: int
    expirations: int
    oldest: float | None
    newest: float | None
    read_only: bool
    #: ``(minute start, hits, misses)`` per minute of the last hour that saw lookups.
    activity: tuple[tuple[float, int, int], ...] = ()


class CacheView:
    """Pages of a cache's entries, filtered and sorted in SQL on a small index.

    ``cache`` must be enabled. Each :meth:`page` first brings the index up to date (see the
    module docstring), then runs one SQL query for the page and one for the count, reads and
    verifies the page's entries (``page_size`` of them) and returns them. Raises
    :class:`CacheError` when the cache is off, refused or its database damaged.
    """

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache
        self._ready: set[int] = set()  # ids of backends whose index tables exist
        self._found: list[tuple[str, str]] = []  # failures met while indexing, for page()

    # -- the index ---------------------------------------------------------------------------

    def _db(self) -> AnyBackend:
        db = self._cache._usable("")
        if db is None or self._cache._signer is None:
            raise CacheError("The response cache is off: there is nothing to inspect.")
        return db

    def _execute(self, db: AnyBackend, statement: str, args: Sequence[Any] = ()) -> None:
        """One write: in a transaction on a writable cache, on the temp table otherwise."""
        if db.read_only:
            db._read(statement, tuple(args))
            return
        assert isinstance(db, Backend)
        with db.transaction() as (sql, _cleanup):
            sql(statement, tuple(args))

    def _insert(self, db: AnyBackend, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if db.read_only:
            for row in rows:
                db._read(INDEX_ROW, row)
            return
        assert isinstance(db, Backend)
        with db.transaction() as (_sql, _cleanup):
            db._con.executemany(INDEX_ROW, rows)

    def _prepare(self, db: AnyBackend) -> None:
        if id(db) in self._ready:
            return
        temp, schema = ("TEMP", "temp.") if db.read_only else ("", "")
        for statement in INDEX_SCHEMA:
            self._execute(db, statement.format(temp=temp, schema=schema))
        self._ready.add(id(db))

    def sync(self) -> int:
        """Bring the index up to date; return how many entries were (re)indexed.

        Entries that fail their signature check on the way are deleted, counted as
        integrity failures and reported by the next :meth:`page`.
        """
        db = self._db()
        self._cache.flush()
        self._prepare(db)
        stats = db.read_stats()
        state = db._read("SELECT max_rowid, row_deletes, updates FROM CfmIndexState")
        max_rowid, deletes, updates = state[0] if state else (0, -1, -1)
        ((top,),) = db._read("SELECT COALESCE(MAX(rowid), 0) FROM Cache")
        indexed = 0
        changed = (stats["row_deletes"], stats["updates"]) != (deletes, updates) or top < max_rowid
        if state and changed:  # (a new index has nothing to prune or re-read)
            self._execute(db, _PRUNE)
            after = 0  # a batch at a time (memory stays bounded), no statement left open
            while batch := [r for (r,) in db._read(_CHANGED, (after, max_rowid, _BATCH))]:
                indexed += self._index_ids(db, batch)
                after = batch[-1]
        while True:
            rows: list[Row] = db._read(_ROWS_AFTER, (max_rowid, _BATCH))
            if not rows:
                break
            indexed += self._index_rows(db, rows)
            max_rowid = rows[-1][0]
        self._execute(
            db,
            "INSERT OR REPLACE INTO CfmIndexState VALUES (0, ?, ?, ?)",
            (max(max_rowid, top), stats["row_deletes"], stats["updates"]),
        )
        return indexed

    def _index_ids(self, db: AnyBackend, ids: list[int]) -> int:
        rows = self._fetch(db, [(rowid, 0.0) for rowid in ids])
        return self._index_rows(db, [rows[rowid] for rowid in ids if rowid in rows])

    def _index_rows(self, db: AnyBackend, rows: list[Row]) -> int:
        assert self._cache._signer is not None
        signer = self._cache._signer
        records, failed = [], []
        for row in rows:
            try:
                data = db.fetch_value(row)
                body = self._cache._check_row(signer, row, data)
            except IntegrityError:
                failed.append(row[1])
                continue
            records.append(
                (
                    row[0],
                    row[6],
                    str(body["agent_name"]),
                    str(body["model"]),
                    float(body["created_at"]),
                    float(body["expires_at"]),
                    len(data),
                    float(body["estimated_cost"]),
                )
            )
        self._insert(db, records)
        for key in failed:  # deleted and counted, as reading it would; reported by page()
            failure = self._report(key)
            if failure is not None:
                self._found.append(failure)
        return len(records)

    def _report(self, key: object) -> tuple[str, str] | None:
        """Let the cache check ``key`` (it deletes and counts a forged entry); the failure."""
        if not isinstance(key, str) or len(key) != 64:
            return None
        try:
            self._cache.entry(key)
        except (IntegrityError, CacheError) as exc:
            return (key[:12], str(exc))
        return None

    # -- queries -----------------------------------------------------------------------------

    def _where(self, query: Query, now: float) -> tuple[str, list[Any]]:
        clauses: list[str] = ["i.expires > ?"]
        args: list[Any] = [now]
        if query.agent is not None:
            clauses.append("i.agent = ?")
            args.append(query.agent)
        if query.model is not None:
            clauses.append("i.model = ?")
            args.append(query.model)
        if query.newer_than_hours is not None:
            clauses.append("i.created >= ?")
            args.append(now - query.newer_than_hours * 3600.0)
        if query.older_than_hours is not None:
            clauses.append("i.created <= ?")
            args.append(now - query.older_than_hours * 3600.0)
        return " AND ".join(clauses), args

    def _ordered(self, query: Query, now: float, columns: str) -> tuple[str, list[Any]]:
        where, args = self._where(query, now)
        join = (
            " JOIN Cache c ON c.rowid = i.id AND c.store_time = i.store_time"
            if query.sort in _NEEDS_HITS
            else ""
        )
        direction = "DESC" if query.descending else "ASC"
        if query.sort == "age":  # age grows as created shrinks
            direction = "ASC" if query.descending else "DESC"
        order = f"{SORTS[query.sort]} {direction}, i.id {direction}"
        return f"SELECT {columns} FROM CfmIndex i{join} WHERE {where} ORDER BY {order}", args  # noqa: S608

    def page(self, query: Query | None = None) -> Page:
        """The page of entries ``query`` asks for (default: the newest 100)."""
        query = query or Query()
        self.sync()
        page = self._page(query)
        page.failures[:0], self._found = self._found, []
        return page

    def _page(self, query: Query) -> Page:
        db = self._db()
        now = self._cache._clock()
        if query.text:
            return self._text_page(db, query, now)
        statement, args = self._ordered(query, now, "i.id, i.store_time")
        offset = query.page * query.page_size
        ids = db._read(statement + " LIMIT ? OFFSET ?", (*args, query.page_size, offset))
        rows, failures = self._verified(db, ids, query, now)  # drops what failed its check
        where, count_args = self._where(query, now)
        ((total,),) = db._read(f"SELECT COUNT(*) FROM CfmIndex i WHERE {where}", tuple(count_args))  # noqa: S608
        return Page(rows, query.page, query.page_size, int(total), int(total), 0, failures)

    def _fetch(self, db: AnyBackend, ids: Sequence[tuple[int, float]]) -> dict[int, Row]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = db._read(
            f"SELECT {_ROW_COLUMNS} FROM Cache c WHERE c.rowid IN ({marks})",  # noqa: S608
            tuple(rowid for rowid, _stored in ids),
        )
        return {row[0]: row for row in rows}

    def _open(
        self,
        db: AnyBackend,
        ids: Sequence[tuple[int, float]],
        now: float,
        failures: list[tuple[str, str]],
    ) -> Iterator[tuple[Row, int, dict[str, Any]]]:
        """The verified (row, size, body) of each id still stored as indexed, in order; each
        that failed its check (deleted, counted) adds ``(key prefix, reason)`` to ``failures``."""
        assert self._cache._signer is not None
        found = self._fetch(db, ids)
        for rowid, stored in ids:
            row = found.get(rowid)
            if row is None or row[6] != stored:
                continue  # deleted or rewritten since the index was read: not shown
            try:
                data = db.fetch_value(row)
                body = self._cache._check_row(self._cache._signer, row, data)
            except IntegrityError:
                self._execute(db, "DELETE FROM CfmIndex WHERE id = ?", (rowid,))
                failure = self._report(row[1])
                if failure is not None:
                    failures.append(failure)
                continue
            if body["expires_at"] > now:
                yield row, len(data), body

    def _verified(
        self, db: AnyBackend, ids: Sequence[tuple[int, float]], query: Query, now: float
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        rows: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        for row, size, body in self._open(db, ids, now, failures):
            if (query.agent or body["agent_name"]) != body["agent_name"] or (
                query.model or body["model"]
            ) != body["model"]:
                self._execute(db, "DELETE FROM CfmIndex WHERE id = ?", (row[0],))
                self._execute(db, "DELETE FROM CfmIndexState")  # a full re-read next time
                continue
            rows.append(_with_saved(self._cache._listing(row, size, body)))
        return rows, failures

    def _text_page(self, db: AnyBackend, query: Query, now: float) -> Page:
        assert query.text
        needle = query.text.casefold()
        statement, args = self._ordered(query, now, "i.id, i.store_time")
        skip, want = query.page * query.page_size, query.page_size
        rows: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        matched = read = 0
        cursor = db._query(statement, tuple(args))
        exhausted = False
        while len(rows) < want:
            batch = cursor.fetchmany(_BATCH)
            if not batch:
                exhausted = True
                break
            for row, size, body in self._open(db, batch, now, failures):
                read += 1
                preview = str(body["metadata"].get("preview") or "")
                if needle not in preview.casefold() and needle not in body["response"].casefold():
                    continue
                matched += 1
                if matched > skip and len(rows) < want:
                    rows.append(_with_saved(self._cache._listing(row, size, body)))
        cursor.close()
        total = matched if exhausted else None
        return Page(rows, query.page, query.page_size, total, matched, read, failures)

    # -- what the filters can offer ---------------------------------------------------------

    def choices(self) -> dict[str, list[str]]:
        """The agents and models that have entries (for the inspector's filter menus)."""
        db = self._db()
        self._prepare(db)
        agents = db._read("SELECT DISTINCT agent FROM CfmIndex ORDER BY agent")
        models = db._read("SELECT DISTINCT model FROM CfmIndex ORDER BY model")
        return {"agent": [a for (a,) in agents], "model": [m for (m,) in models]}

    def forget(self, key: str) -> None:
        """Drop ``key``'s index row (after the entry was deleted through the cache)."""
        db = self._db()
        self._prepare(db)
        self._execute(
            db, "DELETE FROM CfmIndex WHERE id IN (SELECT rowid FROM Cache WHERE key = ?)", (key,)
        )


def _with_saved(listing: dict[str, Any]) -> dict[str, Any]:
    listing["saved_usd"] = listing["hits"] * listing["estimated_cost"]
    return listing


# -- health --------------------------------------------------------------------------------


def health(cache: ResponseCache, view: CacheView | None = None) -> Health:
    """Entries, size against the limit, hit rates (last hour, all time), money saved by the
    entries stored now (hits x what each answer cost), integrity failures, evictions,
    expirations, oldest and newest entry, and hits and misses per minute over the last hour.

    Brings the index up to date first (see :class:`CacheView`). Raises :class:`CacheError`
    when the cache is off, refused or damaged.
    """
    view = view or CacheView(cache)
    view.sync()
    stats = cache.get_stats()
    db = view._db()
    now = cache._clock()
    ((saved, oldest, newest),) = db._read(
        "SELECT COALESCE(SUM(c.access_count * i.cost), 0), MIN(i.created), MAX(i.created)"
        " FROM CfmIndex i JOIN Cache c ON c.rowid = i.id AND c.store_time = i.store_time"
        " WHERE i.expires > ?",
        (now,),
    )
    activity = _activity(db, time.time())
    hits_hour = sum(h for _m, h, _x in activity)
    misses_hour = sum(x for _m, _h, x in activity)
    lookups = stats["hits"] + stats["misses"]
    return Health(
        entries=int(stats["entries"]),
        size_bytes=int(stats["size_bytes"]),
        max_size_bytes=int(stats["max_size_bytes"]),
        hits=int(stats["hits"]),
        misses=int(stats["misses"]),
        hit_rate=stats["hits"] / lookups if lookups else None,
        hits_last_hour=hits_hour,
        misses_last_hour=misses_hour,
        hit_rate_last_hour=(
            hits_hour / (hits_hour + misses_hour) if hits_hour + misses_hour else None
        ),
        saved_usd=float(saved),
        integrity_failures=int(stats["integrity_failures"]),
        evictions=int(stats["evictions"]),
        expirations=int(stats["expirations"]),
        oldest=None if oldest is None else float(oldest),
        newest=None if newest is None else float(newest),
        read_only=bool(stats["read_only"]),
        activity=activity,
    )


def _activity(db: AnyBackend, now: float) -> tuple[tuple[float, int, int], ...]:
    """``(minute start, hits, misses)`` of the last 60 minutes (lookups are recorded by the
    minute their batch was written; wall-clock time, like diskcache's access times)."""
    first = int(now // 60) - 59
    try:
        rows = db._read(
            "SELECT minute, hits, misses FROM CfmActivity WHERE minute >= ? ORDER BY minute",
            (first,),
        )
    except CacheError:  # a database written by a version without the record
        return ()
    return tuple((float(m) * 60.0, int(h), int(x)) for m, h, x in rows)


# -- extending an entry's life -------------------------------------------------------------


def extend_ttl(cache: ResponseCache, key: str, ttl_hours: float) -> float | None:
    """Give the entry under ``key`` (full key or unique prefix) a new expiry ``ttl_hours``
    from now, re-signed; return the new expiry (epoch seconds) or None when there is no such
    entry (or it expired). Its answer, creation time and hit count are kept.

    Atomic: the entry is rewritten only if it is still the version read. Raises
    :class:`IntegrityError` for an entry that fails its check (it is deleted and counted, as
    :meth:`ResponseCache.entry` does), :class:`ConfigurationError` for a bad ``ttl_hours``
    and :class:`CacheError` for a malformed key or a read-only or refused cache.
    """
    from .. import settings

    ttl = settings.check_ttl_hours("ttl_hours", ttl_hours)
    full = cache.resolve_key(key)
    db = cache._usable("extend entries")
    if full is None or not isinstance(db, Backend) or cache._signer is None:
        return None
    row = db.read_row(full)
    if row is None or cache.entry(full) is None:  # entry(): verified, expired removed
        return None
    body = cache._check_row(cache._signer, row, db.fetch_value(row))
    body["expires_at"] = cache._clock() + ttl * 3600.0
    blob = cache._signer.seal(full, body)
    size, mode, filename, value = db.disk.store(blob, False)
    with db.transaction(filename) as (sql, cleanup):
        current = Backend.select_key(sql, full)
        if current is None or current[0] != row[0] or current[6] != row[6]:
            cleanup(filename)
            return None
        sql(
            "UPDATE Cache SET size = ?, mode = ?, filename = ?, value = ? WHERE rowid = ?",
            (size, mode, filename, value, row[0]),
        )
        cleanup(current[3])
        if _has_index(sql):
            sql("UPDATE CfmIndex SET expires = ? WHERE id = ?", (body["expires_at"], row[0]))
    return float(body["expires_at"])


def _has_index(sql: Any) -> bool:
    found = sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'CfmIndex'")
    return found.fetchone() is not None
