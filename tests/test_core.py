"""The pure core around the facade: dedup keys, the hot set, secrets, retry and rate policies."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from minlog import (
    Access,
    ConfigurationError,
    Employee,
    Organisation,
    RateLimit,
    RetryPolicy,
    StoreError,
)
from minlog.core.keys import HotSet, KeyMaker
from minlog.core.secrets import Sealer, load_or_create_key

AT = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
ORG = Organisation("380000000000001")


def access(citizen: str = "0202802345", employee: Employee | None = None,
           source: str = "CPR") -> Access:
    return Access(citizen, employee or Employee("0101701234", name="A"), ORG, "x", AT,
                  citizen_source=source)


class TestKeys:
    def test_keys_are_16_bytes_and_deterministic(self) -> None:
        """One secret gives one 16-byte key per (employee, citizen, day)."""
        k = KeyMaker(b"s" * 32)
        assert len(k.key(access(), 1)) == 16
        assert k.key(access(), 1) == KeyMaker(b"s" * 32).key(access(), 1)

    def test_keys_differ_by_everything_that_matters(self) -> None:
        """Another secret, day, citizen, employee or source gives another key."""
        k = KeyMaker(b"s" * 32)
        base = k.key(access(), 1)
        others = [KeyMaker(b"t" * 32).key(access(), 1), k.key(access(), 2),
                  k.key(access("0303303456"), 1),
                  k.key(access(employee=Employee("0404404567", name="B")), 1),
                  k.key(access(employee=Employee("0101701234", source="Autorisation")), 1),
                  k.key(access("0202802345", source="eCPR"), 1)]
        assert base not in others
        assert len(set(others)) == len(others)

    def test_keys_hold_no_cpr(self) -> None:
        """The key bytes do not contain the CPR digits."""
        key = KeyMaker(b"s" * 32).key(access(), 1)
        assert b"0202802345" not in key
        assert b"0202802345" not in key.hex().encode()

    def test_short_secret_refused(self) -> None:
        """A secret under 16 bytes is refused."""
        with pytest.raises(ValueError, match="secret"):
            KeyMaker(b"short")


class TestHotSet:
    def test_window_and_late_days(self) -> None:
        """Today and the two days before are held; older days are late."""
        hot = HotSet(today=100)
        assert list(hot.window()) == [98, 99, 100]
        assert hot.is_late(97)
        assert not hot.is_late(98)
        assert hot.partition(97) is None

    def test_advance_drops_old_days(self) -> None:
        """Moving to a new day drops the days that left the window."""
        hot = HotSet(today=100)
        hot.add_all(98, [b"a"])
        hot.add_all(100, [b"b"])
        assert hot.advance(101) == [98]
        assert not hot.contains(98, b"a")
        assert hot.contains(100, b"b")
        assert hot.advance(100) == []
        assert len(hot) == 1

    def test_adopted_late_days_are_few_and_go_at_midnight(self) -> None:
        """At most two late days are held; a new day lets them all go."""
        h = HotSet(100, retention=3)
        for day in (90, 91, 92):
            h.adopt(day, {bytes(16)})
        assert h.partition(90) is None
        assert h.partition(91) == {bytes(16)}
        assert h.contains(92, bytes(16))
        h.adopt(91, {bytes(16)})  # used again: now the most recent
        h.adopt(93, set())
        assert h.partition(92) is None
        assert h.partition(91) is not None
        h.advance(101)
        assert h.partition(91) is None
        assert h.late == []

    def test_only_late_days_are_adopted(self) -> None:
        with pytest.raises(ValueError, match="late"):
            HotSet(100, retention=3).adopt(99, set())

    def test_day_ahead_gets_a_partition(self) -> None:
        """A day after today (a clock just behind the caller's) is kept too."""
        hot = HotSet(today=100)
        part = hot.partition(101)
        assert part is not None
        part.add(b"x")
        assert hot.contains(101, b"x")


class TestSecrets:
    def test_key_file_is_private_and_reused(self, tmp_path: Path) -> None:
        """The key file is made with mode 0600 and read back the same."""
        path = tmp_path / "k" / "minlog.key"
        first = load_or_create_key(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_or_create_key(path) == first
        assert len(first) == 32

    def test_bad_key_file(self, tmp_path: Path) -> None:
        """A key file that is not 64 hex digits is a ConfigurationError."""
        (tmp_path / "bad").write_text("abc")
        with pytest.raises(ConfigurationError):
            load_or_create_key(tmp_path / "bad")
        with pytest.raises(ConfigurationError):
            load_or_create_key(tmp_path / "missing", create=False)

    def test_concurrent_creation_ends_with_one_key(self, tmp_path: Path) -> None:
        """Processes racing to create the key file all end up with the same key."""
        path = str(tmp_path / "race.key")
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            keys = pool.map(load_or_create_key, [path] * 8)
        assert len(set(keys)) == 1

    def test_sealer_round_trip_and_tamper(self) -> None:
        """Sealed data opens with its aad; tampering or another aad is a StoreError."""
        s = Sealer(os.urandom(32))
        blob = s.seal(b"0202802345 secret", b"aad")
        assert s.unseal(blob, b"aad") == b"0202802345 secret"
        assert b"0202802345" not in blob
        for bad_blob, aad in ((blob, b"other"), (blob[:-1] + bytes([blob[-1] ^ 1]), b"aad"),
                              (b"\x02" + blob[1:], b"aad")):
            with pytest.raises(StoreError) as e:
                s.unseal(bad_blob, aad)
            assert "0202802345" not in str(e.value)
        assert s.seal(b"x") != s.seal(b"x")  # fresh nonces


class TestRetryPolicy:
    def test_exponential_capped_and_jittered(self) -> None:
        """Delays double, stop at the maximum, and spread by at most the jitter."""
        p = RetryPolicy(initial=1.0, multiplier=2.0, maximum=10.0, jitter=0.2)
        mid = [p.delay(n, rand=lambda: 0.5) for n in range(1, 7)]
        assert mid == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        assert p.delay(3, rand=lambda: 0.0) == pytest.approx(3.2)
        assert p.delay(3, rand=lambda: 1.0) == pytest.approx(4.8)
        assert p.delay(10_000, rand=lambda: 0.5) == 10.0

    def test_retry_after_is_a_floor(self) -> None:
        """A receiver's Retry-After is honoured even when backoff says sooner."""
        p = RetryPolicy(initial=1.0, jitter=0.0)
        assert p.delay(1, retry_after=30.0) == 30.0
        assert p.delay(1, retry_after=0.1) == 1.0

    @pytest.mark.parametrize("kw", [{"initial": 0}, {"maximum": 0.5}, {"multiplier": 0.5},
                                    {"jitter": 1.0}])
    def test_bad_values(self, kw: dict[str, float]) -> None:
        """Nonsense policies are refused."""
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**kw)


class TestRateLimit:
    def test_wait_until_a_slot_frees(self) -> None:
        """With the window full, wait until the oldest send leaves it."""
        limit = RateLimit(2, 60.0)
        assert limit.wait([], 0.0) == 0.0
        assert limit.wait([0.0], 1.0) == 0.0
        assert limit.wait([0.0, 10.0], 20.0) == 40.0
        assert limit.wait([0.0, 10.0], 61.0) == 0.0

    def test_drain_time_and_guidance(self) -> None:
        """The public guidance: 20 requests an hour; a backlog's drain time follows."""
        g = RateLimit.guidance()
        assert (g.requests, g.per) == (20, 3600.0)
        assert g.drain_seconds(10_000, 500) == 0.0
        assert g.drain_seconds(20_000, 500) == 3600.0
        with pytest.raises(ValueError, match="RateLimit"):
            RateLimit(0, 1.0)
