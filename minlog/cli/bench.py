"""``minlog bench``: the morning peak with a vendor's volumes, on its store, with thresholds.

Exit status: 0 when every ``--require-*`` threshold is met, 3 when one is missed (the
report says which), 1 on an error, 2 on bad usage, 143 when stopped by SIGTERM (its
stores are removed all the same).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from minlog.bench import BenchConfig, Requirements, run
from minlog.bench.report import table
from minlog.bench.workload import shaped
from minlog.cli.console import Progress
from minlog.errors import ConfigurationError
from minlog.testing.workload import MorningPeak

__all__ = ["EXIT_MISSED", "add_command", "cmd_bench"]

EXIT_MISSED = 3

#: option -> (Requirements field, help)
_REQUIRE = {
    "events-per-s": ("events_per_s", "at least this many events/s, flat-out"),
    "first-of-day-per-s": ("first_of_day_per_s", "at least this many first-of-day logs/s, "
                           "flat-out"),
    "p99-ms": ("p99_ms", "p99 of record calls at most this many ms, both for calls that "
               "queue a first-of-day log and for duplicates (the paced run; flat-out with "
               "--no-paced)"),
    "vs-naive": ("vs_naive", "flat-out events/s at least this many times the naive "
                 "logger's (same run)"),
    "delivery-per-s": ("delivery_per_s", "at least this many delivery entries/s, flat-out"),
    "bytes-per-key": ("bytes_per_key", "memory per hot key at most this many bytes (RSS)"),
    "first-of-day-vs-commit": ("first_of_day_vs_commit", "a first-of-day record() (p50) "
                               "costs at most this many bare INSERT+COMMITs (p50)"),
}


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    """Benchmark a morning peak with your volumes against your store and a local FakeNSP
    (delivery with no rate limit: the library is measured, not MinLog2's limits); print
    events/s, first-of-day logs/s, call latencies, delivery entries/s, memory per hot key
    and the naive logger of the same run; exit 3 when a --require-* threshold is missed."""
    if args.plot is not None:
        from minlog.bench import plot

        if not plot.available():
            sys.stderr.write(f"minlog bench: {plot.INSTALL_HINT}\n")
            return 2
    config = _config(args)
    progress = Progress("bench", enabled=not args.quiet).line

    with _cleanup_on_sigterm():
        result = run(config, progress)
    data = result.to_dict()
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        out.write(table(result))
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        progress(f"figures written to {args.save}")
    if args.plot is not None:
        from minlog.bench import plot

        plot.save(result, args.plot)
        progress(f"picture written to {args.plot}")
    if not result.ok:
        missed = ", ".join(f"--require-{c.name.replace('_', '-')} ({c.what})"
                           for c in result.failed)
        sys.stderr.write(f"minlog bench: threshold missed: {missed}\n")
        return EXIT_MISSED
    return 0


@contextlib.contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """SIGTERM (a CI job's timeout) ends the benchmark as an exception would, so that it
    removes the stores it made; the exit status is then 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _config(args: argparse.Namespace) -> BenchConfig:
    base = MorningPeak()
    volumes: dict[str, Any] = {
        name: value for name in ("employees", "citizens", "visits", "opens", "seed")
        if (value := getattr(args, name)) is not None}
    if args.first_of_day is not None:
        if "employees" in volumes:
            raise ConfigurationError("give --first-of-day or --employees, not both")
        workload = shaped(args.first_of_day, **volumes)
    else:
        workload = MorningPeak(**{"employees": base.employees, "citizens": base.citizens,
                                  **volumes})
    requirements = Requirements(**{field: getattr(args, f"require_{field}")
                                   for field, _ in _REQUIRE.values()})
    return BenchConfig(
        target=args.store, workload=workload, threads=args.threads, feed=args.feed,
        batch=args.batch, delivery=not args.no_delivery, receiver=args.receiver,
        delivery_threads=args.delivery_threads, batch_size=args.batch_size,
        rounds=args.rounds, paced=not args.no_paced, rate=args.rate,
        paced_seconds=args.paced_seconds, drain_timeout=args.drain_timeout,
        naive=not args.no_naive, probe=args.probe, memory_keys=args.memory_keys,
        force=args.force, keep=args.keep, schema=args.schema,
        durability=args.durability, requirements=requirements)


def add_command(sub: Any) -> None:
    """Register ``minlog bench`` on the ``minlog`` parser's subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="benchmark a morning peak with your volumes on your store",
        description=cmd_bench.__doc__, epilog="Exit status: 0 every threshold met; "
        "3 a threshold missed; 1 an error; 2 bad usage; 143 stopped by SIGTERM (the "
        "benchmark's stores removed). See docs/performance.md.")
    p.add_argument("store", help="SQLite path (the benchmark runs in fresh files in a new "
                   "folder beside it, never in it) or postgresql:// URL (fresh schemas)")
    w = p.add_argument_group("the workload (a morning peak on a fixed day)")
    w.add_argument("--employees", type=int, help="care workers (default 400)")
    w.add_argument("--citizens", type=int, help="citizens (default 6,000; with "
                   "--first-of-day 15 per care worker)")
    w.add_argument("--visits", type=int, help="citizens each care worker visits (default 12)")
    w.add_argument("--opens", type=float, help="record opens per visit, on average (default 8)")
    w.add_argument("--first-of-day", type=int, help="shape the morning by its first-of-day "
                   "logs instead: --first-of-day / --visits care workers")
    w.add_argument("--seed", type=int, help="the generator's seed (default 2026)")
    c = p.add_argument_group("the calls")
    c.add_argument("--threads", type=int, default=1, help="caller threads (default 1)")
    c.add_argument("--feed", choices=["record", "record_many"], default="record",
                   help="record per event (default) or record_many in batches")
    c.add_argument("--batch", type=int, default=1000,
                   help="events per record_many call (default 1,000)")
    c.add_argument("--rate", type=float, default=None, help="arrival rate of the paced run, "
                   "events/s over all threads (default: half the flat-out rate)")
    c.add_argument("--rounds", type=int, default=1, help="the naive logger and the "
                   "flat-out run alternate this many times; the round with the median "
                   "ratio is reported (default 1; more steadies the ratio on a shared "
                   "machine)")
    c.add_argument("--paced-seconds", type=float, default=30.0, help="the paced run replays "
                   "the morning's first --rate x this many events (default 30 s)")
    c.add_argument("--no-paced", action="store_true", help="no paced run")
    d = p.add_argument_group("delivery (as in production, with no rate limit)")
    d.add_argument("--no-delivery", action="store_true", help="record only")
    d.add_argument("--receiver", choices=["fakensp", "memory"], default="fakensp",
                   help="FakeNSP over HTTP in its own process (default), or in memory")
    d.add_argument("--delivery-threads", type=int, default=1, help="default 1")
    d.add_argument("--batch-size", type=int, default=500, help="entries per request "
                   "(default 500)")
    d.add_argument("--drain-timeout", type=float, default=600.0,
                   help="seconds delivery may take after recording (default 600)")
    m = p.add_argument_group("baselines and memory")
    m.add_argument("--no-naive", action="store_true", help="skip the naive logger")
    m.add_argument("--probe", type=int, default=2000, help="first-of-day record() calls "
                   "measured against as many bare commits (default 2,000; 0: none)")
    m.add_argument("--memory-keys", type=int, default=None, help="keys for memory per hot "
                   "key (default: the morning's first-of-day logs, at least 100,000; 0: none)")
    s = p.add_argument_group("the store")
    s.add_argument("--force", action="store_true", help="go on when the named store holds "
                   "data (it is never written either way)")
    s.add_argument("--keep", action="store_true", help="leave the benchmark's stores behind")
    s.add_argument("--schema", default="minlog", help="PostgreSQL: the schema of a live "
                   "store to refuse without --force (default minlog)")
    s.add_argument("--durability", default="power", choices=["power", "process"],
                   help="the stores' durability (default power, the library's): the naive "
                        "logger and the bare commit sync alike (docs/operations.md)")
    r = p.add_argument_group("thresholds (exit 3 when one is missed)")
    for option, (field, text) in _REQUIRE.items():
        r.add_argument(f"--require-{option}", dest=f"require_{field}", type=float,
                       default=None, metavar="N", help=text)
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print JSON instead of the table")
    o.add_argument("--save", type=Path, default=None, help="also write the JSON to this file")
    o.add_argument("--plot", type=Path, default=None, help="draw latency distributions and "
                   "throughput over time into this PNG/SVG/PDF (pip install 'minlog[plot]')")
    o.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)
