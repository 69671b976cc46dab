"""The `MinLog` facade: record accesses, keep the first of each day, deliver in the background.

::

    with MinLog.open("minlog.sqlite", transport=t, system_name="Cura") as log:
        log.record(access)   # True: first of its day, durably queued; False: duplicate

The path of an access: ``record`` -> the ledger's scan (`minlog.core.ledger`: a duplicate
that memory knows is answered at once, with no I/O) -> the candidates' logs are built and
sealed (identity policy, schema version) -> the store appends them in one transaction,
shared with other threads waiting meanwhile (`minlog.client.commit.GroupCommit`), and says
which keys were new -> the ledger learns the answers. When ``record`` returns, its decision
and the outbox entry are committed. Delivery runs on daemon threads
(`minlog.delivery.worker`); ``flush`` and ``close`` honour their timeouts even when the
receiver is down. The instance is safe across ``fork`` (the child gets fresh connections
and a fresh worker) and at interpreter exit (a bounded final flush, never a hang).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypedDict, Unpack

from minlog.client import keying as _keying
from minlog.client import lifecycle as _lifecycle
from minlog.client.commit import GroupCommit
from minlog.client.stats import DeadLetterInfo, Stats, TenantStats
from minlog.core.clock import SYSTEM_CLOCK, Clock
from minlog.core.keys import KeyMaker
from minlog.core.ledger import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_HOT_DAYS,
    DEFAULT_LATE_DAYS,
    BeyondHorizon,
    Candidate,
    Ledger,
)
from minlog.core.model import Access, Organisation
from minlog.core.sealing import Keys, Sealer
from minlog.delivery.backlog import BacklogWatch
from minlog.delivery.deliverer import Deliverer, StepResult
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.delivery.schedule import DEFAULT_FILL_WAIT
from minlog.delivery.worker import Worker
from minlog.errors import ClosedError, ConfigurationError, TransientDeliveryError, ValidationError
from minlog.events import emit
from minlog.identity.policy import BoundIdentity, IdentityFormatter, IdentityPolicy
from minlog.minlog2 import entry as _entry
from minlog.minlog2.registration import SCHEMA_VERSIONS, Registration, check_access
from minlog.minlog2.transport import Transport
from minlog.store import NewEntry, OutboxEntry, Store, open_store
from minlog.store.base import Durability, StoreCounts
from minlog.store.base import durability as _durability
from minlog.tenants.router import TenantRouter
from minlog.tenants.tenant import Tenant

__all__ = ["MinLog", "Options"]

_ACCEPT_CHUNK: Final = 5000
#: The default rate limit: the public operating guidance (20 requests an hour).
_GUIDANCE: Final = RateLimit.guidance()
_blake2b = hashlib.blake2b


class Options(TypedDict, total=False):
    """The keyword options of `MinLog` and `MinLog.open` (see `MinLog` for each)."""

    schema_version: str | None
    hot_days: int
    horizon_days: int
    late_days: int
    beyond_horizon: BeyondHorizon
    max_future_skew: float
    batch_size: int
    retry: RetryPolicy | None
    rate_limit: RateLimit | None
    fill_wait: float
    tenant_limits: Mapping[str, RateLimit | None] | None
    lease_seconds: float
    retention_days: int
    poll: float
    delivery_threads: int
    exit_timeout: float
    clock: Clock
    start_worker: bool
    backlog_warning: float | None


#: The names of the keyword options (`Options`).
OPTION_NAMES: Final = Options.__optional_keys__ | Options.__required_keys__


def check_options(options: Mapping[str, object]) -> None:
    """Refuse an unknown option (a misspelt one, say) naming it and the option meant."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigurationError(
        f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; the options "
        f"are {', '.join(sorted(OPTION_NAMES))}")


