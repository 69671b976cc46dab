"""The `MinLog` facade: first-of-day dedup, durability, delivery, fork and exit safety."""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import UNDER_FAKETIME
from hypothesis import given, settings
from hypothesis import strategies as st

import minlog
from minlog import Access, Employee, MemoryTransport, MinLog, Organisation, ValidationError
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN, copenhagen_day

KEY = bytes(range(32))
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
ANNE = Employee("0101701234", name="Anne Jensen", role="SOSU-assistent")
LARS = Employee("0202802345", name="Lars Hansen")
CITIZENS = ["0303303456", "0404404567", "0505505678", "1212121212"]
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)


def access(citizen: str = CITIZENS[0], employee: Employee = ANNE, at: dt.datetime = NOW,
           activity: str = "Opslag i Fælles Stamkort") -> Access:
    return Access(citizen, employee, ORG, activity, at)


def open_log(path: Path, transport: MemoryTransport | None = None, *, now: dt.datetime = NOW,
             **options: object) -> MinLog:
    options.setdefault("start_worker", False)
    options.setdefault("clock", FixedClock(now.timestamp() + 1))
    return MinLog.open(path, transport=transport or MemoryTransport(), system_name="Cura",
                       key=KEY, **options)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "minlog.sqlite"


def outbox_rows(db: Path) -> int:
    """Outbox entries not yet settled, read straight from the file."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        return int(c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class TestRecord:
    def test_first_of_day_is_true_and_duplicates_false(self, db: Path) -> None:
        """The first access of (employee, citizen, day) is accepted; repeats are not."""
        with open_log(db) as log:
            assert log.record(access()) is True
            assert log.record(access(at=NOW - dt.timedelta(hours=3))) is False
            assert log.record(access(employee=LARS)) is True
            assert log.record(access(citizen=CITIZENS[1])) is True

    def test_next_copenhagen_day_is_a_new_log(self, db: Path) -> None:
        """Midnight in Copenhagen, not in UTC, starts a new day."""
        late_evening = dt.datetime(2026, 11, 24, 23, 59, tzinfo=COPENHAGEN)
        after_midnight_utc = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC)  # 00:30 CPH
        with open_log(db, now=after_midnight_utc) as log:
            assert log.record(access(at=late_evening)) is True
            assert log.record(access(at=after_midnight_utc)) is True
            assert log.record(access(at=after_midnight_utc.astimezone(COPENHAGEN))) is False

    def test_record_is_durable_when_it_returns(self, db: Path) -> None:
        """The outbox entry is committed before record returns."""
        log = open_log(db)
        assert log.record(access())
        assert outbox_rows(db) == 1
        log.close(timeout=0)

    def test_record_many_answers_in_order(self, db: Path) -> None:
        """record_many returns one answer per access, in order, in-batch repeats False."""
        batch = [access(), access(citizen=CITIZENS[1]), access(), access(employee=LARS)]
        with open_log(db) as log:
            assert log.record_many(batch) == [True, True, False, True]
            assert log.record_many(batch) == [False, False, False, False]

    def test_hyphenated_cpr_is_the_same_citizen(self, db: Path) -> None:
        """A CPR number with or without its hyphen names the same citizen."""
        with open_log(db) as log:
            assert log.record(access(citizen="030330-3456"))
            assert not log.record(access(citizen="0303303456"))

    def test_utc_and_copenhagen_times_agree(self, db: Path) -> None:
        """The same instant given in UTC or Copenhagen time is the same day."""
        with open_log(db) as log:
            assert log.record(access(at=NOW.astimezone(dt.UTC)))
            assert not log.record(access(at=NOW))
            plus5 = NOW.astimezone(dt.timezone(dt.timedelta(hours=5)))
            assert not log.record_many([access(at=plus5)])[0]


class TestValidation:
    def test_future_access_is_refused(self, db: Path) -> None:
        """An access more than the allowed skew in the future is refused, nothing stored."""
        with open_log(db) as log:
            with pytest.raises(ValidationError) as e:
                log.record(access(at=NOW + dt.timedelta(minutes=10)))
            assert e.value.field == "access.at"
            assert log.record(access(at=NOW + dt.timedelta(minutes=4)))

    def test_bad_item_in_batch_stores_nothing(self, db: Path) -> None:
        """One bad access in record_many raises and stores none of the batch."""
        with open_log(db) as log:
            batch = [access(), access(at=NOW + dt.timedelta(days=1)), access(employee=LARS)]
            with pytest.raises(ValidationError):
                log.record_many(batch)
            assert outbox_rows(db) == 0
            assert log.record_many([access(), access(employee=LARS)]) == [True, True]

    def test_not_an_access_is_refused(self, db: Path) -> None:
        """Anything but an Access is a ValidationError, not a crash deep inside."""
        with open_log(db) as log, pytest.raises(ValidationError):
            log.record("0101701234")  # type: ignore[arg-type]

    def test_identity_too_long_for_the_wire_stores_nothing(self, db: Path) -> None:
        """A shown name MinLog2 cannot carry is refused naming the field; nothing stored."""
        with open_log(db, identity=lambda e, o: "X" * 60) as log:
            with pytest.raises(ValidationError) as e:
                log.record(access())
            assert e.value.field == "user_person_name"
            assert outbox_rows(db) == 0
            assert log.stats().first_of_day == 0

    def test_employee_without_name_under_full_name_is_refused(self, db: Path) -> None:
        """The default policy shows the name, so an employee must have one."""
        with open_log(db) as log, pytest.raises(ValidationError) as e:
            log.record(access(employee=Employee("0101701234")))
        assert e.value.field == "employee.name"

    def test_no_cpr_in_errors(self, db: Path) -> None:
        """Errors never carry the CPR digits."""
        with open_log(db) as log, pytest.raises(ValidationError) as e:
            log.record(access(at=NOW + dt.timedelta(hours=2)))
        assert CITIZENS[0] not in str(e.value)
        assert ANNE.id not in str(e.value)

    def test_bad_system_name_is_a_configuration_error(self, db: Path) -> None:
        """system_name longer than the schema's 25 characters is refused at open."""
        with pytest.raises(minlog.ConfigurationError):
            MinLog.open(db, transport=MemoryTransport(), system_name="S" * 26, key=KEY)


