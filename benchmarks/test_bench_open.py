"""Memory per hot key, and the time of `MinLog.open`, for a store holding 1 M keys of today.

Every process that opens a store loads the hot window's keys (today and the days before)
into its exact in-memory sets. The store is built quickly through the `Store` API
(``append`` in chunks of 50,000 entries, one transaction each, with the library's fixed
clock on the workload's day): 1,000,000 distinct keys of that day (50,000 in the smoke
run; ``MINLOG_BENCH_OPEN_KEYS`` sets it). Then a fresh interpreter
(`minlog.bench.memory.measure_open`: nothing else of the benchmark in it) measures its
own resident set before and after ``MinLog.open`` on that store, and how long the open
took. Goal: at most 120 bytes of RSS per hot key. Figures in ``extra_info`` and
``.benchmarks/minlog-open-<mode>.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minlog import MemoryTransport, MinLog
from minlog.bench.memory import measure_open
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.store import NewEntry
from minlog.testing.workload import MorningPeak

KEY = bytes(range(32))  # minlog.bench.memory opens with this master key
CHUNK = 50_000
GOAL = 120.0  # bytes of RSS per hot key, at most


def build(path: Path, keys: int, at: float) -> float:
    """A store at ``path`` holding ``keys`` distinct keys of the day of ``at`` (each with a
    small outbox entry); returns the seconds it took."""
    started = time.perf_counter()
    log = MinLog.open(path, transport=MemoryTransport(), system_name="Bench EOJ", key=KEY,
                      clock=FixedClock(at), start_worker=False, rate_limit=None,
                      durability="process", exit_timeout=0.0)
    try:
        day, store = log.today(), log.store
        payload = bytes(64)
        for lo in range(0, keys, CHUNK):
            entries = [NewEntry(day, hashlib.blake2b(i.to_bytes(8, "big"),
                                                     digest_size=16).digest(), payload)
                       for i in range(lo, min(lo + CHUNK, keys))]
            assert all(store.append(entries, at))
    finally:
        log.close(timeout=0)
    return time.perf_counter() - started


def test_open_memory(benchmark: Any, tmp_path: Path,
                     save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    keys = int(os.environ.get("MINLOG_BENCH_OPEN_KEYS", 1_000_000 if full else 50_000))
    at = dt.datetime.combine(MorningPeak().day, dt.time(9), COPENHAGEN).timestamp()
    store = tmp_path / "open.sqlite"
    built = build(store, keys, at)
    figures = benchmark.pedantic(lambda: measure_open(keys, store, at), rounds=1,
                                 iterations=1)
    if figures is None:  # benchmarks disabled: pedantic ran once and returned nothing
        figures = measure_open(keys, store, at)
    per_key, took = figures["bytes_per_key"], figures["open_seconds"]
    assert per_key > 0
    info = {"keys": keys, "rss_bytes_per_key": per_key, "open_seconds": took,
            "build_seconds": built, "store_bytes": store.stat().st_size,
            "goal_bytes_per_key_at_most": GOAL}
    benchmark.extra_info.update(info)
    print(f"\nMinLog.open on a store holding {keys:,} keys of today (built in {built:.1f} s, "
          f"{store.stat().st_size / 2**20:,.0f} MiB): {per_key:.1f} bytes of RSS per hot key "
          f"(goal <= {GOAL:g}), open took {took:.2f} s")
    save_figures("open", info)
