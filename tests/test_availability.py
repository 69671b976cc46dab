"""Delivery does not stall after faults (issue 11, item 5). Nothing is lost in any of
these; what is tested is that delivery goes on without waiting for a whole lease:

* a process killed in the middle of a send leaves its batch leased: the processes still
  running on the store take it back during their claims;
* a store error while a sent batch is being acknowledged or rescheduled: the settlement
  is tried again, and a fresh instance in the same process takes the batch back;
* a burst grows SQLite's WAL file: it shrinks again.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minlog import (
    Access,
    Employee,
    MemoryTransport,
    MinLog,
    Organisation,
    StoreError,
    TransientDeliveryError,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.delivery.policy import RetryPolicy
from minlog.store.sqlite import SQLiteStore

KEY = bytes(range(32))
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
ANNE = Employee("0101701234", name="Anne Jensen")
CITIZENS = ["0303303456", "0404404567", "0505505678"]


def accesses(at: dt.datetime) -> list[Access]:
    return [Access(c, ANNE, ORG, "Opslag", at) for c in CITIZENS]


def now_in_copenhagen() -> dt.datetime:
    return dt.datetime.now(COPENHAGEN)


class FlakyStore(SQLiteStore):
    """A SQLite store whose settlements fail while told to (``failing``: how many more
    calls of each named method fail; -1 for all)."""

    failing: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = {}

    def _fault(self, method: str) -> None:
        left = self.failing.get(method, 0)
        if left:
            self.failing[method] = left - 1 if left > 0 else left
            raise StoreError(f"SQLite store: disk I/O error ({method}, on demand)")

    def ack(self, lease: str, ids: Sequence[int]) -> None:
        self._fault("ack")
        super().ack(lease, ids)

    def retry(self, lease: str, ids: Sequence[int], not_before: float) -> None:
        self._fault("retry")
        super().retry(lease, ids, not_before)

    def bury(self, lease: str, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        self._fault("bury")
        super().bury(lease, failures, now)


def open_on(store: SQLiteStore, transport: MemoryTransport, **options: Any) -> MinLog:
    options.setdefault("start_worker", False)
    options.setdefault("exit_timeout", 0.0)
    options.setdefault("rate_limit", None)  # each round sends what is due, unlimited
    options.setdefault("fill_wait", 0.0)
    return MinLog(store, transport, system_name="Cura", master_key=KEY, **options)


class TestLeasesOfGoneProcesses:
    def test_a_batch_leased_by_a_killed_process_is_taken_back_during_claims(
            self, tmp_path: Path) -> None:
        """A process killed in the middle of a send leaves its batch leased for two
        minutes; an instance that was open before it died delivers the batch within
        seconds (its claims take back leases of owners that are gone)."""
        db = tmp_path / "minlog.sqlite"
        clock = FixedClock(time.time())
        t = MemoryTransport()
        log = MinLog.open(db, transport=t, system_name="Cura", key=KEY, clock=clock,
                          start_worker=False, exit_timeout=0.0)
        with log:
            assert log.record_many(accesses(now_in_copenhagen())) == [True] * 3
            sender = textwrap.dedent(f"""
                import os, signal
                from minlog.store.sqlite import SQLiteStore
                lease = SQLiteStore({str(db)!r}).claim(500, 120.0, {clock.time()!r})
                assert len(lease.entries) == 3
                os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the send
            """)
            done = subprocess.run([sys.executable, "-c", sender], timeout=60, check=False)
            assert done.returncode == -9
            assert log.stats().in_flight == 3
            clock.advance(10)  # ten seconds on: the lease has 110 s to run
            assert log.flush(timeout=10)
            assert len(t.delivered) == 3

    def test_the_leases_of_live_processes_are_left_alone(self, tmp_path: Path) -> None:
        """A batch leased by a process that still runs stays its own until the lease
        runs out."""
        db = tmp_path / "minlog.sqlite"
        clock = FixedClock(time.time())
        with MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                         clock=clock, start_worker=False, exit_timeout=0.0) as log:
            log.record_many(accesses(now_in_copenhagen()))
            holder = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(f"""
                    import sys
                    from minlog.store.sqlite import SQLiteStore
                    store = SQLiteStore({str(db)!r})
                    store.claim(500, 120.0, {clock.time()!r})
                    print("leased", flush=True)
                    sys.stdin.read()
                """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert holder.stdout is not None
                assert holder.stdout.readline().strip() == "leased"
                clock.advance(10)
                result = log.step()
                assert result.claimed == 0
                assert log.stats().in_flight == 3
            finally:
                holder.communicate("", timeout=30)


class TestSettlementFailures:
    def test_a_failed_acknowledgement_is_tried_again(self, tmp_path: Path) -> None:
        """When the store fails while a delivered batch is acknowledged, the
        acknowledgement is tried again: the batch is not left in flight, nor sent twice."""
        store = FlakyStore(tmp_path / "minlog.sqlite")
        store.failing["ack"] = 2
        t = MemoryTransport()
        with open_on(store, t, clock=FixedClock(time.time())) as log:
            log.record_many(accesses(now_in_copenhagen()))
            assert log.flush(timeout=10)
            assert "disk I/O error" in (log.stats().last_error or "")
        assert len(t.delivered) == 3
        assert t.batches == [3]

    def test_a_failed_reschedule_is_tried_again(self, tmp_path: Path) -> None:
        """When the receiver is down and the store fails while the batch is put back,
        the batch is put back later: it is sent again when the receiver is back."""
        store = FlakyStore(tmp_path / "minlog.sqlite")
        store.failing["retry"] = 1
        t = MemoryTransport()
        t.fail_next(TransientDeliveryError("receiver down"))
        clock = FixedClock(time.time())
        with open_on(store, t, clock=clock, retry=RetryPolicy(initial=1.0, maximum=1.0)) as log:
            log.record_many(accesses(now_in_copenhagen()))
            log.step()
            assert log.stats().in_flight == 3
            log.step()  # the reschedule is paid now: the batch is pending again
            assert log.stats().in_flight == 0
            clock.advance(5)
            assert log.flush(timeout=10)
        assert len(t.delivered) == 3

    def test_a_failed_burial_is_tried_again(self, tmp_path: Path) -> None:
        """An entry the receiver refused becomes a dead letter even when the store
        failed the first time it was buried."""
        store = FlakyStore(tmp_path / "minlog.sqlite")
        store.failing["bury"] = 1
        t = MemoryTransport(reject=lambda r: "E1" if r.person_identifier == CITIZENS[0]
                            else None)
        with open_on(store, t, clock=FixedClock(time.time())) as log:
            log.record_many(accesses(now_in_copenhagen()))
            assert not log.flush(timeout=10)
            s = log.stats()
            assert (s.pending, s.in_flight, s.dead) == (0, 0, 1)
        assert len(t.delivered) == 2

    def test_a_store_that_keeps_failing_does_not_block(self, tmp_path: Path) -> None:
        """When every acknowledgement fails, delivery rounds still return (flush keeps
        its timeout) and say why."""
        store = FlakyStore(tmp_path / "minlog.sqlite")
        store.failing["ack"] = -1
        t = MemoryTransport()
        with open_on(store, t, clock=FixedClock(time.time())) as log:
            log.record_many(accesses(now_in_copenhagen()))
            started = time.monotonic()
            assert not log.flush(timeout=1.0)
            assert time.monotonic() - started < 5
            assert "disk I/O error" in (log.stats().last_error or "")
        assert t.batches == [3]  # sent once: never again while its ack is owed

    def test_a_fresh_instance_in_the_same_process_takes_the_batch_back(
            self, tmp_path: Path) -> None:
        """When an instance is closed with an acknowledgement it could not write, a new
        instance in the same process delivers the batch at once (it may be sent a second
        time, with the same SequenceNumbers) instead of waiting for the lease."""
        db = tmp_path / "minlog.sqlite"
        store = FlakyStore(db)
        store.failing["ack"] = -1
        first = MemoryTransport()
        clock = FixedClock(time.time())
        with open_on(store, first, clock=clock) as log:
            log.record_many(accesses(now_in_copenhagen()))
            log.step()
            assert log.stats().in_flight == 3
        second = MemoryTransport()
        with open_on(SQLiteStore(db), second, clock=clock) as log:
            assert log.flush(timeout=10)
        assert len(second.delivered) == 3
        assert ({r.sequence_number for r in second.delivered}
                == {r.sequence_number for r in first.delivered})


class TestWal:
    def test_the_wal_file_shrinks_after_a_burst(self, tmp_path: Path) -> None:
        """A burst written while a reader held the WAL back grows the WAL file; delivery
        rounds (off the recording path) bring it back to (nearly) nothing."""
        import contextlib
        import sqlite3

        db = tmp_path / "minlog.sqlite"
        wal = Path(f"{db}-wal")
        clock = FixedClock(time.time())
        at = now_in_copenhagen()
        employees = [Employee(f"0101{(70 + i) % 100:02d}1234", name=f"E {i}") for i in range(40)]
        burst = [Access(f"010100{n:04d}", e, ORG, "Opslag", at)
                 for e in employees for n in range(1000)]
        with MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                         clock=clock, start_worker=False, exit_timeout=0.0) as log:
            with contextlib.closing(sqlite3.connect(db)) as reader:
                reader.execute("BEGIN")
                reader.execute("SELECT COUNT(*) FROM outbox").fetchone()  # holds the WAL
                log.record_many(burst)
                reader.execute("COMMIT")
            grown = wal.stat().st_size
            assert grown > 8 * 2**20
            log.step()
            clock.advance(120)
            log.step()
            assert wal.stat().st_size <= 4 * 2**20, (grown, wal.stat().st_size)
            log.record_many(burst[:10])  # the store goes on as before
            assert log.stats().pending > 0
        assert os.path.getsize(db) > 0


class TestPostgres:
    def test_the_leases_of_gone_processes_are_taken_back(self, pg_schema: str) -> None:
        """On PostgreSQL too, a batch leased by a killed process of this host is taken
        back during the claims of an instance that was open before."""
        from conftest import POSTGRES_URL

        clock = FixedClock(time.time())
        t = MemoryTransport()
        with MinLog.open(POSTGRES_URL, transport=t, system_name="Cura", key=KEY,
                         clock=clock, start_worker=False, exit_timeout=0.0,
                         store_options={"schema": pg_schema}) as log:
            log.record_many(accesses(now_in_copenhagen()))
            sender = textwrap.dedent(f"""
                import os, signal
                from minlog.store.postgres import PostgresStore
                s = PostgresStore({POSTGRES_URL!r}, schema={pg_schema!r})
                assert len(s.claim(500, 120.0, {clock.time()!r}).entries) == 3
                os.kill(os.getpid(), signal.SIGKILL)
            """)
            assert subprocess.run([sys.executable, "-c", sender], timeout=60,
                                  check=False).returncode == -9
            assert log.stats().in_flight == 3
            clock.advance(10)
            assert log.flush(timeout=10)
            assert len(t.delivered) == 3
