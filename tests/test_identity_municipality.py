"""Identity per municipality, failing closed (issue 10, item 7): a municipality's policy is
a default for all its units plus per-unit overrides; a unit not listed takes its
municipality's default and never falls back to the full name."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from minlog import (
    Access,
    AlternativeId,
    ConfigurationError,
    Employee,
    FullName,
    IdentityPolicy,
    Initials,
    MemoryTransport,
    MinLog,
    Organisation,
    ValidationError,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.identity import MunicipalityPolicy
from minlog.identity.memory import MemoryAliasRegistry

KEY = bytes(range(32))
SECRET = b"kommunens-hemmelighed-2026"
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
AARHUS, ODENSE = "55133018", "35209115"
#: Aarhus: home care (listed, full name) and an addiction unit opened tomorrow (not listed).
HJEMMEPLEJE = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
MISBRUG_NY = Organisation("380000000000009", "SOR", "Misbrugscenter Ny")
#: Odense: a listed unit under Odense's default.
ODENSE_PLEJE = Organisation("380000000000020", "SOR", "Plejecenter Odense")
ANNE = Employee("0101701234", name="Anne Jensen", role="SOSU-hjælper")


def two_municipalities() -> IdentityPolicy:
    return IdentityPolicy(municipalities={
        AARHUS: MunicipalityPolicy(default=AlternativeId(SECRET),
                                   units={("SOR", HJEMMEPLEJE.id): FullName()}),
        ODENSE: MunicipalityPolicy(default=Initials(),
                                   units={("SOR", ODENSE_PLEJE.id): Initials()}),
    })


def bind(policy: IdentityPolicy) -> Any:
    return policy.bind(MemoryAliasRegistry(), subject=lambda e: f"{e.source}:{e.id}".encode(),
                       seal=lambda data, aad: data, unseal=lambda data, aad: data)


class TestMunicipalityPolicy:
    def test_an_unlisted_unit_takes_its_municipalitys_default(self) -> None:
        """A unit not listed, of a municipality that chose codes, shows a code, never the name."""
        policy = two_municipalities()
        assert isinstance(policy.formatter_for(MISBRUG_NY, municipality=AARHUS), AlternativeId)
        name, role = bind(policy)(ANNE, MISBRUG_NY, municipality=AARHUS)
        assert name is not None
        assert name.startswith("Medarbejder ")
        assert "Anne" not in name
        assert role is None

    def test_listed_units_use_their_override(self) -> None:
        """A listed unit shows its own form; the municipality is found from the listing."""
        policy = two_municipalities()
        assert isinstance(policy.formatter_for(HJEMMEPLEJE), FullName)
        assert isinstance(policy.formatter_for(HJEMMEPLEJE, municipality=AARHUS), FullName)
        assert isinstance(policy.formatter_for(ODENSE_PLEJE), Initials)

    def test_the_municipality_itself_as_organisation(self) -> None:
        """An access recorded with the municipality's CVR as organisation takes its default."""
        policy = two_municipalities()
        assert isinstance(policy.formatter_for(Organisation(AARHUS, "CVR")), AlternativeId)

    def test_a_unit_of_no_known_municipality_is_refused(self) -> None:
        """When the municipality cannot be told, the access is refused, never shown by name."""
        with pytest.raises(ValidationError) as e:
            bind(two_municipalities())(ANNE, MISBRUG_NY)
        assert e.value.field == "access.organisation"
        assert "municipality" in e.value.rule

    def test_a_unit_listed_under_another_municipality_is_refused(self) -> None:
        """A unit routed to one municipality but listed under another is a contradiction."""
        with pytest.raises(ValidationError, match="another municipality"):
            two_municipalities().formatter_for(HJEMMEPLEJE, municipality=ODENSE)

    def test_a_municipality_the_policy_does_not_name(self) -> None:
        """A municipality that chose nothing gets the installation default (full name by
        the contract), or is refused under a strict policy."""
        policy = two_municipalities()
        assert isinstance(policy.formatter_for(MISBRUG_NY, municipality="29189846"), FullName)
        strict = IdentityPolicy(strict=True, municipalities=dict(policy.municipalities))
        with pytest.raises(ValidationError):
            strict.formatter_for(MISBRUG_NY, municipality="29189846")

    @pytest.mark.parametrize(("make", "says"), [
        (lambda: IdentityPolicy(municipalities={"Aarhus": MunicipalityPolicy(FullName())}),
         "CVR"),
        (lambda: IdentityPolicy(municipalities={AARHUS: FullName()}),  # type: ignore[dict-item]
         "MunicipalityPolicy"),
        (lambda: IdentityPolicy(
            organisations={("SOR", "1"): Initials()},
            municipalities={AARHUS: MunicipalityPolicy(FullName())}), "under its municipality"),
        (lambda: IdentityPolicy(municipalities={
            AARHUS: MunicipalityPolicy(FullName(), units={("SOR", "1"): Initials()}),
            ODENSE: MunicipalityPolicy(FullName(), units={("SOR", "1"): Initials()})}),
         "SOR 1"),
    ], ids=["cvr", "type", "top-level units", "unit twice"])
    def test_inconsistent_policies_are_configuration_errors(self, make: Any, says: str) -> None:
        """Each inconsistency is a ConfigurationError saying what is wrong."""
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            make()

    def test_single_municipality_api_is_unchanged(self) -> None:
        """IdentityPolicy(default, organisations) is one municipality's policy, as before."""
        policy = IdentityPolicy(default=AlternativeId(SECRET),
                                organisations={("SOR", HJEMMEPLEJE.id): FullName()})
        assert isinstance(policy.formatter_for(HJEMMEPLEJE), FullName)
        assert isinstance(policy.formatter_for(MISBRUG_NY), AlternativeId)
        assert isinstance(policy.formatter_for(MISBRUG_NY, municipality=AARHUS), AlternativeId)


