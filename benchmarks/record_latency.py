"""How long `MinLog.record()` blocks its caller, call by call, on an embedded SQLite store.

    .venv/bin/python benchmarks/record_latency.py

Records 3,000 first-of-day accesses one call at a time (each commits its log before it
returns), then 30,000 duplicates of them (answered from memory), and prints the median,
the 99th percentile and the longest call of each; at each durability level (``"power"``,
the default, syncs each commit; ``"process"`` does not). The figures are in docs/api.md
("From asyncio"). Not a pytest benchmark: what matters here is the tail of single calls,
not a mean.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import minlog
import minlog.store.base


def _quantiles(name: str, seconds: list[float]) -> str:
    xs = sorted(seconds)

    def q(p: float) -> float:
        return xs[int(p * (len(xs) - 1))] * 1e6

    return (f"{name:13s} n={len(xs):6d}  median {q(0.5):8.1f} us  p99 {q(0.99):8.1f} us  "
            f"max {xs[-1] * 1e6:9.1f} us")


def main(first_of_day: int = 3000, duplicates: int = 30000,
         durability: minlog.store.base.Durability = "power") -> None:
    at = dt.datetime.now(dt.UTC)
    org = minlog.Organisation("380000000000001")
    accesses = [minlog.Access(f"{1 + i % 28:02d}0{1 + i % 9}{60 + i % 30:02d}{i:04d}",
                              minlog.Employee(f"0101{70 + i % 20:02d}{i:04d}", name=f"E {i}"),
                              org, "Opslag", at) for i in range(first_of_day)]
    with tempfile.TemporaryDirectory() as folder, minlog.MinLog.open(
            Path(folder) / "m.sqlite", transport=minlog.MemoryTransport(), system_name="Cura",
            start_worker=False, exit_timeout=0.0, durability=durability,
            rate_limit=None) as log:
        firsts, repeats = [], []
        for a in accesses:
            t = time.perf_counter()
            log.record(a)
            firsts.append(time.perf_counter() - t)
        for i in range(duplicates):
            a = accesses[i % first_of_day]
            t = time.perf_counter()
            log.record(a)
            repeats.append(time.perf_counter() - t)
    print(f"durability={durability!r}")
    print(_quantiles("duplicate", repeats))
    print(_quantiles("first-of-day", firsts))


if __name__ == "__main__":
    main(durability="power")
    main(durability="process")
