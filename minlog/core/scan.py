"""The dedup scan: which accesses of a batch may be the first of their day.

Pure (no I/O). For each access of a batch, in order: check that it is an `Access` and not
too far in the future, find its Copenhagen day, compute its dedup key (BLAKE2b-128 over
the installation's key prefix and the key material, see `KeyMaker`) and look the key up
in the in-memory seen-set of its day. What is not known there is a *candidate*: the
store decides (`Store.accept`). Repeats of one key inside the batch give one candidate
(the first).

"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Sequence
from typing import Final

from minlog.core.days import _DAY, COPENHAGEN, EPOCH_ORDINAL, CopenhagenDays
from minlog.core.model import Access
from minlog.errors import ValidationError

__all__ = ["Candidate", "Scanner"]

#: ``(index in the batch, day ordinal, 16-byte key)``
Candidate = tuple[int, int, bytes]

_UTC: Final = _dt.UTC
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_blake2b = hashlib.blake2b




class Scanner:
    """Scans batches for one installation: its key prefix, its day cache, its skew."""

    __slots__ = ("_prefix_bytes", "_wall_cache", "days", "max_future_skew", "prefix")

    def __init__(self, prefix: str, days: CopenhagenDays, max_future_skew: float) -> None:
        #: The key prefix as text (`KeyMaker.prefix`); each key's material follows it.
        self.prefix = prefix
        self._prefix_bytes = prefix.encode()
        self.days = days
        self.max_future_skew = max_future_skew
        self._wall_cache: tuple[float, float, _dt.datetime | None] = (0.0, 0.0, None)

    def key(self, access: Access, day: int) -> bytes:
        """The dedup key of ``access`` on ``day`` (as `KeyMaker.key`)."""
        e = access.employee
        return _blake2b(f"{self.prefix}\x1f{e.source}\x1f{e.id}\x1f{access.citizen_source}"
                        f"\x1f{access.citizen}\x1f{day}".encode(), digest_size=16).digest()

    def scan(self, batch: Sequence[Access], hot: dict[int, set[bytes]],
             now: float) -> list[Candidate]:
        """The candidates of ``batch`` (a list or tuple) given the seen-sets ``hot``
        (day -> keys) and the time ``now``. Raises `ValidationError` for an item that is
        not an `Access` or lies more than ``max_future_skew`` seconds after ``now``; then
        nothing of the batch counts."""
        return self._scan(batch, hot, now, now + self.max_future_skew)

    def _refusal(self, index: int, item: object) -> ValidationError:
        if type(item) is not Access:
            return ValidationError("accesses", f"item {index} is not an Access")
        return ValidationError(
            "access.at", f"must not be more than {self.max_future_skew:g} s in the future")

    def _scan(self, batch: Sequence[Access], hot: dict[int, set[bytes]], now: float,
              horizon: float) -> list[Candidate]:
        horizon_wall = self._horizon_wall(now, horizon)
        days = self.days
        lo, hi, off = days.current
        prefix = self.prefix
        # Transient, per-call memo of (employee, citizen, day): repeats inside one call
        # skip the digest. It dies with the call; the kept dedup state holds digests only.
        memo: set[tuple[str, str, str, str, int]] = set()
        cands: list[Candidate] = []
        for i, a in enumerate(batch):
            if type(a) is not Access:
                raise self._refusal(i, a)
            at = a.at
            tz = at.tzinfo
            if tz is COPENHAGEN and horizon_wall is not None and not at > horizon_wall:
                day = at.toordinal()
            else:
                ts = (at - _EPOCH).total_seconds() if tz is _UTC else at.timestamp()
                if ts > horizon:
                    raise self._refusal(i, a)
                if not lo <= ts < hi:
                    lo, hi, off = days.span(ts)
                day = int((ts + off) // _DAY) + EPOCH_ORDINAL
            e = a.employee
            mk = (e.id, a.citizen, e.source, a.citizen_source, day)
            if mk in memo:
                continue
            memo.add(mk)
            key = _blake2b(
                f"{prefix}\x1f{e.source}\x1f{e.id}\x1f{a.citizen_source}\x1f{a.citizen}\x1f{day}"
                .encode(), digest_size=16).digest()
            part = hot.get(day)
            if part is not None and key in part:
                continue
            cands.append((i, day, key))
        return cands

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
