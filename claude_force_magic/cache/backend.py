"""The SQLite side of the response cache: a ``diskcache.Cache`` with fixed settings and
exact, process-safe counters.

* Every diskcache setting is passed explicitly and re-imposed whenever diskcache re-reads its
  ``Settings`` table (a new thread's connection does), so an edited table cannot change
  pragmas, the eviction policy or the Disk; unknown settings are ignored.
* Counters live in a one-row table ``CfmStats`` in the same database and are updated by the
  same SQLite transaction as the change they count, so they stay exact across threads and
  processes and survive a crash consistently. Triggers count rewrites of existing rows and
  every row deletion, without an extra statement per call. Hits and misses are the exception:
  a lookup writes nothing; each process gathers them in memory (:mod:`.pending`) and adds them
  with :meth:`Backend.write_counts`, one transaction per batch, so the totals are exact once
  every process has written its batch.
  Two totals follow from invariants instead of a write per call:
  ``sets = entries + row_deletes + updates`` (every row ever inserted is either still there
  or was deleted; diskcache's own triggers keep ``entries`` exact), and evictions by
  diskcache's size culling are the deletions the cache did not make itself:
  ``evictions = row_deletes - deletes - expirations - integrity_failures - cleared``.
* The per-entry hit count is diskcache's ``access_count`` column (unused by the
  least-recently-used policy), raised by the same batched statement that moves
  ``access_time`` forward (only for the version of the row that was read: a row rewritten
  since keeps its fresh count).

Thread- and process-safe: each thread uses its own SQLite connection; writes run in
``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import diskcache
from diskcache.core import DEFAULT_SETTINGS, ENOVAL, METADATA

from ..errors import CacheError, UnsafePathError
from ..guard.logs import get_logger
from .disk import CacheWriteError, SafeDisk
from .pending import Batch

__all__ = ["COUNTERS", "Backend", "CacheWriteError", "Found", "ReadOnlyBackend", "Row"]

log = get_logger("claude_force_magic.cache")  # with the secret redactor (SEC-005)

#: Counters kept in ``CfmStats``; ``hits``, ``updates`` and ``row_deletes`` are kept by triggers.
COUNTERS = (
    "hits",
    "misses",
    "updates",
    "deletes",
    "expirations",
    "integrity_failures",
    "oversized_skipped",
    "cleared",
    "row_deletes",
)
_COUNTER_SET = frozenset(COUNTERS)

#: (rowid, key, mode, filename, value, access_count, store_time)
Row = tuple[int, str, int, Any, Any, int, float]
#: What a lookup reads of a row: (rowid, mode, filename, value, store_time): the caller knows
#: the key, and a hit needs no hit count (fewer columns: less to convert on every lookup).
Found = tuple[int, int, Any, Any, float]
Sql = Callable[..., sqlite3.Cursor]
Cleanup = Callable[[Any], None]

_SELECT_KEY = (
    "SELECT rowid, key, mode, filename, value, access_count, store_time"
    " FROM Cache WHERE key = ? AND raw = 1"
)
_LOOKUP = "SELECT rowid, mode, filename, value, store_time FROM Cache WHERE key = ? AND raw = 1"
_SELECT_PAGE = (
    "SELECT rowid, key, mode, filename, value, access_count, store_time"
    " FROM Cache WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
_PREPARE_PUT = (
    "SELECT c.rowid, c.filename, p.page_count - f.freelist_count, s.value"
    " FROM pragma_page_count AS p, pragma_freelist_count AS f"
    " LEFT JOIN Settings AS s ON s.key = 'size'"
    " LEFT JOIN Cache AS c ON c.key = ? AND c.raw = 1"
)
_INSERT = (
    "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, ?, ?, ?, ?, ?)"
)
_UPDATE = (
    "UPDATE Cache SET store_time = ?, expire_time = NULL, access_time = ?, access_count = 0,"
    " tag = ?, size = ?, mode = ?, filename = ?, value = ? WHERE rowid = ?"
)
# Rows to cull, least recently used first, never the row just written; the bytes each frees
# (a value file's size, or the inline value's length).
_SELECT_LRU = (
    "SELECT rowid, filename, CASE WHEN filename IS NULL THEN COALESCE(length(value), 0)"
    " ELSE size END FROM Cache WHERE rowid != ? ORDER BY access_time LIMIT ?"
)
# A batch of hits: the latest access time wins; a row rewritten since the read is left alone.
_TOUCH_BATCH = (
    "UPDATE Cache SET access_time = MAX(access_time, ?), access_count = access_count + ?"
    " WHERE rowid = ? AND store_time = ?"
)
_DELETE = "DELETE FROM Cache WHERE rowid = ?"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS CfmStats (id INTEGER PRIMARY KEY CHECK (id = 0), "
    + ", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in COUNTERS)
    + ")",
    "INSERT OR IGNORE INTO CfmStats (id) VALUES (0)",
    "CREATE TRIGGER IF NOT EXISTS CfmStats_row_delete AFTER DELETE ON Cache FOR EACH ROW"
    " BEGIN UPDATE CfmStats SET row_deletes = row_deletes + 1; END",
    # A set either inserts a row (counted by diskcache's own row count, see read_stats) or
    # rewrites an existing row's store_time.
    "CREATE TRIGGER IF NOT EXISTS CfmStats_set_update AFTER UPDATE OF store_time ON Cache"
    " FOR EACH ROW BEGIN UPDATE CfmStats SET updates = updates + 1; END",
    # Hits are added by write_counts now (a hit on a row deleted before the batch is written
    # still counts); a database made by an older version loses its per-row hit trigger.
    "DROP TRIGGER IF EXISTS CfmStats_hit",
    # Hits and misses per minute (epoch minute), written with each batch (cache health).
    "CREATE TABLE IF NOT EXISTS CfmActivity (minute INTEGER PRIMARY KEY,"
    " hits INTEGER NOT NULL, misses INTEGER NOT NULL)",
)
#: The inspector's index (cache/inspect.py): one row per entry, no text, written by every
#: :meth:`Backend.put` in the same transaction, so a cache never needs a cold full read to
#: be inspected (entries stored by an older release are indexed once, on first inspection).
#: ``{temp}``/``{schema}``: empty, or ``TEMP``/``temp.`` for a read-only cache's private copy.
INDEX_SCHEMA = (
    "CREATE {temp} TABLE IF NOT EXISTS CfmIndex (id INTEGER PRIMARY KEY, store_time REAL NOT"
    " NULL, agent TEXT NOT NULL, model TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT"
    " NULL, size INTEGER NOT NULL, cost REAL NOT NULL)",
    "CREATE {temp} TABLE IF NOT EXISTS CfmIndexState (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " max_rowid INTEGER NOT NULL, row_deletes INTEGER NOT NULL, updates INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {schema}CfmIndex_created ON CfmIndex (created)",
    # One index only: each index is one more page every set writes. A filter by agent walks
    # CfmIndex_created (as a filter by model does); older releases also kept (agent, created).
    "DROP INDEX IF EXISTS {schema}CfmIndex_agent",
)
#: One index row: rowid, store_time, agent, model, created, expires, size, cost.
INDEX_ROW = "INSERT OR REPLACE INTO CfmIndex VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: What :meth:`Backend.put` indexes besides the row: model, created, expires, estimated cost.
IndexFields = tuple[str, float, float, float]

#: Minutes of hit/miss activity kept (one row per minute that saw lookups; a day).
ACTIVITY_KEEP_MINUTES = 24 * 60
_ACTIVITY = (
    "INSERT INTO CfmActivity (minute, hits, misses) VALUES (?, ?, ?) ON CONFLICT (minute)"
    " DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses"
)
#: diskcache's index on ``expire_time``, for the rows that have one (none of ours do).
_EXPIRE_INDEX = (
    "CREATE INDEX Cache_expire_time ON Cache (expire_time) WHERE expire_time IS NOT NULL"
)
_EXPIRE_INDEX_SQL = (
    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'Cache_expire_time'"
)
#: What a read-only backend reads when the directory holds no cache.db yet.
_EMPTY_SCHEMA = (
    "CREATE TABLE Cache (key TEXT, raw INTEGER, store_time REAL, access_time REAL,"
    " access_count INTEGER, tag TEXT, size INTEGER, mode INTEGER, filename TEXT, value BLOB)",
    "CREATE TABLE Settings (key TEXT, value)",
    _SCHEMA[0],
)
#: SQLite's files in the cache directory; each must be a regular file if it exists.
_DB_FILES = ("cache.db", "cache.db-wal", "cache.db-shm", "cache.db-journal")
_READ_VOLUME = (
    "SELECT p.page_count - f.freelist_count, s.value"
    " FROM pragma_page_count AS p, pragma_freelist_count AS f"
    " LEFT JOIN Settings AS s ON s.key = 'size'"
)
_READ_STATS = (  # column names come from the fixed COUNTERS tuple
    "SELECT " + ", ".join(COUNTERS) + ","  # noqa: S608
    " (SELECT value FROM Settings WHERE key = 'count') FROM CfmStats"
)


#: How many times this process is a forked child of a process that used the cache (see
#: :meth:`Backend.read_row`).
_FORKS = [0]


def _count_fork() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


def _check_db_files(directory: Path) -> None:
    """Refuse database files that are symlinks (or anything but regular files).

    SQLite follows a symlinked ``cache.db`` and would read, write or even create the file it
    points to, outside the cache directory.
    """
    for name in _DB_FILES:
        path = directory / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
            raise UnsafePathError(
                f"Refusing the cache database file {path}: it is {kind}. Remove it (the "
                "directory only holds cached answers) or use another cache directory."
            )


def _count_or_zero(value: object) -> int:
    """A stored count as an int; anything but a non-negative number (an edit) reads as 0."""
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


@functools.lru_cache(maxsize=64)
def _bump_sql(names: tuple[str, ...]) -> str:
    unknown = set(names) - _COUNTER_SET
    if unknown:
        raise ValueError(f"unknown cache counters: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = {name} + ?" for name in names)
    return "UPDATE CfmStats SET " + assignments  # noqa: S608  # names checked against COUNTERS


#: SQLite result codes (primary, the low byte) of a write that failed while reads still work.
_WRITE_FAILURES = frozenset(
    {
        3,  # SQLITE_PERM
        5,  # SQLITE_BUSY
        6,  # SQLITE_LOCKED
        8,  # SQLITE_READONLY
        10,  # SQLITE_IOERR
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
    }
)


def is_write_failure(exc: sqlite3.Error) -> bool:
    """True when ``exc`` says the database cannot be written now (full, read-only, locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _WRITE_FAILURES


def _translate(exc: BaseException, timeout: float) -> BaseException:
    if isinstance(exc, diskcache.Timeout):
        return CacheWriteError(f"The cache database stayed locked for more than {timeout:g} s.")
    if isinstance(exc, sqlite3.Error):
        kind = CacheWriteError if is_write_failure(exc) else CacheError
        return kind(f"The cache database failed: {exc}")
    return exc


class _Transaction:
    """diskcache's ``_transact`` (``retry=False``) without its generator, errors translated to
    CacheError: it runs on every set.

    The same steps as diskcache: a transaction already held by this thread is joined (no
    nested BEGIN); ``BEGIN IMMEDIATE`` failing means the lock was not obtained in time (the
    value file written for this transaction is removed); an error inside rolls back; value
    files handed to ``cleanup`` are removed after the commit.
    """

    __slots__ = ("_began", "_db", "_filename", "_files", "_sql")

    def __init__(self, db: Backend, filename: str | None) -> None:
        self._db = db
        self._filename = filename
        self._files: list[Any] = []
        self._began = False

    def __enter__(self) -> tuple[Sql, Cleanup]:
        db = self._db
        try:
            sql: Sql = db._sql
        except sqlite3.Error as exc:
            raise _translate(exc, db._timeout) from exc
        self._sql = sql
        tid = threading.get_ident()
        if db._txn_id != tid:
            try:
                sql("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                if self._filename is not None:
                    db._disk.remove(self._filename)
                raise _translate(diskcache.Timeout(), db._timeout) from None
            db._txn_id = tid
            self._began = True
        return sql, self._files.append

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self._db
        began, self._began = self._began, False
        try:
            if exc_type is not None:
                if began:
                    db._txn_id = None
                    self._sql("ROLLBACK")
            elif began:
                db._txn_id = None
                self._sql("COMMIT")
        except sqlite3.Error as error:
            raise _translate(error, db._timeout) from error
        if isinstance(exc, sqlite3.Error):  # raised by a statement inside
            raise _translate(exc, db._timeout) from exc
        if exc_type is None:
            remove = db._disk.remove
            for name in self._files:
                if name is not None:
                    remove(name)


class _Reads:
    """Read-only queries shared by :class:`Backend` and :class:`ReadOnlyBackend`.

    Each read is one autocommit statement on this thread's connection: it sees a committed
    snapshot (WAL) and never waits for a writer's lock.
    """

    _page_size: int
    read_only = False

    def _query(self, statement: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        raise NotImplementedError  # each backend supplies its connection

    def _read(self, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._query(statement, args).fetchall()
        except sqlite3.Error as exc:
            raise CacheError(f"The cache database failed: {exc}") from exc

    def read_row(self, key: str) -> Row | None:
        """The row stored under ``key``, or None, read without taking the write lock."""
        rows = self._read(_SELECT_KEY, (key,))
        return rows[0] if rows else None

    def lookup(self, key: str) -> Found | None:
        """What a lookup needs of the row stored under ``key`` (see :data:`Found`), or None;
        read without taking the write lock."""
        rows = self._read(_LOOKUP, (key,))
        return rows[0] if rows else None

    def keys_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` stored keys starting with the lowercase hex ``prefix``, sorted."""
        rows = self._read(
            "SELECT key FROM Cache WHERE key >= ? AND key < ? AND raw = 1 ORDER BY key LIMIT ?",
            (prefix, prefix + "g", limit),  # every hex digit sorts below "g"
        )
        return [str(row[0]) for row in rows]

    def page(self, after_rowid: int, limit: int, sql: Sql | None = None) -> list[Row]:
        """Up to ``limit`` rows with rowid greater than ``after_rowid``, in rowid order."""
        if sql is not None:
            rows: list[Row] = sql(_SELECT_PAGE, (after_rowid, limit)).fetchall()
            return rows
        return self._read(_SELECT_PAGE, (after_rowid, limit))

    def referenced_files(self) -> set[str]:
        """Names of all value files that rows refer to (for ``verify``'s orphan sweep)."""
        rows = self._read("SELECT filename FROM Cache WHERE filename IS NOT NULL")
        return {name for (name,) in rows if isinstance(name, str)}

    def volume(self) -> int:
        """Bytes on disk: database pages plus value sizes (diskcache's ``volume``, but a
        missing, negative or non-numeric ``size`` in an edited Settings table is recounted
        from the rows instead of raising TypeError). Raises :class:`CacheError`."""
        ((page_count, stored),) = self._read(_READ_VOLUME)
        if type(stored) is not int or stored < 0:
            ((stored,),) = self._read("SELECT COALESCE(SUM(size), 0) FROM Cache")
        return int(self._page_size * page_count + _count_or_zero(stored))

    def _restore_stats_row(self) -> None:
        """Re-create a deleted counter row (a read-only backend cannot: it reads zeros)."""

    def read_stats(self) -> dict[str, int]:
        """All counters and the entry count, read as one consistent snapshot.

        Values edited into something other than a non-negative number read as 0, and a
        deleted counter row is re-created, so an edited database never breaks statistics.
        """
        rows = self._read(_READ_STATS)
        if not rows:  # the CfmStats row was deleted: start counting again
            self._restore_stats_row()
            rows = self._read(_READ_STATS) or [(0,) * (len(COUNTERS) + 1)]
        values = dict(zip((*COUNTERS, "entries"), map(_count_or_zero, rows[0]), strict=True))
        values["sets"] = values["entries"] + values["row_deletes"] + values["updates"]
        values["evictions"] = values["row_deletes"] - (
            values["deletes"]
            + values["expirations"]
            + values["integrity_failures"]
            + values["cleared"]
        )
        return values


class Backend(_Reads, diskcache.Cache):  # type: ignore[misc]  # diskcache: no hints
    """diskcache with :class:`SafeDisk`, least-recently-used culling and exact counters.

    Raises :class:`CacheWriteError` when the database cannot be written (read-only, full,
    locked: open it with :class:`ReadOnlyBackend` instead), :class:`CacheError` when it cannot
    be opened at all and :class:`UnsafePathError` when ``cache.db`` (or its journal) is a
    symlink or not a file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        size_limit: int,
        min_file_size: int = 2**15,
        max_value_bytes: int = 16 * 2**20,
        timeout: float = 60.0,
        secure_delete: bool = False,
    ) -> None:
        self._forced: dict[str, Any] = {
            **DEFAULT_SETTINGS,
            "statistics": 0,
            "tag_index": 0,
            "eviction_policy": "least-recently-used",
            "size_limit": int(size_limit),
            "disk_min_file_size": int(min_file_size),
            "disk_pickle_protocol": 0,
            # ON for an encrypted cache: a deleted row's bytes (an entry stored in clear before
            # encryption was turned on) are overwritten with zeros, not left in free space.
            "sqlite_secure_delete": int(bool(secure_delete)),
        }
        _check_db_files(directory)
        try:
            super().__init__(str(directory), timeout=timeout, disk=SafeDisk, **self._forced)
            self._disk.max_value_bytes = max_value_bytes
            for statement in (*_SCHEMA, *INDEX_SCHEMA):
                self._sql_retry(statement.format(temp="", schema=""))
            self._narrow_expire_index()
        except (sqlite3.Error, diskcache.Timeout) as exc:
            if isinstance(exc, diskcache.Timeout) or is_write_failure(exc):
                raise CacheWriteError(
                    f"Could not write the cache database in {directory}: {exc}."
                ) from exc
            raise CacheError(
                f"Could not open the cache database in {directory}: {exc}. If the file is "
                "damaged, delete the directory (it only holds cached answers)."
            ) from exc

    def _narrow_expire_index(self) -> None:
        """Keep diskcache's ``Cache_expire_time`` index to rows with an expiry time.

        The cache never sets ``expire_time`` (expiry is signed into the entry), yet a full
        index gains an entry, and every set one more written page, per row. diskcache creates
        the index only if none of that name exists, so a partial one of the same name stays;
        its own expiry queries (``expire_time IS NOT NULL AND ...``) can still use it. A
        database made by an older release is converted once, in one transaction.
        """
        found = self._sql(_EXPIRE_INDEX_SQL).fetchall()
        if found and "WHERE" in str(found[0][0]).upper():
            return
        with self._transact(retry=True) as (sql, _cleanup):
            sql("DROP INDEX IF EXISTS Cache_expire_time")
            sql(_EXPIRE_INDEX)

    def reset(self, key: str, value: Any = ENOVAL, update: bool = True) -> Any:
        """diskcache's settings hook, restricted to our own values (see module docstring)."""
        if key in METADATA:
            return super().reset(key, value, update)
        if key not in self._forced:
            log.warning("ignoring an unknown setting in cache.db")
            return None
        return super().reset(key, self._forced[key], update and value is not ENOVAL)

    def transaction(self, filename: str | None = None) -> _Transaction:
        """Hold the database write lock: ``with db.transaction() as (sql, cleanup): ...``.

        ``cleanup(name)`` removes a value file after the commit. Raises :class:`CacheError`
        when the lock is not obtained within the timeout or SQLite fails; on any error the
        transaction is rolled back (and ``filename``, a value file written for it, removed).
        """
        return _Transaction(self, filename)

    # -- operations used by ResponseCache ----------------------------------------------------

    @staticmethod
    def bump(sql: Sql, **deltas: int) -> None:
        """Add ``deltas`` to counters inside the caller's transaction."""
        names = tuple(sorted(deltas))
        sql(_bump_sql(names), tuple(deltas[name] for name in names))

    @staticmethod
    def select_key(sql: Sql, key: str) -> Row | None:
        """The row stored under ``key``, or None."""
        row: Row | None = sql(_SELECT_KEY, (key,)).fetchone()
        return row

    def write_counts(self, batch: Batch) -> None:
        """Add a batch of lookups in one transaction: each touched row's access time and hit
        count, and the ``hits`` and ``misses`` counters. Raises :class:`CacheWriteError` when
        the database cannot be written (the batch is then lost, not half-written)."""
        with self.transaction() as (sql, _cleanup):
            self._apply(sql, batch)

    def _apply(self, sql: Sql, batch: Batch) -> None:
        touched = batch.touch_rows()
        if touched:
            self._con.executemany(_TOUCH_BATCH, touched)
        if batch:
            self.bump(sql, hits=batch.hits, misses=batch.misses)
            minute = int(time.time() // 60)  # wall-clock, like access times
            sql(_ACTIVITY, (minute, batch.hits, batch.misses))
            sql("DELETE FROM CfmActivity WHERE minute < ?", (minute - ACTIVITY_KEEP_MINUTES,))

    @staticmethod
    def delete_row(sql: Sql, cleanup: Cleanup, row: Row) -> None:
        """Delete ``row`` and schedule its value file for removal after the commit."""
        sql(_DELETE, (row[0],))
        cleanup(row[3])

    def fetch_value(self, row: Row) -> bytes:
        """The stored bytes of ``row`` (IntegrityError when the row is not our format)."""
        value: bytes = self._disk.fetch(row[2], row[3], row[4], False)
        return value

    def fetch_found(self, found: Found) -> bytes:
        """The stored bytes of a row read by :meth:`lookup` (as :meth:`fetch_value`)."""
        value: bytes = self._disk.fetch(found[1], found[2], found[3], False)
        return value

    def put(
        self,
        key: str,
        value: bytes,
        tag: str,
        batch: Batch | None = None,
        index: IndexFields | None = None,
    ) -> None:
        """Store ``value`` under ``key`` (no diskcache expiry) and count one set, atomically;
        with ``index``, its row in the inspector's index too (same transaction).

        Large values are written to their file before the lock is taken; old files are removed
        after the commit. ``batch`` (this process's gathered lookups) is written first, in the
        same transaction, so least-recently-used culling, which runs in it too, sees every
        read this process made.
        """
        # diskcache's Cache.set, leaner: one statement finds the old row *and* the volume, we
        # never set expire_time (expiry is signed into the entry) so there is no expired-rows
        # pass, and sets are counted by invariant (see read_stats). 4 statements instead of 7.
        size, mode, filename, db_value = self._disk.store(value, False)
        now = time.time()
        with self.transaction(filename) as (sql, cleanup):
            if batch is not None:
                self._apply(sql, batch)
            ((rowid, old_filename, page_count, stored),) = sql(_PREPARE_PUT, (key,)).fetchall()
            if rowid is None:
                cursor = sql(_INSERT, (key, now, now, tag, size, mode, filename, db_value))
                rowid = cursor.lastrowid
            else:
                cleanup(old_filename)
                sql(_UPDATE, (now, now, tag, size, mode, filename, db_value, rowid))
            if index is not None:
                model, created, expires, cost = index
                sql(INDEX_ROW, (rowid, now, tag, model, created, expires, len(value), cost))
            if type(stored) is not int or stored < 0:  # edited (NULL, text, inf): recount
                stored = self._recount_size(sql)
            excess = self._page_size * page_count + stored + size - self.size_limit
            if excess >= 0:
                self._cull_lru(sql, cleanup, keep=rowid, excess=excess)

    @staticmethod
    def _recount_size(sql: Sql) -> int:
        """Reset diskcache's total-size metadata from the rows (it was missing or negative)."""
        ((total,),) = sql("SELECT COALESCE(SUM(size), 0) FROM Cache").fetchall()
        sql("UPDATE Settings SET value = ? WHERE key = 'size'", (int(total),))
        return int(total)

    def _cull_lru(self, sql: Sql, cleanup: Cleanup, *, keep: int, excess: int) -> None:
        """Delete least-recently-used rows until about ``excess`` bytes are freed (we are that
        far over ``size_limit``), at most ``cull_limit`` per call, never the row ``keep`` (the
        one just written: a write must not evict itself)."""
        rows = sql(_SELECT_LRU, (keep, self.cull_limit)).fetchall()
        for rowid, old_filename, freed in rows:
            sql(_DELETE, (rowid,))
            cleanup(old_filename)
            excess -= freed if isinstance(freed, int) and freed > 0 else 0
            if excess < 0:
                return

    def select_for_clear(self, sql: Sql, after_rowid: int, tag: str | None) -> list[Any]:
        """Up to 100 ``(rowid, filename)`` pairs to clear, optionally only one agent's."""
        if tag is None:
            query = "SELECT rowid, filename FROM Cache WHERE rowid > ? ORDER BY rowid LIMIT 100"
            return sql(query, (after_rowid,)).fetchall()
        query = (
            "SELECT rowid, filename FROM Cache WHERE rowid > ? AND tag = ? ORDER BY rowid LIMIT 100"
        )
        return sql(query, (after_rowid, tag)).fetchall()

    def _query(self, statement: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self._sql(statement, args)
        return cursor

    def read_row(self, key: str) -> Row | None:
        """The row stored under ``key``, or None, read without taking the write lock."""
        row: Row | None = self._lookup(_SELECT_KEY, key)
        return row

    def lookup(self, key: str) -> Found | None:
        """What a lookup needs of the row stored under ``key`` (see :data:`Found`), or None;
        read without taking the write lock. This is the one statement of every ``get``."""
        found: Found | None = self._lookup(_LOOKUP, key)
        return found

    def _lookup(self, statement: str, key: str) -> Any:
        """The first row ``statement`` finds for ``key``, on this thread's reading cursor.

        diskcache's own connection check asks the OS for the process id on every call, and
        ``con.execute`` makes a new cursor each time; this keeps one cursor per thread and
        notices a fork by a counter bumped in the child, and a closed connection by
        diskcache's own slot, and then asks diskcache (which reopens as it should). The
        statements select one row by a unique key, so ``fetchone`` steps them to their end:
        no read snapshot is left open between lookups.
        """
        local = self._local
        held = getattr(local, "cfm_reader", None)
        if held is None or held[0] != _FORKS[0] or held[1] is not getattr(local, "con", None):
            con = self._con
            held = local.cfm_reader = (_FORKS[0], con, con.cursor())
        try:
            return held[2].execute(statement, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise CacheError(f"The cache database failed: {exc}") from exc

    def truncate_log(self) -> bool:
        """Checkpoint the write-ahead log into ``cache.db`` and truncate it to zero bytes, so
        page images of deleted rows do not linger in ``cache.db-wal``. Returns False when
        another connection's read kept it from completing (it is then retried by SQLite's
        next automatic checkpoint). Raises :class:`CacheError` if SQLite fails."""
        ((busy, _log, _done),) = self._read("PRAGMA wal_checkpoint(TRUNCATE)")
        return not busy

    def _restore_stats_row(self) -> None:
        try:
            self._sql_retry(_SCHEMA[1])
        except sqlite3.Error as exc:
            raise _translate(exc, self._timeout) from exc


class ReadOnlyBackend(_Reads):
    """The cache database opened for reading only (``mode=ro``): for a directory or a
    ``cache.db`` that cannot be written (a read-only file system, a full disk at open, a
    directory without write permission).

    Every read works as in :class:`Backend`; :meth:`transaction` raises
    :class:`CacheWriteError`, so every write is refused and nothing is changed. A directory
    without ``cache.db`` reads as an empty cache. Thread-safe: one connection per thread.
    """

    read_only = True

    def __init__(
        self, directory: Path, *, min_file_size: int = 2**15, max_value_bytes: int = 16 * 2**20
    ) -> None:
        _check_db_files(directory)
        self.directory = directory
        self.disk = SafeDisk(str(directory), min_file_size=min_file_size)
        self.disk.max_value_bytes = max_value_bytes
        self._local = threading.local()
        self._missing = not (directory / "cache.db").exists()
        self._page_size = 4096
        if not self._missing:
            ((self._page_size,),) = self._read("PRAGMA page_size")

    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            if self._missing:  # nothing stored yet: an empty database of the same shape
                con = sqlite3.connect(":memory:", isolation_level=None)
                for statement in _EMPTY_SCHEMA:
                    con.execute(statement)
            else:
                con = self._connect_read_only()
            self._local.con = con
        return con

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro``; if SQLite cannot create the WAL index beside a database closed cleanly
        on a read-only file system, ``immutable=1`` (no -wal file exists to miss then)."""
        base = "file:" + urllib.parse.quote((self.directory / "cache.db").as_posix())
        con = sqlite3.connect(base + "?mode=ro", uri=True, isolation_level=None)
        try:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        except sqlite3.OperationalError:
            con.close()
            if (self.directory / "cache.db-wal").exists():
                raise
            con = sqlite3.connect(base + "?immutable=1", uri=True, isolation_level=None)
        return con

    def _query(self, statement: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._connection().execute(statement, args)

    def transaction(self, filename: str | None = None) -> _Transaction:
        """Refused: raises :class:`CacheWriteError` (the cache is read-only)."""
        raise CacheWriteError(f"The cache directory {self.directory} is read-only.")

    def fetch_value(self, row: Row) -> bytes:
        """The stored bytes of ``row`` (IntegrityError when the row is not our format)."""
        value: bytes = self.disk.fetch(row[2], row[3], row[4], False)
        return value

    def fetch_found(self, found: Found) -> bytes:
        """The stored bytes of a row read by :meth:`lookup` (as :meth:`fetch_value`)."""
        value: bytes = self.disk.fetch(found[1], found[2], found[3], False)
        return value

    def close(self) -> None:
        """Close this thread's connection; the next read reopens it."""
        con = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            con.close()
