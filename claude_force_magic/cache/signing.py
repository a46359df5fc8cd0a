"""Signed envelopes: the only byte format the response cache writes or believes.

What :meth:`Signer.seal` writes (version 2)::

    b"CFMC" | 2 | flags (1 byte) | nonce (12 bytes) | body | GCM tag (16 bytes)
    flags 0x00: body = the payload in clear, authenticated by the tag (AES-256-GCM used as a
                MAC, "GMAC": the payload is associated data, nothing is encrypted)
    flags 0x01: body = the payload encrypted with AES-256-GCM (``encrypt=True``)
    payload = fixed fields | agent name | model | metadata JSON | response
    fixed fields = input_tokens, output_tokens (u64), estimated_cost, created_at, expires_at
                   (IEEE doubles), then the byte lengths of agent name, model, metadata (u32),
                   all big-endian

The key is HKDF-SHA256 of the cache secret (:mod:`.crypto`), each entry gets a random 96-bit
nonce, and the tag authenticates a domain label, the magic, version and flags, the cache key
and the payload. So an envelope copied onto another key, an edited payload (including
``created_at`` / ``expires_at``: the TTL lives inside the signed body, because diskcache's
``expire_time`` column can be edited), a header whose flags or version were changed, or a value
made with another secret all fail, *before* anything is decrypted or parsed. Only the
metadata is JSON; the answer follows as plain UTF-8 and the numbers are fixed-width, so a hit
parses about 30 bytes of JSON rather than the whole header (GMAC over a 2 KB entry is also
about 4x cheaper than the HMAC-SHA256 of version 1).

Version 1 (written before this release) is still opened::

    b"CFMC" | 1 | HMAC-SHA256 tag (32 bytes) | header length (u32) | JSON header | response

its tag keyed with the secret itself under a domain label, checked with
:func:`hmac.compare_digest` before the JSON header is parsed.

An encrypting Signer refuses envelopes stored in clear (either version): a cache that
encrypts never serves, and so deletes, answers left readable. :class:`Signer` is safe to
share between threads.
"""

from __future__ import annotations

import hmac
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import IntegrityError
from ..settings import Secret
from .crypto import NONCE_SIZE, TAG_SIZE, EntryCipher

__all__ = [
    "ENCRYPTED_VERSION",
    "ENVELOPE_VERSION",
    "FLAG_ENCRYPTED",
    "LEGACY_VERSION",
    "MAGIC",
    "Signer",
]

MAGIC = b"CFMC"
#: The version :meth:`Signer.seal` writes.
ENVELOPE_VERSION = 2
#: HMAC-SHA256 and a JSON header: opened, no longer written.
LEGACY_VERSION = 1
FLAG_ENCRYPTED = 0x01
#: Encrypted entries are version 2 too: the flags byte tells the two kinds apart.
ENCRYPTED_VERSION = ENVELOPE_VERSION

_PLAIN_HEADER = MAGIC + bytes([ENVELOPE_VERSION, 0])
_ENCRYPTED_HEADER = MAGIC + bytes([ENVELOPE_VERSION, FLAG_ENCRYPTED])
_HEADER_SIZE = len(_PLAIN_HEADER)
_BODY_START = _HEADER_SIZE + NONCE_SIZE
_DOMAIN = b"claude-force-magic/cache\x00"
_FIXED = struct.Struct(">QQdddIII")
_MIN_SIZE = _BODY_START + _FIXED.size + TAG_SIZE

_V1_HEADER = MAGIC + bytes([LEGACY_VERSION])
_V1_TAG_SIZE = 32
_V1_BODY_START = len(_V1_HEADER) + _V1_TAG_SIZE
_V1_DOMAIN = _DOMAIN + bytes([LEGACY_VERSION])

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_isfinite = math.isfinite
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


def _text(value: object, name: str) -> bytes:
    if type(value) is not str:
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")


