"""One behaviour suite for the `Store` protocol, run against SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from minlog.core.keys import HotSet
from minlog.store import Pending, Store, open_store

DAY = 740_000


def key(n: int) -> bytes:
    return n.to_bytes(16, "big")


def pend(n: int, day: int = DAY) -> Pending:
    return Pending(day, key(n), f"payload {n}".encode())


class TestAccept:
    def test_reports_newness_per_entry(self, store: Store) -> None:
        """accept answers True for new (day, key) pairs and False for known ones."""
        assert store.accept([pend(1), pend(2)], 1.0) == [True, True]
        assert store.accept([pend(2), pend(3)], 2.0) == [False, True]

    def test_in_batch_repeats_count_once(self, store: Store) -> None:
        """A key twice in one batch is new once (the first) and enqueued once."""
        assert store.accept([pend(1), pend(1), pend(2)], 1.0) == [True, False, True]
        assert store.counts().pending == 2

    def test_same_key_other_day_is_new(self, store: Store) -> None:
        """Days partition the seen-set."""
        assert store.accept([pend(1, DAY), pend(1, DAY + 1)], 1.0) == [True, True]

    def test_enqueues_payloads_of_new_entries_only(self, store: Store) -> None:
        """Only new entries reach the outbox, with their payloads."""
        store.accept([pend(1)], 1.0)
        store.accept([pend(1), pend(2)], 1.0)
        claimed = store.claim(10, 60, 5.0)
        assert [(e.key, e.payload) for e in claimed] == [(key(1), b"payload 1"),
                                                         (key(2), b"payload 2")]

    def test_seen_lists_a_days_keys(self, store: Store) -> None:
        """seen(day) returns exactly that day's keys (to warm memory)."""
        store.accept([pend(1), pend(2), pend(3, DAY + 1)], 1.0)
        assert store.seen(DAY) == {key(1), key(2)}
        assert store.seen(DAY - 1) == set()

    def test_empty_batch(self, store: Store) -> None:
        """An empty batch is a no-op."""
        assert store.accept([], 1.0) == []


class TestMemory:
    """The in-memory seen-set a store fills (`load`) and keeps up to date (`accept`)."""

    @staticmethod
    def memory(today: int = DAY) -> HotSet:
        return HotSet(today, retention=3)

    def test_load_fills_the_window_and_the_days_after_it(self, store: Store) -> None:
        """load() puts the keys of the window's days (and later days) into memory, not
        those of days before the window."""
        store.accept([pend(1, DAY - 3), pend(2, DAY - 2), pend(3, DAY), pend(4, DAY + 1)], 1.0)
        m = self.memory()
        store.load(m)
        assert m.contains(DAY - 2, key(2))
        assert m.contains(DAY, key(3))
        assert m.contains(DAY + 1, key(4))
        assert not m.contains(DAY - 3, key(1))
        assert len(m) == 3

    def test_accept_puts_every_answered_key_into_memory(self, store: Store) -> None:
        """After accept, the keys of the batch are in memory, new ones and known ones."""
        store.accept([pend(1)], 1.0)
        m = self.memory()
        assert store.accept([pend(1), pend(2)], 2.0, m) == [False, True]
        assert m.contains(DAY, key(1))
        assert m.contains(DAY, key(2))

    def test_two_memories_on_one_store_agree(self, store_target: dict[str, Any]) -> None:
        """Two processes (stores with their own memory) give one True per key between
        them, whatever each one's memory held when it started."""
        a = open_store(store_target["target"], **store_target["store_options"])
        b = open_store(store_target["target"], **store_target["store_options"])
        try:
            ma, mb = self.memory(), self.memory()
            a.load(ma)
            b.load(mb)
            assert a.accept([pend(1), pend(2)], 1.0, ma) == [True, True]
            assert b.accept([pend(2), pend(3)], 2.0, mb) == [False, True]
            assert a.accept([pend(3), pend(4)], 3.0, ma) == [False, True]
            assert b.accept([pend(1), pend(4), pend(5)], 4.0, mb) == [False, False, True]
            assert a.counts().pending == 5
        finally:
            a.close()
            b.close()

    def test_late_days_are_answered_from_the_store(self, store: Store) -> None:
        """A day before memory's window is decided by what the store holds."""
        store.accept([pend(1, DAY - 7)], 1.0)
        m = self.memory()
        store.load(m)
        assert store.accept([pend(1, DAY - 7), pend(2, DAY - 7)], 2.0, m) == [False, True]

    def test_a_late_day_is_lent_to_memory(self, store: Store) -> None:
        """After deciding a late access, memory holds what the store holds of that day
        (keys from before, from others, and the new one): its repeats need no I/O."""
        store.accept([pend(1, DAY - 7)], 1.0)
        m = self.memory()
        store.load(m)
        assert store.accept([pend(2, DAY - 7)], 2.0, m) == [True]
        assert m.partition(DAY - 7) == {key(1), key(2)}
        assert m.late == [DAY - 7]

    def test_late_days_stay_exact_across_memories(self, store_target: dict[str, Any]
                                                  ) -> None:
        """Two processes replaying the same late day, each with the day lent to its
        memory (SQLite), still give one True per key between them."""
        a = open_store(store_target["target"], **store_target["store_options"])
        b = open_store(store_target["target"], **store_target["store_options"])
        late = DAY - 9
        try:
            ma, mb = self.memory(), self.memory()
            a.load(ma)
            b.load(mb)
            assert a.accept([pend(1, late)], 1.0, ma) == [True]
            assert b.accept([pend(2, late)], 1.0, mb) == [True]  # b reads the day: has 1
            assert a.accept([pend(2, late), pend(3, late)], 2.0, ma) == [False, True]
            assert b.accept([pend(3, late), pend(1, late)], 2.0, mb) == [False, False]
            for m in (ma, mb):  # memory holds of the day only what the store holds
                assert m.partition(late) == {key(1), key(2), key(3)}
        finally:
            a.close()
            b.close()


