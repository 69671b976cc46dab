"""Codes as people read them back: what a typed code may be, what the registry holds.

Pure (no I/O). A citizen reads a code off MinLog and a municipality's operator types it
in: with the prefix or without, in any case, with a hyphen, spaces or nothing between the
groups ("Medarbejder K7Q4-9MX2", "k7q4 9mx2", "K7Q49MX2"), with O for 0 and I or L for 1.
`readings` gives the registry codes such a text may stand for; `check_verdict` says
whether an `AlternativeId` code was mistyped (its check symbol catches every single wrong
symbol and every swap of neighbours), so that a mistyped code is not reported as a code
of another unit.

The registry keeps, sealed with the installation's key, what an operator needs to trace
a code: the employee's id and its source, the name when the code was issued, and which
formatter issued it (`IssuedCode`; `pack` and `unpack` are its sealed form).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, Literal

import attrs

from minlog.core.model import Employee
from minlog.identity.formatters import ALPHABET, check_character, group

__all__ = ["CodeLookup", "IssuedCode", "Kind", "check_verdict", "pack", "readings", "unpack"]

Kind = Literal["alternative-id", "initials"]
_SEP: Final = "\x1f"  # cannot occur in a validated id, source or name
#: What people put between the groups of a code when they type or read it out.
_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015_.:/·]+")
_LOOKALIKES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SYMBOLS: Final = frozenset(ALPHABET)
#: Trailing words of a typed text worth trying as (part of) the code.
_MAX_TOKENS: Final = 8


@attrs.frozen
class IssuedCode:
    """A code in an organisation's registry and the employee it was issued to. ``name``
    is the name when the code was issued (None for codes issued before minlog recorded
    it); ``kind`` the formatter that issued it (inferred for those older codes)."""

    code: str
    employee_source: str
    employee_id: str = attrs.field(repr=False)
    name: str | None = attrs.field(repr=False)
    kind: Kind

    @property
    def shown_code(self) -> str:
        """The code as the citizen saw it, without the prefix (``"K7Q4-9MX2"``, ``"AJ2"``)."""
        return group(self.code) if self.kind == "alternative-id" else self.code


@attrs.frozen
class CodeLookup:
    """What a typed code is in one organisation.

    ``status``: ``"found"`` (``issued`` says whose it is); ``"mistyped"`` (it has the
    shape of an `AlternativeId` code but its check symbol does not match, or a symbol is
    missing: ask for it again); ``"unknown"`` (well formed, but no employee of this
    organisation has it: a code of another unit, or never issued); ``"empty"`` (no code
    in the text).
    """

    status: Literal["found", "mistyped", "unknown", "empty"]
    issued: IssuedCode | None = None
    #: The text held an `AlternativeId` code whose check symbol matches (so an
    #: ``"unknown"`` code was typed right: it belongs to another unit, or to no one).
    checked: bool = False


def pack(employee: Employee, kind: Kind) -> bytes:
    """The registry's (to be sealed) record of ``employee``."""
    return _SEP.join((employee.source, employee.id, employee.name or "", kind)).encode()


def unpack(code: str, plain: bytes) -> IssuedCode:
    """The `IssuedCode` of an unsealed registry record (also of the older two-field form,
    source and id)."""
    parts = plain.decode().split(_SEP)
    name = parts[2] if len(parts) > 2 and parts[2] else None
    kind: Kind
    if len(parts) > 3 and parts[3] in ("alternative-id", "initials"):
        kind = "alternative-id" if parts[3] == "alternative-id" else "initials"
    else:
        kind = "alternative-id" if _well_formed(code) else "initials"
    return IssuedCode(code=code, employee_source=parts[0], employee_id=parts[1], name=name,
                      kind=kind)


def _tokens(text: str) -> list[str]:
    head = text.split(",", 1)[0]  # "AJ2, Hjemmeplejen Nord": the unit follows a comma
    return [t.upper() for t in _SEPARATORS.split(head) if t][-_MAX_TOKENS:]


def _suffixes(tokens: list[str]) -> Iterator[str]:
    for k in range(1, len(tokens) + 1):
        yield "".join(tokens[-k:])


def readings(text: str) -> list[str]:
    """The registry codes ``text`` may stand for, most likely first: the last word, then
    the last words joined (groups typed apart), each as typed (upper case) and with
    Crockford's look-alikes read as digits."""
    out: list[str] = []
    for joined in _suffixes(_tokens(text)):
        out.append(joined)
        out.append(joined.translate(_LOOKALIKES))
    return list(dict.fromkeys(out))


def _well_formed(code: str) -> bool:
    """An `AlternativeId` code: 8, 10, 12, ... symbols of the alphabet, the last the
    check symbol of the others."""
    return (len(code) >= 8 and len(code) % 2 == 0 and set(code) <= _SYMBOLS
            and check_character(code[:-1]) == code[-1])


def check_verdict(text: str) -> Literal["well-formed", "mistyped", "not-alternative", "empty"]:
    """Whether ``text`` holds an `AlternativeId` code with a matching check symbol.

    The code is read from the trailing groups of at most 4 symbols ("K7Q4 9MX2") or the
    last word ("K7Q49MX2"). Seven or more symbols of the alphabet there make it an
    attempt at an `AlternativeId` code: ``"well-formed"`` when a complete code with a
    matching check symbol ends it, else ``"mistyped"``. Anything else (initials, say) is
    ``"not-alternative"``.
    """
    tokens = [t.translate(_LOOKALIKES) for t in _tokens(text)]
    if not tokens:
        return "empty"
    if len(tokens[-1]) > 4:
        groups = tokens[-1:]
    else:
        groups = []
        for t in reversed(tokens):
            if len(t) > 4 or not set(t) <= _SYMBOLS:
                break
            groups.insert(0, t)
    core = "".join(groups)
    if len(core) < 7 or not set(core) <= _SYMBOLS:
        return "not-alternative"
    if any(_well_formed(s) for s in _suffixes(groups)):
        return "well-formed"
    return "mistyped"
