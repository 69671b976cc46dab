"""What an audit hook reports (`Access`) and what MinLog2 receives (`Registration`).

Every class is a frozen, slotted attrs class validated on construction: a bad value raises
`ValidationError` naming the field and the rule, and the message never repeats the value
(it may be a CPR number). Limits follow the MinLog2 registration schema (20250312 unless a
rule says otherwise); see ``docs/concepts.md``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import Any, Final

import attrs

from minlog.errors import ValidationError

__all__ = [
    "CITIZEN_SOURCES",
    "EARLIEST",
    "EMPLOYEE_SOURCES",
    "ON_BEHALF_OF_SOURCES",
    "ORGANISATION_SOURCES",
    "SCHEMA_VERSIONS",
    "Access",
    "Employee",
    "OnBehalfOf",
    "Organisation",
    "Registration",
    "check_schema",
    "check_schema_source",
    "is_cpr",
]

SCHEMA_VERSIONS: Final = ("20250312", "20230425")
CITIZEN_SOURCES: Final = frozenset({"CPR", "eCPR"})
EMPLOYEE_SOURCES: Final = frozenset({"CPR", "Autorisation", "EuropeanHealthcareProfessional"})
ON_BEHALF_OF_SOURCES: Final = frozenset({"CPR", "Autorisation"})
#: Organisation id sources per schema version. 20230425 also allowed free text.
ORGANISATION_SOURCES: Final[dict[str, frozenset[str]]] = {
    "20250312": frozenset({"SOR", "YDER", "CVR", "EuropeanHealthcareOrganisation"}),
    "20230425": frozenset({"SOR", "YDER", "CVR", "SKS", "Yder", "CVR-P", "Kommunekode"}),
}
_ALL_ORGANISATION_SOURCES: Final = frozenset().union(*ORGANISATION_SOURCES.values())
#: MinLog2 refuses times before this instant.
EARLIEST: Final = _dt.datetime(2015, 1, 1, tzinfo=_dt.UTC)

# Characters XML 1.0 cannot carry, plus the other C0/C1 controls (tab, LF, CR excepted).
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CPR = re.compile(r"(\d{6})-?(\d{4})")


# --------------------------------------------------------------------------- rules


def _text(field: str, value: object, limit: int) -> str:
    """A required schema string: 1..limit characters, not blank, XML-safe."""
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if not value or value.isspace():
        raise ValidationError(field, "must not be empty or blank")
    if len(value) > limit:
        raise ValidationError(field, f"must be at most {limit} characters (got {len(value)})")
    if _BAD_CHARS.search(value):
        raise ValidationError(field, "must not contain control characters")
    return value


def _opt(field: str, value: object, limit: int) -> str | None:
    return None if value is None else _text(field, value, limit)


def _name(field: str, value: object, limit: int) -> str | None:
    """An optional name: a schema string on one line (no tabs or line breaks)."""
    text = _opt(field, value, limit)
    if text is not None and any(c in text for c in "\t\n\r"):
        raise ValidationError(field, "must be on one line (no tabs or line breaks)")
    return text


def _one_of(field: str, value: object, allowed: Iterable[str]) -> str:
    allowed = frozenset(allowed)
    if value not in allowed:
        # Echo the value only when it cannot be an identifier given in the wrong place
        # (a CPR number passed as a source, say): short and without digits.
        shown = (value if isinstance(value, str) and len(value) <= 40
                 and not any(c.isdigit() for c in value) else "the value given")
        raise ValidationError(field, f"{shown!r} is not one of {', '.join(sorted(allowed))}")
    return str(value)


def _century(digit7: int, yy: int) -> int:
    if digit7 <= 3:
        return 1900
    if digit7 in (4, 9):
        return 2000 if yy <= 36 else 1900
    return 2000 if yy <= 57 else 1800


def is_cpr(value: str) -> bool:
    """True when ``value`` is ten digits whose first six form a real date (no modulus 11)."""
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    dd, mm, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    try:
        _dt.date(_century(int(value[6]), yy) + yy, mm, dd)
    except ValueError:
        return False
    return True


def _cpr(field: str, value: object) -> str:
    """A CPR number, normalised to 10 digits. The digits never appear in the error."""
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    m = _CPR.fullmatch(value)
    digits = m.group(1) + m.group(2) if m else ""
    if not is_cpr(digits):
        raise ValidationError(field, "must be a CPR number: 10 digits starting with a real date")
    return digits


def _identifier(field: str, value: object, source: str, limit: int = 50) -> str:
    if source == "CPR":
        return _cpr(field, value)
    text = _text(field, value, limit)
    if any(c.isspace() for c in text):
        raise ValidationError(field, "must not contain white space")
    return text


def _normalise_cpr(value: object) -> object:
    """Strip the optional hyphen of a CPR number so ``010190-1234`` dedups with ``0101901234``."""
    if type(value) is str and len(value) == 11 and value[6] == "-":
        return value[:6] + value[7:]
    return value


def _aware(field: str, value: object) -> _dt.datetime:
    if not isinstance(value, _dt.datetime):
        raise ValidationError(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware (naive times are ambiguous)")
    if value < EARLIEST:
        raise ValidationError(field, "must not be before 2015-01-01T00:00:00Z")
    return value


def _filters(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(field, "must be a sequence of strings")
    return tuple(_text(field, v, 50) for v in value)


def _tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


# --------------------------------------------------------------------------- parts


@attrs.frozen(slots=True)
class Employee:
    """The staff member who used the data. ``id`` is a CPR number unless ``source`` says not."""

    id: str = attrs.field(converter=_normalise_cpr)
    source: str = "CPR"
    name: str | None = None
    role: str | None = None

    def __attrs_post_init__(self) -> None:
        _one_of("employee.source", self.source, EMPLOYEE_SOURCES)
        _identifier("employee.id", self.id, self.source)
        _name("employee.name", self.name, 200)
        _opt("employee.role", self.role, 200)

    def __repr__(self) -> str:  # never print a CPR number
        return f"Employee(source={self.source!r}, name={self.name!r}, role={self.role!r})"


@attrs.frozen(slots=True)
class Organisation:
    """The organisation (unit) the employee acted for, e.g. a SOR code."""

    id: str
    source: str = "SOR"
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        _one_of("organisation.source", self.source, _ALL_ORGANISATION_SOURCES)
        _identifier("organisation.id", self.id, self.source, 200)
        _name("organisation.name", self.name, 200)


@attrs.frozen(slots=True)
class OnBehalfOf:
    """The person on whose behalf the employee acted (e.g. a doctor's assistant's doctor)."""

    id: str = attrs.field(converter=_normalise_cpr)
    source: str = "CPR"
    name: str | None = None
    role: str | None = None

    def __attrs_post_init__(self) -> None:
        _one_of("on_behalf_of.source", self.source, ON_BEHALF_OF_SOURCES)
        _identifier("on_behalf_of.id", self.id, self.source)
        _name("on_behalf_of.name", self.name, 50)
        _opt("on_behalf_of.role", self.role, 200)

    def __repr__(self) -> str:
        return f"OnBehalfOf(source={self.source!r}, name={self.name!r}, role={self.role!r})"


@attrs.frozen(slots=True)
class Access:
    """One use of a citizen's data, as an EOJ audit hook reports it.

    ``citizen`` is the citizen's CPR number (or eCPR with ``citizen_source="eCPR"``);
    ``at`` is a timezone-aware instant; ``activity`` is the text the citizen will read.
    """

    citizen: str = attrs.field(converter=_normalise_cpr)
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
    filters: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_tuple)

    def __attrs_post_init__(self) -> None:
        _one_of("access.citizen_source", self.citizen_source, CITIZEN_SOURCES)
        _identifier("access.citizen", self.citizen, self.citizen_source)
        if not isinstance(self.employee, Employee):
            raise ValidationError("access.employee", "must be an Employee")
        if not isinstance(self.organisation, Organisation):
            raise ValidationError("access.organisation", "must be an Organisation")
        if self.on_behalf_of is not None and not isinstance(self.on_behalf_of, OnBehalfOf):
            raise ValidationError("access.on_behalf_of", "must be an OnBehalfOf or None")
        _text("access.activity", self.activity, 75)
        _aware("access.at", self.at)
        _name("access.citizen_name", self.citizen_name, 50)
        _opt("access.reason", self.reason, 50)
        _opt("access.addition", self.addition, 50)
        _opt("access.criticality", self.criticality, 50)
        _opt("access.correlation_id", self.correlation_id, 46)
        _filters("access.filters", self.filters)

    def __repr__(self) -> str:
        return (
            f"Access(employee={self.employee!r}, organisation={self.organisation!r}, "
            f"activity={self.activity!r}, at={self.at.isoformat()!r})"
        )


# --------------------------------------------------------------------------- wire entry


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
    filters: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    source_system_name: str | None = None
    source_correlation_id: str | None = None

    def __attrs_post_init__(self) -> None:
        _text("system_name", self.system_name, 25)
        _text("activity", self.activity, 75)
        _opt("reason", self.reason, 50)
        _opt("addition", self.addition, 50)
        _opt("criticality", self.criticality, 50)
        if self.date_time is not None:
            if self.from_date_time is not None or self.to_date_time is not None:
                raise ValidationError("date_time", "give date_time or from/to_date_time, not both")
            _aware("date_time", self.date_time)
        elif self.from_date_time is None or self.to_date_time is None:
            raise ValidationError("date_time", "required (or both from_date_time and to_date_time)")
        else:
            _aware("from_date_time", self.from_date_time)
            _aware("to_date_time", self.to_date_time)
            if self.to_date_time < self.from_date_time:
                raise ValidationError("to_date_time", "must not be before from_date_time")
        if self.organisation_id is not None:
            _one_of("organisation_id_source", self.organisation_id_source,
                    _ALL_ORGANISATION_SOURCES)
            _text("organisation_id", self.organisation_id, 200)
        elif self.organisation_id_source is not None:
            raise ValidationError("organisation_id_source", "given without organisation_id")
        _name("organisation_name", self.organisation_name, 200)
        _one_of("person_identifier_source", self.person_identifier_source, CITIZEN_SOURCES)
        _identifier("person_identifier", self.person_identifier, self.person_identifier_source)
        _name("person_name", self.person_name, 50)
        _opt("correlation_id", self.correlation_id, 46)
        _opt("sequence_number", self.sequence_number, 36)
        _one_of("user_person_identifier_source", self.user_person_identifier_source,
                EMPLOYEE_SOURCES)
        _identifier("user_person_identifier", self.user_person_identifier,
                    self.user_person_identifier_source)
        _name("user_person_name", self.user_person_name, 50)
        _opt("user_role", self.user_role, 200)
        if self.on_behalf_of_person_identifier is not None:
            _one_of("on_behalf_of_person_identifier_source",
                    self.on_behalf_of_person_identifier_source, ON_BEHALF_OF_SOURCES)
            _identifier("on_behalf_of_person_identifier", self.on_behalf_of_person_identifier,
                        str(self.on_behalf_of_person_identifier_source))
        elif self.on_behalf_of_person_identifier_source is not None:
            raise ValidationError("on_behalf_of_person_identifier_source",
                                  "given without on_behalf_of_person_identifier")
        _name("on_behalf_of_person_name", self.on_behalf_of_person_name, 50)
        _opt("on_behalf_of_user_role", self.on_behalf_of_user_role, 200)
        _filters("filters", self.filters)
        _opt("source_system_name", self.source_system_name, 200)
        _opt("source_correlation_id", self.source_correlation_id, 200)

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


def check_schema(registration: Registration, version: str) -> None:
    """Raise `ValidationError` when ``registration`` cannot be sent under schema ``version``."""
    check_schema_source(registration.organisation_id_source, version)


def check_schema_source(source: str | None, version: str) -> None:
    """Raise `ValidationError` when organisation ``source`` is not allowed by ``version``."""
    if version not in ORGANISATION_SOURCES:
        raise ValidationError("schema_version", f"must be one of {', '.join(SCHEMA_VERSIONS)}")
    if source is not None and source not in ORGANISATION_SOURCES[version]:
        raise ValidationError(
            "organisation.source", f"{source!r} is not allowed by schema {version}"
        )
