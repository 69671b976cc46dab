"""Time is an input: one `Clock` reaches every part of ``minlog`` that asks what time it is.

A clock tells wall time (`Clock.time`, POSIX seconds: what days, card validity, lease and
retry due times are computed from) and monotonic time (`Clock.monotonic`: what timeouts
and rate-limit windows inside one process are measured with). Nothing in the library
reads ``time.time``, ``time.monotonic`` or ``datetime.now`` directly.

* `SystemClock` is the real one (the default everywhere).
* `FixedClock` holds the wall time a test sets (and moves), while monotonic time stays
  real, so that ``flush(timeout=...)`` still ends: a library "at a date".
* `ShiftedClock` runs at real speed from a wall time it is given: a library "at a date"
  whose leases and retry times still come due (several processes started with the
  same date agree on it to within their start-up times).
* `SimulatedClock` moves only when told to, wall and monotonic alike: for simulations
  (a day of delivery under a rate limit) that must not wait for real.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time as _time
from typing import Final, Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "FixedClock", "ShiftedClock", "SimulatedClock", "SystemClock",
           "utc_now"]


@runtime_checkable
class Clock(Protocol):
    """Wall and monotonic time."""

    def time(self) -> float:
        """Wall time: POSIX seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...


class SystemClock:
    """The machine's clocks."""

    __slots__ = ()

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()

    def __repr__(self) -> str:
        return "minlog.SystemClock()"


SYSTEM_CLOCK: Final = SystemClock()


def _seconds(at: float | _dt.datetime) -> float:
    if isinstance(at, _dt.datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("a clock's time must be timezone-aware")
        return at.timestamp()
    return float(at)


class FixedClock:
    """Wall time that only changes when told (`set`, `advance`); real monotonic time.

    Thread-safe. ``FixedClock(datetime(2026, 3, 29, 1, 59, tzinfo=COPENHAGEN))`` puts the
    library one minute before a DST change, whatever the calendar says.
    """

    __slots__ = ("_lock", "_t")

    def __init__(self, at: float | _dt.datetime) -> None:
        self._t = _seconds(at)
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return _time.monotonic()

    def set(self, at: float | _dt.datetime) -> None:
        """Set the wall time (it may go back, as a corrected system clock does)."""
        with self._lock:
            self._t = _seconds(at)

    def advance(self, seconds: float) -> None:
        """Move the wall time forward by ``seconds``."""
        with self._lock:
            self._t += seconds

    def __repr__(self) -> str:
        return f"minlog.testing.FixedClock({utc_now(self).isoformat()!r})"


class ShiftedClock:
    """Real time, shifted so that it reads ``at`` when the clock is made."""

    __slots__ = ("_offset",)

    def __init__(self, at: float | _dt.datetime) -> None:
        self._offset = _seconds(at) - _time.time()

    def time(self) -> float:
        return _time.time() + self._offset

    def monotonic(self) -> float:
        return _time.monotonic()

    def __repr__(self) -> str:
        return f"minlog.testing.ShiftedClock({utc_now(self).isoformat()!r})"


class SimulatedClock(FixedClock):
    """Wall and monotonic time that both move only when told (`advance`, `sleep`)."""

    __slots__ = ("_m",)

    def __init__(self, at: float | _dt.datetime) -> None:
        super().__init__(at)
        self._m = 0.0

    def monotonic(self) -> float:
        return self._m

    def set(self, at: float | _dt.datetime) -> None:
        with self._lock:
            t = _seconds(at)
            if t < self._t:
                raise ValueError("a simulated clock does not go back")
            self._m += t - self._t
            self._t = t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a simulated clock does not go back")
        with self._lock:
            self._t += seconds
            self._m += seconds

    def sleep(self, seconds: float) -> None:
        """What a simulation does instead of sleeping: move the clock."""
        self.advance(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"minlog.testing.SimulatedClock({utc_now(self).isoformat()!r})"


def utc_now(clock: Clock) -> _dt.datetime:
    """The clock's wall time as an aware UTC datetime."""
    return _dt.datetime.fromtimestamp(clock.time(), _dt.UTC)
