"""A diskcache ``Disk`` that stores only bytes, never unpickles and never leaves its directory.

diskcache's default ``Disk`` unpickles whatever a row's ``mode`` column says and joins the
row's ``filename`` column onto the cache directory; anyone able to write ``cache.db`` could
run code on the next ``get`` or make ``delete`` remove any file. :class:`SafeDisk` closes both:

* keys must be ``str`` and values ``bytes`` (anything else: ``TypeError``);
* a row in any mode other than raw or binary raises :class:`IntegrityError` (never unpickled);
* value files are named only ``xx/yy/<28 hex>.val``; any other name (absolute, ``..``) is
  refused on read and ignored on delete;
* value files are reached by walking directory descriptors with ``O_NOFOLLOW`` from the cache
  directory, created ``0600`` in ``0700`` sub-directories; reads open with ``O_NONBLOCK`` (a
  FIFO cannot hang them), accept only regular files and are size-bounded.

Every method is safe to call from several threads and processes at once (each call opens its
own descriptors; concurrent deletes of the same file are tolerated).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import reprlib
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

from ..errors import CacheError, IntegrityError
from ..guard.logs import get_logger

__all__ = ["VALUE_NAME", "CacheWriteError", "SafeDisk", "split_value_name"]

log = get_logger("claude_force_magic.cache")  # with the secret redactor (SEC-005)

#: The only value-file names this Disk creates, reads or deletes.
VALUE_NAME = re.compile(r"\A([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{28})\.val\Z")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# O_NONBLOCK: a value file swapped for a FIFO must not block the open (inside a write lock).
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
#: Default upper bound on one value read back (a forged huge file must not exhaust memory).
DEFAULT_MAX_VALUE_BYTES = 16 * 2**20


class CacheWriteError(CacheError):
    """A cache write failed, but reads can go on: the disk is full, the file system or the
    database is read-only, the database stayed locked, or a file could not be written.

    :class:`ResponseCache` never lets this reach its caller: a hit is still served, a store is
    skipped, and one warning says why.
    """


#: Errors of a value-file write that leave reads working.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", errno.ENOSPC)}
)


def split_value_name(name: object) -> tuple[str, str, str]:
    """Return the (dir, sub-dir, file) parts of a value-file name, or raise IntegrityError."""
    match = VALUE_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise IntegrityError("value file name does not match the cache's own pattern")
    first, second, stem = match.groups()
    return first, second, stem + ".val"


@contextlib.contextmanager
def _dir_fd(name: str, parent: int | None = None) -> Iterator[int]:
    """Open directory ``name`` (relative to ``parent``) without following a symlink."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _scan_dirs(path: str, pattern: re.Pattern[str]) -> list[os.DirEntry[str]]:
    """Real (not symlinked) sub-directories of ``path`` whose names match ``pattern``."""
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if pattern.match(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _ensure_subdir(parent: int, name: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)


class SafeDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no type hints
    """Serialize ``str`` keys and ``bytes`` values for :class:`diskcache.Cache`, safely.

    ``min_file_size`` (diskcache's ``disk_min_file_size``) decides when a value goes to its
    own file. ``max_value_bytes`` bounds what is read back. ``pickle_protocol`` is accepted
    because diskcache passes it, and ignored: nothing is ever pickled.
    """

    def __init__(
        self,
        directory: str,
        min_file_size: int = 2**15,
        pickle_protocol: int = 0,
        **unknown: Any,
    ) -> None:
        if unknown:
            # diskcache builds these from the Settings table, which others could edit.
            log.warning("ignoring unknown disk settings in cache.db: %d item(s)", len(unknown))
        super().__init__(directory, min_file_size=int(min_file_size), pickle_protocol=0)
        self.max_value_bytes = DEFAULT_MAX_VALUE_BYTES

    # -- keys ------------------------------------------------------------------------------

    def put(self, key: object) -> tuple[str, bool]:
        """Return the database form of ``key`` (itself); TypeError unless it is a str."""
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, not {type(key).__name__}")
        return key, True

    def get(self, key: object, raw: object) -> str:
        """Return a stored key; IntegrityError for anything but a raw str (never unpickles)."""
        if raw and type(key) is str:
            return key
        raise IntegrityError("stored key is not a raw str")

    # -- values ----------------------------------------------------------------------------

    def store(self, value: object, read: bool, key: object = UNKNOWN) -> tuple[Any, ...]:
        """Return ``(size, mode, filename, db_value)`` for ``value``, writing a file if large.

        Raises TypeError unless ``value`` is bytes (file-like ``read=True`` is refused too).
        """
        if read or type(value) is not bytes:
            raise TypeError(f"cache values must be bytes, not {type(value).__name__}")
        if len(value) < self.min_file_size:
            return 0, MODE_RAW, None, sqlite3.Binary(value)
        filename, _full_path = self.filename()
        self._write_value(filename, value)
        return len(value), MODE_BINARY, filename, None

    def fetch(self, mode: object, filename: object, value: object, read: bool) -> bytes:
        """Return the stored bytes of a row.

        Raises IntegrityError for any mode but raw/binary (pickle is never loaded), a raw
        value that is not bytes, a file name not of our pattern, a symlinked, missing, or
        oversized value file. ``read=True`` (file handles) is refused with TypeError.
        """
        if read:
            raise TypeError("SafeDisk does not hand out file handles")
        if mode == MODE_RAW:
            if type(value) is not bytes:
                raise IntegrityError("inline value is not bytes")
            return value
        if mode == MODE_BINARY:
            return self._read_value(filename)
        shown = reprlib.repr(mode)  # the column is forgeable: bounded, escaped
        raise IntegrityError(f"row has storage mode {shown}; only raw and binary are accepted")

    def filename(self, key: object = UNKNOWN, value: object = UNKNOWN) -> tuple[str, str]:
        """Return a fresh random ``(relative name, full path)`` of our value-file pattern."""
        hex_name = secrets.token_hex(16)
        name = f"{hex_name[:2]}/{hex_name[2:4]}/{hex_name[4:]}.val"
        return name, os.path.join(self._directory, name)

    def remove(self, file_path: object) -> None:
        """Delete one value file of our pattern inside the cache directory.

        Names not of our pattern are ignored (logged), so a forged row can never make the cache
        delete another file. OSError is suppressed, as diskcache expects: two processes may
        remove the same file at once.
        """
        try:
            first, second, name = split_value_name(file_path)
        except IntegrityError:
            log.warning("refused to delete a value file with a forged name")
            return
        with contextlib.suppress(OSError), _dir_fd(self._directory) as root:
            with _dir_fd(first, root) as fd1:
                with _dir_fd(second, fd1) as fd2, contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd2)
                with contextlib.suppress(OSError):
                    os.rmdir(second, dir_fd=fd1)
            with contextlib.suppress(OSError):
                os.rmdir(first, dir_fd=root)

    def value_files(self) -> Iterator[tuple[str, float]]:
        """Yield ``(name, mtime)`` of every value file of our pattern, without following links.

        Used by ``verify`` to find files a killed writer left behind without a row.
        """
        hex2 = re.compile(r"\A[0-9a-f]{2}\Z")
        for first in _scan_dirs(self._directory, hex2):
            for second in _scan_dirs(first.path, hex2):
                found: list[tuple[str, float]] = []
                # Other processes delete entries (and emptied directories) meanwhile: skip
                # whatever vanished instead of failing the sweep.
                with contextlib.suppress(OSError), os.scandir(second.path) as leaves:
                    for leaf in leaves:
                        name = f"{first.name}/{second.name}/{leaf.name}"
                        if VALUE_NAME.match(name) and leaf.is_file(follow_symlinks=False):
                            with contextlib.suppress(OSError):
                                found.append((name, leaf.stat(follow_symlinks=False).st_mtime))
                yield from found

    # -- file helpers ----------------------------------------------------------------------

    def _write_value(self, filename: str, data: bytes) -> None:
        """Write a new value file; raises :class:`CacheError` (never a bare OSError) when it
        cannot: disk full, permissions, or a directory swapped for a symlink."""
        first, second, name = split_value_name(filename)
        for attempt in range(10):
            try:
                with _dir_fd(self._directory) as root:
                    _ensure_subdir(root, first)
                    with _dir_fd(first, root) as fd1:
                        _ensure_subdir(fd1, second)
                        with _dir_fd(second, fd1) as fd2:
                            fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=fd2)
                            try:
                                with os.fdopen(fd, "wb") as out:
                                    out.write(data)
                            except OSError:
                                with contextlib.suppress(OSError):  # no partial file left
                                    os.unlink(name, dir_fd=fd2)
                                raise
                return
            except FileNotFoundError as exc:
                # Another process removed the (empty) sub-directory between mkdir and open.
                if attempt == 9:
                    raise CacheError(f"could not write a cache value file: {exc.strerror}") from exc
            except OSError as exc:
                why = exc.strerror
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    why = "the cache directory or a sub-directory is a symlink or not a directory"
                kind = CacheWriteError if exc.errno in _WRITE_ERRNOS else CacheError
                raise kind(f"could not write a cache value file: {why}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_value(self, filename: object) -> bytes:
        first, second, name = split_value_name(filename)
        try:
            with (
                _dir_fd(self._directory) as root,
                _dir_fd(first, root) as fd1,
                _dir_fd(second, fd1) as fd2,
            ):
                fd = os.open(name, _READ_FLAGS, dir_fd=fd2)
            with os.fdopen(fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise IntegrityError("value file is not a regular file")
                if st.st_size > self.max_value_bytes:
                    raise IntegrityError("value file is larger than any entry the cache writes")
                # The file's own size (+1: a file that grew since reads long and fails its
                # signature), not the bound: read(n) allocates n bytes before it reads.
                return handle.read(st.st_size + 1)
        except FileNotFoundError as exc:
            raise IntegrityError("value file is missing") from exc
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise IntegrityError("value file or its directory is a symlink") from exc
            raise CacheError(f"could not read a cache value file: {exc.strerror}") from exc
