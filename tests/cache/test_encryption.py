"""Encryption at rest: a cache directory made with ``encrypt=True`` reveals no answer or preview,
every tamper still fails before anything is parsed, and the two modes read each other sanely."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic.cache import ResponseCache, signing
from claude_force_magic.cache.crypto import KEY_INFO, derive_key
from claude_force_magic.cache.signing import (
    ENCRYPTED_VERSION,
    FLAG_ENCRYPTED,
    LEGACY_VERSION,
    MAGIC,
    Signer,
)
from claude_force_magic.errors import ConfigurationError, IntegrityError
from claude_force_magic.settings import CACHE_ENCRYPT_ENV, Secret

from .conftest import SECRET, db_execute, fetch, put

KEY = "c" * 64
ANSWER = "The launch code is SWORDFISH-7731; keep it between us."
PREVIEW = "what is the launch code for PROJECT-MARIGOLD"
BIG_ANSWER = ("Confidential roadmap: PROJECT-MARIGOLD ships in May. " * 800)[:40_000]


def body(response: str = ANSWER) -> dict[str, Any]:
    return {
        "response": response,
        "agent_name": "python-expert",
        "model": "claude-sonnet-5",
        "input_tokens": 12,
        "output_tokens": 34,
        "estimated_cost": 0.0012,
        "created_at": 1000.0,
        "expires_at": 4600.0,
        "metadata": {"preview": PREVIEW, "origin": "library"},
    }


def every_byte_in(directory: Path) -> bytes:
    """All bytes of every file under ``directory``: cache.db, its WAL, value files."""
    parts = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            parts.append(Path(root, name).read_bytes())
    return b"".join(parts)


def fill(cache: ResponseCache) -> None:
    put(cache, "small", ANSWER, metadata={"preview": PREVIEW})
    put(cache, "big", BIG_ANSWER, metadata={"preview": PREVIEW})  # its own value file
    cache.flush()


# -- the envelope ------------------------------------------------------------------------------


def test_encrypted_round_trip_and_version() -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    blob = signer.seal(KEY, body())
    assert blob.startswith(MAGIC) and blob[len(MAGIC)] == ENCRYPTED_VERSION
    assert signer.open(KEY, blob) == body()


def test_envelope_reveals_neither_answer_nor_preview() -> None:
    blob = Signer(Secret(SECRET), encrypt=True).seal(KEY, body())
    for secret_text in (ANSWER, PREVIEW, "SWORDFISH", "MARIGOLD", "launch"):
        assert secret_text.encode() not in blob
    plain = Signer(Secret(SECRET)).seal(KEY, body())
    assert b"SWORDFISH" in plain  # the check above can fail: a plain envelope shows it


def test_every_seal_uses_a_fresh_nonce() -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    first, second = signer.seal(KEY, body()), signer.seal(KEY, body())
    assert first != second and first[6:18] != second[6:18]
    assert signer.open(KEY, first) == signer.open(KEY, second) == body()


def test_encryption_key_is_derived_and_distinct_from_the_mac_key() -> None:
    secret = Secret(SECRET).as_bytes()
    key = derive_key(secret)
    assert len(key) == 32 and key != secret and key not in secret
    assert key == derive_key(secret)  # deterministic: every process derives the same key
    assert key != derive_key(secret, KEY_INFO + b"x")
    assert key != derive_key(b"another-secret-0123456789abcdef")


@pytest.mark.parametrize("position", [0, 4, 5, 6, 12, 17, 18, 40, 100, -17, -1])
def test_any_flipped_byte_of_an_encrypted_envelope_fails(position: int) -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    blob = bytearray(signer.seal(KEY, body()))
    blob[position] ^= 0x01
    with pytest.raises(IntegrityError):
        signer.open(KEY, bytes(blob))


def test_encrypted_envelope_moved_to_another_key_fails() -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    with pytest.raises(IntegrityError, match="signature"):
        signer.open("d" * 64, signer.seal(KEY, body()))


def test_encrypted_envelope_with_another_secret_fails() -> None:
    forged = Signer(Secret("another-secret-0123456789abcdef"), encrypt=True).seal(KEY, body())
    for reader in (Signer(Secret(SECRET), encrypt=True), Signer(Secret(SECRET))):
        with pytest.raises(IntegrityError, match="signature"):
            reader.open(KEY, forged)


def test_version_downgrade_and_unknown_flags_fail() -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    blob = bytearray(signer.seal(KEY, body()))
    assert blob[5] == FLAG_ENCRYPTED
    downgraded = bytes(blob[:4]) + bytes([LEGACY_VERSION]) + bytes(blob[5:])
    for reader in (signer, Signer(Secret(SECRET))):
        with pytest.raises(IntegrityError):
            reader.open(KEY, downgraded)
        cleared = bytes(blob[:5]) + b"\x00" + bytes(blob[6:])  # "not encrypted": tag fails
        with pytest.raises(IntegrityError, match="signature"):
            reader.open(KEY, cleared)
    blob[5] = 0x03
    with pytest.raises(IntegrityError, match="flags"):
        signer.open(KEY, bytes(blob))


def test_tampered_ciphertext_is_never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    blob = bytearray(signer.seal(KEY, body()))
    blob[30] ^= 0xFF

    def never(*_args: object) -> object:
        raise AssertionError("parsed unauthenticated bytes")

    monkeypatch.setattr(signing._DECODER, "decode", never)
    monkeypatch.setattr(signing._DECODER, "raw_decode", never)
    monkeypatch.setattr(signing, "_parse", never)
    monkeypatch.setattr(json, "loads", never)
    with pytest.raises(IntegrityError, match="signature"):
        signer.open(KEY, bytes(blob))


def test_encrypting_signer_refuses_plain_envelopes_and_plain_reads_encrypted() -> None:
    plain, encrypting = Signer(Secret(SECRET)), Signer(Secret(SECRET), encrypt=True)
    with pytest.raises(IntegrityError, match="unencrypted"):
        encrypting.open(KEY, plain.seal(KEY, body()))
    assert plain.open(KEY, encrypting.seal(KEY, body())) == body()


def test_encrypting_signer_hides_its_keys() -> None:
    signer = Signer(Secret(SECRET), encrypt=True)
    assert "test-secret" not in repr(signer) and "encrypt=True" in repr(signer)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(signer)


# -- the cache directory -----------------------------------------------------------------------


def test_encrypted_cache_directory_reveals_no_answer_or_preview(
    make_cache: Callable[..., ResponseCache],
) -> None:
    cache = make_cache(encrypt=True)
    fill(cache)
    raw = every_byte_in(cache.directory)
    for secret_text in ("SWORDFISH", "MARIGOLD", "launch code", "roadmap"):
        assert secret_text.encode() not in raw, secret_text
    hit = fetch(cache, "small")
    assert hit is not None and hit["response"] == ANSWER
    assert hit["metadata"]["preview"] == PREVIEW
    big = fetch(cache, "big")
    assert big is not None and big["response"] == BIG_ANSWER
    assert [e["preview"] for e in cache.entries()] == [PREVIEW, PREVIEW]
    assert cache.search("marigold") and cache.verify().ok


def test_plain_cache_directory_does_show_the_text(
    make_cache: Callable[..., ResponseCache],
) -> None:
    """The control for the test above: without encryption the same grep finds the text."""
    cache = make_cache(encrypt=False)
    fill(cache)
    raw = every_byte_in(cache.directory)
    assert b"SWORDFISH" in raw and b"MARIGOLD" in raw


def test_plain_entry_in_an_encrypted_cache_is_a_counted_miss_and_deleted(
    make_cache: Callable[..., ResponseCache],
) -> None:
    plain = make_cache(encrypt=False)
    put(plain, "t", ANSWER)
    plain.close()
    encrypted = make_cache(encrypt=True)
    assert fetch(encrypted, "t") is None
    stats = encrypted.get_stats()
    assert (stats["integrity_failures"], stats["entries"], stats["hits"]) == (1, 0, 0)
    assert db_execute(encrypted.directory, "SELECT count(*) FROM Cache") == [(0,)]
    put(encrypted, "t", ANSWER)  # bought again, now stored encrypted
    hit = fetch(encrypted, "t")
    assert hit is not None and hit["response"] == ANSWER


def test_verify_in_an_encrypted_cache_removes_every_plain_entry(
    make_cache: Callable[..., ResponseCache],
) -> None:
    plain = make_cache(encrypt=False)
    fill(plain)
    plain.close()
    encrypted = make_cache(encrypt=True)
    put(encrypted, "new", "stored encrypted")
    report = encrypted.verify()
    assert (report.valid, len(report.invalid)) == (1, 2)
    assert all("unencrypted" in reason for _key, reason in report.invalid)
    assert b"MARIGOLD" not in every_byte_in(encrypted.directory)


def test_encrypted_entry_is_served_by_a_cache_without_encryption(
    make_cache: Callable[..., ResponseCache],
) -> None:
    encrypted = make_cache(encrypt=True)
    put(encrypted, "t", ANSWER)
    encrypted.close()
    plain = make_cache(encrypt=False)
    hit = fetch(plain, "t")
    assert hit is not None and hit["response"] == ANSWER
    assert plain.get_stats()["integrity_failures"] == 0


@pytest.mark.parametrize("region", ["nonce", "ciphertext", "tag"])
def test_tampered_encrypted_row_is_a_counted_miss(
    make_cache: Callable[..., ResponseCache], region: str
) -> None:
    cache = make_cache(encrypt=True)
    put(cache, "t", ANSWER)
    key = cache.key_for("python-expert", "t", "m")
    ((rowid, value),) = db_execute(
        cache.directory, "SELECT rowid, value FROM Cache WHERE key = ?", (key,)
    )
    data = bytearray(value)
    data[{"nonce": 8, "ciphertext": 40, "tag": -3}[region]] ^= 0x40
    db_execute(cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(data), rowid))
    assert fetch(cache, "t") is None
    assert cache.get_stats()["integrity_failures"] == 1
    assert db_execute(cache.directory, "SELECT count(*) FROM Cache") == [(0,)]


def test_encrypted_value_swapped_between_keys_fails(
    make_cache: Callable[..., ResponseCache],
) -> None:
    cache = make_cache(encrypt=True)
    put(cache, "genuine", "the real answer")
    put(cache, "target", "what should be served")
    genuine = cache.key_for("python-expert", "genuine", "m")
    target = cache.key_for("python-expert", "target", "m")
    ((value,),) = db_execute(cache.directory, "SELECT value FROM Cache WHERE key = ?", (genuine,))
    db_execute(cache.directory, "UPDATE Cache SET value = ? WHERE key = ?", (value, target))
    assert fetch(cache, "target") is None
    assert cache.get_stats()["integrity_failures"] == 1
    hit = fetch(cache, "genuine")
    assert hit is not None and hit["response"] == "the real answer"


def test_encrypted_cache_with_the_wrong_secret_misses(
    make_cache: Callable[..., ResponseCache],
) -> None:
    put(make_cache(encrypt=True), "t", ANSWER)
    other = make_cache(encrypt=True, cache_secret="another-secret-0123456789abcdef")
    assert fetch(other, "t") is None
    assert other.get_stats()["integrity_failures"] == 1


# -- the switch --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("on", True), ("0", False)])
def test_env_switch_sets_the_default(
    make_cache: Callable[..., ResponseCache],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    expected: bool,
) -> None:
    monkeypatch.setenv(CACHE_ENCRYPT_ENV, value)
    cache = make_cache()
    assert cache.encrypt is expected
    put(cache, "t", ANSWER)
    assert (b"SWORDFISH" in every_byte_in(cache.directory)) is not expected
    assert make_cache(encrypt=not expected).encrypt is not expected  # explicit wins


def test_env_switch_with_a_typo_is_a_clear_error(
    make_cache: Callable[..., ResponseCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENCRYPT_ENV, "maybe")
    with pytest.raises(ConfigurationError, match="CLAUDE_CACHE_ENCRYPT"):
        make_cache()
