"""``minlog project``: will MinLog2's limits carry our day? A day's first-of-day logs
delivered under each municipality's limits, simulated (`minlog.delivery.projection`).

Exit status: 0 when every municipality's limit carries the day, 3 when one cannot (the
report says which, and the limit it would need), 1 on an error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import Any, TextIO

from minlog.delivery.policy import RateLimit
from minlog.delivery.profile import DayProfile, care_day, from_store, read_profile
from minlog.delivery.projection import Projection, TenantDay, clock_text, limit_text, project
from minlog.delivery.schedule import DEFAULT_FILL_WAIT
from minlog.errors import ConfigurationError

__all__ = ["EXIT_CANNOT", "add_command", "cmd_project", "table"]

EXIT_CANNOT = 3


def _profile(args: argparse.Namespace) -> DayProfile:
    if args.store is None and (args.day is not None or args.schema is not None):
        raise ConfigurationError("--day and --schema go with --store")
    if args.logs_per_day is None and args.tenants is not None:
        raise ConfigurationError("--tenants goes with --logs-per-day")
    if args.profile is not None:
        return read_profile(args.profile)
    if args.logs_per_day is not None:
        return care_day(args.logs_per_day, args.tenants or 1, spread=args.spread)
    from minlog.cli.main import store_options
    from minlog.store import open_store

    day = None
    if args.day is not None:
        try:
            day = _dt.date.fromisoformat(args.day)
        except ValueError:
            raise ConfigurationError("--day: must be a date, YYYY-MM-DD") from None
    store = open_store(args.store, **store_options(args, read_only=True))
    try:
        return from_store(store, day, name=Path(args.store).name
                          if "://" not in args.store else "the PostgreSQL store")
    finally:
        store.close()


def _tenant_limits(values: list[str]) -> dict[str, RateLimit | None]:
    out: dict[str, RateLimit | None] = {}
    for value in values:
        tenant, sep, n = value.rpartition("=")
        if not sep:
            raise ConfigurationError(f"--tenant-limit {value!r}: must be TENANT=N (requests "
                                     "an hour; 0: no limit)")
        try:
            requests = int(n)
        except ValueError:
            requests = -1
        if requests < 0:
            raise ConfigurationError(f"--tenant-limit {value!r}: N must be a whole number "
                                     "of requests an hour (0: no limit)")
        out[tenant.strip()] = RateLimit(requests, 3600.0) if requests else None
    return out


def cmd_project(args: argparse.Namespace, out: TextIO) -> int:
    """Simulate a day's delivery under each municipality's MinLog2 limits (entries per
    request, requests per hour) with the library's own scheduling and a simulated clock;
    print each municipality's backlog, its peak, when it drains, requests and entries per
    request, and the limit it would need when its own cannot carry the day. The day comes
    from your counts (--profile), a store recorded with delivery held back (--store), or
    the care-day shape (--logs-per-day, --tenants)."""
    if args.plot is not None:
        from minlog.bench import plot

        if not plot.available():
            sys.stderr.write(f"minlog project: {plot.INSTALL_HINT}\n")
            return 2
    if args.requests_per_hour < 0:
        raise ConfigurationError("--requests-per-hour: must be 0 (no limit) or more")
    profile = _profile(args)
    result = project(
        profile, batch_size=args.batch_size,
        rate_limit=RateLimit(args.requests_per_hour, 3600.0) if args.requests_per_hour
        else None, tenant_limits=_tenant_limits(args.tenant_limit),
        fill_wait=args.fill_wait, request_seconds=args.request_seconds,
        workers=args.workers, step=args.step)
    out.write(result.to_json() + "\n" if args.json else table(result))
    if args.plot is not None:
        from minlog.bench import plot

        plot.save_projection(result, args.plot)
        if not args.json:
            out.write(f"picture written to {args.plot}\n")
    return 0 if result.ok else EXIT_CANNOT


def _wait_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _row(t: TenantDay) -> list[str]:
    busiest = max(range(24), key=lambda h: (t.hourly[h], -h))
    return [
        t.tenant or "(single)", f"{t.logs:,}",
        f"{t.hourly[busiest]:,} at {busiest:02d}-{(busiest + 1) % 24:02d}",
        limit_text(t.limit),
        f"{t.requests:,}", f"{t.entries_per_request:,.1f}",
        f"{t.peak:,} at {clock_text(t.peak_at)}",
        "-" if t.drained_at is None else clock_text(t.drained_at),
        _wait_text(t.longest_wait), f"{t.left_at_midnight:,}",
        "carries" if t.carries else "NEEDS " + (
            limit_text(t.needed_limit) if t.needed is not None else "more delivery threads"),
    ]


def table(result: Projection) -> str:
    """The readable report of ``result``."""
    head = ["municipality", "logs", "busiest hour", "limit", "requests", "entries/req",
            "peak backlog", "drained", "longest wait", "at 24:00", "verdict"]
    rows = [head, *(_row(t) for t in result.tenants)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        f"the day: {result.source}",
        f"delivery: batches of {result.batch_size:,}, fill wait {result.fill_wait:g} s, "
        f"{result.request_seconds:g} s a request, {result.workers} delivery "
        f"thread{'s' if result.workers != 1 else ''} (busy {result.busy:.1%} of the day); "
        f"a day is carried when delivered by {clock_text(result.deadline)} (midnight + "
        "fill wait + a request)",
        "",
    ]
    for r in rows:
        cells = [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1],
                                                                       strict=True)), r[-1]]
        lines.append("  " + "  ".join(cells).rstrip())
    lines.append("")
    failed = result.failed
    if not failed:
        lines.append(f"every limit carries the day ({len(result.tenants)} "
                     f"municipalit{'ies' if len(result.tenants) != 1 else 'y'}, "
                     f"{sum(t.logs for t in result.tenants):,} logs)")
    else:
        lines.append(f"{len(failed)} of {len(result.tenants)} cannot carry the day:")
        lines.extend(f"  {t.tenant or '(single)'}: {t.verdict}" for t in failed)
    return "\n".join(lines) + "\n"


def add_command(sub: Any) -> None:
    """Register ``minlog project`` on the ``minlog`` parser's subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "project", help="will MinLog2's limits carry our day? (a simulated day)",
        description=cmd_project.__doc__, epilog="Exit status: 0 every limit carries the "
        "day; 3 one cannot (the report names the limit it would need); 1 an error; 2 bad "
        "usage. See docs/performance.md.")
    d = p.add_argument_group("the day (one of --profile, --store, --logs-per-day)")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", type=Path, default=None, help="your counts: CSV with the "
                   "columns tenant,hour,logs, or JSON (rows, or tenant: [24 counts])")
    source.add_argument("--store", default=None, help="a SQLite file or postgresql:// URL "
                   "recorded with delivery held back (opened read-only): what its outbox "
                   "and dead letters hold")
    source.add_argument("--logs-per-day", type=int, default=None, metavar="N",
                   help="the care-day shape with N first-of-day logs a day")
    d.add_argument("--tenants", type=int, default=None, help="with --logs-per-day: spread "
                   "over this many municipalities, unevenly (default 1)")
    d.add_argument("--spread", type=float, default=0.5, help="with --tenants: the k-th "
                   "largest gets a share ~ 1/k^SPREAD (default 0.5; 0 all alike)")
    d.add_argument("--day", default=None, help="with --store: the Copenhagen day "
                   "(YYYY-MM-DD; default the day it holds most of)")
    d.add_argument("--schema", default=None, help="with a PostgreSQL --store: its schema "
                   "(default minlog)")
    lim = p.add_argument_group("the limits and the worker")
    lim.add_argument("--batch-size", type=int, default=500,
                     help="entries per request (default 500)")
    lim.add_argument("--requests-per-hour", type=int, default=RateLimit.guidance().requests,
                     metavar="N", help="every municipality's limit (default 20, the "
                     "guidance; 0: no limit)")
    lim.add_argument("--tenant-limit", action="append", default=[], metavar="TENANT=N",
                     help="one municipality's own limit in requests an hour (0: no "
                     "limit); repeat for more")
    lim.add_argument("--fill-wait", type=float, default=DEFAULT_FILL_WAIT, help="seconds a "
                     f"partial batch waits to fill (default {DEFAULT_FILL_WAIT:g}, MinLog's)")
    lim.add_argument("--request-seconds", type=float, default=2.0,
                     help="how long one request takes (default 2)")
    lim.add_argument("--workers", type=int, default=1,
                     help="delivery threads (default 1, MinLog's)")
    o = p.add_argument_group("output")
    o.add_argument("--step", type=int, default=300, help="seconds between the points of "
                   "the backlog curves (default 300; 60 per minute)")
    o.add_argument("--json", action="store_true", help="print one JSON document instead "
                   "of the table")
    o.add_argument("--plot", type=Path, default=None, help="draw the logs per hour and the "
                   "backlog curves into this PNG/SVG/PDF (pip install 'minlog[plot]')")
    p.set_defaults(func=cmd_project)
