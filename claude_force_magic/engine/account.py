"""A spend account that outlives the process: a signed, append-only ledger file.

:class:`SpendAccount` keeps what was spent against a budget in one file (the notebook keeps it
in the response-cache directory, so simulated spend stays apart from live spend). Each line is
one JSON record, ``charge`` (USD) or ``reset``, signed with the cache secret (HMAC-SHA256) and
chained to the record before it (a sequence number and the previous signature). Appends take
an exclusive ``flock`` and reads a shared one, so several kernels can spend from one account
at once without losing a charge.

Tamper evidence: an edited, forged, reordered or deleted record, or a line cut short, breaks the
signature or the chain. The account then warns once (:class:`SpendAccountWarning`) and reports
itself ``damaged``; :class:`~.budget.Budget` refuses every call under a limit until
:meth:`SpendAccount.reset` records a fresh start, so damage can never silently lower the spend.
Limits: removing whole records from the *end* of the file cannot be told apart from those
charges never having been made, except by a process that had already read them (it notices
the shorter file and reports the damage).

The window decides which charges since the last reset count: ``total`` (all of them),
``day`` (since local midnight) or ``session`` (those made by this Python process: a kernel
restart starts a new session; ``%reload_ext`` does not).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hmac
import json
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigurationError, UnsafePathError
from ..settings import Secret

__all__ = [
    "SESSION_ID",
    "WINDOWS",
    "SpendAccount",
    "SpendAccountWarning",
    "check_window",
]

#: The budget windows a :class:`SpendAccount` understands.
WINDOWS: tuple[str, ...] = ("total", "day", "session")
#: Identifies this process's charges for the ``session`` window (fixed at first import, so
#: re-importing the extension keeps it; a new process gets a new one).
SESSION_ID = f"{os.getpid()}-{time.time_ns()}"
_DOMAIN = b"claude-force-magic/spend\x00\x01"
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class SpendAccountWarning(UserWarning):
    """The spend account file was altered, damaged or could not be used."""


@dataclass(frozen=True)
class _Charge:
    at: float
    usd: float
    session: str


@dataclass
class _Tally:
    """Running sums per window, so reading the spend stays O(1) however long the ledger."""

    total: float = 0.0
    session: float = 0.0
    recent: deque[_Charge] = field(default_factory=deque)  # for ``day``; older ones pruned

    def add(self, charge: _Charge) -> None:
        self.total += charge.usd
        if charge.session == SESSION_ID:
            self.session += charge.usd
        self.recent.append(charge)

    def clear(self) -> None:
        self.total = self.session = 0.0
        self.recent.clear()

    def value(self, window: str, since: float) -> float:
        if window == "total":
            return self.total
        if window == "session":
            return self.session
        while self.recent and self.recent[0].at < since:  # midnight only moves forward
            self.recent.popleft()
        return sum(c.usd for c in self.recent if c.at >= since)


def check_window(window: object) -> str:
    """``window`` if it is one of :data:`WINDOWS`; else :class:`ConfigurationError`."""
    if window not in WINDOWS:
        raise ConfigurationError(
            f"The budget window must be one of {', '.join(WINDOWS)}, got {window!r}: "
            "day = since local midnight, session = since this kernel started, "
            "total = since the last reset."
        )
    return str(window)


def _local_midnight(now: float) -> float:
    today = dt.datetime.fromtimestamp(now).date()
    return dt.datetime.combine(today, dt.time()).timestamp()


class SpendAccount:
    """USD spent, persisted in ``path`` and shared by every process that opens it.

    ``secret`` signs the records (default: the cache secret, see
    :func:`~..settings.load_cache_secret`); ``window`` is one of :data:`WINDOWS`. The file is
    created ``0600`` (its directory ``0700``) on the first charge. Thread-safe. Raises
    :class:`ConfigurationError` for a bad window, :class:`~..errors.SecretError` for a bad
    secret. I/O failures never raise from :meth:`charge` or :meth:`spent`: they warn once
    and the charge is kept in memory (and still counted) instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        secret: str | bytes | Secret | None = None,
        window: str = "total",
        clock: Callable[[], float] = time.time,
    ) -> None:
        from ..settings import load_cache_secret

        self._path = Path(os.path.abspath(os.fspath(path)))
        self._key = load_cache_secret(secret).as_bytes()
        self._window = check_window(window)
        self._clock = clock
        self._lock = threading.Lock()
        self._offset = 0
        self._seq = 0
        self._mac = ""
        self._charges = _Tally()  # since the last reset
        self._unrecorded = _Tally()  # charges the file could not take
        self._damage: str | None = None
        self._trust_after = 0  # only a reset after this sequence number clears damage
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"SpendAccount({str(self._path)!r}, window={self._window!r})"

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    @property
    def window(self) -> str:
        """Which charges count: ``total``, ``day`` or ``session`` (see the module docs)."""
        return self._window

    def set_window(self, window: str) -> None:
        """Change the window; raises :class:`ConfigurationError` for an unknown one."""
        self._window = check_window(window)

    @property
    def damaged(self) -> str | None:
        """Why the ledger cannot be trusted since its last reset, or None when it is intact."""
        with self._lock:
            self._sync()
            return self._damage

    def spent(self) -> float:
        """USD charged in the current window since the last reset (all processes)."""
        with self._lock:
            self._sync()
            since = _local_midnight(self._clock()) if self._window == "day" else 0.0
            return self._charges.value(self._window, since) + self._unrecorded.value(
                self._window, since
            )

    def charge(self, usd: float) -> None:
        """Record ``usd`` spent (a no-op for 0 or less, or for a non-finite amount)."""
        if not (isinstance(usd, (int, float)) and math.isfinite(usd) and usd > 0):
            return
        with self._lock:
            entry = _Charge(self._clock(), float(usd), SESSION_ID)
            if not self._append("charge", entry):
                self._unrecorded.add(entry)

    def reset(self) -> None:
        """Start over: record a reset; earlier charges (and earlier damage) no longer count."""
        with self._lock:
            self._trust_after = 0  # this reset is deliberate: it clears any damage seen
            if not self._append("reset", _Charge(self._clock(), 0.0, SESSION_ID)):
                self._charges.clear()
                self._damage = None
            self._unrecorded.clear()

    # ------------------------------------------------------------------ internals

    def _sign(self, record: dict[str, object]) -> str:
        return hmac.new(self._key, _DOMAIN + _ENCODER.encode(record).encode(), "sha256").hexdigest()

    def _warn(self, reason: str) -> None:
        if reason in self._warned:
            return
        self._warned.add(reason)
        from ..guard import get_logger

        message = f"Spend account {self._path}: {reason}"
        get_logger(__name__).warning("%s", message)
        warnings.warn(message, SpendAccountWarning, stacklevel=3)

    def _damaged(self, reason: str) -> None:
        if self._damage is None:  # the first damage names the cause; warned after the read
            self._damage = reason

    def _report_damage(self) -> None:
        """Warn (once per cause) about damage that no later reset has cleared."""
        if self._damage is not None:
            self._warn(
                f"{self._damage}. Spending is treated as over any budget until the account "
                "is reset (`%agent budget reset`, or SpendAccount.reset())."
            )

    @contextlib.contextmanager
    def _open(self, *, write: bool) -> Iterator[int]:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY
        fd = os.open(self._path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            yield fd
        finally:
            os.close(fd)  # also releases the lock

    def _sync(self, fd: int | None = None) -> None:
        """Read records appended since the last read (by any process)."""
        try:
            if fd is not None:
                self._read(fd)
            else:
                with self._open(write=False) as own:
                    self._read(own)
        except FileNotFoundError:
            if self._offset:
                self._damaged("the ledger file disappeared")
        except OSError as exc:
            self._warn(f"could not be read ({type(exc).__name__}: {exc}); using what is known")
        self._report_damage()

    def _read(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < self._offset:
            self._damaged("the ledger file is shorter than when it was last read (truncated)")
            self._trust_after = max(self._trust_after, self._seq)
            self._offset = self._seq = 0
            self._mac = ""
            self._charges.clear()
        if size == self._offset:
            return
        data = os.pread(fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1
        if end < len(data):  # writers hold the lock, so a partial line is damage
            self._damaged("its last line was cut short")
            end = len(data)
        for line in data[:end].splitlines():
            if line.strip():
                self._apply(line)
        self._offset += end

    def _apply(self, line: bytes) -> None:
        try:
            record = json.loads(line)
            mac = record.pop("mac")
            valid = isinstance(mac, str) and hmac.compare_digest(mac, self._sign(record))
        except (ValueError, TypeError, AttributeError, KeyError):
            valid = False
        if not valid:
            self._damaged("a record failed its signature check (edited, forged or damaged)")
            return
        if record.get("seq") != self._seq + 1 or record.get("prev") != self._mac:
            self._damaged("records are missing or out of order")
        self._seq, self._mac = int(record["seq"]), mac
        if record.get("kind") == "reset":
            self._charges.clear()
            if self._seq > self._trust_after:
                self._damage = None
        elif record.get("kind") == "charge":
            self._charges.add(
                _Charge(float(record["t"]), float(record["usd"]), str(record["session"]))
            )

    def _append(self, kind: str, entry: _Charge) -> bool:
        """Sign and append one record under the exclusive lock; False if the file failed."""
        from ..settings import ensure_private_dir

        try:
            ensure_private_dir(self._path.parent)  # the cache's own rules: ours, 0700, no link
            with self._open(write=True) as fd:
                self._sync(fd)
                record: dict[str, object] = {
                    "seq": self._seq + 1,
                    "prev": self._mac,
                    "kind": kind,
                    "t": entry.at,
                    "usd": entry.usd,
                    "session": entry.session,
                }
                record["mac"] = self._sign(record)
                line = _ENCODER.encode(record).encode() + b"\n"
                if self._offset and os.pread(fd, 1, self._offset - 1) != b"\n":
                    line = b"\n" + line  # never glue a record onto a cut-off line
                os.write(fd, line)
                self._sync(fd)
                return True
        except (OSError, UnsafePathError) as exc:
            self._warn(
                f"could not be written ({type(exc).__name__}: {exc}); spending is kept in "
                "memory for this session only"
            )
            return False
