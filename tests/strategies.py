"""Hypothesis strategies shared by the tests (the settings profiles live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import unicodedata

from hypothesis import reject
from hypothesis import strategies as st

from minlog import Registration, ValidationError

__all__ = ["AT", "danish_names", "registration", "registrations"]

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
    lambda s: s.strip() and "\ufffe" not in s and "\uffff" not in s)


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


