"""The link to a team's Redis: URL parsing, the namespace, key names and the connection.

Everything that talks to Redis (the shared response cache, the shared budget and the shared
rate limits) goes through here, so the rules are the same for all of them:

- :func:`parse_redis_url` accepts ``redis://`` and ``rediss://`` (TLS) URLs with an optional
  password, ACL user and database number, and ``unix://`` sockets. The password is kept in a
  :class:`~claude_force_magic.settings.Secret` and never appears in a ``repr``, a log record or
  an error message (:attr:`RedisTarget.display` shows ``****`` in its place).
- :func:`check_namespace` validates the namespace that prefixes every key, so teams can share
  one server safely; :class:`RedisKeys` names keys ``{namespace}:{area}:{name}``
  (``{namespace}:cache:...`` for the cache).
- :func:`connect` opens a client with bounded timeouts and *no* automatic retries: a caller
  that cannot reach Redis gets :class:`~claude_force_magic.errors.RedisUnavailableError` at
  once and decides itself (the cache serves a miss, the team layer falls back to local).
- :func:`redis_errors` translates redis-py's exceptions into that error at one boundary.

Importing this module imports ``redis`` (redis-py); nothing on the ``%load_ext`` path does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigurationError, RedisUnavailableError
from .guard.logs import SecretRedactor
from .settings import Secret

__all__ = [
    "DEFAULT_NAMESPACE",
    "RedisKeys",
    "RedisTarget",
    "check_namespace",
    "connect",
    "parse_redis_url",
    "redis_errors",
]

#: The namespace used when none is given.
DEFAULT_NAMESPACE = "cfm"
_NAMESPACE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")
_SCHEMES = ("redis", "rediss", "unix")
_CERT_REQS = ("required", "optional", "none")
#: TLS options accepted as URL query parameters (``rediss://host/0?ssl_ca_certs=/path``).
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")

#: Seconds to wait for a connection, and for one command's answer.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
#: A connection idle this long is PINGed before it is used again (finds dead ones early).
HEALTH_CHECK_SECONDS = 15


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is a safe key prefix, else raise :class:`ConfigurationError`.

    A namespace is 1-64 characters: letters, digits, ``_``, ``.`` and ``-``, starting with a
    letter or digit (no ``:``, spaces, glob characters or braces), so one team's keys can never
    match another's patterns.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        shown = repr(namespace)[:70]
        raise ConfigurationError(
            f"Redis namespace {shown} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (for example 'team-ml')."
        )
    return namespace


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one namespace: ``{namespace}:{area}:{name}``.

    >>> RedisKeys("team").name("cache", "stats")
    'team:cache:stats'
    """

    namespace: str

    def __post_init__(self) -> None:
        check_namespace(self.namespace)

    def name(self, area: str, *parts: str) -> str:
        """The key ``{namespace}:{area}:{part}:...``."""
        return ":".join((self.namespace, area, *parts))

    def pattern(self, area: str) -> str:
        """A SCAN pattern for every key of ``area`` in this namespace."""
        return f"{self.namespace}:{area}:*"


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL. ``password`` is a :class:`Secret`; ``repr`` shows :attr:`display`."""

    scheme: str
    host: str
    port: int
    db: int
    username: str | None = None
    password: Secret | None = field(default=None, repr=False, compare=False)
    path: str | None = None
    tls_options: tuple[tuple[str, str], ...] = ()

    @property
    def tls(self) -> bool:
        """True for ``rediss://`` (TLS) URLs."""
        return self.scheme == "rediss"

    @property
    def display(self) -> str:
        """The URL with the password replaced by ``****`` (safe to show and log)."""
        user = self.username or ""
        auth = f"{user}:****@" if self.password else (f"{user}@" if user else "")
        if self.scheme == "unix":
            return f"unix://{auth}{self.path}?db={self.db}"
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisTarget({self.display!r})"

    def __str__(self) -> str:
        return self.display


def _bad_url(shown: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"Redis URL {shown} is not valid: {why}. Write it as "
        "redis://[user][:password]@host[:port][/db] (rediss:// for TLS, unix:///path.sock)."
    )


def _redacted(url: str) -> str:
    """The URL text with anything between ``://`` and ``@`` masked (for error messages)."""
    return repr(re.sub(r"(?<=://)[^/@]*@", "****@", url, count=1)[:120])