class TestDurability:
    def test_reopen_keeps_the_dedup_answer(self, db: Path) -> None:
        """Closing and reopening the store remembers what was seen today."""
        with open_log(db) as log:
            assert log.record(access())
        with open_log(db) as log:
            assert log.record(access()) is False
            assert log.record(access(employee=LARS)) is True

    def test_undelivered_entries_survive_close(self, db: Path) -> None:
        """What could not be delivered stays in the outbox and is sent after reopening."""
        down = MemoryTransport()
        down.fail_next(minlog.TransientDeliveryError("receiver down"), times=1000)
        log = open_log(db, down)
        log.record_many([access(c) for c in CITIZENS])
        assert log.flush(timeout=0.2) is False
        assert log.close(timeout=0.1) is False
        up = MemoryTransport()
        later = FixedClock(NOW.timestamp() + 3600)
        with open_log(db, up, clock=later) as log:
            assert log.flush(timeout=10)
        assert sorted(r.person_identifier for r in up.delivered) == sorted(CITIZENS)

    def test_kill_9_after_record_loses_nothing(self, db: Path) -> None:
        """A process killed right after record returned True leaves its entry committed."""
        script = textwrap.dedent(f"""
            import datetime as dt, os, sys
            from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
            log = MinLog.open({str(db)!r}, transport=MemoryTransport(), system_name="Cura",
                              key=bytes(range(32)), start_worker=False)
            now = dt.datetime.now(dt.UTC)
            org = Organisation("380000000000001")
            for i in range(200):
                e = Employee(f"01017{{i:05d}}", name=f"N {{i}}")
                assert log.record(Access("0303303456", e, org, "Opslag", now))
            print("recorded", flush=True)
            sys.stdin.read()
        """)
        with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "recorded"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert outbox_rows(db) == 200