def _payload(body: Mapping[str, Any]) -> bytes:
    """The payload of ``body``: fixed fields, agent, model, metadata JSON, response.

    Runs on every ``set``: plain comparisons instead of generators, and the metadata of the
    usual shape written by hand (see :func:`_metadata_json`).
    """
    agent = _text(body["agent_name"], "agent_name")
    model = _text(body["model"], "model")
    response = _text(body["response"], "response")
    metadata = body["metadata"]
    if type(metadata) is not dict:
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    meta = _metadata_json(metadata).encode("utf-8", "surrogatepass")
    tokens_in, tokens_out = body["input_tokens"], body["output_tokens"]
    if type(tokens_in) is not int or type(tokens_out) is not int:
        raise TypeError(f"token counts must be ints, not {[tokens_in, tokens_out]!r}")
    if not (0 <= tokens_in < 2**64 and 0 <= tokens_out < 2**64):
        raise ValueError(f"token counts must be from 0 to 2**64-1, not {[tokens_in, tokens_out]!r}")
    cost, created, expires = (
        float(body["estimated_cost"]),
        float(body["created_at"]),
        float(body["expires_at"]),
    )
    if not (_isfinite(cost) and _isfinite(created) and _isfinite(expires)):
        raise ValueError(f"cost and times must be finite numbers, not {[cost, created, expires]!r}")
    fixed = _FIXED.pack(
        tokens_in, tokens_out, cost, created, expires, len(agent), len(model), len(meta)
    )
    return b"".join((fixed, agent, model, meta, response))


#: How the encoder writes the three JSON constants.
_CONSTANTS = {None: "null", True: "true", False: "false"}
_quote = json.encoder.encode_basestring  # what the encoder uses with ensure_ascii=False


def _metadata_json(metadata: dict[str, Any]) -> str:
    """``_ENCODER.encode(metadata)``; a dict of str keys and str, int, bool or None values
    (stop reason, request id, token counts...) is written by hand, exactly as the encoder
    would (insertion order, no spaces); anything else takes the encoder."""
    parts = []
    for name, value in metadata.items():
        kind = type(value)
        if type(name) is not str:
            return _ENCODER.encode(metadata)
        if kind is str:
            parts.append(_quote(name) + ":" + _quote(value))
        elif kind is int:
            parts.append(_quote(name) + ":" + int.__repr__(value))
        elif kind is bool or value is None:
            parts.append(_quote(name) + ":" + _CONSTANTS[value])
        else:
            return _ENCODER.encode(metadata)
    return "{" + ",".join(parts) + "}"


#: A verified entry as a lookup keeps it: (response, agent_name, model, input_tokens,
#: output_tokens, estimated_cost, created_at, expires_at, metadata JSON text). Only immutable
#: values, so one kept in memory cannot be changed by a caller (and the garbage collector stops
#: tracking it); :func:`metadata_of` turns the last field into the dict callers get.
Fields = tuple[str, str, str, int, int, float, float, float, str]
#: The body's field names, in the order of :data:`Fields` (the order of :data:`_FIELDS`).
BODY_FIELDS = tuple(_FIELDS)


def _parse(payload: bytes | memoryview, start: int = 0, end: int | None = None) -> Fields:
    """The fields of an authenticated version-2 payload: ``payload[start:end]``.

    Runs on every first hit of an entry, so it decodes as little as it can: the agent name,
    model and metadata JSON are decoded as one string when they are ASCII (then their byte
    lengths are their lengths in characters), and the metadata is left as text (checked by
    :func:`metadata_of` when it is read).
    """
    stop = len(payload) if end is None else end
    body = start + _FIXED.size
    if stop < body:
        raise IntegrityError("signed payload is too short")
    tokens_in, tokens_out, cost, created, expires, n_agent, n_model, n_meta = _FIXED.unpack_from(
        payload, start
    )
    meta_end = body + n_agent + n_model + n_meta
    if meta_end > stop:
        raise IntegrityError("signed field lengths are out of range")
    if not (_isfinite(cost) and _isfinite(created) and _isfinite(expires)):
        raise IntegrityError("signed cost or times are not finite numbers")
    try:
        agent, model, meta = _texts(payload[body:meta_end], n_agent, n_model)
        response = str(payload[meta_end:stop], "utf-8", "surrogatepass")
    except ValueError as exc:  # UnicodeDecodeError
        raise IntegrityError("signed payload is not valid UTF-8") from exc
    return (response, agent, model, tokens_in, tokens_out, cost, created, expires, meta)


