"""The pure core around the facade: dedup keys, secrets, retry and rate policies."""

from __future__ import annotations

import datetime as dt
import hashlib
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
from minlog.core.keys import KeyMaker
from minlog.core.sealing import Sealer
from minlog.keyfile import load_or_create_key

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

    def test_the_key_is_hashlibs_keyed_blake2b(self) -> None:
        """The key is BLAKE2b-128 keyed with the secret over the documented material."""
        k = KeyMaker(b"s" * 32)
        expected = hashlib.blake2b(b"CPR\x1f0101701234\x1fCPR\x1f0202802345\x1f7",
                                   key=b"s" * 32, digest_size=16,
                                   person=b"minlog-key-v2").digest()
        assert k.key(access(), 7) == expected

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
