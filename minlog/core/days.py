"""The Danish calendar day (Europe/Copenhagen) of an instant, exact on 23- and 25-hour days.

`zoneinfo` is the reference. The fast path caches spans of constant UTC offset (a DST
period: about half a year), found from zoneinfo itself, so that the common case is one
``timestamp()``, two comparisons and one division. Days are proleptic Gregorian ordinals
(`datetime.date.toordinal`), the form the stores keep.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["COPENHAGEN", "CopenhagenDays", "copenhagen_day", "day_date"]

COPENHAGEN: Final = ZoneInfo("Europe/Copenhagen")
EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()
_DAY: Final = 86400
_PROBE: Final = 3 * _DAY  # probe step when looking for the next offset change
_HORIZON: Final = 400 * _DAY  # a span found without a change is capped here


def _offset(ts: float) -> int:
    off = _dt.datetime.fromtimestamp(ts, COPENHAGEN).utcoffset()
    assert off is not None
    return int(off.total_seconds())


def _edge(ts: int, off: int, step: int) -> int:
    """The first whole second from ``ts`` in direction ``step`` (±) whose offset is not
    ``off``, or the horizon; returned as the boundary of the constant span."""
    limit = ts + step * _HORIZON // _PROBE * _PROBE
    inside, probe = ts, ts + step * _PROBE
    while _offset(probe) == off:
        inside, probe = probe, probe + step * _PROBE
        if (probe - limit) * step > 0:
            return limit if step > 0 else limit + 1
    # Offsets change once within a probe step: bisect between inside and probe.
    while abs(probe - inside) > 1:
        mid = (inside + probe) // 2
        if _offset(mid) == off:
            inside = mid
        else:
            probe = mid
    return probe if step > 0 else inside


class CopenhagenDays:
    """Maps instants to Copenhagen day ordinals; thread-safe, caches constant-offset spans."""

    __slots__ = ("_lock", "_spans", "current")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[tuple[float, float, int]] = []
        #: The most recently used span ``(lo, hi, offset)``: [lo, hi) has UTC offset
        #: ``offset``. Replaced as one tuple, so a reader never mixes two spans.
        self.current: tuple[float, float, int] = (0.0, 0.0, 0)

    def __call__(self, at: _dt.datetime) -> int:
        """The Copenhagen day ordinal of the aware datetime ``at``."""
        return self.of_timestamp(at.timestamp())

    def of_timestamp(self, ts: float) -> int:
        """The Copenhagen day ordinal of POSIX time ``ts``."""
        lo, hi, off = self.current
        if not lo <= ts < hi:
            lo, hi, off = self.span(ts)
        return int((ts + off) // _DAY) + EPOCH_ORDINAL

    def span(self, ts: float) -> tuple[float, float, int]:
        """The cached span ``(lo, hi, offset)`` holding ``ts``; also made the current one."""
        found = next((span for span in self._spans if span[0] <= ts < span[1]), None)
        if found is not None:
            lo, hi, off = found
        else:
            whole = int(ts // 1)
            off = _offset(whole)
            lo, hi = float(_edge(whole, off, -1)), float(_edge(whole, off, +1))
            with self._lock:
                self._spans.append((lo, hi, off))
                del self._spans[:-16]
        self.current = (lo, hi, off)
        return lo, hi, off


_DEFAULT = CopenhagenDays()


def copenhagen_day(at: _dt.datetime) -> int:
    """The Copenhagen calendar day of ``at`` (aware) as a date ordinal."""
    return _DEFAULT(at)


def day_date(day: int) -> _dt.date:
    """The `datetime.date` of a day ordinal."""
    return _dt.date.fromordinal(day)
