"""The model: every contract limit and enumeration, CPR rules, no CPR in messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minlog import (
    Access,
    Employee,
    MemoryTransport,
    MinLog,
    OnBehalfOf,
    Organisation,
    Registration,
    ValidationError,
)
from minlog.core.clock import FixedClock
from minlog.core.rules import is_cpr
from minlog.minlog2 import wire as _wire
from minlog.minlog2.registration import check_access, check_schema

AT = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
ORG = Organisation("380000000000001")
EMP = Employee("0101701234", name="Anne")


def reg(**changes: object) -> Registration:
    fields: dict[str, object] = dict(system_name="Cura", activity="Opslag",
                                     person_identifier="0101701234",
                                     user_person_identifier="0202802345", date_time=AT)
    fields.update(changes)
    return Registration(**fields)  # type: ignore[arg-type]


class TestCpr:
    @pytest.mark.parametrize("cpr", ["0101701234", "3112999999", "2902004000", "2902884000",
                                     "1010101010", "0101010000"])
    def test_real_dates_are_cprs(self, cpr: str) -> None:
        """Ten digits starting with a real date are a CPR number (no modulus 11 check)."""
        assert is_cpr(cpr)

    @pytest.mark.parametrize("cpr", ["3201701234", "0013701234", "2902013000", "290200300",
                                     "01017012345", "01017O1234", "٠١٠١٧٠١٢٣٤", ""])
    def test_others_are_not(self, cpr: str) -> None:
        """Bad dates (29 Feb of a non-leap year by the century digit), lengths, non-ASCII."""
        assert not is_cpr(cpr)

    def test_century_digit_decides_leap_years(self) -> None:
        """29-02-00 is a date in 2000 (digit 4 or 9 with yy<=36) but not in 1900 (digit 0-3)."""
        assert is_cpr("2902004000")
        assert not is_cpr("2902000000")

    def test_hyphen_is_removed(self) -> None:
        """'ddmmyy-xxxx' is accepted and normalised."""
        assert Employee("010170-1234").id == "0101701234"
        assert Access("020280-2345", EMP, ORG, "x", AT).citizen == "0202802345"

    def test_ecpr_needs_its_source(self) -> None:
        """An eCPR (not a real date) is accepted with citizen_source='eCPR' only."""
        with pytest.raises(ValidationError):
            Access("0101AB1234", EMP, ORG, "x", AT)
        assert Access("0101AB1234", EMP, ORG, "x", AT, citizen_source="eCPR")

    @given(st.text(min_size=1, max_size=12))
    def test_no_digits_in_messages(self, text: str) -> None:
        """Whatever is given as a CPR number, the error never repeats it."""
        try:
            Access(text, EMP, ORG, "x", AT)
        except ValidationError as e:
            message = str(e)
        else:
            return
        digits = "".join(c for c in text if c.isdigit())
        if len(digits) >= 4:
            assert digits not in message

    def test_identifier_in_a_source_field_is_not_echoed(self) -> None:
        """A CPR number given by mistake as a source (arguments swapped) is refused
        without being repeated; a wrong word is shown to help."""
        for make in (lambda: Employee("Anne Jensen", "0101701234"),
                     lambda: OnBehalfOf("Anne Jensen", "0101701234"),
                     lambda: Access("x", EMP, ORG, "x", AT, citizen_source="0202802345")):
            with pytest.raises(ValidationError) as e:
                make()
            assert not any(c.isdigit() for c in str(e.value).replace("20250312", ""))
        with pytest.raises(ValidationError, match="'SOR-ish' is not one of"):
            check_access(Access("0202802345", EMP, Organisation("1", "SOR-ish"), "x", AT),
                         "20250312")

    def test_reprs_hold_no_cpr(self) -> None:
        """repr() of employees, accesses and registrations omits the identifiers."""
        a = Access("0202802345", EMP, ORG, "x", AT,
                   on_behalf_of=OnBehalfOf("0303303456"))
        for text in (repr(a), repr(EMP), repr(reg()), repr(a.on_behalf_of)):
            assert "0101701234" not in text
            assert "0202802345" not in text
            assert "0303303456" not in text


LIMITS = [("system_name", 25), ("activity", 75), ("reason", 50), ("addition", 50),
          ("criticality", 50), ("organisation_name", 200), ("person_name", 50),
          ("correlation_id", 46), ("sequence_number", 36), ("user_person_name", 50),
          ("user_role", 200), ("on_behalf_of_person_name", 50),
          ("on_behalf_of_user_role", 200), ("source_system_name", 25),
          ("source_correlation_id", 46)]


class TestRegistrationLimits:
    @pytest.mark.parametrize(("field", "limit"), LIMITS)
    def test_each_limit(self, field: str, limit: int) -> None:
        """Each string field accepts its limit and refuses one more, naming the field."""
        reg(**{field: "x" * limit})
        with pytest.raises(ValidationError) as e:
            reg(**{field: "x" * (limit + 1)})
        assert e.value.field == field
        assert isinstance(e.value, ValueError)

    @pytest.mark.parametrize("field", [f for f, _ in LIMITS])
    @pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "a\x1bb"])
    def test_empty_blank_and_control_characters(self, field: str, bad: str) -> None:
        """minLength 1, not blank, no control characters."""
        with pytest.raises(ValidationError) as e:
            reg(**{field: bad})
        assert e.value.field == field

    def test_filters(self) -> None:
        """Filter entries are strings of at most 50 characters."""
        reg(filters=("Ikke borger", "x" * 50))
        with pytest.raises(ValidationError):
            reg(filters=("x" * 51,))
        with pytest.raises(ValidationError):
            reg(filters="Ikke borger")

    def test_time_choice(self) -> None:
        """DateTime, or both FromDateTime and ToDateTime (in order), never both kinds."""
        reg(date_time=None, from_date_time=AT, to_date_time=AT + dt.timedelta(hours=1))
        for bad in ({"date_time": None}, {"from_date_time": AT},
                    {"date_time": None, "from_date_time": AT,
                     "to_date_time": AT - dt.timedelta(1)}):
            with pytest.raises(ValidationError):
                reg(**bad)

    @pytest.mark.parametrize("when", [dt.datetime(2014, 12, 31, 23, 59, tzinfo=dt.UTC),
                                      dt.datetime(2026, 1, 1)])
    def test_times_are_zoned_and_not_before_2015(self, when: dt.datetime) -> None:
        """Naive times and times before 2015-01-01Z are refused."""
        with pytest.raises(ValidationError):
            reg(date_time=when)
        with pytest.raises(ValidationError):
            Access("0202802345", EMP, ORG, "x", when)

    def test_sources(self) -> None:
        """Each identifier's source is one of the contract's values."""
        for field, bad in [("person_identifier_source", "SOR"),
                           ("user_person_identifier_source", "eCPR")]:
            with pytest.raises(ValidationError) as e:
                reg(**{field: bad})
            assert e.value.field == field
        with pytest.raises(ValidationError):
            Employee("0101701234", source="Yder")
        with pytest.raises(ValidationError):
            OnBehalfOf("0101701234", source="EuropeanHealthcareProfessional")
        with pytest.raises(ValidationError):
            check_access(Access("0202802345", EMP, Organisation("1", source="Sygehus"), "x",
                                AT), "20250312")
        assert Employee("ABC12", source="Autorisation").id == "ABC12"

    def test_schema_versions(self) -> None:
        """20230425-only organisation sources are refused under 20250312."""
        r = reg(organisation_id="1234", organisation_id_source="Kommunekode")
        check_schema(r, "20230425")
        with pytest.raises(ValidationError):
            check_schema(r, "20250312")
        with pytest.raises(ValidationError):
            check_schema(r, "19990101")

    def test_times_are_kept_in_utc(self) -> None:
        """A registration holds the same instant, in UTC."""
        cph = dt.timezone(dt.timedelta(hours=1))
        r = reg(date_time=AT.astimezone(cph))
        assert r.date_time == AT
        assert r.date_time is not None
        assert r.date_time.tzinfo == dt.UTC

    def test_dict_round_trip(self) -> None:
        """to_dict/from_dict give back the same registration."""
        r = reg(filters=("Ikke borger",), on_behalf_of_person_identifier="0303303456",
                on_behalf_of_person_identifier_source="CPR", organisation_id="1",
                organisation_id_source="SOR")
        assert Registration.from_dict(r.to_dict()) == r
        assert Registration.from_dict(r.to_dict(), trusted=True) == r


#: Each source attribute's values per schema version, as the official schemas give them.
VERSION_SOURCES = {
    "20250312": {
        "employee": ["CPR", "Autorisation", "EuropeanHealthcareProfessional"],
        "organisation": ["SOR", "YDER", "CVR", "EuropeanHealthcareOrganisation"],
    },
    "20230425": {
        "employee": ["CPR", "Autorisation"],
        "organisation": ["SOR", "SKS", "Yder", "CVR-P", "CVR", "Kommunekode"],
    },
}


def employee(source: str) -> Employee:
    return Employee("0101701234" if source == "CPR" else "ABC12", source=source, name="Anne")


class TestSchemaVersions:
    def test_european_professional_is_refused_by_20230425_at_record(self, tmp_path: Path
                                                                      ) -> None:
        """record() under 20230425 refuses an employee source that schema forbids, naming
        the field, and stores nothing; 20250312 accepts it."""
        a = Access("0202802345", employee("EuropeanHealthcareProfessional"), ORG, "x", AT)
        for version, accepted in (("20230425", False), ("20250312", True)):
            with MinLog.open(tmp_path / f"{version}.sqlite", transport=MemoryTransport(),
                             system_name="Cura", key=bytes(32), schema_version=version,
                             start_worker=False, clock=FixedClock(AT.timestamp() + 1)) as log:
                if accepted:
                    assert log.record(a)
                    continue
                with pytest.raises(ValidationError) as e:
                    log.record(a)
                assert e.value.field == "employee.source"
                assert "20230425" in e.value.rule
                assert log.stats().pending == 0

    @pytest.mark.parametrize("version", sorted(VERSION_SOURCES))
    def test_every_source_of_each_version(self, version: str) -> None:
        """Each version accepts exactly its own employee and organisation sources."""
        allowed = VERSION_SOURCES[version]
        everything = {s for v in VERSION_SOURCES.values() for s in v["employee"]}
        for source in everything:
            a = Access("0202802345", employee(source), ORG, "x", AT)
            if source in allowed["employee"]:
                check_access(a, version)
            else:
                with pytest.raises(ValidationError, match=version):
                    check_access(a, version)
        for source in allowed["organisation"]:
            check_access(Access("0202802345", EMP, Organisation("1", source), "x", AT), version)

    def test_20230425_organisation_source_is_free_text_up_to_200(self) -> None:
        """20230425 allows any organisation source of 1-200 characters (its list is a
        suggestion); 20250312 only its list, and `YDER` is spelled `Yder` in 20230425."""
        for source in ("Region Hovedstaden", "x" * 200, "Yder", "YDER", "Sygehus"):
            check_access(Access("0202802345", EMP, Organisation("1", source), "x", AT),
                         "20230425")
        for source in ("Region Hovedstaden", "Yder", "SKS", "Kommunekode"):
            with pytest.raises(ValidationError) as e:
                check_access(Access("0202802345", EMP, Organisation("1", source), "x", AT),
                             "20250312")
            assert e.value.field == "organisation.source"
        with pytest.raises(ValidationError) as e:
            Organisation("1", "x" * 201)
        assert e.value.field == "organisation.source"
        with pytest.raises(ValidationError):
            Organisation("1", "SOR\x00")

    def test_a_cpr_number_as_organisation_source_is_not_echoed(self) -> None:
        """A CPR number given as a (free-text) organisation source never appears in the
        error of the version that refuses it."""
        o = Organisation("1", "0101701234")
        with pytest.raises(ValidationError) as e:
            check_access(Access("0202802345", EMP, o, "x", AT), "20250312")
        assert "0101701234" not in str(e.value)

    @pytest.mark.parametrize("version", sorted(VERSION_SOURCES))
    def test_registrations_follow_the_version_too(self, version: str) -> None:
        """A Registration is checked against its version's user and organisation sources
        before it is encoded."""
        bad = {"20230425": reg(user_person_identifier="ABC12",
                               user_person_identifier_source="EuropeanHealthcareProfessional"),
               "20250312": reg(organisation_id="1", organisation_id_source="Kommunekode")}
        with pytest.raises(ValidationError):
            check_schema(bad[version], version)
        with pytest.raises(ValidationError):
            _wire.encode_envelope([bad[version]], version=version)
        free = reg(organisation_id="1", organisation_id_source="Region Hovedstaden")
        if version == "20230425":
            _wire.validate_request(_wire.encode_envelope([free], version=version),
                                   version=version)


class TestAccess:
    def test_wrong_types_are_refused(self) -> None:
        """Parts must be the model's classes; filters a sequence of strings."""
        with pytest.raises(ValidationError):
            Access("0202802345", "Anne", ORG, "x", AT)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            Access("0202802345", EMP, ORG, "x", "2026-01-01")  # type: ignore[arg-type]
        assert Access("0202802345", EMP, ORG, "x", AT, filters=["Ikke borger"]).filters == (
            "Ikke borger",)
