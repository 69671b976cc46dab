"""What `MinLog.stats` and `MinLog.dead_letters` report."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from minlog.minlog2.registration import Registration

__all__ = ["DeadLetterInfo", "Stats", "TenantStats"]


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
