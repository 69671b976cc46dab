"""``minlog demo``: a morning peak for a sample municipality, end to end."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import TextIO

from minlog.client.facade import MinLog
from minlog.core.clock import SYSTEM_CLOCK, FixedClock
from minlog.core.model import Access
from minlog.minlog2 import MemoryTransport, Minlog2Transport, Transport
from minlog.testing.workload import MorningPeak

__all__ = ["run_demo"]


def _bar(out: TextIO, done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.perf_counter() - started, 1e-9)
    out.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:>9,}/{total:,} events "
              f"{rate:>11,.0f}/s")
    out.flush()


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    folder: Path = args.dir or Path(tempfile.mkdtemp(prefix="minlog-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "minlog.sqlite"
    workload = MorningPeak(employees=args.employees, citizens=args.citizens)
    out.write(f"minlog demo: morning peak of {workload.employees} care workers, "
              f"{workload.citizens} citizens, {workload.day:%Y-%m-%d}\n")
    out.write(f"  store: {store}\n")
    events = workload.events()
    with contextlib.ExitStack() as stack:
        transport = _transport(args, stack, out)
        return _run(args, out, store, events, transport, stack)


def _transport(args: argparse.Namespace, stack: contextlib.ExitStack, out: TextIO) -> Transport:
    """The best transport available: MinLog2 over HTTP with the full DGWS flow, to the
    built-in reference receiver (FakeNSP) on loopback; in memory with ``--memory``."""
    if args.memory:
        out.write("  receiver: in-memory transport\n")
        return MemoryTransport()
    from minlog.testing import FakeNSP, make_test_certificate

    cvr = "29189846"
    nsp = stack.enter_context(FakeNSP(cvr=cvr))
    p12, password = make_test_certificate(cvr, "Demokommune")
    out.write(f"  receiver: reference MinLog2 receiver (FakeNSP) at {nsp.service_url}\n"
              f"            SOAP AddRegistrations, DGWS system ID card from its STS\n")
    stack.callback(lambda: out.write(
        f"  receiver got: {len(nsp.received):,} registrations in {nsp.calls} requests, "
        f"{nsp.cards_issued} ID card(s) issued\n"))
    return Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url,
                            credentials=(p12, password), cvr=cvr, system_name="minlog demo",
                            care_provider_name="Demokommune")


def _run(args: argparse.Namespace, out: TextIO, store: Path, events: list[Access],
         transport: Transport, stack: contextlib.ExitStack) -> int:
    started = time.perf_counter()
    first = 0
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
                _bar(out, done, len(events), started)
        recorded = time.perf_counter() - started
        out.write("\n  delivering ...\n")
        delivered_all = log.flush(timeout=120)
        total = time.perf_counter() - started
        stats = log.stats()
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
        return 1
    delivered = time.perf_counter() - started - recorded
    out.write(f"  delivery rate: {stats.delivered / max(delivered, 1e-9):>10,.0f} logs/s "
              f"(encode, sign, send, receive, validate, acknowledge)\n")
    return 0
