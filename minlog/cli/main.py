"""The ``minlog`` command: a demo, and the operator's tools for a store.

Every command has ``--help``. Commands that open a store take its path (or a
``postgresql://`` URL) and ``--key`` (the key file; default ``<store>.key`` for SQLite).
They act on an existing store only: none makes a store or a key file, and the commands
that inspect (``status``, ``dead-letters``, ``resolve``, ``codes``) open it read-only.

Every command takes ``--json`` (one JSON document on standard output, keys listed in
docs/operations.md) and ``-v`` (the library's log events on standard error at INFO);
exit statuses are `minlog.cli.exits`. ``minlog worker`` is the delivery service
(`minlog.cli.worker`, `minlog.service`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from minlog import __version__
from minlog.cli import argtypes, exits
from minlog.cli.bench import add_command as add_bench_command
from minlog.cli.console import LOG_FORMATS, log_to_stderr, write_json
from minlog.cli.delivery import add_command as add_drain_command
from minlog.cli.identity import add_commands as add_identity_commands
from minlog.cli.keys import add_commands as add_key_commands
from minlog.cli.project import add_command as add_project_command
from minlog.cli.worker import add_command as add_worker_command
from minlog.client.facade import MinLog
from minlog.client.stats import TenantStats
from minlog.errors import DeliveryError, MinlogError, TransientDeliveryError
from minlog.events import redact
from minlog.minlog2 import BatchResult
from minlog.minlog2.registration import Registration
from minlog.store import is_postgres_url

__all__ = ["build_parser", "main"]


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


def _open_for_ops(args: argparse.Namespace, *, writes: bool = False,
                  **options: Any) -> MinLog:
    """An existing store for an operator's command: it makes neither a store nor a key
    file, and opens the store read-only unless the command ``writes``. ``options``:
    `MinLog`'s (the rate limits ``status`` computes drain times with, say)."""
    opened = store_options(args) if writes else store_options(args, read_only=True)
    # The least memory and horizon: the store's own horizon (its largest) stays as it is.
    return MinLog.open(args.store, transport=_NoTransport(), system_name="minlog-cli",
                       key=args.key, start_worker=False, exit_timeout=0.0, create=False,
                       store_options=opened, hot_days=1, horizon_days=1, late_days=0,
                       **options)


def _limits(config: str | None) -> dict[str, Any]:
    """The rate limits of an installation's ``minlog.toml`` (``status --config``), read
    without its credentials; none without a config."""
    if config is None:
        return {}
    from minlog.tenants.toml import rate_limits_from_toml

    return rate_limits_from_toml(config)


