"""redis_link: URLs, namespaces, key names and connections (against a real redis-server)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, free_port

from claude_force_magic.errors import ConfigurationError, RedisUnavailableError
from claude_force_magic.redis_link import (
    RedisKeys,
    check_namespace,
    connect,
    parse_redis_url,
    redis_errors,
)
from claude_force_magic.settings import Secret

PASSWORD = "pw-Very$ecret-9f8e7d"


# -- URLs ---------------------------------------------------------------------------------


def test_plain_url_defaults() -> None:
    target = parse_redis_url("redis://cache.example")
    assert (target.scheme, target.host, target.port, target.db) == (
        "redis",
        "cache.example",
        6379,
        0,
    )
    assert target.username is None and target.password is None and not target.tls


def test_full_url_with_acl_user_password_and_db() -> None:
    target = parse_redis_url(f"rediss://alice:{PASSWORD.replace('$', '%24')}@h:6380/3")
    assert (target.scheme, target.host, target.port, target.db) == ("rediss", "h", 6380, 3)
    assert target.tls and target.username == "alice"
    assert target.password is not None and target.password.reveal() == PASSWORD
    for shown in (repr(target), str(target), target.display):
        assert PASSWORD not in shown and "%24" not in shown
        assert "alice:****@h:6380/3" in shown


def test_password_only_url_and_secret_input() -> None:
    target = parse_redis_url(Secret(f"redis://:{PASSWORD}@127.0.0.1/2"))
    assert target.username is None and target.db == 2
    assert target.display == "redis://:****@127.0.0.1:6379/2"


def test_unix_socket_url() -> None:
    target = parse_redis_url("unix:///run/redis/redis.sock?db=4")
    assert (target.path, target.db) == ("/run/redis/redis.sock", 4)


def test_tls_options_in_the_query() -> None:
    target = parse_redis_url("rediss://h/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    assert dict(target.tls_options) == {"ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required"}


@pytest.mark.parametrize(
    ("url", "names"),
    [
        (f"http://u:{PASSWORD}@h/0", "scheme"),
        (f"redis://u:{PASSWORD}@h:99999/0", "port"),
        (f"redis://u:{PASSWORD}@h/zero", "database"),
        (f"redis://u:{PASSWORD}@/0", "host"),
        (f"redis://u:{PASSWORD}@h/0?timeout=1", "unknown option"),
        (f"redis://u:{PASSWORD}@h/0?ssl_ca_certs=/x", "rediss://"),
        (f"rediss://u:{PASSWORD}@h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, names: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_redis_url(url)
    message = str(info.value)
    assert names in message
    assert PASSWORD not in message


def test_a_url_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        parse_redis_url(42)  # type: ignore[arg-type]


# -- namespaces and key names --------------------------------------------------------------


@pytest.mark.parametrize("name", ["cfm", "team-ml", "a", "Team_2.prod", "x" * 64])
def test_good_namespaces(name: str) -> None:
    assert check_namespace(name) == name


@pytest.mark.parametrize("name", ["", "a:b", "team*", "has space", "{x}", "-lead", "x" * 65, None])
def test_bad_namespaces_are_refused_with_the_rule(name: object) -> None:
    with pytest.raises(ConfigurationError, match="letters, digits"):
        check_namespace(name)


def test_key_names_are_prefixed_by_the_namespace() -> None:
    keys = RedisKeys("team")
    assert keys.name("cache", "e", "ab") == "team:cache:e:ab"
    assert keys.pattern("cache") == "team:cache:*"
    with pytest.raises(ConfigurationError):
        RedisKeys("bad:ns")


# -- connections ---------------------------------------------------------------------------


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-pw", password=PASSWORD)
    server.directory.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
def test_connect_and_talk(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    client.set("cfm:probe", b"1")
    assert client.get("cfm:probe") == b"1"
    client.close()


@pytest.mark.redis
def test_nothing_listening_is_unavailable_and_not_retried() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as info:
        connect(url)
    message = str(info.value)
    assert PASSWORD not in message and "127.0.0.1" in message and "****" in message
    assert info.value.retryable


def test_a_dropped_connection_is_not_retried() -> None:
    """redis-py retries 3 times by default since 6.0; the link fails at the first drop, so a
    dead server costs one round trip, not four with back-off."""
    accepted: list[int] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        done = threading.Event()

        def drop_every_connection() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                accepted.append(1)
                conn.close()

        thread = threading.Thread(target=drop_every_connection, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        try:
            with pytest.raises(RedisUnavailableError, match="unavailable"):
                connect(f"redis://127.0.0.1:{port}/0")
        finally:
            done.set()
            thread.join(5)
    assert len(accepted) == 1


@pytest.mark.redis
def test_password_right_and_wrong(
    password_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = password_redis.port
    connect(f"redis://:{PASSWORD}@127.0.0.1:{port}/0").ping()
    caplog.set_level(logging.DEBUG)
    for url in (f"redis://:wrong-{PASSWORD}@127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0"):
        with pytest.raises(RedisUnavailableError, match="password") as info:
            connect(url)
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert PASSWORD not in caplog.text


@pytest.mark.redis
def test_acl_user_is_confined_to_its_namespace(private_redis: RedisServer) -> None:
    admin = connect(private_redis.url)
    admin.execute_command("ACL", "SETUSER", "alice", "on", f">{PASSWORD}", "~team:*", "+@all")
    alice = connect(f"redis://alice:{PASSWORD}@127.0.0.1:{private_redis.port}/0")
    alice.set("team:cache:x", b"1")
    assert alice.get("team:cache:x") == b"1"
    target = parse_redis_url(private_redis.url)
    with pytest.raises(RedisUnavailableError, match="ACL") as info, redis_errors(target, "read"):
        alice.get("other:cache:x")
    assert PASSWORD not in str(info.value)
    with pytest.raises(RedisUnavailableError, match="password"):
        connect(f"redis://alice:nope@127.0.0.1:{private_redis.port}/0")
