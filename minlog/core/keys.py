"""The pure dedup core: is this (employee, citizen, Copenhagen day) the first of its day?

Keys are 128-bit keyed BLAKE2b digests of the employee's and the citizen's source and id
and the day, so the dedup state (memory and store) holds no CPR number. The secret lives
outside the database. Days are kept in memory as exact sets of keys, one per day, for a
retention window (default: today and the two days before). An access older than the
window is *late*: memory cannot answer for it, so the store decides (it is never dropped).
No probabilistic structure is used: a false "seen" would be a lost log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from minlog.core.model import Access

__all__ = ["DEFAULT_RETENTION_DAYS", "HotSet", "KeyMaker"]

DEFAULT_RETENTION_DAYS: Final = 3
#: Late days (before the window) whose complete key sets memory may hold at once.
LATE_DAYS_HELD: Final = 2


class KeyMaker:
    """Computes dedup keys: ``key(access, day) -> 16 bytes``.

    The key is BLAKE2b-128 over the secret (as hex) followed by the key material. BLAKE2
    is not open to length extension, so this prefix construction is a PRF like its keyed
    mode, and it costs one compression for our short inputs instead of two.
    """

    __slots__ = ("prefix",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the dedup secret must be at least 16 bytes")
        #: The secret as text, prepended to every key's material (version 1 layout).
        self.prefix = "minlog-key-v1\x1f" + secret.hex()

    @staticmethod
    def material(access: Access, day: int) -> str:
        e = access.employee
        return f"\x1f{e.source}\x1f{e.id}\x1f{access.citizen_source}\x1f{access.citizen}\x1f{day}"

    def key(self, access: Access, day: int) -> bytes:
        return _blake2b((self.prefix + self.material(access, day)).encode(),
                        digest_size=16).digest()


_blake2b = hashlib.blake2b


class HotSet:
    """The in-memory seen-set: one exact ``set`` of keys per day in the window.

    Not thread-safe on its own; the facade serialises writers. Reads (``contains``)
    are safe against concurrent adds under the GIL.
    """

    __slots__ = ("days", "late", "retention", "sync", "today")

    def __init__(self, today: int, retention: int = DEFAULT_RETENTION_DAYS) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1 day")
        self.retention = retention
        self.today = today
        self.days: dict[int, set[bytes]] = {d: set() for d in self.window()}
        #: The late days held in ``days`` (see `adopt`), least recently adopted first.
        self.late: list[int] = []
        #: How far into the store's log of seen keys this set has taken in (a store's
        #: own cursor: the SQLite store uses it to learn what other processes added).
        self.sync = 0

    def window(self) -> range:
        """The days held in memory: today and ``retention - 1`` days before."""
        return range(self.today - self.retention + 1, self.today + 1)

    def is_late(self, day: int) -> bool:
        """True for a day before the window (memory cannot answer; ask the store)."""
        return day <= self.today - self.retention

    def advance(self, today: int) -> list[int]:
        """Move the window to ``today``; returns the days dropped from memory."""
        if today <= self.today:
            return []
        self.today = today
        window = self.window()
        dropped = [d for d in self.days if d not in window]
        for d in dropped:
            del self.days[d]
        self.late = []
        for d in window:
            self.days.setdefault(d, set())
        return sorted(dropped)

    def adopt(self, day: int, keys: set[bytes]) -> None:
        """Hold ``keys``, keys of a late ``day`` that the store holds, so that late
        duplicates are answered from memory too. At most `LATE_DAYS_HELD` late days are
        held; the least recently adopted one is let go (asked again when needed). The
        SQLite store lends the day's complete set and keeps it complete (memory decides
        there, under the write lock); the PostgreSQL store lends what it holds when
        asked (the database decides; memory only answers repeats)."""
        if not self.is_late(day):
            raise ValueError("only a late day is adopted")
        if day in self.late:
            self.late.remove(day)
        self.late.append(day)
        self.days[day] = keys
        while len(self.late) > LATE_DAYS_HELD:
            del self.days[self.late.pop(0)]

    def partition(self, day: int) -> set[bytes] | None:
        """The set for ``day``: None for a late day not adopted; created for a day ahead
        of today (a clock just behind the caller's)."""
        part = self.days.get(day)
        if part is None and not self.is_late(day):
            part = self.days[day] = set()
        return part

    def contains(self, day: int, key: bytes) -> bool:
        part = self.days.get(day)
        return part is not None and key in part

    def add_all(self, day: int, keys: Iterable[bytes]) -> None:
        part = self.partition(day)
        if part is not None:
            part.update(keys)

    def __len__(self) -> int:
        return sum(len(s) for s in self.days.values())
