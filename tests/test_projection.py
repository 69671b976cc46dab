"""`minlog project` and `minlog.delivery.projection`: a day's delivery under MinLog2's
limits, simulated with the library's own schedule on a simulated clock (no sleeping).

The expected figures are worked out by hand from the schedule's rules (full batches,
fill wait, rate limits, turns), never read back from a run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_URL, run_cli

from minlog import ConfigurationError
from minlog.core.days import COPENHAGEN
from minlog.delivery.policy import RateLimit
from minlog.delivery.profile import (
    CARE_DAY,
    CARE_DAY_PERCENT,
    DayProfile,
    care_day,
    from_store,
    parse_csv,
    parse_json,
    read_profile,
)
from minlog.delivery.projection import project
from minlog.store import NewEntry, open_store

HOUR = 3600


def hours(**per_hour: int) -> tuple[int, ...]:
    """24 hourly counts from ``h8=6000``-style keywords."""
    counts = [0] * 24
    for name, n in per_hour.items():
        counts[int(name[1:])] = n
    return tuple(counts)


def minute_zero(n: int) -> tuple[int, ...]:
    """1,440 minute counts with ``n`` logs in the first minute."""
    return (n,) + (0,) * 1439


class TestProfiles:
    def test_the_care_day_shape_is_documented_and_sums_to_the_day(self) -> None:
        assert len(CARE_DAY) == 24
        assert sum(CARE_DAY_PERCENT) == pytest.approx(100)
        assert sum(CARE_DAY_PERCENT[7:10]) == pytest.approx(39)  # the morning round
        day = care_day(60_000)
        assert day.logs == 60_000
        assert day.hourly("m01")[8] == 9_000

    def test_tenants_share_the_day_unevenly_and_exactly(self) -> None:
        day = care_day(600_000, 40)
        assert day.logs == 600_000
        totals = [day.total(t) for t in day.tenants]
        assert len(totals) == 40
        assert totals == sorted(totals, reverse=True)
        assert totals[0] == pytest.approx(600_000 / sum(k ** -0.5 for k in range(1, 41)),
                                          abs=1)
        assert totals[-1] == pytest.approx(totals[0] / 40 ** 0.5, abs=1)
        alike = care_day(4_000, 4, spread=0)
        assert {alike.total(t) for t in alike.tenants} == {1_000}

    def test_logs_arrive_evenly_spread_in_their_slot(self) -> None:
        day = DayProfile({"a": hours(h8=4)})
        assert day.arrivals("a") == [8 * HOUR + 450.0, 8 * HOUR + 1350.0,
                                     8 * HOUR + 2250.0, 8 * HOUR + 3150.0]

    def test_csv_and_json_agree(self, tmp_path: Path) -> None:
        (tmp_path / "day.csv").write_text(
            "tenant,hour,logs,note\n29189846,7,1200,x\n29189846,8,1500,\n55133018,8,10,\n")
        (tmp_path / "day.json").write_text(json.dumps(
            [{"tenant": "29189846", "hour": 7, "logs": 1200},
             {"tenant": "29189846", "hour": 8, "logs": 1500},
             {"tenant": "55133018", "hour": 8, "logs": 10}]))
        (tmp_path / "map.json").write_text(json.dumps(
            {"29189846": list(hours(h7=1200, h8=1500)), "55133018": list(hours(h8=10))}))
        profiles = [read_profile(tmp_path / n) for n in ("day.csv", "day.json", "map.json")]
        assert all(p.counts == profiles[0].counts for p in profiles)
        assert profiles[0].counts["29189846"] == hours(h7=1200, h8=1500)
        assert profiles[0].source == "day.csv"

    @pytest.mark.parametrize(("text", "message"), [
        ("tenant,hour\na,7\n", r"day\.csv: logs: a column of that name is missing"),
        ("tenant,hour,logs\na,7,10\na,24,10\n", r"day\.csv line 3: hour: must be a whole "
         r"number from 0 to 23"),
        ("tenant,hour,logs\na,seven,10\n", r"line 2: hour: must be a whole number"),
        ("tenant,hour,logs\na,7,-1\n", r"line 2: logs: must be a whole number, 0 or more"),
        ("tenant,hour,logs\na,7,1.5\n", r"line 2: logs: must be a whole number"),
        ("tenant,hour,logs\na,7,10\na,7,20\n", r"line 3: tenant 'a', hour 7: given twice "
         r"\(first at day\.csv line 2\)"),
        ("tenant,hour,logs\na,7,0\n", r"day\.csv: logs: the profile has no logs"),
    ])
    def test_csv_errors_name_the_row_and_field(self, text: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            parse_csv(text, "day.csv")

    @pytest.mark.parametrize(("data", "message"), [
        ("{not json", r"day\.json: not JSON"),
        ('"a day"', r"day\.json: must be a list of rows"),
        ('[{"tenant": "a", "hour": 7}]', r"day\.json row 1: logs: missing"),
        ('[{"tenant": 29189846, "hour": 7, "logs": 5}]', r"row 1: tenant: must be a text"),
        ('[{"tenant": "a", "hour": true, "logs": 5}]', r"row 1: hour: must be a whole"),
        ('[{"tenant": "a", "hour": 7, "logs": 2.5}]', r"row 1: logs: must be a whole"),
        ('[7]', r"row 1: must be an object"),
        ('{"a": [1, 2, 3]}', r"tenant 'a': logs: must be a list of 24 hourly counts"),
        ('{"a": ' + json.dumps([0] * 23 + [-4]) + "}", r"tenant 'a' hour 23: logs: must"),
    ])
    def test_json_errors_name_the_row_and_field(self, data: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            parse_json(data, "day.json")

    def test_an_unreadable_file_is_a_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="profile: cannot read"):
            read_profile(tmp_path / "missing.csv")

    @pytest.mark.parametrize(("args", "message"), [
        ((0,), "logs_per_day"), ((100, 0), "tenants"), ((100, 2, -1.0), "spread")])
    def test_bad_care_day_settings(self, args: tuple[Any, ...], message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            care_day(*args[:2], **({"spread": args[2]} if len(args) > 2 else {}))


class TestCarries:
    def test_a_limit_that_carries_the_day(self) -> None:
        """6,000 logs in 08-09 (one each 0.6 s), batches of 500 at 20 an hour: a batch
        fills every 300 s and goes at once, in 12 full requests; the backlog peaks at the
        500 of a batch plus the 3 that arrive while it is sent."""
        day = project(DayProfile({"a": hours(h8=6_000)}))
        assert day.ok
        a = day.tenant("a")
        assert a.carries
        assert a.verdict == "carries the day"
        assert (a.requests, a.entries_per_request) == (12, 500.0)
        assert a.peak == 503
        assert a.peak_at == pytest.approx(8 * HOUR + 299.7 + 2.0)
        assert a.drained_at == pytest.approx(9 * HOUR - 0.3 + 2.0)
        assert a.left_at_midnight == 0
        assert a.longest_wait == pytest.approx(299.4 + 2.0)
        assert a.needed is None
        assert len(a.backlog) == 24 * 12 + 1
        assert a.backlog[8 * 12 + 1] == 500  # 08:05: a batch full, just sent at 08:04:59.7
        assert max(a.backlog) <= 503
        assert a.backlog[-1] == 0

    def test_a_partial_batch_waits_the_fill_wait(self) -> None:
        """Ten logs in 03-04, one every 6 minutes from 03:03: each request goes when its
        oldest has waited 600 s, with the two that came by then."""
        a = project(DayProfile({"a": hours(h3=10)})).tenant("a")
        assert (a.requests, a.entries_per_request) == (5, 2.0)
        assert a.drained_at == pytest.approx(3 * HOUR + 3060 + 600 + 2.0)
        assert a.longest_wait == pytest.approx(602.0)
        assert a.peak == 2

    def test_the_default_care_day_of_a_large_municipality_carries(self) -> None:
        result = project(care_day(60_000))
        assert result.ok
        assert result.failed == ()
        (m,) = result.tenants
        assert m.longest_wait is not None
        assert m.longest_wait <= 600 + 2.0 + 1e-6

    def test_the_rate_limit_holds_in_the_simulation(self) -> None:
        """15,000 logs in the first minute, at 2 requests an hour: two full batches an
        hour (the second 2 s after the first), so the 30th goes 14 hours after the
        first."""
        profile = DayProfile({"a": minute_zero(15_000)}, slot=60)
        a = project(profile, rate_limit=RateLimit(2, 3600.0)).tenant("a")
        first = 499.5 * 60 / 15_000
        assert (a.requests, a.entries_per_request) == (30, 500.0)
        assert a.drained_at == pytest.approx(first + 14 * HOUR + 2 + 2.0)


class TestCannot:
    def test_a_limit_that_cannot_carry_the_day_and_the_one_it_needs(self) -> None:
        """Batches of 50 at 20 an hour carry 24,000 logs a day at most: 30,000 cannot be
        carried; the limit said to be needed carries it, one request less does not."""
        profile = care_day(30_000)
        result = project(profile, batch_size=50)
        assert not result.ok
        (m,) = result.failed
        assert m.drained_at is None
        assert m.longest_wait is None
        assert m.left_at_midnight > 0
        assert m.needed is not None
        assert m.needed > 20
        assert m.needed_limit == RateLimit(m.needed, 3600.0)
        assert f"needs {m.needed}/h" in m.verdict
        fed_back = project(profile, batch_size=50, tenant_limits={"m01": m.needed_limit})
        assert fed_back.ok
        less = project(profile, batch_size=50,
                       tenant_limits={"m01": RateLimit(m.needed - 1, 3600.0)})
        assert not less.ok

    def test_no_limit_helps_when_the_delivery_threads_are_too_slow(self) -> None:
        """Requests of 10 minutes carry 144 batches a day, however high the limit."""
        profile = DayProfile({"a": hours(h8=100_000)})
        result = project(profile, rate_limit=None, request_seconds=600)
        (a,) = result.failed
        assert a.limit is None
        assert a.needed is None
        assert "even without a limit" in a.verdict
        # the first batch full at 08:00:18, then one each 600 s: 97 done by 24:20
        assert a.requests == 97
        assert a.left_at_midnight == 100_000 - 95 * 500
        first = 8 * HOUR + 499.5 * 0.036
        assert result.busy == pytest.approx((result.deadline - first) / result.deadline)
        assert project(profile, rate_limit=None, request_seconds=600, workers=2,
                       needed=False).tenant("a").left_at_midnight < a.left_at_midnight


class TestFairness:
    def test_turns_keep_a_large_backlog_from_starving_the_others(self) -> None:
        """One municipality's 100 full batches and two others' one each, all accepted in
        the first minute, one thread, no limits, a minute a request: a's first batch is
        full first (at 0.6 s) and goes; then the turns serve b and c (full at 59.94 s)
        before a again, not after a's hundred."""
        profile = DayProfile({"a": minute_zero(50_000), "b": minute_zero(500),
                              "c": minute_zero(500)}, slot=60)
        result = project(profile, rate_limit=None, request_seconds=60)
        a, b, c = (result.tenant(t) for t in "abc")
        assert (a.requests, b.requests, c.requests) == (100, 1, 1)
        first = 499.5 * 60 / 50_000
        assert b.drained_at == pytest.approx(first + 2 * 60)
        assert c.drained_at == pytest.approx(first + 3 * 60)
        assert a.drained_at == pytest.approx(first + 102 * 60)

    def test_equal_municipalities_are_served_alike(self) -> None:
        profile = care_day(200_000, 4, spread=0)
        result = project(profile, rate_limit=RateLimit(10, 3600.0), needed=False)
        days = result.tenants
        assert len({d.requests for d in days}) == 1
        peaks = [d.peak for d in days]
        assert max(peaks) - min(peaks) <= 0.01 * max(peaks)
        drained = [d.drained_at for d in days if d.drained_at is not None]
        left = {d.left_at_midnight for d in days}
        assert (not drained and max(left) - min(left) <= 500) or (
            len(drained) == 4 and max(drained) - min(drained) <= 60)

    def test_limits_are_per_municipality(self) -> None:
        """A municipality over its limit does not hold back one under it."""
        profile = DayProfile({"big": hours(h8=300_000), "small": hours(h8=6_000)})
        result = project(profile, needed=False)
        assert not result.tenant("big").carries
        small = result.tenant("small")
        assert small.carries
        assert small.requests == 12
        assert small.drained_at == pytest.approx(9 * HOUR - 0.3 + 2.0, abs=4.0)


