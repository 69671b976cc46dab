"""The ledger: the one place that decides whether an access is the first of its day.

Pure: no I/O, no threads of its own, no clock (the time is passed in). The decision for a
batch has two halves:

1. `Ledger.scan` checks each access (an `Access`, not too far in the future, inside the
   dedup horizon), finds its Copenhagen day and its key, and asks memory. Memory holds
   only keys that are **durably seen** (committed by some process), so it may answer
   "duplicate" and nothing else; every other access is a `Candidate`.
2. The store's transaction appends the candidates' keys and outbox entries and says which
   keys were new: that, and only that, makes a key new, exactly once across processes and
   hosts. `Ledger.learn` then puts every answered key into memory (new or not, it is
   durably seen now).

Memory is a cache with a bound:

* the **hot window**: today and the ``hot_days - 1`` days before it (and days just ahead of
  today, for a caller whose clock runs ahead), filled from the store when an instance opens;
* up to ``late_days`` **late days** (inside the horizon, before the hot window): only the
  keys this process has learned for them, least recently learned day let go first.

The **dedup horizon** (``horizon_days``, today included) is a promise: within it the
answer is exact, because no store forgets a day inside it. An access older than the
horizon is never a silent duplicate and never a silent drop: by default
(``beyond_horizon="deliver"``) it is still decided by the store while the store holds its
day, otherwise accepted, and counted and reported as beyond the horizon; with
``"refuse"`` it is a `ValidationError`.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Iterable, Sequence
from typing import Final, Literal, NamedTuple

from minlog.core.days import _DAY, COPENHAGEN, EPOCH_ORDINAL, CopenhagenDays
from minlog.core.keys import KeyMaker
from minlog.core.model import Access
from minlog.errors import ValidationError

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "DEFAULT_HOT_DAYS",
    "DEFAULT_LATE_DAYS",
    "BeyondHorizon",
    "Candidate",
    "Ledger",
]

DEFAULT_HOT_DAYS: Final = 3
DEFAULT_HORIZON_DAYS: Final = 35
DEFAULT_LATE_DAYS: Final = 4
BeyondHorizon = Literal["deliver", "refuse"]

_UTC: Final = _dt.UTC
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class Candidate(NamedTuple):
    """An access memory cannot answer for: the store decides. ``position`` is its place
    in the batch; ``late`` marks a day before the hot window, ``beyond`` one before the
    dedup horizon."""

    position: int
    day: int
    key: bytes
    late: bool
    beyond: bool


class Ledger:
    """Decisions and memory for one installation (see the module docstring). Thread-safe:
    scans run concurrently; `learn` and the day's turn are serialised."""

    def __init__(
        self,
        keys: KeyMaker,
        *,
        now: float,
        hot_days: int = DEFAULT_HOT_DAYS,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        late_days: int = DEFAULT_LATE_DAYS,
        max_future_skew: float = 300.0,
        beyond_horizon: BeyondHorizon = "deliver",
        days: CopenhagenDays | None = None,
    ) -> None:
        if hot_days < 1:
            raise ValueError("hot_days must be at least 1")
        if horizon_days < hot_days:
            raise ValueError("horizon_days must be at least hot_days")
        if late_days < 0:
            raise ValueError("late_days must not be negative")
        if not 0 <= max_future_skew <= 86400:
            raise ValueError("max_future_skew must be between 0 and 86400 seconds")
        if beyond_horizon not in ("deliver", "refuse"):
            raise ValueError("beyond_horizon must be 'deliver' or 'refuse'")
        self.keys = keys
        self.days = days or CopenhagenDays()
        self.hot_days = hot_days
        self.horizon_days = horizon_days
        self.late_days = late_days
        self.max_future_skew = max_future_skew
        self.beyond_horizon: BeyondHorizon = beyond_horizon
        self._lock = threading.Lock()
        #: Day -> keys durably seen that this process knows of (hot and late days).
        self._memory: dict[int, set[bytes]] = {}
        #: The late days held in ``_memory``, least recently learned first.
        self._late: list[int] = []
        self._wall_cache: tuple[float, float, _dt.datetime | None] = (0.0, 0.0, None)
        self.today = 0
        self._turn = 0.0  # the instant the next Copenhagen day starts
        self.advance(now)

    # ------------------------------------------------------------------ days

    def hot_window(self) -> range:
        """The hot days: today and the ``hot_days - 1`` days before."""
        return range(self.today - self.hot_days + 1, self.today + 1)

    def horizon_start(self) -> int:
        """The oldest day inside the dedup horizon."""
        return self.today - self.horizon_days + 1

    def is_late(self, day: int) -> bool:
        """True for a day before the hot window."""
        return day <= self.today - self.hot_days

    def advance(self, now: float) -> bool:
        """Move to the Copenhagen day of ``now`` when it is a later one (the hot window
        follows, late days beyond the horizon are let go). True when the day changed."""
        today = self.days.of_timestamp(now)
        with self._lock:
            if today <= self.today:
                return False
            self.today = today
            self._turn = _dt.datetime.combine(
                _dt.date.fromordinal(today + 1), _dt.time(), COPENHAGEN).timestamp()
            start = self.today - self.hot_days + 1
            for day in [d for d in self._memory if d < start and d not in self._late]:
                del self._memory[day]
            horizon = self.horizon_start()
            for day in [d for d in self._late if d < horizon]:
                self._late.remove(day)
                del self._memory[day]
            for day in range(start, today + 1):
                self._memory.setdefault(day, set())
            return True

    # ------------------------------------------------------------------ decisions

    def scan(self, batch: Sequence[Access], now: float) -> list[Candidate]:
        """The candidates of ``batch`` (a list or tuple), in order; repeats of one key
        inside the batch give one candidate (the first). Raises `ValidationError` for an
        item that is not an `Access`, lies more than ``max_future_skew`` seconds after
        ``now`` or (with ``beyond_horizon="refuse"``) before the horizon; then nothing of
        the batch counts."""
        if now >= self._turn:
            self.advance(now)
        horizon = now + self.max_future_skew
        horizon_wall = self._horizon_wall(now, horizon)
        days = self.days
        lo, hi, off = days.current
        memory = self._memory
        oldest = self.today - self.horizon_days + 1
        hot_start = self.today - self.hot_days + 1
        refuse_beyond = self.beyond_horizon == "refuse"
        base = self.keys.hasher()
        copy = base.copy
        # Transient, per-call memo of (employee, citizen, day): repeats inside one call
        # skip the digest. It dies with the call; memory holds digests only.
        memo: set[tuple[str, str, str, str, int]] = set()
        out: list[Candidate] = []
        for i, a in enumerate(batch):
            if type(a) is not Access:
                raise ValidationError("accesses", f"item {i} is not an Access")
            at = a.at
            tz = at.tzinfo
            if tz is COPENHAGEN and horizon_wall is not None and not at > horizon_wall:
                day = at.toordinal()
            else:
                ts = (at - _EPOCH).total_seconds() if tz is _UTC else at.timestamp()
                if ts > horizon:
                    raise self._future()
                if not lo <= ts < hi:
                    lo, hi, off = days.span(ts)
                day = int((ts + off) // _DAY) + EPOCH_ORDINAL
            e = a.employee
            mk = (e.id, a.citizen, e.source, a.citizen_source, day)
            if mk in memo:
                continue
            memo.add(mk)
            h = copy()
            h.update(f"{e.source}\x1f{e.id}\x1f{a.citizen_source}\x1f{a.citizen}\x1f{day}"
                     .encode())
            key = h.digest()
            part = memory.get(day)
            if part is not None and key in part:
                continue
            if day < oldest:
                if refuse_beyond:
                    raise self._beyond()
                out.append(Candidate(i, day, key, True, True))
            else:
                out.append(Candidate(i, day, key, day < hot_start, False))
        return out

    def learn(self, pairs: Iterable[tuple[int, bytes]]) -> None:
        """Remember ``(day, key)`` pairs the store has durably seen (answered by its
        transaction, new or not). Days before the horizon are not remembered."""
        with self._lock:
            memory, late = self._memory, self._late
            oldest = self.today - self.horizon_days + 1
            hot_start = self.today - self.hot_days + 1
            for day, key in pairs:
                part = memory.get(day)
                if part is None:
                    if day < oldest or self.late_days == 0:
                        continue
                    part = memory[day] = set()
                    if day < hot_start:
                        late.append(day)
                        while len(late) > self.late_days:
                            del memory[late.pop(0)]
                elif day < hot_start and late[-1] != day:
                    late.remove(day)
                    late.append(day)
                part.add(key)

    def remember_day(self, day: int, keys: set[bytes]) -> None:
        """Fill memory with keys of a hot ``day`` read from the store (when opening). The
        set is taken over when memory holds nothing of the day yet (no second copy of a
        large day in memory)."""
        with self._lock:
            if day not in self._memory and self.is_late(day):
                raise ValueError("only hot days are filled from the store")
            part = self._memory.get(day)
            if not part:
                self._memory[day] = keys
            else:
                part.update(keys)

    def held(self, day: int) -> frozenset[bytes]:
        """The keys memory holds for ``day`` (each one durably seen)."""
        return frozenset(self._memory.get(day, ()))

    def held_days(self) -> list[int]:
        """The days memory holds keys of, oldest first."""
        return sorted(self._memory)

    def __len__(self) -> int:
        """How many keys memory holds."""
        return sum(len(s) for s in list(self._memory.values()))

    def knows(self, day: int, key: bytes) -> bool:
        """Whether memory holds ``key`` for ``day`` (it says "duplicate" for it)."""
        part = self._memory.get(day)
        return part is not None and key in part

    # ------------------------------------------------------------------ helpers

    def _future(self) -> ValidationError:
        return ValidationError(
            "access.at", f"must not be more than {self.max_future_skew:g} s in the future")

    def _beyond(self) -> ValidationError:
        return ValidationError(
            "access.at", f"is older than the dedup horizon of {self.horizon_days} days "
            "(beyond_horizon='refuse')")

    def _horizon_wall(self, now: float, horizon: float) -> _dt.datetime | None:
        """A Copenhagen wall time no later than ``horizon``, cached for a second, or None
        near an offset change. An access in Copenhagen time at or before it is not too far
        in the future, and its wall date is its day: comparing wall times is exact while
        the horizon is over two hours from an offset change. Anything later takes the
        exact path."""
        cached = self._wall_cache
        if cached[0] <= now < cached[1]:
            return cached[2]
        lo, hi, _ = self.days.span(horizon)
        wall = (_dt.datetime.fromtimestamp(horizon, COPENHAGEN)
                if horizon - lo > 7200 and hi - horizon > 7200 else None)
        self._wall_cache = (now, now + 1.0, wall)
        return wall
