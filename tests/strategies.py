"""Hypothesis strategies shared by the tests (the settings profiles live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from minlog import Registration, ValidationError
from minlog.core import rules

__all__ = ["AT", "EARLIEST", "cpr_numbers", "danish_names", "identifiers", "instants",
           "registration", "registrations", "registrations_at_limits", "text_at"]

AT = dt.datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=dt.UTC)


_FIRST = st.sampled_from(["Anne", "Søren", "Åse", "Ølvir", "Mette-Marie", "Jens", "Zoë",
                          "Bjørn", "Kåre", "Ærtebjerg", "Ida", "Noël"])
_LAST = st.sampled_from(["Jensen", "Østergaard", "Kjærgaard-Hansen", "Møller", "Aabenraa",
                         "Lindqvist", "Sørensen", "Æbelø"])
_PARTICLE = st.sampled_from(["von", "van", "de", "af"])


@st.composite
def danish_names(draw: st.DrawFn) -> str:
    """Danish names: æ, ø, å, hyphens, particles, many middle names, combining marks."""
    first = draw(_FIRST)
    middles = draw(st.lists(st.one_of(_FIRST, _LAST, _PARTICLE), max_size=8))
    last = draw(_LAST)
    name = " ".join([first, *middles, last])
    if draw(st.booleans()):  # decomposed form: "å" as "a" + combining ring
        name = unicodedata.normalize("NFD", name)
    return name




def registration(**changes: object) -> Registration:
    """A valid registration with ``changes`` applied."""
    fields: dict[str, object] = dict(
        system_name="Cura", activity="Opslag i Fælles Stamkort",
        person_identifier="0101701234", user_person_identifier="0202802345", date_time=AT,
        organisation_id="380000000000001", organisation_id_source="SOR",
        sequence_number="ab" * 16, user_person_name="Anne Jensen")
    fields.update(changes)
    return Registration(**fields)  # type: ignore[arg-type]


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1).filter(
    lambda s: rules.is_visible(s) and "\ufffe" not in s and "\uffff" not in s)


@st.composite
def registrations(draw: st.DrawFn) -> Registration:
    """Registrations with arbitrary Danish, markup and non-BMP text in the free fields."""
    def text(limit: int) -> str | None:
        return draw(st.none() | _TEXT.filter(lambda s: len(s) <= limit))
    try:
        return registration(activity=draw(_TEXT.filter(lambda s: len(s) <= 75)), reason=text(50),
                   addition=text(50), criticality=text(50), organisation_name=text(200),
                   person_name=draw(st.none() | st.sampled_from(["Åse Ørsted", "Ib <&> 😀"])),
                   user_role=text(200), correlation_id=text(46),
                   filters=tuple(draw(st.lists(_TEXT.filter(lambda s: len(s) <= 50),
                                               max_size=2))),
                   source_system_name=text(25))
    except ValidationError:
        reject()




# --------------------------------------------------------------------------- conformance
# Registrations at every limit of the official schemas, for each version.

#: Characters that stress the wire: Danish letters, combining marks (å as a + ring),
#: emoji outside the BMP, markup characters, quotes, and white space.
_HARD = ["a", "Z", "9", "æ", "ø", "å", "Æ", "Ø", "Å", "é", "ü", "ß", "\u0301", "\u030a",
         "😀", "🇩", "🇰", "\U0001d518", "<", ">", "&", '"', "'", "-", ".", " ", "\u0131",
         "\ufb01", "\u00a0"]
_LINE = ["\t", "\n", "\r"]


def _lengths(limit: int) -> st.SearchStrategy[int]:
    """Lengths worth trying for a limit: the smallest, the middle, one short, the limit."""
    return st.sampled_from(sorted({1, 2, limit // 2 or 1, max(1, limit - 1), limit}))


def text_at(limit: int, *, one_line: bool = False, no_space: bool = False
            ) -> st.SearchStrategy[str]:
    """Strings of 1..``limit`` characters (often exactly ``limit``) that `rules.text`
    accepts (``one_line``: `rules.name`; ``no_space``: an identifier)."""
    alphabet = [c for c in _HARD if not (no_space and c.isspace())]
    if not (one_line or no_space):
        alphabet += _LINE

    @st.composite
    def build(draw: st.DrawFn) -> str:
        n = draw(_lengths(limit))
        chars = draw(st.lists(st.sampled_from(alphabet), min_size=n, max_size=n))
        if not rules.is_visible("".join(chars)):  # only spaces or marks: not a text
            chars[0] = "x"
        return "".join(chars)

    return build()


@st.composite
def cpr_numbers(draw: st.DrawFn) -> str:
    """Syntactically valid CPR numbers (a real date in 1900-1999; no modulus 11)."""
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(1999, 12, 31)))
    return f"{born:%d%m%y}{draw(st.integers(0, 3))}{draw(st.integers(0, 999)):03d}"


def identifiers(source: str) -> st.SearchStrategy[str]:
    """An identifier for ``source``: a CPR number, or up to 50 characters without spaces."""
    return cpr_numbers() if source == "CPR" else text_at(50, no_space=True)


_ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=2)),
          dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12)),
          dt.timezone(dt.timedelta(hours=5, minutes=45))]
EARLIEST = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)


@st.composite
def instants(draw: st.DrawFn) -> dt.datetime:
    """Aware times from 2015-01-01T00:00:00Z on (often exactly then), in various zones."""
    at = draw(st.one_of(
        st.just(EARLIEST),
        st.datetimes(dt.datetime(2015, 1, 1), dt.datetime(2040, 12, 31)).map(
            lambda d: d.replace(tzinfo=dt.UTC))))
    return at.astimezone(draw(st.sampled_from(_ZONES)))


@st.composite
def registrations_at_limits(draw: st.DrawFn, version: str = "20250312") -> Registration:
    """Registrations that use what schema ``version`` allows, at its limits: every optional
    field present or not, every source of the version, Filter values (the predefined
    ones and others), OnBehalfOf, DateTime or From/ToDateTime."""
    from minlog.minlog2.registration import RULES

    rules = RULES[version]

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    fields: dict[str, Any] = {
        "system_name": draw(text_at(25)), "activity": draw(text_at(75)),
        "reason": maybe(text_at(50)),
        "addition": maybe(st.sampled_from(["Samtykke", "Værdispring", "Ingen"]) | text_at(50)),
        "criticality": maybe(st.sampled_from(["Ingen", "Privatmarkeret"]) | text_at(50)),
        "person_name": maybe(text_at(50, one_line=True)),
        "correlation_id": maybe(text_at(46)), "sequence_number": maybe(text_at(36)),
        "user_person_name": maybe(text_at(50, one_line=True)),
        "user_role": maybe(text_at(200)),
        "filters": tuple(draw(st.lists(
            st.sampled_from(["Ikke borger", "Ikke forældremyndigheds-indehaver"])
            | text_at(50), max_size=3))),
        "source_system_name": maybe(text_at(25)),
        "source_correlation_id": maybe(text_at(46)),
    }
    if draw(st.booleans()):
        fields["date_time"] = draw(instants())
    else:
        a, b = sorted([draw(instants()), draw(instants())])
        fields["from_date_time"], fields["to_date_time"] = a, b
    person = draw(st.sampled_from(sorted(rules.person)))
    fields["person_identifier_source"] = person
    fields["person_identifier"] = draw(identifiers(person))
    user = draw(st.sampled_from(sorted(rules.employee)))
    fields["user_person_identifier_source"] = user
    fields["user_person_identifier"] = draw(identifiers(user))
    if draw(st.booleans()):
        organisation = st.sampled_from(sorted(rules.organisation))
        if rules.free_organisation_source:
            organisation |= text_at(200, one_line=True)
        fields["organisation_id_source"] = draw(organisation)
        fields["organisation_id"] = draw(text_at(200))
    fields["organisation_name"] = maybe(text_at(200, one_line=True))
    if draw(st.booleans()):
        behalf = draw(st.sampled_from(sorted(rules.on_behalf_of)))
        fields["on_behalf_of_person_identifier_source"] = behalf
        fields["on_behalf_of_person_identifier"] = draw(identifiers(behalf))
        fields["on_behalf_of_person_name"] = maybe(text_at(50, one_line=True))
        fields["on_behalf_of_user_role"] = maybe(text_at(200))
    return Registration(**{k: v for k, v in fields.items() if v is not None})
