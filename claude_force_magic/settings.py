"""Where claude-force-magic keeps its files, which environment variables it reads, and secrets.

Environment variables (all optional):

``ANTHROPIC_API_KEY``
    The API key for the Messages API.
``CLAUDE_CACHE_SECRET``
    The HMAC secret that signs cache entries (at least 16 bytes). When unset, a random
    32-byte key is generated once in :func:`config_dir` as ``cache.key`` with mode 0600.
``CLAUDE_CACHE_DIR``
    The response cache directory (default: the user's cache directory).
``CLAUDE_CACHE_ENCRYPT``
    ``1`` (or ``true``/``yes``/``on``) encrypts cached answers at rest (AES-256-GCM) when a
    cache is made without an explicit ``encrypt=``; ``0``/``false``/``no``/``off`` or unset: not.
``CLAUDE_FORCE_MAGIC_CONFIG_DIR``
    Where the generated cache key lives (default: the user's config directory).
``CLAUDE_FORCE_CONFIG``
    An explicit ``.claude/claude.json`` agent configuration.

Nothing in this module touches the file system at import time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Literal, NoReturn, overload

from .errors import ConfigurationError, SecretError, UnsafePathError
from .validation import check_number

__all__ = [
    "API_KEY_ENV",
    "CACHE_DIR_ENV",
    "CACHE_ENCRYPT_ENV",
    "CACHE_SECRET_ENV",
    "CONFIG_DIR_ENV",
    "FORCE_CONFIG_ENV",
    "MAX_TTL_HOURS",
    "MIN_SECRET_BYTES",
    "REDIS_NAMESPACE_ENV",
    "REDIS_URL_ENV",
    "Secret",
    "cache_dir",
    "cache_encrypt",
    "check_ttl_hours",
    "config_dir",
    "ensure_private_dir",
    "load_cache_secret",
    "team_redis",
]

APP_NAME = "claude-force-magic"
API_KEY_ENV = "ANTHROPIC_API_KEY"
CACHE_SECRET_ENV = "CLAUDE_CACHE_SECRET"  # noqa: S105 (a variable name, not a secret)
CACHE_DIR_ENV = "CLAUDE_CACHE_DIR"
CACHE_ENCRYPT_ENV = "CLAUDE_CACHE_ENCRYPT"
CONFIG_DIR_ENV = "CLAUDE_FORCE_MAGIC_CONFIG_DIR"
FORCE_CONFIG_ENV = "CLAUDE_FORCE_CONFIG"
#: The team switch (docs/team.md): cache, budget and rate limits in this Redis.
REDIS_URL_ENV = "CLAUDE_FORCE_MAGIC_REDIS_URL"
REDIS_NAMESPACE_ENV = "CLAUDE_FORCE_MAGIC_REDIS_NAMESPACE"
KEY_FILE_NAME = "cache.key"
MIN_SECRET_BYTES = 16
#: The longest a cached answer may stay valid: ten years, in hours.
MAX_TTL_HOURS = 24 * 3653

#: Secrets that were published as defaults somewhere and therefore protect nothing.
KNOWN_PLACEHOLDERS = frozenset(
    {
        b"default_secret_change_in_production",
        b"changeme",
        b"change-me",
        b"secret",
        b"your-secret-here",
    }
)

_HOW_TO_MAKE_ONE = (
    'Make a good one with: python -c "import secrets; print(secrets.token_hex(32))" '
    f"and put it in {CACHE_SECRET_ENV}, or unset {CACHE_SECRET_ENV} to use a generated key file."
)


class Secret:
    """A secret value whose ``repr`` and ``str`` are masked, so it never reaches a traceback.

    >>> s = Secret("sk-ant-very-secret")
    >>> s
    Secret('**********')
    >>> s.reveal()
    'sk-ant-very-secret'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value

    def reveal(self) -> str | bytes:
        """Return the real value; use it only where it is sent or used as a key."""
        return self._value

    def as_bytes(self) -> bytes:
        """The value as bytes (UTF-8 for text)."""
        value = self._value
        return value if isinstance(value, bytes) else value.encode("utf-8")

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.as_bytes(), other.as_bytes())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")


