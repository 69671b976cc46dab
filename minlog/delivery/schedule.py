"""`DeliverySchedule`: whose batch goes next, and when. Pure: no I/O, no clock.

One installation may deliver for many municipalities (tenants, each identified by its CVR;
``""`` for a single one). A claim (`minlog.store.base.Store.claim`) gathers, inside its
transaction, what the store knows of each tenant with due work (`TenantDue`) and asks the
schedule (`DeliverySchedule.pick`) which one to serve:

* **fill**: a tenant is ready when it has a full batch (``batch_size`` due entries) or
  its oldest due entry has waited ``fill_wait`` seconds since it was accepted, so that
  requests carry full batches even when logs arrive one by one. A claim that asks for
  everything now (``fill=False``: ``flush``, ``close``, ``minlog drain``) does not wait.
* **rate limit**: a tenant is served only while under its `RateLimit` (``tenant_limits``
  overrides the default ``rate_limit`` per tenant; an override of None is "no limit"),
  counted on the send times the store keeps for it, so that the limit holds for every
  process and host on the store.
* **turns**: of the eligible tenants, the one served least recently goes first (the
  store's turn counter; never served first of all, ties by tenant), so that one
  municipality's backlog cannot starve another's.

When no tenant is eligible, `Pick.at` says when the first one becomes so: the worker
sleeps until then instead of asking again and again.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from minlog.delivery.policy import RateLimit

__all__ = ["DEFAULT_FILL_WAIT", "DeliverySchedule", "Pick", "TenantDue", "unscheduled"]

#: The default ``fill_wait`` (seconds): a partial batch waits at most ten minutes. Well
#: above the guidance's 180 s between requests (20 an hour), so partial batches use at
#: most 6 of a tenant's 20 requests an hour and leave the rest for full ones; a tenant
#: accepting 3,000 or more logs an hour sends full batches of 500 only.
DEFAULT_FILL_WAIT = 600.0


@attrs.frozen(slots=True)
class TenantDue:
    """What a store knows of one tenant with due work, at the time of a claim."""

    tenant: str
    #: Due entries (a store may stop counting at the batch size).
    due: int
    #: The accept time of its oldest due entry.
    oldest: float
    #: Its turn: 0 when never served; a larger turn was served more recently.
    turn: int = 0
    #: Its recent send times (the store keeps as many as its limit counts).
    sent: tuple[float, ...] = ()


@attrs.frozen(slots=True)
class Pick:
    """The answer of `DeliverySchedule.pick`: the tenant to serve now (None: none is
    eligible) and, when none is, the earliest time one may be (None: no due work)."""

    tenant: str | None
    at: float | None = None


def _limits(value: Mapping[str, RateLimit | None] | None) -> Mapping[str, RateLimit | None]:
    out = dict(value or {})
    for tenant, limit in out.items():
        if not isinstance(tenant, str):
            raise ValueError(f"tenant_limits: the tenant {tenant!r} is not a text (its CVR)")
        if limit is not None and not isinstance(limit, RateLimit):
            raise ValueError(f"tenant_limits[{tenant!r}]: must be a RateLimit or None "
                             f"(no limit)")
    return MappingProxyType(out)


@attrs.frozen(slots=True, eq=False)
class DeliverySchedule:
    """Batch size, fill wait and rate limits of delivery (see the module docstring)."""

    batch_size: int = 500
    fill_wait: float = 0.0
    rate_limit: RateLimit | None = None
    tenant_limits: Mapping[str, RateLimit | None] = attrs.field(
        default=None, converter=_limits)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch_size must be between 1 and 10000")
        if not (math.isfinite(self.fill_wait) and self.fill_wait >= 0):
            raise ValueError("fill_wait must be zero or more seconds")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ValueError("rate_limit must be a RateLimit or None (no limit)")

    @property
    def limited(self) -> bool:
        """Whether any tenant has a rate limit."""
        return self.rate_limit is not None or any(
            v is not None for v in self.tenant_limits.values())

    def limit_for(self, tenant: str) -> RateLimit | None:
        """The rate limit of ``tenant``: its override, else the default."""
        limits = self.tenant_limits
        return limits.get(tenant, self.rate_limit)

    def ready_at(self, row: TenantDue, now: float, *, fill: bool = True) -> float:
        """When ``row``'s tenant may be served: at or before ``now`` when it may now."""
        at = -math.inf
        if fill and row.due < self.batch_size:
            at = row.oldest + self.fill_wait
        limit = self.limit_for(row.tenant)
        if limit is not None:
            wait = limit.wait(sorted(row.sent), now)
            if wait > 0:
                at = max(at, now + wait)
        return at

    def pick(self, rows: Iterable[TenantDue], now: float, *, fill: bool = True) -> Pick:
        """The tenant to serve at ``now``: of those ready (`ready_at`), the one served
        least recently (lowest turn, then tenant); else when the first becomes ready."""
        best: TenantDue | None = None
        soonest: float | None = None
        for row in rows:
            at = self.ready_at(row, now, fill=fill)
            if at <= now:
                if best is None or (row.turn, row.tenant) < (best.turn, best.tenant):
                    best = row
            elif soonest is None or at < soonest:
                soonest = at
        if best is not None:
            return Pick(best.tenant)
        return Pick(None, soonest)

    def order(self, rows: Iterable[TenantDue], now: float, *, fill: bool = True
              ) -> list[TenantDue]:
        """The tenants ready at ``now``, least recently served first (the order in which a
        claim tries them when another host may be serving one)."""
        ready = [r for r in rows if self.ready_at(r, now, fill=fill) <= now]
        return sorted(ready, key=lambda r: (r.turn, r.tenant))

    def sent_after(self, tenant: str, sent: Iterable[float], now: float) -> tuple[float, ...]:
        """The send times to keep for ``tenant`` once it sends at ``now``: the latest as
        many as its limit counts (none without a limit). The latest, not the last added:
        then `RateLimit.wait` stays exact when hosts' clocks differ a little."""
        limit = self.limit_for(tenant)
        return () if limit is None else limit.keep(sent, now)

    def drain_seconds(self, tenant: str, entries: int) -> float | None:
        """Seconds ``tenant`` needs to send ``entries`` under its limit (None: no limit)."""
        limit = self.limit_for(tenant)
        return None if limit is None else limit.drain_seconds(entries, self.batch_size)


@functools.lru_cache(maxsize=16)
def unscheduled(batch_size: int) -> DeliverySchedule:
    """The schedule of a claim given none: no limits, no fill; turns still taken."""
    return DeliverySchedule(batch_size=max(1, min(batch_size, 10_000)))
