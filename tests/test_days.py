"""Copenhagen days: the cached-span fast path agrees with zoneinfo, DST days included."""

from __future__ import annotations

import datetime as dt
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from minlog.core.days import COPENHAGEN, CopenhagenDays, copenhagen_day

START = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()
END = dt.datetime(2060, 1, 1, tzinfo=dt.UTC).timestamp()


def reference(ts: float) -> int:
    return dt.datetime.fromtimestamp(ts, COPENHAGEN).date().toordinal()


class TestAgainstZoneinfo:
    @settings(max_examples=2000)
    @given(st.floats(START, END, allow_nan=False))
    def test_any_instant(self, ts: float) -> None:
        """For any instant in 2015-2060 the fast path gives zoneinfo's day."""
        assert CopenhagenDays().of_timestamp(ts) == reference(ts)

    def test_dense_sweeps_across_every_dst_change(self) -> None:
        """Around every change of 2015-2040, second by second near 01:00 UTC and every
        10 minutes across the day, including fractions of a second."""
        days = CopenhagenDays()
        for year in range(2015, 2041):
            for month in (3, 10):
                last_sunday = max(dt.date(year, month, d) for d in range(25, 32)
                                  if dt.date(year, month, d).weekday() == 6)
                change = dt.datetime.combine(last_sunday, dt.time(1), dt.UTC).timestamp()
                for s in range(-3 * 86400, 3 * 86400, 600):
                    for frac in (0.0, 0.5, 0.999999):
                        ts = change + s + frac
                        assert days.of_timestamp(ts) == reference(ts)
                for s in range(-5, 6):
                    assert days.of_timestamp(change + s) == reference(change + s)

    def test_23_and_25_hour_days(self) -> None:
        """29 March 2026 has 23 hours and 25 October 2026 has 25, in Copenhagen days."""
        days = CopenhagenDays()
        for day, hours in ((dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25)):
            start = dt.datetime.combine(day, dt.time(0), COPENHAGEN).timestamp()
            assert days.of_timestamp(start - 0.000001) == day.toordinal() - 1
            assert days.of_timestamp(start) == day.toordinal()
            end = start + hours * 3600
            assert days.of_timestamp(end - 0.000001) == day.toordinal()
            assert days.of_timestamp(end) == day.toordinal() + 1

    def test_datetimes_in_any_zone(self) -> None:
        """A datetime's day does not depend on the zone it is written in."""
        at = dt.datetime(2026, 10, 24, 22, 30, tzinfo=dt.UTC)
        assert copenhagen_day(at) == dt.date(2026, 10, 25).toordinal()
        assert copenhagen_day(at.astimezone(COPENHAGEN)) == copenhagen_day(at)
        assert copenhagen_day(at.astimezone(dt.timezone(dt.timedelta(hours=-7)))) == \
            copenhagen_day(at)

    def test_threads_agree(self) -> None:
        """One instance used from several threads gives every thread zoneinfo's answer."""
        days = CopenhagenDays()
        wrong: list[float] = []

        def work(offset: int) -> None:
            for i in range(3000):
                ts = START + (i * 7919 + offset * 104729) % int(END - START)
                if days.of_timestamp(ts) != reference(ts):
                    wrong.append(ts)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wrong == []
