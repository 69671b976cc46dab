"""``minlog worker``: deliver a store's outbox until SIGTERM or SIGINT (`minlog.service`).

For systemd or a container: the web workers only record (``start_worker=False``), and
one or more ``minlog worker`` processes deliver (claims are exclusive, across hosts on
PostgreSQL). It opens the store and transport as ``minlog drain`` does
(`minlog.cli.delivery.open_for_delivery`), prints one line on standard error when it
runs, and with ``--health-port`` serves ``/healthz`` and ``/metrics`` on 127.0.0.1.

SIGTERM or SIGINT stops it gracefully: nothing new is claimed, the round under way is
finished (its outcome recorded) or, past ``--stop-timeout``, its leases are given back at
once; then it exits 0. A second signal skips the wait. Exit status: 0 stopped by a
signal, 1 an error (no store, a bad config, the port taken), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from minlog.cli import argtypes, exits
from minlog.cli.console import write_json
from minlog.cli.delivery import add_delivery_options, open_for_delivery
from minlog.client.facade import MinLog
from minlog.errors import ConfigurationError
from minlog.events import emit
from minlog.service import DeliveryService, HealthServer

__all__ = ["add_command", "cmd_worker"]


def cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver the outbox until SIGTERM or SIGINT, with a health endpoint on request.
    SIGTERM is graceful: the round under way is finished (or, past --stop-timeout, its
    entries are given back to pending at once), then the worker exits 0."""
    log = open_for_delivery(args, poll=args.poll)
    service = DeliveryService(log, poll=args.poll, stop_timeout=args.stop_timeout,
                              stale_after=args.stale_after)
    server: HealthServer | None = None
    summary: dict[str, Any] = {}
    try:
        if args.health_port is not None:
            try:
                server = HealthServer(service, args.health_port, args.health_host)
            except OSError as e:
                raise ConfigurationError(
                    f"--health-port {args.health_port}: cannot listen on "
                    f"{args.health_host}: {e.strerror or e}") from None
        with _signals(service.stop):
            service.start()
            port = server.port if server else 0
            emit("worker_started", "delivering; health and metrics on port %d (0: none)",
                 port, health_port=port)
            where = f"; health at {server.url}/healthz, metrics at {server.url}/metrics" \
                if server else ""
            sys.stderr.write(f"minlog worker: delivering {args.store}{where}\n")
            sys.stderr.flush()
            service.wait()
            service.shutdown()
    finally:
        if server is not None:
            server.close()
        service.shutdown()  # (nothing when done already or never started)
        summary = _close(log, service)
    emit("worker_stopped", "stopped: %d rounds, %d entries delivered, %d given back",
         service.rounds, summary["delivered"], service.released, rounds=service.rounds,
         delivered=summary["delivered"], released=service.released)
    if args.json:
        write_json(out, summary)
    else:
        out.write(f"stopped by {service.stopped_by}: delivered {summary['delivered']:,} in "
                  f"{service.rounds:,} rounds; pending {summary['pending']}, in flight "
                  f"{summary['in_flight']}, dead letters {summary['dead']}; "
                  f"{service.released:,} entries given back\n")
    return exits.OK


def _close(log: MinLog, service: DeliveryService, seconds: float = 5.0) -> dict[str, Any]:
    """The final counts, then ``log`` closed without delivering more; at most
    ``seconds`` (a round still inside a request must not hold the exit)."""
    summary: dict[str, Any] = {"stopped_by": service.stopped_by, "rounds": service.rounds,
                               "released": service.released, "delivered": 0,
                               "pending": None, "in_flight": None, "dead": None,
                               "last_error": service.last_error}
    try:
        s = log.stats()
        summary.update(delivered=s.delivered, pending=s.pending, in_flight=s.in_flight,
                       dead=s.dead, last_error=service.last_error or s.last_error)
    except Exception as e:
        summary["last_error"] = summary["last_error"] or f"{type(e).__name__}"
    closer = threading.Thread(target=log.close, kwargs={"timeout": 0.0},
                              name="minlog-close", daemon=True)
    closer.start()
    closer.join(seconds)
    return summary


@contextlib.contextmanager
def _signals(stop: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` with the signal's name (in the main thread
    only; elsewhere signals are left as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def add_command(store_parser: Callable[[str, str, str | None], argparse.ArgumentParser]
                ) -> None:
    """Add ``worker`` with ``store_parser(name, help, description)``, the parser factory
    of `minlog.cli.main` for commands that open a store."""
    p = store_parser("worker", "deliver until SIGTERM (a service for systemd or a container)",
                     cmd_worker.__doc__)
    add_delivery_options(p)
    p.add_argument("--poll", type=argtypes.positive_seconds, default=1.0, metavar="SECONDS",
                   help="look for new work this often when idle (default 1)")
    p.add_argument("--health-port", type=argtypes.port, default=None, metavar="PORT",
                   help="serve GET /healthz and GET /metrics on this port (0: a free one, "
                        "printed at the start; default: no server)")
    p.add_argument("--health-host", default="127.0.0.1", metavar="ADDRESS",
                   help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--stop-timeout", type=argtypes.seconds, default=8.0, metavar="SECONDS",
                   help="on SIGTERM, wait this long for the round under way before "
                        "giving its entries back (default 8: under docker stop's 10)")
    p.add_argument("--stale-after", type=argtypes.positive_seconds, default=180.0,
                   metavar="SECONDS",
                   help="/healthz fails when no round finished for this long (default 180)")
    p.set_defaults(func=cmd_worker)
