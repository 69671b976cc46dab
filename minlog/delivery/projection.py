"""`project`: will MinLog2's limits carry our day? A day's first-of-day logs
(`minlog.delivery.profile.DayProfile`) delivered under each municipality's limits,
simulated with the library's own scheduling code on a simulated clock.

The simulation is the delivery worker's loop with the store's claim in its place: at each
moment a worker is free, the tenants with due logs become `TenantDue` rows (their due
count, oldest accept time, turn and recent send times, as a claim reads them from the
store) and `DeliverySchedule.pick` chooses the one to serve (full batch or ``fill_wait``,
under its `RateLimit`, least recently served first). The worker sends one request of up
to ``batch_size`` logs, which takes ``request_seconds`` (all are taken: a day without
faults); when no tenant is ready it waits for the earliest change (`Pick.at`, a batch
that fills, a first log into an empty queue). Time is a number stepped from event to
event: nothing sleeps, and a day takes well under a second per municipality. The real
worker also polls once a second; it sends no earlier than this simulation.

A limit *carries the day* when every log of the day is delivered by the deadline:
midnight plus ``fill_wait`` plus one request (a log accepted just before midnight waits
for its batch to fill like any other). For a municipality whose limit does not carry the
day, `project` finds the smallest number of requests per the limit's window that does, at
the same batch size (bisection over the simulation of that municipality alone).
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from minlog.delivery.policy import RateLimit
from minlog.delivery.profile import DAY_SECONDS, DayProfile
from minlog.delivery.schedule import DEFAULT_FILL_WAIT, DeliverySchedule, TenantDue
from minlog.errors import ConfigurationError

__all__ = ["GUIDANCE", "Projection", "TenantDay", "clock_text", "limit_text", "project"]

#: MinLog2's public guidance: 20 requests an hour (`RateLimit.guidance`).
GUIDANCE: Final = RateLimit.guidance()


def clock_text(seconds: float) -> str:
    """Seconds from local midnight as ``HH:MM`` (``24:05`` for five past the next)."""
    minutes = int(seconds // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def limit_text(limit: RateLimit | None) -> str:
    """``20/h``, ``5/60 s`` or ``no limit``."""
    if limit is None:
        return "no limit"
    if limit.per == 3600:
        return f"{limit.requests}/h"
    return f"{limit.requests}/{limit.per:g} s"


@attrs.frozen(slots=True)
class TenantDay:
    """One municipality's day under its limit."""

    tenant: str
    #: The day's first-of-day logs, and per local hour.
    logs: int
    hourly: tuple[int, ...]
    limit: RateLimit | None
    #: Requests sent by the deadline, and the logs they carried on average.
    requests: int
    entries_per_request: float
    #: The largest backlog (logs accepted, not yet delivered) and when (seconds from
    #: local midnight).
    peak: int
    peak_at: float
    #: When the last log of the day was delivered (None: not by the deadline).
    drained_at: float | None
    #: The backlog at midnight: what the next day starts with.
    left_at_midnight: int
    #: The longest a log waited from accept to delivery (None: not all were delivered).
    longest_wait: float | None
    #: The backlog at 00:00, ``step``, 2 ``step``, ... 24:00.
    backlog: tuple[int, ...]
    #: When the limit does not carry the day: the smallest number of requests per the
    #: limit's window that does, at the same batch size (None: it carries, or no limit
    #: would: the delivery threads cannot send fast enough).
    needed: int | None = None

    @property
    def carries(self) -> bool:
        return self.drained_at is not None

    @property
    def needed_limit(self) -> RateLimit | None:
        """`needed` as a `RateLimit` over the window of the current limit."""
        if self.needed is None:
            return None
        return RateLimit(self.needed, self.limit.per if self.limit else 3600.0)

    @property
    def verdict(self) -> str:
        if self.carries:
            return "carries the day"
        if self.needed is not None:
            return (f"cannot carry the day: needs {limit_text(self.needed_limit)} "
                    f"({self.left_at_midnight:,} logs left at midnight)")
        return ("cannot carry the day even without a limit: the delivery threads cannot "
                f"send fast enough ({self.left_at_midnight:,} logs left at midnight)")

    def to_dict(self) -> dict[str, Any]:
        limit = self.limit
        return {
            "tenant": self.tenant, "logs": self.logs, "hourly": list(self.hourly),
            "limit": None if limit is None else {"requests": limit.requests,
                                                 "per": limit.per},
            "requests": self.requests,
            "entries_per_request": round(self.entries_per_request, 1),
            "peak": self.peak, "peak_at": self.peak_at, "peak_at_clock": clock_text(
                self.peak_at),
            "drained_at": self.drained_at,
            "drained_at_clock": None if self.drained_at is None else clock_text(
                self.drained_at),
            "left_at_midnight": self.left_at_midnight,
            "longest_wait": self.longest_wait, "carries": self.carries,
            "needed": None if self.needed is None else {
                "requests": self.needed, "per": limit.per if limit else 3600.0},
            "verdict": self.verdict, "backlog": list(self.backlog),
        }


