"""The `Store` protocol: what ``minlog`` keeps durably. Stores persist; they never decide.

A store knows nothing of CPR numbers, names, XML or the ledger's memory. It holds:

* the **seen-set**: ``(day, key)`` pairs, ``day`` the Copenhagen calendar day as a date
  ordinal, ``key`` the 16-byte keyed digest of (employee, citizen) for that day. A pair is
  in it at most once: the store's unique key is what makes a key new, exactly once across
  processes and hosts;
* the **outbox**: one entry per new key, holding the sealed log (``payload``), its
  ``tenant`` (the municipality it belongs to, ``""`` for a single one) and its delivery
  state (pending, or leased to a worker until a time);
* **dead letters**: outbox entries the receiver refused for good, with code and text;
* **aliases**: codes issued by identity formatters, per scope, resolvable to a sealed id;
* **settings** every instance on the store must agree on: the dedup horizon (the largest
  any instance asked for; no day inside it is ever pruned) and the fingerprint of the
  master key the store belongs to (`minlog.core.sealing.Keys.fingerprint`: it tells the
  key again without revealing it).

A store opened read-only (``read_only=True``, for tools that inspect) answers what is
recorded and records nothing: settings are not raised or recorded, and the methods that
write raise `StoreError`.

All times are POSIX seconds passed in by the caller (the clock is the caller's). Every
method completes or raises `StoreError`; `append` is ONE transaction.

Delivery is scheduled per tenant (`minlog.delivery.schedule`): a claim takes the entries
of ONE tenant, the one the schedule picks from what the store records in the same
transaction (each tenant's due work, its turn and its recent send times), and records
that send, so that rate limits and turns hold for every process and host on the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal, NamedTuple, Protocol

import attrs

from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule
from minlog.errors import ConfigurationError

__all__ = ["DEFAULT_DURABILITY", "POSTGRES_SYNCHRONOUS_COMMIT", "SQLITE_SYNCHRONOUS",
           "DeadLetter", "Durability", "Lease", "NewEntry", "OutboxEntry", "Store",
           "StoreCounts", "durability"]

#: How durable a commit is when it returns (`record` returns after it):
#:
#: * ``"process"``: survives a crash of the process (kill -9, out of memory); a power loss
#:   or a crash of the operating system (or of a virtual machine's host) may lose the
#:   last commits. SQLite: ``synchronous=NORMAL`` in WAL mode (no sync per commit);
#:   PostgreSQL: ``synchronous_commit=off`` (the server writes the WAL a moment later; a
#:   crash of the server may lose up to three times ``wal_writer_delay``, 0.6 s).
#: * ``"power"``: also survives a power loss. SQLite: ``synchronous=FULL`` (the WAL is
#:   synced at each commit); PostgreSQL: ``synchronous_commit=on`` (the server's
#:   default: the WAL is flushed, and with synchronous standbys they confirm too).
Durability = Literal["process", "power"]
#: The default: what was accepted is not lost to a power cut (see docs/operations.md).
DEFAULT_DURABILITY: Final[Durability] = "power"
#: What each level is in SQLite (``synchronous``, WAL mode) and in PostgreSQL
#: (``synchronous_commit``): the one mapping, used by the stores and by ``minlog bench``.
SQLITE_SYNCHRONOUS: Final[Mapping[str, str]] = {"process": "NORMAL", "power": "FULL"}
POSTGRES_SYNCHRONOUS_COMMIT: Final[Mapping[str, str]] = {"process": "off", "power": "on"}


def durability(value: object) -> Durability:
    """``value`` as a `Durability`; anything else is a `ConfigurationError`."""
    if value == "process":
        return "process"
    if value == "power":
        return "power"
    raise ConfigurationError("durability: must be 'process' (survives a crash of the "
                             "process) or 'power' (also survives a power loss)")


class NewEntry(NamedTuple):
    """A candidate handed to `Store.append`: its day and key, the sealed log, its tenant."""

    day: int
    key: bytes
    payload: bytes
    tenant: str = ""


@attrs.frozen(slots=True)
class OutboxEntry:
    """A leased outbox entry handed to the delivery worker by `Store.claim`."""

    id: int
    key: bytes
    payload: bytes
    attempts: int
    tenant: str = ""


@attrs.frozen(slots=True)
class Lease:
    """What one `Store.claim` leased: its entries (all of one tenant) and the token that
    settles them. Only the holder of the current lease may ack, retry or bury an entry:
    an entry whose lease ran out and was claimed again belongs to the new lease.

    When nothing was leased: ``next_at`` is the earliest time a claim may find a tenant
    eligible (its batch full or waited long enough, under its rate limit, or an entry
    due), None when nothing waits at all; ``held`` says whether due entries were held
    back (no batch full or waited long enough, or their tenants at their rate limits)."""

    token: str
    entries: tuple[OutboxEntry, ...]
    until: float
    next_at: float | None = None
    held: bool = False

    @property
    def tenant(self) -> str | None:
        """The tenant of the entries (None when there are none)."""
        return self.entries[0].tenant if self.entries else None


@attrs.frozen(slots=True)
class DeadLetter:
    """An outbox entry the receiver refused for good."""

    id: int
    key: bytes
    payload: bytes
    attempts: int
    code: str
    text: str
    died_at: float
    tenant: str = ""


@attrs.frozen(slots=True)
class StoreCounts:
    """Outbox totals. ``oldest_pending`` is the accept time of the oldest undelivered entry;
    ``delivered``: the entries acked (`Store.ack`) since the store was made, by every
    process and host on it."""

    pending: int
    in_flight: int
    dead: int
    oldest_pending: float | None
    delivered: int = 0


class Store(Protocol):
    """Durable storage for ``minlog`` (a SQLite file or a PostgreSQL database)."""

    # -------------------------------------------------------------- seen-set + outbox

    def append(self, entries: Sequence[NewEntry], now: float) -> list[bool]:
        """In ONE transaction: add each entry's ``(day, key)`` to the seen-set and, for
        each pair that was not there before, put the entry in the outbox (due at once,
        accepted at ``now``). Returns, in input order, True for the entries that were new;
        a pair repeated inside ``entries`` counts once (the first). When this returns,
        the answer is committed; when it raises, nothing of it is."""
        ...

    def keys_of(self, day: int) -> set[bytes]:
        """Every key of ``day`` in the seen-set."""
        ...

    def horizon_days(self, at_least: int) -> int:
        """The dedup horizon of this store: the largest ever asked for, raised to
        ``at_least`` first (and kept). Pruning inside it is an operator's explicit act."""
        ...

    def key_fingerprint(self, record: bytes | None = None, *,
                        replace: bool = False) -> bytes | None:
        """The fingerprint of the master key this store belongs to, or None when none is
        recorded (a store made before fingerprints). With ``record``: first record it when
        none is recorded, or in place of the one recorded with ``replace`` (an operator's
        rekey), in one transaction; returns what is recorded then."""
        ...

    def holds_data(self) -> bool:
        """Whether anything here depends on the master key: a seen-set key, an outbox
        entry, a dead letter or an identity code."""
        ...

    def prepare(self, today: int) -> None:
        """Get ready for ``today`` and the next few days, off the hot path (PostgreSQL
        makes their seen-set partitions ahead of time; SQLite needs nothing)."""
        ...

    def prune(self, before_day: int) -> int:
        """Forget the seen-set days before ``before_day``; returns how many keys were
        forgotten. The outbox and dead letters are never pruned. Callers keep
        ``before_day`` outside the horizon (`horizon_days`)."""
        ...

    # -------------------------------------------------------------- delivery

    def claim(self, limit: int, lease_seconds: float, now: float, *,
              schedule: DeliverySchedule | None = None, fill: bool = True) -> Lease:
        """Lease up to ``limit`` due entries (pending, or leased with a lease that ran
        out) of ONE tenant, oldest first, for ``lease_seconds``; their attempt counters
        go up. In the same transaction: the tenant is the one ``schedule`` picks
        (`DeliverySchedule.pick`: ready to fill, under its rate limit, least recently
        served) from the store's records of every tenant with due work, and the send is
        recorded (its turn, and its send time when it has a limit). ``fill=False`` asks
        for everything now: no tenant waits for its batch to fill (rate limits still
        hold). Without a schedule: no limits, no fill, turns still taken. When nothing
        is leased, `Lease.next_at` says when to ask again."""
        ...

    def reserve_send(self, tenant: str, limit: RateLimit | None, now: float) -> float:
        """Take one more send of ``tenant`` under ``limit`` (a batch sent again in halves
        sends more than one request): 0 when taken (recorded at ``now``), else the
        seconds until one is free. One transaction, exact across processes and hosts."""
        ...

    def release_leases(self) -> int:
        """Return every entry this store instance leased and has not settled to pending,
        due at once in its order (as a lease taken back from an owner gone); returns how
        many. For a delivery process that stops with a batch in flight: any process on
        any host may claim its entries at once, instead of when the lease runs out. A
        later settlement under a released lease changes nothing."""
        ...

    def ack(self, lease: str, ids: Sequence[int]) -> None:
        """The receiver took these entries of ``lease``: remove them from the outbox and,
        in the same transaction, add those removed to their tenants' delivered counts."""
        ...

    def retry(self, lease: str, ids: Sequence[int], not_before: float) -> None:
        """Return entries of ``lease`` to pending, due again at ``not_before``."""
        ...

    def bury(self, lease: str, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        """Move entries ``(id, code, text)`` of ``lease`` to the dead letters."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        """Move dead letters (all when ``ids`` is None) back to pending; returns how many."""
        ...

    def counts(self) -> StoreCounts:
        """Pending, in flight, dead and delivered totals."""
        ...

    def tenant_counts(self) -> dict[str, StoreCounts]:
        """`counts` per tenant, with each tenant's ``delivered`` (tenants with neither
        entries, dead letters nor deliveries are absent)."""
        ...

    def next_due(self) -> float | None:
        """The earliest time an entry becomes due, or None when the outbox is empty."""
        ...

    def accepted_counts(self, bucket: int) -> dict[str, dict[int, int]]:
        """How many entries the outbox and the dead letters hold, per tenant and accept
        time in buckets of ``bucket`` seconds: ``{tenant: {n: count}}`` counts those
        accepted in ``[n * bucket, (n + 1) * bucket)``. Read-only. Delivered entries have
        left the outbox: this is what is still held (a day recorded with delivery held
        back holds all of it). Dead letters of a store too old to keep accept times are
        not counted."""
        ...

    # -------------------------------------------------------------- aliases

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
