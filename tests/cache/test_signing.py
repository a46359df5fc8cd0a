"""Signed envelopes: bound to key and secret, checked before anything is parsed."""

from __future__ import annotations

import hmac
import json
import math
import pickle
import struct
from typing import Any

import pytest

from claude_force_magic.cache import signing
from claude_force_magic.cache.signing import ENVELOPE_VERSION, MAGIC, Signer
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
    # expires_at is the fifth fixed field: after magic, version, flags, nonce, 2 u64, 2 doubles
    at = 4 + 1 + 1 + 12 + 8 + 8 + 8 + 8
    assert struct.unpack_from(">d", blob, at) == (4600.0,)
    edited = blob[:at] + struct.pack(">d", 9600.0) + blob[at + 8 :]
    with pytest.raises(IntegrityError, match="signature"):
        signer.open(KEY, edited)


def v1_envelope(key: str, value: dict[str, Any], secret: Secret = SECRET) -> bytes:
    """A version-1 envelope as the previous release wrote it (HMAC-SHA256, JSON header); the
    golden blob below checks that this helper is that format."""
    header = {k: v for k, v in value.items() if k != "response"}
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    payload = len(head).to_bytes(4, "big") + head + value["response"].encode()
    mac = hmac.new(secret.as_bytes(), b"claude-force-magic/cache\x00\x01", "sha256")
    mac.update(len(key).to_bytes(2, "big") + key.encode())
    mac.update(payload)
    return MAGIC + b"\x01" + mac.digest() + payload


#: Written by the previous release's Signer.seal (commit 047f925) for KEY, SECRET, LEGACY_BODY.
GOLDEN_V1 = bytes.fromhex(
    "43464d43018b8c0e14838556b3e19f1960970e111bc0697eae0a68822ae5c1ff6fc8f73013000000db7b2261"
    "67656e745f6e616d65223a22707974686f6e2d657870657274222c226d6f64656c223a22636c617564652d73"
    "6f6e6e65742d35222c22696e7075745f746f6b656e73223a31322c226f75747075745f746f6b656e73223a33"
    "342c22657374696d617465645f636f7374223a302e303031322c22637265617465645f6174223a313030302e"
    "302c22657870697265735f6174223a343630302e302c226d65746164617461223a7b2273746f705f72656173"
    "6f6e223a22656e645f7475726e222c2270726576696577223a226c6567616379207461736b227d7d23204c65"
    "6761637920616e737765720a0a55736520606173796e63696f2e53656d6170686f72656020e29c93"
)
LEGACY_BODY = body(
    response="# Legacy answer\n\nUse `asyncio.Semaphore` ✓",
    metadata={"stop_reason": "end_turn", "preview": "legacy task"},
)


def test_entries_written_by_the_previous_release_still_open() -> None:
    assert v1_envelope(KEY, LEGACY_BODY) == GOLDEN_V1
    assert Signer(SECRET).open(KEY, GOLDEN_V1) == LEGACY_BODY
    with pytest.raises(IntegrityError, match="signature"):
        Signer(SECRET).open(OTHER_KEY, GOLDEN_V1)
    flipped = bytearray(GOLDEN_V1)
    flipped[-3] ^= 0x01
    with pytest.raises(IntegrityError, match="signature"):
        Signer(SECRET).open(KEY, bytes(flipped))
    with pytest.raises(IntegrityError, match="unencrypted"):
        Signer(SECRET, encrypt=True).open(KEY, GOLDEN_V1)


def test_a_version_1_entry_opens_to_the_same_fields_a_lookup_keeps() -> None:
    fields = Signer(SECRET).open_fields(KEY, GOLDEN_V1)
    assert fields[0] == LEGACY_BODY["response"] and fields[5:8] == (0.0012, 1000.0, 4600.0)
    assert json.loads(fields[8]) == LEGACY_BODY["metadata"]
    # a version-1 header with NaN in its metadata (json.dumps allows it; no release wrote it)
    nan = v1_envelope(KEY, body(metadata={"score": float("nan")}))
    with pytest.raises(IntegrityError, match="metadata is not valid JSON"):
        Signer(SECRET).open_fields(KEY, nan)