@attrs.frozen(slots=True)
class Projection:
    """The day of every municipality of a profile under its limit (`project`)."""

    source: str
    batch_size: int
    fill_wait: float
    request_seconds: float
    workers: int
    #: The backlog curves' step (seconds).
    step: int
    #: The time by which a day must be delivered to be carried (seconds from midnight).
    deadline: float
    #: The delivery threads' busy time over the day, as a fraction of theirs.
    busy: float
    tenants: tuple[TenantDay, ...]

    @property
    def ok(self) -> bool:
        """Whether every municipality's limit carries the day."""
        return all(t.carries for t in self.tenants)

    @property
    def failed(self) -> tuple[TenantDay, ...]:
        return tuple(t for t in self.tenants if not t.carries)

    def tenant(self, name: str) -> TenantDay:
        for t in self.tenants:
            if t.tenant == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "batch_size": self.batch_size,
            "fill_wait": self.fill_wait, "request_seconds": self.request_seconds,
            "workers": self.workers, "step": self.step, "deadline": self.deadline,
            "deadline_clock": clock_text(self.deadline), "busy": round(self.busy, 4),
            "logs": sum(t.logs for t in self.tenants),
            "ok": self.ok, "tenants": [t.to_dict() for t in self.tenants],
        }

    def to_json(self) -> str:
        """`to_dict` as one JSON document."""
        return json.dumps(self.to_dict(), indent=2)


# ----------------------------------------------------------------------------- simulation


@attrs.define
class _Queue:
    """One tenant's logs in the simulation: accept times, how many claimed, its turn and
    send times (what the store keeps), and its requests ``(claimed at, first, count)``."""

    arrivals: Sequence[float]
    claimed: int = 0
    turn: int = 0
    sent: tuple[float, ...] = ()
    requests: list[tuple[float, int, int]] = attrs.Factory(list)


def _simulate(arrivals: Mapping[str, Sequence[float]], schedule: DeliverySchedule, *,
              request_seconds: float, workers: int, until: float) -> dict[str, _Queue]:
    """Deliver ``arrivals`` (per tenant, in time order) as the worker does, until every
    log is claimed or ``until``."""
    queues = {t: _Queue(a) for t, a in sorted(arrivals.items())}
    batch = schedule.batch_size
    remaining = sum(len(a) for a in arrivals.values())
    free = [0.0] * workers  # when each delivery thread is free
    served = 0
    now = min((a[0] for a in arrivals.values() if a), default=0.0)
    while remaining:
        worker = heapq.heappop(free)
        now = max(now, worker)
        if now > until:
            break
        rows = []
        for tenant, q in queues.items():
            a, c = q.arrivals, q.claimed
            if c < len(a) and a[c] <= now:
                due = bisect.bisect_right(a, now, c) - c
                rows.append(TenantDue(tenant, due, a[c], q.turn, q.sent))
        pick = schedule.pick(rows, now)
        if pick.tenant is not None:
            q = queues[pick.tenant]
            n = min(batch, bisect.bisect_right(q.arrivals, now, q.claimed) - q.claimed)
            q.requests.append((now, q.claimed, n))
            q.claimed += n
            remaining -= n
            served += 1
            q.turn = served
            q.sent = schedule.sent_after(pick.tenant, q.sent, now)
            heapq.heappush(free, now + request_seconds)
            continue
        heapq.heappush(free, worker)
        times = [] if pick.at is None else [pick.at]
        for q in queues.values():
            a, c = q.arrivals, q.claimed
            if c >= len(a):
                continue
            if a[c] > now:  # the next log into an empty queue
                times.append(a[c])
            elif c + batch - 1 < len(a) and a[c + batch - 1] > now:  # a batch fills
                times.append(a[c + batch - 1])
        if not times:  # pragma: no cover - every claimable log has a time
            break
        now = min(times)
    return queues


def _carried(q: _Queue, request_seconds: float, deadline: float) -> bool:
    return q.claimed == len(q.arrivals) and (
        not q.requests or q.requests[-1][0] + request_seconds <= deadline)


