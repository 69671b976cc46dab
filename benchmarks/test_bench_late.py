"""A late replay: an old day's audit events arrive days later, one per `record()` call.

After an outage of an EOJ's own audit queue, the events of a day before the memory window
come in late. Half of the morning peak is recorded on its day; five days later the other
half arrives, one event per call (a replay), on a new `MinLog` over the same SQLite file:
its day is inside the dedup horizon but outside the memory window, so the store answers
for it (the day's keys are read from the file once). Measured in the same run against the
same second half recorded on its day (per event, in the window), the delivery worker
delivering into a `MemoryTransport` (no rate limit) in both, at durability "process" (no
sync to hide the difference). Goal: the late rate at least 50 % of the on-time rate.
Figures in ``extra_info`` and ``.benchmarks/minlog-late-<mode>.json``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minlog import Access, MemoryTransport, MinLog
from minlog.core.clock import FixedClock

KEY = bytes(range(32))
GOAL = 0.5  # late events/s at least this share of on-time events/s


def _open(path: Path, now: float) -> MinLog:
    return MinLog.open(path, transport=MemoryTransport(), system_name="Bench EOJ", key=KEY,
                       rate_limit=None, clock=FixedClock(now), durability="process")


def _opened(folder: str, first: list[Access], now: float, later: float) -> MinLog:
    """A store holding ``first`` (recorded at ``now`` and delivered), opened again at
    ``later``, its worker delivering."""
    path = Path(folder) / "late.sqlite"
    with _open(path, now) as log:
        log.record_many(first)
        assert log.flush(timeout=120)
    return _open(path, later)


def test_late_replay(benchmark: Any, workload: Any,
                     save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    events = workload.events
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    n = len(second)
    with tempfile.TemporaryDirectory(prefix="minlog-bench-") as folder:
        log = _opened(folder, first, workload.now, workload.now)
        started = time.perf_counter()
        firsts_on_time = sum(map(log.record, second))
        on_time = time.perf_counter() - started
        assert log.flush(timeout=120)
        log.close(timeout=10)
    with tempfile.TemporaryDirectory(prefix="minlog-bench-") as folder:
        log = _opened(folder, first, workload.now, workload.now + 5 * 86_400)
        started = time.perf_counter()
        firsts_late = benchmark.pedantic(lambda: sum(map(log.record, second)), rounds=1,
                                         iterations=1)
        late = time.perf_counter() - started
        assert log.flush(timeout=120)
        late_stats = log.stats()
        log.close(timeout=10)
    if firsts_late is None:  # benchmarks disabled: pedantic ran once and returned nothing
        firsts_late = firsts_on_time
    assert firsts_late == firsts_on_time  # the same answers, late or not
    assert late_stats.late == firsts_on_time  # the day was answered as a late one
    benchmark.extra_info.update({"events": n, "first_of_day": firsts_late,
                                 "late_events_per_s": n / late,
                                 "on_time_events_per_s": n / on_time,
                                 "late_vs_on_time": on_time / late, "goal_at_least": GOAL})
    print(f"\nlate replay, record per event, the worker delivering, {n:,} events of a day "
          f"5 days back ({firsts_late:,} first-of-day): {n / late:,.0f}/s; the same on "
          f"their day {n / on_time:,.0f}/s (late runs at {on_time / late:.2f}x; goal >= "
          f"{GOAL:g}x)")
    save_figures("late", benchmark.extra_info)
