"""One behaviour suite for the `Store` protocol, run against SQLite and PostgreSQL.

Stores persist and report; they never decide from memory. What makes a key new is the
store's transaction, so two instances (processes, hosts) on one store agree exactly.
Scheduled claims (one tenant per lease, turns, rate limits, batches that fill) are the
suite's second part, ``tests/test_store_turns.py``.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

# Imported in the spawned processes too (they import this module): under libfaketime its
# replacement of time.sleep is what lets a contended PostgreSQL claim pause there.
import conftest  # noqa: F401
import pytest

from minlog.store import NewEntry, Store, open_store, postgres_schema

DAY = 740_000


def key(n: int) -> bytes:
    return n.to_bytes(16, "big")


def pend(n: int, day: int = DAY, tenant: str = "") -> NewEntry:
    return NewEntry(day, key(n), f"payload {n}".encode(), tenant)


def reopen(target: dict[str, Any]) -> Store:
    return open_store(target["target"], **target["store_options"])


class TestAppend:
    def test_reports_newness_per_entry(self, store: Store) -> None:
        """append answers True for new (day, key) pairs and False for known ones."""
        assert store.append([pend(1), pend(2)], 1.0) == [True, True]
        assert store.append([pend(2), pend(3)], 2.0) == [False, True]

    def test_in_batch_repeats_count_once(self, store: Store) -> None:
        """A pair twice in one batch is new once (the first) and enqueued once."""
        assert store.append([pend(1), pend(1), pend(2)], 1.0) == [True, False, True]
        assert store.counts().pending == 2

    @pytest.mark.parametrize("size", [3, 40, 600])
    def test_large_and_small_batches_agree(self, store: Store, size: int) -> None:
        """Batches of every size (one by one, or looked up in chunks) answer the same."""
        half = [pend(n, DAY + n % 3) for n in range(0, size, 2)]
        store.append(half, 1.0)
        batch = [pend(n, DAY + n % 3) for n in range(size)] + [pend(1, DAY + 1)]
        answers = store.append(batch, 2.0)
        assert answers == [n % 2 == 1 for n in range(size)] + [False]
        assert store.counts().pending == size

    def test_same_key_other_day_is_new(self, store: Store) -> None:
        """Days partition the seen-set."""
        assert store.append([pend(1, DAY), pend(1, DAY + 1)], 1.0) == [True, True]

    def test_enqueues_payloads_and_tenants_of_new_entries_only(self, store: Store) -> None:
        """Only new entries reach the outbox, with their payloads and tenants."""
        store.append([pend(1, tenant="29189846")], 1.0)
        store.append([pend(1), pend(2, tenant="55133018")], 1.0)
        claimed = store.claim(10, 60, 5.0).entries + store.claim(10, 60, 5.0).entries
        assert sorted((e.key, e.payload, e.tenant) for e in claimed) == [
            (key(1), b"payload 1", "29189846"), (key(2), b"payload 2", "55133018")]

    def test_keys_of_lists_a_days_keys(self, store: Store) -> None:
        """keys_of(day) returns exactly that day's keys (to warm memory)."""
        store.append([pend(1), pend(2), pend(3, DAY + 1)], 1.0)
        assert store.keys_of(DAY) == {key(1), key(2)}
        assert store.keys_of(DAY - 1) == set()

    def test_empty_batch(self, store: Store) -> None:
        """An empty batch is a no-op."""
        assert store.append([], 1.0) == []


def _append_race(target: dict[str, Any], start: Any, out: Any) -> None:
    s = reopen(target)
    try:
        start.wait()
        out.put(sum(s.append([pend(n, DAY - n % 40)], 1.0)[0] for n in range(300)))
    finally:
        s.close()


class TestExactAcrossInstances:
    def test_two_instances_agree(self, store_target: dict[str, Any]) -> None:
        """What one instance appended, another instance's append finds: not new."""
        a, b = reopen(store_target), reopen(store_target)
        try:
            assert a.append([pend(1), pend(2, DAY - 30)], 1.0) == [True, True]
            assert b.append([pend(1), pend(2, DAY - 30), pend(3)], 2.0) == [False, False, True]
        finally:
            a.close()
            b.close()

    def test_racing_processes_make_each_key_new_once(self,
                                                     store_target: dict[str, Any]) -> None:
        """Three processes append the same 300 keys at once (on 40 days): each key is new
        exactly once in total, and in the outbox exactly once."""
        ctx = multiprocessing.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_append_race, args=(store_target, start, out))
                 for _ in range(3)]
        for p in procs:
            p.start()
        start.set()
        news = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert sum(news) == 300
        s = reopen(store_target)
        try:
            assert s.counts().pending == 300
        finally:
            s.close()


