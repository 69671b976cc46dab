"""Workload shaping for `minlog bench`: the morning peak with a vendor's own volumes.

`minlog.testing.workload.MorningPeak` generates the events (care workers starting between
07:00 and 07:30 on a fixed day, each visiting ``visits`` citizens and opening each record
``opens`` times on average). This module shapes it and cuts it up for the runner:

* `peak_for` (scaled from the defaults) and `shaped` (from a count of first-of-day logs);
* `first_accesses` (the first access of each (employee, citizen)) and `hot_set_events`
  (that many distinct first-of-day accesses of the workload's day);
* `Prepared`: the events built once (not timed: building an `Access` is the audit hook's
  cost), each caller thread's share (by employee, as an EOJ's sessions would spread over
  its request threads), the busiest minute's arrival rate, and the instant the library's
  clock is set to (just after the morning, on the workload's fixed day, whatever today is).

The benchmarks in ``benchmarks/`` use the same functions (one implementation).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any, Final

import attrs

from minlog.core.model import Access
from minlog.errors import ConfigurationError
from minlog.testing.workload import MorningPeak

__all__ = ["Prepared", "busiest_rate", "describe", "first_accesses", "hot_set_events",
           "peak_for", "prepare", "shaped"]

#: Citizens per care worker in the default morning peak (6,000 / 400).
CITIZENS_PER_EMPLOYEE: Final = 15


def peak_for(scale: float, **overrides: Any) -> MorningPeak:
    """The default morning peak with ``scale`` times the employees and the citizens."""
    base = MorningPeak()
    return MorningPeak(employees=max(1, round(base.employees * scale)),
                       citizens=max(base.visits, round(base.citizens * scale)), **overrides)


def shaped(first_of_day: int, **overrides: Any) -> MorningPeak:
    """A morning peak with (about) ``first_of_day`` first-of-day logs: every care worker
    makes ``visits`` of them (one per citizen visited), so ``first_of_day / visits``
    workers, and 15 citizens per worker unless ``citizens`` is given."""
    if first_of_day < 1:
        raise ConfigurationError("first_of_day: must be at least 1")
    visits = int(overrides.pop("visits", MorningPeak().visits))
    employees = max(1, math.ceil(first_of_day / max(visits, 1)))
    citizens = int(overrides.pop("citizens", max(visits, CITIZENS_PER_EMPLOYEE * employees)))
    return MorningPeak(employees=employees, citizens=citizens, visits=visits, **overrides)


def check(peak: MorningPeak) -> None:
    """Refuse volumes that cannot make a morning (a `ConfigurationError` naming the field)."""
    for name in ("employees", "citizens", "visits", "units"):
        if getattr(peak, name) < 1:
            raise ConfigurationError(f"{name}: must be at least 1")
    if peak.citizens < peak.visits:
        raise ConfigurationError("citizens: must be at least the visits per care worker")
    if peak.opens < 1:
        raise ConfigurationError("opens: must be at least 1 (the first open of a visit)")
    if peak.gap < 0 or peak.visit_minutes <= 0 or peak.spread_minutes < 0:
        raise ConfigurationError("gap, visit_minutes, spread_minutes: must not be negative")


def first_accesses(events: Sequence[Access]) -> list[Access]:
    """The first access of each (employee, citizen) pair (one day), in order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for a in events:
        pair = (a.employee.id, a.citizen)
        if pair not in seen:
            seen.add(pair)
            out.append(a)
    return out


def hot_set_events(n: int, day_of: MorningPeak | None = None) -> list[Access]:
    """``n`` distinct first-of-day accesses of one day (the day of ``day_of``, default the
    morning peak's), in time order: each care worker opens each citizen once."""
    base = day_of or MorningPeak()
    peak = MorningPeak(employees=-(-n // base.visits), citizens=max(base.visits, n // 4),
                       visits=base.visits, opens=1.0, day=base.day)
    events = first_accesses(peak.events())[:n]
    if len(events) != n:  # pragma: no cover - the generator's routes are distinct
        raise AssertionError(f"wanted {n} distinct accesses, made {len(events)}")
    return events


def busiest_rate(events: Sequence[Access], window: float = 60.0) -> float:
    """The most events in any ``window`` seconds of the events' own times, per second:
    the real peak arrival rate of the morning."""
    times = sorted(a.at.timestamp() for a in events)
    most = 0
    for i, t in enumerate(times):
        most = max(most, bisect.bisect_right(times, t + window, lo=i) - i)
    return most / window


@attrs.frozen
class Prepared:
    """A morning built once: its events, each caller thread's share, and its clock."""

    peak: MorningPeak
    events: list[Access] = attrs.field(repr=False)
    first_of_day: int
    #: For each caller thread, the indexes (into ``events``) of its events, in order.
    shares: list[list[int]] = attrs.field(repr=False)
    busiest_per_s: float
    #: POSIX seconds the library's clock starts at: a minute after the last event.
    clock_at: float

    @property
    def duplicates(self) -> int:
        return len(self.events) - self.first_of_day


def prepare(peak: MorningPeak, threads: int) -> Prepared:
    """Build the events of ``peak`` and split them among ``threads`` caller threads: every
    event of a care worker goes to the same thread (worker number modulo threads)."""
    check(peak)
    if threads < 1:
        raise ConfigurationError("threads: must be at least 1")
    events = peak.events()
    if not events:
        raise ConfigurationError("the workload holds no events")
    workers: dict[str, int] = {}
    shares: list[list[int]] = [[] for _ in range(threads)]
    for i, a in enumerate(events):
        w = workers.setdefault(a.employee.id, len(workers))
        shares[w % threads].append(i)
    return Prepared(
        peak=peak, events=events, first_of_day=len(first_accesses(events)), shares=shares,
        busiest_per_s=busiest_rate(events),
        clock_at=max(a.at.timestamp() for a in events) + 60.0)


def describe(peak: MorningPeak) -> dict[str, Any]:
    """The workload's parameters, for reports."""
    return {
        "employees": peak.employees, "citizens": peak.citizens, "visits": peak.visits,
        "opens": peak.opens, "gap_s": peak.gap, "visit_minutes": peak.visit_minutes,
        "units": peak.units, "day": peak.day.isoformat(), "start": peak.start.isoformat(),
        "spread_minutes": peak.spread_minutes, "seed": peak.seed,
    }