class TestToml:
    def test_municipalities_in_one_file(self, tmp_path: Path) -> None:
        """[[municipality]] tables each hold their [default] and [[unit]] overrides."""
        (tmp_path / "aarhus.secret").write_bytes(SECRET)
        path = tmp_path / "identity.toml"
        path.write_text(textwrap.dedent(f"""
            [[municipality]]
            cvr = "{AARHUS}"
            name = "Aarhus Kommune"
              [municipality.default]
              formatter = "alternative-id"
              secret_file = "aarhus.secret"
              [[municipality.unit]]
              id = "{HJEMMEPLEJE.id}"
              formatter = "full-name"

            [[municipality]]
            cvr = "{ODENSE}"
              [municipality.default]
              formatter = "initials"
        """), encoding="utf-8")
        policy = IdentityPolicy.from_toml(path)
        assert set(policy.municipalities) == {AARHUS, ODENSE}
        alt = policy.formatter_for(MISBRUG_NY, municipality=AARHUS)
        assert isinstance(alt, AlternativeId)
        assert alt.secret == SECRET
        assert isinstance(policy.formatter_for(HJEMMEPLEJE), FullName)
        assert isinstance(policy.formatter_for(MISBRUG_NY, municipality=ODENSE), Initials)

    def test_one_municipality_per_table_for_tenants(self, tmp_path: Path) -> None:
        """MunicipalityPolicy.from_table reads a tenant's identity table: [default] and
        [[unit]] (or [[organisation]], the older name)."""
        m = MunicipalityPolicy.from_table(
            {"default": {"formatter": "initials"},
             "unit": [{"id": HJEMMEPLEJE.id, "formatter": "full-name"}],
             "organisation": [{"source": "SOR", "id": "380000000000005",
                               "formatter": "full-name"}]},
            where="tenant[0].identity", base=tmp_path)
        assert isinstance(m.default, Initials)
        assert set(m.units) == {("SOR", HJEMMEPLEJE.id), ("SOR", "380000000000005")}
        assert isinstance(m.formatter_for(MISBRUG_NY), Initials)

    def test_a_municipality_file(self, tmp_path: Path) -> None:
        """MunicipalityPolicy.from_toml reads one municipality's file."""
        path = tmp_path / "odense.toml"
        path.write_text('[default]\nformatter = "initials"\n[[unit]]\nid = "1"\n'
                        'formatter = "full-name"\n', encoding="utf-8")
        m = MunicipalityPolicy.from_toml(path)
        assert isinstance(m.default, Initials)
        assert isinstance(m.units[("SOR", "1")], FullName)

    def test_units_under_the_single_municipality_format(self) -> None:
        """The single-municipality format takes [[unit]] as well as [[organisation]]."""
        policy = IdentityPolicy.from_toml(
            '[default]\nformatter = "initials"\n[[unit]]\nid = "1"\nformatter = "full-name"\n',
            text=True)
        assert isinstance(policy.formatter_for(Organisation("1")), FullName)
        assert isinstance(policy.formatter_for(MISBRUG_NY), Initials)

    def test_a_unit_override_without_a_default_is_refused(self) -> None:
        """Units that hide names with no [default] would leave unlisted units showing names:
        the default must be written out."""
        toml = f'[[organisation]]\nid = "{MISBRUG_NY.id}"\nformatter = "initials"\n'
        with pytest.raises(ConfigurationError, match=re.escape("default")):
            IdentityPolicy.from_toml(toml, text=True)
        explicit = IdentityPolicy.from_toml('[default]\nformatter = "full-name"\n' + toml,
                                            text=True)
        assert isinstance(explicit.formatter_for(HJEMMEPLEJE), FullName)
        names_only = f'[[organisation]]\nid = "{MISBRUG_NY.id}"\nformatter = "full-name"\n'
        assert isinstance(IdentityPolicy.from_toml(names_only, text=True).default, FullName)

    @pytest.mark.parametrize(("toml", "says"), [
        (f'[[municipality]]\ncvr = "{AARHUS}"\n', "municipality[0].default"),
        ('[[municipality]]\ncvr = "Aarhus"\n[municipality.default]\nformatter = "initials"\n',
         "municipality[0].cvr"),
        (f'[[municipality]]\ncvr = "{AARHUS}"\n[municipality.default]\nformatter = "initials"'
         f'\n[[municipality]]\ncvr = "{AARHUS}"\n[municipality.default]\n'
         'formatter = "initials"\n', "twice"),
        (f'[[unit]]\nid = "1"\n[[municipality]]\ncvr = "{AARHUS}"\n'
         '[municipality.default]\nformatter = "initials"\n', "under their municipality"),
        (f'[[municipality]]\ncvr = "{AARHUS}"\ncolour = "blue"\n[municipality.default]\n'
         'formatter = "initials"\n', "municipality[0]: unknown keys"),
        (f'[[municipality]]\ncvr = "{AARHUS}"\n[municipality.default]\nformatter = "initials"'
         '\n[[municipality.unit]]\nformatter = "initials"\n', "municipality[0].unit[0].id"),
        ("municipality = 3", "municipality must be an array of tables"),
    ], ids=["no default", "cvr", "twice", "top-level units", "unknown key", "unit id",
            "not tables"])
    def test_bad_municipality_tables_name_the_key(self, toml: str, says: str) -> None:
        """Each mistake in a municipality table is a ConfigurationError naming the key."""
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            IdentityPolicy.from_toml(toml, text=True)


