"""The `Store` contract, continued: scheduled claims (one tenant per lease, turns, rate
limits kept in the store, batches that fill), run against SQLite and PostgreSQL, in one
process and in three processes on one store with clocks fed by the test."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

# Imported in the spawned processes too (they import this module): under libfaketime its
# replacement of time.sleep is what lets a contended PostgreSQL claim pause there.
import conftest  # noqa: F401
import pytest

from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule
from minlog.errors import ConfigurationError
from minlog.store import NewEntry, Store, open_store
from minlog.store.sqlite import SQLiteStore

DAY = 740_000
A, B, C = "11111111", "22222222", "33333333"


def pend(n: int, tenant: str) -> NewEntry:
    return NewEntry(DAY, n.to_bytes(16, "big"), f"payload {n}".encode(), tenant)


def fill(store: Store, counts: dict[str, int], at: float = 1.0) -> None:
    """Append ``counts[tenant]`` entries for each tenant (distinct keys)."""
    n = 0
    batch = []
    for tenant, count in counts.items():
        for _ in range(count):
            batch.append(pend(n, tenant))
            n += 1
    store.append(batch, at)


def reopen(target: dict[str, Any]) -> Store:
    return open_store(target["target"], **target["store_options"])


def serve(store: Store, now: float, schedule: DeliverySchedule | None = None, *,
          limit: int = 2, fill_batches: bool = True) -> str | None:
    """One claim, acked at once: the tenant served (None: nobody)."""
    lease = store.claim(limit, 60, now, schedule=schedule, fill=fill_batches)
    if not lease.entries:
        return None
    assert len({e.tenant for e in lease.entries}) == 1
    store.ack(lease.token, [e.id for e in lease.entries])
    return lease.tenant


class TestOneTenantPerLease:
    def test_a_lease_holds_entries_of_one_tenant(self, store: Store) -> None:
        """Entries of three tenants, interleaved: every lease holds one tenant's only,
        oldest first, and all of them are leased in the end."""
        store.append([pend(n, (A, B, C)[n % 3]) for n in range(30)], 1.0)
        seen: list[int] = []
        while (lease := store.claim(7, 60, 5.0)).entries:
            assert len({e.tenant for e in lease.entries}) == 1
            ids = [e.id for e in lease.entries]
            assert ids == sorted(ids)
            seen.extend(ids)
        assert len(set(seen)) == 30

    def test_nothing_due_says_so(self, store: Store) -> None:
        """An empty outbox: no entries, nothing held, nothing to wait for."""
        lease = store.claim(10, 60, 5.0)
        assert (lease.entries, lease.next_at, lease.held) == ((), None, False)

    def test_an_entry_not_yet_due_says_when(self, store: Store) -> None:
        """A retried entry due later: the lease says when, and nothing is held back."""
        store.append([pend(1, A)], 1.0)
        lease = store.claim(10, 60, 5.0)
        store.retry(lease.token, [lease.entries[0].id], 100.0)
        empty = store.claim(10, 60, 6.0)
        assert (empty.entries, empty.next_at, empty.held) == ((), 100.0, False)


class TestTurns:
    def test_tenants_take_turns(self, store: Store) -> None:
        """A large backlog of one tenant does not starve the others: claims go round,
        least recently served first (never served: by tenant)."""
        fill(store, {A: 20, B: 4, C: 4})
        served = [serve(store, 5.0 + i) for i in range(8)]
        assert served == [A, B, C, A, B, C, A, A]

    def test_turns_are_kept_in_the_store(self, store_target: dict[str, Any]) -> None:
        """Two instances (processes, hosts) share the turns: what one served, the other
        does not serve next."""
        s1, s2 = reopen(store_target), reopen(store_target)
        try:
            fill(s1, {A: 6, B: 6, C: 6})
            assert [serve(s1, 5.0), serve(s2, 5.0), serve(s1, 5.0), serve(s2, 5.0)] == [
                A, B, C, A]
        finally:
            s1.close()
            s2.close()


class TestRateLimits:
    def test_a_tenant_at_its_limit_waits_and_others_go_on(self, store: Store) -> None:
        """A tenant at its limit is passed over while others are served; when nobody may
        be served, the lease says when the first may (held back)."""
        plan = DeliverySchedule(batch_size=2, tenant_limits={A: RateLimit(1, 100.0)})
        fill(store, {A: 10, B: 2})
        assert serve(store, 5.0, plan) == A
        assert serve(store, 6.0, plan) == B
        lease = store.claim(2, 60, 7.0, schedule=plan)
        assert (lease.entries, lease.next_at, lease.held) == ((), 105.0, True)
        assert serve(store, 104.9, plan) is None
        assert serve(store, 105.0, plan) == A

    def test_explicitly_unlimited_tenant(self, store: Store) -> None:
        """An override of None lifts the default limit for that tenant only."""
        plan = DeliverySchedule(batch_size=1, rate_limit=RateLimit(1, 100.0),
                                tenant_limits={B: None})
        fill(store, {A: 3, B: 3})
        assert [serve(store, 5.0 + i, plan, limit=1) for i in range(5)] == [
            A, B, B, B, None]

    def test_the_limit_holds_across_instances(self, store_target: dict[str, Any]) -> None:
        """The send times are kept in the store: a second instance sees the first's."""
        plan = DeliverySchedule(batch_size=1, rate_limit=RateLimit(2, 60.0))
        s1, s2 = reopen(store_target), reopen(store_target)
        try:
            fill(s1, {A: 10})
            assert serve(s1, 10.0, plan, limit=1) == A
            assert serve(s2, 11.0, plan, limit=1) == A
            assert serve(s1, 12.0, plan, limit=1) is None
            assert serve(s2, 69.9, plan, limit=1) is None
            assert serve(s2, 70.0, plan, limit=1) == A
        finally:
            s1.close()
            s2.close()

    def test_reserve_send_takes_slots_under_the_limit(self, store: Store) -> None:
        """More requests of one lease (halves) take their own slots; none beyond the
        limit (the answer then is the wait)."""
        limit = RateLimit(3, 60.0)
        plan = DeliverySchedule(batch_size=2, rate_limit=limit)
        fill(store, {A: 4})
        assert serve(store, 10.0, plan) == A
        assert store.reserve_send(A, limit, 11.0) == 0.0
        assert store.reserve_send(A, limit, 12.0) == 0.0
        assert store.reserve_send(A, limit, 13.0) == 60.0 + 10.0 - 13.0
        assert serve(store, 14.0, plan) is None
        assert store.reserve_send(B, None, 14.0) == 0.0


