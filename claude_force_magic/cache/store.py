"""``ResponseCache``: signed, bounded, process-safe storage of model answers.

Each answer is a signed envelope (:mod:`.signing`) stored in a ``diskcache.Cache``
(:mod:`.backend`) through a Disk that never unpickles (:mod:`.disk`). Anything that fails a
check is counted as an integrity failure, deleted, and served as a miss.
"""

from __future__ import annotations

import atexit
import os
import re
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from .. import settings
from ..errors import CacheError, ClaudeForceError, IntegrityError
from ..guard.logs import SecretRedactor, get_logger, sanitize_for_log
from ..settings import Secret
from .backend import Backend, Cleanup, Found, IndexFields, ReadOnlyBackend, Row, Sql
from .disk import CacheWriteError
from .entries import MIN_PREFIX as MIN_PREFIX  # part of this module's API
from .entries import (
    CacheSkipWarning,
    Newest,
    ambiguous_prefix,
    check_key_prefix,
    check_limits,
    check_search,
    entry_view,
    exclusions,
    export_line,
    json_copy,
    listing,
    matches,
    new_body,
    public_view,
    skip_warning,
    stamp,
    write_export,
)
from .keys import key_for, key_of
from .memo import VerifiedMemo
from .pending import PendingCounts
from .signing import Fields, Signer, body_of, metadata_of
from .verify import VerifyReport

__all__ = ["CacheSkipWarning", "ResponseCache"]

log = get_logger("claude_force_magic.cache")  # with the secret redactor (SEC-005)

_KEY_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
_PAGE = 100
_MIN_READ_BOUND = 16 * 2**20
#: Gathered hits and misses are written at least this often (seconds) while the cache is used…
FLUSH_SECONDS = 1.0
#: …and after at most this many lookups.
FLUSH_OPS = 10_000
#: A lookup re-checks the directory's and ``cache.db``'s identity at most this often
#: (seconds; writes always do).
IDENTITY_SECONDS = 0.1
#: (device, inode) of the directory and of cache.db ((0, 0) while it does not exist).
Identity = tuple[int, int, int, int]
AnyBackend = Backend | ReadOnlyBackend


#: Open caches, so that their gathered counts are written at interpreter exit.
_OPEN: weakref.WeakSet[ResponseCache] = weakref.WeakSet()


@atexit.register
def _flush_open_caches() -> None:
    for cache in list(_OPEN):
        try:
            cache.flush()
        except CacheError as exc:  # a damaged database: say so, let the interpreter exit
            log.warning("Could not write the cache statistics at exit: %s", exc)


def _forget_pending_in_child() -> None:
    """A forked child starts with no pending lookups: they are its parent's to write."""
    for cache in list(_OPEN):
        cache._pending.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_in_child)