class TestThroughMinLog:
    @staticmethod
    def _open(db: Path, policy: IdentityPolicy, t: MemoryTransport,
              clock: FixedClock | None = None) -> MinLog:
        return MinLog.open(db, transport=t, system_name="Cura", key=KEY, identity=policy,
                           clock=clock or FixedClock(NOW), start_worker=False)

    def test_an_unattributable_unit_stores_nothing(self, tmp_path: Path) -> None:
        """Recording for a unit no municipality lists is refused; nothing is stored."""
        db = tmp_path / "m.sqlite"
        with self._open(db, two_municipalities(), MemoryTransport()) as log:
            with pytest.raises(ValidationError):
                log.record(Access("0303303456", ANNE, MISBRUG_NY, "Opslag", NOW))
            assert log.store.counts().pending == 0
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT count(*) FROM aliases").fetchone() == (0,)

    @pytest.mark.parametrize(("first", "second", "shown"), [
        (HJEMMEPLEJE, ODENSE_PLEJE, "Anne Jensen"),
        (ODENSE_PLEJE, HJEMMEPLEJE, "AJ, Plejecenter Odense"),
    ], ids=["full name first", "initials first"])
    def test_the_first_access_of_the_day_decides_what_the_citizen_sees(
            self, tmp_path: Path, first: Organisation, second: Organisation,
            shown: str) -> None:
        """One employee, two units with different forms, one citizen, one day: one log,
        with the unit and the form of the first access."""
        t = MemoryTransport()
        clock = FixedClock(NOW)
        with self._open(tmp_path / "m.sqlite", two_municipalities(), t, clock) as log:
            assert log.record(Access("0303303456", ANNE, first, "Opslag", NOW))
            later = NOW + dt.timedelta(hours=3)
            clock.set(later)
            assert not log.record(Access("0303303456", ANNE, second, "Opslag", later))
            assert log.flush(timeout=10)
        assert [(r.organisation_id, r.user_person_name) for r in t.delivered] == [
            (first.id, shown)]