class TestFill:
    def test_a_partial_batch_waits_for_fill_wait(self, store: Store) -> None:
        """A tenant with fewer than batch_size due entries waits until its oldest has
        waited fill_wait; a full batch goes at once; fill=False asks for everything now."""
        plan = DeliverySchedule(batch_size=3, fill_wait=50.0)
        fill(store, {A: 2, B: 3}, at=1.0)
        assert serve(store, 10.0, plan, limit=3) == B
        lease = store.claim(3, 60, 10.0, schedule=plan)
        assert (lease.entries, lease.next_at, lease.held) == ((), 51.0, True)
        assert serve(store, 10.0, plan, limit=3, fill_batches=False) == A

    def test_the_oldest_entry_ends_the_wait(self, store: Store) -> None:
        plan = DeliverySchedule(batch_size=3, fill_wait=50.0)
        fill(store, {A: 2}, at=1.0)
        assert serve(store, 50.9, plan, limit=3) is None
        assert serve(store, 51.0, plan, limit=3) == A


class TestTenantCounts:
    def test_counts_per_tenant(self, store: Store) -> None:
        """Pending, in flight, dead and the oldest accept time, per tenant."""
        assert store.tenant_counts() == {}
        store.append([pend(1, A), pend(2, A)], 1.0)
        store.append([pend(3, B)], 2.0)
        lease = store.claim(1, 60, 5.0)
        store.bury(lease.token, [(lease.entries[0].id, "E1", "no")], 6.0)
        counts = store.tenant_counts()
        assert {t: (c.pending, c.in_flight, c.dead, c.oldest_pending)
                for t, c in counts.items()} == {A: (1, 0, 1, 1.0), B: (1, 0, 0, 2.0)}
        lease = store.claim(5, 60, 7.0)
        assert lease.tenant == B
        assert (store.tenant_counts()[B].in_flight, store.tenant_counts()[B].pending) == (1, 0)