class TestDelivery:
    def test_flush_delivers_exactly_one_registration_per_key(self, db: Path) -> None:
        """Each first-of-day access is delivered once, with the wire fields filled."""
        t = MemoryTransport()
        with open_log(db, t) as log:
            log.record_many([access(), access(), access(employee=LARS)])
            assert log.flush(timeout=10)
        assert len(t.delivered) == 2
        r = next(r for r in t.delivered if r.user_person_identifier == ANNE.id)
        assert r.system_name == "Cura"
        assert r.user_person_name == "Anne Jensen"
        assert r.user_role == "SOSU-assistent"
        assert r.organisation_id == ORG.id
        assert r.organisation_id_source == "SOR"
        assert r.person_identifier == CITIZENS[0]
        assert r.date_time == NOW
        assert r.sequence_number is not None
        assert len(r.sequence_number) == 32

    def test_background_worker_delivers(self, db: Path) -> None:
        """With the worker on, flush waits for the background thread's delivery."""
        t = MemoryTransport()
        with open_log(db, t, start_worker=True, poll=0.05) as log:
            log.record_many([access(c) for c in CITIZENS])
            assert log.flush(timeout=10)
        assert len(t.delivered) == len(CITIZENS)

    def test_rejected_entry_is_a_dead_letter_and_can_be_redriven(self, db: Path) -> None:
        """A per-entry fault dead-letters that entry with its code; redrive sends it again."""
        t = MemoryTransport(reject=lambda r: "E42" if r.person_identifier == CITIZENS[1] else None)
        with open_log(db, t) as log:
            log.record_many([access(c) for c in CITIZENS])
            assert log.flush(timeout=10) is False
            dead = log.dead_letters()
            assert [(d.code, d.registration.person_identifier if d.registration else None)
                    for d in dead] == [("E42", CITIZENS[1])]
            assert log.stats().dead == 1
            t.reject = None
            assert log.redrive() == 1
            assert log.flush(timeout=10)
        assert sorted(r.person_identifier for r in t.delivered) == sorted(CITIZENS)

    def test_close_honours_its_timeout_when_the_receiver_is_down(self, db: Path) -> None:
        """close(timeout) returns in about that time even though nothing can be sent."""
        t = MemoryTransport()
        t.fail_next(minlog.TransientDeliveryError("down"), times=10_000)
        log = open_log(db, t, start_worker=True, poll=0.01)
        log.record(access())
        started = time.monotonic()
        assert log.close(timeout=0.5) is False
        assert time.monotonic() - started < 2.0
        assert outbox_rows(db) == 1

    def test_stats_count_what_happened(self, db: Path) -> None:
        """stats() counts recorded, first-of-day and duplicate events and the outbox."""
        with open_log(db) as log:
            log.record_many([access(), access(), access(employee=LARS)])
            log.record(access())
            s = log.stats()
            assert (s.recorded, s.first_of_day, s.duplicates) == (4, 2, 2)
            assert (s.pending, s.in_flight, s.dead) == (2, 0, 0)
            assert s.hot_keys == 2


class TestDays:
    def test_late_access_is_still_delivered(self, db: Path) -> None:
        """An access older than the hot window is kept, counted late, and deduplicated
        (its repeats answered by the store, then by memory, which learned its key)."""
        old = NOW - dt.timedelta(days=10)
        t = MemoryTransport()
        with open_log(db, t) as log:
            assert log.record(access(at=old)) is True
            assert log.record(access(at=old + dt.timedelta(hours=1))) is False
            assert log.stats().late == 1  # a late first-of-day log
            assert log.record(access(at=old + dt.timedelta(hours=2))) is False
            assert log.stats().late == 1
            assert log.flush(timeout=10)
        assert [r.date_time for r in t.delivered] == [old]

    def test_window_moves_with_the_clock(self, db: Path) -> None:
        """Crossing midnight drops old days from memory; yesterday's answer still holds."""
        clock = FixedClock(NOW)
        log = MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                          clock=clock, start_worker=False)
        assert log.record(access())
        clock.advance(5 * 86400)
        later = NOW + dt.timedelta(days=5)
        assert log.record(access(at=later)) is True
        assert log.record(access()) is False  # the store still knows day one
        log.close(timeout=0)