@overload
def check_ttl_hours(name: str, value: object, *, allow_none: Literal[False] = ...) -> float: ...
@overload
def check_ttl_hours(name: str, value: object, *, allow_none: bool) -> float | None: ...
def check_ttl_hours(name: str, value: object, *, allow_none: bool = False) -> float | None:
    """``value`` as a time-to-live in hours: finite, above 0, at most :data:`MAX_TTL_HOURS`.

    Raises :class:`ConfigurationError` naming ``name``. An expiry further out than ten years
    is refused rather than stored: dates that far away break date arithmetic in readers.

    >>> check_ttl_hours("ttl_hours", 48)
    48.0
    """
    number = check_number(name, value, allow_none=allow_none)
    if number is not None and number > MAX_TTL_HOURS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_TTL_HOURS} hours (ten years), got {value!r}. "
            "Use a shorter time to live."
        )
    return number


def _platform_dir(kind: str) -> Path:
    import platformdirs  # small, but only needed when a path is asked for

    if kind == "cache":
        return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """The default response cache directory: ``$CLAUDE_CACHE_DIR`` or the user cache dir."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else _platform_dir("cache") / "responses"


def team_redis(
    url: str | None = None, namespace: str | None = None
) -> tuple[str | None, str | None]:
    """The team's Redis URL and namespace: the arguments, else ``$CLAUDE_FORCE_MAGIC_REDIS_URL``
    and ``$CLAUDE_FORCE_MAGIC_REDIS_NAMESPACE``. An empty URL (argument or variable) means no
    team: the kernel's own cache, budget and limits."""
    if url is None:
        url = os.environ.get(REDIS_URL_ENV)
    if namespace is None:
        namespace = os.environ.get(REDIS_NAMESPACE_ENV) or None
    return (url or None), namespace


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def cache_encrypt() -> bool:
    """Whether caches encrypt answers at rest by default: ``$CLAUDE_CACHE_ENCRYPT``.

    Raises :class:`ConfigurationError` for a value that is neither on nor off, rather than
    guessing (a typo must not silently leave answers in clear).
    """
    raw = os.environ.get(CACHE_ENCRYPT_ENV, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"${CACHE_ENCRYPT_ENV}={raw[:20]!r} is not understood: set it to 1 (encrypt cached "
        "answers) or 0 (do not), or unset it."
    )


def config_dir() -> Path:
    """The directory for the generated cache key: ``$CLAUDE_FORCE_MAGIC_CONFIG_DIR`` or the
    user config dir (``~/.config/claude-force-magic`` on Linux)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    return Path(env).expanduser() if env else _platform_dir("config")


def _make_dirs_private(path: Path) -> None:
    # os.makedirs applies ``mode`` to the last directory only; create each missing one 0700.
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # another process made it first
            continue
        except OSError as exc:  # a read-only file system, no permission, a file in the way
            raise ConfigurationError(
                f"Could not create the directory {directory}: {exc.strerror}. Point the "
                "setting at a directory you can write, or create it yourself."
            ) from exc


def ensure_private_dir(path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """Return ``path`` as an absolute directory only this user can write, creating it 0700.

    Raises :class:`UnsafePathError` when the path (or the directory it names) is a symlink,
    is not a directory, is owned by another user, or is writable by group or others: such a
    directory lets someone else plant or change files we trust. Missing parents are created
    with mode 0700 too; :class:`ConfigurationError` when one cannot be (read-only file
    system, no permission). ``~`` is expanded. Does not follow a symlink at the final
    component.
    """
    p = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if create and not os.path.lexists(p):
        _make_dirs_private(p)
    try:
        st = os.lstat(p)
    except FileNotFoundError as exc:
        raise UnsafePathError(f"Directory {p} does not exist.") from exc
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"Refusing {p}: it is a symlink. Point the setting at the real directory instead."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"Refusing {p}: it is not a directory.")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafePathError(
            f"Refusing {p}: it is owned by uid {st.st_uid}, not by you (uid {os.getuid()}). "
            "Use a directory you own."
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(
            f"Refusing {p}: it is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}). "
            f"Fix it with: chmod 700 {p}"
        )
    return p


def check_secret(value: str | bytes, *, source: str) -> Secret:
    """Validate a cache secret and wrap it; raise :class:`SecretError` saying how to fix it."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:  # bytes(32) would be 32 zero bytes: a "secret" everyone knows
        raise SecretError(
            f"The cache secret from {source} must be str or bytes, not {type(value).__name__}. "
            + _HOW_TO_MAKE_ONE
        )
    if raw.strip().lower() in KNOWN_PLACEHOLDERS:
        raise SecretError(
            f"The cache secret from {source} is a published placeholder and protects nothing. "
            + _HOW_TO_MAKE_ONE
        )
    # Surrounding whitespace adds no secrecy (16 spaces would otherwise pass).
    if len(raw.strip()) < MIN_SECRET_BYTES:
        raise SecretError(
            f"The cache secret from {source} is {len(raw.strip())} bytes without surrounding "
            f"whitespace; at least {MIN_SECRET_BYTES} are required. " + _HOW_TO_MAKE_ONE
        )
    if len(set(raw)) == 1:
        raise SecretError(
            f"The cache secret from {source} is one byte repeated and protects nothing. "
            + _HOW_TO_MAKE_ONE
        )
    return Secret(raw)


