"""The outbox payload: a `Registration` in a compact, versioned, positional JSON form.

``["r1", system_name, activity, reason, addition, criticality, time_us, org_id, org_source,
org_name, person_id, person_source, person_name, correlation_id, sequence_number, user_id,
user_source, user_name, user_role, obo_id, obo_source, obo_name, obo_role, filters]``

``time_us`` is the access time as integer microseconds since the POSIX epoch (UTC). The
form is built straight from a validated `Access` (only the identity fields are checked
again), which makes accepting a first-of-day access cheaper than building and validating a
`Registration`; decoding yields a `Registration` without re-validation, since payloads
are sealed (authenticated) by this library. A test holds ``decode(encode(a))`` equal to
the validated `MinLog.registration_for(a)`.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Final

from ._errors import ValidationError
from ._model import Access, Registration, _name, _opt

__all__ = ["decode", "encode"]

_TAG: Final = "r1"
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_US: Final = _dt.timedelta(microseconds=1)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_FIELDS: Final = (
    "system_name", "activity", "reason", "addition", "criticality", "date_time",
    "organisation_id", "organisation_id_source", "organisation_name", "person_identifier",
    "person_identifier_source", "person_name", "correlation_id", "sequence_number",
    "user_person_identifier", "user_person_identifier_source", "user_person_name",
    "user_role", "on_behalf_of_person_identifier", "on_behalf_of_person_identifier_source",
    "on_behalf_of_person_name", "on_behalf_of_user_role", "filters",
)


def encode(
    access: Access,
    *,
    system_name: str,
    sequence_number: str | None,
    user_person_name: str | None,
    user_role: str | None,
) -> bytes:
    """The payload for ``access`` with the identity fields given (they are checked here)."""
    _name("user_person_name", user_person_name, 50)
    _opt("user_role", user_role, 200)
    e, o, b = access.employee, access.organisation, access.on_behalf_of
    return _dumps([
        _TAG, system_name, access.activity, access.reason, access.addition,
        access.criticality, (access.at - _EPOCH) // _US, o.id, o.source, o.name,
        access.citizen, access.citizen_source, access.citizen_name, access.correlation_id,
        sequence_number, e.id, e.source, user_person_name, user_role,
        b.id if b else None, b.source if b else None, b.name if b else None,
        b.role if b else None, access.filters,
    ]).encode()


def decode(payload: bytes) -> Registration:
    """The `Registration` a payload holds (trusted: the payload was sealed by us)."""
    values: Any = json.loads(payload)
    if not isinstance(values, list) or len(values) != len(_FIELDS) + 1 or values[0] != _TAG:
        raise ValidationError("payload", "not a minlog r1 payload")
    data = {k: v for k, v in zip(_FIELDS, values[1:], strict=True) if v is not None}
    data["date_time"] = _EPOCH + _dt.timedelta(microseconds=data["date_time"])
    data["filters"] = tuple(data.get("filters", ()))
    return Registration._trusted(data)
