"""The outbox under random sequences of operations (Hypothesis stateful test), on the
SQLite store and on the PostgreSQL store.

Several workers append, claim (with leases that run out), ack, retry, bury and redrive
in any order, at any time. After every step: nothing accepted is lost (each key is
delivered, open in the outbox, or a dead letter), no key is open twice, the counts agree
with the store, no entry is handed to a second worker while another's lease on it runs,
and a worker whose lease ran out and was taken over settles nothing.
"""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import POSTGRES_URL, require_postgres
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from minlog.store import NewEntry, OutboxEntry, Store, open_store
from minlog.store.sqlite import SQLiteStore

DAY = 740_000
KEYS = 24


def key(n: int) -> bytes:
    return n.to_bytes(16, "big")


class Outbox(RuleBasedStateMachine):
    """The SQLite store."""

    store: Any

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make_store()
        self.now = 100.0
        self.accepted: set[bytes] = set()
        self.delivered: set[bytes] = set()
        #: claims not yet answered: (lease expiry, token, entries)
        self.held: list[tuple[float, str, tuple[OutboxEntry, ...]]] = []
        #: the token of each key's newest lease
        self.lessee: dict[bytes, str] = {}

    def make_store(self) -> Store:
        self.dir = tempfile.TemporaryDirectory()
        return SQLiteStore(Path(self.dir.name) / "o.sqlite")

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    def open_keys(self) -> Counter[bytes]:
        """The keys of the entries still open (pending or in flight), read directly."""
        rows = self.store._conn.execute("SELECT key FROM outbox").fetchall()
        return Counter(bytes(r[0]) for r in rows)

    # ------------------------------------------------------------------ steps

    @rule(ns=st.lists(st.integers(0, KEYS - 1), min_size=1, max_size=8))
    def append(self, ns: list[int]) -> None:
        entries = [NewEntry(DAY, key(n), f"p{n}".encode()) for n in ns]
        answers = self.store.append(entries, self.now)
        expected, fresh = [], set(self.accepted)
        for n in ns:
            expected.append(key(n) not in fresh)
            fresh.add(key(n))
        assert answers == expected
        self.accepted = fresh

    @rule(limit=st.integers(1, 7), lease=st.sampled_from([5.0, 30.0]))
    def claim(self, limit: int, lease: float) -> None:
        lease_ = self.store.claim(limit, lease, self.now)
        got = lease_.entries
        assert len(got) <= limit
        assert len({e.key for e in got}) == len(got)
        leased_elsewhere = {e.key for until, _, es in self.held if until > self.now for e in es}
        assert not leased_elsewhere & {e.key for e in got}, "an entry leased twice"
        for e in got:
            assert e.payload == b"p%d" % int.from_bytes(e.key, "big")
        if got:
            self.held.append((self.now + lease, lease_.token, got))
            self.lessee.update((e.key, lease_.token) for e in got)

    @precondition(lambda self: self.held)
    @rule(which=st.integers(0, 100), cut=st.integers(0, 7), data=st.data())
    def answer(self, which: int, cut: int, data: st.DataObject) -> None:
        """A worker's answer to one of its claims: some delivered, some refused for good,
        the rest to be retried (or all retried, as after a transport error)."""
        _, token, entries = self.held.pop(which % len(self.held))
        ok, refused = entries[:cut], entries[cut : cut + data.draw(st.integers(0, 2))]
        rest = entries[len(ok) + len(refused) :]
        stale = {e.key for e in entries if self.lessee.get(e.key) != token}
        before = self.where(stale)
        self.store.ack(token, [e.id for e in ok])
        self.delivered |= {e.key for e in ok if e.key not in stale}
        self.store.bury(token, [(e.id, "refused", "no") for e in refused], self.now)
        self.store.retry(token, [e.id for e in rest],
                         self.now + data.draw(st.sampled_from([0, 10])))
        for e in entries:
            if e.key not in stale:
                del self.lessee[e.key]
        assert self.where(stale) == before, "a stale lease settled an entry"

    def where(self, keys: set[bytes]) -> dict[bytes, tuple[bool, bool]]:
        """For each key: (open in the outbox, a dead letter)."""
        open_ = self.open_keys()
        dead = {bytes(d.key) for d in self.store.dead_letters(1000)}
        return {k: (k in open_, k in dead) for k in keys}

    @rule(seconds=st.sampled_from([1.0, 6.0, 40.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def redrive(self) -> None:
        dead = len(self.store.dead_letters(1000))
        assert self.store.redrive(None, self.now) == dead

    # ------------------------------------------------------------------ invariants

    @invariant()
    def nothing_lost_nothing_doubled(self) -> None:
        open_ = self.open_keys()
        dead = Counter(bytes(d.key) for d in self.store.dead_letters(1000))
        assert all(c == 1 for c in open_.values()), "a key open twice"
        assert all(c == 1 for c in dead.values()), "a key dead twice"
        assert not set(open_) & set(dead), "a key both open and dead"
        lost = self.accepted - self.delivered - set(open_) - set(dead)
        assert not lost, f"{len(lost)} accepted entries lost"
        counts = self.store.counts()
        assert counts.pending + counts.in_flight == sum(open_.values())
        assert counts.dead == sum(dead.values())


class PostgresOutbox(Outbox):
    """The PostgreSQL store, in a fresh schema per example."""

    def make_store(self) -> Store:
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        return open_store(POSTGRES_URL, schema=self.schema)

    def teardown(self) -> None:
        import psycopg

        self.store.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def open_keys(self) -> Counter[bytes]:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            rows = conn.execute(f'SELECT key FROM "{self.schema}".outbox').fetchall()
        return Counter(bytes(r[0]) for r in rows)


TestOutbox = Outbox.TestCase
TestOutbox.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


class TestPostgresOutbox(PostgresOutbox.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=25, stateful_step_count=30, deadline=None)

    def setUp(self) -> None:
        require_postgres()
