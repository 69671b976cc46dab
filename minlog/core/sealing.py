"""The keys derived from the installation's master secret, and sealing at rest.

One 32-byte master secret per installation (see `minlog.keyfile`). From it we derive, with
keyed BLAKE2b and a distinct personalisation each, the dedup-key secret, the sealing key
that encrypts outbox payloads at rest (AES-256-GCM), the subject key that names
employees in the alias registry, and the key's fingerprint: 16 bytes a store records to
know its key again (it reveals nothing of the key or of the keys derived from it).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minlog.errors import ConfigurationError, StoreError

__all__ = ["Keys", "Sealer", "key_id"]

_VERSION: Final = b"\x01"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(master, digest_size=32, person=purpose).digest()


class Keys:
    """The keys derived from the master secret."""

    __slots__ = ("dedup", "fingerprint", "seal", "subject")

    def __init__(self, master: bytes) -> None:
        if not isinstance(master, bytes) or len(master) != 32:
            raise ConfigurationError("key: must be 32 bytes (or a key file path)")
        self.dedup = _derive(master, b"minlog-dedup")
        self.seal = _derive(master, b"minlog-seal")
        self.subject = _derive(master, b"minlog-subject")
        self.fingerprint = _derive(master, b"minlog-key-id")[:16]


def key_id(fingerprint: bytes) -> str:
    """How operators see a key's fingerprint: its first 8 bytes as hex (``minlog`` prints
    it, so that the right key file among backups can be told)."""
    return fingerprint[:8].hex()


class Sealer:
    """AES-256-GCM; ``aad`` binds a payload to its row (its key).

    Nonces are a random 64-bit prefix per sealer (renewed every 2**32 messages and after a
    fork) followed by a 32-bit counter: unique without a system call per message.
    """

    __slots__ = ("_aead", "_counter", "_pid", "_prefix")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._renew()

    def _renew(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count()
        self._pid = os.getpid()

    def seal(self, data: bytes, aad: bytes = b"") -> bytes:
        return self.seal_many([(data, aad)])[0]

    def seal_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """`seal` for each ``(data, aad)``: the same result, less overhead per item."""
        if self._pid != os.getpid():
            self._renew()
        encrypt, prefix, counter = self._aead.encrypt, self._prefix, self._counter
        out = []
        for data, aad in items:
            n = next(counter)
            if n >= 0xFFFFFFFF:
                self._renew()
                encrypt, prefix, counter = self._aead.encrypt, self._prefix, self._counter
                n = next(counter)
            nonce = prefix + n.to_bytes(4, "big")
            out.append(_VERSION + nonce + encrypt(nonce, data, aad))
        return out

    def unseal(self, blob: bytes, aad: bytes = b"") -> bytes:
        if blob[:1] != _VERSION:
            raise StoreError("sealed payload: unknown format version")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag:
            raise StoreError(
                "sealed payload: cannot be opened (wrong key file, or the data was altered)"
            ) from None
