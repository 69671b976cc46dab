"""The alias registry behind `AlternativeId` and `Initials`: numbering, what is registered
when, and the stores' registry methods (issue 11, item 8)."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from minlog import (
    Access,
    ConfigurationError,
    Employee,
    MemoryTransport,
    MinLog,
    Organisation,
    ValidationError,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.identity.memory import MemoryAliasRegistry
from minlog.identity.policy import AlternativeId, IdentityPolicy, Initials

KEY = bytes(range(32))
NORD = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
SCOPE = "SOR:380000000000001"
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
REGISTRY_METHODS = ("alias_for", "add_alias", "resolve_alias", "highest_alias_number",
                    "list_aliases")


class Counting:
    """Wraps a registry (or a store) and counts the calls of its alias methods."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in REGISTRY_METHODS:
            return method

        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            return method(*args)

        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def bind(policy: IdentityPolicy, registry: Any) -> Any:
    return policy.bind(registry, subject=lambda e: f"{e.source}:{e.id}".encode(),
                       seal=lambda data, aad: data, unseal=lambda data, aad: data)


def same_initials(n: int) -> list[Employee]:
    """``n`` employees whose initials are all "AJ"."""
    return [Employee(f"A{i}", source="Autorisation", name=f"Anne{i} Jensen") for i in range(n)]


class TestInitialsNumbering:
    def test_equal_initials_take_a_linear_number_of_registry_calls(self) -> None:
        """1,000 employees with the same initials in one unit cost O(n) registry calls,
        not one attempt per number already taken (which is n*n/2)."""
        registry = Counting(MemoryAliasRegistry())
        ident = bind(IdentityPolicy(default=Initials()), registry)
        shown = [ident(e, NORD)[0] for e in same_initials(1000)]
        assert shown[0] == "AJ, Hjemmeplejen Nord"
        assert shown[1] == "AJ2, Hjemmeplejen Nord"
        assert shown[-1] == "AJ1000, Hjemmeplejen Nord"
        assert len(set(shown)) == 1000
        assert registry.total <= 3 * 1000 + 10, registry.calls

    def test_numbers_continue_after_a_restart(self) -> None:
        """A new process asks the registry once for the highest number and goes on from it."""
        registry = MemoryAliasRegistry()
        first = bind(IdentityPolicy(default=Initials()), registry)
        for e in same_initials(5):
            first(e, NORD)
        counting = Counting(registry)
        again = bind(IdentityPolicy(default=Initials()), counting)
        name, _ = again(Employee("B1", source="Autorisation", name="Arne Juhl"), NORD)
        assert name == "AJ6, Hjemmeplejen Nord"
        assert counting.calls["highest_alias_number"] == 1

    def test_a_number_taken_by_another_process_is_skipped(self) -> None:
        """When another process took the next number meanwhile, the one after is used."""
        registry = MemoryAliasRegistry()
        ident = bind(IdentityPolicy(default=Initials()), registry)
        ident(same_initials(1)[0], NORD)  # AJ; this process now expects AJ2 to be free
        registry.add_alias(SCOPE, "AJ2", b"other process", b"x")
        registry.add_alias(SCOPE, "AJ3", b"third process", b"y")
        name, _ = ident(Employee("B1", source="Autorisation", name="Arne Juhl"), NORD)
        assert name == "AJ4, Hjemmeplejen Nord"

    def test_other_initials_and_longer_stems_do_not_count(self) -> None:
        """"AJK" or "AJ2X" in the registry are not numbers of "AJ"."""
        registry = MemoryAliasRegistry()
        for code in ("AJK", "AJK7", "AJ2X", "A", "A9"):
            registry.add_alias(SCOPE, code, code.encode(), b"x")
        assert registry.highest_alias_number(SCOPE, "AJ") == 0
        registry.add_alias(SCOPE, "AJ", b"aj", b"x")
        assert registry.highest_alias_number(SCOPE, "AJ") == 1
        registry.add_alias(SCOPE, "AJ12", b"aj12", b"x")
        assert registry.highest_alias_number(SCOPE, "AJ") == 12
        assert registry.highest_alias_number("SOR:other", "AJ") == 0

    def test_one_record_many_of_equal_initials_on_sqlite(self, tmp_path: Path) -> None:
        """Through MinLog on a real SQLite file: 300 first-of-day logs of employees with
        the same initials cost a linear number of registry calls and get distinct names."""
        t = MemoryTransport()
        with MinLog.open(tmp_path / "m.sqlite", transport=t, system_name="Cura", key=KEY,
                         identity=IdentityPolicy(default=Initials()),
                         clock=FixedClock(NOW), start_worker=False) as log:
            counting = Counting(log.store)
            log._identity.registry = counting
            batch = [Access("0303303456", e, NORD, "Opslag", NOW) for e in same_initials(300)]
            assert all(log.record_many(batch))
            assert log.flush(timeout=30)
        assert counting.total <= 3 * 300 + 10, counting.calls
        assert len({r.user_person_name for r in t.delivered}) == 300