class TestSettings:
    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"batch_size": 0}, "batch_size"), ({"fill_wait": -1.0}, "fill_wait"),
        ({"request_seconds": 0.0}, "request_seconds"), ({"workers": 0}, "workers"),
        ({"step": 7}, "step"),
    ])
    def test_bad_settings(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            project(care_day(100), **kwargs)

    def test_to_json_is_one_document(self) -> None:
        data = json.loads(project(care_day(60_000), step=3600).to_json())
        assert data["ok"] is True
        assert data["batch_size"] == 500
        assert data["fill_wait"] == 600.0
        assert data["deadline_clock"] == "24:10"
        (m,) = data["tenants"]
        assert m["limit"] == {"requests": 20, "per": 3600.0}
        assert len(m["backlog"]) == 25
        assert m["needed"] is None


# ----------------------------------------------------------------------------- a store

DAY = dt.date(2026, 3, 29)  # the spring change: 02:00 becomes 03:00 in Copenhagen


def at(day: dt.date, hour: int, minute: int = 0) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, minute,
                       tzinfo=COPENHAGEN).timestamp()


def record_day(target: str, **options: Any) -> None:
    """A day recorded with delivery held back, and a little of the day before; one
    batch of it delivered (it leaves the outbox), one entry refused (a dead letter)."""
    store = open_store(target, **options)
    n = 0

    def add(tenant: str, when: float, count: int) -> None:
        nonlocal n
        store.append([NewEntry(1, (n + i).to_bytes(16, "big"), b"sealed", tenant)
                      for i in range(count)], when)
        n += count

    try:
        add("29189846", at(DAY - dt.timedelta(days=1), 23, 59), 4)
        add("29189846", at(DAY, 7, 5), 30)
        add("29189846", at(DAY, 8, 30), 20)
        add("55133018", at(DAY, 3, 10), 5)  # 03:10 CEST, an hour after 01:59 CET
        add("55133018", at(DAY, 23, 59), 1)
        lease = store.claim(3, 60, at(DAY, 9))  # the oldest three of the tenant served
        store.bury(lease.token, [(lease.entries[0].id, "E7", "refused")], at(DAY, 9))
        store.ack(lease.token, [e.id for e in lease.entries[1:]])
    finally:
        store.close()


