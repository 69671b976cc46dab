"""How long `record()` blocks its callers: 8 threads paced at 2,000 events/s in total.

The morning peak (the first events of ``MINLOG_BENCH_SCALE``'s morning, in time order: the
first-of-day mix of a morning's start) recorded one event per `record` call from 8 caller
threads, each care worker's events on one thread, calls starting at their arrival time
at 2,000 events/s over all threads, the delivery worker delivering into a
`MemoryTransport` meanwhile (no rate limit). Every call is timed in its thread and
counted as a first-of-day call or a duplicate. At each durability level.

The machinery is `minlog bench`'s (`minlog.bench.run`, ``--receiver memory``): it runs
the morning flat-out first (reported too), then paced. Goals: first-of-day p99 <= 2 ms,
duplicates p99 <= 50 us. Figures in ``extra_info`` and
``.benchmarks/minlog-threads-<mode>.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minlog.bench import BenchConfig, run
from minlog.bench.result import Latency
from minlog.bench.workload import peak_for

RATE = 2_000.0  # events/s over all threads
THREADS = 8
GOALS_US = {"first_of_day_p99": 2_000.0, "duplicates_p99": 50.0}


def _latency(lat: Latency | None) -> dict[str, float] | None:
    if lat is None:
        return None
    return {"calls": lat.calls, "p50_us": lat.p50_us, "p99_us": lat.p99_us,
            "max_us": lat.max_us}


@pytest.mark.parametrize("durability", ["power", "process"])
def test_paced_threads(benchmark: Any, workload: Any, tmp_path: Path, durability: str,
                       save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    full = not getattr(benchmark, "disabled", True)
    seconds = 10.0 if full else 1.0
    config = BenchConfig(
        tmp_path / "threads.sqlite", workload=peak_for(min(workload.scale, 1.0)),
        threads=THREADS, feed="record", receiver="memory", rate=RATE,
        paced_seconds=seconds, naive=False, probe=0, memory_keys=0,
        durability=durability,  # type: ignore[arg-type]
    )
    result = benchmark.pedantic(lambda: run(config), rounds=1, iterations=1)
    if result is None:  # benchmarks disabled: pedantic ran once and returned nothing
        result = run(config)
    flat, paced = result.runs
    assert paced.first_of_day > 0
    assert paced.delivered == paced.first_of_day  # every log reached the receiver
    figures = {
        "durability": durability, "threads": THREADS, "rate": RATE,
        "events": paced.events, "first_of_day": paced.first_of_day,
        "first_of_day_latency": _latency(paced.first),
        "duplicates_latency": _latency(paced.duplicates),
        "start_lag": _latency(paced.lag),
        "delivery_requests": paced.requests, "backlog_at_end": paced.backlog,
        "flat_out_events_per_s": flat.events_per_s,
        "flat_out_first_of_day_latency": _latency(flat.first),
        "flat_out_duplicates_latency": _latency(flat.duplicates),
        "goals_us": GOALS_US,
    }
    benchmark.extra_info.update(figures)
    first, dups, lag = paced.first, paced.duplicates, paced.lag
    assert first is not None
    assert dups is not None
    assert lag is not None
    print(f"\n{THREADS} threads paced at {RATE:,.0f} events/s, durability {durability!r}, "
          f"the worker delivering: {paced.events:,} events, {paced.first_of_day:,} "
          f"first-of-day\n"
          f"  first-of-day p50 / p99 / max: {first.p50_us:,.1f} / {first.p99_us:,.1f} / "
          f"{first.max_us:,.1f} us (goal p99 <= 2,000 us)\n"
          f"  duplicates   p50 / p99 / max: {dups.p50_us:,.1f} / {dups.p99_us:,.1f} / "
          f"{dups.max_us:,.1f} us (goal p99 <= 50 us)\n"
          f"  calls started late p50 / p99: {lag.p50_us:,.1f} / {lag.p99_us:,.1f} us; "
          f"{paced.requests:,} delivery requests; flat-out {flat.events_per_s:,.0f} "
          f"events/s")
    save_figures(f"threads-{durability}", figures)
