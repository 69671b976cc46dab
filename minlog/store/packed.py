"""The packed rows of the SQLite store's two logs (pure: bytes in, bytes out).

* A **key block** is the concatenation of 16-byte dedup keys.
* An **outbox segment** row holds ``n`` entries: their keys concatenated, their payload
  sizes as little-endian uint32s, their payloads concatenated, and ``done``, a bitmap of
  the entries already settled (bit ``i & 7`` of byte ``i >> 3``; NULL while none is).
* An entry's id is ``segment id << 16 | index``: ids are never reused, because segment
  ids are ``AUTOINCREMENT`` and an index never changes meaning within its segment.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

__all__ = ["KEY_SIZE", "SEGMENT_COLUMNS", "SEGMENT_LIMIT", "Segment", "block_keys",
           "by_segment", "entry_id", "is_set", "pack"]

KEY_SIZE: Final = 16
_SHIFT: Final = 16
#: Most entries one outbox segment can hold (an entry id keeps 16 bits for its index).
SEGMENT_LIMIT: Final = 1 << _SHIFT
#: The columns `Segment` is made from, in its order.
SEGMENT_COLUMNS: Final = ("id, n, settled, keys, sizes, payloads, done, state, attempts, "
                          "accepted_at")


def block_keys(blob: bytes) -> Iterator[bytes]:
    """The 16-byte keys of a key block."""
    return (blob[i : i + KEY_SIZE] for i in range(0, len(blob), KEY_SIZE))


def is_set(done: bytes | bytearray | None, index: int) -> bool:
    """Whether entry ``index`` is marked settled in the bitmap ``done``."""
    return done is not None and bool(done[index >> 3] & (1 << (index & 7)))


def entry_id(segment: int, index: int) -> int:
    return (segment << _SHIFT) | index


def by_segment(ids: Iterable[int]) -> dict[int, list[int]]:
    """Entry ids grouped as ``{segment id: [indexes]}``."""
    out: dict[int, list[int]] = {}
    for i in ids:
        out.setdefault(i >> _SHIFT, []).append(i & (SEGMENT_LIMIT - 1))
    return out


def pack(entries: Sequence[tuple[bytes, bytes]]) -> tuple[int, bytes, bytes, bytes]:
    """``(n, keys, sizes, payloads)`` columns for ``(key, payload)`` entries."""
    payloads = [p for _, p in entries]
    return (len(entries), b"".join(k for k, _ in entries),
            struct.pack(f"<{len(entries)}I", *map(len, payloads)), b"".join(payloads))


class Segment:
    """One outbox row (`SEGMENT_COLUMNS`), opened: its entries' keys and payloads."""

    __slots__ = ("accepted_at", "attempts", "done", "id", "keys", "n", "offsets", "payloads",
                 "settled", "state")

    def __init__(self, row: Sequence[Any]) -> None:
        (self.id, self.n, self.settled, self.keys, sizes, self.payloads, self.done,
         self.state, self.attempts, self.accepted_at) = row
        self.offsets = [0]
        for size in struct.unpack(f"<{self.n}I", sizes):
            self.offsets.append(self.offsets[-1] + size)

    def key(self, index: int) -> bytes:
        return bytes(self.keys[index * KEY_SIZE : (index + 1) * KEY_SIZE])

    def payload(self, index: int) -> bytes:
        return bytes(self.payloads[self.offsets[index] : self.offsets[index + 1]])

    def open(self) -> Iterator[int]:
        """The indexes of entries not yet settled."""
        return (i for i in range(self.n) if not is_set(self.done, i))
