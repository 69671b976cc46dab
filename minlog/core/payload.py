"""The outbox payload: a `Registration` in a compact, versioned, positional text form.

``r2`` form: UTF-8 text, fields separated by ``\\x1f`` (unit separator), in this order::

    "r2", system_name, activity, reason, addition, criticality, time_us, org_id,
    org_source, org_name, person_id, person_source, person_name, correlation_id,
    sequence_number, user_id, user_source, user_name, user_role, obo_id, obo_source,
    obo_name, obo_role, filters

An absent field is the empty string: every text field of the schema has at least one
character, so ``""`` cannot be a value. ``time_us`` is the access time in integer
microseconds since the POSIX epoch (UTC). ``filters`` are joined by ``\\x1e`` (record
separator). Validation refuses every C0 control character other than tab, line feed and
carriage return in every field, so neither separator can occur inside a value (the identity
fields are checked by the identity policy before `encode` sees them), and `decode`
refuses a payload whose field count is wrong.

The form is built straight from a validated `Access` (only the identity fields are
checked, by the identity policy), which makes accepting a first-of-day access far cheaper
than building and validating a `Registration` or writing JSON; decoding yields a
`Registration` without re-validation, since payloads are sealed (authenticated) by this
library. A test holds
``decode(encode(a))`` equal to the validated `MinLog.registration_for(a)`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final

from minlog.core.model import Access
from minlog.errors import ValidationError
from minlog.minlog2.registration import Registration

__all__ = ["decode", "encode"]

_TAG: Final = "r2"
_SEP: Final = "\x1f"
_FILTER_SEP: Final = "\x1e"
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_US: Final = _dt.timedelta(microseconds=1)
_FIELDS: Final = (
    "system_name", "activity", "reason", "addition", "criticality", "date_time",
    "organisation_id", "organisation_id_source", "organisation_name", "person_identifier",
    "person_identifier_source", "person_name", "correlation_id", "sequence_number",
    "user_person_identifier", "user_person_identifier_source", "user_person_name",
    "user_role", "on_behalf_of_person_identifier", "on_behalf_of_person_identifier_source",
    "on_behalf_of_person_name", "on_behalf_of_user_role", "filters",
)
_COUNT: Final = len(_FIELDS) + 1


def encode(access: Access, system_name: str, sequence_number: str | None,
           user_person_name: str | None, user_role: str | None) -> bytes:
    """The payload for ``access`` with the identity fields given, which must be checked
    already (`BoundIdentity` does it)."""
    e, o, b = access.employee, access.organisation, access.on_behalf_of
    return _SEP.join((
        _TAG, system_name, access.activity, access.reason or "", access.addition or "",
        access.criticality or "", str((access.at - _EPOCH) // _US), o.id, o.source,
        o.name or "", access.citizen, access.citizen_source, access.citizen_name or "",
        access.correlation_id or "", sequence_number or "", e.id, e.source,
        user_person_name or "", user_role or "",
        b.id if b else "", b.source if b else "", (b.name or "") if b else "",
        (b.role or "") if b else "", _FILTER_SEP.join(access.filters),
    )).encode()


def decode(payload: bytes) -> Registration:
    """The `Registration` a payload holds (trusted: the payload was sealed by us)."""
    try:
        values = payload.decode()
    except UnicodeDecodeError:
        raise ValidationError("payload", "not UTF-8 text") from None
    parts = values.split(_SEP)
    if len(parts) != _COUNT or parts[0] != _TAG:
        raise ValidationError("payload", f"not a minlog {_TAG} payload")
    data: dict[str, Any] = {k: v for k, v in zip(_FIELDS, parts[1:], strict=True) if v}
    try:
        data["date_time"] = _EPOCH + _dt.timedelta(microseconds=int(data["date_time"]))
    except (KeyError, ValueError, OverflowError):
        raise ValidationError("payload", "the access time is missing or unreadable") from None
    filters = data.get("filters")
    data["filters"] = tuple(filters.split(_FILTER_SEP)) if filters else ()
    return Registration._trusted(data)
