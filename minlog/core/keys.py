"""The dedup key: one implementation, the keyed BLAKE2b of `hashlib`.

The key of an access on a Copenhagen day is BLAKE2b-128, keyed with the installation's
dedup secret (derived from its master key, see `minlog.core.sealing`), over the employee's
and the citizen's source and id and the day::

    "{employee source}\\x1f{employee id}\\x1f{citizen source}\\x1f{citizen}\\x1f{day}"

so the dedup state (memory and store) holds digests, never a CPR number. The fields cannot
contain the separator (validation refuses control characters), so the material is
unambiguous. The 16-byte key, in hex, is also the entry's ``SequenceNumber`` on the wire.
"""

from __future__ import annotations

import hashlib
from typing import Final

from minlog.core.model import Access

__all__ = ["KEY_SIZE", "KeyMaker"]

KEY_SIZE: Final = 16
_PERSON: Final = b"minlog-key-v2"


class KeyMaker:
    """``key(access, day) -> 16 bytes``, keyed with the installation's dedup secret."""

    __slots__ = ("_base",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or not 16 <= len(secret) <= 64:
            raise ValueError("the dedup secret must be 16 to 64 bytes")
        #: The keyed hash state before any material: copying it skips keying per key.
        self._base = hashlib.blake2b(key=secret, digest_size=KEY_SIZE, person=_PERSON)

    @staticmethod
    def material(access: Access, day: int) -> bytes:
        """What the key of ``access`` on ``day`` is the digest of."""
        e = access.employee
        return (f"{e.source}\x1f{e.id}\x1f{access.citizen_source}\x1f{access.citizen}"
                f"\x1f{day}").encode()

    def key(self, access: Access, day: int) -> bytes:
        """The 16-byte dedup key of ``access`` on Copenhagen day ``day``."""
        h = self._base.copy()
        h.update(self.material(access, day))
        return h.digest()

    def hasher(self) -> hashlib.blake2b:
        """A copy of the keyed state, for code that inlines `key` in a loop: update it with
        `material` and take its digest (the same bytes as `key`)."""
        return self._base.copy()
