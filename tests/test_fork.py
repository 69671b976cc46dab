"""Forking a process that has minlog's threads busy in its stores (issue 11, item 6).

A pre-fork server (gunicorn with preloading) forks whenever it likes: while the delivery
worker or a recording thread is inside a SQLite transaction. The child must never inherit
a store half-way through one: minlog holds its threads out of the stores (and its own
locks) for the moment of the fork, and the child opens its own connections.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UNDER_FAKETIME

from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.store.sqlite import SQLiteStore

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork"),
    # libfaketime's own locks are not fork-safe: a child forked while another thread is
    # inside libfaketime can hang at its first clock read (seen in 1 of 4 runs of 50
    # forks). These tests run in the plain runs, where time is the machine's.
    pytest.mark.skipif(UNDER_FAKETIME, reason="libfaketime is not fork-safe with threads"),
]

KEY = bytes(range(32))
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
FORKS = 50
CHILD_SECONDS = 15.0


def citizens() -> Iterator[str]:
    """Distinct valid CPR numbers (1 January of each year, 10,000 serial numbers)."""
    for year, serial in itertools.product(range(100), range(10_000)):
        yield f"0101{year:02d}{serial:04d}"


class HeldStore(SQLiteStore):
    """A SQLite store whose transactions take a while: some thread of the process is
    nearly always inside one."""

    @contextlib.contextmanager
    def _tx(self) -> Iterator[object]:  # type: ignore[override]
        with super()._tx() as conn:
            time.sleep(0.003)
            yield conn


def _wait_child(pid: int, seconds: float) -> int | None:
    """The child's exit code, or None when it had not finished in ``seconds`` (then it
    is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


class TestForkWhileBusy:
    def test_children_forked_while_threads_are_inside_transactions_finish(
            self, tmp_path: Path) -> None:
        """Fifty children, each forked while the delivery worker and a recording thread
        are inside SQLite transactions, each record a log on their own connection and exit
        within the timeout (the parent's threads keep still meanwhile)."""
        db = tmp_path / "minlog.sqlite"
        store = HeldStore(db, busy_timeout=2.0)
        log = MinLog(store, MemoryTransport(), system_name="Cura", master_key=KEY,
                     clock=FixedClock(NOW.timestamp() + 1), poll=0.001)
        source, own = citizens(), citizens()  # one each: a generator is not shared
        nurse = Employee("0101701234", name="Anne Jensen")
        stop = threading.Event()
        pause = threading.Lock()

        def record() -> None:
            while not stop.is_set():
                with pause:
                    log.record(Access(next(source), nurse, ORG, "Opslag", NOW))
                time.sleep(0.001)

        recorder = threading.Thread(target=record, daemon=True)
        recorder.start()
        outcomes: list[int | None] = []
        try:
            for i in range(FORKS):
                mine = Access(next(own), Employee("0202802345", name="Lars"), ORG,
                              "Opslag", NOW)
                time.sleep(0.002 * (i % 5))
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    code = 4
                    try:
                        started = time.monotonic()
                        code = 0 if log.record(mine) else 3
                    except BaseException as e:
                        os.write(2, f"child {i} after {time.monotonic() - started:.1f} s: "
                                    f"{type(e).__name__}: {e}\n".encode())
                    finally:
                        os._exit(code)
                # While the child works, the parent's threads wait (the recorder and, on
                # the store's lock, the worker): the child must not wait for a lock the
                # parent still holds, only for what it inherited.
                with pause, store._lock:
                    outcomes.append(_wait_child(pid, CHILD_SECONDS))
        finally:
            stop.set()
            recorder.join(10)
            log.close(timeout=5)
        assert outcomes == [0] * FORKS, (
            f"{outcomes.count(None)} children hung, "
            f"{sum(1 for o in outcomes if o not in (0, None))} failed")

    def test_children_of_a_busy_postgres_process_finish(self, pg_schema: str) -> None:
        """Ten children of a process whose threads are busy in a PostgreSQL store each
        record a log on a pool of their own and exit within the timeout."""
        from conftest import POSTGRES_URL

        log = MinLog.open(POSTGRES_URL, transport=MemoryTransport(), system_name="Cura",
                          key=KEY, store_options={"schema": pg_schema}, poll=0.001,
                          clock=FixedClock(NOW.timestamp() + 1))
        source, own = citizens(), citizens()  # one each: a generator is not shared
        nurse = Employee("0101701234", name="Anne Jensen")
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                log.record(Access(next(source), nurse, ORG, "Opslag", NOW))

        recorder = threading.Thread(target=record, daemon=True)
        recorder.start()
        outcomes: list[int | None] = []
        try:
            for _ in range(10):
                mine = Access(next(own), Employee("0202802345", name="Lars"), ORG,
                              "Opslag", NOW)
                time.sleep(0.005)
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    code = 4
                    try:
                        code = 0 if log.record(mine) else 3
                    finally:
                        os._exit(code)
                outcomes.append(_wait_child(pid, CHILD_SECONDS))
        finally:
            stop.set()
            recorder.join(10)
            log.close(timeout=5)
        assert outcomes == [0] * 10
