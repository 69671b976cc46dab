"""``minlog demo``: a morning peak for a sample municipality, end to end."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from minlog.cli import exits
from minlog.cli.console import Progress, write_json
from minlog.client.facade import MinLog
from minlog.core.clock import SYSTEM_CLOCK, FixedClock
from minlog.core.model import Access
from minlog.minlog2 import MemoryTransport, Minlog2Transport, Transport
from minlog.testing.workload import MorningPeak

__all__ = ["run_demo"]


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The demo; with ``--json`` its summary is one JSON document on ``out`` and what it
    tells along the way goes to standard error."""
    folder: Path = args.dir or Path(tempfile.mkdtemp(prefix="minlog-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "minlog.sqlite"
    workload = MorningPeak(employees=args.employees, citizens=args.citizens)
    say = sys.stderr if args.json else out
    say.write(f"minlog demo: morning peak of {workload.employees} care workers, "
              f"{workload.citizens} citizens, {workload.day:%Y-%m-%d}\n")
    say.write(f"  store: {store}\n")
    events = workload.events()
    summary: dict[str, Any] = {"store": str(store)}
    with contextlib.ExitStack() as stack:
        transport = _transport(args, stack, say, summary)
        status = _run(args, say, store, events, transport, summary)
    if args.json:
        write_json(out, summary)
    return status


def _transport(args: argparse.Namespace, stack: contextlib.ExitStack, out: TextIO,
               summary: dict[str, Any]) -> Transport:
    """The best transport available: MinLog2 over HTTP with the full DGWS flow, to the
    built-in reference receiver (FakeNSP) on loopback; in memory with ``--memory``."""
    if args.memory:
        out.write("  receiver: in-memory transport\n")
        summary["receiver"] = "memory"
        return MemoryTransport()
    from minlog.testing import FakeNSP, make_test_certificate

    cvr = "29189846"
    nsp = stack.enter_context(FakeNSP(cvr=cvr))
    p12, password = make_test_certificate(cvr, "Demokommune")
    out.write(f"  receiver: reference MinLog2 receiver (FakeNSP) at {nsp.service_url}\n"
              f"            SOAP AddRegistrations, DGWS system ID card from its STS\n")
    summary["receiver"] = "fakensp"

    def received() -> None:
        summary.update(received=len(nsp.received), requests=nsp.calls,
                       id_cards=nsp.cards_issued)
        out.write(f"  receiver got: {len(nsp.received):,} registrations in {nsp.calls} "
                  f"requests, {nsp.cards_issued} ID card(s) issued\n")

    stack.callback(received)
    return Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url,
                            credentials=(p12, password), cvr=cvr, system_name="minlog demo",
                            care_provider_name="Demokommune")


def _run(args: argparse.Namespace, out: TextIO, store: Path, events: list[Access],
         transport: Transport, summary: dict[str, Any]) -> int:
    started = time.perf_counter()
    first = 0
    progress = Progress("demo", every=2.0)
    # The demo replays a past morning: the clock is set to the end of that morning.
    clock_now = events[-1].at.timestamp() + 60 if events else SYSTEM_CLOCK.time()
    # It delivers the morning in seconds to a receiver of its own: no rate limit, and
    # batches go as soon as they are due (production keeps RateLimit.guidance() and the
    # fill wait, which spread the same logs over the hour).
    with MinLog.open(store, transport=transport, system_name="minlog demo",
                     clock=FixedClock(clock_now), rate_limit=None, fill_wait=0.0) as log:
        step = max(args.batch, len(events) // 20)
        for i in range(0, len(events), args.batch):
            first += sum(log.record_many(events[i : i + args.batch]))
            done = min(i + args.batch, len(events))
            if done % step < args.batch or done == len(events):
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.bar(done, len(events), f"events {rate:>11,.0f}/s")
        recorded = time.perf_counter() - started
        out.write("  delivering ...\n")
        delivered_all = log.flush(timeout=120)
        total = time.perf_counter() - started
        stats = log.stats()
    delivered = time.perf_counter() - started - recorded
    summary.update(
        events=len(events), first_of_day=first, duplicates=len(events) - first,
        delivered=stats.delivered, dead=stats.dead, delivered_all=delivered_all,
        record_rate=round(len(events) / max(recorded, 1e-9), 1),
        delivery_rate=(round(stats.delivered / max(delivered, 1e-9), 1) if delivered_all
                       else None),
        total_seconds=round(total, 3))
    out.write(
        f"  events:        {len(events):>10,}\n"
        f"  first-of-day:  {first:>10,}\n"
        f"  duplicates:    {len(events) - first:>10,} "
        f"({(len(events) - first) / max(len(events), 1):.1%})\n"
        f"  delivered:     {stats.delivered:>10,}\n"
        f"  dead letters:  {stats.dead:>10,}\n"
        f"  record rate:   {len(events) / max(recorded, 1e-9):>10,.0f} events/s\n"
        f"  total time:    {total:>10.2f} s\n"
    )
    if not delivered_all:
        out.write("  NOT everything was delivered; see `minlog status`\n")
        return exits.ERROR
    out.write(f"  delivery rate: {stats.delivered / max(delivered, 1e-9):>10,.0f} logs/s "
              f"(encode, sign, send, receive, validate, acknowledge)\n")
    return exits.OK