def _texts(names: bytes | memoryview, n_agent: int, n_model: int) -> tuple[str, str, str]:
    """The agent name, model and metadata JSON stored back to back in ``names``, whose first
    ``n_agent`` bytes are the agent name and next ``n_model`` bytes the model.

    One decode when all of it is ASCII (the usual case: a name, a model id, JSON with escaped
    or ASCII text); else each part on its own, so that multi-byte characters split nothing.
    Raises UnicodeDecodeError for bytes that are not UTF-8.
    """
    text = str(names, "utf-8", "surrogatepass")
    model_end = n_agent + n_model
    if len(text) == len(names):  # one byte per character: byte offsets are text offsets
        return text[:n_agent], text[n_agent:model_end], text[model_end:]
    return (
        str(names[:n_agent], "utf-8", "surrogatepass"),
        str(names[n_agent:model_end], "utf-8", "surrogatepass"),
        str(names[model_end:], "utf-8", "surrogatepass"),
    )


def metadata_of(text: str) -> dict[str, Any]:
    """The metadata dict of an entry's signed metadata JSON ``text`` (a new dict each call).

    Exactly one JSON object, as :data:`_ENCODER` writes it (compact, so no surrounding
    whitespace is accepted); :class:`IntegrityError` for anything else.
    """
    if text == "{}":  # the usual metadata of a library call: nothing to parse
        return {}
    try:
        metadata, end = _DECODER.raw_decode(text)
    except ValueError as exc:  # JSONDecodeError
        raise IntegrityError("signed metadata is not valid JSON") from exc
    if end != len(text):
        raise IntegrityError("signed metadata has extra data after the JSON object")
    if type(metadata) is not dict:
        raise IntegrityError("envelope field 'metadata' is missing or has the wrong type")
    return metadata


def body_of(fields: Fields) -> dict[str, Any]:
    """The body dict of verified ``fields`` (the fields :meth:`Signer.seal` takes), its
    metadata parsed (IntegrityError when it is not one JSON object)."""
    body = dict(zip(BODY_FIELDS, fields, strict=True))
    body["metadata"] = metadata_of(fields[8])
    return body


def _parse_v1(payload: memoryview) -> Fields:
    """The fields of an authenticated version-1 payload (JSON header, then the response)."""
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
    checked = _check_fields(body)
    try:
        metadata = _ENCODER.encode(checked["metadata"])  # kept as text, like version 2's
    except ValueError as exc:  # NaN or infinity: never written by any release
        raise IntegrityError("signed metadata is not valid JSON") from exc
    return (
        response,
        checked["agent_name"],
        checked["model"],
        checked["input_tokens"],
        checked["output_tokens"],
        float(checked["estimated_cost"]),  # floats, as version 2 reads them
        float(checked["created_at"]),
        float(checked["expires_at"]),
        metadata,
    )


def _associated(header: bytes, key: str, payload: bytes | memoryview = b"") -> bytes:
    """What the tag authenticates besides the body: domain, header and the cache key (and,
    for an entry in clear, its ``payload``: one join, one copy of it)."""
    key_bytes = key.encode("ascii")
    return b"".join((_DOMAIN, header, len(key_bytes).to_bytes(2, "big"), key_bytes, payload))