class MinLog:
    """Records accesses and delivers the first of each (employee, citizen, day) to MinLog2.

    Create it with `MinLog.open`. Thread-safe. Options (all keyword-only):

    * ``schema_version``: ``"20250312"`` or ``"20230425"`` (default: the transport's
      ``version``, else ``"20250312"``); every access is held to that version's rules
      before it is stored.
    * ``hot_days`` (3): days held in memory (today and the days before it).
    * ``horizon_days`` (35): the dedup horizon; within it the answer is exact on every
      store, across processes and hosts. The store keeps the largest horizon any instance
      asked for, and never prunes inside it.
    * ``late_days`` (4): late days (inside the horizon, before the hot window) whose
      learned keys memory keeps.
    * ``beyond_horizon`` (``"deliver"``): an access older than the horizon is delivered
      (still deduplicated while the store holds its day) and counted in
      ``stats().beyond_horizon``; ``"refuse"`` makes it a `ValidationError`.
    * ``max_future_skew`` (300 s): how far after the clock an access may lie.
    * ``batch_size`` (500), ``retry`` (`RetryPolicy`), ``lease_seconds`` (120),
      ``delivery_threads`` (1), ``poll`` (1 s): delivery.
    * ``rate_limit`` (`RateLimit.guidance()`: 20 requests an hour): each tenant's limit,
      held for every process and host on the store (the store keeps the send times);
      None: no limit. ``tenant_limits`` (None): per-tenant overrides, by CVR (a value of
      None: that tenant has no limit); with ``tenants``, each tenant's own
      ``rate_limit`` unless ``tenant_limits`` names it.
    * ``fill_wait`` (600 s): a tenant's batch is sent once it is full (``batch_size``
      entries) or its oldest entry has waited this long, so that requests carry full
      batches; ``flush``, ``close`` and ``minlog drain`` do not wait for it. 0: send
      what is due at once.
    * ``retention_days`` (730): entries older than MinLog2 keeps logs are not sent; they
      become dead letters (``minlog:beyond-retention``).
    * ``exit_timeout`` (5 s): the final flush at interpreter exit or ``with`` exit.
    * ``clock`` (the system's): the one clock every part asks (`minlog.Clock`).
    * ``start_worker`` (True): deliver on background threads; False for processes that
      only record (a separate delivery process drains the store).
    * ``backlog_warning`` (3600 s): after delivery rounds, log a ``backlog`` warning when
      the oldest undelivered entry has waited longer than this (None: never).
    """

    def __init__(
        self,
        store: Store,
        transport: Transport | None = None,
        *,
        system_name: str,
        master_key: bytes,
        identity: IdentityPolicy | IdentityFormatter | None = None,
        tenants: TenantRouter | Iterable[Tenant] | None = None,
        schema_version: str | None = None,
        hot_days: int = DEFAULT_HOT_DAYS,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        late_days: int = DEFAULT_LATE_DAYS,
        beyond_horizon: BeyondHorizon = "deliver",
        max_future_skew: float = 300.0,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = _GUIDANCE,
        fill_wait: float = DEFAULT_FILL_WAIT,
        tenant_limits: Mapping[str, RateLimit | None] | None = None,
        lease_seconds: float = 120.0,
        retention_days: int = 730,
        poll: float = 1.0,
        delivery_threads: int = 1,
        exit_timeout: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        start_worker: bool = True,
        backlog_warning: float | None = 3600.0,
    ) -> None:
        router = (tenants if tenants is None or isinstance(tenants, TenantRouter)
                  else TenantRouter(tenants))
        if router is not None:  # each tenant's own limit, unless given here
            tenant_limits = {**router.rate_limits(), **(tenant_limits or {})}
        transports = _transports(transport, router)
        versions = {v for t in transports.values()
                    if isinstance(v := getattr(t, "version", None), str)}
        if len(versions) > 1:
            raise ConfigurationError(
                f"the tenants' transports have different versions ({', '.join(sorted(versions))})"
                ": give them all the same")
        transport_version = versions.pop() if versions else None
        if schema_version is None:
            schema_version = transport_version or SCHEMA_VERSIONS[0]
        if schema_version not in SCHEMA_VERSIONS:
            raise ConfigurationError(f"schema_version must be one of {', '.join(SCHEMA_VERSIONS)}")
        if transport_version is not None and transport_version != schema_version:
            raise ConfigurationError(
                f"schema_version {schema_version} differs from the transport's version "
                f"{transport_version}: give both the same")
        if not isinstance(clock, Clock):
            raise ConfigurationError("clock: must be a minlog.Clock (time() and monotonic())")
        try:
            Registration(system_name=system_name, activity="x", person_identifier="0101901234",
                         user_person_identifier="0101901234",
                         date_time=_dt.datetime(2020, 1, 1, tzinfo=_dt.UTC))
        except ValidationError as e:
            raise ConfigurationError(f"system_name: {e.rule}") from None
        self.store = store
        #: The transport of a single municipality (None with tenants: `transports`).
        self.transport = transport
        self._transports = transports
        #: The tenants and their routing (None for a single municipality).
        self.tenants = router
        self.system_name = system_name
        self.schema_version = schema_version
        self.exit_timeout = exit_timeout
        self._clock = clock
        keys = Keys(master_key)
        _keying.bind(store, master_key)
        self._sealer = Sealer(keys.seal)
        if router is not None:
            if identity is not None:
                raise ConfigurationError(
                    "identity: with tenants, each tenant holds its own identity policy "
                    "(Tenant(identity=MunicipalityPolicy(...)))")
            identity = router.identity_policy()
        elif identity is None:
            identity = IdentityPolicy()
        elif not isinstance(identity, IdentityPolicy):
            identity = IdentityPolicy(default=identity)
        subject_key = keys.subject
        self._identity: BoundIdentity = identity.bind(
            store,
            subject=lambda e: _blake2b(f"{e.source}\x1f{e.id}".encode(), key=subject_key,
                                       digest_size=16).digest(),
            seal=self._sealer.seal, unseal=self._sealer.unseal,
        )
        try:
            self._ledger = Ledger(
                KeyMaker(keys.dedup), now=clock.time(), hot_days=hot_days,
                horizon_days=horizon_days, late_days=late_days,
                max_future_skew=max_future_skew, beyond_horizon=beyond_horizon)
            self._deliverer = Deliverer(
                store, None, self._open_entry, transport_for=self._transport_for,
                batch_size=batch_size, retry=retry,
                rate_limit=rate_limit, fill_wait=fill_wait, tenant_limits=tenant_limits,
                lease_seconds=lease_seconds,
                retention_days=retention_days, clock=clock)
            self._worker = Worker(self._deliverer, poll=poll, threads=delivery_threads,
                                  on_step=self._after_step)
            self._backlog = BacklogWatch(backlog_warning)
        except ValueError as e:
            raise ConfigurationError(str(e)) from None
        #: The store's horizon: the largest any instance on it asked for.
        self.horizon_days = store.horizon_days(horizon_days)
        self._fast_dups = itertools.count()
        self._lock = threading.RLock()
        self._progress = threading.Condition()
        self._closed = False
        #: Calls between their checks and the end of their transaction (close waits).
        self._accepting = 0
        self._idle = threading.Condition(self._lock)
        self._start_worker = start_worker
        self._counters = {"recorded": 0, "first_of_day": 0, "duplicates": 0, "late": 0,
                          "beyond_horizon": 0}
        self._poll = poll
        self._threads = delivery_threads
        self._pid = os.getpid()
        #: The day whose store upkeep (partitions ahead, pruning beyond the horizon) is
        #: done; the delivery worker does it for a new day after its next step.
        self._upkept = 0
        for day in self._ledger.hot_window():
            self._ledger.remember_day(day, store.keys_of(day))
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
        transport: Transport | None = None,
        system_name: str,
        identity: IdentityPolicy | IdentityFormatter | None = None,
        tenants: TenantRouter | Iterable[Tenant] | None = None,
        key: bytes | str | os.PathLike[str] | None = None,
        store_options: dict[str, Any] | None = None,
        create: bool = True,
        durability: Durability | None = None,
        **options: Unpack[Options],
    ) -> MinLog:
        """Open (creating when needed) the store at ``target`` and start delivering.

        ``target`` is a SQLite file path, a ``postgresql://`` URL, or a `Store`. ``key`` is
        the master secret: 32 bytes, or the path of a key file. For a SQLite file the
        default is ``<file>.key`` beside it; a PostgreSQL store needs it given, so that
        every host uses the same secret. The store records the fingerprint of its key: a
        different key is a `ConfigurationError`, and a missing key file is made (mode
        0600) only for a store that holds nothing yet (`minlog.client.keying`).
        ``create=False`` makes neither a store nor a key file (for tools).
        ``durability`` is how durable a first-of-day log is when ``record`` returns:
        ``"power"`` (the default: it survives a power loss) or ``"process"`` (it survives
        a crash of the process; no sync per commit); see `minlog.store.base.Durability`.
        A `Store` given as ``target`` has its own. ``options`` are the keyword options of
        `MinLog` (`Options`); an unknown one is a `ConfigurationError` before anything is
        created.

        ``transport`` serves a single municipality; ``tenants`` (`minlog.tenants`: a
        `TenantRouter` or `Tenant`\\ s, each with its own transport) serve several, each
        access routed to its tenant by its organisation (`minlog.tenants.Installation`
        builds them from ``minlog.toml``). One of the two is required.
        """
        try:
            check_options(options)
            if tenants is not None and not isinstance(tenants, TenantRouter):
                tenants = TenantRouter(tenants)
            _transports(transport, tenants)  # before anything is created
            _keying.key_path(target, key)  # a PostgreSQL store without a key: at once
            store_options = dict(store_options or {})
            if durability is not None:
                if not isinstance(target, str | os.PathLike):
                    raise ConfigurationError("durability: a Store given as the target has "
                                             "its own (give it to the store)")
                store_options["durability"] = _durability(durability)
            if not create and isinstance(target, str | os.PathLike):
                store_options.setdefault("create", False)
            store = open_store(target, **store_options)
            try:
                master, _ = _keying.master_key(store, target, key, create=create)
                return cls(store, transport, system_name=system_name, master_key=master,
                           identity=identity, tenants=tenants, **options)
            except BaseException:
                store.close()
                raise
        except ConfigurationError as e:
            emit("configuration_error", "MinLog.open: %s", e, error=str(e))
            raise

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(timeout=self.exit_timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<minlog.MinLog {self.system_name!r} on {type(self.store).__name__} ({state})>"

    # ------------------------------------------------------------------ recording

    def record(self, access: Access) -> bool:
        """Record one access. True when it is the first of its (employee, citizen, day) and
        its log is now durably queued (as durable as the store's ``durability``); False
        for a duplicate. Raises `ValidationError` for bad input (nothing stored) and
        `StoreError` when the store fails (nothing lost: record it again)."""
        if self._closed:
            self._check_open()
        batch = (access,)
        now = self._clock.time()
        cands = self._ledger.scan(batch, now)
        if not cands:  # a duplicate, answered from memory
            next(self._fast_dups)
            return False
        return self._record(batch, cands, now)[0]

    def record_many(self, accesses: Iterable[Access]) -> list[bool]:
        """Record several accesses; the answer for each, in order. All are validated before
        any is stored: one bad access raises `ValidationError` and stores nothing."""
        batch = accesses if isinstance(accesses, list | tuple) else list(accesses)
        self._check_open()
        now = self._clock.time()
        return self._record(batch, self._ledger.scan(batch, now), now)

    def _record(self, batch: Sequence[Access], cands: list[Candidate], now: float
                ) -> list[bool]:
        results = [False] * len(batch)
        if cands:
            self._accept(batch, cands, now, results)
        firsts = sum(1 for c in cands if results[c.position])
        with self._lock:
            c = self._counters
            c["recorded"] += len(batch)
            c["duplicates"] += len(batch) - firsts
            c["first_of_day"] += firsts
        return results

    def _accept(self, batch: Sequence[Access], cands: list[Candidate], now: float,
                results: list[bool]) -> None:
        """Build and seal the candidates' logs (a bad name or a schema rule stores
        nothing), append them in one transaction with those of other threads waiting
        meanwhile, and let the ledger learn the answers."""
        version, system = self.schema_version, self.system_name
        accesses = [batch[c.position] for c in cands]
        for a in accesses:
            check_access(a, version)
        pairs = [(a.employee, a.organisation) for a in accesses]
        # Every access is checked (and routed) before any identity code is registered.
        if self.tenants is None:
            shown = self._identity.many(pairs)
        else:
            route = self.tenants.route
            owners = [route(a.organisation).cvr for a in accesses]
            shown = self._identity.many(pairs, owners)
        encode = _entry.encode_access
        plain = [(encode(a, system, c.key.hex(), name, role), c.key)
                 for a, c, (name, role) in zip(accesses, cands, shown, strict=True)]
        sealed = self._sealer.seal_many(plain)
        if self.tenants is None:
            entries = [NewEntry(c.day, c.key, blob)
                       for c, blob in zip(cands, sealed, strict=True)]
        else:
            entries = [NewEntry(c.day, c.key, blob, cvr)
                       for c, blob, cvr in zip(cands, sealed, owners, strict=True)]
        with self._lock:
            self._check_open()
            self._accepting += 1
        try:
            answers = self._committer.submit(entries, now)
        finally:
            with self._lock:
                self._accepting -= 1
                if not self._accepting:
                    self._idle.notify_all()
        self._ledger.learn((c.day, c.key) for c in cands)
        late = beyond = 0
        for c, new in zip(cands, answers, strict=True):
            results[c.position] = new
            if new:
                late += c.late
                beyond += c.beyond
        if beyond:
            emit("beyond_horizon", "%d first-of-day logs older than the dedup horizon of %d "
                 "days were accepted (beyond_horizon='deliver')", beyond,
                 self._ledger.horizon_days, count=beyond,
                 horizon_days=self._ledger.horizon_days)
        if late or beyond:
            with self._lock:
                self._counters["late"] += late
                self._counters["beyond_horizon"] += beyond
        if any(answers):
            self._wake_worker()

    def _make_committer(self) -> GroupCommit:
        return GroupCommit(self.store.append, _ACCEPT_CHUNK)

    def registration_for(self, access: Access, *, sequence_number: str | None = None
                         ) -> Registration:
        """The `Registration` this instance would send for ``access`` (identity applied)."""
        self._check_open()
        check_access(access, self.schema_version)
        e, o, b = access.employee, access.organisation, access.on_behalf_of
        name, role = self._identity(e, o, self._tenant_of(o))
        return Registration(
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

    def _open_entry(self, entry: OutboxEntry) -> _entry.Fields:
        return _entry.decode_fields(self._sealer.unseal(entry.payload, entry.key))

    def _tenant_of(self, organisation: Organisation) -> str | None:
        """The CVR of the tenant ``organisation`` belongs to (None for a single
        municipality); an organisation of no tenant is a `ValidationError` on
        ``access.organisation``."""
        return None if self.tenants is None else self.tenants.route(organisation).cvr

    @property
    def transports(self) -> dict[str, Transport]:
        """Each tenant's transport by its CVR (``""``: a single municipality's)."""
        if self.tenants is None:
            return {"": self._transports[""]}
        return {t.cvr: self._transports[t.cvr] for t in self.tenants}

    def _transport_for(self, tenant: str) -> Transport:
        """The transport that sends ``tenant``'s entries (its own ID card)."""
        found = self._transports.get(tenant)
        if found is None:
            raise TransientDeliveryError(
                f"no transport for the outbox entries of tenant {tenant or '(none)'}: "
                "they wait until the store is opened with that tenant (entries recorded "
                "for a single municipality: drain them with its transport)",
                code="minlog:no-transport")
        return found

    # ------------------------------------------------------------------ delivery

    def _wake_worker(self) -> None:
        if self._start_worker:
            if os.getpid() != self._pid:
                self.after_fork()
            self._worker.start()
            self._worker.wake()

    def _after_step(self, result: StepResult) -> None:
        """After each delivery round: the store's upkeep for a new day, off the callers'
        path."""
        try:
            if self._upkept != self._ledger.today:
                self.maintain()
            clock = self._clock
            if self._backlog.due(clock.monotonic()):
                self._backlog.check_all(self.store.tenant_counts(), clock.time(),
                                        clock.monotonic())
        finally:
            with self._progress:
                self._progress.notify_all()

    def maintain(self) -> int:
        """The store's upkeep for today: PostgreSQL's partitions for the days ahead, and
        pruning the seen-set days beyond the store's horizon (never a day inside it).
        The delivery worker does it after its first round of each day; a process that
        only records (``start_worker=False``) may call it. Returns the keys pruned."""
        self._check_open()
        self._ledger.advance(self._clock.time())
        today = self._ledger.today
        self.store.prepare(today)
        pruned = self.store.prune(today - self.horizon_days + 1)
        self._upkept = today
        return pruned

    def step(self) -> StepResult:
        """Run one delivery round in the calling thread (for ``drain`` and tests)."""
        self._check_open()
        self._ledger.advance(self._clock.time())
        result = self._deliverer.step()
        self._after_step(result)
        return result

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or in flight. True when everything accepted has
        been delivered (no dead letters either); False at the timeout or when dead letters
        wait for an operator. ``timeout=None`` waits as long as it takes."""
        self._check_open()
        with self._deliverer.rushing():
            return self._flush(timeout)

    def _flush(self, timeout: float | None) -> bool:
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        drive = not self._start_worker
        self._wake_worker()
        if self._start_worker:
            self._worker.hurry()
        while True:
            counts = self.store.counts()
            if counts.pending + counts.in_flight == 0:
                return counts.dead == 0
            left = None if deadline is None else deadline - clock.monotonic()
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
        clock = self._clock
        start = clock.monotonic()

        def left() -> float | None:
            return None if timeout is None else max(0.0, timeout - (clock.monotonic() - start))

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
        with contextlib.suppress(Exception):  # a last try; what is left, a new instance
            self._deliverer.settle_owed()     # takes back (`minlog.store.owners`)
        failed: list[Exception] = []
        for transport in _distinct(self._transports.values()):
            try:
                transport.close()
            except Exception as e:  # close the others and the store first
                failed.append(e)
        self.store.close()
        _lifecycle.forget(self)
        emit("closed", "closed; %s", "everything accepted was delivered" if done else
             "what was not delivered stays in the store for next time", delivered_all=done)
        if failed:
            raise failed[0]
        return done

    # ------------------------------------------------------------------ operations

    def stats(self) -> Stats:
        """Counters of this instance and totals of the (possibly shared) outbox, with the
        outbox figures per tenant (`Stats.tenants`)."""
        self._check_open()
        tenants = self._tenant_stats(self.store.tenant_counts())
        counts = StoreCounts(
            sum(t.pending for t in tenants.values()),
            sum(t.in_flight for t in tenants.values()),
            sum(t.dead for t in tenants.values()), None)
        ages = [t.oldest_pending_age for t in tenants.values()
                if t.oldest_pending_age is not None]
        drains = [t.drain_seconds or 0.0 for t in tenants.values()]
        with self._lock:
            c = dict(self._counters)
        fast = _peek(self._fast_dups)
        c["recorded"] += fast
        c["duplicates"] += fast
        return Stats(
            recorded=c["recorded"], first_of_day=c["first_of_day"],
            duplicates=c["duplicates"], late=c["late"], beyond_horizon=c["beyond_horizon"],
            delivered=self._deliverer.delivered,
            pending=counts.pending, in_flight=counts.in_flight, dead=counts.dead,
            oldest_pending_age=max(ages) if ages else None,
            drain_seconds=max(drains) if self._deliverer.schedule.limited else None,
            hot_keys=len(self._ledger), last_error=self._deliverer.last_error,
            unattributed=self._deliverer.unattributed, tenants=tenants,
        )

    def _tenant_stats(self, counts: Mapping[str, StoreCounts]) -> dict[str, TenantStats]:
        """`TenantStats` of every tenant with entries, dead letters or deliveries, or a
        limit of its own; ``""`` too when no tenant has one."""
        schedule = self._deliverer.schedule
        delivered = self._deliverer.counters.snapshot()
        names = set(counts) | set(delivered) | set(schedule.tenant_limits)
        if not schedule.tenant_limits:
            names.add("")
        now = self._clock.time()
        out = {}
        none = StoreCounts(0, 0, 0, None)
        for tenant in sorted(names):
            c = counts.get(tenant, none)
            out[tenant] = TenantStats(
                pending=c.pending, in_flight=c.in_flight, dead=c.dead,
                oldest_pending_age=None if c.oldest_pending is None
                else max(0.0, now - c.oldest_pending),
                delivered=c.delivered,  # the store's: by every process on it
                drain_seconds=schedule.drain_seconds(tenant, c.pending + c.in_flight))
        return out

    def dead_letters(self, limit: int = 100) -> list[DeadLetterInfo]:
        """Dead letters, oldest first, with their registrations opened."""
        self._check_open()
        out = []
        for d in self.store.dead_letters(limit):
            try:
                reg: Registration | None = _entry.decode(self._sealer.unseal(d.payload, d.key))
            except Exception:  # unreadable payloads are listed, not hidden
                reg = None
            out.append(DeadLetterInfo(d.id, d.code, d.text, d.attempts, d.died_at, reg))
        return out

    def resolve(self, organisation: Organisation, code: str) -> str | None:
        """The employee id behind an identity code shown to a citizen (as issued by an
        `AlternativeId` or `Initials` policy for ``organisation``), or None."""
        self._check_open()
        self._tenant_of(organisation)  # an organisation of no tenant: a ValidationError
        return self._identity.resolve(organisation, code)

    def redrive(self, ids: Sequence[int] | None = None) -> int:
        """Send dead letters again (all when ``ids`` is None); returns how many."""
        self._check_open()
        n = self.store.redrive(ids, self._clock.time())
        if n:
            self._wake_worker()
        return n

    def today(self) -> int:
        """The Copenhagen day (a date ordinal) of this instance's clock."""
        self._check_open()
        self._ledger.advance(self._clock.time())
        return self._ledger.today

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"this MinLog ({self.system_name!r}) is closed: open a new one "
                              "with MinLog.open")

    # ------------------------------------------------------------------ lifecycle

    @property
    def owner_pid(self) -> int:
        """The process that owns this instance's connections and worker."""
        return self._pid

    @property
    def closed(self) -> bool:
        return self._closed

    def fork_locks(self) -> list[threading.Lock | threading.RLock]:
        """The locks held across a fork (`minlog.client.lifecycle`), in the order taken:
        the identity registry's first (it is held around store calls), then those held
        only briefly: the facade's, the group commit's, the delivery's and its counters',
        the worker's, the ledger's and its day cache's."""
        return [self._identity._lock, self._lock, self._committer._lock,
                self._deliverer.lock, self._deliverer.counters._lock,
                self._worker._start_lock, self._ledger._lock, self._ledger.days._lock]

    def after_fork(self) -> None:
        """In a forked child: own connections, locks and a (lazily started) worker."""
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._progress = threading.Condition()
        self._accepting = 0
        self._idle = threading.Condition(self._lock)
        self._committer = self._make_committer()
        for part in (self.store, *_distinct(self._transports.values())):
            hook = getattr(part, "after_fork", None)
            if hook is not None:
                hook()
        self._deliverer.after_fork()
        self._worker = Worker(self._deliverer, poll=self._poll, threads=self._threads,
                              on_step=self._after_step)


def _transports(transport: Transport | None, tenants: TenantRouter | None
                ) -> dict[str, Transport]:
    """The transports by tenant: ``""`` for a single municipality (its own CVR too, when
    the transport names one), each tenant's CVR with tenants."""
    if tenants is None:
        if transport is None:
            raise ConfigurationError("transport: required (or tenants, each with its own)")
        own = getattr(transport, "cvr", None)
        return {"": transport, **({own: transport} if isinstance(own, str) and own else {})}
    if transport is not None:
        raise ConfigurationError(
            "transport: with tenants, each tenant has its own (Tenant(transport=...), or "
            "credentials with Installation.open)")
    found: dict[str, Transport] = {}
    for t in tenants:
        if t.transport is None:
            raise ConfigurationError(
                f"tenant {t.label}: has no transport (give it one, or open the "
                "installation with Installation.open, which builds it from its credentials)")
        own = getattr(t.transport, "cvr", None)
        if isinstance(own, str) and own != t.cvr:
            raise ConfigurationError(
                f"tenant {t.label}: its transport's cvr is another CVR: the ID card would "
                "name another care provider")
        found[t.cvr] = t.transport
    return found


def _distinct(transports: Iterable[Transport]) -> list[Transport]:
    """Each transport once (tenants may share one in tests)."""
    seen: dict[int, Transport] = {}
    for t in transports:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _peek(counter: itertools.count[int]) -> int:
    """The next value of an `itertools.count` without advancing it (its repr is stable)."""
    return int(repr(counter)[6:-1])
