"""Memory per hot key, measured in fresh processes (nothing else of the benchmark in them).

Two children, one after the other, on one new SQLite file (no delivery):

1. ``record``: builds ``keys`` distinct first-of-day accesses of the workload's day, then
   records them in batches of 1,000 under `tracemalloc`: the Python memory still
   allocated afterwards, per key (``traced``). Its store keeps the keys.
2. ``open``: a fresh interpreter opens a `MinLog` on that store, on that day: it loads
   the day's keys into its hot window, as every process does when it opens. The growth
   of its resident set, per key (``rss``): what the machine sees (the ledger's sets,
   the allocator's rounding, SQLite's page cache of at most ~2 MiB), with no workload
   in the process whose freed memory the keys could reuse.

``python -m minlog.bench.memory record|open ...`` prints one JSON line; `measure` runs
both; `measure_open` runs the second on a store made otherwise (it also gives how long
the open took).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from minlog.core.clock import FixedClock
from minlog.errors import ConfigurationError

__all__ = ["measure", "measure_open", "rss_bytes"]

_KEY = bytes(range(32))


def rss_bytes() -> int:
    """The resident set size of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def measure(keys: int, folder: Path, timeout: float = 1800.0) -> dict[str, float]:
    """Bytes per hot key: ``{"keys", "rss_bytes_per_key", "traced_bytes_per_key"}``."""
    store = folder / f"memory-{keys}.sqlite"
    try:
        recorded = _child(store, timeout, "record", "--keys", str(keys))
        opened = measure_open(keys, store, recorded["at"], timeout)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
    return {"keys": keys, "rss_bytes_per_key": opened["bytes_per_key"],
            "traced_bytes_per_key": recorded["bytes_per_key"]}


def measure_open(keys: int, store: Path, at: float, timeout: float = 1800.0
                 ) -> dict[str, Any]:
    """A fresh process opens a `MinLog` (key ``bytes(range(32))``, no delivery) on
    ``store``, which holds ``keys`` keys of the day of ``at`` (the clock): ``{"bytes_per_key":
    its resident set's growth per key, "open_seconds": how long the open took}``."""
    return _child(store, timeout, "open", "--keys", str(keys), "--at", repr(at))


def _child(store: Path, timeout: float, *args: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - this interpreter, our module, our arguments
        [sys.executable, "-m", "minlog.bench.memory", *args, "--store", str(store)],
        capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ConfigurationError(
            f"the memory measurement failed: {done.stderr.strip()[-500:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _open(store: Path, at: float) -> Any:
    from minlog.client.facade import MinLog
    from minlog.minlog2 import MemoryTransport

    return MinLog.open(store, transport=MemoryTransport(), system_name="Bench EOJ", key=_KEY,
                       clock=FixedClock(at), start_worker=False, rate_limit=None,
                       exit_timeout=0.0)


def _record(keys: int, store: Path) -> dict[str, Any]:
    from minlog.bench.workload import hot_set_events

    events = hot_set_events(keys)
    at = events[-1].at.timestamp() + 60
    log = _open(store, at)
    try:
        batches = [events[i : i + 1000] for i in range(0, len(events), 1000)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for batch in batches:
            log.record_many(batch)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        held = log.stats().hot_keys
    finally:
        log.close(timeout=0)
    if held != keys:  # pragma: no cover - a broken ledger
        raise AssertionError(f"memory holds {held} keys, not {keys}")
    return {"bytes_per_key": grown / keys, "at": at}


def _load(keys: int, store: Path, at: float) -> dict[str, Any]:
    empty = store.with_name(store.name + ".empty")
    _open(empty, at).close(timeout=0)  # every module and the SQLite library loaded
    for suffix in ("", "-wal", "-shm"):
        Path(f"{empty}{suffix}").unlink(missing_ok=True)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    log = _open(store, at)
    took = time.perf_counter() - started
    gc.collect()
    grown = rss_bytes() - before
    held = log.stats().hot_keys
    log.close(timeout=0)
    if held != keys:  # pragma: no cover - the store lost keys
        raise AssertionError(f"memory holds {held} keys, not {keys}")
    return {"bytes_per_key": grown / keys, "open_seconds": took}


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minlog.bench.memory",
                                     description="Memory per hot key (one measurement).")
    parser.add_argument("mode", choices=["record", "open"])
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--at", type=float, help="open: the clock (the record child's)")
    args = parser.parse_args(argv)
    if args.mode == "record":
        result = _record(args.keys, args.store)
    else:
        result = _load(args.keys, args.store, args.at)
    (out or sys.stdout).write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process
    raise SystemExit(main())
