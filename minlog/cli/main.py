"""The ``minlog`` command: a demo, and the operator's tools for a store.

Every command has ``--help``. Commands that open a store take its path (or a
``postgresql://`` URL) and ``--key`` (the key file; default ``<store>.key`` for SQLite).
They act on an existing store only: none makes a store or a key file, and the commands
that inspect (``status``, ``dead-letters``, ``resolve``, ``codes``) open it read-only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from minlog.cli.bench import add_command as add_bench_command
from minlog.cli.identity import add_commands as add_identity_commands
from minlog.cli.keys import add_commands as add_key_commands
from minlog.cli.project import add_command as add_project_command
from minlog.client.facade import MinLog
from minlog.errors import DeliveryError, MinlogError, TransientDeliveryError
from minlog.minlog2 import BatchResult
from minlog.minlog2.registration import Registration
from minlog.store import is_postgres_url

__all__ = ["main"]


class _NoTransport:
    """For commands that never deliver: any send is refused as transient (kept, retried)."""

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        raise TransientDeliveryError("this command does not deliver")

    def close(self) -> None:
        pass


def store_options(args: argparse.Namespace, **options: Any) -> dict[str, Any]:
    """The store options of a command: ``--schema`` for a PostgreSQL store, and
    ``options``."""
    if getattr(args, "schema", None) is not None and is_postgres_url(args.store):
        options["schema"] = args.schema
    return options


def _open_for_ops(args: argparse.Namespace, *, writes: bool = False) -> MinLog:
    """An existing store for an operator's command: it makes neither a store nor a key
    file, and opens the store read-only unless the command ``writes``."""
    options = store_options(args) if writes else store_options(args, read_only=True)
    # The least memory and horizon: the store's own horizon (its largest) stays as it is.
    return MinLog.open(args.store, transport=_NoTransport(), system_name="minlog-cli",
                       key=args.key, start_worker=False, exit_timeout=0.0, create=False,
                       store_options=options, hot_days=1, horizon_days=1, late_days=0)


# ----------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run a morning peak for a sample municipality through the library."""
    from minlog.cli.demo import run_demo

    return run_demo(args, out)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print the outbox state of a store."""
    with _open_for_ops(args) as log:
        s = log.stats()
    if args.json:
        out.write(json.dumps({
            "pending": s.pending, "in_flight": s.in_flight, "dead": s.dead,
            "oldest_pending_age": s.oldest_pending_age,
        }) + "\n")
    else:
        age = "-" if s.oldest_pending_age is None else f"{s.oldest_pending_age:,.0f} s"
        out.write(f"pending:            {s.pending:,}\n"
                  f"in flight:          {s.in_flight:,}\n"
                  f"dead letters:       {s.dead:,}\n"
                  f"oldest pending age: {age}\n")
    return 0


def cmd_dead_letters(args: argparse.Namespace, out: TextIO) -> int:
    """List dead letters with their fault codes (no CPR numbers are printed)."""
    with _open_for_ops(args) as log:
        letters = log.dead_letters(args.limit)
    for d in letters:
        when = _dt.datetime.fromtimestamp(d.died_at, _dt.UTC).isoformat(timespec="seconds")
        reg = d.registration
        what = (f"{reg.activity!r} at {reg.date_time or reg.from_date_time}" if reg
                else "(payload cannot be opened)")
        out.write(f"{d.id}\t{when}\t{d.code}\t{d.text}\t{what}\n")
    if not letters:
        out.write("no dead letters\n")
    return 0


def cmd_redrive(args: argparse.Namespace, out: TextIO) -> int:
    """Move dead letters back to the outbox so they are sent again."""
    if not args.ids and not args.all:
        out.write("give dead-letter ids, or --all\n")
        return 2
    with _open_for_ops(args, writes=True) as log:
        n = log.redrive(None if args.all else args.ids)
    out.write(f"{n} dead letters returned to the outbox\n")
    return 0


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    """Forget the seen-set days before the last --keep-days days (default: the store's
    dedup horizon, as the daily upkeep does; the outbox and dead letters are kept).
    Purging days inside the horizon needs --force: an access of a forgotten day that is
    recorded again is logged again. Exit status: 0 purged, 1 refused."""
    with _open_for_ops(args, writes=True) as log:
        horizon, today = log.horizon_days, log.today()
        keep = horizon if args.keep_days is None else args.keep_days
        if keep < horizon:
            first, last = (_dt.date.fromordinal(d).isoformat()
                           for d in (today - horizon + 1, today - keep))
            out.write(f"--keep-days {keep} forgets the seen-set days {first} to {last}, "
                      f"inside the store's dedup horizon of {horizon} days: an access of "
                      "those days that is recorded again is accepted again and logged "
                      "again (a duplicate in the citizen's log; instances running now "
                      "still know the days they hold in memory).\n")
            if not args.force:
                out.write("Nothing was purged. To purge anyway, add --force.\n")
                return 1
        n = log.store.prune(today - keep + 1)
    out.write(f"{n:,} seen-set keys forgotten\n")
    return 0


def _days(text: str) -> int:
    """A positive number of days (argparse type)."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (today)")
    return days


