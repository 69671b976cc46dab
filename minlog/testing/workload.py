"""A deterministic *morning peak* workload: what an EOJ's audit hook reports at 07-10.

Model (every parameter is a field of `MorningPeak`):

* ``employees`` care workers start between ``start`` and ``start + spread`` (Copenhagen
  time) and each visits a route of ``visits`` citizens drawn from ``citizens``.
* At each visit the worker opens the citizen's record ``opens`` times on average
  (1 + a Poisson-like number of extra opens: reading the card, the medication list, the
  plan, writing the note) spaced ``gap`` seconds apart; visits last ``visit_minutes``.
* The first open of (employee, citizen, day) is a first-of-day event; every other open
  is a duplicate. The defaults give about 85-90 % duplicates.

Identical parameters always give identical events (a seeded `random.Random`); CPR numbers
are synthetic (valid dates, not real people).
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterator

import attrs

from minlog.core.days import COPENHAGEN
from minlog.core.model import Access, Employee, Organisation

__all__ = ["MorningPeak"]

_FIRST = ["Anne", "Mette", "Hanne", "Lars", "Jens", "Søren", "Kirsten", "Mads", "Åse", "Ølvir",
          "Ida", "Freja", "Emil", "Noah", "Sofie", "Peter", "Camilla", "Bjørn", "Maja", "Karl"]
_LAST = ["Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
         "Sørensen", "Rasmussen", "Jørgensen", "Madsen", "Kristensen", "Olsen", "Thomsen",
         "Poulsen", "Johansen", "Møller", "Mortensen", "Østergaard", "Kjærgaard"]
_ACTIVITIES = ["Opslag i Fælles Stamkort", "Opdatering af Fælles Stamkort",
               "Opslag i medicinliste", "Opslag i plejeplan", "Dokumentation af besøg"]


def synthetic_cpr(n: int, rng: random.Random) -> str:
    """A syntactically valid, synthetic CPR number (a real date; no modulus 11 check)."""
    born = _dt.date(1930, 1, 1) + _dt.timedelta(days=rng.randrange(0, 365 * 70))
    century_digit = 3 if born.year < 2000 else 4
    return f"{born:%d%m%y}{century_digit}{n % 1000:03d}"


@attrs.frozen
class MorningPeak:
    """The workload's parameters (see the module docstring)."""

    employees: int = 400
    citizens: int = 6000
    visits: int = 12
    opens: float = 8.0
    gap: float = 20.0
    visit_minutes: float = 12.0
    units: int = 8
    day: _dt.date = _dt.date(2026, 11, 24)
    start: _dt.time = _dt.time(7, 0)
    spread_minutes: float = 30.0
    seed: int = 2026

    def organisations(self) -> list[Organisation]:
        return [Organisation(f"{380_000_000_000_000 + u}", "SOR", f"Hjemmeplejen distrikt {u + 1}")
                for u in range(self.units)]

    def events(self) -> list[Access]:
        """All events, in time order."""
        return list(self._sorted())

    def _sorted(self) -> Iterator[Access]:
        rng = random.Random(self.seed)
        orgs = self.organisations()
        citizens = [synthetic_cpr(i, rng) for i in range(self.citizens)]
        raw: list[tuple[float, int, Access]] = []
        start = _dt.datetime.combine(self.day, self.start, COPENHAGEN)
        n = 0
        for w in range(self.employees):
            emp = Employee(synthetic_cpr(100_000 + w, rng),
                           name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                           role="Social- og sundhedshjælper")
            org = orgs[w % len(orgs)]
            t = rng.uniform(0, self.spread_minutes * 60)
            for citizen in rng.sample(citizens, min(self.visits, len(citizens))):
                extra = max(0, round(rng.expovariate(1 / max(self.opens - 1, 1e-9))))
                for k in range(1 + extra):
                    at = start + _dt.timedelta(seconds=t + k * self.gap)
                    raw.append((t + k * self.gap, n, Access(
                        citizen, emp, org, rng.choice(_ACTIVITIES), at)))
                    n += 1
                t += self.visit_minutes * 60
        raw.sort(key=lambda x: (x[0], x[1]))
        for _, _, access in raw:
            yield access

    def expected_first_of_day(self) -> int:
        """How many distinct (employee, citizen) pairs the events hold."""
        return len({(a.employee.id, a.citizen) for a in self.events()})