class TestPersistence:
    def test_reopen_keeps_everything(self, store_target: dict[str, Any]) -> None:
        """A closed and reopened store keeps its seen-set, outbox and dead letters."""
        s = open_store(store_target["target"], **store_target["store_options"])
        s.accept([pend(1), pend(2)], 1.0)
        e = s.claim(1, 60, 1.0)
        s.bury([(e[0].id, "E1", "no")], 2.0)
        s.close()
        s = open_store(store_target["target"], **store_target["store_options"])
        try:
            assert s.accept([pend(1), pend(2)], 3.0) == [False, False]
            c = s.counts()
            assert (c.pending, c.dead) == (1, 1)
        finally:
            s.close()


class TestOutbox:
    def test_claim_leases_oldest_first_and_counts_attempts(self, store: Store) -> None:
        """claim takes due entries oldest first and marks them in flight."""
        store.accept([pend(1), pend(2), pend(3)], 1.0)
        first = store.claim(2, 60, 5.0)
        assert [e.key for e in first] == [key(1), key(2)]
        assert all(e.attempts == 1 for e in first)
        c = store.counts()
        assert (c.pending, c.in_flight) == (1, 2)
        assert [e.key for e in store.claim(10, 60, 5.0)] == [key(3)]
        assert store.claim(10, 60, 5.0) == []

    def test_expired_lease_returns_to_the_pool(self, store: Store) -> None:
        """An entry whose worker died is claimable again once its lease expires."""
        store.accept([pend(1)], 1.0)
        assert len(store.claim(10, 60, 5.0)) == 1
        assert store.claim(10, 60, 30.0) == []
        again = store.claim(10, 60, 66.0)
        assert [e.attempts for e in again] == [2]

    def test_ack_removes(self, store: Store) -> None:
        """Acknowledged entries leave the outbox."""
        store.accept([pend(1), pend(2)], 1.0)
        claimed = store.claim(10, 60, 5.0)
        store.ack([claimed[0].id])
        c = store.counts()
        assert (c.pending, c.in_flight) == (0, 1)

    def test_retry_defers(self, store: Store) -> None:
        """A retried entry is due again only at its not_before time."""
        store.accept([pend(1)], 1.0)
        e = store.claim(10, 60, 5.0)
        store.retry([e[0].id], 100.0)
        assert store.counts().pending == 1
        assert store.next_due() == 100.0
        assert store.claim(10, 60, 99.0) == []
        assert len(store.claim(10, 60, 100.0)) == 1

    def test_bury_and_redrive(self, store: Store) -> None:
        """Dead letters keep code and text; redrive puts them back as pending."""
        store.accept([pend(1), pend(2)], 1.0)
        a, _ = store.claim(10, 60, 5.0)
        store.bury([(a.id, "E7", "refused")], 6.0)
        dead = store.dead_letters()
        assert [(d.key, d.code, d.text, d.payload) for d in dead] == [
            (key(1), "E7", "refused", b"payload 1")]
        assert store.counts().dead == 1
        assert store.redrive([999_999], 7.0) == 0
        assert store.redrive(None, 7.0) == 1
        c = store.counts()
        assert (c.pending, c.in_flight, c.dead) == (1, 1, 0)
        assert [e.key for e in store.claim(10, 60, 8.0)] == [key(1)]

    def test_oldest_pending_and_next_due(self, store: Store) -> None:
        """counts() reports the oldest accept time; next_due the earliest due time."""
        assert store.next_due() is None
        assert store.counts().oldest_pending is None
        store.accept([pend(1)], 10.0)
        store.accept([pend(2)], 20.0)
        assert store.counts().oldest_pending == 10.0
        assert store.next_due() == 10.0

    def test_concurrent_claims_never_share_an_entry(self, store_target: dict[str, Any]) -> None:
        """Two workers claiming at once each get different entries, all of them in total."""
        s = open_store(store_target["target"], **store_target["store_options"])
        s.accept([pend(n) for n in range(200)], 1.0)
        got: list[list[int]] = [[], []]
        others = [open_store(store_target["target"], **store_target["store_options"])
                  for _ in range(2)]

        def work(i: int) -> None:
            while batch := others[i].claim(7, 60, 5.0):
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
        store.accept([pend(1, DAY - 5), pend(2, DAY)], 1.0)
        assert store.prune(DAY - 1) == 1
        assert store.seen(DAY - 5) == set()
        assert store.seen(DAY) == {key(2)}
        assert store.counts().pending == 2

    def test_late_access_after_prune_is_accepted(self, store: Store) -> None:
        """A late access for a pruned day is new again (delivered, never dropped)."""
        store.accept([pend(1, DAY - 5)], 1.0)
        store.prune(DAY)
        assert store.accept([pend(1, DAY - 5)], 2.0) == [True]


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
            return set(store._attached(conn))

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
            assert b.accept([pend(1, DAY - 5)], 1.0) == [True]
            assert a.prune(DAY) >= 1
            assert DAY - 5 not in self._days(b)
            assert b.accept([pend(2, DAY - 5)], 2.0) == [True]
            assert b.seen(DAY - 5) == {key(2)}
            assert b.counts().pending == 2
        finally:
            a.close()
            b.close()

    def test_concurrent_prunes_and_accepts_do_not_fail(self, pg_schema: str) -> None:
        """Several processes pruning while others accept: no errors, nothing lost."""
        stores = [self._open(pg_schema) for _ in range(4)]
        errors: list[BaseException] = []
        try:
            stores[0].accept([pend(n, DAY - 10 + n % 8) for n in range(80)], 1.0)

            def prune(s: Any) -> None:
                try:
                    s.prune(DAY - 4)
                except BaseException as e:  # collected and asserted below
                    errors.append(e)

            def accept(s: Any, base: int) -> None:
                try:
                    for n in range(base, base + 40):
                        s.accept([pend(n, DAY - n % 6)], 2.0)
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