def _read_or_create_key_file(directory: Path) -> bytes:
    key_path = directory / KEY_FILE_NAME
    # O_NONBLOCK: a key file replaced by a FIFO must be refused below, not block the open.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(key_path, flags)
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        tmp = directory / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            wfd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
            )
        except OSError as exc:  # a read-only or full config directory
            raise SecretError(
                f"Could not create the cache key file {key_path}: {exc.strerror}. Set "
                f'{CACHE_SECRET_ENV} instead (make one with: python -c "import secrets; '
                f'print(secrets.token_hex(32))"), or point {CONFIG_DIR_ENV} at a writable '
                "directory."
            ) from exc
        try:
            os.write(wfd, key)
            os.fsync(wfd)
        finally:
            os.close(wfd)
        try:
            os.link(tmp, key_path)  # atomic and never overwrites a key another process made
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return _read_or_create_key_file(directory)
    except OSError as exc:
        raise UnsafePathError(
            f"Refusing key file {key_path}: {exc.strerror}. "
            "It must be a regular file, not a symlink."
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"Refusing key file {key_path}: not a regular file.")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise UnsafePathError(f"Refusing key file {key_path}: owned by another user.")
        if st.st_mode & 0o077:
            raise UnsafePathError(
                f"Refusing key file {key_path}: readable or writable by others "
                f"(mode {stat.S_IMODE(st.st_mode):o}). Fix it with: chmod 600 {key_path}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(data) < MIN_SECRET_BYTES:
        raise SecretError(
            f"Key file {key_path} holds {len(data)} bytes; delete it to generate a new one."
        )
    return data


def load_cache_secret(explicit: str | bytes | Secret | None = None) -> Secret:
    """Choose the cache secret: ``explicit``, else ``$CLAUDE_CACHE_SECRET``, else the key file.

    The key file is ``cache.key`` in :func:`config_dir`, 32 random bytes generated once with
    mode 0600 and reused afterwards (as Jupyter does for its notebook-signing secret).
    Raises :class:`SecretError` for a placeholder or a secret shorter than 16 bytes, and
    :class:`UnsafePathError` for a key file or directory others could read or replace.
    """
    if isinstance(explicit, Secret):
        return check_secret(explicit.reveal(), source="the cache_secret argument")
    if explicit is not None:
        return check_secret(explicit, source="the cache_secret argument")
    env = os.environ.get(CACHE_SECRET_ENV)
    if env:
        return check_secret(env, source=f"${CACHE_SECRET_ENV}")
    directory = ensure_private_dir(config_dir())
    return Secret(_read_or_create_key_file(directory))