class Signer:
    """Seal and open envelopes with one secret: authenticated (AES-256-GCM as a MAC), or with
    ``encrypt=True`` encrypted and authenticated (AES-256-GCM), see :mod:`.crypto`.

    Either kind of Signer opens both kinds of envelope made with its secret (and version-1
    envelopes), except that an encrypting Signer refuses an envelope stored in clear
    (:class:`IntegrityError`, "stored unencrypted"). The secret is held privately and never
    appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_cipher", "_encrypt", "_v1_mac")

    def __init__(self, secret: Secret, *, encrypt: bool = False) -> None:
        raw = secret.as_bytes()
        self._cipher = EntryCipher(raw)  # the key is derived once, here
        self._v1_mac = hmac.new(raw, _V1_DOMAIN, "sha256")  # keyed once; copied per use
        self._encrypt = bool(encrypt)

    @property
    def encrypts(self) -> bool:
        """True when :meth:`seal` encrypts (and :meth:`open` refuses entries in clear)."""
        return self._encrypt

    def __repr__(self) -> str:
        mode = ", encrypt=True" if self._encrypt else ""
        return f"Signer(secret=Secret('**********'){mode})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Signer holds the cache secret and cannot be pickled")

    def seal(self, key: str, body: Mapping[str, Any]) -> bytes:
        """Return the envelope of ``body`` bound to ``key``: encrypted when this Signer
        encrypts, else in clear and authenticated.

        ``body`` holds ``response``, ``agent_name``, ``model`` (str), ``input_tokens``,
        ``output_tokens`` (int), ``estimated_cost``, ``created_at``, ``expires_at`` (finite
        numbers) and ``metadata`` (a JSON dict). Raises TypeError/ValueError otherwise.
        """
        payload = _payload(body)
        cipher = self._cipher
        nonce = cipher.new_nonce()
        if self._encrypt:
            sealed = cipher.encrypt(nonce, payload, _associated(_ENCRYPTED_HEADER, key))
            return b"".join((_ENCRYPTED_HEADER, nonce, sealed))
        tag = cipher.encrypt(nonce, b"", _associated(_PLAIN_HEADER, key, payload))
        return b"".join((_PLAIN_HEADER, nonce, payload, tag))

    def open(self, key: str, data: bytes) -> dict[str, Any]:
        """Verify ``data`` for ``key`` and return its body (the fields :meth:`seal` takes).

        Raises :class:`IntegrityError` (with a short reason, never the secret or the body) when
        the bytes are not an envelope, were sealed for another key or with another secret,
        were edited, carry a body without the expected fields, or (for an encrypting Signer)
        were stored unencrypted.
        """
        return body_of(self.open_fields(key, data))

    def open_fields(self, key: str, data: bytes) -> Fields:
        """:meth:`open` without building the body dict: the verified :data:`Fields`, whose
        metadata is still JSON text (:func:`metadata_of` checks and parses it). What a cache
        lookup keeps. Raises :class:`IntegrityError` as :meth:`open` does."""
        if not isinstance(data, bytes):
            raise IntegrityError("stored value is not bytes")
        header = data[:_HEADER_SIZE]
        if header == _PLAIN_HEADER:  # the usual entry first
            return _parse(data, _BODY_START, self._check_plain(key, data))
        if header == _ENCRYPTED_HEADER:
            return _parse(self._open_encrypted(key, data))
        if not data.startswith(MAGIC) or len(data) < _HEADER_SIZE:
            raise IntegrityError("not a signed envelope")
        version = data[len(MAGIC)]
        if version == LEGACY_VERSION:
            return _parse_v1(self._open_v1(key, data))
        if version == ENVELOPE_VERSION:
            raise IntegrityError(f"unsupported envelope flags {data[_HEADER_SIZE - 1]:#04x}")
        raise IntegrityError(f"unsupported envelope version {version}")

    def _check_plain(self, key: str, data: bytes) -> int:
        """Check the tag of a version-2 envelope stored in clear; where its payload ends (it
        starts at ``_BODY_START``)."""
        tag_start = len(data) - TAG_SIZE
        if tag_start < _BODY_START + _FIXED.size:
            raise IntegrityError("not a signed envelope")
        payload = memoryview(data)[_BODY_START:tag_start]
        nonce = data[_HEADER_SIZE:_BODY_START]
        self._cipher.decrypt(nonce, data[tag_start:], _associated(_PLAIN_HEADER, key, payload))
        if self._encrypt:
            self._refuse_clear()
        return tag_start

    def _open_encrypted(self, key: str, data: bytes) -> bytes:
        """The decrypted payload of a version-2 envelope stored encrypted."""
        if len(data) < _MIN_SIZE:
            raise IntegrityError("not a signed envelope")
        nonce = data[_HEADER_SIZE:_BODY_START]
        sealed = memoryview(data)[_BODY_START:]
        return self._cipher.decrypt(nonce, sealed, _associated(_ENCRYPTED_HEADER, key))

    def _open_v1(self, key: str, data: bytes) -> memoryview:
        if len(data) < _V1_BODY_START + 4:
            raise IntegrityError("not a signed envelope")
        payload = memoryview(data)[_V1_BODY_START:]  # no copy of a large answer
        key_bytes = key.encode("ascii")
        mac = self._v1_mac.copy()
        mac.update(len(key_bytes).to_bytes(2, "big") + key_bytes)
        mac.update(payload)
        if not hmac.compare_digest(mac.digest(), data[len(_V1_HEADER) : _V1_BODY_START]):
            raise IntegrityError("signature mismatch")
        self._refuse_clear()
        return payload

    def _refuse_clear(self) -> None:
        if self._encrypt:
            raise IntegrityError(
                "stored unencrypted, but this cache encrypts (encrypt=True): not served"
            )