class TestSettings:
    def test_the_horizon_only_grows(self, store_target: dict[str, Any]) -> None:
        """The store keeps the largest horizon any instance asked for."""
        a = reopen(store_target)
        try:
            assert a.horizon_days(35) == 35
            assert a.horizon_days(10) == 35
            assert a.horizon_days(60) == 60
        finally:
            a.close()
        b = reopen(store_target)
        try:
            assert b.horizon_days(1) == 60
        finally:
            b.close()


class TestPersistence:
    def test_reopen_keeps_everything(self, store_target: dict[str, Any]) -> None:
        """A closed and reopened store keeps its seen-set, outbox and dead letters."""
        s = reopen(store_target)
        s.append([pend(1), pend(2)], 1.0)
        lease = s.claim(1, 60, 1.0)
        s.bury(lease.token, [(lease.entries[0].id, "E1", "no")], 2.0)
        s.close()
        s = reopen(store_target)
        try:
            assert s.append([pend(1), pend(2)], 3.0) == [False, False]
            c = s.counts()
            assert (c.pending, c.dead) == (1, 1)
        finally:
            s.close()


class TestOutbox:
    def test_claim_leases_oldest_first_and_counts_attempts(self, store: Store) -> None:
        """claim takes due entries oldest first and marks them in flight."""
        store.append([pend(1), pend(2), pend(3)], 1.0)
        first = store.claim(2, 60, 5.0)
        assert [e.key for e in first.entries] == [key(1), key(2)]
        assert all(e.attempts == 1 for e in first.entries)
        assert first.until == 65.0
        c = store.counts()
        assert (c.pending, c.in_flight) == (1, 2)
        assert [e.key for e in store.claim(10, 60, 5.0).entries] == [key(3)]
        assert store.claim(10, 60, 5.0).entries == ()

    def test_expired_lease_returns_to_the_pool(self, store: Store) -> None:
        """An entry whose worker died is claimable again once its lease expires."""
        store.append([pend(1)], 1.0)
        assert len(store.claim(10, 60, 5.0).entries) == 1
        assert store.claim(10, 60, 30.0).entries == ()
        again = store.claim(10, 60, 66.0)
        assert [e.attempts for e in again.entries] == [2]

    def test_ack_removes(self, store: Store) -> None:
        """Acknowledged entries leave the outbox."""
        store.append([pend(1), pend(2)], 1.0)
        lease = store.claim(10, 60, 5.0)
        store.ack(lease.token, [lease.entries[0].id])
        c = store.counts()
        assert (c.pending, c.in_flight) == (0, 1)

    def test_only_the_current_lease_settles(self, store: Store) -> None:
        """A worker whose lease ran out and was claimed again cannot ack, retry or bury:
        the entry belongs to the new lease (nothing is lost by a late answer)."""
        store.append([pend(1), pend(2)], 1.0)
        slow = store.claim(10, 10, 5.0)
        fresh = store.claim(10, 60, 20.0)
        assert {e.id for e in fresh.entries} == {e.id for e in slow.entries}
        ids = [e.id for e in slow.entries]
        store.ack(slow.token, ids[:1])
        store.retry(slow.token, ids[1:], 100.0)
        store.bury(slow.token, [(ids[0], "late", "too late")], 21.0)
        c = store.counts()
        assert (c.pending, c.in_flight, c.dead) == (0, 2, 0)
        store.ack(fresh.token, ids)
        assert store.counts().in_flight == 0

    def test_release_returns_this_instances_leases_at_once(
            self, store_target: dict[str, Any]) -> None:
        """release_leases puts the entries this instance leased and has not settled back
        to pending, due at once in their order; another instance's lease is untouched,
        and a late settlement under a released lease changes nothing."""
        mine, other = reopen(store_target), reopen(store_target)
        try:
            mine.append([pend(n) for n in range(5)], 1.0)
            first = mine.claim(2, 60, 5.0)
            second = mine.claim(1, 60, 5.0)
            theirs = other.claim(1, 60, 5.0)
            mine.ack(second.token, [second.entries[0].id])
            assert mine.release_leases() == 2
            c = mine.counts()
            assert (c.pending, c.in_flight) == (3, 1)
            assert mine.next_due() == 1.0  # due as accepted: before the lease's end
            mine.ack(first.token, [e.id for e in first.entries])
            mine.bury(first.token, [(first.entries[0].id, "late", "too late")], 6.0)
            assert mine.counts().pending == 3
            again = other.claim(10, 60, 6.0)
            assert [e.id for e in again.entries] == sorted(
                [e.id for e in first.entries] + [again.entries[-1].id])
            assert [e.attempts for e in again.entries[:2]] == [2, 2]
            assert theirs.entries[0].id not in {e.id for e in again.entries}
            assert mine.release_leases() == 0
            assert other.release_leases() == 4
        finally:
            mine.close()
            other.close()

    def test_retry_defers(self, store: Store) -> None:
        """A retried entry is due again only at its not_before time."""
        store.append([pend(1)], 1.0)
        lease = store.claim(10, 60, 5.0)
        store.retry(lease.token, [lease.entries[0].id], 100.0)
        assert store.counts().pending == 1
        assert store.next_due() == 100.0
        assert store.claim(10, 60, 99.0).entries == ()
        assert len(store.claim(10, 60, 100.0).entries) == 1

    def test_bury_and_redrive(self, store: Store) -> None:
        """Dead letters keep code, text and tenant; redrive puts them back as pending."""
        store.append([pend(1, tenant="29189846"), pend(2, tenant="29189846")], 1.0)
        lease = store.claim(10, 60, 5.0)
        a = lease.entries[0]
        store.bury(lease.token, [(a.id, "E7", "refused")], 6.0)
        dead = store.dead_letters()
        assert [(d.key, d.code, d.text, d.payload, d.tenant) for d in dead] == [
            (key(1), "E7", "refused", b"payload 1", "29189846")]
        assert store.counts().dead == 1
        assert store.redrive([999_999], 7.0) == 0
        assert store.redrive(None, 7.0) == 1
        c = store.counts()
        assert (c.pending, c.in_flight, c.dead) == (1, 1, 0)
        again = store.claim(10, 60, 8.0).entries
        assert [(e.key, e.tenant, e.attempts) for e in again] == [(key(1), "29189846", 1)]

    def test_dead_letters_survive_reused_outbox_ids(self, store: Store) -> None:
        """An outbox row id freed by a burial and used again by a new entry never makes
        the new entry's dead letter replace the old one."""
        store.append([pend(0), pend(2)], 1.0)
        lease = store.claim(10, 60, 2.0)
        store.retry(lease.token, [lease.entries[0].id], 100.0)
        store.bury(lease.token, [(lease.entries[1].id, "E1", "first")], 3.0)
        store.append([pend(1)], 4.0)
        lease = store.claim(10, 60, 5.0)
        store.bury(lease.token, [(e.id, "E2", "second") for e in lease.entries], 6.0)
        dead = store.dead_letters()
        assert sorted((d.key, d.code) for d in dead) == [(key(1), "E2"), (key(2), "E1")]
        assert len({d.id for d in dead}) == 2

    def test_oldest_pending_and_next_due(self, store: Store) -> None:
        """counts() reports the oldest accept time; next_due the earliest due time."""
        assert store.next_due() is None
        assert store.counts().oldest_pending is None
        store.append([pend(1)], 10.0)
        store.append([pend(2)], 20.0)
        assert store.counts().oldest_pending == 10.0
        assert store.next_due() == 10.0

    def test_accepted_counts_per_tenant_and_bucket(self, store_target: dict[str, Any]
                                                   ) -> None:
        """accepted_counts counts what the outbox and the dead letters hold (pending, in
        flight or dead) per tenant and accept-time bucket; delivered entries are gone;
        a store opened read-only answers it."""
        s = reopen(store_target)
        assert s.accepted_counts(3600) == {}
        s.append([pend(1, tenant="29189846"), pend(2, tenant="29189846")], 7_200.0)
        s.append([pend(3, tenant="29189846")], 10_799.5)
        s.append([pend(4), pend(5)], 10_800.0)
        s.append([pend(6, tenant="55133018")], 3_599.0)
        s.append([pend(7, tenant="55133018")], 3_600.0)
        lease = s.claim(1, 60, 20_000.0)  # the oldest of one tenant, leased
        assert lease.entries
        other = s.claim(10, 60, 20_000.0)
        s.bury(other.token, [(other.entries[0].id, "E7", "refused")], 20_001.0)
        delivered = s.claim(10, 60, 20_000.0)
        s.ack(delivered.token, [e.id for e in delivered.entries])
        gone = {e.tenant for e in delivered.entries}
        expected = {"29189846": {2: 3}, "": {3: 2}, "55133018": {0: 1, 1: 1}}
        for tenant in gone:
            del expected[tenant]
        assert s.accepted_counts(3600) == expected
        assert sum(sum(c.values()) for c in s.accepted_counts(60).values()) == sum(
            sum(c.values()) for c in expected.values())
        s.close()
        ro = open_store(store_target["target"], **{**store_target["store_options"],
                                                    "read_only": True})
        try:
            assert ro.accepted_counts(3600) == expected
        finally:
            ro.close()

    def test_concurrent_claims_never_share_an_entry(self, store_target: dict[str, Any]) -> None:
        """Two workers claiming at once each get different entries, all of them in total."""
        s = reopen(store_target)
        s.append([pend(n) for n in range(200)], 1.0)
        got: list[list[int]] = [[], []]
        others = [reopen(store_target) for _ in range(2)]

        def work(i: int) -> None:
            while batch := others[i].claim(7, 60, 5.0).entries:
                got[i].extend(e.id for e in batch)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for o in [*others, s]:
            o.close()
        assert not set(got[0]) & set(got[1])
        assert len(got[0]) + len(got[1]) == 200