@st.composite
def day_workloads(draw: st.DrawFn) -> list[Access]:
    """Accesses spread over a DST change day and its neighbours, in time order."""
    day = draw(st.sampled_from([dt.date(2026, 3, 29), dt.date(2026, 10, 25), dt.date(2026, 7, 1)]))
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(22, 0), COPENHAGEN)
    offsets = draw(st.lists(st.integers(0, 3 * 86400), min_size=1, max_size=40))
    pairs = draw(st.lists(st.tuples(st.sampled_from([ANNE, LARS]), st.sampled_from(CITIZENS)),
                          min_size=len(offsets), max_size=len(offsets)))
    out = []
    for off, (emp, cit) in sorted(zip(offsets, pairs, strict=True), key=lambda x: x[0]):
        at = (start.astimezone(dt.UTC) + dt.timedelta(seconds=off)).astimezone(COPENHAGEN)
        out.append(access(cit, emp, at))
    return out


def expected_firsts(accesses: list[Access]) -> dict[tuple[str, str, int], dt.datetime]:
    first: dict[tuple[str, str, int], dt.datetime] = {}
    for a in accesses:
        k = (a.employee.id, a.citizen, copenhagen_day(a.at))
        first[k] = min(first.get(k, a.at), a.at).astimezone(dt.UTC)
    return first


class TestProperties:
    @settings(max_examples=40, deadline=None)
    @given(day_workloads())
    def test_exactly_one_registration_per_key_across_dst_days(
        self, tmp_path_factory: pytest.TempPathFactory, accesses: list[Access]
    ) -> None:
        """One registration per (employee, citizen, Copenhagen day), carrying the earliest
        time when accesses arrive in time order; recording twice equals recording once."""
        db = tmp_path_factory.mktemp("p") / "m.sqlite"
        t = MemoryTransport()
        end = max(a.at for a in accesses)
        with open_log(db, t, now=end) as log:
            log.record_many(accesses)
            assert not any(log.record_many(accesses))
            assert log.flush(timeout=10)
        got = {(r.user_person_identifier, r.person_identifier, copenhagen_day(r.date_time)):
               r.date_time for r in t.delivered}
        assert len(got) == len(t.delivered)
        assert got == expected_firsts(accesses)

    @settings(max_examples=30, deadline=None)
    @given(day_workloads(), st.randoms(use_true_random=False))
    def test_order_does_not_matter_for_which_keys_are_logged(
        self, tmp_path_factory: pytest.TempPathFactory, accesses: list[Access], rnd: object
    ) -> None:
        """Shuffling the accesses changes no (employee, citizen, day) that gets logged."""
        shuffled = list(accesses)
        rnd.shuffle(shuffled)  # type: ignore[attr-defined]
        keys = []
        for batch in (accesses, shuffled):
            db = tmp_path_factory.mktemp("o") / "m.sqlite"
            t = MemoryTransport()
            with open_log(db, t, now=max(a.at for a in accesses)) as log:
                for a in batch:
                    log.record(a)
                assert log.flush(timeout=10)
            keys.append(sorted((r.user_person_identifier, r.person_identifier,
                                copenhagen_day(r.date_time)) for r in t.delivered))
        assert keys[0] == keys[1]