def cmd_drain(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver the outbox now, in the foreground, with the transport of a TOML config."""
    from minlog.config import transport_from_toml

    transport = transport_from_toml(args.config)
    with MinLog.open(args.store, transport=transport, system_name="minlog-cli", key=args.key,
                     start_worker=False, exit_timeout=0.0, create=False,
                     store_options=store_options(args), batch_size=args.batch_size,
                     hot_days=1, horizon_days=1, late_days=0) as log:
        done = log.flush(timeout=args.timeout)
        s = log.stats()
    out.write(f"delivered {s.delivered:,}; pending {s.pending:,}, in flight {s.in_flight:,}, "
              f"dead letters {s.dead:,}\n")
    if s.last_error:
        out.write(f"last error: {s.last_error}\n")
    return 0 if done else 1


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minlog",
        description="Deliver first-of-day access logs to MinLog2; operate a minlog store.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a morning peak through the library and deliver it",
                          description=cmd_demo.__doc__)
    demo.add_argument("--dir", type=Path, default=None,
                      help="folder for the SQLite store (default: a temporary folder)")
    demo.add_argument("--employees", type=int, default=400, help="care workers (default 400)")
    demo.add_argument("--citizens", type=int, default=6000, help="citizens (default 6000)")
    demo.add_argument("--batch", type=int, default=1000,
                      help="events per record_many call, as an audit hook would batch them")
    demo.add_argument("--memory", action="store_true",
                      help="deliver to the in-memory transport instead of HTTP")
    demo.set_defaults(func=cmd_demo)

    def store_parser(name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=doc)
        p.add_argument("store", help="SQLite file path or postgresql:// URL")
        p.add_argument("--key", default=None,
                       help="key file (default: <store>.key beside a SQLite file)")
        p.add_argument("--schema", default=None,
                       help="the PostgreSQL schema of the store (default minlog)")
        return p

    status = store_parser("status", "show pending, in flight and dead counts", cmd_status.__doc__)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    dead = store_parser("dead-letters", "list dead letters", cmd_dead_letters.__doc__)
    dead.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    dead.set_defaults(func=cmd_dead_letters)

    redrive = store_parser("redrive", "send dead letters again", cmd_redrive.__doc__)
    redrive.add_argument("ids", nargs="*", type=int, help="dead-letter ids")
    redrive.add_argument("--all", action="store_true", help="all dead letters")
    redrive.set_defaults(func=cmd_redrive)

    purge = store_parser("purge", "forget old seen-set days", cmd_purge.__doc__)
    purge.add_argument("--keep-days", type=_days, default=None,
                       help="days to keep, today included (default: the store's dedup "
                            "horizon)")
    purge.add_argument("--force", action="store_true",
                       help="purge even inside the dedup horizon (see above: it costs)")
    purge.set_defaults(func=cmd_purge)

    drain = store_parser("drain", "deliver the outbox now, in the foreground",
                         cmd_drain.__doc__)
    drain.add_argument("--config", required=True,
                       help="TOML file with a [minlog2] table (see docs/operations.md)")
    drain.add_argument("--timeout", type=float, default=300.0,
                       help="give up after this many seconds (default 300)")
    drain.add_argument("--batch-size", type=int, default=500,
                       help="entries per request (default 500)")
    drain.set_defaults(func=cmd_drain)

    add_identity_commands(store_parser)  # resolve, codes
    add_key_commands(store_parser)  # rekey
    add_bench_command(sub)  # bench (minlog.cli.bench)
    add_project_command(sub)  # project (minlog.cli.project)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args, out)
    except (MinlogError, DeliveryError) as e:
        sys.stderr.write(f"minlog: {type(e).__name__}: {e}\n")
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
