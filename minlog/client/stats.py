"""What `MinLog.stats` and `MinLog.dead_letters` report, and how `compose` makes a
`Stats` of the instance's counters, the store's counts per tenant and the deliverer's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from minlog.minlog2.registration import Registration
from minlog.store.base import StoreCounts

if TYPE_CHECKING:
    from minlog.delivery.deliverer import Deliverer
    from minlog.delivery.schedule import DeliverySchedule

__all__ = ["DeadLetterInfo", "Stats", "TenantStats", "compose", "tenant_stats"]


@attrs.frozen(slots=True)
class TenantStats:
    """The outbox of one tenant (its CVR; ``""`` for a single municipality): pending, in
    flight, dead, how long its oldest undelivered entry has waited, the entries delivered
    for it, and the seconds its backlog needs under its own rate limit (None: no limit).

    ``delivered`` is the store's count: the tenant's entries that every process and host
    on the store delivered since it was made (so ``minlog status``, which delivers
    nothing, shows it too). It used to be what this instance delivered; that count, all
    tenants together, is `Stats.delivered`."""

    pending: int
    in_flight: int
    dead: int
    oldest_pending_age: float | None
    delivered: int
    drain_seconds: float | None


@attrs.frozen(slots=True)
class Stats:
    """A snapshot of one `MinLog` (counters since it was opened) and of the shared outbox.

    ``late``: first-of-day logs of days before the hot window; ``beyond_horizon``: those
    older than the dedup horizon (accepted under ``beyond_horizon="deliver"``);
    ``unattributed``: failures the receiver reported without naming the entry (each was
    found by sending the entries of unknown fate again, in halves). ``drain_seconds``:
    the time the slowest tenant needs for its backlog under its own rate limit (tenants
    are limited apart and drain side by side); None when no tenant has a limit.
    ``tenants``: the outbox figures per tenant.
    """

    recorded: int
    first_of_day: int
    duplicates: int
    late: int
    beyond_horizon: int
    delivered: int
    pending: int
    in_flight: int
    dead: int
    oldest_pending_age: float | None
    drain_seconds: float | None
    hot_keys: int
    last_error: str | None
    #: Failures the receiver reported without naming the entry (each was then found by
    #: splitting its batch; never counted as delivered).
    unattributed: int = 0
    #: The same figures per tenant (`TenantStats`): every tenant with entries, dead
    #: letters, deliveries or a limit of its own (``tenant_limits``); ``""`` always
    #: when no tenant has a limit of its own.
    tenants: Mapping[str, TenantStats] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class DeadLetterInfo:
    """A dead letter with its registration opened (None when it cannot be opened)."""

    id: int
    code: str
    text: str
    attempts: int
    died_at: float
    registration: Registration | None


def compose(counters: Mapping[str, int], counts: Mapping[str, StoreCounts],
            deliverer: Deliverer, *, now: float, hot_keys: int) -> Stats:
    """`Stats` of an instance's recording ``counters`` (``recorded``, ``first_of_day``,
    ``duplicates``, ``late``, ``beyond_horizon``), the store's ``counts`` per tenant at
    ``now`` and what ``deliverer`` counted."""
    tenants = tenant_stats(counts, deliverer.schedule, now)
    totals = StoreCounts(
        sum(t.pending for t in tenants.values()),
        sum(t.in_flight for t in tenants.values()),
        sum(t.dead for t in tenants.values()), None)
    ages = [t.oldest_pending_age for t in tenants.values()
            if t.oldest_pending_age is not None]
    drains = [t.drain_seconds or 0.0 for t in tenants.values()]
    c = counters
    return Stats(
        recorded=c["recorded"], first_of_day=c["first_of_day"],
        duplicates=c["duplicates"], late=c["late"], beyond_horizon=c["beyond_horizon"],
        delivered=deliverer.delivered,
        pending=totals.pending, in_flight=totals.in_flight, dead=totals.dead,
        oldest_pending_age=max(ages) if ages else None,
        drain_seconds=max(drains) if deliverer.schedule.limited else None,
        hot_keys=hot_keys, last_error=deliverer.last_error,
        unattributed=deliverer.unattributed, tenants=tenants,
    )


def tenant_stats(counts: Mapping[str, StoreCounts], schedule: DeliverySchedule,
                 now: float) -> dict[str, TenantStats]:
    """`TenantStats` of every tenant with entries, dead letters or deliveries in the
    store (``counts``: `Store.tenant_counts`), or a limit of its own; ``""`` too when no
    tenant has one. ``delivered`` is the store's: by every process on it."""
    names = set(counts) | set(schedule.tenant_limits)
    if not schedule.tenant_limits:
        names.add("")
    out = {}
    none = StoreCounts(0, 0, 0, None)
    for tenant in sorted(names):
        c = counts.get(tenant, none)
        out[tenant] = TenantStats(
            pending=c.pending, in_flight=c.in_flight, dead=c.dead,
            oldest_pending_age=None if c.oldest_pending is None
            else max(0.0, now - c.oldest_pending),
            delivered=c.delivered,
            drain_seconds=schedule.drain_seconds(tenant, c.pending + c.in_flight))
    return out
