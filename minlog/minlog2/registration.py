"""What MinLog2 receives: `Registration`, one ``LogDataEntry``, and the rules of each
schema version.

Limits follow the official registration schemas. `Registration` holds what every version
shares; `check_schema` (a `Registration`) and `check_access` (an `Access`, before anything
is stored) hold it to the rules of one version, so that nothing accepted is refused later
for a version's enumeration. The rules per version (`RULES`), from the official schemas:

==================  ======================================  =================================
source attribute    20250312                                20230425
==================  ======================================  =================================
PersonIdentifier    CPR, eCPR                               CPR, eCPR
UserPerson...       CPR, Autorisation,                      CPR, Autorisation
                    EuropeanHealthcareProfessional
OnBehalfOf...       CPR, Autorisation                       CPR, Autorisation
OrganisationId      SOR, YDER, CVR,                         SOR, SKS, Yder, CVR-P, CVR,
                    EuropeanHealthcareOrganisation          Kommunekode, or any text (1-200)
==================  ======================================  =================================
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final

import attrs

from minlog.core import rules
from minlog.core.model import (
    CITIZEN_SOURCES,
    EMPLOYEE_SOURCES,
    ON_BEHALF_OF_SOURCES,
    Access,
)
from minlog.errors import ValidationError

__all__ = [
    "ORGANISATION_SOURCES",
    "RULES",
    "SCHEMA_VERSIONS",
    "Registration",
    "VersionRules",
    "check_access",
    "check_schema",
    "check_schema_source",
]

SCHEMA_VERSIONS: Final = ("20250312", "20230425")


@attrs.frozen
class VersionRules:
    """The source enumerations of one schema version (``free_organisation_source``: any
    text of 1-200 characters is allowed besides ``organisation``)."""

    person: frozenset[str]
    employee: frozenset[str]
    on_behalf_of: frozenset[str]
    organisation: frozenset[str]
    free_organisation_source: bool


RULES: Final = {
    "20250312": VersionRules(
        person=frozenset({"CPR", "eCPR"}),
        employee=frozenset({"CPR", "Autorisation", "EuropeanHealthcareProfessional"}),
        on_behalf_of=frozenset({"CPR", "Autorisation"}),
        organisation=frozenset({"SOR", "YDER", "CVR", "EuropeanHealthcareOrganisation"}),
        free_organisation_source=False),
    "20230425": VersionRules(
        person=frozenset({"CPR", "eCPR"}),
        employee=frozenset({"CPR", "Autorisation"}),
        on_behalf_of=frozenset({"CPR", "Autorisation"}),
        organisation=frozenset({"SOR", "SKS", "Yder", "CVR-P", "CVR", "Kommunekode"}),
        free_organisation_source=True),
}
#: The named organisation id sources per schema version (20230425 also allows free text).
ORGANISATION_SOURCES: Final[dict[str, frozenset[str]]] = {
    v: r.organisation for v, r in RULES.items()}
assert set(RULES) == set(SCHEMA_VERSIONS)
assert frozenset().union(*(r.employee for r in RULES.values())) == EMPLOYEE_SOURCES
assert frozenset().union(*(r.on_behalf_of for r in RULES.values())) == ON_BEHALF_OF_SOURCES
assert frozenset().union(*(r.person for r in RULES.values())) == CITIZEN_SOURCES


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    """Aware datetimes in UTC; anything else unchanged (validation refuses it, with a
    clear error, instead of guessing a zone for a naive time)."""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None \
            and value.utcoffset() is not None:
        return value.astimezone(_dt.UTC)
    return value


@attrs.frozen(slots=True)
class Registration:
    """One MinLog2 ``LogDataEntry`` exactly as it will be sent.

    Attribute names are the wire names in snake_case. Times are held in UTC. Exactly one of
    ``date_time`` or the pair ``from_date_time``/``to_date_time`` is set.
    """

    system_name: str
    activity: str
    person_identifier: str
    user_person_identifier: str
    date_time: _dt.datetime | None = attrs.field(default=None, converter=_utc)
    from_date_time: _dt.datetime | None = attrs.field(default=None, converter=_utc)
    to_date_time: _dt.datetime | None = attrs.field(default=None, converter=_utc)
    person_identifier_source: str = "CPR"
    user_person_identifier_source: str = "CPR"
    reason: str | None = None
    addition: str | None = None
    criticality: str | None = None
    organisation_id: str | None = None
    organisation_id_source: str | None = None
    organisation_name: str | None = None
    person_name: str | None = None
    correlation_id: str | None = None
    sequence_number: str | None = None
    user_person_name: str | None = None
    user_role: str | None = None
    on_behalf_of_person_identifier: str | None = None
    on_behalf_of_person_identifier_source: str | None = None
    on_behalf_of_person_name: str | None = None
    on_behalf_of_user_role: str | None = None
    filters: tuple[str, ...] = attrs.field(default=(), converter=rules.to_tuple)
    source_system_name: str | None = None
    source_correlation_id: str | None = None

    def __attrs_post_init__(self) -> None:
        rules.text("system_name", self.system_name, 25)
        rules.text("activity", self.activity, 75)
        rules.opt("reason", self.reason, 50)
        rules.opt("addition", self.addition, 50)
        rules.opt("criticality", self.criticality, 50)
        if self.date_time is not None:
            if self.from_date_time is not None or self.to_date_time is not None:
                raise ValidationError("date_time", "give date_time or from/to_date_time, not both")
            rules.aware("date_time", self.date_time)
        elif self.from_date_time is None or self.to_date_time is None:
            raise ValidationError("date_time", "required (or both from_date_time and to_date_time)")
        else:
            rules.aware("from_date_time", self.from_date_time)
            rules.aware("to_date_time", self.to_date_time)
            if self.to_date_time < self.from_date_time:
                raise ValidationError("to_date_time", "must not be before from_date_time")
        if self.organisation_id is not None:
            if rules.name("organisation_id_source", self.organisation_id_source, 200) is None:
                raise ValidationError("organisation_id_source", "required with organisation_id")
            rules.text("organisation_id", self.organisation_id, 200)
        elif self.organisation_id_source is not None:
            raise ValidationError("organisation_id_source", "given without organisation_id")
        rules.name("organisation_name", self.organisation_name, 200)
        rules.one_of("person_identifier_source", self.person_identifier_source, CITIZEN_SOURCES)
        rules.identifier("person_identifier", self.person_identifier, self.person_identifier_source)
        rules.name("person_name", self.person_name, 50)
        rules.opt("correlation_id", self.correlation_id, 46)
        rules.opt("sequence_number", self.sequence_number, 36)
        rules.one_of("user_person_identifier_source", self.user_person_identifier_source,
                EMPLOYEE_SOURCES)
        rules.identifier("user_person_identifier", self.user_person_identifier,
                    self.user_person_identifier_source)
        rules.name("user_person_name", self.user_person_name, 50)
        rules.opt("user_role", self.user_role, 200)
        if self.on_behalf_of_person_identifier is not None:
            rules.one_of("on_behalf_of_person_identifier_source",
                    self.on_behalf_of_person_identifier_source, ON_BEHALF_OF_SOURCES)
            rules.identifier("on_behalf_of_person_identifier", self.on_behalf_of_person_identifier,
                        str(self.on_behalf_of_person_identifier_source))
        elif self.on_behalf_of_person_identifier_source is not None:
            raise ValidationError("on_behalf_of_person_identifier_source",
                                  "given without on_behalf_of_person_identifier")
        rules.name("on_behalf_of_person_name", self.on_behalf_of_person_name, 50)
        rules.opt("on_behalf_of_user_role", self.on_behalf_of_user_role, 200)
        rules.filters("filters", self.filters)
        rules.opt("source_system_name", self.source_system_name, 25)
        rules.opt("source_correlation_id", self.source_correlation_id, 46)

    def __repr__(self) -> str:
        return (
            f"Registration(sequence_number={self.sequence_number!r}, "
            f"system_name={self.system_name!r}, activity={self.activity!r}, "
            f"date_time={self.date_time!r}, user_person_name={self.user_person_name!r})"
        )

    # -- storage form ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding only the fields that are set (times as ISO 8601)."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if isinstance(value, _dt.datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, trusted: bool = False) -> Registration:
        """The inverse of `to_dict`; validates again unless ``trusted``.

        ``trusted=True`` is for data this library validated and sealed itself (the outbox
        payloads are authenticated with AES-GCM): it skips the per-field checks.
        """
        kwargs = dict(data)
        for name in ("date_time", "from_date_time", "to_date_time"):
            if kwargs.get(name) is not None:
                kwargs[name] = _dt.datetime.fromisoformat(kwargs[name])
        if "filters" in kwargs:
            kwargs["filters"] = tuple(kwargs["filters"])
        if not trusted:
            return cls(**kwargs)
        return cls._trusted(kwargs)

    @classmethod
    def _trusted(cls, fields: dict[str, Any]) -> Registration:
        """An instance from already typed, already validated values (times in UTC),
        without running the checks again. For data this library validated itself."""
        unknown = fields.keys() - _DEFAULTS.keys()
        if unknown:
            raise ValidationError("registration", f"unknown fields {sorted(unknown)}")
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        for name, default in _DEFAULTS.items():
            setattr_(self, name, fields.get(name, default))
        return self


_FIELDS: Final = tuple(a.name for a in attrs.fields(Registration))
_DEFAULTS: Final[dict[str, Any]] = {
    a.name: (None if a.default is attrs.NOTHING else a.default)
    for a in attrs.fields(Registration)
}


def _rules(version: str) -> VersionRules:
    if version not in RULES:
        raise ValidationError("schema_version", f"must be one of {', '.join(SCHEMA_VERSIONS)}")
    return RULES[version]


def _allowed(field: str, value: str | None, allowed: frozenset[str], version: str) -> None:
    if value is not None and value not in allowed:
        try:
            rules.one_of(field, value, allowed)  # its message never echoes an identifier
        except ValidationError as e:
            raise ValidationError(field, f"{e.rule} (schema {version})") from None


def _organisation(field: str, source: str | None, version: str) -> None:
    r = _rules(version)
    if source is None or source in r.organisation:
        return
    if r.free_organisation_source:
        rules.name(field, source, 200)  # any one-line text of 1-200 characters
        return
    _allowed(field, source, r.organisation, version)


def check_schema(registration: Registration, version: str) -> None:
    """Raise `ValidationError` when ``registration`` cannot be sent under schema ``version``
    (its sources; every other rule is the same in both versions and checked when it is
    made)."""
    r = _rules(version)
    _organisation("organisation_id_source", registration.organisation_id_source, version)
    _allowed("person_identifier_source", registration.person_identifier_source, r.person,
             version)
    _allowed("user_person_identifier_source", registration.user_person_identifier_source,
             r.employee, version)
    _allowed("on_behalf_of_person_identifier_source",
             registration.on_behalf_of_person_identifier_source, r.on_behalf_of, version)


def check_schema_source(source: str | None, version: str) -> None:
    """Raise `ValidationError` when organisation ``source`` is not allowed by ``version``."""
    _organisation("organisation.source", source, version)


def check_access(access: Access, version: str) -> None:
    """Raise `ValidationError` when ``access`` cannot be sent under schema ``version``:
    every per-version rule (the sources of the citizen, the employee, the person acted
    for and the organisation)."""
    r = _rules(version)
    _allowed("access.citizen_source", access.citizen_source, r.person, version)
    _allowed("employee.source", access.employee.source, r.employee, version)
    if access.on_behalf_of is not None:
        _allowed("on_behalf_of.source", access.on_behalf_of.source, r.on_behalf_of, version)
    _organisation("organisation.source", access.organisation.source, version)
