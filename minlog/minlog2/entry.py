"""One ``LogDataEntry`` as a flat tuple of texts: the outbox payload's form, and its XML.

A log is validated once, when it is accepted; from then on it travels as `Fields`, a tuple
of strings in the schema's element order (`FIELDS`), ``""`` for an absent element (every
text of the schema has at least one character, so ``""`` is never a value). Times are
already written as ``xs:dateTime`` in UTC (``2026-11-24T07:00:00Z``, microseconds when
there are any), filters are joined by ``\\x1e``.

* `encode_access` makes the payload of an accepted `Access` (``e3``: the tag and the
  fields joined by ``\\x1f``, UTF-8). Validation refuses every control character other than
  tab, line feed and carriage return in every field, so neither separator can occur
  inside a value; `decode_fields` refuses a payload whose tag or field count is wrong.
* `entry_xml` writes the ``LogDataEntry`` element of one `Fields`: the only writer of it
  (`minlog.minlog2.wire` writes `Registration` objects through `fields_of`).
* `Batch` is what the delivery worker hands a transport: a sequence of `Registration`
  that makes them only when asked (a test transport), while `Batch.entries_xml` writes the
  request straight from the stored fields (the real one).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from typing import Any, Final, overload
from xml.sax.saxutils import escape as _escape

from minlog.core.model import Access
from minlog.errors import ValidationError
from minlog.minlog2.registration import Registration

__all__ = ["DESTINATION", "FIELDS", "Batch", "Fields", "decode", "decode_fields", "encode_access",
           "entry_xml", "fields_of", "registration_of", "registration_of_access",
           "seconds_text", "xs_datetime"]

#: A ``LogDataEntry`` as texts, in the order of `FIELDS`.
Fields = tuple[str, ...]

FIELDS: Final = (
    "source_correlation_id", "source_system_name",
    "system_name", "activity", "reason", "addition", "criticality",
    "date_time", "from_date_time", "to_date_time",
    "organisation_id", "organisation_id_source", "organisation_name",
    "person_identifier", "person_identifier_source", "person_name",
    "correlation_id", "sequence_number",
    "user_person_identifier", "user_person_identifier_source", "user_person_name",
    "user_role",
    "on_behalf_of_person_identifier", "on_behalf_of_person_identifier_source",
    "on_behalf_of_person_name", "on_behalf_of_user_role",
    "filters",
)
_TAG: Final = "e3"
_SEP: Final = "\x1f"
_FILTER_SEP: Final = "\x1e"
_COUNT: Final = len(FIELDS) + 1
_TIMES: Final = frozenset({"date_time", "from_date_time", "to_date_time"})
_SEQUENCE: Final = FIELDS.index("sequence_number")
_UTC: Final = _dt.UTC

#: ``Destination`` children but ``Filter``, in schema order: (element, field, the field of
#: its ``source`` attribute or None). ``Filter`` elements come last.
DESTINATION: Final[tuple[tuple[str, str, str | None], ...]] = (
    ("SystemName", "system_name", None),
    ("Activity", "activity", None),
    ("Reason", "reason", None),
    ("Addition", "addition", None),
    ("Criticality", "criticality", None),
    ("DateTime", "date_time", None),
    ("FromDateTime", "from_date_time", None),
    ("ToDateTime", "to_date_time", None),
    ("OrganisationId", "organisation_id", "organisation_id_source"),
    ("OrganisationName", "organisation_name", None),
    ("PersonIdentifier", "person_identifier", "person_identifier_source"),
    ("PersonName", "person_name", None),
    ("CorrelationId", "correlation_id", None),
    ("SequenceNumber", "sequence_number", None),
    ("UserPersonIdentifier", "user_person_identifier", "user_person_identifier_source"),
    ("UserPersonName", "user_person_name", None),
    ("UserRole", "user_role", None),
    ("OnBehalfOfPersonIdentifier", "on_behalf_of_person_identifier",
     "on_behalf_of_person_identifier_source"),
    ("OnBehalfOfPersonName", "on_behalf_of_person_name", None),
    ("OnBehalfOfUserRole", "on_behalf_of_user_role", None),
)
#: `DESTINATION` as (element, field index, index of the source field or -1).
_DEST: Final = tuple((element, FIELDS.index(name), FIELDS.index(source) if source else -1)
                     for element, name, source in DESTINATION)
_FILTERS: Final = FIELDS.index("filters")
#: A carriage return is written as a reference (a parser turns a literal one into a line
#: feed); in an attribute, tabs and line feeds too (attribute values are normalised).
_TEXT: Final = {"\r": "&#13;"}
_QUOTE: Final = {'"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def xs_datetime(value: _dt.datetime) -> str:
    """An aware datetime as ``xs:dateTime`` in UTC with ``Z``."""
    return value.astimezone(_UTC).isoformat().replace("+00:00", "Z")


def seconds_text(ts: float) -> str:
    """POSIX time ``ts`` as ``YYYY-MM-DDTHH:MM:SS`` (UTC): the first 19 characters of a
    stored time, so that comparing the texts compares the times to the second."""
    return _dt.datetime.fromtimestamp(ts, _UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _esc(value: str) -> str:
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return _escape(value, _TEXT)
    return value


def _attr(value: str) -> str:
    if any(c in value for c in '&<>"\t\n\r'):
        return _escape(value, _QUOTE)
    return value


# --------------------------------------------------------------------------- fields


def encode_access(access: Access, system_name: str, sequence_number: str,
                  user_person_name: str | None, user_role: str | None) -> bytes:
    """The payload of an accepted ``access`` (the identity fields given, checked already
    by the identity policy)."""
    e, o, b = access.employee, access.organisation, access.on_behalf_of
    return _SEP.join((
        _TAG, "", "", system_name, access.activity, access.reason or "",
        access.addition or "", access.criticality or "", xs_datetime(access.at), "", "",
        o.id, o.source, o.name or "", access.citizen, access.citizen_source,
        access.citizen_name or "", access.correlation_id or "", sequence_number,
        e.id, e.source, user_person_name or "", user_role or "",
        b.id if b else "", b.source if b else "", (b.name or "") if b else "",
        (b.role or "") if b else "", _FILTER_SEP.join(access.filters),
    )).encode()


def registration_of_access(access: Access, system_name: str, user_person_name: str | None,
                           user_role: str | None, sequence_number: str | None = None
                           ) -> Registration:
    """The `Registration` of ``access`` (the identity fields given), validated as it is
    made: what `encode_access` stores, as the object `MinLog.registration_for` shows."""
    e, o, b = access.employee, access.organisation, access.on_behalf_of
    return Registration(
        system_name=system_name, activity=access.activity,
        person_identifier=access.citizen, person_identifier_source=access.citizen_source,
        person_name=access.citizen_name,
        user_person_identifier=e.id, user_person_identifier_source=e.source,
        user_person_name=user_person_name, user_role=user_role,
        date_time=access.at, reason=access.reason, addition=access.addition,
        criticality=access.criticality,
        organisation_id=o.id, organisation_id_source=o.source, organisation_name=o.name,
        correlation_id=access.correlation_id, sequence_number=sequence_number,
        on_behalf_of_person_identifier=b.id if b else None,
        on_behalf_of_person_identifier_source=b.source if b else None,
        on_behalf_of_person_name=b.name if b else None,
        on_behalf_of_user_role=b.role if b else None,
        filters=access.filters,
    )


def decode_fields(payload: bytes) -> Fields:
    """The fields of a payload; `ValidationError` when it is not one."""
    try:
        parts = payload.decode().split(_SEP)
    except UnicodeDecodeError:
        raise ValidationError("payload", "not UTF-8 text") from None
    if len(parts) != _COUNT or parts[0] != _TAG:
        raise ValidationError("payload", f"not a minlog {_TAG} payload")
    return tuple(parts[1:])


def fields_of(registration: Registration) -> Fields:
    """The fields of a (validated) `Registration`."""
    out = []
    for name in FIELDS:
        value: Any = getattr(registration, name)
        if value is None:
            out.append("")
        elif name in _TIMES:
            out.append(xs_datetime(value))
        elif name == "filters":
            out.append(_FILTER_SEP.join(value))
        else:
            out.append(value)
    return tuple(out)


def registration_of(fields: Fields) -> Registration:
    """The `Registration` of stored fields (trusted: validated when accepted)."""
    data: dict[str, Any] = {}
    for name, value in zip(FIELDS, fields, strict=True):
        if not value:
            continue
        if name in _TIMES:
            data[name] = _dt.datetime.fromisoformat(value).astimezone(_UTC)
        elif name == "filters":
            data[name] = tuple(value.split(_FILTER_SEP))
        else:
            data[name] = value
    return Registration._trusted(data)


def decode(payload: bytes) -> Registration:
    """The `Registration` a payload holds."""
    return registration_of(decode_fields(payload))


# --------------------------------------------------------------------------- XML


def entry_xml(fields: Fields) -> str:
    """The ``LogDataEntry`` element of ``fields`` (unqualified, schema order)."""
    parts = ["<LogDataEntry>"]
    add = parts.append
    correlation, system = fields[0], fields[1]
    if correlation or system:
        add("<Source>")
        if correlation:
            add(f"<CorrelationId>{_esc(correlation)}</CorrelationId>")
        if system:
            add(f"<SystemName>{_esc(system)}</SystemName>")
        add("</Source>")
    add("<Destination>")
    for element, i, source in _DEST:
        value = fields[i]
        if not value:
            continue
        if source < 0:
            add(f"<{element}>{_esc(value)}</{element}>")
        else:
            add(f'<{element} source="{_attr(fields[source])}">{_esc(value)}</{element}>')
    filters = fields[_FILTERS]
    if filters:
        for f in filters.split(_FILTER_SEP):
            add(f"<Filter>{_esc(f)}</Filter>")
    add("</Destination></LogDataEntry>")
    return "".join(parts)


class Batch(Sequence[Registration]):
    """Entries on their way to MinLog2, as stored: a sequence of `Registration` made only
    when an item is asked for, and `entries_xml` written straight from the fields."""

    __slots__ = ("_made", "fields")

    def __init__(self, fields: Sequence[Fields]) -> None:
        self.fields = list(fields)
        self._made: list[Registration | None] = [None] * len(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    @overload
    def __getitem__(self, index: int) -> Registration: ...

    @overload
    def __getitem__(self, index: slice) -> Batch: ...

    def __getitem__(self, index: int | slice) -> Registration | Batch:
        if isinstance(index, slice):
            return Batch(self.fields[index])
        made = self._made[index]
        if made is None:
            made = self._made[index] = registration_of(self.fields[index])
        return made

    def __iter__(self) -> Iterator[Registration]:
        for i in range(len(self.fields)):
            yield self[i]

    def sequence_numbers(self) -> list[str]:
        """Each entry's SequenceNumber, in order."""
        return [f[_SEQUENCE] for f in self.fields]

    def entries_xml(self) -> str:
        """The ``LogDataEntry`` elements of the batch, in order."""
        return "".join(map(entry_xml, self.fields))
