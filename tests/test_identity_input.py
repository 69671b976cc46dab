"""What an audit hook may hand the identity side: wrong types and invisible text are refused
with a `ValidationError` naming the field and the rule (issue 11, items 7 and 8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from minlog import Access, Employee, OnBehalfOf, Organisation, Registration, ValidationError
from minlog.core.days import COPENHAGEN

AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
EMP = Employee("0101701234", name="Anne Jensen", role="SOSU-hjælper")
SECRET = b"kommunens-hemmelighed-2026"

#: Values of the wrong type: unhashable, numbers, bytes, None where a value is required,
#: and an arbitrary object.
WRONG: list[object] = [["CPR"], {"CPR": 1}, {"CPR"}, 7, 1.5, b"CPR", bytearray(b"CPR"),
                       object(), ("CPR",)]


def _employee(**changes: Any) -> Employee:
    fields: dict[str, Any] = {"id": "0101701234", "source": "CPR", "name": "Anne",
                              "role": "SOSU-hjælper"}
    fields.update(changes)
    return Employee(**fields)


def _organisation(**changes: Any) -> Organisation:
    fields: dict[str, Any] = {"id": "380000000000001", "source": "SOR", "name": "Nord"}
    fields.update(changes)
    return Organisation(**fields)


def _on_behalf_of(**changes: Any) -> OnBehalfOf:
    fields: dict[str, Any] = {"id": "0202802345", "source": "CPR", "name": "Bo",
                              "role": "Læge"}
    fields.update(changes)
    return OnBehalfOf(**fields)


def _access(**changes: Any) -> Access:
    fields: dict[str, Any] = {"citizen": "0303303456", "employee": EMP, "organisation": ORG,
                              "activity": "Opslag", "at": AT, "citizen_source": "CPR",
                              "citizen_name": "Åse", "reason": "Besøg", "addition": "Ingen",
                              "criticality": "Ingen", "correlation_id": "c-1",
                              "on_behalf_of": None, "filters": ("Ikke borger",)}
    fields.update(changes)
    return Access(**fields)


#: Every field of every model class: (constructor, field as named in errors, field argument).
FIELDS: list[tuple[Callable[..., object], str, str]] = [
    (_employee, "employee.id", "id"),
    (_employee, "employee.source", "source"),
    (_employee, "employee.name", "name"),
    (_employee, "employee.role", "role"),
    (_organisation, "organisation.id", "id"),
    (_organisation, "organisation.source", "source"),
    (_organisation, "organisation.name", "name"),
    (_on_behalf_of, "on_behalf_of.id", "id"),
    (_on_behalf_of, "on_behalf_of.source", "source"),
    (_on_behalf_of, "on_behalf_of.name", "name"),
    (_on_behalf_of, "on_behalf_of.role", "role"),
    (_access, "access.citizen", "citizen"),
    (_access, "access.employee", "employee"),
    (_access, "access.organisation", "organisation"),
    (_access, "access.activity", "activity"),
    (_access, "access.at", "at"),
    (_access, "access.citizen_source", "citizen_source"),
    (_access, "access.citizen_name", "citizen_name"),
    (_access, "access.reason", "reason"),
    (_access, "access.addition", "addition"),
    (_access, "access.criticality", "criticality"),
    (_access, "access.on_behalf_of", "on_behalf_of"),
    (_access, "access.correlation_id", "correlation_id"),
    (_access, "access.filters", "filters"),
]


class TestWrongTypes:
    @pytest.mark.parametrize("bad", WRONG, ids=lambda v: type(v).__name__)
    @pytest.mark.parametrize(("make", "field", "argument"), FIELDS,
                             ids=[f for _, f, _ in FIELDS])
    def test_every_field_refuses_wrong_types_with_a_validation_error(
            self, make: Callable[..., object], field: str, argument: str, bad: object) -> None:
        """A value of the wrong type in any field is a ValidationError naming that field."""
        if argument == "filters" and isinstance(bad, list | set | dict | tuple):
            # a collection is the right type for filters: one holding a number is not
            bad = {7: 1} if isinstance(bad, dict) else type(bad)([7])
        with pytest.raises(ValidationError) as e:
            make(**{argument: bad})
        assert e.value.field == field
        assert e.value.rule

    @pytest.mark.parametrize("make", [
        lambda: Employee("0101701234", source=["CPR"]),  # type: ignore[arg-type]
        lambda: Organisation("380000000000001", source={"SOR": 1}),  # type: ignore[arg-type]
        lambda: OnBehalfOf("0101701234", source={"CPR"}),  # type: ignore[arg-type]
        lambda: _access(citizen_source=["CPR"]),
    ], ids=["employee", "organisation", "on_behalf_of", "access"])
    def test_unhashable_source_is_a_validation_error(self, make: Callable[[], object]) -> None:
        """An unhashable source (a list, a dict, a set) is refused, never a TypeError."""
        with pytest.raises(ValidationError, match="source: must be a string"):
            make()

    def test_registration_sources_refuse_wrong_types(self) -> None:
        """The registration's source fields follow the same rule."""
        with pytest.raises(ValidationError) as e:
            Registration(system_name="Cura", activity="Opslag", person_identifier="0101701234",
                         user_person_identifier="0202802345", date_time=AT,
                         user_person_identifier_source=["CPR"])  # type: ignore[arg-type]
        assert e.value.field == "user_person_identifier_source"

    def test_filters_from_a_generator_are_kept(self) -> None:
        """Filters given as any iterable of strings are kept as a tuple, not consumed."""
        access = _access(filters=(f for f in ["Ikke borger"]))
        assert access.filters == ("Ikke borger",)
        assert access.filters == ("Ikke borger",)

    def test_broken_time_zone_is_a_validation_error(self) -> None:
        """A time zone whose offset is not a timedelta is refused, not a TypeError."""
        class Broken(dt.tzinfo):
            def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
                return "+01:00"  # type: ignore[return-value]

        with pytest.raises(ValidationError) as e:
            _access(at=dt.datetime(2026, 11, 24, 9, 0, tzinfo=Broken()))
        assert e.value.field == "access.at"
