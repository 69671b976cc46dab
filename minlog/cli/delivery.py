"""The commands that deliver: how they open a store and its transport, and ``drain``.

`open_for_delivery` is the one place where ``minlog drain`` and ``minlog worker`` turn
their options into a delivering `MinLog`: the store (path or URL, ``--schema``,
``--key``) and the MinLog2 transport of ``--config`` (`minlog.config.transport_from_toml`),
with the delivery options given. It records nothing and makes no store or key file.

``minlog drain STORE --config minlog.toml`` delivers the outbox now, in the foreground,
with a progress line on standard error every ``--progress`` seconds while it lasts.
Exit status (`minlog.cli.exits`): 0 everything delivered; 3 dead letters wait; 4 logs
left undelivered at ``--timeout`` (they stay in the store); 1 an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from minlog.cli import argtypes, exits
from minlog.cli.console import Progress, write_json
from minlog.client.facade import MinLog
from minlog.core.clock import SYSTEM_CLOCK
from minlog.delivery.policy import RateLimit

if TYPE_CHECKING:
    from minlog.tenants import Installation

__all__ = ["add_command", "add_delivery_options", "cmd_drain", "installation",
           "open_for_delivery", "rate_limit"]


def rate_limit(text: str) -> RateLimit | None:
    """``none`` or ``REQUESTS/SECONDS`` (argparse type), e.g. ``20/3600``."""
    if text.strip().lower() == "none":
        return None
    requests, slash, per = text.partition("/")
    try:
        if not slash:
            raise ValueError
        return RateLimit(int(requests), float(per))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be none or REQUESTS/SECONDS with REQUESTS >= 1 and SECONDS > 0, "
            "e.g. 20/3600") from None


def installation(config: str) -> Installation | None:
    """The installation of ``config`` when it is an installation's ``minlog.toml`` (it
    has ``[[tenant]]`` tables; docs/tenants.md), else None (a ``[minlog2]`` table of one
    municipality)."""
    from minlog.config import read_toml
    from minlog.tenants import Installation

    data = read_toml(config, "config")
    return Installation.from_toml(config) if "tenant" in data else None


def open_for_delivery(args: argparse.Namespace, **options: Any) -> MinLog:
    """The delivering `MinLog` of ``drain`` and ``worker``: the store of ``args.store``
    (``--key``, ``--schema``; an existing one only) and the transport of
    ``args.config``: a ``[minlog2]`` table of one municipality, or an installation's
    ``minlog.toml`` whose tenants each get their own (`minlog.tenants.Installation`; its
    ``[options]`` apply, STORE and ``--key`` replace its ``[store]``). With
    ``--batch-size``, ``--rate-limit`` and ``--fill-wait`` when given (otherwise the
    configuration's or the library's defaults) and ``options``
    (`minlog.client.options.Options`). It starts no delivery thread: the caller drives
    the rounds."""
    from minlog.cli.main import store_options  # the one way commands name a store
    from minlog.config import transport_from_toml

    for name in ("batch_size", "fill_wait"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if getattr(args, "rate_limit", None) is not None:
        options["rate_limit"] = args.rate_limit[0]
    # The least memory and horizon: the store's own horizon (its largest) stays as it is,
    # and its daily upkeep follows it.
    options.update(start_worker=False, exit_timeout=0.0, hot_days=1, horizon_days=1,
                   late_days=0)
    served = installation(args.config)
    if served is not None:
        served = attrs.evolve(served, store=args.store,
                              key=args.key if args.key is not None else served.key,
                              store_options={**served.store_options, **store_options(args)})
        return served.open(create=False, **options)
    transport = transport_from_toml(args.config)
    try:
        return MinLog.open(args.store, transport=transport, system_name="minlog-cli",
                           key=args.key, create=False, store_options=store_options(args),
                           **options)
    except BaseException:
        transport.close()
        raise


def add_delivery_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--batch-size`` and ``--rate-limit``: what `open_for_delivery`
    reads besides the store."""
    p.add_argument("--config", required=True,
                   help="TOML file: a [minlog2] table (docs/operations.md), or an "
                        "installation's minlog.toml with [[tenant]] tables (docs/tenants.md)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="entries per request (default: the configuration's, else 500)")
    p.add_argument("--fill-wait", type=argtypes.seconds, default=None, metavar="SECONDS",
                   help="how long a partial batch waits to fill (default: the "
                        "configuration's, else 600; drain does not wait for it)")
    # A one-element list, so that "none" (None) differs from "not given".
    p.add_argument("--rate-limit", type=lambda t: [rate_limit(t)], default=None,
                   metavar="none|REQUESTS/SECONDS",
                   help="at most REQUESTS requests in any SECONDS (e.g. 20/3600, MinLog2's "
                        "public guidance), or none; default: the library's")


def cmd_drain(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver the outbox now, in the foreground, with the transport of a TOML config.
    Exit status: 0 everything delivered, 3 dead letters wait, 4 logs left undelivered at
    --timeout (they stay in the store), 1 an error."""
    progress = Progress("drain", every=args.progress, enabled=args.progress > 0)
    with open_for_delivery(args) as log:
        clock = SYSTEM_CLOCK  # the clock the command's MinLog asks
        deadline = clock.monotonic() + args.timeout
        while True:
            left = deadline - clock.monotonic()
            step = min(left, args.progress) if args.progress > 0 else left
            if log.flush(timeout=max(step, 0.0)) or left <= step:
                break
            s = log.stats()
            if s.pending + s.in_flight == 0:
                break  # only dead letters are left
            progress.line(f"delivered {s.delivered:,}; pending {s.pending:,}, in flight "
                          f"{s.in_flight:,}, dead letters {s.dead:,}")
        s = log.stats()
    left_over = s.pending + s.in_flight
    if args.json:
        write_json(out, {"delivered": s.delivered, "pending": s.pending,
                         "in_flight": s.in_flight, "dead": s.dead,
                         "last_error": s.last_error, "complete": not left_over and not s.dead})
    else:
        out.write(f"delivered {s.delivered:,}; pending {s.pending:,}, in flight "
                  f"{s.in_flight:,}, dead letters {s.dead:,}\n")
        if s.last_error:
            out.write(f"last error: {s.last_error}\n")
    return exits.outcome(dead=s.dead, backlog=left_over > 0)


def add_command(store_parser: Callable[[str, str, str | None], argparse.ArgumentParser]
                ) -> None:
    """Add ``drain`` with ``store_parser(name, help, description)``, the parser factory
    of `minlog.cli.main` for commands that open a store."""
    drain = store_parser("drain", "deliver the outbox now, in the foreground",
                         cmd_drain.__doc__)
    add_delivery_options(drain)
    drain.add_argument("--timeout", type=argtypes.seconds, default=300.0,
                       help="give up after this many seconds (default 300)")
    drain.add_argument("--progress", type=argtypes.seconds, default=10.0, metavar="SECONDS",
                       help="a progress line on standard error every SECONDS while it "
                            "lasts (default 10; 0: none)")
    drain.set_defaults(func=cmd_drain)
