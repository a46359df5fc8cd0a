"""``ResponseCache``: signed, bounded, process-safe storage of model answers.

Each answer is a signed envelope (:mod:`.signing`) stored in a ``diskcache.Cache``
(:mod:`.backend`) through a Disk that never unpickles (:mod:`.disk`). Anything that fails a
check is counted as an integrity failure, deleted, and served as a miss.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import settings
from ..errors import IntegrityError
from ..guard.logs import SecretRedactor, get_logger, sanitize_for_log
from ..settings import Secret
from ..validation import check_number
from .backend import Backend, Row, Sql
from .keys import key_for, require_json
from .signing import Signer
from .verify import VerifyReport

__all__ = ["CacheSkipWarning", "ResponseCache"]

log = get_logger("claude_force_magic.cache")  # with the secret redactor (SEC-005)

_KEY_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
_PAGE = 100
_MIN_READ_BOUND = 16 * 2**20


class CacheSkipWarning(UserWarning):
    """A response was not stored: the cache is disabled, the agent excluded, or it was too big."""


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _cost(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"estimated_cost must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise TypeError(f"estimated_cost must be a finite non-negative number, not {value!r}")
    return number


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
    decides creation and expiry and can be replaced in tests.

    Safe to share between threads and to use from many processes on one directory: every
    change and every statistic is one SQLite transaction. Database failures (a lock held for
    over 60 s, a damaged file) raise :class:`CacheError`; a damaged or forged *entry* never
    raises, it is a miss.
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
    ) -> None:
        self.ttl_hours = check_number("ttl_hours", ttl_hours)
        self._max_size_bytes = int(check_number("max_size_mb", max_size_mb) * 2**20)
        self._max_entry_bytes = int(check_number("max_entry_kb", max_entry_kb) * 1024)
        if isinstance(exclude_agents, str):
            exclude_agents = (exclude_agents,)
        self._exclude = frozenset(exclude_agents)
        self._clock = clock
        self.enabled = bool(enabled)
        target = cache_dir if cache_dir is not None else settings.cache_dir()
        self.directory = Path(os.path.abspath(os.fspath(target)))
        self._signer: Signer | None = None
        self._db: Backend | None = None
        if not self.enabled:
            if cache_secret is not None:
                settings.load_cache_secret(cache_secret)  # validate; writes nothing
            return
        secret = settings.load_cache_secret(cache_secret)
        SecretRedactor.register(secret)  # redacted from every package log record (SEC-005)
        self._signer = Signer(secret)
        self.directory = settings.ensure_private_dir(self.directory)
        self._db = Backend(
            self.directory,
            size_limit=self._max_size_bytes,
            max_value_bytes=max(4 * self._max_entry_bytes, _MIN_READ_BOUND),
        )

    def __repr__(self) -> str:
        return (
            f"ResponseCache(directory={str(self.directory)!r}, enabled={self.enabled}, "
            f"ttl_hours={self.ttl_hours:g}, max_size_mb={self._max_size_bytes / 2**20:g}, "
            f"max_entry_kb={self._max_entry_bytes / 1024:g})"
        )

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
        """Close this thread's database connection; using the cache again reopens it."""
        if self._db is not None:
            self._db.close()

    # -- keys -------------------------------------------------------------------------------

    def key_for(self, agent_name: str, task: str, model: str, **request: Any) -> str:
        """The hex SHA-256 key of a request (see :func:`keys.key_for`); TypeError if not JSON."""
        return key_for(agent_name, task, model, **request)

    def _active(self, agent_name: str) -> tuple[Backend, Signer] | None:
        if self._db is None or self._signer is None or agent_name in self._exclude:
            return None
        return self._db, self._signer

    # -- get ---------------------------------------------------------------------------------

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> dict[str, Any] | None:
        """Return the cached answer for this request, or None.

        A hit refreshes the entry's least-recently-used position and counts one hit for it.
        Expired, forged or damaged entries are deleted and reported as misses (counted as
        ``expirations`` or ``integrity_failures``); they never raise. Disabled caches and
        excluded agents return None without counting. Raises TypeError for non-JSON request
        values and :class:`CacheError` when the database itself fails.
        """
        key = key_for(agent_name, task, model, **request)
        active = self._active(agent_name)
        if active is None:
            return None
        db, signer = active
        now = self._clock()
        failure = ""
        with db.transaction() as (sql, cleanup):
            row = db.select_key(sql, key)
            if row is None:
                db.bump(sql, misses=1)
                return None
            try:
                body = signer.open(key, db.fetch_value(row))
            except IntegrityError as exc:
                db.delete_row(sql, cleanup, row)
                db.bump(sql, integrity_failures=1, misses=1)
                failure = str(exc)
            else:
                if body["expires_at"] <= now:
                    db.delete_row(sql, cleanup, row)
                    db.bump(sql, expirations=1, misses=1)
                    return None
                db.touch(sql, row[0])  # counts the hit (trigger)
        if failure:
            log.warning(
                "cache entry %s for agent %s failed its integrity check (%s); deleted",
                key[:12],
                sanitize_for_log(agent_name, 64),
                failure,
            )
            return None
        return self._public(key, body, now)

    @staticmethod
    def _public(key: str, body: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "response": body["response"],
            "agent_name": body["agent_name"],
            "model": body["model"],
            "input_tokens": body["input_tokens"],
            "output_tokens": body["output_tokens"],
            "estimated_cost": float(body["estimated_cost"]),
            "created_at": float(body["created_at"]),
            "expires_at": float(body["expires_at"]),
            "age_seconds": max(0.0, now - body["created_at"]),
            "metadata": body["metadata"],
            "key": key,
        }

    # -- set / delete / clear ----------------------------------------------------------------

    def _skip(self, reason: str, agent_name: str) -> bool:
        message = f"Response not cached for agent {sanitize_for_log(agent_name, 64)}: {reason}."
        log.info(message)
        warnings.warn(message, CacheSkipWarning, stacklevel=3)
        return False

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
        ``max_entry_kb``.

        ``metadata`` (a JSON dict: stop reason, request id, cache tokens...) is signed and
        returned by ``get`` but is not part of the key. ``ttl_hours`` overrides the default for
        this entry. Replacing an entry and culling old ones happen in one transaction. Raises
        TypeError for wrongly typed arguments or non-JSON values, :class:`ConfigurationError`
        for a non-positive ``ttl_hours``, :class:`CacheError` if the database fails.
        """
        key = key_for(agent_name, task, model, **request)
        if not isinstance(response, str):
            raise TypeError(f"response must be a str, not {type(response).__name__}")
        body = {
            "response": response,
            "agent_name": agent_name,
            "model": model,
            "input_tokens": _count("input_tokens", input_tokens),
            "output_tokens": _count("output_tokens", output_tokens),
            "estimated_cost": _cost(estimated_cost),
            "created_at": 0.0,
            "expires_at": 0.0,
            "metadata": {} if metadata is None else metadata,
        }
        if not isinstance(body["metadata"], dict):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        require_json(body["metadata"], "metadata")
        ttl = self.ttl_hours if ttl_hours is None else check_number("ttl_hours", ttl_hours)
        active = self._active(agent_name)
        if active is None:
            why = "the cache is disabled" if self._db is None else "the agent is excluded"
            return self._skip(why, agent_name)
        db, signer = active
        if len(response) <= self._max_entry_bytes:
            now = self._clock()
            body["created_at"] = now
            body["expires_at"] = now + ttl * 3600.0
            blob = signer.seal(key, body)
            if len(blob) <= self._max_entry_bytes:
                db.put(key, blob, tag=agent_name)
                return True
        with db.transaction() as (sql, _cleanup):
            db.bump(sql, oversized_skipped=1)
        limit = self._max_entry_bytes // 1024
        return self._skip(f"the entry is larger than max_entry_kb={limit}", agent_name)

    def delete(self, agent_name: str, task: str, model: str, **request: Any) -> bool:
        """Remove the entry for this request; True if one was removed. Atomic."""
        key = key_for(agent_name, task, model, **request)
        if self._db is None:
            return False
        db = self._db
        with db.transaction() as (sql, cleanup):
            row = db.select_key(sql, key)
            if row is None:
                return False
            db.delete_row(sql, cleanup, row)
            db.bump(sql, deletes=1)
        return True

    def clear(self, agent_name: str | None = None) -> int:
        """Remove every entry (or only ``agent_name``'s); return how many were removed.

        Works in batches of 100, one transaction each, so other processes keep working.
        """
        if self._db is None:
            return 0
        db, removed, after = self._db, 0, 0
        while True:
            with db.transaction() as (sql, cleanup):
                pairs = db.select_for_clear(sql, after, agent_name)
                for rowid, filename in pairs:
                    sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
                    cleanup(filename)
                if pairs:
                    db.bump(sql, cleared=len(pairs))
            if not pairs:
                return removed
            removed += len(pairs)
            after = pairs[-1][0]

    # -- inspection --------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters shared by every process using this directory, plus size and settings.

        Keys: hits, misses, sets, deletes, evictions, expirations, integrity_failures,
        oversized_skipped, cleared, entries, size_bytes (diskcache's ``volume()``),
        max_size_bytes, max_entry_bytes, hit_rate, ttl_hours, enabled, directory.
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
        if self._db is not None:
            raw = self._db.read_stats()
            counts = {name: raw[name] for name in names}
            size = int(self._db.volume())
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
        }

    @staticmethod
    def _check_row(signer: Signer, row: Row, data: bytes) -> dict[str, Any]:
        """The verified body of ``row``, whose stored bytes are ``data`` (else IntegrityError)."""
        key = row[1]
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            raise IntegrityError("stored key is not a SHA-256 hex digest")
        return signer.open(key, data)

    def _verify_page(
        self, sql: Sql, cleanup: Callable[[Any], None], rows: list[Row], report: VerifyReport
    ) -> None:
        assert self._db is not None and self._signer is not None
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
        """
        report = VerifyReport()
        if self._db is None:
            return report
        self._verify_entries(report)
        report.orphans_removed = self._remove_orphans(orphan_grace_seconds)
        return report

    def _remove_orphans(self, grace_seconds: float) -> int:
        assert self._db is not None
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
        assert self._db is not None
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

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every valid, unexpired entry (no response text), oldest row first.

        Keys: key, agent_name, model, created_at, expires_at, size_bytes, hits, input_tokens,
        output_tokens, estimated_cost. Entries that fail their check are skipped here (call
        :meth:`verify` to remove them). Reads a consistent page at a time; holds no lock.
        """
        if self._db is None or self._signer is None:
            return []
        found: list[dict[str, Any]] = []
        now, after = self._clock(), 0
        while rows := self._db.page(after, _PAGE):
            after = rows[-1][0]
            for row in rows:
                try:
                    data = self._db.fetch_value(row)
                    body = self._check_row(self._signer, row, data)
                except IntegrityError:
                    continue
                if body["expires_at"] <= now:
                    continue
                found.append(
                    {
                        "key": row[1],
                        "agent_name": body["agent_name"],
                        "model": body["model"],
                        "created_at": float(body["created_at"]),
                        "expires_at": float(body["expires_at"]),
                        "size_bytes": len(data),
                        "hits": int(row[5] or 0),
                        "input_tokens": body["input_tokens"],
                        "output_tokens": body["output_tokens"],
                        "estimated_cost": float(body["estimated_cost"]),
                    }
                )
        return found