class ResponseCache:
    """A signed, size-bounded response cache in a private directory.

    ``cache_dir`` defaults to :func:`settings.cache_dir` and is created ``0700``; a symlink,
    a directory owned by someone else, or one writable by group/others raises
    :class:`UnsafePathError`. ``cache_secret`` (else ``$CLAUDE_CACHE_SECRET``, else a
    generated 0600 key file) signs every entry; a placeholder or a secret under 16 bytes raises
    :class:`SecretError`. Entries live ``ttl_hours`` (signed into the entry), the directory is
    kept near ``max_size_mb`` by least-recently-used culling, and answers whose stored form
    exceeds ``max_entry_kb`` KiB are not stored. ``enabled=False`` touches no file: ``get``
    returns None and ``set`` returns False, and nothing is counted. ``clock`` (epoch seconds)
    decides creation and expiry and can be replaced in tests. ``encrypt=True`` (default: env
    ``CLAUDE_CACHE_ENCRYPT``) stores answers encrypted with AES-256-GCM under a key derived
    from the secret; such a cache treats an entry stored unencrypted as an integrity failure
    (deleted, a miss), while a cache without ``encrypt`` still reads encrypted entries. See
    "Encryption at rest" in ``docs/cache.md`` for what is and is not hidden.

    ``cache_dir`` may start with ``~``. A directory (or ``cache.db``) that cannot be written
    is opened **read-only**: ``get`` serves what is stored, ``set`` stores nothing, and
    :attr:`read_only`, ``repr`` and ``get_stats()`` say so. A write that fails later (disk
    full, the file system turned read-only, the lock held for over 60 s) never fails ``get``
    or ``set``: the hit is still returned, the answer is not stored, and one warning is logged
    per episode. Before each operation the directory and ``cache.db`` are checked to be the
    ones opened (device and inode, ``lstat``; a lookup checks them at most every
    :data:`IDENTITY_SECONDS`, every write checks both): a deleted directory is recreated
    (safely, ``0700``) and reopened; one swapped for a symlink or made unsafe is refused (the
    safety checks run again), and until it is fixed ``get`` misses, ``set`` stores nothing and
    the other operations raise :class:`CacheError` saying why.

    Safe to share between threads and to use from many processes on one directory: every
    change is one SQLite transaction; listings and statistics take no lock. A lookup writes
    nothing: hits, misses and least-recently-used times are gathered in memory and written in
    batches (see :meth:`flush`), so statistics are exact in this process and, in another
    process, once this one has written its batch (within :data:`FLUSH_SECONDS` while it is
    used). A damaged
    database raises :class:`CacheError`; a damaged or forged *entry* never raises, it is a
    miss. Raises :class:`ConfigurationError` at construction for a bad limit (including
    ``max_size_mb`` smaller than one ``max_entry_kb`` entry, or a ``ttl_hours`` over ten
    years) and for a directory that cannot be created.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        cache_secret: str | bytes | Secret | None = None,
        ttl_hours: float = 24,
        max_size_mb: float = 100,
        max_entry_kb: float = 1024,
        enabled: bool = True,
        exclude_agents: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        encrypt: bool | None = None,
    ) -> None:
        self.encrypt = settings.cache_encrypt() if encrypt is None else bool(encrypt)
        limits = check_limits(ttl_hours, max_size_mb, max_entry_kb)
        self.ttl_hours, self._max_size_bytes, self._max_entry_bytes = limits
        self._exclude = exclusions(exclude_agents)
        self._clock = clock
        self.enabled = bool(enabled)
        target = cache_dir if cache_dir is not None else settings.cache_dir()
        self.directory = Path(os.path.abspath(os.path.expanduser(os.fspath(target))))
        self._signer: Signer | None = None
        self._db: AnyBackend | None = None
        self._identity: Identity | None = None
        self._refused = ""  # why the directory is refused after it changed under us
        self._warned: set[str] = set()  # causes already warned about (one warning each)
        self._reopen_lock = threading.Lock()
        self._paths = ("", "")
        self._pending = PendingCounts(interval=FLUSH_SECONDS, max_ops=FLUSH_OPS)
        self._memo = VerifiedMemo()  # bodies verified here, per row version (see memo.py)
        self._checked_until = 0.0  # lookups check the identities again after this
        self._monotonic = time.monotonic  # when the identities were checked (tests replace it)
        if not self.enabled:
            if cache_secret is not None:
                settings.load_cache_secret(cache_secret)  # validate; writes nothing
            return
        secret = settings.load_cache_secret(cache_secret)
        SecretRedactor.register(secret)  # redacted from every package log record (SEC-005)
        self._signer = Signer(secret, encrypt=self.encrypt)
        self._db = self._open()
        _OPEN.add(self)

    def __repr__(self) -> str:
        state = ", read_only=True" if self.read_only else ""
        state += ", encrypt=True" if self.encrypt else ""
        return (
            f"ResponseCache(directory={str(self.directory)!r}, enabled={self.enabled}{state}, "
            f"ttl_hours={self.ttl_hours:g}, max_size_mb={self._max_size_bytes / 2**20:g}, "
            f"max_entry_kb={self._max_entry_bytes / 1024:g})"
        )

    @property
    def read_only(self) -> bool:
        """True when the cache serves stored answers but cannot store new ones."""
        return self._db is not None and self._db.read_only

    # -- opening, and noticing a directory that changed under us -------------------------------

    def _open(self) -> AnyBackend:
        """Check the directory (creating it 0700), open its database, remember its identity.

        A database that cannot be written is opened read-only, with one warning.
        """
        self.directory = settings.ensure_private_dir(self.directory)
        bound = max(4 * self._max_entry_bytes, _MIN_READ_BOUND)
        db: AnyBackend
        try:
            if not os.access(self.directory, os.W_OK):  # EROFS or no permission (not for root)
                raise CacheWriteError(f"the directory {self.directory} is not writable")
            db = Backend(
                self.directory,
                size_limit=self._max_size_bytes,
                max_value_bytes=bound,
                secure_delete=self.encrypt,
            )
        except CacheWriteError as exc:
            db = ReadOnlyBackend(self.directory, max_value_bytes=bound)
            self._warn_once(
                "read-only",
                f"The response cache in {self.directory} is read-only ({exc}): stored answers "
                "are served, new answers are not stored.",
            )
        self._paths = (os.fspath(self.directory), os.path.join(self.directory, "cache.db"))
        self._identity = self._current_identity()
        self._checked_until = self._monotonic() + IDENTITY_SECONDS
        return db

    def _current_identity(self) -> Identity | None:
        directory, database = self._paths  # str paths: this runs on every operation
        try:
            found = os.lstat(directory)
        except OSError:
            return None
        if not stat.S_ISDIR(found.st_mode):
            return None
        try:
            db = os.lstat(database)
        except FileNotFoundError:
            return (found.st_dev, found.st_ino, 0, 0)
        except OSError:
            return None
        return (found.st_dev, found.st_ino, db.st_dev, db.st_ino)

    def _backend(self, *, full: bool = True) -> AnyBackend | None:
        """The open backend, reopened if the directory changed; None if disabled or refused.

        A deleted directory would otherwise keep serving and storing into an unlinked
        database, and a directory swapped for a symlink would be written through. Every write
        checks the directory and ``cache.db`` (two ``lstat`` calls); a lookup (``full=False``)
        checks them at most every :data:`IDENTITY_SECONDS` (see :meth:`_unchanged`).
        """
        db = self._db
        if db is None or self._unchanged(full):
            return db
        with self._reopen_lock:  # one thread reopens; the others use what it opened
            if self._unchanged(True):
                return self._db
            return self._reopen(db)

    def _unchanged(self, full: bool) -> bool:
        """True when the directory and ``cache.db`` are the ones opened (checked now if
        ``full`` or due; a lookup within :data:`IDENTITY_SECONDS` of the last check trusts it).

        Why a lookup may skip both checks for a moment: a lookup writes nothing, and what it
        reads is believed only after its signature checks. Inline values come from the
        connection opened on the genuine ``cache.db`` (a deleted or moved file stays that
        file); value files are reached from the directory's path with ``O_NOFOLLOW`` at every
        step, so a directory swapped for a symlink is refused on the read itself (a miss,
        whose deletion is a write: it checks first and refuses the directory). So for at
        most :data:`IDENTITY_SECONDS` after a deletion, a swap or a replaced ``cache.db``,
        lookups may still serve verified answers from the cache that was opened; nothing is
        ever written or followed through a changed path, because every write checks both
        first.
        """
        if self._refused:
            return False
        identity = self._identity
        if not full and identity is not None and self._monotonic() < self._checked_until:
            return True
        if self._current_identity() != identity:
            return False
        self._checked_until = self._monotonic() + IDENTITY_SECONDS
        return True

    def _reopen(self, db: AnyBackend) -> AnyBackend | None:
        self._pending.take()  # rowids of a database that is gone: never written elsewhere
        self._memo.clear()  # and its rows are not the new database's rows
        db.close()
        try:
            self._db = self._open()
        except ClaudeForceError as exc:
            self._refused = (
                f"The cache directory {self.directory} changed while in use and is refused: "
                f"{exc} Cached answers are not used until it is fixed (or turn the cache "
                "off: enable_cache=False)."
            )
            self._warn_once("refused", self._refused)
            return None
        log.warning(
            "The cache directory %s was deleted or replaced while in use; reopened it.",
            self.directory,
        )
        self._refused = ""
        self._warned.discard("refused")
        return self._db

    def _warn_once(self, cause: str, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            log.warning("%s", message)

    def _write(self, db: AnyBackend, change: Callable[[Sql, Cleanup], Any]) -> bool:
        """Run ``change`` in one transaction; a failed write is warned about once, not raised."""
        try:
            with db.transaction() as (sql, cleanup):
                change(sql, cleanup)
        except CacheWriteError as exc:
            self._write_failed(db, exc)
            return False
        self._warned.discard("write")
        return True

    def _write_failed(self, db: AnyBackend, exc: CacheWriteError) -> None:
        if db.read_only:
            self._warn_once(
                "read-only",
                f"The response cache in {self.directory} is read-only: stored answers are "
                "served, new answers are not stored.",
            )
            return
        self._warn_once(
            "write",
            f"Could not write to the response cache in {self.directory} ({exc}); stored "
            "answers are still served, new ones are not stored until writing works again.",
        )

    def _usable(self, for_what: str) -> AnyBackend | None:
        """The backend for an operation other than get/set; raises CacheError if refused."""
        db = self._backend()
        if db is None and self._refused:
            raise CacheError(self._refused)
        if db is not None and db.read_only and for_what:
            raise CacheError(
                f"The response cache in {self.directory} is read-only: cannot {for_what}. "
                "Make the directory writable, or use another cache_dir."
            )
        return db

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write the gathered counts, then close this thread's database connection; using the
        cache again reopens it."""
        if self._db is not None:
            try:
                self.flush()
            finally:
                self._db.close()

    # -- keys -------------------------------------------------------------------------------

    def key_for(self, agent_name: str, task: str, model: str, **request: Any) -> str:
        """The hex SHA-256 key of a request (see :func:`keys.key_for`); TypeError if not JSON."""
        return key_for(agent_name, task, model, **request)

    def _active(self, agent_name: str, *, full: bool = True) -> tuple[AnyBackend, Signer] | None:
        if self._db is None or self._signer is None or agent_name in self._exclude:
            return None
        db = self._backend(full=full)
        return None if db is None else (db, self._signer)

    # -- get ---------------------------------------------------------------------------------

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> dict[str, Any] | None:
        """Return the cached answer for this request, or None.

        The returned dict has exactly these keys: ``response``, ``agent_name``, ``model``,
        ``input_tokens``, ``output_tokens``, ``estimated_cost`` (what the answer cost when it
        was bought), ``created_at`` and ``expires_at`` (epoch seconds), ``age_seconds``,
        ``metadata`` (the dict given to :meth:`set`) and ``key``. Per-entry hit counts are in
        :meth:`entries`.

        A hit or a miss writes nothing: the lookup is one read, and the hit (the entry's
        least-recently-used position and hit count) or the miss is gathered in memory and
        written in a batch (see :meth:`flush`). Expired, forged or damaged entries are
        deleted and reported as misses (counted as ``expirations`` or
        ``integrity_failures``, in the transaction that deletes them); they never raise. When
        that deletion cannot be written (disk full, read-only, locked) the miss is still
        returned and one warning is logged. Nothing is counted on a read-only cache.
        Disabled caches, excluded agents and a refused directory return None without
        counting. Raises TypeError for non-JSON request values and
        :class:`CacheError` when the database cannot be read.
        """
        key = key_of(agent_name, task, model, request)
        db, signer = self._db, self._signer
        if db is None or signer is None or agent_name in self._exclude:
            return None
        if self._refused or self._identity is None or self._monotonic() >= self._checked_until:
            db = self._backend(full=False)  # else: within the lookups' window (see _unchanged)
            if db is None:
                return None
        found = db.lookup(key)  # no write lock, no write
        if found is None:
            self._count(db, None)
            return None
        fields = self._memo.get(key, found)  # verified earlier from this very row version
        if fields is not None:
            metadata = metadata_of(fields[8])  # checked when it was verified: a fresh dict
        else:
            verified = self._verify_found(db, signer, key, found, agent_name)
            if verified is None:
                return None
            fields, metadata = verified
        now = self._clock()
        if fields[7] <= now:  # expires_at
            self._discard(db, key, found, "expirations")
            return None
        self._count(db, found)
        return public_view(key, fields, now, metadata)

    def _verify_found(
        self, db: AnyBackend, signer: Signer, key: str, found: Found, agent_name: str
    ) -> tuple[Fields, dict[str, Any]] | None:
        """The verified fields of the row ``found`` under ``key`` and its metadata dict,
        remembered for this row version; None (the row deleted and counted as an integrity
        failure, with a warning) when it fails its check."""
        try:
            data = db.fetch_found(found)
            fields = signer.open_fields(key, data)
            metadata = metadata_of(fields[8])
        except IntegrityError as exc:
            self._discard(db, key, found, "integrity_failures")
            log.warning(
                "cache entry %s for agent %s failed its integrity check (%s); deleted",
                key[:12],
                sanitize_for_log(agent_name, 64),
                exc,
            )
            return None
        self._memo.put(key, found, fields, len(data))
        return fields, metadata

    def _count(self, db: AnyBackend, found: Found | None) -> None:
        """Gather a hit on the row ``found`` (or a miss) in memory; write the batch when due."""
        if db.read_only:
            return  # nothing is counted on a read-only cache
        due = self._pending.miss() if found is None else self._pending.hit(found[0], found[4])
        if due and self._backend() is db:  # a write: the full directory check first
            self._flush(db)

    def _discard(self, db: AnyBackend, key: str, found: Found, counter: str) -> None:
        """Delete the failed or expired row ``found`` under ``key`` and count it and the miss,
        in one transaction.

        The row is looked up again under the write lock and deleted only if it is still the
        version that was read (another process may have replaced it with a valid entry). A
        write that fails is warned about once; the miss is then counted in memory.
        """

        def change(sql: Sql, cleanup: Cleanup) -> None:
            current = Backend.select_key(sql, key)
            if current is not None and current[0] == found[0] and current[6] == found[4]:
                Backend.delete_row(sql, cleanup, current)
                Backend.bump(sql, misses=1, **{counter: 1})
            else:
                Backend.bump(sql, misses=1)

        if db.read_only or self._backend() is not db:  # a write: the full check first
            return
        if not self._write(db, change):
            self._count(db, None)

    def flush(self) -> None:
        """Write this process's gathered hits, misses and access times now.

        Lookups are counted in memory and written in batches (at most ``FLUSH_SECONDS``
        apart while the cache is used, or every ``FLUSH_OPS`` lookups), at :meth:`close`, at
        interpreter exit and before :meth:`get_stats` or :meth:`entries` read them, so you
        only need this to make this process's counts visible to *another* process sooner. A
        write that fails (disk full, read-only, locked) is warned about once and the batch is
        dropped. Raises :class:`CacheError` when the database is damaged (the batch is
        dropped too); never raises for a disabled, read-only or refused cache. If the
        directory was deleted or replaced meanwhile, the batch is dropped (the next cache
        operation reopens the directory; a flush, ``close()`` or exit never recreates it).
        """
        db = self._db
        if db is None or self._pending.empty:  # nothing to write: no directory check
            return
        if not self._unchanged(True):  # deleted, swapped or refused: the batch belongs to a
            self._pending.take()  # database that is gone; never recreate a directory for it
            return
        self._flush(db)

    def _flush(self, db: AnyBackend) -> None:
        batch = self._pending.take()
        if not batch or not isinstance(db, Backend):
            return
        try:
            db.write_counts(batch)
        except CacheWriteError as exc:
            self._write_failed(db, exc)
        else:
            self._warned.discard("write")

    # -- set / delete / clear ----------------------------------------------------------------

    def set(
        self,
        agent_name: str,
        task: str,
        model: str,
        response: str,
        input_tokens: int,
        output_tokens: int,
        estimated_cost: float,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_hours: float | None = None,
        **request: Any,
    ) -> bool:
        """Store an answer; return True if stored, False (with a :class:`CacheSkipWarning`)
        when the cache is disabled, the agent is excluded, or the entry exceeds
        ``max_entry_kb``. Also False, with one logged warning per episode instead, when the
        cache is read-only, the write fails (disk full...), or the directory is refused.

        ``metadata`` (a JSON dict: stop reason, request id, cache tokens...) is signed and
        returned by ``get`` but is not part of the key. ``ttl_hours`` overrides the default for
        this entry. Replacing an entry and culling old ones happen in one transaction. Raises
        TypeError for wrongly typed arguments or non-JSON values, :class:`ConfigurationError`
        for a ``ttl_hours`` that is not finite, above 0 and at most ten years (checked before
        anything is written), :class:`CacheError` if the database is damaged.
        """
        key = key_for(agent_name, task, model, **request)
        body = new_body(
            response, agent_name, model, input_tokens, output_tokens, estimated_cost, metadata
        )
        ttl = settings.check_ttl_hours(
            "ttl_hours", self.ttl_hours if ttl_hours is None else ttl_hours
        )
        if self._db is None or agent_name in self._exclude:
            why = "the cache is disabled" if self._db is None else "the agent is excluded"
            return skip_warning(why, agent_name)
        active = self._active(agent_name)
        if active is None:  # refused: already warned
            return False
        db, signer = active
        if len(response) <= self._max_entry_bytes:
            stamp(body, self._clock(), ttl)
            blob = signer.seal(key, body)
            if len(blob) <= self._max_entry_bytes:
                index = (model, body["created_at"], body["expires_at"], body["estimated_cost"])
                return self._put(db, key, blob, agent_name, index)
        self._write(db, lambda sql, _cleanup: Backend.bump(sql, oversized_skipped=1))
        limit = self._max_entry_bytes // 1024
        return skip_warning(f"the entry is larger than max_entry_kb={limit}", agent_name)

    def _put(
        self, db: AnyBackend, key: str, blob: bytes, agent_name: str, index: IndexFields
    ) -> bool:
        if not isinstance(db, Backend):
            self._write_failed(db, CacheWriteError("read-only"))
            return False
        try:
            batch = None if self._pending.empty else self._pending.take()
            db.put(key, blob, tag=agent_name, batch=batch, index=index)
        except CacheWriteError as exc:
            self._write_failed(db, exc)
            return False
        self._warned.discard("write")
        return True

    def delete(self, agent_name: str, task: str, model: str, **request: Any) -> bool:
        """Remove the entry for this request; True if one was removed. Atomic.

        Raises :class:`CacheError` when the cache is read-only or its directory is refused.
        """
        key = key_for(agent_name, task, model, **request)
        db = self._usable("delete entries")
        return db is not None and self._delete_stored(db, key)

    def clear(self, agent_name: str | None = None) -> int:
        """Remove every entry (or only ``agent_name``'s); return how many were removed.

        Works in batches of 100, one transaction each, so other processes keep working.
        Raises :class:`CacheError` when the cache is read-only or its directory is refused.
        """
        db = self._usable("clear entries")
        if not isinstance(db, Backend):
            return 0
        removed, after = 0, 0
        while True:
            with db.transaction() as (sql, cleanup):
                pairs = db.select_for_clear(sql, after, agent_name)
                for rowid, filename in pairs:
                    sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
                    cleanup(filename)
                if pairs:
                    Backend.bump(sql, cleared=len(pairs))
            if not pairs:
                return removed
            removed += len(pairs)
            after = pairs[-1][0]

    # -- inspection --------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters shared by every process using this directory, plus size and settings.

        This process's pending lookups are written first, so its own counts are exact; another
        process's lookups are included once that process has written them (see :meth:`flush`).

        Keys: hits, misses, sets, deletes, evictions, expirations, integrity_failures,
        oversized_skipped, cleared, entries, size_bytes (diskcache's ``volume()``),
        max_size_bytes, max_entry_bytes, hit_rate, ttl_hours, enabled, directory, read_only
        (stored answers are served, nothing is written or counted) and problem (why the
        directory is refused, else None). Never raises for a refused directory: its counts
        read as 0.
        """
        names = (
            "hits",
            "misses",
            "sets",
            "deletes",
            "evictions",
            "expirations",
            "integrity_failures",
            "oversized_skipped",
            "cleared",
            "entries",
        )
        counts = dict.fromkeys(names, 0)
        size = 0
        db = self._backend()
        if db is not None:
            self._flush(db)
            raw = db.read_stats()
            counts = {name: raw[name] for name in names}
            size = int(db.volume())
        lookups = counts["hits"] + counts["misses"]
        return {
            **counts,
            "size_bytes": size,
            "max_size_bytes": self._max_size_bytes,
            "max_entry_bytes": self._max_entry_bytes,
            "hit_rate": counts["hits"] / lookups if lookups else 0.0,
            "ttl_hours": self.ttl_hours,
            "enabled": self.enabled,
            "directory": str(self.directory),
            "read_only": self.read_only,
            "problem": self._refused or None,
        }

    @staticmethod
    def _check_row(signer: Signer, row: Row, data: bytes) -> dict[str, Any]:
        """The verified body of ``row``, whose stored bytes are ``data`` (else IntegrityError)."""
        return body_of(ResponseCache._check_fields(signer, row, data))

    @staticmethod
    def _check_fields(signer: Signer, row: Row, data: bytes) -> Fields:
        """:meth:`_check_row`'s verified fields, their metadata not yet checked (as
        :func:`body_of` does)."""
        key = row[1]
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            raise IntegrityError("stored key is not a SHA-256 hex digest")
        return signer.open_fields(key, data)

    def _verify_page(
        self, sql: Sql, cleanup: Callable[[Any], None], rows: list[Row], report: VerifyReport
    ) -> None:
        assert isinstance(self._db, Backend) and self._signer is not None
        now = self._clock()
        for row in rows:
            report.checked += 1
            try:
                body = self._check_row(self._signer, row, self._db.fetch_value(row))
            except IntegrityError as exc:
                self._db.delete_row(sql, cleanup, row)
                self._db.bump(sql, integrity_failures=1)
                report.invalid.append((str(row[1])[:64], str(exc)))
                continue
            if body["expires_at"] <= now:
                self._db.delete_row(sql, cleanup, row)
                self._db.bump(sql, expirations=1)
                report.expired += 1
            else:
                report.valid += 1

    def verify(self, *, orphan_grace_seconds: float = 600.0) -> VerifyReport:
        """Check every entry's signature and expiry; remove the invalid and the expired.

        Runs in batches of 100 entries, one transaction each (safe alongside other
        processes). Removals are counted as ``integrity_failures`` / ``expirations``. Value
        files that no entry refers to and that are older than ``orphan_grace_seconds`` (so a
        concurrent writer's file, written just before its row is committed, is left alone)
        are removed too.

        In an encrypted cache (``encrypt=True``) entries stored in clear are removed as
        invalid ("stored unencrypted"), their bytes zeroed in ``cache.db`` (SQLite's
        ``secure_delete``) and the write-ahead log truncated: run it once after turning
        encryption on for an existing cache.
        """
        report = VerifyReport()
        db = self._usable("verify (it removes what fails)")
        if db is None:
            return report
        self._flush(db)
        self._verify_entries(report)
        report.orphans_removed = self._remove_orphans(orphan_grace_seconds)
        if self.encrypt and report.removed and isinstance(db, Backend):
            db.truncate_log()  # removed rows (perhaps stored in clear) leave no page images
        return report

    def _remove_orphans(self, grace_seconds: float) -> int:
        assert isinstance(self._db, Backend)
        disk = self._db.disk
        cutoff = time.time() - grace_seconds  # file times are wall-clock, not self._clock
        candidates = [name for name, mtime in disk.value_files() if mtime <= cutoff]
        if not candidates:
            return 0
        referenced = self._db.referenced_files()
        orphans = [name for name in candidates if name not in referenced]
        for name in orphans:
            disk.remove(name)
        return len(orphans)

    def _verify_entries(self, report: VerifyReport) -> None:
        assert isinstance(self._db, Backend)
        after = 0
        while True:
            with self._db.transaction() as (sql, cleanup):
                rows = self._db.page(after, _PAGE, sql)
                self._verify_page(sql, cleanup, rows, report)
            if not rows:
                break
            after = rows[-1][0]
        report.removed = report.expired + len(report.invalid)
        if report.invalid:
            log.warning("cache verify removed %d invalid entries", len(report.invalid))

    def _verified(self, db: AnyBackend) -> Iterator[tuple[Row, int, dict[str, Any]]]:
        """(row, stored size, verified body) of every valid, unexpired entry, oldest row first.

        Reads one page of rows at a time, so at most one page's values are held at once;
        entries that fail their check are skipped (``verify``, ``entry`` remove them).
        """
        assert self._signer is not None
        now, after = self._clock(), 0
        while rows := db.page(after, _PAGE):
            after = rows[-1][0]
            for row in rows:
                try:
                    data = db.fetch_value(row)
                    body = self._check_row(self._signer, row, data)
                except IntegrityError:
                    continue
                if body["expires_at"] > now:
                    yield row, len(data), body

    @staticmethod
    def _listing(row: Row, size: int, body: dict[str, Any]) -> dict[str, Any]:
        """What :meth:`entries` lists for ``row`` (also used by :mod:`.inspect`)."""
        return listing(row[1], size, int(row[5] or 0), body)

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every valid, unexpired entry (no response text), oldest row first.

        Keys: key, agent_name, model, created_at, expires_at, size_bytes, hits, input_tokens,
        output_tokens, estimated_cost, preview (the task's first 200 characters, ``{name}``
        for notebook data; "" for entries stored before previews were kept) and origin
        ("notebook cell [N]", "library", or ""). Entries that fail their check are skipped
        here (call :meth:`verify` to remove them). Reads a consistent page at a time; holds
        no lock; works on a read-only cache. Raises :class:`CacheError` when the directory is
        refused.
        """
        db = self._usable("")
        if db is None or self._signer is None:
            return []
        self._flush(db)
        return [self._listing(row, size, body) for row, size, body in self._verified(db)]

    # -- inspection by key and by text (issue 16) --------------------------------------------

    def resolve_key(self, key: str) -> str | None:
        """The full key for ``key``: a full key or a unique prefix of at least 8 hex digits.

        Returns None when no entry has that key or prefix. Raises :class:`CacheError` for
        something that is not hex, a prefix shorter than 8 digits, or one that more than
        one entry starts with (it names how many, so you can type more digits).
        """
        prefix = check_key_prefix(key)
        db = self._usable("")
        if db is None:
            return None
        found = db.keys_with_prefix(prefix, 2)
        if len(found) > 1:
            raise ambiguous_prefix(prefix)
        return found[0] if found else None

    def entry(self, key: str) -> dict[str, Any] | None:
        """The whole entry under ``key`` (full key or unique prefix, see :meth:`resolve_key`),
        verified; None when there is none or it has expired (an expired one is removed).

        Returns what :meth:`get` returns plus what :meth:`entries` lists (``hits``,
        ``size_bytes``, ``preview``, ``origin``) and ``options`` (the options that shaped the
        key; {} for old entries). An entry that fails its signature check is never returned:
        it is deleted and counted as an integrity failure (unless the cache is read-only),
        and :class:`IntegrityError` is raised saying so. Works without an agent name, so it
        also serves excluded agents' old entries.
        """
        full = self.resolve_key(key)
        db = self._usable("")
        if full is None or db is None or self._signer is None:
            return None
        row = db.read_row(full)
        if row is None:
            return None
        now = self._clock()
        try:
            data = db.fetch_value(row)
            fields = self._check_fields(self._signer, row, data)
            body = body_of(fields)
        except IntegrityError as exc:
            removed = self._drop(db, row, "integrity_failures")
            log.warning("cache entry %s failed its integrity check (%s)", full[:12], exc)
            raise IntegrityError(
                f"The cache entry {full[:12]} failed its integrity check ({exc}): it was "
                "edited or signed with another secret, so it is not shown"
                + (" and was deleted." if removed else " (read-only cache: not deleted).")
            ) from None
        if body["expires_at"] <= now:
            self._drop(db, row, "expirations")
            return None
        public = public_view(full, fields, now, json_copy(body["metadata"]))
        return entry_view(public, self._listing(row, len(data), body), body)

    def _drop(self, db: AnyBackend, row: Row, counter: str) -> bool:
        """Delete ``row`` if it is still the version read, counting ``counter``; True if
        deleted. Nothing is written on a read-only cache; a failed write is warned about."""

        def change(sql: Sql, cleanup: Cleanup) -> None:
            current = Backend.select_key(sql, row[1])
            if current is not None and current[0] == row[0] and current[6] == row[6]:
                Backend.delete_row(sql, cleanup, current)
                Backend.bump(sql, **{counter: 1})

        if db.read_only:
            return False
        return self._write(db, change)

    def delete_key(self, key: str) -> bool:
        """Remove the entry under ``key`` (full key or unique prefix); True if one was
        removed. Atomic, counted as a delete. Raises :class:`CacheError` for a malformed or
        ambiguous key, a read-only cache or a refused directory."""
        full = self.resolve_key(key)
        db = self._usable("delete entries")
        return full is not None and db is not None and self._delete_stored(db, full)

    def touch(self, key: str, ttl_hours: float) -> float | None:
        """Give the entry under ``key`` (full key or unique prefix) a new, re-signed expiry
        ``ttl_hours`` from now, keeping its answer and hits; the new expiry (epoch seconds),
        or None when there is no such entry. See :func:`.inspect.extend_ttl` for the errors."""
        from .inspect import extend_ttl

        return extend_ttl(self, key, ttl_hours)

    @staticmethod
    def _delete_stored(db: AnyBackend, key: str) -> bool:
        """Delete the row stored under ``key`` and count one delete, atomically."""
        with db.transaction() as (sql, cleanup):
            row = Backend.select_key(sql, key)
            if row is None:
                return False
            Backend.delete_row(sql, cleanup, row)
            Backend.bump(sql, deletes=1)
        return True

    def search(
        self, text: str, *, agent: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries whose preview or answer contains ``text`` (case-insensitive), newest first.

        ``agent`` keeps one agent's entries; at most ``limit`` are returned. Each is what
        :meth:`entries` lists (no answer text). Every entry is verified before it is matched
        (forged ones are skipped, as in :meth:`entries`), and rows are read a page at a time,
        so a search never holds every answer in memory. Raises TypeError for a ``text`` that is
        not a non-empty str or a ``limit`` that is not a positive int.
        """
        needle = check_search(text, limit)
        db = self._usable("")
        if db is None or self._signer is None:
            return []
        self._flush(db)
        newest = Newest(limit)  # ties broken by row order
        for row, size, body in self._verified(db):
            if matches(body, needle, agent):
                newest.offer(float(body["created_at"]), row[0], self._listing(row, size, body))
        return newest.newest_first()

    def export(self, path: str | os.PathLike[str], *, force: bool = False) -> int:
        """Write every valid, unexpired entry to ``path`` as JSON lines; return how many.

        Each line has key, agent, model, created and expires (epoch seconds), preview, answer
        and metadata. ``path`` may start with ``~``. The file is created new, ``0600``; an
        existing file is refused unless ``force`` (it is then removed first), and a symlink is
        never followed (refused even with ``force``). Entries are read a page at a time.
        Raises :class:`CacheError` for a file that exists, a symlink, or a file that cannot be
        written; a failed export removes the file it was writing.
        """
        return write_export(path, force, self._write_lines)

    def _write_lines(self, out: TextIO) -> int:
        db = self._usable("")
        if db is None or self._signer is None:
            return 0
        count = 0
        for row, _size, body in self._verified(db):
            out.write(export_line(row[1], body))
            count += 1
        return count
