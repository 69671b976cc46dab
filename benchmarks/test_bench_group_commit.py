"""Group commit: first-of-day `record()` calls from many threads, on PostgreSQL.

An EOJ records from its request threads, one access per call. Each first-of-day log
needs a durable commit before its call returns; with group commit (the default) the
calls that wait meanwhile share the next transaction. Measured in the same run: the
default against one transaction per call (the committer's limit set to 1), both with
16 threads recording distinct first-of-day accesses of the morning peak through
`MinLog.record`. The ratio is printed and stored in ``extra_info`` and
``.benchmarks/minlog-group-commit-<mode>.json``. Skips without a server unless
MINLOG_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from minlog import Access, MemoryTransport, MinLog
from minlog.client.commit import GroupCommit
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.testing.workload import MorningPeak

URL = os.environ.get("MINLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
THREADS = 16


def _firsts(n: int) -> list[Access]:
    seen: set[tuple[str, str]] = set()
    out: list[Access] = []
    for a in MorningPeak(employees=800, citizens=12_000).events():
        pair = (a.employee.id, a.citizen)
        if pair not in seen:
            seen.add(pair)
            out.append(a)
            if len(out) == n:
                break
    return out


def _round(events: list[Access], grouped: bool) -> float:
    """Seconds for THREADS threads to record ``events`` (interleaved) one per call."""
    now = dt.datetime(2026, 11, 24, 11, 0, tzinfo=COPENHAGEN).timestamp()
    log = MinLog.open(URL, transport=MemoryTransport(), system_name="Cura", key=bytes(32),
                      store_options={"schema": f"g_{uuid.uuid4().hex[:10]}"},
                      start_worker=False, clock=FixedClock(now), rate_limit=None, fill_wait=0.0)
    try:
        if not grouped:
            log._committer = GroupCommit(log.store.append, 1)
        answers: list[int] = []

        def work(k: int) -> None:
            answers.append(sum(log.record(a) for a in events[k::THREADS]))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert sum(answers) == len(events)
        return elapsed
    finally:
        log.store.drop_schema()  # type: ignore[attr-defined]
        log.close(timeout=0)


def test_group_commit_threads(benchmark: Any, pg: Any,
                               save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    n = 4_800 if full else 320
    rounds = 2 if full else 1
    events = _firsts(n)
    single = min(_round(events, grouped=False) for _ in range(rounds))
    grouped = benchmark.pedantic(lambda: _round(events, grouped=True), rounds=rounds,
                                 iterations=1)
    if grouped is None:  # benchmarks disabled: pedantic ran once and returned nothing
        grouped = _round(events, grouped=True)
    ratio = single / grouped
    benchmark.extra_info.update({"events": n, "threads": THREADS,
                                 "one_per_call_events_per_s": n / single,
                                 "grouped_events_per_s": n / grouped, "ratio": ratio})
    print(f"\nPostgreSQL first-of-day record() from {THREADS} threads, {n:,} events: "
          f"group commit {n / grouped:,.0f}/s, one transaction per call "
          f"{n / single:,.0f}/s, ratio {ratio:.1f}x")
    save_figures("group-commit", benchmark.extra_info)
