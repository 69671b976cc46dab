"""`BacklogWatch`: warn an operator, in the log, when undelivered entries grow old.

After a delivery round the facade asks `BacklogWatch.due` (at most once a minute, by the
clock's monotonic time) and, when due, gives it each tenant's outbox counts. When the
oldest pending entry of a tenant has waited longer than the threshold, a ``backlog``
WARNING is logged, again every ``repeat`` seconds while it lasts, and ``backlog_cleared``
once it is over: an operator hears of a receiver outage or a rate limit that cannot keep
up before a citizen notices a missing log. No I/O here: the counts are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from minlog.events import emit
from minlog.store.base import StoreCounts

__all__ = ["BacklogWatch"]

_NOTHING = StoreCounts(0, 0, 0, None)


class BacklogWatch:
    """Backlog warnings for entries older than ``threshold`` seconds (None: never)."""

    def __init__(self, threshold: float | None, *, every: float = 60.0,
                 repeat: float = 900.0) -> None:
        if threshold is not None and threshold <= 0:
            raise ValueError("backlog_warning must be positive seconds, or None")
        self.threshold = threshold
        self.every = every
        self.repeat = repeat
        self._next_check: float | None = None
        self._warned: dict[str, float] = {}  # tenant -> monotonic time of the last warning

    def due(self, monotonic: float) -> bool:
        """Whether to look at the counts now (then not again for ``every`` seconds)."""
        if self.threshold is None:
            return False
        if self._next_check is not None and monotonic < self._next_check:
            return False
        self._next_check = monotonic + self.every
        return True

    def check_all(self, counts: Mapping[str, StoreCounts], now: float,
                  monotonic: float) -> None:
        """`check` every tenant of ``counts`` (the store's `tenant_counts`), and clear
        the warnings of tenants that have nothing left."""
        for tenant in sorted(set(counts) | set(self._warned)):
            self.check(tenant, counts.get(tenant, _NOTHING), now, monotonic)

    def check(self, tenant: str, counts: StoreCounts, now: float, monotonic: float) -> None:
        """Log ``backlog`` or ``backlog_cleared`` for ``tenant`` as its counts say."""
        threshold = self.threshold
        if threshold is None:
            return
        age = None if counts.oldest_pending is None else max(0.0, now - counts.oldest_pending)
        pending = counts.pending + counts.in_flight
        if age is not None and age > threshold:
            last = self._warned.get(tenant)
            if last is None or monotonic - last >= self.repeat:
                self._warned[tenant] = monotonic
                emit("backlog", "the oldest of %d undelivered entries has waited %.0f s "
                     "(more than %.0f s): is the receiver reachable, and can the rate "
                     "limit keep up?", pending, age, threshold, tenant=tenant,
                     pending=pending, oldest_pending_age=round(age, 1), threshold=threshold)
        elif self._warned.pop(tenant, None) is not None:
            emit("backlog_cleared", "the backlog is under %.0f s again (%d undelivered)",
                 threshold, pending, tenant=tenant, pending=pending, threshold=threshold)