def _parse_db(text: str, shown: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or int(text) > 15_999:
        raise _bad_url(shown, f"the database {text[:20]!r} is not a number")
    return int(text)


def _parse_query(query: str, shown: str) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    options = dict(parse_qsl(query, keep_blank_values=True))
    db = {k: options.pop(k) for k in ("db",) if k in options}
    unknown = sorted(set(options) - set(_TLS_OPTIONS))
    if unknown:
        raise _bad_url(
            shown,
            f"unknown option {unknown[0][:40]!r} (known: db, {', '.join(_TLS_OPTIONS)})",
        )
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in _CERT_REQS:
        raise _bad_url(shown, f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    return db, tuple(sorted(options.items()))


def parse_redis_url(url: str | Secret) -> RedisTarget:
    """Parse and check a Redis URL; raise :class:`ConfigurationError` naming what is wrong.

    Accepted: ``redis://[user][:password]@host[:port][/db]``, ``rediss://...`` for TLS (query
    options ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``), and
    ``unix://[:password@]/path/to/redis.sock[?db=N]``. Percent-escapes in the user and
    password are decoded. The message of a bad URL never contains its password.
    """
    text = url.reveal() if isinstance(url, Secret) else url
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise ConfigurationError(f"The Redis URL must be a str, not {type(url).__name__}.")
    shown = _redacted(text)
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise _bad_url(shown, "the port is not a number from 1 to 65535") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise _bad_url(shown, f"the scheme must be redis://, rediss:// or unix://, not {scheme!r}")
    query_db, tls_options = _parse_query(parts.query, shown)
    if tls_options and scheme != "rediss":
        raise _bad_url(shown, "ssl_* options need a rediss:// (TLS) URL")
    username = unquote(parts.username) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password else None
    if scheme == "unix":
        if not parts.path:
            raise _bad_url(shown, "a unix:// URL needs the socket path")
        db = _parse_db(query_db.get("db", ""), shown)
        return RedisTarget(scheme, "", 0, db, username, password, parts.path)
    if not parts.hostname:
        raise _bad_url(shown, "the host is missing")
    db = _parse_db(query_db.get("db", parts.path.lstrip("/")), shown)
    return RedisTarget(
        scheme, parts.hostname, port or 6379, db, username, password, None, tls_options
    )


def _client_options(target: RedisTarget) -> dict[str, Any]:
    options: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password.reveal() if target.password else None,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        # No retries of our own or redis-py's (its default since 6.0 retries 3 times with
        # back-off): a dead server must fail fast, and the caller chooses what to do.
        "retry": Retry(NoBackoff(), 0),
    }
    if target.scheme == "unix":
        options["unix_socket_path"] = target.path
        return options
    options.update(host=target.host, port=target.port)
    if target.tls:
        options["ssl"] = True
        options.update(dict(target.tls_options))
    return options


def connect(url: str | Secret | RedisTarget, *, ping: bool = True) -> redis.Redis:
    """A redis-py client for ``url`` (a URL or a parsed :class:`RedisTarget`).

    Timeouts: :data:`CONNECT_TIMEOUT` to connect, :data:`SOCKET_TIMEOUT` per command; idle
    connections are checked every :data:`HEALTH_CHECK_SECONDS`; nothing is retried. The
    client is thread-safe (a connection pool) and returns bytes. With ``ping`` (the default)
    the server is asked once, so a wrong address or password fails here.

    Raises :class:`ConfigurationError` for a bad URL and :class:`RedisUnavailableError` when
    the server cannot be reached or refuses the credentials. The password is registered with
    the log redactor and appears in no message.
    """
    target = url if isinstance(url, RedisTarget) else parse_redis_url(url)
    if target.password:
        SecretRedactor.register(target.password)
    with redis_errors(target, "connect"):
        client = redis.Redis(**_client_options(target))
        if ping:
            client.ping()
    return client


def _describe(exc: BaseException, target: RedisTarget) -> str:
    """The redis-py message, with the password (if it ever appears) masked."""
    text = str(exc) or type(exc).__name__
    if target.password:
        secret = target.password.reveal()
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "****")
    return text[:300]


#: What Redis says when credentials or ACL rights are missing (inside a script, too).
_REFUSALS = ("NOAUTH", "WRONGPASS", "NOPERM", "can't run this command", "No permissions")

_AUTH_HINT = (
    " Check the user and password in the URL, and the user's ACL rights (docs/cache.md, "
    "Redis backend: ~namespace:* +@read +@write +@scripting +ping +time)."
)


@contextlib.contextmanager
def redis_errors(target: RedisTarget, doing: str) -> Iterator[None]:
    """Translate redis-py's failures inside the block into :class:`RedisUnavailableError`.

    Connection refused, timeouts, dropped connections, a wrong password, a missing ACL
    permission and a server that is loading or read-only all become that one error, whose
    message names the server (password masked) and what was being done. Other errors pass.
    """
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
        raise RedisUnavailableError(
            f"Redis at {target.display} refused to {doing}: {_describe(exc, target)}." + _AUTH_HINT
        ) from None
    except (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        redis.exceptions.ReadOnlyError,
    ) as exc:
        raise RedisUnavailableError(
            f"Redis at {target.display} is unavailable ({doing}): {_describe(exc, target)}. "
            "Check that the server runs and the URL is right; the cache serves misses meanwhile."
        ) from None
    except redis.exceptions.ResponseError as exc:
        if any(sign in str(exc) for sign in _REFUSALS):
            raise RedisUnavailableError(
                f"Redis at {target.display} refused to {doing}: {_describe(exc, target)}."
                + _AUTH_HINT
            ) from None
        raise