def _summary(tenant: str, profile: DayProfile, q: _Queue, limit: RateLimit | None, *,
             request_seconds: float, deadline: float, step: int) -> TenantDay:
    a = q.arrivals
    done = [t + request_seconds for t, _, _ in q.requests]
    kept = bisect.bisect_right(done, deadline)
    cum: list[int] = []
    total = 0
    for _, _, n in q.requests[:kept]:
        total += n
        cum.append(total)

    def delivered_by(t: float) -> int:
        i = bisect.bisect_right(done, t, 0, kept)
        return cum[i - 1] if i else 0

    peak, peak_at = 0, 0.0
    for i, d in enumerate(done[:kept]):
        pending = bisect.bisect_right(a, d) - (cum[i - 1] if i else 0)
        if pending > peak:
            peak, peak_at = pending, d
    end = min(float(DAY_SECONDS), deadline)
    pending = bisect.bisect_right(a, end) - delivered_by(end)
    if pending > peak:
        peak, peak_at = pending, a[-1] if a else end
    carried = _carried(q, request_seconds, deadline)
    sent = q.requests[:kept]
    return TenantDay(
        tenant=tenant, logs=len(a), hourly=profile.hourly(tenant), limit=limit,
        requests=len(sent),
        entries_per_request=(sum(n for _, _, n in sent) / len(sent)) if sent else 0.0,
        peak=peak, peak_at=peak_at,
        drained_at=(done[-1] if done else 0.0) if carried else None,
        left_at_midnight=len(a) - delivered_by(float(DAY_SECONDS)),
        longest_wait=max((t + request_seconds - a[first] for t, first, _ in sent),
                         default=0.0) if carried else None,
        backlog=tuple(bisect.bisect_right(a, t) - delivered_by(t)
                      for t in range(0, DAY_SECONDS + 1, step)))


def _needed(arrivals: Sequence[float], limit: RateLimit | None, *, batch_size: int,
            fill_wait: float, request_seconds: float, workers: int, deadline: float
            ) -> int | None:
    """The smallest requests per ``limit``'s window that carry ``arrivals`` alone (None:
    not even without a limit)."""
    def carries(requests: int | None) -> tuple[bool, int]:
        rate = None if requests is None else RateLimit(requests, per)
        schedule = DeliverySchedule(batch_size, fill_wait, rate)
        q = _simulate({"": arrivals}, schedule, request_seconds=request_seconds,
                      workers=workers, until=deadline)[""]
        return _carried(q, request_seconds, deadline), len(q.requests)

    per = limit.per if limit is not None else 3600.0
    ok, unlimited = carries(None)
    if not ok or (limit is not None and carries(limit.requests)[0]):
        return None  # the delivery threads, not the limit, hold it back
    low = limit.requests if limit is not None else 0  # does not carry
    high = max(unlimited, low + 1)  # never binds: as without a limit
    while high - low > 1:
        mid = (low + high) // 2
        if carries(mid)[0]:
            high = mid
        else:
            low = mid
    return high


def project(profile: DayProfile, *, batch_size: int = 500,
            rate_limit: RateLimit | None = GUIDANCE,
            tenant_limits: Mapping[str, RateLimit | None] | None = None,
            fill_wait: float = DEFAULT_FILL_WAIT, request_seconds: float = 2.0,
            workers: int = 1, step: int = 300, needed: bool = True) -> Projection:
    """Deliver ``profile``'s day under the limits (``rate_limit`` for every municipality,
    ``tenant_limits`` overriding it per tenant, None meaning no limit; ``batch_size``
    logs per request; ``fill_wait`` as `minlog.MinLog`'s) with ``workers`` delivery
    threads whose requests take ``request_seconds``; the backlog every ``step`` seconds.
    With ``needed``, say for each municipality whose limit does not carry the day what
    limit would."""
    try:
        schedule = DeliverySchedule(batch_size, fill_wait, rate_limit, tenant_limits)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    if not (math.isfinite(request_seconds) and 0 < request_seconds <= 3600):
        raise ConfigurationError("request_seconds: must be more than 0 and at most 3600")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ConfigurationError("workers: must be a whole number from 1 to 64")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1 or DAY_SECONDS % step:
        raise ConfigurationError("step: must divide a day (86,400 s) into whole seconds, "
                                 "e.g. 60 or 300")
    deadline = DAY_SECONDS + fill_wait + request_seconds
    arrivals = {t: profile.arrivals(t) for t in profile.tenants}
    queues = _simulate(arrivals, schedule, request_seconds=request_seconds, workers=workers,
                       until=deadline)
    days = []
    for tenant, q in queues.items():
        limit = schedule.limit_for(tenant)
        day = _summary(tenant, profile, q, limit, request_seconds=request_seconds,
                       deadline=deadline, step=step)
        if needed and not day.carries:
            day = attrs.evolve(day, needed=_needed(
                q.arrivals, limit, batch_size=batch_size, fill_wait=fill_wait,
                request_seconds=request_seconds, workers=workers, deadline=deadline))
        days.append(day)
    busy = sum(min(t + request_seconds, deadline) - t
               for q in queues.values() for t, _, _ in q.requests)
    return Projection(
        source=profile.source, batch_size=batch_size, fill_wait=fill_wait,
        request_seconds=request_seconds, workers=workers, step=step, deadline=deadline,
        busy=busy / (workers * deadline), tenants=tuple(days))
