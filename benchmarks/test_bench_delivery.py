"""Delivery throughput: outbox -> encode -> DGWS header -> HTTP -> FakeNSP -> decode -> ack.

The reference receiver (FakeNSP, with its strict XSD validation) runs in a separate
process, as MinLog2 is a separate service; the library side runs here. Batches of 500.
Goal: >= 20,000 entries/s, so the library is never the bottleneck. Prints the figure and
stores it in ``extra_info`` and ``.benchmarks/minlog-delivery-<mode>.json``.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minlog import Access, Employee, MinLog, Organisation
from minlog.bench.receiver import Receiver
from minlog.core.clock import FixedClock
from minlog.minlog2 import Minlog2Transport
from minlog.testing import make_test_certificate

CVR = "12345678"


def _fill(log: MinLog, n: int) -> None:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    org = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
    log.record_many([Access("0303303456", Employee(f"0101{70 + i % 30:02d}{i % 10000:04d}",
                                                   name=f"Medarbejder {i}"),
                            org, "Opslag i Fælles Stamkort", now + dt.timedelta(days=i // 10000))
                     for i in range(n)])


@pytest.mark.parametrize("threads", [1, 2])
def test_delivery_throughput(benchmark: Any, threads: int,
                             save_figures: Callable[[str, dict[str, Any]], None]) -> None:
    """Entries per second through the whole delivery path with batches of 500, with one
    delivery thread (the default) and with two (``delivery_threads=2``: one prepares and
    settles a batch while the other's request is at the receiver)."""
    full = not getattr(benchmark, "disabled", True)
    n = 20_000 if full else 1_000
    at = time.time()  # the receiver's clock; the library's runs ten days ahead
    p12, password = make_test_certificate(CVR, "Benchkommune")
    rates: list[float] = []
    with Receiver(CVR, at) as receiver:
        def one_round() -> float:
            folder = Path(tempfile.mkdtemp(prefix="minlog-bench-"))
            transport = Minlog2Transport(service_url=receiver.service_url,
                                         sts_url=receiver.sts_url,
                                         credentials=(p12, password), cvr=CVR,
                                         system_name="Bench", care_provider_name="Bench")
            log = MinLog.open(folder / "m.sqlite", transport=transport, system_name="Bench",
                              batch_size=500, start_worker=False,
                              clock=FixedClock(at + 10 * 86400), delivery_threads=threads,
                              poll=0.01, rate_limit=None, fill_wait=0.0)
            _fill(log, n)
            log._start_worker = True  # start delivering only now, when the outbox is full
            started = time.perf_counter()
            assert log.flush(timeout=120)
            elapsed = time.perf_counter() - started
            log.close(timeout=1)
            rates.append(n / elapsed)
            return elapsed

        benchmark.pedantic(one_round, rounds=3 if full else 1, iterations=1)
        received = receiver.stop()["accepted"]
    assert received == n * len(rates)
    best, median = max(rates), sorted(rates)[len(rates) // 2]
    benchmark.extra_info.update({"entries": n, "threads": threads,
                                 "median_entries_per_s": median,
                                 "best_entries_per_s": best, "goal": 20_000})
    print(f"\ndelivery to FakeNSP over loopback HTTP, batches of 500, {threads} thread(s): "
          f"median {median:,.0f} "
          f"entries/s, best {best:,.0f} (goal >= 20,000)")
    save_figures(f"delivery-{threads}", benchmark.extra_info)
