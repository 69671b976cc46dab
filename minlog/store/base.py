"""The `Store` protocol: the durable half of ``minlog`` (seen-set, outbox, dead letters, aliases).

A store knows nothing of CPR numbers, names or XML. It holds:

* the **seen-set**: ``(day, key)`` pairs, where ``day`` is the Copenhagen calendar day as a
  proleptic Gregorian ordinal (`datetime.date.toordinal`) and ``key`` the 16-byte keyed
  digest of (employee, citizen) for that day;
* the **outbox**: one entry per first-of-day access, carrying an opaque ``payload`` (the
  sealed `Registration`) and its ``key`` (whose hex is the entry's SequenceNumber);
* **dead letters**: outbox entries the receiver rejected for good, with code and text;
* **aliases**: codes issued by identity formatters, per scope, resolvable to a sealed id.

All times are POSIX seconds (floats) passed in by the caller, so tests control the clock.
Every method either completes or raises `StoreError`; `accept` is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import attrs

from minlog.core.keys import HotSet

__all__ = ["DeadLetter", "OutboxEntry", "Pending", "Store", "StoreCounts"]


class Pending(NamedTuple):
    """A first-of-day candidate handed to `Store.accept` (any ``(day, key, payload)``
    tuple will do)."""

    day: int
    key: bytes
    payload: bytes


@attrs.frozen(slots=True)
class OutboxEntry:
    """A leased outbox entry handed to the delivery worker by `Store.claim`."""

    id: int
    key: bytes
    payload: bytes
    attempts: int


@attrs.frozen(slots=True)
class DeadLetter:
    """An outbox entry the receiver rejected for good."""

    id: int
    key: bytes
    payload: bytes
    attempts: int
    code: str
    text: str
    died_at: float


@attrs.frozen(slots=True)
class StoreCounts:
    """Outbox totals. ``oldest_pending`` is the accept time of the oldest undelivered entry."""

    pending: int
    in_flight: int
    dead: int
    oldest_pending: float | None


class Store(Protocol):
    """What `MinLog` needs from durable storage (SQLite file or PostgreSQL database)."""

    def load(self, memory: HotSet) -> None:
        """Put every key the store holds for ``memory``'s window, and for the days after
        it, into ``memory`` (when a `MinLog` opens)."""
        ...

    def accept(self, entries: Sequence[tuple[int, bytes, bytes]], now: float,
               memory: HotSet | None = None) -> list[bool]:
        """In ONE transaction: add each ``(day, key)`` of ``(day, key, payload)`` to the
        seen-set and, for each one that was not there before, enqueue its payload in the
        outbox (due at once).

        Returns, in input order, True for the entries that were new. Duplicate keys inside
        ``entries`` count once (the first). When this returns, the result is committed,
        and every entry's key whose day ``memory`` holds is in ``memory`` (the keys other
        processes added may be put there too). ``memory`` is the caller's in-memory
        seen-set, filled by `load`; without one the store answers from disk alone. A
        store may lend ``memory`` what it holds of a late day (`HotSet.adopt`), so that
        the day's repeats are answered from memory: every key memory holds must be one
        the store holds (memory may answer "seen", never "new").
        """
        ...

    def seen(self, day: int) -> set[bytes]:
        """Every key of ``day`` in the seen-set."""
        ...

    def claim(self, limit: int, lease_seconds: float, now: float) -> list[OutboxEntry]:
        """Lease up to ``limit`` due entries (pending, or in flight with an expired lease),
        oldest first, for ``lease_seconds``; increments their attempt counters."""
        ...

    def ack(self, ids: Sequence[int]) -> None:
        """The receiver accepted these entries: remove them from the outbox."""
        ...

    def retry(self, ids: Sequence[int], not_before: float) -> None:
        """Return leased entries to pending, due again at ``not_before``."""
        ...

    def bury(self, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        """Move entries ``(id, code, text)`` to the dead letters."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        """Move dead letters (all when ``ids`` is None) back to pending; returns how many."""
        ...

    def counts(self) -> StoreCounts:
        """Pending, in flight and dead totals."""
        ...

    def next_due(self) -> float | None:
        """The earliest time a pending entry becomes due, or None when nothing is pending."""
        ...

    def prepare(self, today: int) -> None:
        """Get ready for ``today`` and the next few days, off the hot path (PostgreSQL
        creates their seen-set partitions ahead of time; SQLite needs nothing)."""
        ...

    def prune(self, before_day: int) -> int:
        """Forget seen-set days older than ``before_day``; returns how many keys were
        forgotten. The outbox and dead letters are never pruned."""
        ...

    def alias_for(self, scope: str, subject: bytes) -> str | None:
        """The code already issued in ``scope`` for ``subject`` (a keyed digest), if any."""
        ...

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool:
        """Register ``code`` for ``subject`` in ``scope``; False (and no change) when the
        code or the subject is already registered in that scope."""
        ...

    def resolve_alias(self, scope: str, code: str) -> bytes | None:
        """The sealed identifier registered for ``code`` in ``scope``, if any."""
        ...

    def list_aliases(self, scope: str) -> list[tuple[str, bytes]]:
        """Every ``(code, sealed)`` registered in ``scope``, in code order."""
        ...

    def highest_alias_number(self, scope: str, stem: str) -> int:
        """The highest ``n`` for which ``stem + str(n)`` is a code in ``scope``, counting
        the bare ``stem`` as 1; 0 when neither is registered (numbered initials)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
