"""`DayProfile`: a day's first-of-day logs per tenant and time of day, what
`minlog.delivery.projection` delivers under MinLog2's limits.

Three sources:

* a vendor's own counts (`read_profile`): CSV with the columns ``tenant,hour,logs`` (one
  row per municipality and local hour 0-23; hours not given have none), or JSON, either a
  list of such rows or an object mapping each tenant to its 24 hourly counts;
* a store (`from_store`): what its outbox and dead letters hold, per tenant and minute of
  accept time (`minlog.store.base.Store.accepted_counts`), for one Copenhagen day.
  Delivered entries have left the outbox, so this suits a store recorded with delivery
  held back (``start_worker=False``, or ``minlog bench --no-delivery --keep``);
* the documented shape of a care day (`care_day`, `CARE_DAY`), scaled to a number of
  logs a day and spread over a number of municipalities.

Within a slot (an hour, or a minute from a store) the logs arrive evenly spread. A day
is 24 local hours: on the days the clock changes, a store's logs of the hour that is
repeated count in one hour, and the hour that is skipped has none. Bad input is a
`ConfigurationError` naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import attrs

from minlog.core.days import COPENHAGEN
from minlog.errors import ConfigurationError

if TYPE_CHECKING:
    from minlog.store.base import Store

__all__ = ["CARE_DAY", "DAY_SECONDS", "DayProfile", "care_day", "from_store", "parse_csv",
           "parse_json", "read_profile"]

DAY_SECONDS: Final = 86_400

#: The share of a care day's first-of-day logs accepted in each local hour (00-23), in
#: percent (sum 100): home care's morning round 07-10 (40 %), lunch visits, the afternoon
#: shift change at 15, evening visits, and a quiet night of nursing homes and alarms.
CARE_DAY_PERCENT: Final = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 12.0, 15.0, 12.0, 7.5, 6.0,
                           5.0, 4.0, 4.0, 5.0, 4.0, 4.0, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5)
CARE_DAY: Final = tuple(p / 100 for p in CARE_DAY_PERCENT)


def _counts(value: Mapping[str, Sequence[int]]) -> Mapping[str, tuple[int, ...]]:
    return MappingProxyType({str(t): tuple(c) for t, c in value.items()})


@attrs.frozen(slots=True)
class DayProfile:
    """First-of-day logs per tenant and slot of the day (``slot`` seconds, dividing an
    hour: 3600 for hours, 60 for minutes), counted from local midnight."""

    counts: Mapping[str, tuple[int, ...]] = attrs.field(converter=_counts)
    slot: int = 3600
    #: Where the profile came from (a file, a store and day, the care-day shape).
    source: str = ""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.slot, bool) or not isinstance(self.slot, int) \
                or not 1 <= self.slot <= 3600 or 3600 % self.slot:
            raise ConfigurationError("slot: must divide an hour into whole seconds")
        for tenant, counts in self.counts.items():
            if len(counts) != self.slots:
                raise ConfigurationError(f"counts[{tenant!r}]: must have {self.slots} slots "
                                         f"of {self.slot} s")
            if any(not isinstance(n, int) or n < 0 for n in counts):
                raise ConfigurationError(f"counts[{tenant!r}]: logs must be whole numbers, "
                                         "zero or more")
        if not self.logs:
            raise ConfigurationError("the profile has no logs")

    @property
    def slots(self) -> int:
        return DAY_SECONDS // self.slot

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenants with logs, in order."""
        return tuple(sorted(t for t, c in self.counts.items() if sum(c)))

    @property
    def logs(self) -> int:
        """The day's first-of-day logs, all tenants."""
        return sum(sum(c) for c in self.counts.values())

    def total(self, tenant: str) -> int:
        return sum(self.counts.get(tenant, ()))

    def hourly(self, tenant: str) -> tuple[int, ...]:
        """``tenant``'s logs per local hour (24 numbers)."""
        per = 3600 // self.slot
        counts = self.counts.get(tenant, (0,) * self.slots)
        return tuple(sum(counts[h * per:(h + 1) * per]) for h in range(24))

    def arrivals(self, tenant: str) -> list[float]:
        """The accept times of ``tenant``'s logs, seconds from local midnight, in order:
        the ``n`` logs of a slot evenly spread over it."""
        out: list[float] = []
        for i, n in enumerate(self.counts.get(tenant, ())):
            if n:
                start, gap = i * self.slot, self.slot / n
                out.extend(start + (k + 0.5) * gap for k in range(n))
        return out


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` in whole numbers that sum to it."""
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    out = [math.floor(x) for x in exact]
    rest = total - sum(out)
    for i in sorted(range(len(exact)), key=lambda i: (out[i] - exact[i], i))[:rest]:
        out[i] += 1
    return out


def care_day(logs_per_day: int, tenants: int = 1, *, spread: float = 0.5) -> DayProfile:
    """The care-day shape (`CARE_DAY`) with ``logs_per_day`` first-of-day logs over
    ``tenants`` municipalities named ``m01``, ``m02``, ...: the k-th largest gets a share
    in proportion to ``1 / k ** spread`` (0: all alike; the default 0.5 gives the largest
    of 40 about 9 % of the platform's logs, the smallest about 1.4 %)."""
    if isinstance(logs_per_day, bool) or not isinstance(logs_per_day, int) \
            or logs_per_day < 1:
        raise ConfigurationError("logs_per_day: must be a whole number, at least 1")
    if isinstance(tenants, bool) or not isinstance(tenants, int) or not 1 <= tenants <= 1000:
        raise ConfigurationError("tenants: must be a whole number from 1 to 1000")
    if not (math.isfinite(spread) and 0 <= spread <= 4):
        raise ConfigurationError("spread: must be from 0 (all alike) to 4")
    shares = _largest_remainder(logs_per_day, [1 / k ** spread for k in range(1, tenants + 1)])
    width = max(2, len(str(tenants)))
    counts = {f"m{k:0{width}d}": tuple(_largest_remainder(n, CARE_DAY))
              for k, n in enumerate(shares, 1)}
    where = f"the care-day shape, {logs_per_day:,} logs a day"
    if tenants > 1:
        where += f" over {tenants} municipalities (share of the k-th largest ~ 1/k^{spread:g})"
    return DayProfile({t: c for t, c in counts.items() if sum(c)} or counts, 3600, where)


# ----------------------------------------------------------------------------- files


def _whole(value: Any, where: str, field: str, low: int, high: int | None = None) -> int:
    """``value`` as a whole number in [low, high], else a ConfigurationError."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            value = None
    rule = (f"must be a whole number from {low} to {high}" if high is not None
            else f"must be a whole number, {low} or more")
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        raise ConfigurationError(f"{where}: {field}: {rule}")
    return value


class _Rows:
    """Rows of (tenant, hour, logs) gathered into hourly counts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, list[int]] = {}
        self.seen: dict[tuple[str, int], str] = {}

    def add(self, where: str, tenant: Any, hour: Any, logs: Any) -> None:
        if tenant is None:
            tenant = ""
        if not isinstance(tenant, str):
            raise ConfigurationError(f"{where}: tenant: must be a text (its CVR, or empty "
                                     "for a single municipality)")
        tenant = tenant.strip()
        h = _whole(hour, where, "hour", 0, 23)
        n = _whole(logs, where, "logs", 0)
        if (tenant, h) in self.seen:
            raise ConfigurationError(f"{where}: tenant {tenant!r}, hour {h}: given twice "
                                     f"(first at {self.seen[tenant, h]})")
        self.seen[tenant, h] = where
        self.counts.setdefault(tenant, [0] * 24)[h] = n

    def profile(self) -> DayProfile:
        if not self.counts or not any(sum(c) for c in self.counts.values()):
            raise ConfigurationError(f"{self.name}: logs: the profile has no logs")
        return DayProfile(self.counts, 3600, self.name)


def parse_csv(text: str, name: str = "profile") -> DayProfile:
    """A profile from CSV with the columns ``tenant``, ``hour`` and ``logs`` (a header row;
    other columns are ignored)."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip() for c in reader.fieldnames or ()}
    for field in ("tenant", "hour", "logs"):
        if field not in columns:
            raise ConfigurationError(f"{name}: {field}: a column of that name is missing "
                                     "(the header must name tenant, hour and logs)")
    rows = _Rows(name)
    for row in reader:
        row = {str(k).strip(): v for k, v in row.items() if k is not None}
        rows.add(f"{name} line {reader.line_num}", row.get("tenant"), row.get("hour"),
                 row.get("logs"))
    return rows.profile()


def parse_json(text: str, name: str = "profile") -> DayProfile:
    """A profile from JSON: a list of ``{"tenant", "hour", "logs"}`` rows, or an object
    mapping each tenant to its 24 hourly counts."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigurationError(f"{name}: not JSON ({e})") from None
    rows = _Rows(name)
    if isinstance(data, list):
        for i, row in enumerate(data, 1):
            where = f"{name} row {i}"
            if not isinstance(row, dict):
                raise ConfigurationError(f"{where}: must be an object with tenant, hour "
                                         "and logs")
            for field in ("hour", "logs"):
                if field not in row:
                    raise ConfigurationError(f"{where}: {field}: missing")
            rows.add(where, row.get("tenant", ""), row["hour"], row["logs"])
    elif isinstance(data, dict):
        for tenant, counts in data.items():
            where = f"{name} tenant {tenant!r}"
            if not isinstance(counts, list) or len(counts) != 24:
                raise ConfigurationError(f"{where}: logs: must be a list of 24 hourly "
                                         "counts (00-23)")
            for hour, n in enumerate(counts):
                rows.add(f"{where} hour {hour}", tenant, hour, n)
    else:
        raise ConfigurationError(f"{name}: must be a list of rows (tenant, hour, logs) or "
                                 "an object of tenant: [24 hourly counts]")
    return rows.profile()


def read_profile(path: str | os.PathLike[str]) -> DayProfile:
    """A profile from a CSV or JSON file (by its suffix: ``.json`` is JSON, else CSV)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"profile: cannot read {p}: {e}") from None
    return (parse_json if p.suffix.lower() == ".json" else parse_csv)(text, p.name)


# ----------------------------------------------------------------------------- a store


def from_store(store: Store, day: _dt.date | None = None, *, name: str = "store"
               ) -> DayProfile:
    """The first-of-day logs ``store`` holds (outbox and dead letters) for the Copenhagen
    calendar ``day``, per tenant and minute of accept time (default: the day it holds the
    most of). Delivered entries are not counted (see the module docstring)."""
    per_day: dict[_dt.date, dict[str, list[int]]] = {}
    for tenant, buckets in store.accepted_counts(60).items():
        for n, count in buckets.items():
            local = _dt.datetime.fromtimestamp(n * 60, COPENHAGEN)
            minutes = per_day.setdefault(local.date(), {}).setdefault(tenant, [0] * 1440)
            minutes[local.hour * 60 + local.minute] += count
    if not per_day:
        raise ConfigurationError(f"{name}: holds no logs to project (delivered logs leave "
                                 "the outbox: record the day with delivery held back)")
    if day is None:
        day = max(per_day, key=lambda d: (sum(map(sum, per_day[d].values())), d))
        more = f" (the busiest of {len(per_day)} days held)" if len(per_day) > 1 else ""
    elif day not in per_day:
        held = ", ".join(d.isoformat() for d in sorted(per_day)[:5])
        raise ConfigurationError(f"day: {name} holds no logs of {day.isoformat()} "
                                 f"(it holds: {held}{', ...' if len(per_day) > 5 else ''})")
    else:
        more = ""
    return DayProfile(per_day[day], 60, f"{name}, {day.isoformat()}{more}")
