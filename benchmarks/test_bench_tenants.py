"""Delivery for 50 municipalities of uneven backlog, on one SQLite store.

One tenant holds half the backlog, the rest is spread unevenly (a long tail). Delivery
runs as ``minlog drain`` does (`Deliverer.rushing`: no batch waits to fill), with no
rate limit and `MemoryTransport`, so that what is measured is the scheduled claim itself
(one tenant per lease, turns, the send recorded in the store) and the fairness of the
turns: every tenant's first request should come within the first round of 50 requests,
however large the backlog of the tenants before it. Prints entries/s and the spread of
the first-service positions; stores them in ``extra_info`` and
``.benchmarks/minlog-tenants-<mode>.json``.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from minlog import Access, Employee, MemoryTransport, Organisation
from minlog.core.clock import FixedClock
from minlog.delivery.deliverer import Deliverer
from minlog.minlog2 import entry
from minlog.store import NewEntry, OutboxEntry
from minlog.store.sqlite import SQLiteStore

TENANTS = 50
AT = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
ACCESS = Access("0202802345", Employee("0101701234", name="Anne Jensen"),
                Organisation("380000000000001"), "Opslag", AT)


def _open(e: OutboxEntry) -> entry.Fields:
    return entry.decode_fields(e.payload)


def _backlogs(total: int) -> dict[str, int]:
    """Half the entries (and what rounding leaves) for the first tenant, the rest
    falling off as 1/rank."""
    weights = [1.0 / (rank + 1) for rank in range(TENANTS - 1)]
    scale = (total // 2) / sum(weights)
    sizes = {f"{10_000_000 + i:08d}": max(1, int(w * scale)) for i, w in enumerate(weights)}
    return {f"{20_000_000:08d}": total - sum(sizes.values())} | sizes


def _fill(store: SQLiteStore, backlogs: dict[str, int]) -> int:
    """The tenants' entries in acceptance order: the largest backlog first (the worst
    case for a queue in acceptance order)."""
    rows = []
    n = 0
    for tenant, count in backlogs.items():
        for _ in range(count):
            key = n.to_bytes(16, "big")
            rows.append(NewEntry(1, key, entry.encode_access(
                attrs.evolve(ACCESS, at=AT), "Bench", key.hex(), "Anne Jensen", None), tenant))
            n += 1
    for start in range(0, len(rows), 5000):
        store.append(rows[start : start + 5000], AT.timestamp())
    return n


class _Tenants(MemoryTransport):
    """`MemoryTransport` that notes the tenant of each request (from the sequence
    numbers the benchmark chose) in order."""

    def __init__(self, tenant_of: dict[str, str]) -> None:
        super().__init__()
        self.tenant_of = tenant_of
        self.order: list[str] = []

    def send(self, registrations: Any) -> Any:
        self.order.append(self.tenant_of[registrations[0].sequence_number])
        return super().send(registrations)


def test_delivery_for_fifty_tenants(benchmark: Any,
                                    save_figures: Callable[[str, dict[str, Any]], None]
                                    ) -> None:
    """Entries per second to `MemoryTransport` with 50 tenants of uneven backlog, and the
    spread of the tenants' first-service positions (0 to 49 when every tenant is served
    in the first round of requests)."""
    full = not getattr(benchmark, "disabled", True)
    total = 100_000 if full else 5_000
    backlogs = _backlogs(total)
    rates: list[float] = []
    spreads: list[int] = []

    def one_round() -> float:
        folder = Path(tempfile.mkdtemp(prefix="minlog-bench-"))
        store = SQLiteStore(folder / "m.sqlite", durability="process")
        n = _fill(store, backlogs)
        tenant_of = {}
        i = 0
        for tenant, count in backlogs.items():
            for _ in range(count):
                tenant_of[i.to_bytes(16, "big").hex()] = tenant
                i += 1
        transport = _Tenants(tenant_of)
        d = Deliverer(store, transport, _open, batch_size=500, rate_limit=None,
                      clock=FixedClock(AT + dt.timedelta(minutes=5)))
        started = time.perf_counter()
        with d.rushing():
            while d.step().claimed:
                pass
        elapsed = time.perf_counter() - started
        store.close()
        assert transport.count == n
        first: dict[str, int] = {}
        for position, tenant in enumerate(transport.order):
            first.setdefault(tenant, position)
        assert len(first) == TENANTS
        spreads.append(max(first.values()) - min(first.values()))
        rates.append(n / elapsed)
        return elapsed

    benchmark.pedantic(one_round, rounds=3 if full else 1, iterations=1)
    best, median = max(rates), sorted(rates)[len(rates) // 2]
    spread = max(spreads)
    benchmark.extra_info.update({"entries": total, "tenants": TENANTS, "batch_size": 500,
                                 "median_entries_per_s": median, "best_entries_per_s": best,
                                 "first_service_spread": spread,
                                 "largest_backlog": max(backlogs.values()),
                                 "smallest_backlog": min(backlogs.values())})
    print(f"\ndelivery for {TENANTS} tenants of uneven backlog ({total:,} entries, "
          f"{max(backlogs.values()):,} to {min(backlogs.values()):,} each), batches of 500 "
          f"to MemoryTransport: median {median:,.0f} entries/s, best {best:,.0f}; every "
          f"tenant first served within requests 0..{spread} (one round: 0..{TENANTS - 1})")
    assert spread <= TENANTS - 1
    save_figures("tenants", benchmark.extra_info)
