"""What `MinLog.stats` and `MinLog.dead_letters` report."""

from __future__ import annotations

import attrs

from minlog.minlog2.registration import Registration

__all__ = ["DeadLetterInfo", "Stats"]


@attrs.frozen(slots=True)
class Stats:
    """A snapshot of one `MinLog` (counters since it was opened) and of the shared outbox.

    ``late``: first-of-day logs of days before the hot window; ``beyond_horizon``: those
    older than the dedup horizon (accepted under ``beyond_horizon="deliver"``);
    ``unattributed``: failures the receiver reported without naming the entry (each was
    found by sending the entries of unknown fate again, in halves).
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


@attrs.frozen(slots=True)
class DeadLetterInfo:
    """A dead letter with its registration opened (None when it cannot be opened)."""

    id: int
    code: str
    text: str
    attempts: int
    died_at: float
    registration: Registration | None
