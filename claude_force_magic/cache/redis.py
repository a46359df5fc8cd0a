"""``RedisResponseCache``: the signed response cache, shared by every kernel through Redis.

Same API and same envelope as the disk :class:`~claude_force_magic.cache.store.ResponseCache`
(keys from :mod:`.keys`, envelopes from :mod:`.signing`): every value is HMAC-signed over the
envelope version, the namespace-qualified key and the body, the tag is checked before anything
is parsed, and the expiry is inside the signed body. The secret stays in the kernel; Redis
only ever sees envelopes, and a fingerprint of the secret (a keyed hash that reveals nothing
of it) so that a kernel with the wrong secret is refused instead of deleting its team's
entries as forgeries.

Layout, under ``{namespace}:cache:`` (see :class:`~claude_force_magic.redis_link.RedisKeys`)::

    e:{key}   the envelope (a string with a Redis TTL: Redis frees expired answers itself)
    lru       sorted set key -> access tick (least recently used first)
    exp       sorted set key -> expiry (server milliseconds), to account for TTL expiries
    meta      hash key -> "tick:size:agent" (the version, stored size and agent of each entry)
    hits      hash key -> lookups served
    stats     hash of counters shared by every process (hits, misses, sets, ... and bytes)
    fp        the secret's fingerprint

Every store, removal and miss is one Lua script (:mod:`.redis_scripts`: run by EVALSHA,
reloaded after a server restart), so entries, sizes, the LRU order and the counters always
move together: a store writes, counts and culls least-recently-used entries to
``max_size_mb`` in the same step and never evicts the entry it just wrote. A hit, the hot
path, is one pipelined round trip of native commands on a pooled connection (GET the
envelope, ZADD XX its LRU score, HINCRBY the hit counters): each stands alone, so no script
is needed. A miss takes a second round trip that turns the counted hit into a miss. LRU
scores are the members' clocks in microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO

import redis

from .. import settings
from ..errors import (
    CacheError,
    IntegrityError,
    RedisUnavailableError,
    SecretError,
)
from ..guard.logs import SecretRedactor, get_logger, sanitize_for_log
from ..redis_link import (
    DEFAULT_NAMESPACE,
    RedisKeys,
    RedisTarget,
    check_namespace,
    connect,
    parse_redis_url,
    redis_errors,
)
from ..settings import Secret
from .entries import MIN_PREFIX as MIN_PREFIX  # part of this module's API
from .entries import (
    Newest,
    ambiguous_prefix,
    check_key_prefix,
    check_limits,
    check_search,
    entry_view,
    exclusions,
    export_line,
    listing,
    matches,
    new_body,
    public_view,
    skip_warning,
    stamp,
    write_export,
)
from .keys import key_for
from .redis_scripts import MISMATCH, SHAS, SOURCES
from .signing import Signer, body_of, metadata_of
from .verify import VerifyReport

__all__ = ["RedisResponseCache"]

log = get_logger("claude_force_magic.cache")

_PAGE = 200
_REAP = 500
_COUNTERS = (
    "hits",
    "misses",
    "sets",
    "deletes",
    "evictions",
    "expirations",
    "integrity_failures",
    "oversized_skipped",
    "cleared",
)


def _reply(conn: Any) -> Any:
    """The next reply on ``conn``; an error reply is returned (not raised), so the caller can
    read the replies that follow it."""
    try:
        return conn.read_response()
    except redis.exceptions.ResponseError as exc:
        return exc


def _lru_score() -> int:
    """The least-recently-used order's clock: this machine's time in integer microseconds.

    Hits touch the order with a native ZADD (no script to read a shared tick), so the order
    is as good as the members' clocks agree: kernels on machines skewed by a second may see a
    recent entry culled up to a second early. Never the injectable ``clock``, which decides
    only the signed times."""
    return time.time_ns() // 1000


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisResponseCache:
    """A signed, size-bounded response cache in Redis, shared by every kernel that uses the
    same ``url``, ``namespace`` and ``cache_secret``.

    ``url`` is ``redis://``, ``rediss://`` (TLS) or ``unix://`` with an optional ACL user,
    password and database (see :func:`~claude_force_magic.redis_link.parse_redis_url`); the
    password never appears in a repr, a log record or an error. ``namespace`` (default
    ``"cfm"``) prefixes every key, so teams can share one server. ``cache_secret`` (else
    ``$CLAUDE_CACHE_SECRET``, else the key file) signs every entry and never leaves the
    kernel: every member of a team must use the same one, or the namespace refuses them
    (:class:`SecretError`) rather than treat their entries as forgeries. ``ttl_hours``,
    ``max_size_mb`` and ``max_entry_kb`` mean what they mean for the disk cache. ``encrypt=True``
    (default: env ``CLAUDE_CACHE_ENCRYPT``) stores answers encrypted with AES-256-GCM under a
    key derived from the secret, so a Redis dump, replica or backup reveals no answer text
    (keys, agent names, sizes and counters stay readable); such a cache treats an entry stored
    in clear as an integrity failure, while one without ``encrypt`` still reads encrypted
    entries. ``enabled=False`` touches nothing; ``exclude_agents`` are never cached; ``clock``
    (epoch seconds) decides the signed creation and expiry times.

    Construction connects (``PING``) and raises :class:`RedisUnavailableError` when Redis
    cannot be reached or refuses the credentials, :class:`ConfigurationError` for a bad URL,
    namespace or limit, :class:`SecretError` for a bad secret. Afterwards every change is
    atomic (one Lua script; a hit is one pipelined round trip of native commands) and safe
    from any number of threads and processes; a connection
    that fails (server down or restarted, connection killed) raises
    :class:`RedisUnavailableError` (a :class:`CacheError`: the engine then calls the API and
    the answer goes unstored) and leaves Redis unchanged or wholly changed, never half. The
    next call reconnects. Statistics are kept in Redis, so :meth:`get_stats` is exact for the
    whole team at once (a lookup is counted as a hit in its first round trip and turned into
    a miss in its second: a process killed in between leaves one miss counted as a hit).

    Run Redis with ``maxmemory-policy noeviction`` or a ``volatile-*`` policy: only the
    answers carry a TTL, and an ``allkeys-*`` policy could evict the bookkeeping.
    """

    def __init__(
        self,
        url: str | Secret | RedisTarget,
        *,
        cache_secret: str | bytes | Secret | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        ttl_hours: float = 24,
        max_size_mb: float = 100,
        max_entry_kb: float = 1024,
        encrypt: bool | None = None,
        enabled: bool = True,
        exclude_agents: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        limits = check_limits(ttl_hours, max_size_mb, max_entry_kb)
        self.ttl_hours, self._max_size_bytes, self._max_entry_bytes = limits
        self.encrypt = settings.cache_encrypt() if encrypt is None else bool(encrypt)
        self.namespace = check_namespace(namespace)
        self.target = url if isinstance(url, RedisTarget) else parse_redis_url(url)
        self._exclude = exclusions(exclude_agents)
        self._clock = clock
        self.enabled = bool(enabled)
        self._keys = RedisKeys(self.namespace)
        self._area = self._keys.name("cache", "")
        self._prefix = self._area + "e:"
        self._meta_key, self._hits_key, self._stats_key, self._lru_key = (
            self._keys.name("cache", part) for part in ("meta", "hits", "stats", "lru")
        )
        self._client: redis.Redis | None = None
        self._signer: Signer | None = None
        self._fingerprint = b""
        if not self.enabled:
            if cache_secret is not None:
                settings.load_cache_secret(cache_secret)  # validate; touches nothing
            return
        secret = settings.load_cache_secret(cache_secret)
        SecretRedactor.register(secret)
        self._signer = Signer(secret, encrypt=self.encrypt)
        self._fingerprint = _fingerprint(secret)
        self._client = connect(self.target)
        try:
            self._run("stats", "check the namespace's secret", None, 0)  # SecretError now
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return (
            f"RedisResponseCache(url={self.target.display!r}, namespace={self.namespace!r}, "
            f"enabled={self.enabled}, encrypt={self.encrypt}, ttl_hours={self.ttl_hours:g}, "
            f"max_size_mb={self._max_size_bytes / 2**20:g}, "
            f"max_entry_kb={self._max_entry_bytes / 1024:g})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("RedisResponseCache holds the cache secret and cannot be pickled")

    @property
    def read_only(self) -> bool:
        """Always False: a Redis cache that cannot be written raises instead."""
        return False

    def __enter__(self) -> RedisResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool. Idempotent; later operations raise :class:`CacheError`
        (a closed cache is not reopened behind your back)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def flush(self) -> None:
        """Nothing to do: every count is written to Redis by the operation that makes it."""

    # -- running scripts ---------------------------------------------------------------------

    def _send(self, doing: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip and return their raw replies; errors translated.

        Straight on a pooled connection (redis-py's pipeline and command machinery cost more
        than the server's work on a hit): every reply is read, so the connection stays in step,
        and the first error reply is then raised. A broken connection is dropped by redis-py
        and the next call connects again. An error reply (other than a missing script or
        another secret, which :meth:`_run` handles) raises :class:`CacheError`.
        """
        pool = self._live().connection_pool
        try:
            with redis_errors(self.target, doing):
                conn: Any = pool.get_connection()  # redis-py leaves Connection untyped
                try:
                    conn.send_packed_command(conn.pack_commands(commands))
                    replies = [_reply(conn) for _ in commands]
                except BaseException:
                    conn.disconnect()  # a reply may be unread: never reuse this connection
                    raise
                finally:
                    pool.release(conn)
                for reply in replies:
                    if isinstance(reply, redis.exceptions.ResponseError):
                        raise reply
        except redis.exceptions.ResponseError as exc:
            if isinstance(exc, redis.exceptions.NoScriptError) or MISMATCH in str(exc):
                raise  # for _run
            raise CacheError(
                f"Redis at {self.target.display} refused to {doing}: {str(exc)[:200]}. Something "
                f"other than this cache wrote keys under {self._area!r} (a key of the wrong "
                "type?): delete those keys, or use another namespace."
            ) from None
        return replies

    def _run(self, name: str, doing: str, key: str | None, *args: Any) -> Any:
        """Run script ``name`` on the entry ``key`` (or none) with ``args``; errors translated.

        EVALSHA directly; a server that lost its scripts (restarted) is sent them again.
        """
        head = (1, self._prefix + key) if key is not None else (0,)
        command = ("EVALSHA", SHAS[name], *head, self._area, self._fingerprint, *args)
        try:
            try:
                return self._send(doing, [command])[0]
            except redis.exceptions.NoScriptError:
                self._send(doing, [("SCRIPT", "LOAD", SOURCES[name])])
                return self._send(doing, [command])[0]
        except redis.exceptions.ResponseError as exc:
            if MISMATCH in str(exc):
                raise SecretError(
                    f"The Redis namespace {self.namespace!r} at {self.target.display} is used "
                    "with another cache secret. Every kernel sharing a namespace needs the same "
                    "secret: set CLAUDE_CACHE_SECRET (or cache_secret=) to your team's secret, "
                    "or choose another namespace."
                ) from None
            raise

    def _signed_key(self, key: str) -> str:
        """What the envelope's tag binds: the namespace and the key (a value copied from
        another namespace on the same server fails its check)."""
        return f"redis:{self.namespace}:{key}"

    def _active(self, agent_name: str) -> Signer | None:
        if self._signer is None or agent_name in self._exclude:
            return None
        return self._signer

    # -- keys, get ---------------------------------------------------------------------------

    def key_for(self, agent_name: str, task: str, model: str, **request: Any) -> str:
        """The hex SHA-256 key of a request (see :func:`keys.key_for`); TypeError if not JSON."""
        return key_for(agent_name, task, model, **request)

    def get(self, agent_name: str, task: str, model: str, **request: Any) -> dict[str, Any] | None:
        """Return the cached answer for this request, or None (same dict as the disk cache's
        ``get``: response, agent_name, model, tokens, estimated_cost, created_at, expires_at,
        age_seconds, metadata, key).

        A hit is one round trip of native commands, pipelined (no script: a script costs more
        than the work): read the envelope, move the entry to the young end of the LRU order
        and count the hit. A miss, or an entry that then fails its check, takes a second
        round trip that turns the counted hit into a miss (and accounts for an entry whose
        Redis TTL passed). A forged, damaged or expired entry is deleted (if it is still the
        version read) and counted as an ``integrity_failures`` or ``expirations``; it never
        raises. Raises TypeError for non-JSON request values, :class:`RedisUnavailableError`
        when Redis cannot be reached (nothing is counted then) and :class:`SecretError` when
        the namespace belongs to another secret.
        """
        key = key_for(agent_name, task, model, **request)
        signer = self._active(agent_name)
        if signer is None:
            return None
        value = self._lookup(key)
        if value is None:
            self._miss(key)
            return None
        now = self._clock()
        try:
            fields = signer.open_fields(self._signed_key(key), value)
            metadata = metadata_of(fields[8])
        except IntegrityError as exc:
            log.warning(
                "cache entry %s for agent %s failed its integrity check (%s); deleted",
                key[:12],
                sanitize_for_log(agent_name, 64),
                exc,
            )
            self._discard(key, value, "integrity_failures", lookup=True)
            return None
        if fields[7] <= now:  # expires_at
            self._discard(key, value, "expirations", lookup=True)
            return None
        return public_view(key, fields, now, metadata)

    def _lookup(self, key: str) -> bytes | None:
        """Read the envelope under ``key``, touch its LRU score if it is an entry (``XX``) and
        count a hit, in one pipelined round trip; the envelope or None."""
        replies = self._send(
            "read the cache",
            [
                ("GET", self._prefix + key),
                ("ZADD", self._lru_key, "XX", _lru_score(), key),
                ("HINCRBY", self._stats_key, "hits", 1),
                ("HINCRBY", self._hits_key, key, 1),
            ],
        )
        value = replies[0]
        return value if isinstance(value, bytes) else None

    def _miss(self, key: str) -> None:
        """Turn the hit :meth:`_lookup` counted into a miss. If Redis went away in between,
        the lookup stays counted as a hit (logged); the caller's answer is a miss either way."""
        try:
            self._run("miss", "count a miss", key, key)
        except RedisUnavailableError as exc:
            log.warning("could not count the cache miss of %s: %s", key[:12], exc)

    def _discard(self, key: str, value: bytes, counter: str, *, lookup: bool) -> bool:
        """Delete ``key`` if it still holds ``value`` and count ``counter`` (and, for a
        lookup, turn its counted hit into a miss). True if it was deleted."""
        seen = hashlib.sha1(value, usedforsecurity=False).hexdigest()
        try:
            return bool(
                self._run("discard", "delete an entry", key, key, seen, counter, int(lookup))
            )
        except RedisUnavailableError as exc:
            log.warning("could not delete the failed cache entry %s: %s", key[:12], exc)
            return False

    # -- set, delete, clear ------------------------------------------------------------------

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
        ``max_entry_kb`` (counted as ``oversized_skipped``).

        One atomic script writes the envelope with its Redis TTL, replaces an older entry of
        the same key, counts the set and culls least-recently-used entries until the namespace
        fits ``max_size_mb`` (never the entry just written). Raises TypeError for wrongly typed
        arguments or non-JSON values, :class:`ConfigurationError` for a bad ``ttl_hours``
        (checked before anything is sent), :class:`RedisUnavailableError` when Redis cannot be
        reached (then nothing, or everything, was written).
        """
        key = key_for(agent_name, task, model, **request)
        body = new_body(
            response, agent_name, model, input_tokens, output_tokens, estimated_cost, metadata
        )
        ttl = settings.check_ttl_hours(
            "ttl_hours", self.ttl_hours if ttl_hours is None else ttl_hours
        )
        signer = self._active(agent_name)
        if signer is None:
            why = "the cache is disabled" if self._signer is None else "the agent is excluded"
            return skip_warning(why, agent_name)
        if len(response) <= self._max_entry_bytes:
            stamp(body, self._clock(), ttl)
            blob = signer.seal(self._signed_key(key), body)
            if len(blob) <= self._max_entry_bytes:
                ttl_ms = max(1, int(ttl * 3_600_000))
                self._run(
                    "set",
                    "store an answer",
                    key,
                    key,
                    blob,
                    ttl_ms,
                    self._max_size_bytes,
                    agent_name,
                    _lru_score(),
                )
                return True
        self._bump("oversized_skipped")
        limit = self._max_entry_bytes // 1024
        return skip_warning(f"the entry is larger than max_entry_kb={limit}", agent_name)

    def _bump(self, counter: str) -> None:
        client = self._client
        if client is not None:
            with redis_errors(self.target, "count"):
                client.hincrby(self._stats_key, counter, 1)

    def _remove(self, keys: list[str], counter: str, agent: str | None = None) -> int:
        if not keys:
            return 0
        only = "" if agent is None else "=" + agent
        return int(self._run("remove", "remove entries", None, counter, only, *keys))

    def delete(self, agent_name: str, task: str, model: str, **request: Any) -> bool:
        """Remove the entry for this request; True if one was removed (counted as a delete).
        Atomic. Raises :class:`RedisUnavailableError` when Redis cannot be reached."""
        return self._remove([key_for(agent_name, task, model, **request)], "deletes") > 0

    def _stored_keys(self) -> Iterator[list[str]]:
        """Every stored key, a page at a time (HSCAN of the bookkeeping: no value is read)."""
        client = self._live()
        cursor = 0
        while True:
            with redis_errors(self.target, "list entries"):
                cursor, page = client.hscan(self._meta_key, cursor, count=_PAGE)
            if page:
                yield [_text(k) for k in page]
            if cursor == 0:
                return

    def _live(self) -> redis.Redis:
        if self._client is None:
            raise RedisUnavailableError(
                "This RedisResponseCache was closed (or created with enabled=False); create a "
                "new one."
            )
        return self._client

    def clear(self, agent_name: str | None = None) -> int:
        """Remove every entry of this namespace (or only ``agent_name``'s); return how many.

        Works in pages of 200 keys, one atomic script each (counted as ``cleared``), so other
        kernels keep working meanwhile; entries stored while it runs may survive. Raises
        :class:`RedisUnavailableError` when Redis cannot be reached.
        """
        if self._client is None:
            return 0
        return sum(self._remove(page, "cleared", agent_name) for page in self._stored_keys())

    # -- inspection --------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters shared by every kernel using this namespace (exact: each is counted by the
        command or script that does the work; a miss between its two round trips still shows
        as a hit), plus size and settings.

        Entries whose Redis TTL passed are accounted for first (counted as ``expirations``).
        Keys: hits, misses, sets, deletes, evictions, expirations, integrity_failures,
        oversized_skipped, cleared, entries, size_bytes (the stored envelopes), max_size_bytes,
        max_entry_bytes, hit_rate, ttl_hours, enabled, encrypt, backend ("redis"), url (password
        masked), namespace, directory (url and namespace, for displays written for the disk
        cache), read_only (False) and problem (None). Raises :class:`RedisUnavailableError`.
        """
        counts = dict.fromkeys(_COUNTERS, 0)
        entries = size = 0
        if self._client is not None:
            while True:
                reaped, entries, flat = self._run("stats", "read statistics", None, _REAP)
                if int(reaped) < _REAP:
                    break
            raw = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
            counts = {name: raw.get(name, 0) for name in _COUNTERS}
            size = raw.get("bytes", 0)
        lookups = counts["hits"] + counts["misses"]
        where = f"{self.target.display} namespace {self.namespace}"
        return {
            **counts,
            "entries": int(entries),
            "size_bytes": int(size),
            "max_size_bytes": self._max_size_bytes,
            "max_entry_bytes": self._max_entry_bytes,
            "hit_rate": counts["hits"] / lookups if lookups else 0.0,
            "ttl_hours": self.ttl_hours,
            "enabled": self.enabled,
            "encrypt": self.encrypt,
            "backend": "redis",
            "url": self.target.display,
            "namespace": self.namespace,
            "directory": where,
            "read_only": False,
            "problem": None,
        }

    def _pages(self) -> Iterator[list[tuple[str, bytes | None, int]]]:
        """(key, envelope, hits) of every stored entry, a page at a time (one pipelined round
        trip per page)."""
        client = self._live()
        for keys in self._stored_keys():
            with redis_errors(self.target, "read entries"):
                pipe = client.pipeline(transaction=False)
                pipe.mget([self._prefix + k for k in keys])
                pipe.hmget(self._hits_key, keys)
                values, hits = pipe.execute()
            yield [(k, v, int(h or 0)) for k, v, h in zip(keys, values, hits, strict=True)]

    def _verified(self) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
        """(key, stored size, hits, verified body) of every valid, unexpired entry; entries
        that fail their check are skipped (:meth:`verify` removes them)."""
        signer = self._signer
        if signer is None:
            return
        now = self._clock()
        for page in self._pages():
            for key, value, hits in page:
                if value is None:
                    continue
                try:
                    body = signer.open(self._signed_key(key), value)
                except IntegrityError:
                    continue
                if body["expires_at"] > now:
                    yield key, len(value), hits, body

    def verify(self) -> VerifyReport:
        """Check every entry's signature and signed expiry; remove what fails.

        Entries that fail are deleted (if still the version read) and counted as
        ``integrity_failures``, expired ones as ``expirations``; envelopes under this
        namespace's prefix that the cache never wrote (no bookkeeping) are checked too.
        Reads a page at a time. Raises :class:`RedisUnavailableError`.
        """
        report = VerifyReport()
        signer = self._signer
        if signer is None:
            return report
        now = self._clock()
        for page in self._pages():
            for key, value, _hits in page:
                if value is None:  # its TTL passed: accounted for by the stats script
                    continue
                self._verify_one(signer, key, value, now, report)
        for key, value in self._unaccounted():
            self._verify_one(signer, key, value, now, report)
        report.removed = report.expired + len(report.invalid)
        self.get_stats()  # accounts for entries whose Redis TTL passed
        if report.invalid:
            log.warning("cache verify removed %d invalid entries", len(report.invalid))
        return report

    def _verify_one(
        self, signer: Signer, key: str, value: bytes, now: float, report: VerifyReport
    ) -> None:
        report.checked += 1
        try:
            body = signer.open(self._signed_key(key), value)
        except IntegrityError as exc:
            if self._discard(key, value, "integrity_failures", lookup=False):
                report.invalid.append((key, str(exc)))
            return
        if body["expires_at"] <= now:
            if self._discard(key, value, "expirations", lookup=False):
                report.expired += 1
            return
        report.valid += 1

    def _unaccounted(self) -> Iterator[tuple[str, bytes]]:
        """Envelopes under the entry prefix with no bookkeeping (written by someone else)."""
        client = self._live()
        with redis_errors(self.target, "scan entries"):
            names = [_text(n) for n in client.scan_iter(match=self._prefix + "*", count=_PAGE)]
        for start in range(0, len(names), _PAGE):
            chunk = [n[len(self._prefix) :] for n in names[start : start + _PAGE]]
            with redis_errors(self.target, "scan entries"):
                metas = client.hmget(self._meta_key, chunk)
                orphans = [k for k, m in zip(chunk, metas, strict=True) if m is None]
                values = client.mget([self._prefix + k for k in orphans]) if orphans else []
            yield from (
                (k, v) for k, v in zip(orphans, values, strict=True) if isinstance(v, bytes)
            )

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every valid, unexpired entry (no response text), oldest first.

        Same keys as the disk cache's ``entries()`` (key, agent_name, model, created_at,
        expires_at, size_bytes, hits, tokens, estimated_cost, preview, origin). Entries that
        fail their check are skipped (call :meth:`verify` to remove them). Raises
        :class:`RedisUnavailableError`.
        """
        listed = [listing(k, s, h, body) for k, s, h, body in self._verified()]
        return sorted(listed, key=lambda item: (item["created_at"], item["key"]))

    def resolve_key(self, key: str) -> str | None:
        """The full key for ``key`` (64 hex digits, or a unique prefix of at least 8); None
        when no entry has it. Raises :class:`CacheError` for something that is not a key or a
        prefix more than one entry starts with."""
        prefix = check_key_prefix(key)
        client = self._live()
        found: list[str] = []
        with redis_errors(self.target, "look up a key"):
            for name in client.hscan_iter(self._meta_key, match=prefix + "*", count=_PAGE):
                found.append(_text(name[0]))
                if len(found) > 1:
                    raise ambiguous_prefix(prefix)
        return found[0] if found else None

    def entry(self, key: str) -> dict[str, Any] | None:
        """The whole entry under ``key`` (full key or unique prefix), verified; None when there
        is none or it has expired (then it is removed). A forged entry is deleted, counted and
        reported with :class:`IntegrityError`. Same keys as the disk cache's ``entry``."""
        full = self.resolve_key(key)
        signer = self._signer
        if full is None or signer is None:
            return None
        client = self._live()
        with redis_errors(self.target, "read an entry"):
            pipe = client.pipeline(transaction=False)
            pipe.get(self._prefix + full)
            pipe.hget(self._hits_key, full)
            value, hits = pipe.execute()
        if value is None:
            return None
        now = self._clock()
        try:
            fields = signer.open_fields(self._signed_key(full), value)
            body = body_of(fields)
        except IntegrityError as exc:
            removed = self._discard(full, value, "integrity_failures", lookup=False)
            raise IntegrityError(
                f"The cache entry {full[:12]} failed its integrity check ({exc}): it was "
                "edited or signed with another secret, so it is not shown"
                + (" and was deleted." if removed else ".")
            ) from None
        if body["expires_at"] <= now:
            self._discard(full, value, "expirations", lookup=False)
            return None
        public = public_view(full, fields, now, body["metadata"])
        return entry_view(public, listing(full, len(value), int(hits or 0), body), body)

    def delete_key(self, key: str) -> bool:
        """Remove the entry under ``key`` (full key or unique prefix); True if one was removed
        (counted as a delete)."""
        full = self.resolve_key(key)
        return full is not None and self._remove([full], "deletes") > 0

    def search(
        self, text: str, *, agent: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries whose preview or answer contains ``text`` (case-insensitive), newest first,
        at most ``limit``; each as :meth:`entries` lists it. Every entry is verified before it
        is matched; values are read a page at a time. TypeError for an empty ``text`` or a
        ``limit`` that is not a positive int."""
        needle = check_search(text, limit)
        newest = Newest(limit)  # ties broken by key
        for key, size, hits, body in self._verified():
            if matches(body, needle, agent):
                newest.offer(float(body["created_at"]), key, listing(key, size, hits, body))
        return newest.newest_first()

    def export(self, path: str | os.PathLike[str], *, force: bool = False) -> int:
        """Write every valid, unexpired entry to ``path`` as JSON lines; return how many.

        The same file as the disk cache's ``export``: each line has key, agent, model, created
        and expires (epoch seconds), preview, answer and metadata. ``path`` may start with
        ``~``; the file is created new, ``0600``; an existing file is refused unless ``force``,
        a symlink always. Entries are read a page at a time. Raises :class:`CacheError` for a
        file that exists, a symlink or a file that cannot be written (a failed export removes
        what it wrote) and :class:`RedisUnavailableError` when Redis cannot be reached.
        """
        return write_export(path, force, self._write_lines)

    def _write_lines(self, out: TextIO) -> int:
        count = 0
        for key, _size, _hits, body in self._verified():
            out.write(export_line(key, body))
            count += 1
        return count


_FINGERPRINT_LABEL = b"claude-force-magic/redis-namespace-secret\x00"


def _fingerprint(secret: Secret) -> bytes:
    """A keyed hash of a fixed label: equal for equal secrets, and useless for finding one."""
    return hmac.new(secret.as_bytes(), _FINGERPRINT_LABEL, "sha256").hexdigest()[:32].encode()
