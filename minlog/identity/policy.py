"""How the employee is shown to the citizen: full name, or a resolvable alternative.

MinLog2 shows ``UserPersonName`` (at most 50 characters). By default that is the full
name; a municipality may instead show another *unique* identification of its staff that
it can *resolve* back to the employee. The choice is made per organisation by an
`IdentityPolicy`.

Formatters (pure; the `IdentityFormatter` protocol is one call):

* `FullName` - the name as registered, shortened deterministically and readably when
  longer than 50 characters.
* `AlternativeId` - ``"Medarbejder K7Q4-9MX2"``: a code derived with a keyed MAC from a
  secret the municipality holds, with a check symbol against typing errors.
* `Initials` - ``"AJ, Hjemmeplejen Nord"``: initials plus the unit's name.

Codes of `AlternativeId` and `Initials` are made unique within an organisation by an
`AliasRegistry` (the store's alias table): a code taken by another employee is extended
(the next, longer candidate), and a code once issued to an employee is reused forever,
whatever the secret is later rotated to. The registry holds a keyed digest of the employee
and the employee id sealed with the installation's key, never a raw CPR number.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from minlog.core.model import Employee, Organisation
from minlog.core.rules import name as _model_name
from minlog.errors import ConfigurationError, ValidationError

__all__ = [
    "AliasRegistry",
    "AlternativeId",
    "BoundIdentity",
    "FullName",
    "IdentityFormatter",
    "IdentityPolicy",
    "Initials",
    "check_character",
    "shorten_name",
]

LIMIT: Final = 50
#: Initials longer than this are cut, so that a number and the unit's name always fit.
MAX_INITIALS: Final = 10
_MEMO_LIMIT: Final = 100_000  # names remembered by a bound policy before it starts afresh
#: Crockford's base-32 alphabet less Z: no I, L, O, U (no confusion with 1, 0, V). 31
#: symbols, a prime, so that the check symbol catches every single error (see below).
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXY"
_PARTICLES: Final = frozenset({"von", "van", "de", "der", "den", "du", "la", "le", "af", "zu",
                               "di", "da", "del", "ten", "ter"})


@runtime_checkable
class IdentityFormatter(Protocol):
    """Turns an employee of an organisation into the name the citizen sees."""

    def __call__(self, employee: Employee, organisation: Organisation) -> str: ...


class AliasRegistry(Protocol):
    """Where issued codes are kept unique and resolvable (the `Store` alias methods)."""

    def alias_for(self, scope: str, subject: bytes) -> str | None: ...

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool: ...

    def resolve_alias(self, scope: str, code: str) -> bytes | None: ...


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


def _group(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def _normalise_code(text: str) -> str:
    """What a person typed, as a registry code: upper case, Crockford's look-alikes mapped
    (O->0, I/L->1), separators and prefix words removed."""
    token = text.strip().split()[-1] if text.strip() else ""
    token = token.upper().replace("-", "").replace("O", "0").replace("I", "1").replace("L", "1")
    return token


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
        if len(self.prefix) > 30 or any(c in self.prefix for c in "\r\n\t"):
            raise ConfigurationError("AlternativeId.prefix: at most 30 characters, one line")

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
        """Registry codes, shortest first: 7, 9, 11, ... data symbols plus the check."""
        symbols = self._symbols(employee, organisation)
        for length in range(7, 50, 2):
            data = symbols[:length]
            yield data + check_character(data)

    def show(self, code: str) -> str:
        return f"{self.prefix} {_group(code)}" if self.prefix else _group(code)

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


_Registered = AlternativeId | Initials


# ----------------------------------------------------------------------------- policy


def _org_key(organisation: Organisation) -> tuple[str, str]:
    return organisation.source, organisation.id


@attrs.frozen
class IdentityPolicy:
    """Which formatter each organisation uses. ``strict``: an organisation not named is a
    `ValidationError` instead of getting the default."""

    default: IdentityFormatter = attrs.field(factory=FullName)
    organisations: Mapping[tuple[str, str], IdentityFormatter] = attrs.field(factory=dict)
    strict: bool = False

    def formatter_for(self, organisation: Organisation) -> IdentityFormatter:
        found = self.organisations.get(_org_key(organisation))
        if found is not None:
            return found
        if self.strict:
            raise ValidationError(
                "access.organisation", "no identity policy names this organisation (strict)"
            )
        return self.default

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str], *, text: bool = False) -> IdentityPolicy:
        """Load a policy from a TOML file (or TOML text with ``text=True``)::

            strict = false
            [default]
            formatter = "full-name"           # full-name | alternative-id | initials

            [[organisation]]
            source = "SOR"
            id = "380000000000001"
            formatter = "alternative-id"
            prefix = "Medarbejder"
            secret_file = "/etc/minlog/secret"  # or secret_env = "MINLOG_ALT_SECRET"

        Secrets never live in the TOML itself. Relative ``secret_file`` paths are relative
        to the TOML file.
        """
        base = Path.cwd()
        try:
            if text:
                data = tomllib.loads(str(source))
            else:
                path = Path(source)
                base = path.parent
                data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigurationError(f"identity policy: cannot read TOML: {e}") from e
        unknown = set(data) - {"strict", "default", "organisation"}
        if unknown:
            raise ConfigurationError(f"identity policy: unknown keys {sorted(unknown)}")
        strict = data.get("strict", False)
        if not isinstance(strict, bool):
            raise ConfigurationError("identity policy: strict must be true or false")
        default = _formatter_from(data.get("default", {"formatter": "full-name"}), "default", base)
        orgs: dict[tuple[str, str], IdentityFormatter] = {}
        entries = data.get("organisation", [])
        if not isinstance(entries, list):
            raise ConfigurationError("identity policy: organisation must be an array of tables")
        for i, entry in enumerate(entries):
            where = f"organisation[{i}]"
            if not isinstance(entry, dict):
                raise ConfigurationError(f"identity policy: {where} must be a table")
            src, oid = entry.get("source", "SOR"), entry.get("id")
            if not isinstance(oid, str) or not oid or not isinstance(src, str):
                raise ConfigurationError(f"identity policy: {where}.id must be a string")
            rest = {k: v for k, v in entry.items() if k not in ("source", "id")}
            if (src, oid) in orgs:
                raise ConfigurationError(f"identity policy: {where} names {src} {oid} twice")
            orgs[(src, oid)] = _formatter_from(rest, where, base)
        return cls(default=default, organisations=orgs, strict=strict)

    def bind(
        self,
        registry: AliasRegistry,
        *,
        subject: Callable[[Employee], bytes],
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
    ) -> BoundIdentity:
        """This policy with a registry for unique, resolvable codes."""
        return BoundIdentity(self, registry, subject, seal, unseal)


def _formatter_from(table: Any, where: str, base: Path) -> IdentityFormatter:
    if not isinstance(table, dict):
        raise ConfigurationError(f"identity policy: {where} must be a table")
    kind = table.get("formatter", "full-name")
    options = {k: v for k, v in table.items() if k != "formatter"}
    allowed = {"full-name": {"show_role"}, "initials": {"show_role"},
               "alternative-id": {"show_role", "prefix", "secret_file", "secret_env"}}
    if kind not in allowed:
        raise ConfigurationError(
            f"identity policy: {where}.formatter must be one of {', '.join(sorted(allowed))}")
    unknown = set(options) - allowed[kind]
    if unknown:
        raise ConfigurationError(f"identity policy: {where}: unknown keys {sorted(unknown)}")
    show_role = options.get("show_role")
    if show_role is not None and not isinstance(show_role, bool):
        raise ConfigurationError(f"identity policy: {where}.show_role must be true or false")
    if kind == "full-name":
        return FullName(show_role=True if show_role is None else show_role)
    if kind == "initials":
        return Initials(show_role=bool(show_role))
    prefix = options.get("prefix", "Medarbejder")
    if not isinstance(prefix, str):
        raise ConfigurationError(f"identity policy: {where}.prefix must be a string")
    return AlternativeId(secret=_secret(options, where, base), prefix=prefix,
                         show_role=bool(show_role))


def _secret(options: dict[str, Any], where: str, base: Path) -> bytes:
    if "secret_file" in options:
        path = base / str(options["secret_file"])
        try:
            raw = path.read_bytes().strip()
        except OSError as e:
            raise ConfigurationError(f"identity policy: {where}.secret_file: {e}") from e
    elif "secret_env" in options:
        value = os.environ.get(str(options["secret_env"]))
        if not value:
            raise ConfigurationError(
                f"identity policy: {where}.secret_env: {options['secret_env']} is not set")
        raw = value.strip().encode()
    else:
        raise ConfigurationError(
            f"identity policy: {where}: alternative-id needs secret_file or secret_env")
    if len(raw) < 16:
        raise ConfigurationError(f"identity policy: {where}: the secret is shorter than 16 bytes")
    return raw


class BoundIdentity:
    """An `IdentityPolicy` bound to a registry: ``(employee, organisation) ->
    (user_person_name, user_role)``, unique and resolvable where the formatter asks."""

    def __init__(
        self,
        policy: IdentityPolicy,
        registry: AliasRegistry,
        subject: Callable[[Employee], bytes],
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
    ) -> None:
        self.policy = policy
        self.registry = registry
        self._subject = subject
        self._seal = seal
        self._unseal = unseal
        self._cache: dict[tuple[str, bytes], str] = {}
        self._shown: dict[tuple[bool, str | None, str | None], tuple[str, str | None]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def scope(organisation: Organisation) -> str:
        return f"{organisation.source}:{organisation.id}"

    def __call__(self, employee: Employee, organisation: Organisation
                 ) -> tuple[str | None, str | None]:
        """``(user_person_name, user_role)``, both checked against the schema (a bad
        name from a formatter is a `ValidationError` naming ``user_person_name``)."""
        formatter = self.policy.formatter_for(organisation)
        if type(formatter) is FullName:
            # A pure function of the name: remember the checked answer (no CPR involved).
            memo = (formatter.show_role, employee.name, employee.role)
            found = self._shown.get(memo)
            if found is None:
                found = self._checked(formatter(employee, organisation),
                                      employee.role if formatter.show_role else None)
                if len(self._shown) >= _MEMO_LIMIT:
                    self._shown.clear()
                self._shown[memo] = found
            return found
        show_role = getattr(formatter, "show_role", True)
        role = employee.role if show_role else None
        if isinstance(formatter, AlternativeId | Initials):
            code = self._register(formatter, employee, organisation)
            name = (formatter.show(code) if isinstance(formatter, AlternativeId)
                    else formatter.show(code, organisation))
        else:
            name = formatter(employee, organisation)
        return self._checked(name, role)

    @staticmethod
    def _checked(name: object, role: str | None) -> tuple[str, str | None]:
        if not isinstance(name, str) or not name.strip() or len(name) > LIMIT:
            raise ValidationError("user_person_name",
                                  f"the identity formatter must give 1-{LIMIT} characters")
        _model_name("user_person_name", name, LIMIT)
        return name, role

    def _register(self, formatter: _Registered, employee: Employee,
                  organisation: Organisation) -> str:
        scope = self.scope(organisation)
        subject = self._subject(employee)
        cached = self._cache.get((scope, subject))
        if cached is not None:
            return cached
        with self._lock:
            code = self.registry.alias_for(scope, subject)
            if code is None:
                sealed = self._seal(f"{employee.source}\x1f{employee.id}".encode(),
                                    scope.encode())
                for candidate in formatter.candidates(employee, organisation):
                    if self.registry.add_alias(scope, candidate, subject, sealed):
                        code = candidate
                        break
                    code = self.registry.alias_for(scope, subject)  # another process won
                    if code is not None:
                        break
                else:  # pragma: no cover - candidates are practically endless
                    raise ValidationError("user_person_name", "no free code in this scope")
            self._cache[(scope, subject)] = code
            return code

    def resolve(self, organisation: Organisation, code: str) -> str | None:
        """The employee id behind a code shown to a citizen, or None. Accepts the shown
        text (``"Medarbejder K7Q4-9MX2"``, ``"AJ2, Hjemmeplejen Nord"``) or the bare code,
        in any case, with Crockford's look-alikes (O for 0, I or L for 1)."""
        scope = self.scope(organisation)
        text = code.split(",")[0].strip()
        tries = [text.split()[-1] if text else text, _normalise_code(text)]
        for candidate in dict.fromkeys(t.upper() for t in tries if t):
            sealed = self.registry.resolve_alias(scope, candidate)
            if sealed is not None:
                plain = self._unseal(sealed, scope.encode()).decode()
                return plain.split("\x1f", 1)[1]
        return None