class TestPrune:
    def test_prune_forgets_old_days_and_keeps_the_outbox(self, store: Store) -> None:
        """Pruning drops seen-set days before the limit, never outbox entries."""
        store.append([pend(1, DAY - 5), pend(2, DAY)], 1.0)
        assert store.prune(DAY - 1) == 1
        assert store.keys_of(DAY - 5) == set()
        assert store.keys_of(DAY) == {key(2)}
        assert store.counts().pending == 2

    def test_days_not_pruned_stay_exact(self, store: Store) -> None:
        """Pruning before a day leaves that day's answers exact."""
        store.append([pend(1, DAY - 5), pend(2, DAY - 4)], 1.0)
        store.prune(DAY - 4)
        assert store.append([pend(2, DAY - 4)], 2.0) == [False]


class TestAliases:
    def test_codes_are_unique_per_scope_and_subject(self, store: Store) -> None:
        """A code and a subject each register once per scope; other scopes are apart."""
        assert store.add_alias("SOR:1", "K7Q4", b"s1", b"sealed1")
        assert not store.add_alias("SOR:1", "K7Q4", b"s2", b"sealed2")
        assert not store.add_alias("SOR:1", "OTHER", b"s1", b"sealed1")
        assert store.add_alias("SOR:2", "K7Q4", b"s2", b"sealed2")
        assert store.alias_for("SOR:1", b"s1") == "K7Q4"
        assert store.alias_for("SOR:1", b"s2") is None
        assert store.resolve_alias("SOR:1", "K7Q4") == b"sealed1"
        assert store.resolve_alias("SOR:2", "K7Q4") == b"sealed2"
        assert store.resolve_alias("SOR:3", "K7Q4") is None