def _record_in_process(db: str, seed: int, queue: multiprocessing.Queue[int]) -> None:
    log = MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                      start_worker=False)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    emps = [Employee(f"0101{70 + i:02d}1234", name=f"E {i}") for i in range(10)]
    accepted = 0
    for round_ in range(3):
        for i in range(10):
            for j, c in enumerate(CITIZENS):
                e = emps[(i + seed + round_) % 10]
                accepted += log.record(Access(c, e, ORG, "Opslag", now))
                if j == 0:
                    accepted += sum(log.record_many([Access(c, e, ORG, "Opslag", now)] * 3))
    log.close(timeout=0)
    queue.put(accepted)


def _record_shuffled(db: str, seed: int, start: Any, queue: multiprocessing.Queue[int]) -> None:
    """Record every (employee, citizen) pair of three days (one late), in an order and
    in batch sizes of this process's own, starting together with the others."""
    import random

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    emps = [Employee(f"0101{50 + i:02d}1234", name=f"E {i}") for i in range(40)]
    citizens = [f"{d:02d}0{m}{40 + d:02d}4321" for d in range(1, 26) for m in (1, 2, 3)]
    events = [Access(c, e, ORG, "Opslag", at) for e in emps for c in citizens
              for at in (now, now - dt.timedelta(days=1), now - dt.timedelta(days=6))]
    rng.shuffle(events)
    events += events[: len(events) // 3]  # repeats, some within one call
    log = MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                      start_worker=False)
    start.wait(120)  # a barrier: every process is open before any records
    accepted, i = 0, 0
    while i < len(events):
        size = rng.choice((1, 1, 7, 50, 333))
        if size == 1:
            accepted += log.record(events[i])
        else:
            accepted += sum(log.record_many(events[i : i + size]))
        i += size
    log.close(timeout=0)
    queue.put(accepted)