def check_store_profile(profile: DayProfile) -> None:
    assert profile.slot == 60
    big, small = profile.counts["29189846"], profile.counts["55133018"]
    assert profile.hourly("29189846")[7:9] == (30, 20)
    assert big[7 * 60 + 5] == 30
    assert small[3 * 60 + 10] == 5
    assert small[23 * 60 + 59] == 1
    assert profile.logs == 56


class TestFromStore:
    def test_a_sqlite_file(self, tmp_path: Path) -> None:
        path = tmp_path / "day.sqlite"
        record_day(str(path))
        store = open_store(str(path), read_only=True)
        try:
            profile = from_store(store, name="day.sqlite")
            assert profile.source == "day.sqlite, 2026-03-29 (the busiest of 2 days held)"
            check_store_profile(profile)
            # the day before: 4 logs, less 2 delivered (1 refused is still held)
            before = from_store(store, DAY - dt.timedelta(days=1))
            assert before.logs == 2
            assert before.hourly("29189846")[23] == 2
            with pytest.raises(ConfigurationError, match="day: store holds no logs of "
                               "2026-01-01"):
                from_store(store, dt.date(2026, 1, 1))
        finally:
            store.close()

    def test_postgresql(self, pg_schema: str) -> None:
        record_day(POSTGRES_URL, schema=pg_schema)
        store = open_store(POSTGRES_URL, schema=pg_schema, read_only=True)
        try:
            check_store_profile(from_store(store))
        finally:
            store.close()

    def test_an_empty_store_says_why(self, tmp_path: Path) -> None:
        store = open_store(str(tmp_path / "empty.sqlite"))
        try:
            with pytest.raises(ConfigurationError, match="holds no logs to project"):
                from_store(store)
        finally:
            store.close()


