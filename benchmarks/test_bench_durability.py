"""What each durability level costs: first-of-day `record()`, one call per event.

`MinLog.open(..., durability=...)`: ``"process"`` survives a crash of the process (SQLite
WAL with ``synchronous=NORMAL``: no sync per commit), ``"power"`` (the default) also a
power loss (``synchronous=FULL``: the WAL is synced at each commit). Measured in the same
run, for each level: distinct first-of-day accesses recorded one per `record` call (each
commits before it returns), against a bare one-row ``INSERT`` + ``COMMIT`` per event on a
SQLite file in the same mode: the floor any durable per-event commit pays on this disk.
On PostgreSQL (when a server answers) the same with ``synchronous_commit`` off and on.

The figures (microseconds per event, events/s, ratio to the bare commit) are printed,
kept in ``extra_info`` and written to ``.benchmarks/minlog-durability-<mode>.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minlog import Access, MemoryTransport, MinLog
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.testing.workload import MorningPeak

URL = os.environ.get("MINLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LEVELS = {"process": "NORMAL", "power": "FULL"}
NOW = dt.datetime(2026, 11, 24, 11, 0, tzinfo=COPENHAGEN).timestamp()


def _firsts(n: int) -> list[Access]:
    seen: set[tuple[str, str]] = set()
    out: list[Access] = []
    for a in MorningPeak(employees=800, citizens=12_000).events():
        if (a.employee.id, a.citizen) not in seen:
            seen.add((a.employee.id, a.citizen))
            out.append(a)
            if len(out) == n:
                break
    return out


def _minlog(target: Any, events: list[Access], level: str, **options: Any) -> float:
    """Seconds to record ``events`` one per call through `MinLog` at ``level``."""
    log = MinLog.open(target, transport=MemoryTransport(), system_name="Cura",
                      key=bytes(32), start_worker=False, exit_timeout=0.0,
                      clock=FixedClock(NOW), durability=level, **options,
                      rate_limit=None, fill_wait=0.0)
    try:
        record = log.record
        started = time.perf_counter()
        for a in events:
            record(a)
        elapsed = time.perf_counter() - started
        assert log.stats().first_of_day == len(events)
        return elapsed
    finally:
        with contextlib.suppress(Exception):
            log.store.drop_schema()  # type: ignore[attr-defined]  # PostgreSQL only
        log.close(timeout=0)


def _bare_sqlite(path: Path, n: int, synchronous: str) -> float:
    """Seconds for ``n`` one-row INSERT + COMMIT on a WAL file with ``synchronous``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        payload = os.urandom(300)  # about the size of a sealed outbox entry
        started = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (id, payload) VALUES (?, ?)", (i, payload))
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def _bare_postgres(psycopg: Any, n: int, level: str) -> float:
    schema = f"d_{uuid.uuid4().hex[:10]}"
    sync = "off" if level == "process" else "on"
    with psycopg.connect(URL, autocommit=True,
                         options=f"-c synchronous_commit={sync}") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            conn.execute(f'CREATE TABLE "{schema}".t (id integer PRIMARY KEY, payload bytea)')
            payload = os.urandom(300)
            conn.autocommit = False
            started = time.perf_counter()
            for i in range(n):
                conn.execute(f'INSERT INTO "{schema}".t VALUES (%s, %s)', (i, payload))
                conn.commit()
            return time.perf_counter() - started
        finally:
            conn.rollback()
            conn.autocommit = True
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _row(n: int, minlog_s: float, bare_s: float) -> dict[str, float]:
    return {"minlog_us_per_event": minlog_s / n * 1e6, "minlog_events_per_s": n / minlog_s,
            "bare_us_per_event": bare_s / n * 1e6, "bare_events_per_s": n / bare_s,
            "ratio_to_bare": minlog_s / bare_s}


def _report(title: str, n: int, figures: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}, {n:,} first-of-day events, one record() per event:")
    for level, f in figures.items():
        print(f"  {level:<8} minlog {f['minlog_us_per_event']:8.0f} us/event "
              f"({f['minlog_events_per_s']:8,.0f}/s); bare INSERT+COMMIT "
              f"{f['bare_us_per_event']:6.0f} us ({f['bare_events_per_s']:8,.0f}/s); "
              f"ratio {f['ratio_to_bare']:.2f}x")
    cost = figures["power"]["minlog_us_per_event"] / figures["process"]["minlog_us_per_event"]
    print(f"  power-loss durability costs {cost:.1f}x the time of process durability")


def _measure(benchmark: Any, run: Callable[[], dict[str, dict[str, float]]]
             ) -> dict[str, dict[str, float]]:
    figures = benchmark.pedantic(run, rounds=1, iterations=1)
    return figures if figures is not None else run()  # benchmarks disabled: run once


def test_durability_sqlite(benchmark: Any, tmp_path: Path,
                          save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    n = 2_000 if full else 100
    events = _firsts(n)

    def run() -> dict[str, dict[str, float]]:
        out = {}
        for level, synchronous in LEVELS.items():
            tag = uuid.uuid4().hex[:8]
            bare = min(_bare_sqlite(tmp_path / f"bare-{tag}-{i}.sqlite", n, synchronous)
                       for i in range(2))
            mine = min(_minlog(tmp_path / f"minlog-{tag}-{i}.sqlite", events, level)
                       for i in range(2))
            out[level] = _row(n, mine, bare)
        return out

    figures = _measure(benchmark, run)
    benchmark.extra_info.update({"events": n, "sqlite": sqlite3.sqlite_version, **figures})
    _report("SQLite (WAL)", n, figures)
    save_figures("durability", benchmark.extra_info)


def test_durability_postgres(benchmark: Any, pg: Any,
                            save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    n = 1_000 if full else 50
    events = _firsts(n)

    def run() -> dict[str, dict[str, float]]:
        out = {}
        for level in LEVELS:
            bare = min(_bare_postgres(pg, n, level) for _ in range(2))
            mine = min(_minlog(URL, events, level,
                               store_options={"schema": f"d_{uuid.uuid4().hex[:10]}"})
                       for _ in range(2))
            out[level] = _row(n, mine, bare)
        return out

    figures = _measure(benchmark, run)
    benchmark.extra_info.update({"events": n, **figures})
    _report("PostgreSQL", n, figures)
    save_figures("durability-postgres", benchmark.extra_info)