def test_new_envelopes_are_version_2_and_smaller_to_parse() -> None:
    blob = Signer(SECRET).seal(KEY, body())
    assert blob[4:6] == bytes([ENVELOPE_VERSION, 0])
    assert b'"input_tokens"' not in blob and b'"stop_reason":"end_turn"' in blob


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
    monkeypatch.setattr(signing._DECODER, "raw_decode", never)
    monkeypatch.setattr(signing, "_parse", never)
    monkeypatch.setattr(json, "loads", never)
    with pytest.raises(IntegrityError, match="signature"):
        Signer(SECRET).open(KEY, bytes(blob))


def test_seal_refuses_wrong_fields_and_open_rejects_them_in_old_envelopes() -> None:
    signer = Signer(SECRET)
    with pytest.raises(TypeError, match="token counts"):
        signer.seal(KEY, body(input_tokens="12"))
    with pytest.raises(TypeError, match="metadata"):
        signer.seal(KEY, body(metadata=["not", "a", "dict"]))
    with pytest.raises(ValueError, match="finite"):
        signer.seal(KEY, body(expires_at=math.inf))
    with pytest.raises(IntegrityError, match="input_tokens"):
        signer.open(KEY, v1_envelope(KEY, body(input_tokens="12")))
    with pytest.raises(IntegrityError, match="metadata"):
        no_metadata = {k: v for k, v in body().items() if k != "metadata"}
        signer.open(KEY, v1_envelope(KEY, no_metadata))


def test_signer_never_shows_or_pickles_the_secret() -> None:
    signer = Signer(SECRET)
    assert "signing-test" not in repr(signer) and "**" in repr(signer)
    with pytest.raises(TypeError):
        pickle.dumps(signer)


@pytest.mark.parametrize(
    "changes",
    [
        {"agent_name": "análisis-ü", "model": "claude-sonnet-5"},  # multi-byte agent name
        {"model": "modèle-✓"},
        {"metadata": {"preview": "naïve café ✓", "n": [1, {"deep": None}], "ok": True}},
        {"metadata": {}},
        {"agent_name": "", "model": "", "metadata": {}, "response": ""},
        {"agent_name": "a\udc80b"},  # a lone surrogate, as str allows
    ],
)
def test_every_field_round_trips_whatever_its_characters(changes: dict[str, Any]) -> None:
    signer = Signer(SECRET)
    opened = signer.open(KEY, signer.seal(KEY, body(**changes)))
    assert opened == body(**changes)
    assert type(opened["metadata"]) is dict


def signed_v2(payload: bytes) -> bytes:
    """A version-2 envelope with a genuine tag over ``payload`` (whatever it holds)."""
    signer = Signer(SECRET)
    nonce = bytes(12)
    header = signing._PLAIN_HEADER
    tag = signer._cipher.encrypt(nonce, b"", signing._associated(header, KEY, payload))
    return header + nonce + payload + tag


def payload_with_metadata(meta: bytes) -> bytes:
    agent, model = b"python-expert", b"claude-sonnet-5"
    fixed = signing._FIXED.pack(1, 2, 0.5, 1000.0, 4600.0, len(agent), len(model), len(meta))
    return fixed + agent + model + meta + b"the answer"


def test_a_genuine_envelope_opens_through_the_same_parser() -> None:
    opened = Signer(SECRET).open(KEY, signed_v2(payload_with_metadata(b'{"a":1}')))
    assert opened["metadata"] == {"a": 1} and opened["response"] == "the answer"


@pytest.mark.parametrize(
    "meta", [b' {"a":1}', b'{"a":1} ', b'{"a":1}{}', b"[1]", b"null", b"{", b"\xff{}", b""]
)
def test_signed_metadata_must_be_exactly_one_compact_json_object(meta: bytes) -> None:
    # Only the cache's own compact encoder writes metadata: anything else is refused, even
    # under a genuine tag (it could only come from a bug or a leaked secret).
    with pytest.raises(IntegrityError):
        Signer(SECRET).open(KEY, signed_v2(payload_with_metadata(meta)))