# ----------------------------------------------------------------------------- the command


class TestCommand:
    def test_json_and_exit_zero_when_every_limit_carries(self) -> None:
        status, out, _ = run_cli("project", "--logs-per-day", "60000", "--json")
        assert status == 0
        data = json.loads(out)
        assert data["ok"] is True
        assert data["logs"] == 60_000
        assert data["tenants"][0]["carries"] is True

    def test_exit_three_and_the_needed_limit(self) -> None:
        status, out, _ = run_cli("project", "--logs-per-day", "30000", "--batch-size", "50",
                                 "--json")
        assert status == 3
        (m,) = json.loads(out)["tenants"]
        assert m["carries"] is False
        assert m["needed"]["requests"] > 20
        status, out, _ = run_cli("project", "--logs-per-day", "30000", "--batch-size", "50",
                                 "--tenant-limit", f"m01={m['needed']['requests']}")
        assert status == 0
        assert "every limit carries the day" in out

    def test_the_table(self, tmp_path: Path) -> None:
        status, out, _ = run_cli("project", "--logs-per-day", "30000", "--tenants", "3",
                                 "--requests-per-hour", "4")
        assert status == 3
        assert "the care-day shape, 30,000 logs a day over 3 municipalities" in out
        assert "NEEDS" in out
        assert "cannot carry the day: needs" in out
        for tenant in ("m01", "m02", "m03"):
            assert f"\n  {tenant} " in out

    def test_a_profile_file_and_a_store(self, tmp_path: Path) -> None:
        (tmp_path / "day.csv").write_text("tenant,hour,logs\n29189846,8,6000\n")
        status, out, _ = run_cli("project", "--profile", str(tmp_path / "day.csv"), "--json")
        assert status == 0
        assert json.loads(out)["tenants"][0]["requests"] == 12
        path = tmp_path / "day.sqlite"
        record_day(str(path))
        before = path.stat().st_mtime_ns
        status, out, _ = run_cli("project", "--store", str(path), "--json")
        assert status == 0
        data = json.loads(out)
        assert data["source"].startswith("day.sqlite, 2026-03-29")
        assert sum(t["logs"] for t in data["tenants"]) == 56
        assert path.stat().st_mtime_ns == before  # read-only

    def test_errors(self, tmp_path: Path) -> None:
        (tmp_path / "bad.csv").write_text("tenant,hour,logs\na,25,1\n")
        status, _, err = run_cli("project", "--profile", str(tmp_path / "bad.csv"))
        assert status == 1
        assert "bad.csv line 2: hour" in err
        status, _, err = run_cli("project", "--logs-per-day", "100", "--day", "2026-01-01")
        assert status == 1
        assert "--day and --schema go with --store" in err
        status, _, err = run_cli("project", "--logs-per-day", "100", "--tenant-limit", "x")
        assert status == 1
        assert "TENANT=N" in err
        status, _, err = run_cli("project", "--store", str(tmp_path / "none.sqlite"))
        assert status == 1
        assert "no SQLite store" in err
        assert not (tmp_path / "none.sqlite").exists()
        with pytest.raises(SystemExit) as stop:
            run_cli("project")
        assert stop.value.code == 2

    def test_the_picture(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        picture = tmp_path / "day.png"
        status, out, _ = run_cli("project", "--logs-per-day", "30000", "--tenants", "3",
                                 "--plot", str(picture))
        assert status == 0
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"picture written to {picture}" in out
