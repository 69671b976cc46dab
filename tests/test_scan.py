"""The dedup scan: the C accelerator and the pure-Python scan give the same answers.

`Scanner.scan` uses ``minlog._speedups`` when it is built; `Scanner._scan` is the
pure-Python reference. Hypothesis draws batches across DST changes, in Copenhagen, UTC
and other zones, with repeats, non-ASCII identifiers, hot keys and items to refuse, and
holds the two equal. `KeyMaker` is the independent reference for the keys themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minlog import Access, Employee, Organisation, ValidationError
from minlog._days import COPENHAGEN, CopenhagenDays, copenhagen_day
from minlog._dedup import KeyMaker
from minlog._scan import NATIVE, Scanner

SECRET = bytes(range(32))
ORG = Organisation("380000000000001")
NOW = dt.datetime(2026, 10, 25, 12, 0, tzinfo=dt.UTC)  # the day summer time ends
#: Times the scan runs at: far from an offset change, and within two hours of one.
NOWS = [NOW, dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 1, 50, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 23, 22, 59, tzinfo=dt.UTC)]
SKEW = 300.0

native_only = pytest.mark.skipif(NATIVE is None, reason="the C accelerator is not built")

EMPLOYEES = [
    Employee("0101701234", name="A"),
    Employee("0101701235", name="B"),
    Employee("ab12x", source="Autorisation", name="C"),
    Employee("Æblø-7", source="EuropeanHealthcareProfessional", name="D"),
    Employee("\U0001f600x", source="Autorisation", name="E"),  # non-BMP in an id
]
CITIZENS = [("0202802345", "CPR"), ("0303813456", "CPR"), ("0404824567", "eCPR")]
ZONES = [COPENHAGEN, dt.UTC, zoneinfo.ZoneInfo("America/New_York"),
         dt.timezone(dt.timedelta(hours=5, minutes=30))]


US = 1_000_000


@st.composite
def accesses(draw: st.DrawFn, now: dt.datetime = NOW) -> Access:
    # Instants up to 40 days before ``now`` (late days, an offset change), around the
    # future horizon (``now`` + SKEW, to the microsecond), and around midnights.
    offset = draw(st.one_of(
        st.integers(-40 * 86_400 * US, 600 * US),
        st.integers(int(SKEW - 5) * US, int(SKEW + 5) * US),
        st.integers(-3 * 3600 * US, 3 * 3600 * US),
    ))
    at = (now + dt.timedelta(microseconds=offset)).astimezone(draw(st.sampled_from(ZONES)))
    if draw(st.booleans()) and at.tzinfo is COPENHAGEN:
        at = at.replace(fold=1)
    citizen, source = draw(st.sampled_from(CITIZENS))
    return Access(citizen, draw(st.sampled_from(EMPLOYEES)), ORG, "Opslag", at,
                  citizen_source=source)


def scanner(native: bool) -> Scanner:
    return Scanner(KeyMaker(SECRET).prefix, CopenhagenDays(), SKEW, native=native)


def answer(s: Scanner, batch: list[object], hot: dict[int, set[bytes]],
           now: dt.datetime = NOW) -> tuple[str, object]:
    try:
        return ("ok", s.scan(batch, hot, now.timestamp()))  # type: ignore[arg-type]
    except ValidationError as e:
        return ("refused", (e.field, str(e)))


@native_only
class TestNativeEqualsPure:
    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_same_candidates(self, data: st.DataObject) -> None:
        """For any batch (repeats included), any hot set and any time of scanning, the
        same candidates or the same refusal."""
        now = data.draw(st.sampled_from(NOWS))
        batch = data.draw(st.lists(accesses(now), max_size=40))
        batch = batch + batch[: data.draw(st.integers(0, len(batch)))]
        maker = KeyMaker(SECRET)
        hot: dict[int, set[bytes]] = {}
        for a in data.draw(st.lists(st.sampled_from(batch), max_size=10)) if batch else []:
            day = copenhagen_day(a.at)
            hot.setdefault(day, set()).add(maker.key(a, day))
        pure = scanner(native=False)
        expected = answer(pure, list(batch), hot, now)
        assert answer(scanner(native=True), list(batch), hot, now) == expected
        assert answer(scanner(native=True), tuple(batch), hot, now) == expected  # type: ignore[arg-type]

    @settings(max_examples=100, deadline=None)
    @given(batch=st.lists(accesses(), min_size=1, max_size=20), where=st.integers(0, 20))
    def test_same_refusal_of_a_stranger(self, batch: list[object], where: int) -> None:
        """An item that is not an Access is refused at the same index by both."""
        batch.insert(min(where, len(batch)), "not an access")
        assert answer(scanner(native=True), batch, {}) == answer(scanner(native=False),
                                                                 batch, {})

    def test_keys_are_the_keymakers(self) -> None:
        """The candidates' days and keys are those of the reference `KeyMaker`."""
        batch = [Access(c, e, ORG, "x", NOW - dt.timedelta(hours=h), citizen_source=s)
                 for e in EMPLOYEES for c, s in CITIZENS for h in (0, 26, 50)]
        found = scanner(native=True).scan(batch, {}, NOW.timestamp())
        maker = KeyMaker(SECRET)
        assert len(found) == len(batch)
        for i, day, key in found:
            assert day == copenhagen_day(batch[i].at)
            assert key == maker.key(batch[i], day)

    def test_a_hot_set_that_is_not_a_set(self) -> None:
        """Whatever container the hot set holds, `in` decides (as in Python)."""
        a = Access("0202802345", EMPLOYEES[0], ORG, "x", NOW)
        day = copenhagen_day(a.at)
        hot: dict[int, set[bytes]] = {day: frozenset({KeyMaker(SECRET).key(a, day)})}  # type: ignore[dict-item]
        assert scanner(native=True).scan([a], hot, NOW.timestamp()) == []


@native_only
class TestBlake2b:
    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=600))
    def test_equals_hashlib(self, data: bytes) -> None:
        """The accelerator's BLAKE2b-128 is hashlib's, across block boundaries."""
        assert NATIVE.blake2b16(data) == hashlib.blake2b(data, digest_size=16).digest()  # type: ignore[union-attr]

    @pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 255, 256, 257, 1000])
    def test_block_edges(self, n: int) -> None:
        data = bytes(i % 251 for i in range(n))
        assert NATIVE.blake2b16(data) == hashlib.blake2b(data, digest_size=16).digest()  # type: ignore[union-attr]


def test_accelerator_present_where_required() -> None:
    """CI builds the accelerator (MINLOG_REQUIRE_SPEEDUPS=1): it must then be in use,
    unless the pure-Python scan was asked for."""
    if os.environ.get("MINLOG_REQUIRE_SPEEDUPS") != "1" or \
            os.environ.get("MINLOG_PURE_PYTHON") == "1":
        pytest.skip("the accelerator is optional here")
    assert NATIVE is not None