class TestSQLiteSegments:
    """How the SQLite store packs its logs: key blocks and outbox segments."""

    def test_segments_are_capped_and_claims_split_them(self, tmp_path: Any) -> None:
        """A batch becomes segments of at most segment_size entries; a claim that needs
        only part of one splits it, and the rest stays claimable by others."""
        from minlog.store.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "seg.sqlite", segment_size=4)
        try:
            s.accept([pend(n) for n in range(10)], 1.0)
            rows = s._conn.execute("SELECT n FROM outbox ORDER BY id").fetchall()
            assert [r[0] for r in rows] == [4, 4, 2]
            first = s.claim(6, 60, 5.0)
            assert [e.key for e in first] == [key(n) for n in range(6)]
            assert s.counts().in_flight == 6
            second = s.claim(10, 60, 5.0)
            assert [e.key for e in second] == [key(n) for n in range(6, 10)]
            assert not {e.id for e in first} & {e.id for e in second}
            s.ack([e.id for e in first[:5]])
            assert (s.counts().pending, s.counts().in_flight) == (0, 5)
            s.retry([first[5].id], 50.0)
            again = s.claim(10, 60, 50.0)
            assert [e.key for e in again] == [key(5)]
            assert again[0].attempts == 2
        finally:
            s.close()

    def test_split_keeps_the_ids_of_a_lessee_whose_lease_ran_out(self, tmp_path: Any
                                                                 ) -> None:
        """A slow worker's lease runs out and another claim splits its segment: the slow
        worker's ack and bury still reach exactly the entries it was given, and nothing
        is lost (moved entries are delivered again at most)."""
        from minlog.store.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "split.sqlite", segment_size=4)
        try:
            s.accept([pend(n) for n in range(4)], 1.0)
            slow = s.claim(4, 10, 5.0)  # lease until 15
            other = s.claim(2, 60, 20.0)  # the lease ran out: a split
            assert [e.key for e in other] == [key(0), key(1)]
            s.ack([e.id for e in slow[:3]])
            s.bury([(slow[3].id, "refused", "bad entry")], 21.0)
            [dead] = s.dead_letters()
            assert (dead.key, dead.code) == (key(3), "refused")
            assert s.counts().in_flight == 2  # key(0) and key(1), with the other worker
            s.ack([e.id for e in other])
            assert (s.counts().pending, s.counts().in_flight, s.counts().dead) == (0, 0, 1)
        finally:
            s.close()

    def test_one_key_block_per_day_of_a_batch(self, tmp_path: Any) -> None:
        """The seen-set grows by one row per day of an accepted batch, not one per key."""
        from minlog.store.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "blocks.sqlite")
        try:
            s.accept([pend(n, DAY + n % 2) for n in range(1000)], 1.0)
            (rows,) = s._conn.execute("SELECT COUNT(*) FROM seen").fetchone()
            assert rows == 2
            assert s.seen(DAY) == {key(n) for n in range(0, 1000, 2)}
            assert s.prune(DAY + 1) == 500
        finally:
            s.close()
