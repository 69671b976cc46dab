"""The `MinLog` facade: record accesses, keep the first of each day, deliver in the background.

::

    with MinLog.open("minlog.sqlite", transport=t, system_name="Cura") as log:
        log.record(access)   # True: first of its day, durably queued; False: duplicate

When `record` returns, its decision and the outbox entry are committed. Duplicates are
answered from memory with no I/O. Delivery runs on a daemon thread; `flush` and `close`
honour their timeouts even when the receiver is down. The instance is safe across
``fork`` (the child gets fresh connections and a fresh worker) and at interpreter exit
(a bounded final flush, never a hang).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from minlog.client import lifecycle as _lifecycle
from minlog.client.commit import GroupCommit
from minlog.client.stats import DeadLetterInfo, Stats
from minlog.core import payload as _payload
from minlog.core.days import CopenhagenDays
from minlog.core.keys import DEFAULT_RETENTION_DAYS, HotSet, KeyMaker
from minlog.core.model import Access, Organisation
from minlog.core.scan import Candidate, Scanner
from minlog.core.secrets import Keys, Sealer, load_or_create_key
from minlog.delivery.deliverer import Deliverer, RateLimit, RetryPolicy, StepResult, Worker
from minlog.errors import ConfigurationError, ValidationError
from minlog.identity.policy import BoundIdentity, IdentityFormatter, IdentityPolicy
from minlog.minlog2 import Transport
from minlog.minlog2.registration import (
    ORGANISATION_SOURCES,
    SCHEMA_VERSIONS,
    Registration,
    check_access,
    check_schema_source,
)
from minlog.store import OutboxEntry, Store, open_store

__all__ = ["DeadLetterInfo", "MinLog", "Stats"]

_ACCEPT_CHUNK: Final = 5000
_blake2b = hashlib.blake2b


class MinLog:
    """Records accesses and delivers the first of each (employee, citizen, day) to MinLog2.

    Create it with `MinLog.open`. Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        system_name: str,
        master_key: bytes,
        identity: IdentityPolicy | IdentityFormatter | None = None,
        schema_version: str = SCHEMA_VERSIONS[0],
        retention_days: int = DEFAULT_RETENTION_DAYS,
        max_future_skew: float = 300.0,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        lease_seconds: float = 120.0,
        poll: float = 1.0,
        delivery_threads: int = 1,
        exit_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        start_worker: bool = True,
    ) -> None:
        if schema_version not in SCHEMA_VERSIONS:
            raise ConfigurationError(f"schema_version must be one of {', '.join(SCHEMA_VERSIONS)}")
        if retention_days < 1:
            raise ConfigurationError("retention_days must be at least 1")
        try:
            Registration(system_name=system_name, activity="x", person_identifier="0101901234",
                         user_person_identifier="0101901234",
                         date_time=_dt.datetime(2020, 1, 1, tzinfo=_dt.UTC))
        except ValidationError as e:
            raise ConfigurationError(f"system_name: {e.rule}") from None
        self.store = store
        self.transport = transport
        self.system_name = system_name
        self.schema_version = schema_version
        self._org_sources = ORGANISATION_SOURCES[schema_version]
        self.max_future_skew = max_future_skew
        self.exit_timeout = exit_timeout
        self._clock = clock
        self._keys = Keys(master_key)
        self._sealer = Sealer(self._keys.seal)
        self._keymaker = KeyMaker(self._keys.dedup)
        if identity is None:
            identity = IdentityPolicy()
        elif not isinstance(identity, IdentityPolicy):
            identity = IdentityPolicy(default=identity)
        subject_key = self._keys.subject
        self._identity: BoundIdentity = identity.bind(
            store,
            subject=lambda e: _blake2b(f"{e.source}\x1f{e.id}".encode(), key=subject_key,
                                       digest_size=16).digest(),
            seal=self._sealer.seal, unseal=self._sealer.unseal,
        )
        self._days = CopenhagenDays()
        self._scanner = Scanner(self._keymaker.prefix, self._days, max_future_skew)
        self._fast_dups = itertools.count()
        self._lock = threading.RLock()
        self._progress = threading.Condition()
        self._closed = False
        #: Calls between their checks and the end of their transaction (close waits).
        self._accepting = 0
        self._idle = threading.Condition(self._lock)
        self._start_worker = start_worker
        self._counters = {"recorded": 0, "first_of_day": 0, "duplicates": 0, "late": 0}
        self._deliverer = Deliverer(
            store, transport, self._unseal_entry, batch_size=batch_size, retry=retry,
            rate_limit=rate_limit, lease_seconds=lease_seconds, clock=clock,
        )
        self._poll = poll
        self._threads = delivery_threads
        self._worker = Worker(self._deliverer, poll=poll, threads=delivery_threads,
                              on_step=self._after_step)
        self._pid = os.getpid()
        today = self._days.of_timestamp(clock())
        self._hot = HotSet(today, retention_days)
        #: Store upkeep owed for a new day, ``(today, first day kept)``: done by the
        #: delivery worker after its next step, off the caller's path.
        self._upkeep: tuple[int, int] | None = (today, self._hot.window().start)
        store.load(self._hot)
        self._committer = self._make_committer()
        _lifecycle.register(self)
        if start_worker:
            self._worker.start()

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        target: str | os.PathLike[str] | Store,
        *,
        transport: Transport,
        system_name: str,
        identity: IdentityPolicy | IdentityFormatter | None = None,
        key: bytes | str | os.PathLike[str] | None = None,
        store_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> MinLog:
        """Open (creating when needed) the store at ``target`` and start delivering.

        ``target`` is a SQLite file path, a ``postgresql://`` URL, or a `Store`. ``key`` is
        the master secret: 32 bytes, or the path of a key file (created, mode 0600, when
        missing). For a SQLite file the default is ``<file>.key`` beside it; a PostgreSQL
        store needs it given, so that every host uses the same secret. ``options`` are the
        keyword arguments of `MinLog` (``batch_size``, ``retry``, ``rate_limit``, ...).
        """
        if isinstance(key, bytes):
            master = key
        elif key is not None:
            master = load_or_create_key(key)
        elif isinstance(target, str | os.PathLike) and not os.fspath(target).startswith(
            ("postgresql://", "postgres://")
        ):
            master = load_or_create_key(Path(os.fspath(target) + ".key"))
        else:
            raise ConfigurationError(
                "key: give the master secret (bytes or a key file path) for this store"
            )
        store = open_store(target, **(store_options or {}))
        try:
            return cls(store, transport, system_name=system_name, master_key=master,
                       identity=identity, **options)
        except BaseException:
            store.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(timeout=self.exit_timeout)

    # ------------------------------------------------------------------ recording

    def record(self, access: Access) -> bool:
        """Record one access. True when it is the first of its (employee, citizen, day) and
        its log is now durably queued; False for a duplicate. Raises `ValidationError` for
        bad input (nothing stored) and `StoreError` when the store fails (nothing lost:
        record it again)."""
        if self._closed:
            self._check_open()
        batch = (access,)
        now = self._clock()
        cands = self._scanner.scan(batch, self._hot.days, now)
        if not cands:  # a duplicate, answered from memory
            next(self._fast_dups)
            return False
        return self._record(batch, cands, now)[0]

    def record_many(self, accesses: Iterable[Access]) -> list[bool]:
        """Record several accesses; the answer for each, in order. All are validated before
        any is stored: one bad access raises `ValidationError` and stores nothing."""
        batch = accesses if isinstance(accesses, list | tuple) else list(accesses)
        self._check_open()
        now = self._clock()
        return self._record(batch, self._scanner.scan(batch, self._hot.days, now), now)

    def _record(self, batch: Sequence[Access], cands: list[Candidate], now: float
                ) -> list[bool]:
        results = [False] * len(batch)
        if cands:
            self._accept(batch, cands, now, results)
        firsts = sum(1 for i, _, _ in cands if results[i])
        with self._lock:
            c = self._counters
            c["recorded"] += len(batch)
            c["duplicates"] += len(batch) - firsts
            c["first_of_day"] += firsts
        return results

    def _accept(self, batch: Sequence[Access], cands: list[tuple[int, int, bytes]], now: float,
                results: list[bool]) -> None:
        """Seal the candidates' registrations and accept them in the store, in one
        transaction with those of other threads that wait meanwhile (`GroupCommit`); the
        store adds their keys to the hot set once committed."""
        with self._lock:
            self._check_open()
            self._advance(now)
            hot = self._hot
            pending: list[tuple[int, int, bytes]] = []
            for i, day, key in cands:
                if hot.contains(day, key):  # another thread won the race
                    continue
                pending.append((i, day, key))
            # Build everything first: a bad name or schema fault stores nothing.
            identity, encode = self._identity, _payload.encode
            system = self.system_name
            plain = []
            for i, _, key in pending:
                a = batch[i]
                o = a.organisation
                check_access(a, self.schema_version)
                name, role = identity(a.employee, o)
                plain.append((encode(a, system, key.hex(), name, role), key))
            sealed = [(day, key, blob) for (_, day, key), blob
                      in zip(pending, self._sealer.seal_many(plain), strict=True)]
            if not sealed:
                return
            self._accepting += 1
        try:
            # One transaction with the candidates of other threads waiting meanwhile; the
            # store puts the keys (and other processes' news) into the hot set.
            answers = self._committer.submit(sealed, now)
        finally:
            with self._lock:
                self._accepting -= 1
                if not self._accepting:
                    self._idle.notify_all()
        late = 0
        for (i, day, _), new in zip(pending, answers, strict=True):
            results[i] = new
            late += new and hot.is_late(day)
        if late:
            with self._lock:
                self._counters["late"] += late
        if any(answers):
            self._wake_worker()

    def _make_committer(self) -> GroupCommit:
        store, hot = self.store, self._hot
        return GroupCommit(lambda entries, now: store.accept(entries, now, hot), _ACCEPT_CHUNK)

    def registration_for(self, access: Access, *, sequence_number: str | None = None
                         ) -> Registration:
        """The `Registration` this instance would send for ``access`` (identity applied)."""
        e, o, b = access.employee, access.organisation, access.on_behalf_of
        name, role = self._identity(e, o)
        registration = Registration(
            system_name=self.system_name, activity=access.activity,
            person_identifier=access.citizen, person_identifier_source=access.citizen_source,
            person_name=access.citizen_name,
            user_person_identifier=e.id, user_person_identifier_source=e.source,
            user_person_name=name, user_role=role,
            date_time=access.at, reason=access.reason, addition=access.addition,
            criticality=access.criticality,
            organisation_id=o.id, organisation_id_source=o.source, organisation_name=o.name,
            correlation_id=access.correlation_id, sequence_number=sequence_number,
            on_behalf_of_person_identifier=b.id if b else None,
            on_behalf_of_person_identifier_source=b.source if b else None,
            on_behalf_of_person_name=b.name if b else None,
            on_behalf_of_user_role=b.role if b else None,
            filters=access.filters,
        )
        check_schema_source(registration.organisation_id_source, self.schema_version)
        return registration

    def _unseal_entry(self, entry: OutboxEntry) -> Registration:
        return _payload.decode(self._sealer.unseal(entry.payload, entry.key))

    def _advance(self, now: float) -> None:
        dropped = self._hot.advance(self._days.of_timestamp(now))
        if dropped:
            self._upkeep = (self._hot.today, self._hot.window().start)

    # ------------------------------------------------------------------ delivery

    def _wake_worker(self) -> None:
        if self._start_worker:
            if os.getpid() != self._pid:
                self.after_fork()
            self._worker.start()
            self._worker.wake()

    def _after_step(self, result: StepResult) -> None:
        try:
            upkeep = self._upkeep
            if upkeep is not None:
                self._upkeep = None
                try:
                    self.store.prepare(upkeep[0])
                    self.store.prune(upkeep[1])
                except Exception:
                    if self._upkeep is None:  # try again after the next step
                        self._upkeep = upkeep
                    raise
        finally:
            with self._progress:
                self._progress.notify_all()

    def step(self) -> StepResult:
        """Run one delivery round in the calling thread (for ``drain`` and tests)."""
        self._check_open()
        result = self._deliverer.step()
        self._after_step(result)
        return result

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or in flight. True when everything accepted has
        been delivered (no dead letters either); False at the timeout or when dead letters
        wait for an operator. ``timeout=None`` waits as long as it takes."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        drive = not self._start_worker
        self._wake_worker()
        while True:
            counts = self.store.counts()
            if counts.pending + counts.in_flight == 0:
                return counts.dead == 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if drive:
                result = self.step()
                if result.claimed:
                    continue
                pause = self._poll if result.wait is None else result.wait
            else:
                pause = 0.05
            pause = min(pause, 0.25) if left is None else min(pause, left, 0.25)
            with self._progress:
                self._progress.wait(max(pause, 0.001))

    def close(self, timeout: float | None = None) -> bool:
        """Flush for at most ``timeout`` seconds, stop the worker, release everything.
        True when everything was delivered. What is left stays in the store for next time.
        Idempotent."""
        if self._closed:
            return True
        start = time.monotonic()

        def left() -> float | None:
            return None if timeout is None else max(0.0, timeout - (time.monotonic() - start))

        with self._lock:  # the logs being committed now are delivered by the flush too
            self._idle.wait_for(lambda: not self._accepting, left())
        try:
            done = self.flush(left()) if os.getpid() == self._pid else False
        except Exception:
            done = False
        with self._lock:
            self._closed = True
            # Let the calls already past their checks finish their transaction.
            self._idle.wait_for(lambda: not self._accepting, left())
        self._worker.stop(left())
        self.transport.close()
        self.store.close()
        _lifecycle.forget(self)
        return done

    # ------------------------------------------------------------------ operations

    def stats(self) -> Stats:
        """Counters of this instance and totals of the (possibly shared) outbox."""
        counts = self.store.counts()
        now = self._clock()
        backlog = counts.pending + counts.in_flight
        limit = self._deliverer.rate_limit
        with self._lock:
            c = dict(self._counters)
            hot_keys = len(self._hot)
        fast = _peek(self._fast_dups)
        c["recorded"] += fast
        c["duplicates"] += fast
        return Stats(
            recorded=c["recorded"], first_of_day=c["first_of_day"],
            duplicates=c["duplicates"], late=c["late"], delivered=self._deliverer.delivered,
            pending=counts.pending, in_flight=counts.in_flight, dead=counts.dead,
            oldest_pending_age=None if counts.oldest_pending is None
            else max(0.0, now - counts.oldest_pending),
            drain_seconds=(limit.drain_seconds(backlog, self._deliverer.batch_size)
                           if limit else None),
            hot_keys=hot_keys, last_error=self._deliverer.last_error,
            unattributed=self._deliverer.unattributed,
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetterInfo]:
        """Dead letters, oldest first, with their registrations opened."""
        out = []
        for d in self.store.dead_letters(limit):
            try:
                reg: Registration | None = self._unseal_entry(
                    OutboxEntry(d.id, d.key, d.payload, d.attempts))
            except Exception:  # unreadable payloads are listed, not hidden
                reg = None
            out.append(DeadLetterInfo(d.id, d.code, d.text, d.attempts, d.died_at, reg))
        return out

    def resolve(self, organisation: Organisation, code: str) -> str | None:
        """The employee id behind an identity code shown to a citizen (as issued by an
        `AlternativeId` or `Initials` policy for ``organisation``), or None."""
        return self._identity.resolve(organisation, code)

    def redrive(self, ids: Sequence[int] | None = None) -> int:
        """Send dead letters again (all when ``ids`` is None); returns how many."""
        n = self.store.redrive(ids, self._clock())
        if n:
            self._wake_worker()
        return n

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this MinLog is closed")

    # ------------------------------------------------------------------ lifecycle

    @property
    def owner_pid(self) -> int:
        """The process that owns this instance's connections and worker."""
        return self._pid

    @property
    def closed(self) -> bool:
        return self._closed

    def after_fork(self) -> None:
        """In a forked child: own connections, locks and a (lazily started) worker."""
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._progress = threading.Condition()
        self._accepting = 0
        self._idle = threading.Condition(self._lock)
        self._committer = self._make_committer()
        for part in (self.store, self.transport):
            hook = getattr(part, "after_fork", None)
            if hook is not None:
                hook()
        self._deliverer._lock = threading.Lock()
        self._worker = Worker(self._deliverer, poll=self._poll, threads=self._threads,
                              on_step=self._after_step)


def _peek(counter: itertools.count[int]) -> int:
    """The next value of an `itertools.count` without advancing it (its repr is stable)."""
    return int(repr(counter)[6:-1])