def _in_processes(target: Any, args: list[tuple[Any, ...]]) -> list[int]:
    """Run ``target(*a, queue)`` in a spawned process per ``a``; the ints they put."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args]
    for p in procs:
        p.start()
    totals = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return totals


def _delivered_once(db: Path) -> int:
    """Deliver what the file holds; assert no entry twice; how many were delivered."""
    t = MemoryTransport()
    with MinLog.open(db, transport=t, system_name="Cura", key=KEY, start_worker=False) as log:
        assert log.flush(timeout=60)
    assert len({r.sequence_number for r in t.delivered}) == len(t.delivered)
    return len(t.delivered)


class TestConcurrency:
    def test_threads_share_one_instance(self, db: Path) -> None:
        """Many threads recording overlapping accesses get exactly one True per key."""
        trues: list[int] = []
        emps = [Employee(f"0101{70 + i:02d}1234", name=f"E {i}") for i in range(20)]
        with open_log(db) as log:
            def work(seed: int) -> None:
                n = 0
                for k in range(200):
                    n += log.record(access(CITIZENS[(k + seed) % 4], emps[k % 20]))
                trues.append(n)
            threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert sum(trues) == 80
            assert outbox_rows(db) == 80

    def test_concurrent_first_of_day_calls_share_transactions(self, db: Path) -> None:
        """While one first-of-day commit runs, other threads' first-of-day logs wait and
        go into the next transaction together (group commit); every answer is right."""
        from minlog.store.sqlite import SQLiteStore

        class SlowStore(SQLiteStore):
            def append(self, entries: Any, now: float) -> list[bool]:
                time.sleep(0.02)  # a slow disk: callers pile up meanwhile
                return super().append(entries, now)

        emps = [Employee(f"0101{70 + i:02d}1234", name=f"E {i}") for i in range(16)]
        transport = MemoryTransport()
        log = MinLog(SlowStore(db), transport, system_name="Cura", master_key=KEY,
                     start_worker=False, clock=FixedClock(NOW.timestamp() + 1))
        with log:
            answers: list[bool] = []

            def work(e: Employee) -> None:
                answers.extend(log.record(access(c, e)) for c in CITIZENS)

            threads = [threading.Thread(target=work, args=(e,)) for e in emps]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert answers.count(True) == len(answers) == 64
            assert log._committer.transactions < 64 / 2
            assert outbox_rows(db) == 64
        assert len(transport.delivered) == 64

    def test_close_waits_for_a_transaction_in_progress(self, db: Path) -> None:
        """close() does not close the store under a record() that is committing: it
        waits, the call returns True, and close's final flush delivers that log too."""
        from minlog.store.sqlite import SQLiteStore

        entered, release = threading.Event(), threading.Event()

        class HeldStore(SQLiteStore):
            def append(self, entries: Any, now: float) -> list[bool]:
                entered.set()
                assert release.wait(10)
                return super().append(entries, now)

        transport = MemoryTransport()
        log = MinLog(HeldStore(db), transport, system_name="Cura", master_key=KEY,
                     start_worker=False, clock=FixedClock(NOW.timestamp() + 1))
        got: list[bool] = []
        recorder = threading.Thread(target=lambda: got.append(log.record(access())))
        recorder.start()
        assert entered.wait(10)
        closer = threading.Thread(target=log.close, kwargs={"timeout": 10})
        closer.start()
        closer.join(0.2)
        assert closer.is_alive()  # waiting for the commit
        release.set()
        recorder.join(10)
        closer.join(10)
        assert got == [True]
        assert not closer.is_alive()
        assert len(transport.delivered) == 1  # and close's flush delivered it

    def test_processes_share_one_file(self, db: Path) -> None:
        """Several processes on one SQLite file accept each key exactly once in total."""
        totals = _in_processes(_record_in_process, [(str(db), s) for s in range(4)])
        assert sum(totals) == 10 * len(CITIZENS)
        assert _delivered_once(db) == 10 * len(CITIZENS)


    def test_processes_with_their_own_memories_agree(self, db: Path) -> None:
        """Four processes recording the same 9,000 keys in their own orders and batch
        sizes, all at once, accept each key exactly once between them; the outbox holds
        each key once."""
        start = multiprocessing.get_context("spawn").Barrier(4)
        totals = _in_processes(_record_shuffled, [(str(db), s, start) for s in range(4)])
        keys = 40 * 75 * 3  # today, yesterday, and a late day (before the window)
        assert sum(totals) == keys
        assert sum(1 for t in totals if 0 < t < keys) >= 2  # they really interleaved
        assert outbox_rows(db) == keys
        assert _delivered_once(db) == keys


class TestForkAndExit:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    @pytest.mark.skipif(UNDER_FAKETIME, reason="libfaketime is not fork-safe with threads "
                        "(see tests/test_fork.py)")
    def test_forked_child_gets_its_own_connection(self, db: Path) -> None:
        """A child forked after open records and flushes on fresh connections, and keeps
        the parent's connection without closing it."""
        t = MemoryTransport()
        log = open_log(db, t, start_worker=True, poll=0.05)
        log.record(access())
        inherited = log.store._conn  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                from minlog import forking

                # The parent's connection is kept, untouched (never closed from here).
                kept = any(o is inherited for o in forking._abandoned)
                ok = kept and log.store._conn is not inherited  # type: ignore[attr-defined]
                ok = ok and log.record(access(employee=LARS)) and not log.record(access())
                code = 0 if ok and log.flush(timeout=10) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert log.record(access(employee=LARS)) is False  # the child's entry is committed
        assert log.flush(timeout=10)
        log.close(timeout=1)

    def test_exit_without_close_is_bounded(self, db: Path) -> None:
        """A process that never closes its MinLog exits promptly, keeping what is queued."""
        script = textwrap.dedent(f"""
            import datetime as dt
            from minlog import (Access, Employee, MemoryTransport, MinLog, Organisation,
                                TransientDeliveryError)
            t = MemoryTransport()
            t.fail_next(TransientDeliveryError("down"), times=10**6)
            log = MinLog.open({str(db)!r}, transport=t, system_name="Cura",
                              key=bytes(range(32)), exit_timeout=0.5, poll=0.01)
            log.record(Access("0303303456", Employee("0101701234", name="A"),
                              Organisation("380000000000001"), "Opslag",
                              dt.datetime.now(dt.UTC)))
        """)
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
        assert time.monotonic() - started < 15
        assert outbox_rows(db) == 1


