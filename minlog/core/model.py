"""What an audit hook reports: an `Access` and its parts.

Every class is a frozen, slotted attrs class validated on construction: a bad value raises
`ValidationError` naming the field and the rule, and the message never repeats the value
(it may be a CPR number). Limits follow the MinLog2 registration schema; the rules that
differ between schema versions (which sources are allowed) are checked for the configured
version by `minlog.minlog2.registration.check_access` before anything is stored. Here a
source is only held to what every version allows: an employee source some version names,
an organisation source of free text (schema 20230425 allows any text of 1-200 characters).
"""

from __future__ import annotations

import datetime as _dt
from typing import Final

import attrs

from minlog.core import rules
from minlog.errors import ValidationError

__all__ = [
    "CITIZEN_SOURCES",
    "EMPLOYEE_SOURCES",
    "ON_BEHALF_OF_SOURCES",
    "ORGANISATION_SOURCES",
    "Access",
    "Employee",
    "OnBehalfOf",
    "Organisation",
]

CITIZEN_SOURCES: Final = frozenset({"CPR", "eCPR"})
#: Every employee source some schema version allows (the version's own list is checked
#: by `minlog.minlog2.registration.check_access`).
EMPLOYEE_SOURCES: Final = frozenset({"CPR", "Autorisation", "EuropeanHealthcareProfessional"})
ON_BEHALF_OF_SOURCES: Final = frozenset({"CPR", "Autorisation"})
#: Every organisation source some schema version names; 20230425 also allows free text, so
#: `Organisation` takes any one-line text of 1-200 characters (see `EMPLOYEE_SOURCES`).
ORGANISATION_SOURCES: Final = frozenset({
    "SOR", "YDER", "CVR", "EuropeanHealthcareOrganisation", "SKS", "Yder", "CVR-P",
    "Kommunekode"})

# --------------------------------------------------------------------------- parts


@attrs.frozen(slots=True)
class Employee:
    """The staff member who used the data. ``id`` is a CPR number unless ``source`` says not."""

    id: str = attrs.field(converter=rules.normalise_cpr)
    source: str = "CPR"
    name: str | None = None
    role: str | None = None

    def __attrs_post_init__(self) -> None:
        rules.one_of("employee.source", self.source, EMPLOYEE_SOURCES)
        rules.identifier("employee.id", self.id, self.source)
        rules.name("employee.name", self.name, 200)
        rules.opt("employee.role", self.role, 200)

    def __repr__(self) -> str:  # never print a CPR number
        return f"Employee(source={self.source!r}, name={self.name!r}, role={self.role!r})"


@attrs.frozen(slots=True)
class Organisation:
    """The organisation (unit) the employee acted for, e.g. a SOR code."""

    id: str
    source: str = "SOR"
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if rules.name("organisation.source", self.source, 200) is None:
            raise ValidationError("organisation.source", "must be a string, not NoneType")
        rules.identifier("organisation.id", self.id, self.source, 200)
        rules.name("organisation.name", self.name, 200)


@attrs.frozen(slots=True)
class OnBehalfOf:
    """The person on whose behalf the employee acted (e.g. a doctor's assistant's doctor)."""

    id: str = attrs.field(converter=rules.normalise_cpr)
    source: str = "CPR"
    name: str | None = None
    role: str | None = None

    def __attrs_post_init__(self) -> None:
        rules.one_of("on_behalf_of.source", self.source, ON_BEHALF_OF_SOURCES)
        rules.identifier("on_behalf_of.id", self.id, self.source)
        rules.name("on_behalf_of.name", self.name, 50)
        rules.opt("on_behalf_of.role", self.role, 200)

    def __repr__(self) -> str:
        return f"OnBehalfOf(source={self.source!r}, name={self.name!r}, role={self.role!r})"


@attrs.frozen(slots=True)
class Access:
    """One use of a citizen's data, as an EOJ audit hook reports it.

    ``citizen`` is the citizen's CPR number (or eCPR with ``citizen_source="eCPR"``);
    ``at`` is a timezone-aware instant; ``activity`` is the text the citizen will read.
    """

    citizen: str = attrs.field(converter=rules.normalise_cpr)
    employee: Employee
    organisation: Organisation
    activity: str
    at: _dt.datetime
    citizen_source: str = attrs.field(default="CPR", kw_only=True)
    citizen_name: str | None = attrs.field(default=None, kw_only=True)
    reason: str | None = attrs.field(default=None, kw_only=True)
    addition: str | None = attrs.field(default=None, kw_only=True)
    criticality: str | None = attrs.field(default=None, kw_only=True)
    on_behalf_of: OnBehalfOf | None = attrs.field(default=None, kw_only=True)
    correlation_id: str | None = attrs.field(default=None, kw_only=True)
    filters: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=rules.to_tuple)

    def __attrs_post_init__(self) -> None:
        rules.one_of("access.citizen_source", self.citizen_source, CITIZEN_SOURCES)
        rules.identifier("access.citizen", self.citizen, self.citizen_source)
        if not isinstance(self.employee, Employee):
            raise ValidationError("access.employee", "must be an Employee")
        if not isinstance(self.organisation, Organisation):
            raise ValidationError("access.organisation", "must be an Organisation")
        if self.on_behalf_of is not None and not isinstance(self.on_behalf_of, OnBehalfOf):
            raise ValidationError("access.on_behalf_of", "must be an OnBehalfOf or None")
        rules.text("access.activity", self.activity, 75)
        rules.aware("access.at", self.at)
        rules.name("access.citizen_name", self.citizen_name, 50)
        rules.opt("access.reason", self.reason, 50)
        rules.opt("access.addition", self.addition, 50)
        rules.opt("access.criticality", self.criticality, 50)
        rules.opt("access.correlation_id", self.correlation_id, 46)
        rules.filters("access.filters", self.filters)

    def __repr__(self) -> str:
        return (
            f"Access(employee={self.employee!r}, organisation={self.organisation!r}, "
            f"activity={self.activity!r}, at={self.at.isoformat()!r})"
        )