@pytest.mark.parametrize("bad", ["Bad-Name", "1abc", "x" * 60, 'a"; drop'])
def test_postgres_schema_name_is_checked(bad: str) -> None:
    """A schema name that is not a plain identifier is a ConfigurationError."""
    pytest.importorskip("psycopg")
    from minlog import ConfigurationError
    from minlog.store.postgres import PostgresStore

    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://nowhere.invalid/x", schema=bad)


class TestPostgresPartitions:
    """What only the PostgreSQL store does: a partition per day, made ahead, dropped behind."""

    @staticmethod
    def _open(schema: str) -> Any:
        from conftest import POSTGRES_URL

        return open_store(POSTGRES_URL, schema=schema)

    @staticmethod
    def _days(store: Any) -> set[int]:
        with store._pool.connection() as conn:
            return set(postgres_schema.attached(conn, store.schema))

    def test_prepare_makes_today_and_the_days_ahead(self, pg_schema: str) -> None:
        """prepare(today) attaches partitions for today and partitions_ahead days."""
        s = self._open(pg_schema)
        try:
            s.prepare(DAY)
            assert self._days(s) == {DAY, DAY + 1, DAY + 2, DAY + 3}
            s.prepare(DAY)  # idempotent
            assert self._days(s) == {DAY, DAY + 1, DAY + 2, DAY + 3}
        finally:
            s.close()

    def test_a_partition_dropped_by_another_process_is_made_again(self, pg_schema: str) -> None:
        """When another host drops a day this one still remembers, a late access for that
        day is still accepted (its partition is made again), never refused."""
        a, b = self._open(pg_schema), self._open(pg_schema)
        try:
            assert b.append([pend(1, DAY - 5)], 1.0) == [True]
            assert a.prune(DAY) >= 1
            assert DAY - 5 not in self._days(b)
            assert b.append([pend(2, DAY - 5)], 2.0) == [True]
            assert b.keys_of(DAY - 5) == {key(2)}
            assert b.counts().pending == 2
        finally:
            a.close()
            b.close()

    def test_concurrent_prunes_and_accepts_do_not_fail(self, pg_schema: str) -> None:
        """Several processes pruning while others accept: no errors, nothing lost."""
        stores = [self._open(pg_schema) for _ in range(4)]
        errors: list[BaseException] = []
        try:
            stores[0].append([pend(n, DAY - 10 + n % 8) for n in range(80)], 1.0)

            def prune(s: Any) -> None:
                try:
                    s.prune(DAY - 4)
                except BaseException as e:  # collected and asserted below
                    errors.append(e)

            def accept(s: Any, base: int) -> None:
                try:
                    for n in range(base, base + 40):
                        s.append([pend(n, DAY - n % 6)], 2.0)
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=prune, args=(stores[0],)),
                       threading.Thread(target=prune, args=(stores[1],)),
                       threading.Thread(target=accept, args=(stores[2], 1000)),
                       threading.Thread(target=accept, args=(stores[3], 2000))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert all(d >= DAY - 5 for d in self._days(stores[0]))
            assert stores[0].counts().pending == 80 + 80
        finally:
            for s in stores:
                s.close()


