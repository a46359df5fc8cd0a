"""Signed envelopes: bound to key and secret, checked before anything is parsed."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from claude_force_magic.cache import signing
from claude_force_magic.cache.signing import MAGIC, Signer
from claude_force_magic.errors import IntegrityError
from claude_force_magic.settings import Secret

KEY = "a" * 64
OTHER_KEY = "b" * 64
SECRET = Secret("signing-test-secret-0123456789")


def body(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "response": "# Answer\n\nUse `asyncio.Semaphore` ✓",
        "agent_name": "python-expert",
        "model": "claude-sonnet-5",
        "input_tokens": 12,
        "output_tokens": 34,
        "estimated_cost": 0.0012,
        "created_at": 1000.0,
        "expires_at": 4600.0,
        "metadata": {"stop_reason": "end_turn"},
    }
    value.update(changes)
    return value


def test_round_trip_returns_every_field() -> None:
    signer = Signer(SECRET)
    assert signer.open(KEY, signer.seal(KEY, body())) == body()


def test_envelope_starts_with_magic_and_hides_nothing_secret() -> None:
    blob = Signer(SECRET).seal(KEY, body())
    assert blob.startswith(MAGIC)
    assert SECRET.as_bytes() not in blob


def test_envelope_copied_onto_another_key_fails() -> None:
    signer = Signer(SECRET)
    with pytest.raises(IntegrityError, match="signature"):
        signer.open(OTHER_KEY, signer.seal(KEY, body()))


def test_envelope_signed_with_another_secret_fails() -> None:
    forged = Signer(Secret("another-secret-0123456789abcdef")).seal(KEY, body())
    with pytest.raises(IntegrityError, match="signature"):
        Signer(SECRET).open(KEY, forged)


@pytest.mark.parametrize("position", [4, 5, 20, 36, 40, 60, -1])
def test_any_flipped_byte_fails(position: int) -> None:
    blob = bytearray(Signer(SECRET).seal(KEY, body()))
    blob[position] ^= 0x01
    with pytest.raises(IntegrityError):
        Signer(SECRET).open(KEY, bytes(blob))


def test_edited_expiry_inside_the_body_fails_without_resigning() -> None:
    signer = Signer(SECRET)
    blob = signer.seal(KEY, body())
    edited = blob.replace(b'"expires_at":4600.0', b'"expires_at":9600.0')
    assert edited != blob
    with pytest.raises(IntegrityError, match="signature"):
        signer.open(KEY, edited)


@pytest.mark.parametrize(
    "data",
    [b"", b"CFMC", b"XXXX" + bytes(64), MAGIC + b"\x07" + bytes(40), pickle.dumps({"a": 1})],
)
def test_non_envelopes_fail(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        Signer(SECRET).open(KEY, data)


def test_signature_is_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = bytearray(Signer(SECRET).seal(KEY, body()))
    blob[10] ^= 0xFF  # inside the tag

    def never(*_args: object) -> object:
        raise AssertionError("parsed unauthenticated bytes")

    monkeypatch.setattr(signing._DECODER, "decode", never)
    monkeypatch.setattr(json, "loads", never)
    with pytest.raises(IntegrityError, match="signature"):
        Signer(SECRET).open(KEY, bytes(blob))


def test_signed_body_with_wrong_fields_is_still_rejected() -> None:
    signer = Signer(SECRET)
    with pytest.raises(IntegrityError, match="input_tokens"):
        signer.open(KEY, signer.seal(KEY, body(input_tokens="12")))
    with pytest.raises(IntegrityError, match="metadata"):
        signer.open(KEY, signer.seal(KEY, {k: v for k, v in body().items() if k != "metadata"}))


def test_signer_never_shows_or_pickles_the_secret() -> None:
    signer = Signer(SECRET)
    assert "signing-test" not in repr(signer) and "**" in repr(signer)
    with pytest.raises(TypeError):
        pickle.dumps(signer)
