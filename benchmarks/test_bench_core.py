"""The goals of the recording path, measured (not asserted): see README.md.

Every benchmark builds fresh state in its setup (a new `MinLog`, or a new naive database)
and times only the recording. Inputs are `Access` objects built before timing, in
Copenhagen time unless a name says UTC. "arrival batches" feeds ``record_many`` 1,000
events per call, in time order, as an audit hook that buffers would; "one call" hands it
the whole list at once; "per event" calls ``record`` (or the naive function) once per event.
Each `MinLog`'s delivery worker delivers into a `MemoryTransport` meanwhile (no rate
limit), except in the "held back" half of the delivery-cost comparison and under
tracemalloc. The assertions after a run check the answers were right, never the speed.
"""

from __future__ import annotations

import datetime as dt
import gc
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from minlog import Access, MinLog
from minlog.bench.baselines import naive_open, naive_run
from minlog.core.days import COPENHAGEN

ARRIVAL_BATCH = 1_000  # keep in step with conftest.ARRIVAL_BATCH
NAIVE = "morning peak: naive baseline, one commit per event"  # conftest.NAIVE
PQUEUE = "morning peak: persist-queue + in-memory set, one put per new event"  # conftest
HELD_BACK = "morning peak: record_many, arrival batches, delivery held back"  # conftest


def batches(events: Sequence[Access], size: int = ARRIVAL_BATCH) -> list[list[Access]]:
    """``events`` cut into the lists an audit hook would hand over (built before timing)."""
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def feed_batches(log: MinLog, chunks: list[list[Access]]) -> None:
    record_many = log.record_many
    for chunk in chunks:
        record_many(chunk)


def feed_one_call(log: MinLog, events: list[Access]) -> None:
    log.record_many(events)


def feed_per_event(log: MinLog, events: list[Access]) -> None:
    record = log.record
    for access in events:
        record(access)


# --------------------------------------------------------------------------- duplicates


@pytest.mark.benchmark(group="duplicates")
class TestDuplicates:
    """Every event is a repeat of a key the store already holds: answered from memory."""

    @pytest.mark.parametrize(("tz", "feed"), [
        ("Copenhagen", "arrival batches"), ("Copenhagen", "one call"), ("UTC", "arrival batches"),
    ], ids=["cph-batch1000", "cph-one-call", "utc-batch1000"])
    def test_record_many(self, measure: Any, lab: Any, workload: Any, primed_store: Path,
                         tz: str, feed: str) -> None:
        """Goal: >= 1.5 M duplicates/s through ``record_many``."""
        events = workload.events if tz == "Copenhagen" else workload.events_utc
        if feed == "one call":
            target: Callable[..., None] = feed_one_call
            arg: Any = events
        else:
            target, arg = feed_batches, batches(events)
        measure(f"duplicates: record_many, {feed}, {tz} time", target,
                lambda: (lab.open(primed_store), arg), events=len(events), rounds=5,
                goal="duplicates/record_many", feed=feed, tz=tz)
        stats = lab.current.stats()
        assert (stats.duplicates, stats.first_of_day) == (len(events), 0)

    @pytest.mark.parametrize("tz", ["Copenhagen", "UTC"], ids=["cph", "utc"])
    def test_record(self, measure: Any, lab: Any, workload: Any, primed_store: Path,
                    tz: str) -> None:
        """Goal: >= 500 k duplicates/s through ``record``, one call per event."""
        events = workload.events if tz == "Copenhagen" else workload.events_utc
        measure(f"duplicates: record, per event, {tz} time", feed_per_event,
                lambda: (lab.open(primed_store), events), events=len(events), rounds=5,
                goal="duplicates/record", feed="per event", tz=tz)
        stats = lab.current.stats()
        assert (stats.duplicates, stats.first_of_day) == (len(events), 0)


# --------------------------------------------------------------------------- first of day