class TestStoreRegistry:
    """The stores' registry methods (SQLite file and PostgreSQL schema)."""

    def test_highest_alias_number(self, store: Any) -> None:
        """The highest number after a stem in a scope: 0 for none, 1 for the bare stem."""
        assert store.highest_alias_number(SCOPE, "AJ") == 0
        for code in ("AJK", "AJK7", "AJ2X", "A", "A9", "ÅJ5"):
            assert store.add_alias(SCOPE, code, code.encode(), b"x")
        assert store.highest_alias_number(SCOPE, "AJ") == 0
        assert store.add_alias(SCOPE, "AJ", b"aj", b"x")
        assert store.highest_alias_number(SCOPE, "AJ") == 1
        assert store.add_alias(SCOPE, "AJ2", b"aj2", b"x")
        assert store.add_alias(SCOPE, "AJ10", b"aj10", b"x")
        assert store.highest_alias_number(SCOPE, "AJ") == 10
        assert store.highest_alias_number(SCOPE, "ÅJ") == 5
        assert store.highest_alias_number(SCOPE, "A") == 9
        assert store.highest_alias_number("SOR:other", "AJ") == 0

    def test_list_aliases(self, store: Any) -> None:
        """Every (code, sealed) of one scope, in code order; other scopes stay out."""
        assert store.list_aliases(SCOPE) == []
        for code in ("AJ2", "K7Q49MX2", "AJ"):
            assert store.add_alias(SCOPE, code, code.encode(), b"sealed " + code.encode())
        assert store.add_alias("SOR:other", "AJ", b"aj", b"x")
        assert store.list_aliases(SCOPE) == [("AJ", b"sealed AJ"), ("AJ2", b"sealed AJ2"),
                                             ("K7Q49MX2", b"sealed K7Q49MX2")]

    @pytest.mark.parametrize("stem", ["A%", "A_", "A*", "A?", "A[", "A\\"])
    def test_highest_alias_number_takes_the_stem_literally(self, store: Any,
                                                           stem: str) -> None:
        """Pattern characters in a stem match only themselves."""
        assert store.add_alias(SCOPE, "AB7", b"ab7", b"x")
        assert store.add_alias(SCOPE, f"{stem}3", b"s3", b"x")
        assert store.highest_alias_number(SCOPE, stem) == 3


class TestRefusedBatch:
    """A batch refused by validation registers no code for any of its employees."""

    @staticmethod
    def _open(store_target: dict[str, Any], policy: IdentityPolicy, **options: Any) -> MinLog:
        return MinLog.open(store_target["target"], transport=MemoryTransport(),
                           system_name="Cura", key=KEY, identity=policy,
                           store_options=store_target["store_options"],
                           clock=FixedClock(NOW), start_worker=False, **options)

    @pytest.mark.parametrize("refusal", ["nameless employee", "unlisted unit (strict)",
                                         "organisation source of another schema version"])
    def test_no_code_is_registered_when_the_batch_is_refused(
            self, store_target: dict[str, Any], refusal: str) -> None:
        """When the last access of a batch is refused, the employees before it get no code."""
        policy = IdentityPolicy(default=Initials(), strict=refusal.startswith("unlisted"),
                                organisations={("SOR", NORD.id): Initials(),
                                               ("SKS", "1234567"): Initials()})
        good = [Access("0303303456", e, NORD, "Opslag", NOW) for e in same_initials(3)]
        if refusal == "nameless employee":
            bad = Access("0303303456", Employee("X1", source="Autorisation"), NORD, "Opslag",
                         NOW)
        elif refusal.startswith("unlisted"):
            bad = Access("0303303456", same_initials(4)[3],
                         Organisation("380000000000009", "SOR", "Ny enhed"), "Opslag", NOW)
        else:
            bad = Access("0303303456", same_initials(4)[3],
                         Organisation("1234567", "SKS", "Enhed"), "Opslag", NOW)
        with self._open(store_target, policy) as log:
            counting = Counting(log.store)
            log._identity.registry = counting
            with pytest.raises(ValidationError):
                log.record_many([*good, bad])
            assert counting.calls["add_alias"] == 0
            assert log.store.counts().pending == 0
            assert log.resolve(NORD, "AJ") is None
            # the same batch without the bad access registers and numbers as usual
            assert all(log.record_many(good))
            assert counting.calls["add_alias"] == 3
            assert log.resolve(NORD, "AJ3") == "A2"


class TestAlternativeIdFits:
    def test_every_candidate_fits_with_the_longest_prefix(self) -> None:
        """Whatever the collisions, a shown code with a 30-character prefix fits in 50."""
        alt = AlternativeId(b"kommunens-hemmelighed-2026", prefix="P" * 30)
        shown = [alt.show(c) for c in alt.candidates(same_initials(1)[0], NORD)]
        assert len(shown) >= 4
        assert all(len(s) <= 50 for s in shown)

    @pytest.mark.parametrize("prefix", [7, "Med\x00arbejder", "\u200b", "P" * 31])
    def test_a_bad_prefix_is_a_configuration_error(self, prefix: object) -> None:
        """A prefix that is not one short visible line is refused when configured."""
        with pytest.raises(ConfigurationError, match="prefix"):
            AlternativeId(b"kommunens-hemmelighed-2026", prefix=prefix)  # type: ignore[arg-type]
