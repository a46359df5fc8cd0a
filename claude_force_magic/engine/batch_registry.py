"""The registry of submitted Message Batch jobs: signed files in the cache directory.

A job submitted with :meth:`~.orchestrator.AsyncAgentOrchestrator.submit_batch` outlives the
process: its state is kept in ``<cache directory>/batches/`` so that
:meth:`~.orchestrator.AsyncAgentOrchestrator.batch` re-attaches to it after a kernel restart,
and so that its results are collected (charged, recorded, stored in the response cache)
exactly once, whichever process collects them. Per job::

    <job id>.job     the header: the API batch ids, what was reserved, which batch was
                     collected and what it cost (rewritten as the job moves on; small)
    <job id>.items   one record per item: its custom id, agent, task, options and cache
                     identity (written once, at submission)
    <job id>.lock    an ``flock`` held while a batch of the job is being collected

Both data files are signed like cache entries (:class:`~..cache.signing.Signer`, HMAC-SHA256
with the cache secret, checked before anything is parsed) and bound to their job id and kind,
so a file copied onto another job, an edited file or one signed with another secret is refused
with :class:`~..errors.IntegrityError`. Files are written atomically (a private temporary file,
``fsync``, ``os.replace``) with mode ``0600`` in a ``0700`` directory that must not be a
symlink, owned by someone else, or writable by others (:func:`~..settings.ensure_private_dir`);
they are opened with ``O_NOFOLLOW``. Safe to use from several threads and processes: a reader
sees the old or the new file, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from ..errors import BatchJobNotFoundError, IntegrityError, UnsafePathError
from ..settings import Secret, ensure_private_dir, load_cache_secret

__all__ = ["JOB_ID", "BatchRegistry"]

#: What a job id looks like (``job_`` and 16 hex digits); nothing else names a file here.
JOB_ID = re.compile(r"job_[0-9a-f]{16}")
_SUFFIXES = (".job", ".items")
_MAX_FILE_BYTES = 1 << 31  # 2 GiB: far above 100,000 items of the largest task


def _seal_body(payload: str, now: float) -> dict[str, Any]:
    """The fields a cache envelope must carry, around ``payload`` (the registry's JSON)."""
    return {
        "response": payload,
        "agent_name": "batch-registry",
        "model": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "estimated_cost": 0,
        "created_at": now,
        "expires_at": now,
        "metadata": {},
    }


class BatchRegistry:
    """The jobs registered in ``directory`` (normally ``<cache directory>/batches``).

    ``secret`` signs the files (default: the cache secret, see
    :func:`~..settings.load_cache_secret`). Raises :class:`~..errors.UnsafePathError` for an
    unsafe directory and :class:`~..errors.SecretError` for a bad secret, when built.
    """

    __slots__ = ("_signer", "directory")

    def __init__(
        self, directory: str | os.PathLike[str], *, secret: str | bytes | Secret | None = None
    ) -> None:
        from ..cache.signing import Signer

        self.directory = ensure_private_dir(directory)
        self._signer = Signer(load_cache_secret(secret))

    def __repr__(self) -> str:
        return f"BatchRegistry(directory={str(self.directory)!r})"

    @staticmethod
    def new_id() -> str:
        """A fresh job id."""
        return f"job_{secrets.token_hex(8)}"

    # -- paths -----------------------------------------------------------------------------

    def _path(self, job_id: str, suffix: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise BatchJobNotFoundError(
                f"{job_id!r} is not a batch job id (they look like 'job_0123456789abcdef'; "
                "`%agent batch list` or orch.batch_jobs() shows them)."
            )
        return self.directory / f"{job_id}{suffix}"

    # -- writing ---------------------------------------------------------------------------

    def _write(self, job_id: str, suffix: str, value: Any) -> None:
        path = self._path(job_id, suffix)
        key = f"batch-registry/{job_id}{suffix}"
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        data = self._signer.seal(key, _seal_body(payload, time.time()))
        tmp = self.directory / f".{job_id}{suffix}.{os.getpid()}.{secrets.token_hex(4)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def save_items(self, job_id: str, items: list[dict[str, Any]]) -> None:
        """Write the item records of ``job_id`` (once, before its batches are created)."""
        self._write(job_id, ".items", items)

    def save_header(self, job_id: str, header: dict[str, Any]) -> None:
        """Write (replace) the header of ``job_id``."""
        self._write(job_id, ".job", header)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, job_id: str, suffix: str) -> Any:
        path = self._path(job_id, suffix)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise BatchJobNotFoundError(
                f"No batch job {job_id} in {self.directory}: it was submitted with another "
                "cache directory, or its registry files were deleted."
            ) from None
        except OSError as exc:  # ELOOP: a symlink was planted where the file should be
            raise UnsafePathError(f"Refusing {path}: {exc.strerror}.") from exc
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
                raise UnsafePathError(f"Refusing {path}: not a regular registry file.")
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                raise UnsafePathError(f"Refusing {path}: owned by another user.")
            if st.st_mode & 0o022:
                raise UnsafePathError(
                    f"Refusing {path}: writable by group or others. Fix it with: chmod 600 {path}"
                )
            data = src.read()
        try:
            body = self._signer.open(f"batch-registry/{job_id}{suffix}", data)
            return json.loads(body["response"])
        except IntegrityError as exc:
            raise IntegrityError(
                f"The batch registry file {path} failed its signature check ({exc}): it was "
                "edited, copied from another job or signed with another cache secret, and is "
                "not trusted. Delete it (the job can no longer be re-attached), or restore the "
                "cache secret it was written with."
            ) from None
        except ValueError as exc:
            raise IntegrityError(f"The batch registry file {path} is not valid JSON.") from exc

    def load_header(self, job_id: str) -> dict[str, Any]:
        """The header of ``job_id``. Raises :class:`~..errors.BatchJobNotFoundError`,
        :class:`~..errors.IntegrityError` (tampered) or :class:`~..errors.UnsafePathError`."""
        header = self._read(job_id, ".job")
        if not isinstance(header, dict) or header.get("job_id") != job_id:
            raise IntegrityError(f"The batch registry header of {job_id} is malformed.")
        return header

    def load_items(self, job_id: str) -> list[dict[str, Any]]:
        """The item records of ``job_id`` (same errors as :meth:`load_header`)."""
        items = self._read(job_id, ".items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise IntegrityError(f"The batch registry items of {job_id} are malformed.")
        return items

    def job_ids(self) -> list[str]:
        """Every registered job id, newest file first."""
        found: list[tuple[float, str]] = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                stem, _, suffix = entry.name.partition(".")
                if (
                    suffix == "job"
                    and JOB_ID.fullmatch(stem)
                    and entry.is_file(follow_symlinks=False)
                ):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, stem))
        return [job_id for _, job_id in sorted(found, reverse=True)]

    def find(self, job_or_batch_id: str) -> str:
        """The job id of ``job_or_batch_id``: a job id, or the id of one of its API batches
        (``msgbatch_...``). Raises :class:`~..errors.BatchJobNotFoundError`."""
        if isinstance(job_or_batch_id, str) and JOB_ID.fullmatch(job_or_batch_id):
            self._read(job_or_batch_id, ".job")  # raises if it is not there
            return job_or_batch_id
        for job_id in self.job_ids():
            with contextlib.suppress(IntegrityError, UnsafePathError, BatchJobNotFoundError):
                header = self.load_header(job_id)
                if any(b.get("id") == job_or_batch_id for b in header.get("batches", [])):
                    return job_id
        raise BatchJobNotFoundError(
            f"No batch job or Message Batch {job_or_batch_id!r} is registered in "
            f"{self.directory}. `%agent batch list` (or orch.batch_jobs()) shows the jobs."
        )

    def delete(self, job_id: str) -> None:
        """Forget ``job_id`` (its files; the API's batches are not touched)."""
        for suffix in (*_SUFFIXES, ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(job_id, suffix))

    def acquire(self, job_id: str) -> int:
        """Take the job's exclusive lock, blocking until it is free (one collector at a time,
        across processes and threads); returns the handle for :meth:`release`. Blocks: call
        it from a worker thread, not on an event loop. A dead process's lock is released."""
        path = self._path(job_id, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def release(handle: int) -> None:
        """Release a lock taken with :meth:`acquire`."""
        os.close(handle)
