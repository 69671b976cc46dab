"""`DeliveryCounters`: what this process's delivery did, per tenant, since it started.

The deliverer adds to them as it settles entries; `minlog.metrics` reads them (with the
store's totals) to make metrics. They count events, so they only grow; a restart starts
them again at zero, as Prometheus and OpenTelemetry expect of counters.
"""

from __future__ import annotations

import threading
from typing import Literal

import attrs

__all__ = ["Counter", "DeliveryCounters", "TenantCounts"]

Counter = Literal["delivered", "requests", "send_failures", "refused_requests",
                  "dead_lettered", "unattributed"]


@attrs.define
class TenantCounts:
    """The counters of one tenant (``""``: a single municipality)."""

    #: Entries the receiver took.
    delivered: int = 0
    #: Requests sent (each an ``AddRegistrations`` call), whatever their outcome.
    requests: int = 0
    #: Requests that failed for now (outage, timeout, 5xx, 429, STS): retried later.
    send_failures: int = 0
    #: Requests the receiver refused for good (their entries are then sent in halves).
    refused_requests: int = 0
    #: Entries this process made dead letters.
    dead_lettered: int = 0
    #: Failures the receiver reported without naming the entry.
    unattributed: int = 0


class DeliveryCounters:
    """Per-tenant `TenantCounts`, safe to add to from several delivery threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantCounts] = {}

    def add(self, tenant: str, counter: Counter, amount: int = 1) -> None:
        """Add ``amount`` to one counter of ``tenant``."""
        if amount:
            with self._lock:
                counts = self._tenants.get(tenant)
                if counts is None:
                    counts = self._tenants[tenant] = TenantCounts()
                setattr(counts, counter, getattr(counts, counter) + amount)

    def snapshot(self) -> dict[str, TenantCounts]:
        """A copy of every tenant's counters (tenants with nothing counted are absent)."""
        with self._lock:
            return {t: attrs.evolve(c) for t, c in self._tenants.items()}

    def total(self, counter: Counter) -> int:
        """One counter summed over the tenants."""
        with self._lock:
            return sum(getattr(c, counter) for c in self._tenants.values())
