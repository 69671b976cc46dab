"""The ledger: pure decisions and bounded memory, with a fixed clock and no disk."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minlog import Access, Employee, Organisation, ValidationError
from minlog.core.days import COPENHAGEN
from minlog.core.keys import KeyMaker
from minlog.core.ledger import Candidate, Ledger

KEYS = KeyMaker(b"k" * 32)
ORG = Organisation("380000000000001")
NOW = dt.datetime(2026, 3, 29, 12, 0, tzinfo=COPENHAGEN)  # the spring DST change day
TODAY = NOW.date().toordinal()
EMPLOYEES = [Employee(f"01017{n:05d}", name=f"E{n}") for n in range(3)]
CITIZENS = ["0202802345", "0303303456", "0404404567"]


def access(at: dt.datetime, employee: int = 0, citizen: int = 0) -> Access:
    return Access(CITIZENS[citizen], EMPLOYEES[employee], ORG, "Opslag", at)


def ledger(**options: object) -> Ledger:
    return Ledger(KEYS, now=NOW.timestamp(), **options)  # type: ignore[arg-type]


def days_ago(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(NOW.date() - dt.timedelta(days=n), dt.time(hour),
                               COPENHAGEN)


class TestDays:
    def test_hot_window_and_horizon(self) -> None:
        """Today and two days before are hot; the horizon counts today among its days."""
        led = ledger(hot_days=3, horizon_days=35)
        assert list(led.hot_window()) == [TODAY - 2, TODAY - 1, TODAY]
        assert led.horizon_start() == TODAY - 34
        assert led.is_late(TODAY - 3)
        assert not led.is_late(TODAY - 2)

    def test_the_day_of_an_access_is_its_copenhagen_day_on_a_dst_day(self) -> None:
        """01:59 and 03:00 local on the spring change are one day; 23:59 too; the UTC
        instant just before local midnight is the day before."""
        led = ledger()
        at = [dt.datetime(2026, 3, 29, 1, 59, tzinfo=COPENHAGEN),
              dt.datetime(2026, 3, 29, 3, 0, tzinfo=COPENHAGEN),
              dt.datetime(2026, 3, 28, 22, 59, tzinfo=dt.UTC),  # 23:59 CET on the 28th
              dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)]   # 00:00 CET on the 29th
        found = [led.scan([access(a, citizen=i % 3, employee=i // 3)], NOW.timestamp())[0].day
                 for i, a in enumerate(at)]
        assert found == [TODAY, TODAY, TODAY - 1, TODAY]

    def test_advance_keeps_hot_days_and_drops_the_rest(self) -> None:
        """A new day moves the window: days that leave it are forgotten."""
        led = ledger(hot_days=2)
        c = led.scan([access(days_ago(1))], NOW.timestamp())
        led.learn([(c[0].day, c[0].key)])
        assert led.knows(c[0].day, c[0].key)
        assert led.advance((NOW + dt.timedelta(days=1)).timestamp())
        assert not led.advance((NOW + dt.timedelta(days=1)).timestamp())
        assert not led.knows(c[0].day, c[0].key)
        assert led.held_days() == [TODAY, TODAY + 1]

    def test_the_day_turns_inside_scan(self) -> None:
        """A scan after midnight moves the ledger to the new day by itself."""
        led = ledger()
        tomorrow = NOW + dt.timedelta(days=1)
        led.scan([access(tomorrow)], tomorrow.timestamp())
        assert led.today == TODAY + 1


class TestScan:
    def test_unknown_keys_are_candidates_in_order(self) -> None:
        """What memory does not know is a candidate, with its place in the batch."""
        led = ledger()
        batch = [access(NOW, 0, 0), access(NOW, 1, 0), access(NOW, 0, 1)]
        cands = led.scan(batch, NOW.timestamp())
        assert [c.position for c in cands] == [0, 1, 2]
        assert all(c.day == TODAY and len(c.key) == 16 for c in cands)
        assert [c.key for c in cands] == [KEYS.key(a, TODAY) for a in batch]

    def test_repeats_in_a_batch_give_one_candidate(self) -> None:
        """The same (employee, citizen, day) twice in one batch: the first is the candidate."""
        led = ledger()
        cands = led.scan([access(NOW), access(NOW + dt.timedelta(minutes=1))],
                         NOW.timestamp())
        assert [c.position for c in cands] == [0]

    def test_memory_answers_only_what_it_has_learned(self) -> None:
        """Scanning does not teach memory: only learn() makes a key a duplicate."""
        led = ledger()
        a = access(NOW)
        assert led.scan([a], NOW.timestamp())
        assert led.scan([a], NOW.timestamp())  # still a candidate: nothing durable yet
        c = led.scan([a], NOW.timestamp())[0]
        led.learn([(c.day, c.key)])
        assert led.scan([a], NOW.timestamp()) == []

    def test_future_accesses_are_refused(self) -> None:
        """An access more than max_future_skew after the clock is a ValidationError."""
        led = ledger(max_future_skew=60)
        assert led.scan([access(NOW + dt.timedelta(seconds=59))], NOW.timestamp())
        for tz in (COPENHAGEN, dt.UTC):
            with pytest.raises(ValidationError, match=r"access\.at"):
                led.scan([access((NOW + dt.timedelta(seconds=61)).astimezone(tz))],
                         NOW.timestamp())

    def test_a_bad_item_refuses_the_batch(self) -> None:
        """An item that is not an Access is a ValidationError naming its place."""
        with pytest.raises(ValidationError, match="item 1 is not an Access"):
            ledger().scan([access(NOW), "x"], NOW.timestamp())  # type: ignore[list-item]

    def test_late_and_beyond_the_horizon(self) -> None:
        """Days before the hot window are late; before the horizon, beyond it (delivered
        by default, refused on request)."""
        led = ledger(hot_days=3, horizon_days=10)
        late, beyond = (led.scan([access(days_ago(n))], NOW.timestamp())[0] for n in (3, 10))
        assert (late.late, late.beyond) == (True, False)
        assert (beyond.late, beyond.beyond) == (True, True)
        with pytest.raises(ValidationError, match="older than the dedup horizon of 10 days"):
            ledger(horizon_days=10, beyond_horizon="refuse").scan(
                [access(days_ago(10))], NOW.timestamp())
        assert ledger(horizon_days=10, beyond_horizon="refuse").scan(
            [access(days_ago(9))], NOW.timestamp())


class TestLearn:
    def test_late_days_are_few_and_least_recently_learned_go(self) -> None:
        """At most late_days late days are held; learning a day again keeps it."""
        led = ledger(hot_days=2, late_days=2, horizon_days=30)
        cands = {n: led.scan([access(days_ago(n))], NOW.timestamp())[0] for n in (5, 6, 7)}
        led.learn([(cands[5].day, cands[5].key)])
        led.learn([(cands[6].day, cands[6].key)])
        led.learn([(cands[5].day, cands[5].key)])  # 5 is now the most recent
        led.learn([(cands[7].day, cands[7].key)])
        assert led.knows(cands[5].day, cands[5].key)
        assert not led.knows(cands[6].day, cands[6].key)
        assert led.knows(cands[7].day, cands[7].key)

    def test_days_beyond_the_horizon_are_not_held(self) -> None:
        """Memory never holds a day the store may forget."""
        led = ledger(horizon_days=10)
        c = led.scan([access(days_ago(12))], NOW.timestamp())[0]
        led.learn([(c.day, c.key)])
        assert not led.knows(c.day, c.key)

    def test_late_days_leave_memory_when_they_leave_the_horizon(self) -> None:
        """A late day held in memory is let go once the clock moves it past the horizon."""
        led = ledger(horizon_days=10)
        c = led.scan([access(days_ago(9))], NOW.timestamp())[0]
        led.learn([(c.day, c.key)])
        assert led.knows(c.day, c.key)
        led.advance((NOW + dt.timedelta(days=1)).timestamp())
        assert not led.knows(c.day, c.key)

    def test_remember_day_fills_a_hot_day(self) -> None:
        """Opening fills hot days from the store; a late day cannot be filled that way."""
        led = ledger()
        led.remember_day(TODAY, {b"x" * 16})
        assert led.knows(TODAY, b"x" * 16)
        assert len(led) == 1
        with pytest.raises(ValueError, match="hot days"):
            led.remember_day(TODAY - 10, {b"y" * 16})


class TestConfiguration:
    @pytest.mark.parametrize("options", [
        {"hot_days": 0}, {"horizon_days": 2, "hot_days": 3}, {"late_days": -1},
        {"max_future_skew": -1}, {"beyond_horizon": "drop"}])
    def test_nonsense_is_refused(self, options: dict[str, object]) -> None:
        """Impossible settings are refused when the ledger is made."""
        with pytest.raises(ValueError):  # noqa: PT011 - each message names its setting
            ledger(**options)


# ----------------------------------------------------------------------------- property


ops = st.lists(st.tuples(st.sampled_from(["scan", "learn", "advance"]),
                         st.integers(0, 2), st.integers(0, 2),
                         st.integers(-40, 0), st.integers(0, 23)), max_size=60)


@settings(max_examples=300)
@given(ops)
def test_memory_only_ever_says_duplicate_for_learned_keys(steps: list[tuple[str, int, int,
                                                                            int, int]]) -> None:
    """Whatever the order of scans, learning and days turning: a key is a duplicate in
    memory only if it was learned (durably seen), and memory stays within its bound."""
    led = ledger(hot_days=3, horizon_days=20, late_days=2)
    now = NOW
    learned: set[tuple[int, bytes]] = set()
    last: list[Candidate] = []
    for op, e, c, day, hour in steps:
        if op == "advance":
            now += dt.timedelta(hours=hour + 1)
            led.advance(now.timestamp())
            continue
        a = access(days_ago(-day - (now.date() - NOW.date()).days, hour), e, c)
        if a.at > now:
            continue
        if op == "scan":
            found = led.scan([a], now.timestamp())
            k = KEYS.key(a, a.at.astimezone(COPENHAGEN).date().toordinal())
            if not found:
                assert (a.at.astimezone(COPENHAGEN).date().toordinal(), k) in learned
            last = found
        elif last:
            led.learn([(x.day, x.key) for x in last])
            learned.update((x.day, x.key) for x in last)
        held = led.held_days()
        late = [d for d in held if led.is_late(d)]
        assert len(late) <= 2
        assert all(d >= led.horizon_start() for d in held)
