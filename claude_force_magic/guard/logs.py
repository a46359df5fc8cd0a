"""Safe logging: one record is one line, bounded, and never shows an API key or the cache secret.

Three pieces, used by every module of the package:

* :func:`sanitize_for_log` turns any value into a short, single-line, printable string. Call it
  on every user-supplied string before it goes into a log message (agent names, model names,
  file paths, exception text). Task text is never logged at all, not even sanitized.
* :class:`SecretRedactor` is a :class:`logging.Filter` that replaces registered secrets and
  anything shaped like an Anthropic key (``sk-ant-...``) with ``sk-ant-***`` / ``***``, in the
  message, its arguments and any attached traceback. It also escapes control characters in the
  final message, so a caller that forgot :func:`sanitize_for_log` still cannot forge log lines.
* :func:`get_logger` returns a child of the ``claude_force_magic`` logger with the redactor
  installed. (A filter on a parent logger does not see records created on its children, so the
  redactor has to sit on each logger that creates records.)

The package never adds handlers, never changes levels of loggers it does not own and never
installs warnings filters: where records go is the application's choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
import unicodedata
from collections import deque

from ..settings import Secret

__all__ = ["PACKAGE_LOGGER", "SecretRedactor", "get_logger", "sanitize_for_log"]

PACKAGE_LOGGER = "claude_force_magic"

# ANSI/VT escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and 2-byte ESC x.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_VISIBLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Unicode characters that move text or break lines in terminals and log viewers although they
# are not category Cc: line/paragraph separators and the bidirectional overrides of
# "Trojan Source" (CVE-2021-42574).
_UNSAFE_NON_CC = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_unsafe(ch: str) -> bool:
    return ch in _UNSAFE_NON_CC or unicodedata.category(ch) == "Cc"


def _escape_char(ch: str) -> str:
    visible = _VISIBLE_ESCAPES.get(ch)
    if visible is not None:
        return visible
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise_controls(text: str) -> str:
    """Remove ANSI escape sequences and escape every other control character visibly.

    ``"a\\nb"`` becomes ``"a\\\\nb"`` (a backslash and an ``n``), so the result is one line.
    Pure function; never raises.
    """
    if text.isprintable():
        return text
    text = _ANSI.sub("", text)
    return "".join(_escape_char(ch) if _is_unsafe(ch) else ch for ch in text)


def _truncate(text: str, max_len: int) -> str:
    if len(text) <= max_len:
        return text
    keep = max_len - len(f"…(+{len(text)} chars)")
    if keep <= 0:
        return text[:max_len]
    # the dropped count has at most as many digits as len(text): grow keep while it still fits
    while keep < max_len and keep + 1 + len(f"…(+{len(text) - keep - 1} chars)") <= max_len:
        keep += 1
    return f"{text[:keep]}…(+{len(text) - keep} chars)"


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"


def sanitize_for_log(value: object, max_len: int = 200) -> str:
    """Return ``value`` as one printable line of at most ``max_len`` characters.

    ANSI escape sequences are removed; newlines, carriage returns and tabs become the visible
    two-character escapes ``\\n``, ``\\r``, ``\\t``; every other control character (C0, DEL,
    C1), the Unicode line/paragraph separators and bidirectional overrides become ``\\xNN`` or
    ``\\uNNNN``. So a newline followed by a fake log line stays inside one record (SEC-005).
    Longer results are cut and end with ``…(+N chars)``; the suffix counts towards ``max_len``.
    Non-strings are converted with ``str()`` (bytes with ``repr()``); a :class:`Secret` shows
    as its mask. Thread-safe (pure); raises :class:`ValueError` only if ``max_len`` < 1.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    return _truncate(neutralise_controls(_as_text(value)), max_len)


_ANTHROPIC_KEY = re.compile(r"sk-ant-[A-Za-z0-9_-]{4,}")
_MIN_SECRET_CHARS = 4
_MAX_SECRETS = 64
_PREFIX_CHARS = 4