@pytest.mark.benchmark(group="first-of-day")
class TestFirstOfDay:
    """Every event is the first of its (employee, citizen, day): sealed and committed to
    the outbox (one transaction per call, at most 5,000 entries each) before the call
    returns. The events are the morning's first accesses, in time order."""

    @pytest.mark.parametrize("feed", ["arrival batches", "one call"],
                             ids=["batch1000", "one-call"])
    def test_record_many(self, measure: Any, lab: Any, workload: Any, feed: str) -> None:
        """Goal: >= 80 k first-of-day events/s through ``record_many``, durable."""
        events = workload.first_of_day
        if feed == "one call":
            target: Callable[..., None] = feed_one_call
            arg: Any = events
        else:
            target, arg = feed_batches, batches(events)
        measure(f"first-of-day: record_many, {feed}", target, lambda: (lab.open(), arg),
                events=len(events), rounds=5, goal="first_of_day/record_many", feed=feed,
                tz="Copenhagen")
        log = lab.current
        assert log.stats().first_of_day == len(events)
        assert log.flush(timeout=120)  # every log reaches the receiver
        assert log.stats().delivered == len(events)

    def test_record(self, measure: Any, lab: Any, workload: Any) -> None:
        """No goal: ``record`` per event, one commit each (for comparison)."""
        events = workload.first_of_day
        measure("first-of-day: record, per event (one commit each)", feed_per_event,
                lambda: (lab.open(), events), events=len(events), rounds=3,
                feed="per event", tz="Copenhagen")
        assert lab.current.stats().first_of_day == len(events)


# --------------------------------------------------------------------------- morning peak


class PersistQueueLogger:
    """What a vendor assembles from parts: a `persistqueue.SQLiteQueue` (the
    ``persist-queue`` package: WAL, one commit per ``put``) as the outbox and a Python
    set of ``(employee, citizen, day)`` in memory for the dedup. Same durability as the
    naive logger and minlog here (``synchronous=NORMAL`` on the queue's connection). The
    set is neither shared between processes nor rebuilt after a restart: its answers are
    only exact inside one process's life, which flatters it."""

    def __init__(self, folder: Path, synchronous: str = "NORMAL") -> None:
        import persistqueue

        self.queue = persistqueue.SQLiteQueue(str(folder), auto_commit=True)
        self.queue._putter.execute(f"PRAGMA synchronous = {synchronous}")
        self.seen: set[tuple[str, str, dt.date]] = set()

    def record(self, access: Access) -> bool:
        e, o = access.employee, access.organisation
        key = (e.id, access.citizen, access.at.astimezone(COPENHAGEN).date())
        if key in self.seen:
            return False
        self.queue.put({
            "activity": access.activity, "person_identifier": access.citizen,
            "user_person_identifier": e.id, "date_time": access.at.astimezone(dt.UTC),
            "organisation_id": o.id, "organisation_name": o.name,
            "user_person_name": e.name, "user_role": e.role,
        })
        self.seen.add(key)  # after the commit: a failed put is not "seen"
        return True

    def run(self, events: Sequence[Access]) -> int:
        record = self.record
        return sum(map(record, events))

    def close(self) -> None:
        self.queue.close()


