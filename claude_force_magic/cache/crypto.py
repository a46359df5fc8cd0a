"""AES-256-GCM for cache entries, with a key derived from the cache secret.

It encrypts and authenticates entries of an encrypting cache, and authenticates (as a MAC,
"GMAC": the entry is associated data, nothing is encrypted) those of a plain one; the
envelope's flags are authenticated too, so one kind can never pass for the other.
The key is ``HKDF-SHA256(cache secret, info="claude-force-magic/cache/aes-256-gcm
v2")``: a pseudo-random function of the secret under its own label, so it is independent of
the HMAC key that signs plain envelopes (the secret itself, under the domain label in
:mod:`.signing`), and learning one says nothing about the other. Each entry gets a fresh
random 96-bit nonce (:func:`os.urandom`); at 2^32 entries per secret the chance of a repeated
nonce stays below 2^-32, NIST's bound for random GCM nonces.

``cryptography`` is imported when the first :class:`EntryCipher` is made, not when the cache
module is, so ``%load_ext`` stays light.

The cipher object is immutable and safe to share between threads (``AESGCM`` keeps no state
between calls).
"""

from __future__ import annotations

import os
from typing import NoReturn

from ..errors import IntegrityError

__all__ = ["KEY_INFO", "NONCE_SIZE", "TAG_SIZE", "EntryCipher"]

#: HKDF ``info`` label of the entry-encryption key (a different label: a different key).
KEY_INFO = b"claude-force-magic/cache/aes-256-gcm v2"
NONCE_SIZE = 12
TAG_SIZE = 16


def derive_key(secret: bytes, info: bytes = KEY_INFO) -> bytes:
    """The 32-byte key HKDF-SHA256 derives from ``secret`` for ``info`` (no salt: the secret
    is already a uniformly random key or a long passphrase checked by settings)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class EntryCipher:
    """AES-256-GCM over one entry's signed body, bound to its header and cache key.

    ``associated`` data (authenticated, not encrypted) is the envelope header and the cache
    key, so a ciphertext moved to another key or given another header fails to open.
    """

    __slots__ = ("_aead", "_invalid")

    def __init__(self, secret: bytes) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(derive_key(secret))
        self._invalid = InvalidTag

    def __repr__(self) -> str:
        return "EntryCipher(key=**********)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("EntryCipher holds a key derived from the cache secret; not picklable")

    @staticmethod
    def new_nonce() -> bytes:
        """A fresh random 96-bit nonce."""
        return os.urandom(NONCE_SIZE)

    def encrypt(self, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        """The ciphertext of ``plaintext`` followed by its 16-byte tag."""
        return self._aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, nonce: bytes, sealed: bytes | memoryview, associated: bytes) -> bytes:
        """The plaintext of ``sealed``; :class:`IntegrityError` when its tag does not verify
        (edited bytes or header, another key, another secret)."""
        try:
            return self._aead.decrypt(nonce, sealed, associated)
        except self._invalid:
            raise IntegrityError("signature mismatch (AES-GCM tag)") from None