class TestDelivered:
    def test_ack_counts_what_each_tenant_had_delivered(self, store: Store) -> None:
        """Each ack adds the entries it removed to their tenant's delivered count (in
        the store: any instance reads it), and only those: an ack under a lease that ran
        out and was taken over removes nothing and counts nothing."""
        fill(store, {A: 3, B: 2})
        a = store.claim(10, 60, 5.0)
        assert a.tenant == A
        store.ack(a.token, [e.id for e in a.entries[:2]])
        b = store.claim(10, 60, 5.0)
        assert b.tenant == B
        store.ack(b.token, [e.id for e in b.entries])
        counts = store.tenant_counts()
        assert {t: (c.delivered, c.pending + c.in_flight) for t, c in counts.items()} == {
            A: (2, 1), B: (2, 0)}  # B has nothing left, and is still listed
        again = store.claim(10, 60, 100.0)  # A's lease ran out: its last entry taken over
        assert again.tenant == A
        store.ack(a.token, [a.entries[2].id])
        assert store.tenant_counts()[A].delivered == 2
        store.ack(again.token, [e.id for e in again.entries])
        assert {t: c.delivered for t, c in store.tenant_counts().items()} == {A: 3, B: 2}
        assert store.counts().delivered == 5

    def test_a_tenant_that_delivered_nothing_counts_none(self, store: Store) -> None:
        """A tenant whose only entry went back to pending and then to the dead letters
        delivered nothing: it is listed for its dead letter, with 0 delivered."""
        fill(store, {A: 1})
        lease = store.claim(10, 60, 5.0)
        store.retry(lease.token, [lease.entries[0].id], 6.0)
        lease = store.claim(10, 60, 7.0)
        store.bury(lease.token, [(lease.entries[0].id, "E1", "no")], 8.0)
        assert {t: (c.dead, c.delivered) for t, c in store.tenant_counts().items()} == {
            A: (1, 0)}


# --------------------------------------------------------------------- three processes

LIMITS = {A: RateLimit(1, 30.0), B: RateLimit(2, 30.0), C: RateLimit(3, 30.0)}
ROUNDS = 18
STEP = 10.0
START = 1000.0


def _rounds(target: dict[str, Any], barrier: Any, out: Any) -> None:
    """One process: in each round, at the round's clock value, one claim and its ack."""
    store = reopen(target)
    plan = DeliverySchedule(batch_size=2, rate_limit=None, tenant_limits=LIMITS)
    served = []
    try:
        for r in range(ROUNDS):
            barrier.wait(60)
            now = START + r * STEP
            lease = store.claim(2, 5.0, now, schedule=plan)
            if lease.entries:
                assert len({e.tenant for e in lease.entries}) == 1
                store.ack(lease.token, [e.id for e in lease.entries])
                served.append((r, lease.tenant))
    finally:
        store.close()
        out.put(served)


class TestAcrossProcesses:
    def test_limits_and_turns_hold_for_three_processes(
            self, store_target: dict[str, Any]) -> None:
        """Three tenants with different limits, three OS processes on one store, each
        stepping through the same clock values round by round: no tenant ever sends more
        than its limit within any window of its limit, and every tenant that may send at
        the start of a round (under its limit, with due work) is served in that round:
        none waits more than one round while others are served."""
        s = reopen(store_target)
        fill(s, {A: 60, B: 60, C: 60})
        s.close()
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_rounds, args=(store_target, barrier, out))
                 for _ in range(3)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        sends: dict[str, list[float]] = defaultdict(list)
        by_round: dict[int, list[str]] = defaultdict(list)
        for served in results:
            for r, tenant in served:
                sends[tenant].append(START + r * STEP)
                by_round[r].append(tenant)
        for tenant, limit in LIMITS.items():
            times = sorted(sends[tenant])
            assert times, tenant
            for t in times:  # every window [t, t + per) starting at a send
                assert sum(t <= u < t + limit.per for u in times) <= limit.requests, tenant
        for r in range(ROUNDS):
            now = START + r * STEP
            for tenant, limit in LIMITS.items():
                before = sorted(t for t in sends[tenant] if t < now)
                if limit.wait(before, now) == 0:
                    assert tenant in by_round[r], (r, tenant, dict(by_round))
        # The limits bind: the busiest tenant got its share, the strictest its own.
        assert len(sends[A]) == ROUNDS // 3
        assert len(sends[C]) == ROUNDS


@pytest.mark.parametrize("limit", [RateLimit(1, 30.0), RateLimit(2, 30.0)])
def test_claim_leaves_the_window_to_the_limit(store: Store, limit: RateLimit) -> None:
    """Claims at uneven times (one instance) never put more than the limit's requests
    into any window of its length."""
    plan = DeliverySchedule(batch_size=1, rate_limit=limit)
    fill(store, {A: 40})
    times = [t for t in (10.0 + 3.7 * i for i in range(60))
             if serve(store, t, plan, limit=1) is not None]
    for t in times:
        assert sum(t <= u < t + limit.per for u in times) <= limit.requests
    assert len(times) >= 7 * limit.requests


