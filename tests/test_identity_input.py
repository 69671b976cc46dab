"""What an audit hook may hand the identity side: wrong types and invisible text are refused
with a `ValidationError` naming the field and the rule (issue 11, items 7 and 8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from minlog import Access, Employee, OnBehalfOf, Organisation, Registration, ValidationError
from minlog.core.days import COPENHAGEN
from minlog.identity.memory import MemoryAliasRegistry
from minlog.identity.policy import AlternativeId, FullName, IdentityPolicy, Initials

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


#: Texts a reader sees as nothing: zero-width space and joiners, the byte order mark,
#: other format characters, separators, combining marks alone, and blank-looking letters.
INVISIBLE = ["\u200b", "\ufeff", "\u200b\u200c\u200d", "\u2060", "\u00ad", "\u2028",
             "\u2029", "\u3000", "\u00a0\u2007", "\u0301", "\u0301\u0308", " \u200b ",
             "\u3164", "\u2800", "\U000e0041", "\ue000", "\u180e"]


class TestInvisibleText:
    @pytest.mark.parametrize("bad", INVISIBLE, ids=[f"U+{ord(s[0]):04X}" for s in INVISIBLE])
    @pytest.mark.parametrize(("make", "field"), [
        (lambda v: _employee(name=v), "employee.name"),
        (lambda v: _employee(role=v), "employee.role"),
        (lambda v: _organisation(name=v), "organisation.name"),
        (lambda v: _on_behalf_of(name=v), "on_behalf_of.name"),
        (lambda v: _access(citizen_name=v), "access.citizen_name"),
        (lambda v: _access(activity=v), "access.activity"),
    ], ids=["employee.name", "employee.role", "organisation.name", "on_behalf_of.name",
            "access.citizen_name", "access.activity"])
    def test_shown_text_of_only_invisible_characters_is_refused(
            self, make: Callable[[str], object], field: str, bad: str) -> None:
        """A shown text that a reader would see as blank is a ValidationError on its field."""
        with pytest.raises(ValidationError) as e:
            make(bad)
        assert e.value.field == field
        assert "visible" in e.value.rule

    @pytest.mark.parametrize("good", ["Anne\u200bJensen", "\ufeffAnne", "A\u0301se", "Åse",
                                      "Zoë", "李", "Ω", "·", "O'Brien", "😀"])
    def test_text_with_a_visible_character_is_kept(self, good: str) -> None:
        """Invisible characters beside visible ones are kept as given."""
        assert _employee(name=good).name == good

    @pytest.mark.parametrize("formatter", [FullName(), AlternativeId(SECRET), Initials()],
                             ids=["full-name", "alternative-id", "initials"])
    def test_formatter_output_of_only_invisible_characters_is_refused(
            self, formatter: object) -> None:
        """A formatter that would show a blank name is refused naming user_person_name."""
        class Blank:
            show_role = False

            def __call__(self, employee: Employee, organisation: Organisation) -> str:
                return "\u200b\u200b"

        ident = IdentityPolicy(default=Blank()).bind(
            MemoryAliasRegistry(), subject=lambda e: e.id.encode(),
            seal=lambda d, a: d, unseal=lambda d, a: d)
        with pytest.raises(ValidationError) as e:
            ident(EMP, ORG)
        assert e.value.field == "user_person_name"
        # the built-in formatters never give a blank name for a valid employee
        ok = IdentityPolicy(default=formatter).bind(  # type: ignore[arg-type]
            MemoryAliasRegistry(), subject=lambda e: e.id.encode(),
            seal=lambda d, a: d, unseal=lambda d, a: d)
        assert ok(EMP, ORG)[0]

    def test_initials_skip_invisible_leading_characters(self) -> None:
        """Initials take the first letter of each part, past a zero-width character."""
        e = Employee("0101701234", name="\u200bAnne \ufeffJensen")
        assert Initials().initials(e) == "AJ"

    def test_no_cpr_number_in_the_message(self) -> None:
        """The refusal of a blank name never repeats the employee's CPR number."""
        with pytest.raises(ValidationError) as e:
            Employee("0101701234", name="\u200b")
        assert "0101701234" not in str(e.value)
