"""The ledger and a store together, under random sequences of operations (Hypothesis
stateful test), on SQLite and on PostgreSQL.

Several `MinLog` instances ("processes": each with its own memory and its own connection)
share one store and one clock. They record one access or a batch, open and close, run the
day's upkeep (pruning), while the clock moves across days and the spring DST change;
accesses fall on today, the hot window, late days inside the dedup horizon and days
beyond it. After every step:

* within the horizon, each (employee, citizen, day) was answered True exactly once,
  whichever instance asked, and every True has its entry in the outbox exactly once;
* memory never says "duplicate" for a key the store does not hold (as memory is asked:
  after the ledger has moved to the clock's day);
* memory stays bounded (the hot window, a few late days, a day ahead).

White-box: the test reads each instance's ledger (``MinLog._ledger``) to check memory.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import POSTGRES_URL, require_postgres
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.core.keys import KeyMaker
from minlog.core.sealing import Keys

KEY = bytes(range(32))
MAKER = KeyMaker(Keys(KEY).dedup)
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
EMPLOYEES = [Employee(f"0101{70 + i:02d}1234", name=f"Medarbejder {i}") for i in range(3)]
CITIZENS = ["0303303456", "0404404567", "0505505678"]
START = dt.datetime(2026, 3, 27, 12, 0, tzinfo=COPENHAGEN)  # two days before spring DST
HOT, HORIZON, LATE = 2, 8, 2

Key = tuple[int, int, int]  # (employee, citizen, day ordinal)


def day_of(at: dt.datetime) -> int:
    return at.astimezone(COPENHAGEN).date().toordinal()


class Ledgers(RuleBasedStateMachine):
    """Instances on one SQLite file."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(START)
        self.target = self.make_target()
        self.logs: list[MinLog] = []
        #: True answers per key given while its day was inside the horizon
        self.trues: Counter[Key] = Counter()
        #: keys recorded while inside the horizon
        self.recorded: set[Key] = set()
        #: every True answer's dedup key (day, key bytes), in or beyond the horizon
        self.accepted: Counter[tuple[int, bytes]] = Counter()
        self.open_instance()

    def make_target(self) -> dict[str, Any]:
        self.dir = tempfile.TemporaryDirectory()
        return {"target": str(Path(self.dir.name) / "m.sqlite"), "store_options": {}}

    def drop_target(self) -> None:
        self.dir.cleanup()

    def outbox_keys(self) -> Counter[bytes]:
        store: Any = self.logs[0].store
        return Counter(bytes(r[0]) for r in store._conn.execute("SELECT key FROM outbox"))

    def teardown(self) -> None:
        for log in self.logs:
            log.close(timeout=0)
        self.drop_target()

    # ------------------------------------------------------------------ helpers

    def today(self) -> int:
        return day_of(dt.datetime.fromtimestamp(self.clock.time(), dt.UTC))

    def access(self, e: int, c: int, days_back: int, hour: int) -> Access | None:
        day = dt.date.fromordinal(self.today() - days_back)
        at = dt.datetime.combine(day, dt.time(hour, 30), COPENHAGEN)
        if at.timestamp() > self.clock.time():
            return None
        return Access(CITIZENS[c], EMPLOYEES[e], ORG, "Opslag", at)

    def answered(self, accesses: list[Access], answers: list[bool], e_c: list[tuple[int, int]]
                 ) -> None:
        horizon_start = self.today() - HORIZON + 1
        for a, new, (e, c) in zip(accesses, answers, e_c, strict=True):
            day = day_of(a.at)
            key: Key = (e, c, day)
            if new:
                self.accepted[(day, MAKER.key(a, day))] += 1
            if day >= horizon_start:
                self.recorded.add(key)
                self.trues[key] += new

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.logs) < 3)
    @rule()
    def open_instance(self) -> None:
        self.logs.append(MinLog.open(
            self.target["target"], transport=MemoryTransport(), system_name="Cura", key=KEY,
            store_options=self.target["store_options"], clock=self.clock,
            start_worker=False, hot_days=HOT, horizon_days=HORIZON, late_days=LATE))

    @precondition(lambda self: len(self.logs) > 1)
    @rule(which=st.integers(0, 2))
    def close_instance(self, which: int) -> None:
        self.logs.pop(which % len(self.logs)).close(timeout=0)

    @rule(which=st.integers(0, 2), e=st.integers(0, 2), c=st.integers(0, 2),
          days_back=st.integers(0, HORIZON + 3), hour=st.integers(0, 23))
    def record(self, which: int, e: int, c: int, days_back: int, hour: int) -> None:
        a = self.access(e, c, days_back, hour)
        if a is not None:
            log = self.logs[which % len(self.logs)]
            self.answered([a], [log.record(a)], [(e, c)])

    @rule(which=st.integers(0, 2), items=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, HORIZON + 3),
                  st.integers(0, 23)), min_size=1, max_size=8))
    def record_many(self, which: int, items: list[tuple[int, int, int, int]]) -> None:
        found = [(self.access(*item), item[:2]) for item in items]
        batch = [(a, ec) for a, ec in found if a is not None]
        if batch:
            log = self.logs[which % len(self.logs)]
            answers = log.record_many([a for a, _ in batch])
            self.answered([a for a, _ in batch], answers, [ec for _, ec in batch])

    @rule(hours=st.sampled_from([1, 5, 11, 24, 47]))
    def advance(self, hours: int) -> None:
        self.clock.advance(hours * 3600)

    @rule(which=st.integers(0, 2))
    def maintain(self, which: int) -> None:
        self.logs[which % len(self.logs)].maintain()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def exactly_once_within_the_horizon(self) -> None:
        for key in self.recorded:
            assert self.trues[key] == 1, f"{key}: {self.trues[key]} True answers"

    @invariant()
    def every_true_is_in_the_outbox_once(self) -> None:
        assert self.outbox_keys() == Counter({k: n for (_, k), n in self.accepted.items()})

    @invariant()
    def memory_holds_only_durable_keys_and_stays_bounded(self) -> None:
        store = self.logs[0].store
        for log in self.logs:
            ledger = log._ledger
            # Memory is only ever asked through a scan, which first moves the ledger to
            # the clock's day (letting go of days that left the horizon meanwhile).
            ledger.advance(self.clock.time())
            held = ledger.held_days()
            assert len(held) <= HOT + LATE + 1
            for day in held:
                mine = ledger.held(day)
                if mine:
                    assert mine <= store.keys_of(day), "memory knows a key the store lacks"


class PostgresLedgers(Ledgers):
    """Instances on one PostgreSQL schema (a fresh one per example)."""

    def make_target(self) -> dict[str, Any]:
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        return {"target": POSTGRES_URL, "store_options": {"schema": self.schema}}

    def drop_target(self) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def outbox_keys(self) -> Counter[bytes]:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            rows = conn.execute(f'SELECT key FROM "{self.schema}".outbox').fetchall()
        return Counter(bytes(r[0]) for r in rows)


TestLedgers = Ledgers.TestCase
TestLedgers.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class TestPostgresLedgers(PostgresLedgers.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=15, stateful_step_count=30, deadline=None)

    def setUp(self) -> None:
        require_postgres()
