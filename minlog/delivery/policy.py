"""Delivery policies as frozen values: they compute delays, they never sleep.

* `RetryPolicy`: exponential backoff with jitter and the receiver's ``Retry-After`` as a
  floor; never gives up in time (an outbox keeps).
* `RateLimit`: at most ``requests`` sends in any window of ``per`` seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import attrs

__all__ = ["RateLimit", "RetryPolicy"]


@attrs.frozen(slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; never gives up in time.

    The n-th consecutive failure of an entry waits ``initial * multiplier**(n-1)`` seconds,
    capped at ``maximum``, spread by ±``jitter`` (a fraction). A receiver's ``Retry-After``
    is honoured as a floor.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("RetryPolicy: need 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy: jitter must be in [0, 1)")

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        spread = base * self.jitter * (2 * rand() - 1)
        wait = base + spread
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(wait, 0.0)


@attrs.frozen(slots=True)
class RateLimit:
    """At most ``requests`` sends in any window of ``per`` seconds.

    MinLog2's public operating guidance is about 20 requests an hour of about 500 entries
    each (`RateLimit.guidance()`): 10,000 entries an hour. A stricter limit protects the
    shared service; a backlog larger than the limit can drain shows in ``stats()``.
    """

    requests: int
    per: float

    def __attrs_post_init__(self) -> None:
        if self.requests < 1 or self.per <= 0:
            raise ValueError("RateLimit: requests >= 1 and per > 0")

    @classmethod
    def guidance(cls) -> RateLimit:
        """The public guidance: 20 requests per hour."""
        return cls(20, 3600.0)

    def wait(self, sent_at: Sequence[float], now: float) -> float:
        """Seconds until one more request is allowed, given the send times so far (in
        time order). A send time after ``now`` (another host's clock a little ahead)
        counts as recent: the limit errs on the safe side."""
        recent = [t for t in sent_at if t > now - self.per]
        if len(recent) < self.requests:
            return 0.0
        return max(0.0, recent[-self.requests] + self.per - now)

    def keep(self, sent_at: Iterable[float], now: float) -> tuple[float, ...]:
        """The send times worth keeping once one more is sent at ``now``: the latest
        ``requests`` of them, in time order (all that `wait` needs)."""
        return tuple(sorted([*sent_at, now])[-self.requests:])

    def drain_seconds(self, entries: int, batch_size: int) -> float:
        """Seconds needed to send ``entries`` at this limit."""
        requests = -(-entries // batch_size)
        return max(0.0, (requests - self.requests) * self.per / self.requests)
