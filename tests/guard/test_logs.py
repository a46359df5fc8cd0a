"""Safe logging: one line per record, bounded, no secrets (SEC-005)."""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_force_magic.guard import SecretRedactor, get_logger, sanitize_for_log
from claude_force_magic.settings import Secret

API_KEY = "sk-ant-api03-" + "Zx9" * 20


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    SecretRedactor.forget_all()
    yield
    SecretRedactor.forget_all()


@pytest.fixture
def stream_handler() -> Iterator[io.StringIO]:
    """A real handler on the package logger, as an application would configure it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("claude_force_magic")
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_sec_005_log_injection_neutralised(stream_handler: io.StringIO) -> None:
    log = get_logger("engine.orchestrator")
    agent = "python-expert\nINFO claude_force_magic.auth login ok user=admin"
    log.info("calling agent %s", sanitize_for_log(agent))
    log.info("unsanitized agent %s", agent)  # the redactor also neutralises what callers forget
    lines = stream_handler.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("INFO claude_force_magic.engine.orchestrator ") for line in lines)
    assert "python-expert\\nINFO claude_force_magic.auth" in lines[0]


def test_sec_005_api_key_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    SecretRedactor.register("my-custom-proxy-token-123")
    log = get_logger("engine.client")
    with caplog.at_level(logging.DEBUG, logger="claude_force_magic"):
        log.warning("key from env: %s", API_KEY)
        log.warning(f"inline key {API_KEY} and proxy token my-custom-proxy-token-123")
        log.error("args %r", {"headers": {"authorization": f"Bearer {API_KEY}"}})
        try:
            raise RuntimeError(f"server said bad key {API_KEY}")
        except RuntimeError:
            log.exception("call failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert API_KEY not in text
    assert "my-custom-proxy-token-123" not in text
    assert "sk-ant-***" in text
    assert "RuntimeError" in text  # the traceback is kept, only the key is gone


def test_registered_secret_without_known_shape_is_redacted(stream_handler: io.StringIO) -> None:
    SecretRedactor.register(Secret("sk-test-but-long-enough"))
    SecretRedactor.register(b"\x01\x02cache-secret-bytes-xyz")
    get_logger("cache").info(
        "a sk-test-but-long-enough b %s", b"\x01\x02cache-secret-bytes-xyz".hex()
    )
    out = stream_handler.getvalue()
    assert "sk-test-but-long-enough" not in out
    assert b"\x01\x02cache-secret-bytes-xyz".hex() not in out
    assert out.count("***") == 2


def test_redactor_keeps_no_plain_secret() -> None:
    SecretRedactor.register("a-very-private-value")
    registry = SecretRedactor._registry
    assert "a-very-private-value" not in repr(vars(registry))
    assert len(registry) == 1


def test_short_secrets_are_ignored_and_registry_is_bounded() -> None:
    SecretRedactor.register("abc")
    SecretRedactor.register(None)
    assert len(SecretRedactor._registry) == 0
    for i in range(200):
        SecretRedactor.register(f"secret-number-{i:04d}")
    assert len(SecretRedactor._registry) == 64
    assert SecretRedactor.redact("secret-number-0199") == "***"


def test_redaction_of_overlapping_and_repeated_secrets() -> None:
    SecretRedactor.register("token-abcdef")
    SecretRedactor.register("token-abcdef-extended")
    assert SecretRedactor.redact("x token-abcdef-extended y token-abcdef z token-abcdef") == (
        "x *** y *** z ***"
    )


def test_get_logger_installs_redactor_once() -> None:
    a = get_logger("guard.test_once")
    b = get_logger("claude_force_magic.guard.test_once")
    assert a is b
    assert a.name == "claude_force_magic.guard.test_once"
    assert sum(isinstance(f, SecretRedactor) for f in a.filters) == 1
    root = logging.getLogger("claude_force_magic")
    assert sum(isinstance(f, SecretRedactor) for f in root.filters) == 1
    assert root.handlers == [] or all(
        not isinstance(h, logging.StreamHandler) or h.stream is not None for h in root.handlers
    )


def test_package_adds_no_handlers() -> None:
    get_logger("no_handlers_here")
    assert logging.getLogger("claude_force_magic.no_handlers_here").handlers == []


@pytest.mark.parametrize("bad", ["", ".relative"])
def test_get_logger_refuses_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="dotted module name"):
        get_logger(bad)


def test_bad_format_args_do_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="claude_force_magic"):
        get_logger("x").info("one arg %s %s", API_KEY)
    assert API_KEY not in caplog.text
    assert "did not match" in caplog.text


def test_sanitize_examples() -> None:
    assert sanitize_for_log("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert sanitize_for_log("\x1b[31mred\x1b[0m") == "red"
    assert sanitize_for_log("nul\x00bidi\u202e") == "nul\\x00bidi\\u202e"
    assert sanitize_for_log(b"\x00") == "b'\\x00'"
    assert sanitize_for_log(Secret("sk-ant-hidden")) == "**********"
    long = sanitize_for_log("x" * 1000, 50)
    assert len(long) == 50
    assert long.endswith("…(+963 chars)")
    assert sanitize_for_log("x" * 1000, 5) == "xxxxx"


def test_sanitize_survives_broken_str() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("nope")

    assert sanitize_for_log(Broken()) == "<unprintable Broken>"


def test_sanitize_refuses_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_len"):
        sanitize_for_log("x", 0)


UNSAFE = {"\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"}


@given(value=st.text(), max_len=st.integers(min_value=1, max_value=400))
def test_sanitize_property_no_controls_and_bounded(value: str, max_len: int) -> None:
    out = sanitize_for_log(value, max_len)
    assert len(out) <= max_len
    assert not any(unicodedata.category(c) == "Cc" or c in UNSAFE for c in out)
    if len(value) <= max_len and value.isprintable():
        assert out == value
