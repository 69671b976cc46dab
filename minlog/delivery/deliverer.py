"""Delivery rounds: claim a batch from the outbox, send it, settle every entry.

`Deliverer.step` does one round synchronously (claim, open, send, settle) and is what
`minlog.delivery.worker.Worker` runs on its threads and ``minlog drain`` calls directly.
Which tenant a round serves, and whether any may be served yet, is the store's claim
under the deliverer's `minlog.delivery.schedule.DeliverySchedule` (full batches or
``fill_wait``, per-tenant rate limits, turns), so it holds for every process and host;
`Deliverer.rushing` asks for everything now (``flush``, ``close``, ``minlog drain``):
no batch waits to fill, rate limits still hold.
The entries travel as they are stored (`minlog.minlog2.entry.Batch`): validated once,
when accepted, and written to XML straight from their fields.

Outcomes per entry: acked (the receiver took it), retried later (transient fault: outage,
timeout, 5xx, 429, or any unexpected exception), or a dead letter with a reason:

* the receiver refused the entry (its fault code and text), or refused the whole request
  for good and splitting the batch isolated this entry;
* ``minlog:unreadable``: its payload cannot be opened (sealed with a key the store no
  longer has, after ``minlog rekey``; altered data);
* ``minlog:beyond-retention``: it is older than MinLog2 keeps logs (two years by default),
  so sending it is pointless.

An entry whose fate the receiver leaves unknown (a failure that names no SequenceNumber,
or fewer entries added and failed than sent) is never acked: the entries it may be are
sent again in halves until each one's fate is known. Nothing is ever dropped: an outbox
reports and keeps. Only the lease that claimed an entry settles it.

A settlement the store fails (an ack, retry or bury raising `StoreError`) is owed: it is
tried again before the next claim, with a growing pause of at most `OWED_WAIT` seconds,
so that a sent batch is neither left in flight until its lease runs out nor sent again
while its acknowledgement is owed. Rounds never block on it.

A lease may hold the entries of several tenants (municipalities): each tenant's entries
are sent in requests of their own, with that tenant's transport (``transport_for``: its
own ID card), so that a tenant whose card or receiver fails has its entries retried while
the others are delivered.

Each outcome is counted per tenant (`minlog.delivery.counters.DeliveryCounters`, read by
`minlog.metrics`) and logged as a structured event (`minlog.events`: ``batch_delivered``,
``send_failed``, ``request_refused``, ``dead_letters``, ``unattributed_failures``,
``key_problem``, ``settle_failed``), with fault codes and counts, never a payload.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Final

import attrs

from minlog.core.clock import SYSTEM_CLOCK, Clock
from minlog.delivery.counters import DeliveryCounters
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.delivery.schedule import DeliverySchedule
from minlog.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from minlog.events import emit, redact
from minlog.minlog2 import entry as _entry
from minlog.minlog2.transport import BatchResult, Transport
from minlog.store.base import OutboxEntry, Store

__all__ = ["BEYOND_RETENTION", "OWED_WAIT", "UNATTRIBUTED", "UNREADABLE", "Deliverer",
           "StepResult"]

UNREADABLE: Final = "minlog:unreadable"
BEYOND_RETENTION: Final = "minlog:beyond-retention"
#: The dead-letter code of an entry the receiver failed (or did not add) without naming it.
UNATTRIBUTED: Final = "minlog:unattributed"
_DATE_TIME: Final = _entry.FIELDS.index("date_time")
_TO_DATE_TIME: Final = _entry.FIELDS.index("to_date_time")
_SEQUENCE: Final = _entry.FIELDS.index("sequence_number")
_DAY: Final = 86400.0
#: The longest a round waits before trying owed settlements again (seconds).
OWED_WAIT: Final = 5.0
#: The ``origin`` of the dead letters the deliverer makes itself, by code.
_OWN_ORIGINS: Final = {UNREADABLE: "unreadable", BEYOND_RETENTION: "beyond-retention"}

#: Opens a leased entry: its stored fields (raises `StoreError` or `ValueError` when the
#: payload cannot be opened).
Opener = Callable[[OutboxEntry], _entry.Fields]
#: The transport that sends a tenant's entries (raises when the tenant has none: its
#: entries are retried later).
TransportFor = Callable[[str], Transport]


@attrs.frozen(slots=True)
class StepResult:
    """What one `Deliverer.step` did."""

    claimed: int = 0
    acked: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    wait: float | None = None  # seconds until there may be work again (None: unknown)
    #: Due work is held back (no batch full or waited long enough, or every tenant
    #: with one at its rate limit): new entries need not hurry the next round.
    held: bool = False


@attrs.define
class _Tally:
    acked: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    #: The claim took the first request's send slot; more requests (halves) take theirs.
    permit: bool = True


_Item = tuple[OutboxEntry, _entry.Fields]


class Deliverer:
    """Delivery rounds; several threads may call `step` at once (claims are exclusive;
    rate limits and turns are kept in the store, the counters under a lock).

    ``transport`` sends every entry; or ``transport_for(tenant)`` gives the transport of
    each tenant's entries (then ``transport`` may be None)."""

    def __init__(
        self,
        store: Store,
        transport: Transport | None,
        open_entry: Opener,
        *,
        transport_for: TransportFor | None = None,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        fill_wait: float = 0.0,
        tenant_limits: Mapping[str, RateLimit | None] | None = None,
        lease_seconds: float = 120.0,
        retention_days: int = 730,
        clock: Clock = SYSTEM_CLOCK,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if transport_for is None:
            if transport is None:
                raise ValueError("a transport (or transport_for) is required")
            transport_for = _always(transport)
        self.store = store
        self.transport = transport
        self.transport_for = transport_for
        self.open_entry = open_entry
        #: Batch size, fill wait and rate limits (raises ValueError for bad ones).
        self.schedule = DeliverySchedule(batch_size, fill_wait, rate_limit, tenant_limits)
        self.retry = retry or RetryPolicy()
        self.lease_seconds = lease_seconds
        self.retention_days = retention_days
        self.clock = clock
        self.rand = rand
        self._rushing = 0
        self.last_error: str | None = None
        #: What this deliverer did, per tenant (`minlog.metrics` reads it).
        self.counters = DeliveryCounters()
        self.lock = threading.Lock()
        #: Settlements the store failed, to be tried again (`settle_owed`).
        self._owed: list[Callable[[], None]] = []
        self._owed_failures = 0

    def after_fork(self) -> None:
        """In a forked child: a lock of its own, and none of the parent's owed
        settlements (they are the parent's to pay), nor its rush."""
        self.lock = threading.Lock()
        self._owed = []
        self._owed_failures = 0
        self._rushing = 0

    @property
    def batch_size(self) -> int:
        return self.schedule.batch_size

    @property
    def rate_limit(self) -> RateLimit | None:
        """The default rate limit (`DeliverySchedule.limit_for` gives a tenant's)."""
        return self.schedule.rate_limit

    @contextlib.contextmanager
    def rushing(self) -> Iterator[None]:
        """While inside: rounds ask for everything now (no batch waits to fill; rate
        limits still hold). For ``flush``, ``close`` and ``minlog drain``; nests."""
        with self.lock:
            self._rushing += 1
        try:
            yield
        finally:
            with self.lock:
                self._rushing -= 1

    @property
    def delivered(self) -> int:
        """Entries the receiver took, all tenants."""
        return self.counters.total("delivered")

    @property
    def unattributed(self) -> int:
        """Failures the receiver reported without naming the entry (each found by sending
        the entries of unknown fate again, in halves)."""
        return self.counters.total("unattributed")

    def _reserve(self, tenant: str, tally: _Tally) -> float:
        """Take a send slot under ``tenant``'s rate limit: 0 when taken, else seconds to
        wait. The first request of a round uses the slot its claim took."""
        if tally.permit:
            tally.permit = False
            return 0.0
        return self.store.reserve_send(tenant, self.schedule.limit_for(tenant),
                                       self.clock.time())

    def _settle_now(self, call: Callable[[], None]) -> None:
        """Run one settlement (the ack, retry or bury of a lease's entries). When the
        store fails it is owed: tried again before any new claim (`settle_owed`), so
        that a sent batch is not left in flight until its lease runs out."""
        try:
            call()
        except StoreError as exc:
            self.last_error = redact(f"StoreError: {exc}")
            emit("settle_failed", "the store failed to record the outcome of sent entries; "
                 "tried again before the next claim: %s", self.last_error,
                 error=type(exc).__name__)
            with self.lock:
                self._owed.append(call)

    def _ack(self, lease: str, ids: list[int]) -> None:
        self._settle_now(partial(self.store.ack, lease, ids))

    def _retry(self, lease: str, ids: list[int], not_before: float) -> None:
        self._settle_now(partial(self.store.retry, lease, ids, not_before))

    def _bury(self, lease: str, failures: list[tuple[int, str, str]]) -> None:
        self._settle_now(partial(self.store.bury, lease, failures, self.clock.time()))

    def settle_owed(self) -> bool:
        """Try the settlements the store failed again, in order. True when none is owed
        any more (an owed settlement of a lease that ran out and was taken over settles
        nothing: only the current lease settles an entry)."""
        with self.lock:
            owed, self._owed = self._owed, []
        for i, call in enumerate(owed):
            try:
                call()
            except StoreError as exc:
                self.last_error = redact(f"StoreError: {exc}")
                with self.lock:
                    self._owed[:0] = owed[i:]
                    self._owed_failures += 1
                return False
        with self.lock:
            self._owed_failures = 0
        return True

    def step(self) -> StepResult:
        """Claim one batch of due entries and settle every one of them (first, any
        settlements still owed: while the store fails them, nothing new is claimed and
        the round asks to wait, up to `OWED_WAIT` seconds)."""
        if self._owed and not self.settle_owed():
            return StepResult(wait=min(OWED_WAIT, 0.1 * 2 ** min(self._owed_failures, 10)))
        now = self.clock.time()
        lease = self.store.claim(self.batch_size, self.lease_seconds, now,
                                 schedule=self.schedule, fill=not self._rushing)
        if not lease.entries:
            if lease.next_at is None:
                return StepResult(wait=None, held=lease.held)
            return StepResult(wait=max(0.0, lease.next_at - now), held=lease.held)
        tally = _Tally()
        ready: dict[str, list[_Item]] = {}  # by tenant: each sent with its own transport
        dead: list[tuple[int, str, str]] = []
        dead_codes: dict[str, list[str]] = {}
        oldest = _entry.seconds_text(now - self.retention_days * _DAY)
        for e in lease.entries:
            try:
                fields = self.open_entry(e)
            except (StoreError, ValueError) as exc:
                dead.append((e.id, UNREADABLE, redact(str(exc))))
                dead_codes.setdefault(e.tenant, []).append(UNREADABLE)
                continue
            when = fields[_DATE_TIME] or fields[_TO_DATE_TIME]
            if when[:19] < oldest:  # both UTC, same form: text order is time order
                dead.append((e.id, BEYOND_RETENTION, f"older than MinLog2's retention of "
                             f"{self.retention_days} days: not sent"))
                dead_codes.setdefault(e.tenant, []).append(BEYOND_RETENTION)
                continue
            ready.setdefault(e.tenant, []).append((e, fields))
        if dead:
            self._bury(lease.token, dead)
            tally.dead += len(dead)
            for tenant, codes in dead_codes.items():
                self._dead(tenant, codes, "minlog")
        for items in ready.values():
            self._deliver(lease.token, items, tally)
        return StepResult(len(lease.entries), tally.acked, tally.retried, tally.dead,
                          tally.requests, wait=0.0)

    def _deliver(self, lease: str, batch: list[_Item], tally: _Tally) -> None:
        ids = [e.id for e, _ in batch]
        tenant = batch[0][0].tenant
        wait = self._reserve(tenant, tally)
        if wait > 0:  # a split must respect the limit too: try the rest later
            self._retry(lease, ids, self.clock.time() + wait)
            tally.retried += len(ids)
            return
        tally.requests += 1
        attempts = max(e.attempts for e, _ in batch)
        self.counters.add(tenant, "requests")
        started = self.clock.monotonic()
        try:
            transport = self.transport_for(tenant)
            result = transport.send(_entry.Batch([f for _, f in batch]))
        except PermanentDeliveryError as exc:
            self.last_error = redact(f"request rejected: {exc}")
            self.counters.add(tenant, "refused_requests")
            code = exc.code or "request-rejected"
            if len(batch) == 1:
                e = batch[0][0]
                self._bury(lease, [(e.id, code, redact(str(exc)))])
                tally.dead += 1
                self._dead(tenant, [code], "request")
                return
            emit("request_refused", "the receiver refused a request of %d entries (%s); "
                 "sending them again in halves to find the ones it refuses", len(batch), code,
                 tenant=tenant, entries=len(batch), code=code)
            self._halves(lease, batch, tally)  # isolate the bad entries
            return
        except Exception as exc:  # transient (or unknown): keep the batch, retry later
            retry_after = exc.retry_after if isinstance(exc, TransientDeliveryError) else None
            delay = self.retry.delay(attempts, retry_after=retry_after, rand=self.rand)
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            self.counters.add(tenant, "send_failures")
            emit("send_failed", "delivery of %d entries failed (attempt %d), retrying in "
                 "%.1f s: %s", len(batch), attempts, delay, self.last_error,
                 tenant=tenant, entries=len(batch), attempt=attempts, retry_in=delay,
                 code=getattr(exc, "code", None) or "", error=type(exc).__name__)
            self._retry(lease, ids, self.clock.time() + delay)
            tally.retried += len(ids)
            return
        self._settle(lease, batch, result, tally, self.clock.monotonic() - started, attempts)

    def _settle(self, lease: str, batch: list[_Item], result: BatchResult,
                tally: _Tally, seconds: float, attempt: int) -> None:
        by_seq = {f[_SEQUENCE]: e for e, f in batch}
        failed: dict[int, tuple[int, str, str]] = {}
        unnamed = []
        for f in result.failed:
            e = by_seq.get(f.sequence_number)
            if e is None:
                unnamed.append(f)
            else:
                failed[e.id] = (e.id, f.code, redact(f.text))
        rest = [(e, f) for e, f in batch if e.id not in failed]
        # Failures naming no entry of the batch: listed without (or with a foreign)
        # SequenceNumber, NumberFailed beyond those listed, or entries neither added nor
        # named as failed.
        excess = max(0, (result.number_failed or 0) - len(result.failed))
        missing = 0 if result.number_added is None else max(0, len(rest) - result.number_added)
        unknown = max(len(unnamed) + excess, missing)
        tenant = batch[0][0].tenant
        acked = 0 if unknown else len(rest)
        emit("batch_delivered", "%d of %d entries delivered in %.2f s (%d refused)", acked,
             len(batch), seconds, len(failed), tenant=tenant, entries=len(batch), acked=acked,
             refused=len(failed), attempt=attempt, seconds=round(seconds, 3))
        if failed:
            self._bury(lease, list(failed.values()))
            tally.dead += len(failed)
            first = next(iter(failed.values()))
            self.last_error = redact(f"{len(failed)} entries refused, e.g. {first[1]}")
            self._dead(tenant, [code for _, code, _ in failed.values()], "receiver")
        if not unknown:
            self._ack(lease, [e.id for e, _ in rest])
            tally.acked += len(rest)
            self.counters.add(tenant, "delivered", len(rest))
            return
        # Some entry's fate is unknown: never ack it. One entry left: it is the one.
        self.counters.add(tenant, "unattributed", unknown)
        self.last_error = (f"the receiver reported {unknown} failed entries without naming "
                           f"them; {len(rest)} entries of unknown fate are sent again to "
                           "find them")
        emit("unattributed_failures", "%s", self.last_error, tenant=tenant, count=unknown,
             entries=len(rest))
        if len(rest) == 1:
            e = rest[0][0]
            code, text = ((unnamed[0].code, redact(unnamed[0].text)) if unnamed else
                          (UNATTRIBUTED, "counted as failed (or not added) by the receiver, "
                           "which named no entry"))
            self._bury(lease, [(e.id, code, text)])
            tally.dead += 1
            self._dead(tenant, [code], "unattributed")
            return
        if rest:
            self._halves(lease, rest, tally)

    def _dead(self, tenant: str, codes: list[str], origin: str) -> None:
        """Count and log entries just made dead letters: one event per fault code."""
        self.counters.add(tenant, "dead_lettered", len(codes))
        by_code: dict[str, int] = {}
        for code in codes:
            by_code[code] = by_code.get(code, 0) + 1
        for code, count in sorted(by_code.items()):
            why = _OWN_ORIGINS.get(code, origin)
            emit("dead_letters", "%d entries became dead letters (%s, %s); see `minlog "
                 "dead-letters`, then `minlog redrive`", count, code, why,
                 tenant=tenant, count=count, code=code, origin=why)
            if code == UNREADABLE:
                emit("key_problem", "%d entries cannot be opened with this store's key (a "
                     "key replaced by minlog rekey, or altered data): they are dead "
                     "letters (%s)", count, code,
                     tenant=tenant, count=count)

    def _halves(self, lease: str, batch: list[_Item], tally: _Tally) -> None:
        half = len(batch) // 2
        self._deliver(lease, batch[:half], tally)
        self._deliver(lease, batch[half:], tally)


def _always(transport: Transport) -> TransportFor:
    """``transport`` for every tenant."""
    def transport_for(tenant: str) -> Transport:
        return transport
    return transport_for