class TestSQLiteFile:
    """What only the SQLite store does."""

    def test_inspecting_never_creates_a_file(self, tmp_path: Any) -> None:
        """create=False on a missing path is a StoreError, and nothing is created."""
        from minlog import StoreError
        from minlog.store.sqlite import SQLiteStore

        with pytest.raises(StoreError, match="no SQLite store"):
            SQLiteStore(tmp_path / "nope" / "minlog.sqlite", create=False)
        assert list(tmp_path.iterdir()) == []

    def test_a_version_1_file_keeps_its_outbox(self, tmp_path: Any) -> None:
        """A file of minlog 0.1 (key blocks, outbox segments) migrates: every open entry and
        every dead letter moves over; settled entries stay settled."""
        import sqlite3
        import struct

        from minlog.store.sqlite import SQLiteStore

        path = tmp_path / "old.sqlite"
        conn = sqlite3.connect(path)
        conn.executescript(
            "CREATE TABLE _meta (name TEXT PRIMARY KEY, value INTEGER);"
            "INSERT INTO _meta VALUES ('schema_version', 1);"
            "CREATE TABLE seen (seq INTEGER PRIMARY KEY AUTOINCREMENT, day INTEGER NOT NULL,"
            " keys BLOB NOT NULL);"
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL,"
            " settled INTEGER NOT NULL, keys BLOB NOT NULL, sizes BLOB NOT NULL,"
            " payloads BLOB NOT NULL, done BLOB, state INTEGER NOT NULL,"
            " attempts INTEGER NOT NULL, due REAL NOT NULL, accepted_at REAL NOT NULL,"
            " owner TEXT);"
            "CREATE INDEX outbox_due ON outbox (due, id);"
            "CREATE TABLE dead (id INTEGER PRIMARY KEY, key BLOB NOT NULL, payload BLOB NOT NULL,"
            " attempts INTEGER NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL,"
            " died_at FLOAT NOT NULL, accepted_at FLOAT);"
            "CREATE TABLE aliases (scope TEXT, code TEXT, subject BLOB NOT NULL,"
            " sealed BLOB NOT NULL, PRIMARY KEY (scope, code));")
        payloads = [b"p0", b"payload1", b"p2"]
        conn.execute("INSERT INTO seen (day, keys) VALUES (?, ?)", [DAY, key(0) + key(1)])
        conn.execute(
            "INSERT INTO outbox (n, settled, keys, sizes, payloads, done, state, attempts,"
            " due, accepted_at) VALUES (3, 1, ?, ?, ?, ?, 1, 2, 50.0, 10.0)",
            [key(0) + key(1) + key(2), struct.pack("<3I", *map(len, payloads)),
             b"".join(payloads), bytes([0b010])])
        conn.execute("INSERT INTO dead VALUES (7, ?, X'64656164', 1, 'E1', 'no', 20.0, 5.0)",
                     [key(9)])
        conn.commit()
        conn.close()
        s = SQLiteStore(path)
        try:
            c = s.counts()
            assert (c.pending, c.in_flight, c.dead) == (2, 0, 1)
            lease = s.claim(10, 60, 100.0)
            assert [(e.key, e.payload, e.attempts) for e in lease.entries] == [
                (key(0), b"p0", 3), (key(2), b"p2", 3)]
            assert [(d.key, d.tenant) for d in s.dead_letters()] == [(key(9), "")]
        finally:
            s.close()