class TestRegistrationPayload:
    @settings(max_examples=60, deadline=None)
    @given(
        reason=st.none() | st.text(min_size=1, max_size=50).filter(lambda s: s.strip()),
        name=st.sampled_from(["Åse Ørsted", "Ib", "Jens-Peter von Holstein"]),
        on_behalf=st.booleans(),
        filters=st.lists(st.sampled_from(["Ikke borger", "Ikke forældremyndigheds-indehaver"]),
                         max_size=2),
    )
    def test_sealed_payload_equals_the_validated_registration(
        self, tmp_path_factory: pytest.TempPathFactory, reason: str | None, name: str,
        on_behalf: bool, filters: list[str],
    ) -> None:
        """What the outbox holds is exactly `registration_for(access)`, field for field."""
        from minlog.minlog2 import entry

        try:
            a = Access(CITIZENS[0], Employee("0101701234", name=name, role="Læge"), ORG,
                       "Opslag", NOW, reason=reason, filters=filters, citizen_name="Ib Olsen",
                       correlation_id="c-1",
                       on_behalf_of=minlog.OnBehalfOf("0202802345", name="Dr. Ib")
                       if on_behalf else None)
        except ValidationError:
            return  # text hypothesis made that the model refuses: not this test's concern
        db = tmp_path_factory.mktemp("r") / "m.sqlite"
        with open_log(db) as log:
            expected = log.registration_for(a, sequence_number="ab" * 16)
            got = entry.decode(entry.encode_access(
                a, system_name="Cura", sequence_number="ab" * 16, user_person_name=name,
                user_role="Læge"))
            assert got == expected
            assert minlog.Registration.from_dict(got.to_dict()) == got


class TestFilesAtRest:
    def test_store_and_key_files_are_private(self, db: Path) -> None:
        """The SQLite file, its WAL and shared-memory files and the key file are mode 0600."""
        import stat

        with MinLog.open(db, transport=MemoryTransport(), system_name="Cura",
                         start_worker=False, clock=FixedClock(NOW)) as log:
            log.record(access())
            for suffix in ("", "-wal", "-shm", ".key"):
                mode = stat.S_IMODE(Path(f"{db}{suffix}").stat().st_mode)
                assert mode == 0o600, (suffix, oct(mode))

    def test_outbox_holds_no_readable_cpr(self, db: Path) -> None:
        """Neither the seen-set nor the outbox nor the WAL holds a CPR number in clear."""
        with open_log(db) as log:
            log.record(access())
        raw = b"".join(Path(f"{db}{s}").read_bytes() for s in ("", "-wal")
                       if Path(f"{db}{s}").exists())
        for cpr in (CITIZENS[0], ANNE.id):
            assert cpr.encode() not in raw
        assert b"Anne Jensen" not in raw


class TestKeyConsistency:
    def test_every_path_computes_the_keymaker_key(self, db: Path) -> None:
        """record's fast path, record_many and KeyMaker agree on the stored dedup key."""
        from minlog.core.keys import KeyMaker
        from minlog.core.sealing import Keys

        utc = access(citizen=CITIZENS[1], at=NOW.astimezone(dt.UTC))
        with open_log(db) as log:
            assert log.record(access())
            assert log.record_many([utc]) == [True]
            assert log.record(access()) is False  # fast path, Copenhagen time
            assert log.record(utc) is False  # fast path, UTC
            with contextlib.closing(sqlite3.connect(db)) as c:
                stored = {bytes(b) for (b,) in c.execute("SELECT key FROM outbox")}
        maker = KeyMaker(Keys(KEY).dedup)
        day = copenhagen_day(NOW)
        assert stored == {maker.key(access(), day), maker.key(utc, day)}
