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

:class:`Signer` is immutable and safe to share between threads.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import IntegrityError
from ..settings import Secret

__all__ = ["ENVELOPE_VERSION", "MAGIC", "Signer"]

MAGIC = b"CFMC"
ENVELOPE_VERSION = 1
_VERSION_BYTE = bytes([ENVELOPE_VERSION])
_HEADER = MAGIC + _VERSION_BYTE
_TAG_SIZE = 32
_BODY_START = len(_HEADER) + _TAG_SIZE
_DOMAIN = b"claude-force-magic/cache\x00" + _VERSION_BYTE
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
    """Seal and open envelopes with one secret (an HMAC-SHA256 key).

    The secret is held privately and never appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_mac", "_secret")

    def __init__(self, secret: Secret) -> None:
        self._secret = secret.as_bytes()
        self._mac = hmac.new(self._secret, _DOMAIN, "sha256")  # keyed once; copied per use

    def _tag(self, key: str, body: bytes | memoryview) -> bytes:
        """HMAC-SHA256 over domain | key length | key | body, without joining them (a large
        body is hashed where it lies, not copied)."""
        key_bytes = key.encode("ascii")
        mac = self._mac.copy()
        mac.update(len(key_bytes).to_bytes(2, "big") + key_bytes)
        mac.update(body)
        return mac.digest()

    def __repr__(self) -> str:
        return "Signer(secret=Secret('**********'))"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Signer holds the cache secret and cannot be pickled")

    def seal(self, key: str, body: Mapping[str, Any]) -> bytes:
        """Return the envelope of ``body`` (which holds ``"response"``) bound to ``key``.

        Raises TypeError/ValueError if the other fields are not JSON-serializable.
        """
        header = dict(body)
        response: str = header.pop("response")
        head = _ENCODER.encode(header).encode("utf-8", "surrogatepass")
        payload = b"".join(
            (len(head).to_bytes(4, "big"), head, response.encode("utf-8", "surrogatepass"))
        )
        return b"".join((_HEADER, self._tag(key, payload), payload))

    def open(self, key: str, data: bytes) -> dict[str, Any]:
        """Verify ``data`` for ``key`` and return its body (header fields plus ``response``).

        Raises :class:`IntegrityError` (with a short reason, never the secret or the body) when
        the bytes are not an envelope, were signed for another key or with another secret,
        were edited, or carry a body without the expected fields.
        """
        if not isinstance(data, bytes):
            raise IntegrityError("stored value is not bytes")
        if len(data) < _BODY_START + 4 or not data.startswith(MAGIC):
            raise IntegrityError("not a signed envelope")
        if data[len(MAGIC)] != ENVELOPE_VERSION:
            raise IntegrityError(f"unsupported envelope version {data[len(MAGIC)]}")
        payload = memoryview(data)[_BODY_START:]  # no copy of a large answer
        expected = self._tag(key, payload)
        if not hmac.compare_digest(expected, data[len(_HEADER) : _BODY_START]):
            raise IntegrityError("signature mismatch")
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