class _Registry:
    """Fingerprints of registered secrets; never the secrets themselves.

    Each entry keeps the secret's length, its first few characters (to find candidate windows
    quickly) and a keyed BLAKE2b digest under a per-process random key. Bounded to the most
    recent ``_MAX_SECRETS`` registrations.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._entries: deque[tuple[str, int, bytes]] = deque(maxlen=_MAX_SECRETS)

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key).digest()

    def add(self, text: str) -> None:
        entry = (text[:_PREFIX_CHARS], len(text), self._digest(text))
        with self._lock:
            if entry not in self._entries:
                self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def redact(self, text: str) -> str:
        with self._lock:
            entries = tuple(self._entries)
        # Longest first, so a secret that contains a shorter one is replaced whole.
        for prefix, length, digest in sorted(entries, key=lambda e: -e[1]):
            text = self._redact_one(text, prefix, length, digest)
        return text

    def _redact_one(self, text: str, prefix: str, length: int, digest: bytes) -> str:
        start = text.find(prefix)
        while start != -1:
            window = text[start : start + length]
            if len(window) == length and hmac.compare_digest(self._digest(window), digest):
                text = f"{text[:start]}***{text[start + length :]}"
                start = text.find(prefix, start + 3)
            else:
                start = text.find(prefix, start + 1)
        return text


class SecretRedactor(logging.Filter):
    """A logging filter that hides secrets in every record that passes through it.

    Registered secrets (:meth:`register`) are replaced by ``***`` and anything matching
    ``sk-ant-[A-Za-z0-9_-]{4,}`` by ``sk-ant-***``, in the formatted message, the traceback
    text and the stack text. The record's ``args`` are merged into ``msg`` first, so a secret
    passed as an argument is caught too. Control characters in the message are escaped (one
    record, one line). The filter never drops a record and never raises.

    The registry is shared by all instances (one per process), keeps only keyed hashes and
    lengths of the registered secrets, and is bounded to the 64 most recent. It is thread-safe.
    """

    _registry = _Registry()

    @classmethod
    def register(cls, secret: str | bytes | Secret | None) -> None:
        """Remember ``secret`` so it is redacted from all later log records.

        Accepts text, bytes (redacted both as UTF-8 text and as hex) or a :class:`Secret`.
        ``None`` and values shorter than 4 characters are ignored: redacting every occurrence
        of a 3-letter string would garble logs without protecting anything. Never raises.
        """
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value is None:
            return
        texts: list[str] = []
        if isinstance(value, bytes):
            texts.append(value.hex())
            with contextlib.suppress(UnicodeDecodeError):
                texts.append(value.decode("utf-8"))
        else:
            texts.append(value)
        for text in texts:
            if len(text) >= _MIN_SECRET_CHARS:
                cls._registry.add(text)

    @classmethod
    def forget_all(cls) -> None:
        """Drop every registered secret (for tests and for ``%unload_ext``)."""
        cls._registry.clear()

    @classmethod
    def redact(cls, text: str) -> str:
        """Return ``text`` with registered secrets and ``sk-ant-...`` keys replaced."""
        text = _ANTHROPIC_KEY.sub("sk-ant-***", text)
        if len(cls._registry):
            text = cls._registry.redact(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place without secrets or control characters; always True."""
        try:
            message = record.getMessage()
        except Exception:  # bad args: logging would print them raw in handleError
            message = f"{_as_text(record.msg)} (log arguments did not match the format)"
        record.msg = neutralise_controls(self.redact(message))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_REDACTOR = SecretRedactor()
_install_lock = threading.Lock()


def _install(logger: logging.Logger) -> None:
    with _install_lock:
        if not any(isinstance(f, SecretRedactor) for f in logger.filters):
            logger.addFilter(_REDACTOR)


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``claude_force_magic.<name>`` with the :class:`SecretRedactor` on it.

    ``name`` may already start with ``claude_force_magic``; ``__name__`` of any module in the
    package works. The redactor is installed once per logger (and on the package logger).
    Thread-safe; adds no handlers. Raises :class:`ValueError` for a name outside the package.
    """
    if name == PACKAGE_LOGGER or name.startswith(PACKAGE_LOGGER + "."):
        full = name
    elif name and not name.startswith("."):
        full = f"{PACKAGE_LOGGER}.{name}"
    else:
        raise ValueError(f"Logger name must be a dotted module name, got {name!r}")
    _install(logging.getLogger(PACKAGE_LOGGER))
    logger = logging.getLogger(full)
    _install(logger)
    return logger