class TestMigration:
    def test_a_sqlite_file_of_schema_2_gains_the_tenants_table(self, tmp_path: Path) -> None:
        """A file of schema 2 (before scheduled claims) keeps its outbox and gains the
        tenants' delivery state when opened; read-only it is refused until then."""
        path = tmp_path / "m.sqlite"
        s = SQLiteStore(path)
        fill(s, {A: 3, B: 2})
        s.close()
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DROP TABLE tenants")
            conn.execute("UPDATE _meta SET value = 2 WHERE name = 'schema_version'")
        with pytest.raises(ConfigurationError, match="schema version 2"):
            SQLiteStore(path, read_only=True)
        s = SQLiteStore(path)
        try:
            assert s.describe().schema_version == 3
            assert {t: c.pending for t, c in s.tenant_counts().items()} == {A: 3, B: 2}
            assert serve(s, 5.0, limit=10) == A
            assert serve(s, 5.0, limit=10) == B
            assert {t: c.delivered for t, c in s.tenant_counts().items()} == {A: 3, B: 2}
        finally:
            s.close()

    def test_a_sqlite_file_of_schema_3_without_delivered_gains_it(
            self, tmp_path: Path) -> None:
        """A file made at schema 3 before the tenants kept their delivered count (a
        development version) gains the column when opened, and counts from then on."""
        path = tmp_path / "m.sqlite"
        s = SQLiteStore(path)
        fill(s, {A: 3})
        s.close()
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("ALTER TABLE tenants DROP COLUMN delivered")
        s = SQLiteStore(path)
        try:
            assert serve(s, 5.0, limit=10) == A
            assert s.tenant_counts()[A].delivered == 3
        finally:
            s.close()
        with contextlib.closing(SQLiteStore(path, read_only=True)) as ro:
            assert ro.tenant_counts()[A].delivered == 3

    def test_a_postgres_schema_of_version_4_without_delivered_gains_it(
            self, pg_schema: str) -> None:
        from conftest import POSTGRES_URL

        from minlog.store.postgres import PostgresStore

        s = PostgresStore(POSTGRES_URL, schema=pg_schema)
        fill(s, {A: 3})
        s._run(lambda c: c.execute(s._q("ALTER TABLE {s}.tenants DROP COLUMN delivered")))
        s.close()
        s = PostgresStore(POSTGRES_URL, schema=pg_schema)
        try:
            assert serve(s, 5.0, limit=10) == A
            assert s.tenant_counts()[A].delivered == 3
        finally:
            s.close()

    def test_a_postgres_schema_of_version_3_gains_the_tenants_table(
            self, pg_schema: str) -> None:
        from conftest import POSTGRES_URL

        from minlog.store.postgres import PostgresStore

        url = POSTGRES_URL
        s = PostgresStore(url, schema=pg_schema)
        fill(s, {A: 3, B: 2})
        s._run(lambda c: c.execute(s._q(
            "DROP TABLE {s}.tenants; DROP SEQUENCE {s}.tenant_turns; "
            "UPDATE {s}.meta SET value = 3 WHERE name = 'schema_version'")))
        s.close()
        s = PostgresStore(url, schema=pg_schema)
        try:
            assert serve(s, 5.0, limit=10) == A
            assert serve(s, 5.0, limit=10) == B
            assert {t: c.delivered for t, c in s.tenant_counts().items()} == {A: 3, B: 2}
            assert s._run(lambda c: c.execute(s._q(
                "SELECT value FROM {s}.meta WHERE name = 'schema_version'")).fetchone()) == (4,)
        finally:
            s.close()


class TestClaimsThatFindNothing:
    def test_take_no_write_lock(self, tmp_path: Path) -> None:
        """A claim that finds no tenant to serve (a partial batch waiting to fill) is
        answered by a read: it does not wait for another process's write transaction
        (a process recording meanwhile), and says when to look again."""
        store = SQLiteStore(tmp_path / "m.sqlite", busy_timeout=1.0)
        try:
            fill(store, {A: 3}, at=100.0)
            plan = DeliverySchedule(batch_size=500, fill_wait=600.0)
            other = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process, writing
                lease = store.claim(500, 60.0, 200.0, schedule=plan)
                assert (lease.entries, lease.held, lease.next_at) == ((), True, 700.0)
            finally:
                other.execute("ROLLBACK")
                other.close()
            served = store.claim(500, 60.0, 700.0, schedule=plan)  # the wait is over
            assert len(served.entries) == 3
        finally:
            store.close()
