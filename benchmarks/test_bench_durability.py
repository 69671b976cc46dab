"""What each durability level costs: first-of-day `record()`, one call per event.

`MinLog.open(..., durability=...)`: ``"process"`` survives a crash of the process (SQLite
WAL with ``synchronous=NORMAL``: no sync per commit), ``"power"`` (the default) also a
power loss (``synchronous=FULL``: the WAL is synced at each commit). Measured in the same
run, for each level: distinct first-of-day accesses recorded one per `record` call (each
commits before it returns), the delivery worker delivering them into a `MemoryTransport`
meanwhile (no rate limit), against a bare one-row ``INSERT`` + ``COMMIT``
(`minlog.bench.baselines.BareCommit`) on a SQLite file in the same journal mode (WAL) and
at the same ``synchronous``: the floor any durable per-event commit pays on this disk.
The two alternate in blocks (after one block of each to warm up), so that both see the
same machine. Goal: a first-of-day ``record()`` costs at most 2.5 bare commits. Each
level is measured a second time with the worker held back (``start_worker=False``): the
difference is what delivering alongside costs the caller. On PostgreSQL (when a server
answers) the same with ``synchronous_commit`` off and on.

The figures (microseconds per event at the median and on average, ratios to the bare
commit) are printed, kept in ``extra_info`` and written to
``.benchmarks/minlog-durability-<mode>.json``.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minlog import Access, MemoryTransport, MinLog
from minlog.bench.baselines import BareCommit
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.store.base import POSTGRES_SYNCHRONOUS_COMMIT, SQLITE_SYNCHRONOUS
from minlog.testing.workload import MorningPeak

URL = os.environ.get("MINLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LEVELS = ("process", "power")
NOW = dt.datetime(2026, 11, 24, 11, 0, tzinfo=COPENHAGEN).timestamp()
BLOCKS = 10  # measured blocks of each, after one block of each to warm up
GOAL = 2.5  # a first-of-day record() costs at most this many bare commits


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


def _interleaved(log: MinLog, bare: BareCommit, events: list[Access]) -> dict[str, float]:
    """``record`` each event and do as many bare commits, alternating in blocks; the
    per-call figures of both (ns), the first block of each left out (warming up)."""
    block = len(events) // (BLOCKS + 1)
    pc = time.perf_counter_ns
    record, commit = log.record, bare.commit
    records: list[int] = []
    commits: list[int] = []
    for b in range(BLOCKS + 1):
        took = [commit() for _ in range(block)]
        mine = []
        for a in events[b * block : (b + 1) * block]:
            s = pc()
            new = record(a)
            mine.append(pc() - s)
            assert new
        if b:
            commits.extend(took)
            records.extend(mine)
    m_p50, b_p50 = statistics.median(records) / 1e3, statistics.median(commits) / 1e3
    m_avg, b_avg = statistics.fmean(records) / 1e3, statistics.fmean(commits) / 1e3
    return {"calls": len(records), "minlog_p50_us": m_p50, "bare_p50_us": b_p50,
            "minlog_mean_us": m_avg, "bare_mean_us": b_avg,
            "minlog_events_per_s": 1e6 / m_avg, "bare_events_per_s": 1e6 / b_avg,
            "ratio_p50": m_p50 / b_p50, "ratio_mean": m_avg / b_avg}


def _minlog(target: Any, level: str, deliver: bool, **options: Any) -> MinLog:
    """A `MinLog` at ``level``, its worker delivering into memory with no rate limit
    (``deliver=False``: held back)."""
    return MinLog.open(target, transport=MemoryTransport(), system_name="Cura",
                       key=bytes(32), rate_limit=None, exit_timeout=0.0,
                       clock=FixedClock(NOW), durability=level, start_worker=deliver,
                       **options)


#: The measurements of each level: (name, the worker delivering?).
RUNS = [(f"{level}{suffix}", level, deliver) for level in LEVELS
        for suffix, deliver in (("", True), (", held back", False))]


def _measure_level(log: MinLog, bare: BareCommit, events: list[Access]) -> dict[str, float]:
    try:
        figures = _interleaved(log, bare, events)
        figures["delivered_while_recording"] = float(log.stats().delivered)
        assert log.flush(timeout=60)
        assert log.stats().first_of_day == figures["calls"] * (BLOCKS + 1) // BLOCKS
        return figures
    finally:
        log.close(timeout=10)
        bare.close()


def _report(title: str, figures: dict[str, dict[str, float]]) -> None:
    n = int(next(iter(figures.values()))["calls"])
    print(f"\n{title}, {n:,} first-of-day record() calls per level (the worker "
          f"delivering, or held back) against as many bare INSERT+COMMITs, interleaved:")
    for level, f in figures.items():
        print(f"  {level:<20} minlog p50 {f['minlog_p50_us']:7.1f} us, mean "
              f"{f['minlog_mean_us']:7.1f} us ({f['minlog_events_per_s']:8,.0f}/s); bare "
              f"p50 {f['bare_p50_us']:6.1f} us, mean {f['bare_mean_us']:6.1f} us; ratio p50 "
              f"{f['ratio_p50']:.2f}x, mean {f['ratio_mean']:.2f}x (goal <= {GOAL:g}x)")
    cost = figures["power"]["minlog_mean_us"] / figures["process"]["minlog_mean_us"]
    print(f"  power-loss durability costs {cost:.1f}x the time of process durability")


def _measure(benchmark: Any, run: Callable[[], dict[str, dict[str, float]]]
             ) -> dict[str, dict[str, float]]:
    figures = benchmark.pedantic(run, rounds=1, iterations=1)
    return figures if figures is not None else run()  # benchmarks disabled: run once


def test_durability_sqlite(benchmark: Any, tmp_path: Path,
                          save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    n = 2_200 if full else 220
    events = _firsts(n)

    def run() -> dict[str, dict[str, float]]:
        out = {}
        for name, level, deliver in RUNS:
            tag = uuid.uuid4().hex[:8]
            bare = BareCommit.open_sqlite(tmp_path / f"bare-{tag}.sqlite",
                                          SQLITE_SYNCHRONOUS[level])
            log = _minlog(tmp_path / f"minlog-{tag}.sqlite", level, deliver)
            out[name] = _measure_level(log, bare, events)
        return out

    figures = _measure(benchmark, run)
    benchmark.extra_info.update({"goal_ratio_at_most": GOAL, **figures})
    _report("SQLite (WAL)", figures)
    save_figures("durability", benchmark.extra_info)


def test_durability_postgres(benchmark: Any, pg: Any,
                            save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    n = 1_100 if full else 110
    events = _firsts(n)

    def run() -> dict[str, dict[str, float]]:
        out = {}
        for name, level, deliver in RUNS:
            schema = f"d_{uuid.uuid4().hex[:10]}"
            bare = BareCommit.open_postgres(URL, f"{schema}_bare",
                                            POSTGRES_SYNCHRONOUS_COMMIT[level])
            log = _minlog(URL, level, deliver, store_options={"schema": schema})
            try:
                out[name] = _measure_level(log, bare, events)
            finally:
                with pg.connect(URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return out

    figures = _measure(benchmark, run)
    benchmark.extra_info.update({"goal_ratio_at_most": GOAL, **figures})
    _report("PostgreSQL", figures)
    save_figures("durability-postgres", benchmark.extra_info)
