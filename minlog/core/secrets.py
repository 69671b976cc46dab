"""The library's secret: where it lives, and the keys derived from it.

One 32-byte master secret per installation. It never lives in the database: by default it
is a key file beside the SQLite file (``<db>.key``, created with mode 0600); it may be
passed in as bytes or as a path. From it we derive, with keyed BLAKE2b and a distinct
personalisation each, the dedup-key secret, the sealing key that encrypts outbox payloads
at rest (AES-256-GCM), and the subject key that names employees in the alias registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minlog.errors import ConfigurationError, StoreError

__all__ = ["Keys", "Sealer", "load_or_create_key"]

_VERSION: Final = b"\x01"


def load_or_create_key(path: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """Read the 32-byte secret (hex text) at ``path``; create it (mode 0600) when missing."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            raise ConfigurationError(f"the key file {p} does not exist") from None
        return _create_key(p)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"cannot read the key file {p}: {e}") from e
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise ConfigurationError(f"the key file {p} must hold 64 hexadecimal digits")
    return secret


def _create_key(p: Path) -> bytes:
    """Publish a new key file atomically: written and synced under a temporary name, then
    hard-linked into place, so a racing reader sees either no file or the whole key."""
    secret = secrets.token_bytes(32)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise ConfigurationError(f"cannot create the key file {p}: {e}") from e
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secret.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, p)
        except FileExistsError:  # another process published first: use theirs
            return load_or_create_key(p, create=False)
        except OSError as e:
            raise ConfigurationError(f"cannot create the key file {p}: {e}") from e
        _fsync_dir(p.parent)
        return secret
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _derive(master: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(master, digest_size=32, person=purpose).digest()


class Keys:
    """The keys derived from the master secret."""

    __slots__ = ("dedup", "seal", "subject")

    def __init__(self, master: bytes) -> None:
        if not isinstance(master, bytes) or len(master) != 32:
            raise ConfigurationError("key: must be 32 bytes (or a key file path)")
        self.dedup = _derive(master, b"minlog-dedup")
        self.seal = _derive(master, b"minlog-seal")
        self.subject = _derive(master, b"minlog-subject")


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
