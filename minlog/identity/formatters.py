"""The identity formatters: how an employee of an organisation is shown to the citizen.

Pure functions of the employee and the organisation (the `IdentityFormatter` protocol is
one call):

* `FullName` - the name as registered, shortened deterministically and readably when
  longer than 50 characters.
* `AlternativeId` - ``"Medarbejder K7Q4-9MX2"``: a code derived with a keyed MAC from a
  secret the municipality holds, with a check symbol against typing errors.
* `Initials` - ``"AJ, Hjemmeplejen Nord"``: initials plus the unit's name.

`AlternativeId` and `Initials` give *candidate* codes; a `minlog.identity.binding.BoundIdentity`
makes them unique and resolvable with the store's alias registry.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Iterator
from typing import Final, Protocol, runtime_checkable

import attrs

from minlog.core import rules
from minlog.core.model import Employee, Organisation
from minlog.errors import ConfigurationError, ValidationError

__all__ = [
    "ALPHABET",
    "LIMIT",
    "MAX_INITIALS",
    "AlternativeId",
    "FullName",
    "IdentityFormatter",
    "Initials",
    "check_character",
    "group",
    "shorten_name",
]

LIMIT: Final = 50
#: Initials longer than this are cut, so that a number and the unit's name always fit.
MAX_INITIALS: Final = 10
#: Crockford's base-32 alphabet less Z: no I, L, O, U (no confusion with 1, 0, V). 31
#: symbols, a prime, so that the check symbol catches every single error (see below).
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXY"
_PARTICLES: Final = frozenset({"von", "van", "de", "der", "den", "du", "la", "le", "af", "zu",
                               "di", "da", "del", "ten", "ter"})


@runtime_checkable
class IdentityFormatter(Protocol):
    """Turns an employee of an organisation into the name the citizen sees."""

    def __call__(self, employee: Employee, organisation: Organisation) -> str: ...


# ----------------------------------------------------------------------------- helpers


def _name_of(employee: Employee) -> str:
    name = employee.name
    if name is None:
        raise ValidationError("employee.name", "required: the identity policy shows the name")
    return unicodedata.normalize("NFC", " ".join(name.split()))


def shorten_name(name: str, limit: int = LIMIT) -> str:
    """``name`` in at most ``limit`` characters, deterministically and readably: keep the
    first and last names, abbreviate middle names to initials, then drop them, then cut
    the last name with a marker ("…")."""
    name = " ".join(name.split())
    if len(name) <= limit:
        return name
    parts = name.split(" ")
    if len(parts) > 2:
        first, middle, last = parts[0], parts[1:-1], parts[-1]
        abbreviated = [m if m.lower() in _PARTICLES else f"{m[0]}." for m in middle]
        candidate = " ".join([first, *abbreviated, last])
        if len(candidate) <= limit:
            return candidate
        candidate = f"{first} {last}"
        if len(candidate) <= limit:
            return candidate
        name = candidate
    return name[: limit - 1].rstrip() + "…"


def check_character(code: str) -> str:
    """A check symbol for ``code``: the sum of symbol values weighted 1..30 (repeating),
    modulo 31. 31 is prime and no weight is 0 modulo 31, so every single wrong symbol and
    every swap of two different neighbours changes it."""
    total = sum(((i % 30) + 1) * ALPHABET.index(c) for i, c in enumerate(code))
    return ALPHABET[total % 31]


def group(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


# ----------------------------------------------------------------------------- formatters


@attrs.frozen
class FullName:
    """The employee's name as registered (shortened when over 50 characters)."""

    show_role: bool = True

    def __call__(self, employee: Employee, organisation: Organisation) -> str:
        return shorten_name(_name_of(employee))


@attrs.frozen
class AlternativeId:
    """``"<prefix> XXXX-XXXX"``: 7 symbols (31-symbol alphabet) from HMAC-SHA256(secret,
    organisation, employee) and a check symbol; longer codes when a shorter one is taken."""

    secret: bytes = attrs.field(repr=False)
    prefix: str = "Medarbejder"
    show_role: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            raise ConfigurationError("AlternativeId.secret: must be at least 16 bytes")
        if self.prefix != "":
            try:
                rules.name("AlternativeId.prefix", self.prefix, 30)
            except ValidationError as e:
                raise ConfigurationError(
                    f"AlternativeId.prefix: at most 30 characters, one line ({e.rule})"
                ) from None

    def _symbols(self, employee: Employee, organisation: Organisation) -> str:
        msg = "\x1f".join((organisation.source, organisation.id, employee.source, employee.id))
        digest = hmac.new(self.secret, msg.encode(), hashlib.sha256).digest()
        n = int.from_bytes(digest, "big")
        out = []
        for _ in range(51):  # 51 base-31 digits use 252 of the 256 bits
            n, digit = divmod(n, 31)
            out.append(ALPHABET[digit])
        return "".join(out)

    def candidates(self, employee: Employee, organisation: Organisation) -> Iterator[str]:
        """Registry codes, shortest first: 7, 9, 11, ... data symbols plus the check, as
        long as the shown text fits in 50 characters (with the longest prefix, codes of
        up to 16 symbols: a collision of even the 9-symbol codes is unheard of)."""
        symbols = self._symbols(employee, organisation)
        room = LIMIT - (len(self.prefix) + 1 if self.prefix else 0)
        for length in range(7, 50, 2):
            data = symbols[:length]
            code = data + check_character(data)
            if len(group(code)) > room:
                return
            yield code

    def show(self, code: str) -> str:
        return f"{self.prefix} {group(code)}" if self.prefix else group(code)

    def __call__(self, employee: Employee, organisation: Organisation) -> str:
        """The shortest candidate, unregistered (use a bound policy for uniqueness)."""
        return self.show(next(self.candidates(employee, organisation)))


@attrs.frozen
class Initials:
    """``"AJ, Hjemmeplejen Nord"``: initials and the unit's name; ``"AJ2, ..."`` when
    taken. Initials alone are not unique: the registry numbers them."""

    show_role: bool = False

    def initials(self, employee: Employee) -> str:
        """The first letter of each part of the name (particles skipped, hyphenated names
        split, anything before the first letter of a part, such as a zero-width space or
        a digit, passed over), upper case, at most 10; ``"X"`` when there is no letter."""
        parts = [p for p in _name_of(employee).replace("-", " ").split()
                 if p.lower() not in _PARTICLES]
        firsts = (next((c for c in p if c.isalpha()), "") for p in parts)
        letters = "".join(firsts).upper()[:MAX_INITIALS]
        return letters or "X"

    def candidates(self, employee: Employee, organisation: Organisation) -> Iterator[str]:
        letters = self.initials(employee)
        yield letters
        for n in range(2, 1_000_000):
            yield f"{letters}{n}"

    def show(self, code: str, organisation: Organisation) -> str:
        if not organisation.name:
            return code[:LIMIT]
        room = LIMIT - len(code) - 2
        unit = organisation.name if len(organisation.name) <= room else (
            organisation.name[: room - 1].rstrip() + "…")
        return f"{code}, {unit}"

    def __call__(self, employee: Employee, organisation: Organisation) -> str:
        return self.show(self.initials(employee), organisation)
