"""Signed envelopes: the only byte format the response cache writes or believes.

Layout of one stored value::

    b"CFMC" | version (1 byte) | HMAC-SHA256 tag (32 bytes) | signed body
    signed body = header length (4 bytes, big-endian) | compact UTF-8 JSON header | response

The JSON header carries every field but the answer (agent, model, tokens, cost, metadata,
``created_at`` and ``expires_at``); the answer follows it as plain UTF-8, so a long Markdown
answer is neither JSON-escaped on ``set`` nor un-escaped on ``get`` (that escaping was a third
of the cache's own overhead in ``benchmarks/bench_cache.py``).

The tag covers a domain label, the version, the cache key and the whole body, so an envelope
copied onto another key, an edited body (including ``created_at`` / ``expires_at``: the TTL
lives inside the signed body, because diskcache's ``expire_time`` column can be edited) or a
value signed with another secret all fail. The tag is checked with
:func:`hmac.compare_digest` *before* anything is parsed, so unauthenticated bytes never reach
the JSON parser.

Encrypted entries (``Signer(secret, encrypt=True)``, version 2)::

    b"CFMC" | 2 | flags (1 byte, 0x01: AES-256-GCM) | nonce (12 bytes) | ciphertext | GCM tag (16)

The ciphertext is the same signed body as above, encrypted with a key HKDF derives from the
secret (:mod:`.crypto`, distinct from the HMAC key); the GCM tag authenticates the ciphertext
and, as associated data, the domain label, magic, version, flags and the cache key. So the
same edits, moves and wrong secrets fail, again before anything is decrypted into the parser.
Plain entries keep their HMAC key (the secret itself), so entries written before encryption
existed stay readable.

:class:`Signer` is safe to share between threads.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import IntegrityError
from ..settings import Secret
from .crypto import NONCE_SIZE, TAG_SIZE, EntryCipher

__all__ = ["ENCRYPTED_VERSION", "ENVELOPE_VERSION", "MAGIC", "Signer"]

MAGIC = b"CFMC"
ENVELOPE_VERSION = 1
_VERSION_BYTE = bytes([ENVELOPE_VERSION])
_HEADER = MAGIC + _VERSION_BYTE
_TAG_SIZE = 32
_BODY_START = len(_HEADER) + _TAG_SIZE
_DOMAIN = b"claude-force-magic/cache\x00" + _VERSION_BYTE
#: Version 2: the payload encrypted with AES-256-GCM; the flags byte says how (bit 0: AES).
ENCRYPTED_VERSION = 2
FLAG_ENCRYPTED = 0x01
_ENCRYPTED_HEADER = MAGIC + bytes([ENCRYPTED_VERSION, FLAG_ENCRYPTED])
_CIPHERTEXT_START = len(_ENCRYPTED_HEADER) + NONCE_SIZE
_DOMAIN_V2 = b"claude-force-magic/cache\x00" + _ENCRYPTED_HEADER
_MIN_SIZE = min(_BODY_START, _CIPHERTEXT_START + TAG_SIZE) + 4
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder()

#: Body fields and the types a valid entry must have (bool is rejected where int is wanted).
_FIELDS: dict[str, tuple[type, ...]] = {
    "response": (str,),
    "agent_name": (str,),
    "model": (str,),
    "input_tokens": (int,),
    "output_tokens": (int,),
    "estimated_cost": (int, float),
    "created_at": (int, float),
    "expires_at": (int, float),
    "metadata": (dict,),
}


def _check_fields(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise IntegrityError("envelope body is not a JSON object")
    # Exact types (the JSON decoder makes no subclasses): rejects bool where int is wanted.
    for name, types in _FIELDS.items():
        value: Any = body.get(name)
        kind = type(value)
        if kind not in types:
            raise IntegrityError(f"envelope field {name!r} is missing or has the wrong type")
        if kind is float and not math.isfinite(value):
            raise IntegrityError(f"envelope field {name!r} is not a finite number")
    return body


class Signer:
    """Seal and open envelopes with one secret: signed (HMAC-SHA256), or with ``encrypt=True``
    encrypted and authenticated (AES-256-GCM, see :mod:`.crypto`).

    Either kind of Signer opens both kinds of envelope made with its secret, except that an
    encrypting Signer refuses a plain envelope (:class:`IntegrityError`, "stored
    unencrypted"): a cache that encrypts never serves, and so deletes, answers left in clear.
    The secret is held privately and never appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_cipher", "_encrypt", "_mac", "_secret")

    def __init__(self, secret: Secret, *, encrypt: bool = False) -> None:
        self._secret = secret.as_bytes()
        self._mac = hmac.new(self._secret, _DOMAIN, "sha256")  # keyed once; copied per use
        self._encrypt = bool(encrypt)
        # The AES key is derived at once when encrypting, else on the first encrypted entry.
        self._cipher: EntryCipher | None = EntryCipher(self._secret) if encrypt else None

    @property
    def encrypts(self) -> bool:
        """True when :meth:`seal` encrypts (and :meth:`open` refuses plain envelopes)."""
        return self._encrypt

    def _tag(self, key: str, body: bytes | memoryview) -> bytes:
        """HMAC-SHA256 over domain | key length | key | body, without joining them (a large
        body is hashed where it lies, not copied)."""
        key_bytes = key.encode("ascii")
        mac = self._mac.copy()
        mac.update(len(key_bytes).to_bytes(2, "big") + key_bytes)
        mac.update(body)
        return mac.digest()

    def _aead(self) -> EntryCipher:
        cipher = self._cipher
        if cipher is None:  # a plain Signer meeting an encrypted entry (benign race: same key)
            cipher = self._cipher = EntryCipher(self._secret)
        return cipher

    def __repr__(self) -> str:
        mode = ", encrypt=True" if self._encrypt else ""
        return f"Signer(secret=Secret('**********'){mode})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Signer holds the cache secret and cannot be pickled")

    def seal(self, key: str, body: Mapping[str, Any]) -> bytes:
        """Return the envelope of ``body`` (which holds ``"response"``) bound to ``key``:
        encrypted when this Signer encrypts, else signed.

        Raises TypeError/ValueError if the other fields are not JSON-serializable.
        """
        header = dict(body)
        response: str = header.pop("response")
        head = _ENCODER.encode(header).encode("utf-8", "surrogatepass")
        payload = b"".join(
            (len(head).to_bytes(4, "big"), head, response.encode("utf-8", "surrogatepass"))
        )
        if self._encrypt:
            cipher = self._aead()
            nonce = cipher.new_nonce()
            sealed = cipher.encrypt(nonce, payload, _associated(key))
            return b"".join((_ENCRYPTED_HEADER, nonce, sealed))
        return b"".join((_HEADER, self._tag(key, payload), payload))

    def open(self, key: str, data: bytes) -> dict[str, Any]:
        """Verify ``data`` for ``key`` and return its body (header fields plus ``response``).

        Raises :class:`IntegrityError` (with a short reason, never the secret or the body) when
        the bytes are not an envelope, were signed for another key or with another secret,
        were edited, carry a body without the expected fields, or (for an encrypting Signer)
        were stored unencrypted.
        """
        if not isinstance(data, bytes):
            raise IntegrityError("stored value is not bytes")
        if len(data) < _MIN_SIZE or not data.startswith(MAGIC):
            raise IntegrityError("not a signed envelope")
        version = data[len(MAGIC)]
        if version == ENVELOPE_VERSION:
            payload: bytes | memoryview = self._open_plain(key, data)
        elif version == ENCRYPTED_VERSION:
            payload = self._open_encrypted(key, data)
        else:
            raise IntegrityError(f"unsupported envelope version {version}")
        return _parse(payload)

    def _open_plain(self, key: str, data: bytes) -> memoryview:
        if len(data) < _BODY_START + 4:
            raise IntegrityError("not a signed envelope")
        payload = memoryview(data)[_BODY_START:]  # no copy of a large answer
        expected = self._tag(key, payload)
        if not hmac.compare_digest(expected, data[len(_HEADER) : _BODY_START]):
            raise IntegrityError("signature mismatch")
        if self._encrypt:
            raise IntegrityError(
                "stored unencrypted, but this cache encrypts (encrypt=True): not served"
            )
        return payload

    def _open_encrypted(self, key: str, data: bytes) -> bytes:
        if data[len(MAGIC) + 1] != FLAG_ENCRYPTED:
            raise IntegrityError(f"unsupported envelope flags {data[len(MAGIC) + 1]:#04x}")
        nonce = data[len(_ENCRYPTED_HEADER) : _CIPHERTEXT_START]
        sealed = memoryview(data)[_CIPHERTEXT_START:]
        return self._aead().decrypt(nonce, sealed, _associated(key))


def _associated(key: str) -> bytes:
    """What AES-GCM authenticates beside the ciphertext: the domain, the envelope header
    (magic, version, flags) and the cache key."""
    key_bytes = key.encode("ascii")
    return b"".join((_DOMAIN_V2, len(key_bytes).to_bytes(2, "big"), key_bytes))


def _parse(payload: bytes | memoryview) -> dict[str, Any]:
    """The body of an authenticated payload: header length, JSON header, UTF-8 answer."""
    end = 4 + int.from_bytes(payload[:4], "big")
    if end > len(payload):
        raise IntegrityError("signed header length is out of range")
    try:
        body = _DECODER.decode(str(payload[4:end], "utf-8", "surrogatepass"))
        response = str(payload[end:], "utf-8", "surrogatepass")
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
        raise IntegrityError("signed body is not valid UTF-8 JSON") from exc
    if isinstance(body, dict):
        body["response"] = response
    return _check_fields(body)