# ----------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run a morning peak for a sample municipality through the library."""
    from minlog.cli.demo import run_demo

    return run_demo(args, out)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print the outbox state of a store. Exit status: 0 nothing waits for an operator,
    3 dead letters wait, 4 the oldest pending log is older than --max-age (3 when both;
    see docs/operations.md, Exit statuses)."""
    with _open_for_ops(args, **_limits(args.config)) as log:
        s = log.stats()
    problems = []
    if s.dead:
        problems.append("dead_letters")
    if (args.max_age is not None and s.oldest_pending_age is not None
            and s.oldest_pending_age > args.max_age):
        problems.append("backlog")
    if args.json:
        write_json(out, {
            "pending": s.pending, "in_flight": s.in_flight, "dead": s.dead,
            "oldest_pending_age": s.oldest_pending_age, "max_age": args.max_age,
            "problems": problems,
            "tenants": {tenant: {
                "pending": row.pending, "in_flight": row.in_flight, "dead": row.dead,
                "oldest_pending_age": row.oldest_pending_age,
                "drain_seconds": row.drain_seconds, "delivered": row.delivered,
            } for tenant, row in sorted(s.tenants.items())},
        })
    else:
        age = "-" if s.oldest_pending_age is None else f"{s.oldest_pending_age:,.0f} s"
        out.write(f"pending:            {s.pending:,}\n"
                  f"in flight:          {s.in_flight:,}\n"
                  f"dead letters:       {s.dead:,}\n"
                  f"oldest pending age: {age}\n")
        if any(s.tenants):  # a row per municipality once the store serves tenants
            out.write(_tenant_table(s.tenants))
        if "backlog" in problems:
            out.write(f"the oldest pending log has waited longer than {args.max_age:,.0f} s\n")
    return exits.outcome(dead=s.dead, backlog="backlog" in problems)


def _tenant_table(tenants: Mapping[str, TenantStats]) -> str:
    """``status``'s rows per tenant: pending, in flight, dead, oldest age, drain time,
    delivered (by every process on the store)."""
    def age(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f} s"

    lines = [f"\n{'tenant':<10} {'pending':>9} {'in flight':>9} {'dead':>6} "
             f"{'oldest':>10} {'drains in':>10} {'delivered':>11}"]
    for tenant, row in sorted(tenants.items()):
        drain = "no limit" if row.drain_seconds is None else age(row.drain_seconds)
        lines.append(f"{tenant or '(none)':<10} {row.pending:>9,} {row.in_flight:>9,} "
                     f"{row.dead:>6,} {age(row.oldest_pending_age):>10} {drain:>10} "
                     f"{row.delivered:>11,}")
    return "\n".join(lines) + "\n"


def cmd_dead_letters(args: argparse.Namespace, out: TextIO) -> int:
    """List dead letters with their fault codes (no CPR numbers are printed)."""
    with _open_for_ops(args) as log:
        letters = log.dead_letters(args.limit)
    rows = []
    for d in letters:
        reg = d.registration
        at = (reg.date_time or reg.from_date_time) if reg else None
        rows.append({
            "id": d.id,
            "died_at": _dt.datetime.fromtimestamp(d.died_at, _dt.UTC).isoformat(
                timespec="seconds"),
            "code": d.code, "text": redact(d.text), "attempts": d.attempts,
            "readable": reg is not None,
            "activity": redact(reg.activity) if reg else None,
            "at": at.isoformat() if at else None,
        })
    if args.json:
        write_json(out, {"dead_letters": rows})
        return exits.OK
    for r in rows:
        what = (f"{r['activity']!r} at {r['at']}" if r["readable"]
                else "(payload cannot be opened)")
        out.write(f"{r['id']}\t{r['died_at']}\t{r['code']}\t{r['text']}\t{what}\n")
    if not rows:
        out.write("no dead letters\n")
    return exits.OK


def cmd_redrive(args: argparse.Namespace, out: TextIO) -> int:
    """Move dead letters back to the outbox so they are sent again."""
    if not args.ids and not args.all:
        sys.stderr.write("minlog redrive: give dead-letter ids, or --all\n")
        return exits.USAGE
    with _open_for_ops(args, writes=True) as log:
        n = log.redrive(None if args.all else args.ids)
    if args.json:
        write_json(out, {"redriven": n})
    else:
        out.write(f"{n} dead letters returned to the outbox\n")
    return exits.OK


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    """Forget the seen-set days before the last --keep-days days (default: the store's
    dedup horizon, as the daily upkeep does; the outbox and dead letters are kept).
    Purging days inside the horizon needs --force: an access of a forgotten day that is
    recorded again is logged again. Exit status: 0 purged, 1 refused."""
    say = sys.stderr if args.json else out
    inside: dict[str, str] | None = None
    with _open_for_ops(args, writes=True) as log:
        horizon, today = log.horizon_days, log.today()
        keep = horizon if args.keep_days is None else args.keep_days
        if keep < horizon:
            first, last = (_dt.date.fromordinal(d).isoformat()
                           for d in (today - horizon + 1, today - keep))
            inside = {"first": first, "last": last}
            say.write(f"--keep-days {keep} forgets the seen-set days {first} to {last}, "
                      f"inside the store's dedup horizon of {horizon} days: an access of "
                      "those days that is recorded again is accepted again and logged "
                      "again (a duplicate in the citizen's log; instances running now "
                      "still know the days they hold in memory).\n")
            if not args.force:
                say.write("Nothing was purged. To purge anyway, add --force.\n")
        n = (log.store.prune(today - keep + 1) if inside is None or args.force else None)
    if args.json:
        write_json(out, {"purged": n is not None, "forgotten": n or 0, "keep_days": keep,
                         "horizon_days": horizon, "inside_horizon": inside})
    elif n is not None:
        out.write(f"{n:,} seen-set keys forgotten\n")
    return exits.OK if n is not None else exits.ERROR


# ----------------------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before its name or after it."""
    verbose, form = (0, "text") if top else (argparse.SUPPRESS, argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=verbose,
                   help="log events on standard error at INFO (-vv: DEBUG); default: "
                        "warnings and errors only")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=form,
                   help="log lines as text (default) or one JSON object each")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minlog",
        description="Deliver first-of-day access logs to MinLog2; operate a minlog store.",
        epilog="Exit statuses: 0 done, 1 error, 2 bad usage, 3 dead letters wait, "
               "4 backlog (docs/operations.md).")
    parser.add_argument("--version", action="version", version=f"minlog {__version__}")
    _add_common(parser, top=True)
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
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=cmd_demo)

    def store_parser(name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=doc)
        p.add_argument("store", help="SQLite file path or postgresql:// URL")
        p.add_argument("--key", default=None,
                       help="key file (default: <store>.key beside a SQLite file)")
        p.add_argument("--schema", default=None,
                       help="the PostgreSQL schema of the store (default minlog)")
        p.add_argument("--json", action="store_true",
                       help="print one JSON document (docs/operations.md)")
        return p

    status = store_parser("status", "show pending, in flight and dead counts", cmd_status.__doc__)
    status.add_argument("--max-age", type=argtypes.seconds, default=None, metavar="SECONDS",
                        help="exit 4 when the oldest pending log is older than this")
    status.add_argument("--config", default=None,
                        help="an installation's minlog.toml: each tenant's drain time "
                             "under its own rate limit (default: the public guidance)")
    status.set_defaults(func=cmd_status)

    dead = store_parser("dead-letters", "list dead letters", cmd_dead_letters.__doc__)
    dead.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    dead.set_defaults(func=cmd_dead_letters)

    redrive = store_parser("redrive", "send dead letters again", cmd_redrive.__doc__)
    redrive.add_argument("ids", nargs="*", type=int, help="dead-letter ids")
    redrive.add_argument("--all", action="store_true", help="all dead letters")
    redrive.set_defaults(func=cmd_redrive)

    purge = store_parser("purge", "forget old seen-set days", cmd_purge.__doc__)
    purge.add_argument("--keep-days", type=argtypes.days, default=None,
                       help="days to keep, today included (default: the store's dedup "
                            "horizon)")
    purge.add_argument("--force", action="store_true",
                       help="purge even inside the dedup horizon (see above: it costs)")
    purge.set_defaults(func=cmd_purge)

    add_drain_command(store_parser)  # drain (minlog.cli.delivery)
    add_worker_command(store_parser)  # worker (minlog.cli.worker)
    add_identity_commands(store_parser)  # resolve, codes
    add_key_commands(store_parser)  # rekey
    add_bench_command(sub)  # bench (minlog.cli.bench)
    add_project_command(sub)  # project (minlog.cli.project)
    for command in sub.choices.values():
        _add_common(command, top=False)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (`minlog.cli.exits`)."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    undo = log_to_stderr(args.verbose, args.log_format)
    try:
        status: int = args.func(args, out)
    except (MinlogError, DeliveryError) as e:
        message = redact(str(e))
        sys.stderr.write(f"minlog: {type(e).__name__}: {message}\n")
        if getattr(args, "json", False):
            write_json(out, {"error": {"type": type(e).__name__, "message": message}})
        return exits.ERROR
    except KeyboardInterrupt:
        sys.stderr.write("minlog: interrupted\n")
        return exits.INTERRUPTED
    finally:
        undo()
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
