"""Scale-out: the facade's dedup on both stores, late days across instances, and a
PostgreSQL cluster with a worker killed. Every instance runs on a fixed clock."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from minlog import (
    Access,
    BatchResult,
    Employee,
    MemoryTransport,
    MinLog,
    Organisation,
    Registration,
    ValidationError,
)
from minlog.core.clock import FixedClock, ShiftedClock
from minlog.core.days import COPENHAGEN

KEY = bytes(range(32))
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
LATE = NOW - dt.timedelta(days=12)
EMPLOYEES = [Employee(f"0101{70 + i:02d}1234", name=f"Medarbejder {i}") for i in range(12)]
CITIZENS = [f"{d:02d}0{m}{50 + d:02d}4321" for d in range(1, 11) for m in (1, 2)]


def open_log(target: dict[str, Any], transport: Any, **options: Any) -> MinLog:
    options.setdefault("start_worker", False)
    options.setdefault("clock", FixedClock(NOW.timestamp() + 3600))
    options.setdefault("rate_limit", None)  # delivery as fast as the sink takes it
    options.setdefault("fill_wait", 0.0)
    return MinLog.open(target["target"], transport=transport, system_name="Cura", key=KEY,
                       store_options=target["store_options"], **options)


class TestFacadeOnBothStores:
    def test_first_of_day_then_duplicates(self, store_target: dict[str, Any]) -> None:
        """The dedup answer is the same on SQLite and PostgreSQL."""
        with open_log(store_target, MemoryTransport()) as log:
            a = Access(CITIZENS[0], EMPLOYEES[0], ORG, "Opslag", NOW)
            assert log.record(a) is True
            assert log.record(a) is False
            assert log.record_many([a, Access(CITIZENS[1], EMPLOYEES[0], ORG, "Opslag", NOW)]) \
                == [False, True]

    def test_two_instances_share_one_answer(self, store_target: dict[str, Any]) -> None:
        """Two MinLogs on one store (two hosts) log a key once between them."""
        t = MemoryTransport()
        with open_log(store_target, t) as one, open_log(store_target, t) as two:
            a = Access(CITIZENS[0], EMPLOYEES[0], ORG, "Opslag", NOW)
            assert one.record(a) is True
            assert two.record(a) is False  # not in two's memory: the store decides
            assert two.flush(timeout=10)
        assert len(t.delivered) == 1

    def test_reopen_keeps_the_answer_and_delivers(self, store_target: dict[str, Any]) -> None:
        """Close, reopen, record again: a duplicate; what was queued is delivered."""
        a = Access(CITIZENS[2], EMPLOYEES[1], ORG, "Opslag", NOW)
        with open_log(store_target, MemoryTransport()) as log:
            assert log.record(a)
            log.close(timeout=0)
        t = MemoryTransport()
        with open_log(store_target, t) as log:
            assert log.record(a) is False
            assert log.flush(timeout=10)
        assert [r.person_identifier for r in t.delivered] == [CITIZENS[2]]

    @pytest.mark.parametrize("days_back", [5, 20, 34])
    def test_a_late_access_stays_exact_when_another_instance_prunes(
            self, store_target: dict[str, Any], days_back: int) -> None:
        """An access days before the memory window, recorded; another instance opens and
        runs its upkeep (pruning); the same access recorded again, by either instance, is
        a duplicate, and it is delivered once."""
        late = NOW - dt.timedelta(days=days_back)
        a = Access(CITIZENS[3], EMPLOYEES[2], ORG, "Opslag", late)
        t = MemoryTransport()
        with open_log(store_target, t) as one:
            assert one.record(a) is True
            with open_log(store_target, t) as two:
                two.maintain()  # the upkeep: prepare and prune
                assert two.record(a) is False
            assert one.record(a) is False
            assert one.record(attrs_later(a)) is False
            assert one.flush(timeout=10)
        assert len(t.delivered) == 1

    def test_beyond_the_horizon_is_counted_never_silent(self,
                                                        store_target: dict[str, Any]) -> None:
        """An access older than the horizon is delivered and counted; refused on request."""
        old = Access(CITIZENS[4], EMPLOYEES[3], ORG, "Opslag", NOW - dt.timedelta(days=40))
        with open_log(store_target, MemoryTransport()) as log:
            assert log.record(old) is True
            assert log.stats().beyond_horizon == 1
        with open_log(store_target, MemoryTransport(), beyond_horizon="refuse") as log, \
                pytest.raises(ValidationError, match="dedup horizon"):
            log.record(old)


    def test_upkeep_prepares_the_days_ahead(self, pg_schema: str) -> None:
        """After its first delivery step, a MinLog on PostgreSQL has the partitions of
        today and the days ahead, so nobody waits for one at midnight."""
        from conftest import POSTGRES_URL

        from minlog.core.days import copenhagen_day
        from minlog.store import postgres_schema

        target = {"target": POSTGRES_URL, "store_options": {"schema": pg_schema}}
        with open_log(target, MemoryTransport()) as log:
            log.step()
            with log.store._pool.connection() as conn:  # type: ignore[attr-defined]
                days = set(postgres_schema.attached(conn, pg_schema))
        today = copenhagen_day(NOW)
        assert {today, today + 1, today + 2, today + 3} <= days


def attrs_later(a: Access) -> Access:
    """The same access an hour later (the same day)."""
    import attrs

    return attrs.evolve(a, at=a.at + dt.timedelta(hours=1))


class FileSink:
    """Appends each delivered registration's sequence number to a file (one per process).
    With ``hang_on`` set, the n-th batch is written, then the process hangs in the send:
    a worker killed mid-batch after the receiver got it."""

    def __init__(self, path: str, hang_on: int | None = None) -> None:
        self.path = path
        self.hang_on = hang_on
        self.batches = 0

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        self.batches += 1
        with open(self.path, "a", encoding="utf-8") as f:
            for r in registrations:
                f.write(json.dumps({"seq": r.sequence_number, "batch": self.batches}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.batches == self.hang_on:
            Path(self.path + ".hung").write_text("hung")
            time.sleep(600)
        return BatchResult()

    def close(self) -> None:
        pass


def _member(target: dict[str, Any], index: int, folder: str, deliver: str | None,
            hang_on: int | None, queue: Any) -> None:
    """``deliver``: "worker" (a background worker from the start), "after-hang" (delivers
    in the foreground once the other worker hangs mid-batch), or None (records only)."""
    sink = FileSink(os.path.join(folder, f"sent-{index}.jsonl"), hang_on)
    # Time must run here (leases run out), from a fixed date: a shifted clock.
    log = open_log(target, sink, start_worker=deliver == "worker", batch_size=25,
                   lease_seconds=3.0, poll=0.1, clock=ShiftedClock(NOW.timestamp() + 3600))
    accepted = 0
    order = list(range(len(EMPLOYEES) * len(CITIZENS)))
    order = order[index::2] + order[1 - index % 2 :: 2]  # overlapping, in another order
    for round_ in range(2):
        for n in order:
            e, c = EMPLOYEES[n % len(EMPLOYEES)], CITIZENS[n // len(EMPLOYEES)]
            at = NOW if n % 3 else LATE  # a third of the keys on a late day
            accepted += log.record(Access(c, e, ORG, "Opslag", at))
        if round_ == 0 and index == 2:  # a new instance opens and prunes mid-run
            other = open_log(target, MemoryTransport())
            other.maintain()
            other.close(timeout=0)  # no final flush: it must not deliver
    queue.put((index, accepted))
    if hang_on is not None:  # this one is killed in its send: it must not exit first
        time.sleep(600)
    if deliver == "after-hang":
        hung = Path(folder).glob("*.hung")
        deadline = time.monotonic() + 60
        while not any(hung) and time.monotonic() < deadline:
            time.sleep(0.05)
            hung = Path(folder).glob("*.hung")
        log.flush(timeout=120)
    # A member that only records must not deliver in its final flush either: it could
    # take every batch before the worker to be killed gets one.
    log.close(timeout=1 if deliver else 0)


class TestCluster:
    @pytest.mark.slow
    def test_four_processes_two_workers_one_killed(self, pg_schema: str, tmp_path: Path) -> None:
        """Four processes record overlapping work (a third of it on a late day) on one
        PostgreSQL store while two deliver and a fifth instance opens and prunes mid-run;
        one worker is killed mid-batch. Every key is delivered, exactly once except (at
        most) the killed worker's in-flight batch; the dedup is exact across processes."""
        from conftest import POSTGRES_URL

        target = {"target": POSTGRES_URL, "store_options": {"schema": pg_schema}}
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        # Member 1 delivers from the start and hangs in its first send (then is killed);
        # member 0 delivers too, from the moment member 1 hangs.
        roles = [("after-hang", None), ("worker", 1), (None, None), (None, None)]
        procs = [ctx.Process(target=_member, args=(target, i, str(tmp_path), d, h, queue))
                 for i, (d, h) in enumerate(roles)]
        for p in procs:
            p.start()
        totals = dict(queue.get(timeout=120) for _ in procs)
        deadline = time.monotonic() + 60
        hung = tmp_path / "sent-1.jsonl.hung"
        while not hung.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hung.exists(), "the killed worker never got a batch"
        assert procs[1].pid is not None
        os.kill(procs[1].pid, signal.SIGKILL)
        for p in procs:
            p.join(timeout=120)
        assert procs[1].exitcode == -signal.SIGKILL
        assert [p.exitcode for i, p in enumerate(procs) if i != 1] == [0, 0, 0]

        expected = len(EMPLOYEES) * len(CITIZENS)
        assert sum(totals.values()) == expected  # exact across processes
        sent: list[dict[str, Any]] = []
        for f in tmp_path.glob("sent-*.jsonl"):
            sent += [json.loads(line) | {"file": f.name} for line in f.read_text().splitlines()]
        seqs = [s["seq"] for s in sent]
        assert len(set(seqs)) == expected  # nothing lost
        in_flight = {s["seq"] for s in sent if s["file"] == "sent-1.jsonl" and s["batch"] == 1}
        repeated = {q for q in seqs if seqs.count(q) > 1}
        assert repeated <= in_flight  # only the killed worker's batch may come twice
        with open_log(target, MemoryTransport()) as log:
            s = log.stats()
            assert (s.pending, s.in_flight, s.dead) == (0, 0, 0)