@pytest.mark.benchmark(group="morning peak")
class TestMorningPeak:
    """The whole morning (about 87 % duplicates), each event durable when its call returns,
    the delivery worker delivering meanwhile. Goals (same run): per event >= 2x the naive
    logger and >= 1x the persist-queue assembly; ``record_many`` in arrival batches
    >= 10x the naive logger, and >= 0.8x itself with delivery held back."""

    def test_naive_baseline(self, measure: Any, workload: Any, tmp_path: Path) -> None:
        """The baseline: per event, INSERT OR IGNORE + outbox insert when new + commit."""
        conns: list[sqlite3.Connection] = []

        def setup() -> tuple[sqlite3.Connection, list[Access]]:
            while conns:
                conns.pop().close()
            conns.append(naive_open(tmp_path / f"naive-{time.monotonic_ns()}.sqlite"))
            return conns[-1], workload.events

        try:
            measure(NAIVE, naive_run, setup, events=len(workload.events), rounds=3,
                    feed="per event", tz="Copenhagen")
            (queued,) = conns[-1].execute("SELECT COUNT(*) FROM outbox").fetchone()  # naive
            assert queued == len(workload.first_of_day)
        finally:
            for conn in conns:
                conn.close()

    def test_persist_queue_baseline(self, measure: Any, workload: Any, tmp_path: Path
                                    ) -> None:
        """The assembly: an in-memory set answers duplicates, persist-queue commits each
        new event's log."""
        pytest.importorskip("persistqueue", reason="the dev extra installs persist-queue")
        loggers: list[PersistQueueLogger] = []
        answers: list[int] = []

        def setup() -> tuple[PersistQueueLogger, list[Access]]:
            while loggers:
                loggers.pop().close()
            loggers.append(PersistQueueLogger(tmp_path / f"pq-{time.monotonic_ns()}"))
            return loggers[-1], workload.events

        def target(logger: PersistQueueLogger, events: list[Access]) -> None:
            answers.append(logger.run(events))

        try:
            measure(PQUEUE, target, setup, events=len(workload.events), rounds=3,
                    feed="per event", tz="Copenhagen")
            assert answers[-1] == len(workload.first_of_day)
            assert loggers[-1].queue.qsize() == len(workload.first_of_day)
        finally:
            for logger in loggers:
                logger.close()

    def test_record(self, measure: Any, lab: Any, workload: Any) -> None:
        """minlog, ``record`` per event: the same call pattern as the baselines."""
        measure("morning peak: record, per event", feed_per_event,
                lambda: (lab.open(), workload.events), events=len(workload.events), rounds=3,
                goal=("morning_peak/record_vs_naive", "morning_peak/record_vs_pqueue"),
                feed="per event", tz="Copenhagen")
        assert lab.current.stats().first_of_day == len(workload.first_of_day)

    def test_record_many(self, measure: Any, lab: Any, workload: Any) -> None:
        """minlog, ``record_many`` in arrival batches of 1,000 events, delivering."""
        arg = batches(workload.events)
        measure("morning peak: record_many, arrival batches", feed_batches,
                lambda: (lab.open(), arg), events=len(workload.events), rounds=5,
                goal=("morning_peak/record_many_vs_naive",
                      "morning_peak/delivering_vs_held_back"),
                feed="arrival batches", tz="Copenhagen")
        assert lab.current.stats().first_of_day == len(workload.first_of_day)

    def test_record_many_held_back(self, measure: Any, lab: Any, workload: Any) -> None:
        """The same with the delivery worker held back (the other half of the
        delivery-cost comparison: nothing is delivered while recording)."""
        arg = batches(workload.events)
        measure(HELD_BACK, feed_batches, lambda: (lab.open(deliver=False), arg),
                events=len(workload.events), rounds=5, feed="arrival batches",
                tz="Copenhagen")
        stats = lab.current.stats()
        assert (stats.first_of_day, stats.delivered) == (len(workload.first_of_day), 0)


# --------------------------------------------------------------------------- memory


def _pymalloc_size(n: int) -> int:
    """The block pymalloc hands out for an n-byte request (16-byte size classes)."""
    return -(-n // 16) * 16 if n <= 512 else n


@pytest.mark.benchmark(group="memory")
def test_hot_set_memory(benchmark: Any, measure: Any, lab: Any, results: Any,
                        hot_set_events: list[Access]) -> None:
    """Goal: <= 120 bytes per key of the current day. Traced memory retained after
    recording N first-of-day keys (arrival batches), divided by N. The time of this
    benchmark includes tracemalloc's overhead: it is not a throughput figure."""
    n = len(hot_set_events)
    arg = batches(hot_set_events)
    traced: dict[str, int] = {}

    def target(log: MinLog, chunks: list[list[Access]]) -> None:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            feed_batches(log, chunks)
            gc.collect()
            traced["bytes"] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    # Delivery held back: the MemoryTransport's copies of what it received would count.
    measure(f"hot set: {n:,} first-of-day keys under tracemalloc", target,
            lambda: (lab.open(deliver=False), arg), events=n, rounds=1, feed="arrival batches",
            tz="Copenhagen", not_a_rate=True)
    log = lab.current
    assert log.stats().hot_keys == n
    # Cross-check with the objects themselves (a private attribute, read-only here).
    day = hot_set_events[0].at.date().toordinal()
    part = log._ledger._memory[day]
    assert len(part) == n
    table = sys.getsizeof(part) - sys.getsizeof(set())
    key_size = sys.getsizeof(next(iter(part)))
    results.memory = {
        "keys": n, "bytes": traced["bytes"], "bytes_per_key": traced["bytes"] / n,
        "set_table_bytes_per_key": table / n, "key_object_bytes": key_size,
        "key_block_bytes": _pymalloc_size(key_size),
        "allocator_bytes_per_key": table / n + _pymalloc_size(key_size),
    }
    benchmark.extra_info.update(
        bytes_per_key=round(results.memory["bytes_per_key"], 1),
        allocator_bytes_per_key=round(results.memory["allocator_bytes_per_key"], 1))
