"""The validation rules shared by what an audit hook reports (`minlog.core.model`) and what
MinLog2 receives (`minlog.minlog2.registration`).

Each rule takes the field's name (for the error) and the value, returns the value (perhaps
normalised) or raises `ValidationError` naming the field and the rule. No message repeats
the value: it may be a CPR number.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Iterable
from typing import Final

from minlog.errors import ValidationError

__all__ = ["EARLIEST", "aware", "cpr", "filters", "identifier", "is_cpr", "is_cvr",
           "is_visible", "name", "normalise_cpr", "one_of", "opt", "text", "to_tuple"]

#: MinLog2 refuses times before this instant.
EARLIEST: Final = _dt.datetime(2015, 1, 1, tzinfo=_dt.UTC)

# Characters XML 1.0 cannot carry, plus the other C0/C1 controls (tab, LF, CR excepted).
_BAD_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CPR: Final = re.compile(r"(\d{6})-?(\d{4})")
#: Letters, numbers, punctuation and symbols can be seen; separators (spaces), controls,
#: format characters (zero-width space, joiners, U+FEFF, soft hyphen, tags), private-use
#: and unassigned code points, and combining marks on their own cannot.
_VISIBLE_CATEGORIES: Final = frozenset("LNPS")
#: Any printable ASCII character other than the space: the quick answer for most text.
_ASCII_VISIBLE: Final = re.compile("[!-~]")
#: Letters and symbols that are drawn as nothing: the Hangul fillers, the blank Braille
#: pattern, the musical null notehead.
_BLANK_GLYPHS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800\U0001d159")


def is_visible(value: str) -> bool:
    """True when ``value`` has at least one character a reader can see (a letter, digit,
    punctuation mark or symbol). Quick for the usual text: the first such character ends
    the search."""
    if _ASCII_VISIBLE.search(value):
        return True
    if value.isascii():
        return False
    category = unicodedata.category
    return any(category(c)[0] in _VISIBLE_CATEGORIES and c not in _BLANK_GLYPHS
               for c in value)


def text(field: str, value: object, limit: int) -> str:
    """A required schema string: 1..limit characters, XML-safe, with something to see
    (a text of only spaces, zero-width or other invisible characters, or combining marks
    alone, would reach the citizen as a blank)."""
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if not value or value.isspace():
        raise ValidationError(field, "must not be empty or blank (it needs a visible character)")
    if len(value) > limit:
        raise ValidationError(field, f"must be at most {limit} characters (got {len(value)})")
    if _BAD_CHARS.search(value):
        raise ValidationError(field, "must not contain control characters")
    if not is_visible(value):
        raise ValidationError(
            field, "must have a visible character (not only spaces, invisible or format "
                   "characters, or combining marks)")
    return value


def opt(field: str, value: object, limit: int) -> str | None:
    return None if value is None else text(field, value, limit)


def name(field: str, value: object, limit: int) -> str | None:
    """An optional name: a schema string on one line (no tabs or line breaks)."""
    checked = opt(field, value, limit)
    if checked is not None and any(c in checked for c in "\t\n\r"):
        raise ValidationError(field, "must be on one line (no tabs or line breaks)")
    return checked


def one_of(field: str, value: object, allowed: Iterable[str]) -> str:
    """One of the names ``allowed`` (a source, say). Anything but a string is refused by
    its type first: a list or a dict cannot even be looked up (it is unhashable)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    allowed = frozenset(allowed)
    if value not in allowed:
        # Echo the value only when it cannot be an identifier given in the wrong place
        # (a CPR number passed as a source, say): short and without digits.
        shown = (value if len(value) <= 40 and not any(c.isdigit() for c in value)
                 else "the value given")
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


def is_cvr(value: object) -> bool:
    """A CVR number (a company's, a municipality's): 8 ASCII digits, as a string."""
    return isinstance(value, str) and len(value) == 8 and value.isascii() and value.isdigit()


def cpr(field: str, value: object) -> str:
    """A CPR number, normalised to 10 digits. The digits never appear in the error."""
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    m = _CPR.fullmatch(value)
    digits = m.group(1) + m.group(2) if m else ""
    if not is_cpr(digits):
        raise ValidationError(field, "must be a CPR number: 10 digits starting with a real date")
    return digits


def identifier(field: str, value: object, source: str, limit: int = 50) -> str:
    if source == "CPR":
        return cpr(field, value)
    checked = text(field, value, limit)
    if any(c.isspace() for c in checked):
        raise ValidationError(field, "must not contain white space")
    return checked


def normalise_cpr(value: object) -> object:
    """Strip the optional hyphen of a CPR number so ``010190-1234`` dedups with ``0101901234``."""
    if type(value) is str and len(value) == 11 and value[6] == "-":
        return value[:6] + value[7:]
    return value


def aware(field: str, value: object) -> _dt.datetime:
    if not isinstance(value, _dt.datetime):
        raise ValidationError(field, f"must be a datetime, not {type(value).__name__}")
    try:
        offset = None if value.tzinfo is None else value.utcoffset()
        early = offset is not None and value < EARLIEST
    except (TypeError, ValueError, OverflowError):  # a tzinfo that breaks its contract
        raise ValidationError(field, "its time zone must give a valid UTC offset") from None
    if offset is None:
        raise ValidationError(field, "must be timezone-aware (naive times are ambiguous)")
    if early:
        raise ValidationError(field, "must not be before 2015-01-01T00:00:00Z")
    return value


def filters(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(field, "must be a sequence of strings")
    return tuple(text(field, v, 50) for v in value)


def to_tuple(value: object) -> object:
    """A collection of strings as a tuple (a generator is read once, here, and kept);
    anything else unchanged, for `filters` to refuse by name."""
    if isinstance(value, tuple | str | bytes | bytearray) or not isinstance(value, Iterable):
        return value
    return tuple(value)
