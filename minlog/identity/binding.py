"""An `IdentityPolicy` bound to an alias registry: unique, resolvable codes.

Codes of `AlternativeId` and `Initials` are made unique within an organisation by an
`AliasRegistry` (the store's alias table): a code taken by another employee is extended
(the next, longer candidate), and a code once issued to an employee is reused forever,
whatever the secret is later rotated to. Initials are numbered after the highest number
in use (one registry call per new employee). The registry holds a keyed digest of the
employee and a record sealed with the installation's key (the employee's id and source,
the name when the code was issued, the formatter: `minlog.identity.codes.pack`), never a
raw CPR number or name.

`BoundIdentity.many` checks every access of a batch before it registers any code, so a
refused batch leaves the registry as it was. `lookup` and `codes` are the operator's way
back from a code to the employee (`minlog resolve`, `minlog codes`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from minlog.core.model import Employee, Organisation
from minlog.core.rules import name as _model_name
from minlog.errors import ValidationError
from minlog.identity.codes import (
    CodeLookup,
    IssuedCode,
    Kind,
    check_verdict,
    pack,
    readings,
    unpack,
)
from minlog.identity.formatters import LIMIT, AlternativeId, FullName, Initials

if TYPE_CHECKING:
    from minlog.identity.policy import IdentityPolicy

__all__ = ["AliasRegistry", "BoundIdentity"]

_MEMO_LIMIT: Final = 100_000  # names remembered by a bound policy before it starts afresh
#: Tries at a free number for one employee's initials before giving up (each try after a
#: taken number asks the registry for the highest number again, so two or three suffice
#: unless other processes keep taking numbers as fast as this one asks).
_MAX_NUMBER_TRIES: Final = 1000
_Registered = AlternativeId | Initials


class AliasRegistry(Protocol):
    """Where issued codes are kept unique and resolvable (the `Store` alias methods;
    `minlog.identity.memory.MemoryAliasRegistry` in memory)."""

    def alias_for(self, scope: str, subject: bytes) -> str | None: ...

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool: ...

    def resolve_alias(self, scope: str, code: str) -> bytes | None: ...

    def list_aliases(self, scope: str) -> list[tuple[str, bytes]]:
        """Every ``(code, sealed)`` registered in ``scope``, in code order."""
        ...

    def highest_alias_number(self, scope: str, stem: str) -> int:
        """The highest ``n`` for which ``stem + str(n)`` is a code in ``scope``, counting
        the bare ``stem`` as 1; 0 when neither is registered. Only codes that are ``stem``
        followed by digits count (``"AJK"`` and ``"AJ2X"`` are not numbers of ``"AJ"``)."""
        ...


@attrs.frozen
class _Pending:
    """A code to register for an employee of an organisation, checked but not written."""

    formatter: _Registered
    employee: Employee
    organisation: Organisation
    scope: str
    subject: bytes
    role: str | None


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
        #: ``(scope, initials) -> the highest number this process knows to be taken``
        self._highest: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def scope(organisation: Organisation) -> str:
        return f"{organisation.source}:{organisation.id}"

    def __call__(self, employee: Employee, organisation: Organisation,
                 municipality: str | None = None) -> tuple[str | None, str | None]:
        """``(user_person_name, user_role)``, both checked against the schema (a bad
        name from a formatter is a `ValidationError` naming ``user_person_name``).
        ``municipality`` is the CVR of the municipality the access belongs to, when the
        caller knows it (see `IdentityPolicy.formatter_for`). Registers the employee's
        code when the formatter asks for one."""
        return self._finish(self._prepare(employee, organisation, municipality))

    def many(self, pairs: Sequence[tuple[Employee, Organisation]],
             municipalities: Sequence[str | None] | None = None
             ) -> list[tuple[str | None, str | None]]:
        """``(user_person_name, user_role)`` for each ``(employee, organisation)``, in
        order (``municipalities``, when given, holds the municipality of each pair).
        Everything that can refuse a pair is checked for every pair *before* any code is
        registered, so a batch refused for one pair registers no code for the others
        (`MinLog.record_many` stores nothing for a refused batch, codes included)."""
        if municipalities is None:
            prepared = [self._prepare(e, o, None) for e, o in pairs]
        else:
            prepared = [self._prepare(e, o, m)
                        for (e, o), m in zip(pairs, municipalities, strict=True)]
        return [self._finish(p) for p in prepared]

    def _prepare(self, employee: Employee, organisation: Organisation,
                 municipality: str | None) -> tuple[str, str | None] | _Pending:
        """The shown name and role when they need no registry write; otherwise a
        `_Pending` registration, checked as far as it can be without registering."""
        formatter = self.policy.formatter_for(organisation, municipality)
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
        if not isinstance(formatter, AlternativeId | Initials):
            return self._checked(formatter(employee, organisation), role)
        scope = self.scope(organisation)
        subject = self._subject(employee)
        code = self._cache.get((scope, subject))
        if code is None:
            # What registering needs and what the citizen would see, checked now: the
            # name behind the initials, and the shown form of the first candidate.
            code = (formatter.initials(employee) if isinstance(formatter, Initials)
                    else next(formatter.candidates(employee, organisation)))
            self._checked(self._show(formatter, code, organisation), role)
            return _Pending(formatter, employee, organisation, scope, subject, role)
        return self._checked(self._show(formatter, code, organisation), role)

    def _finish(self, prepared: tuple[str, str | None] | _Pending
                ) -> tuple[str | None, str | None]:
        if not isinstance(prepared, _Pending):
            return prepared
        p = prepared
        code = self._register(p.formatter, p.employee, p.organisation, p.scope, p.subject)
        return self._checked(self._show(p.formatter, code, p.organisation), p.role)

    @staticmethod
    def _show(formatter: _Registered, code: str, organisation: Organisation) -> str:
        return (formatter.show(code) if isinstance(formatter, AlternativeId)
                else formatter.show(code, organisation))

    @staticmethod
    def _checked(name: object, role: str | None) -> tuple[str, str | None]:
        if not isinstance(name, str) or not name.strip() or len(name) > LIMIT:
            raise ValidationError("user_person_name",
                                  f"the identity formatter must give 1-{LIMIT} characters")
        _model_name("user_person_name", name, LIMIT)
        return name, role

    def _register(self, formatter: _Registered, employee: Employee,
                  organisation: Organisation, scope: str, subject: bytes) -> str:
        """The code of ``subject`` in ``scope``: the one issued before, or a new one."""
        cached = self._cache.get((scope, subject))
        if cached is not None:
            return cached
        with self._lock:
            code = self.registry.alias_for(scope, subject)
            if code is None:
                kind: Kind = "initials" if isinstance(formatter, Initials) else "alternative-id"
                sealed = self._seal(pack(employee, kind), scope.encode())
                if isinstance(formatter, Initials):
                    code = self._number(formatter.initials(employee), scope, subject, sealed)
                else:
                    code = self._first_free(formatter.candidates(employee, organisation),
                                            scope, subject, sealed)
            self._cache[(scope, subject)] = code
            return code

    def _first_free(self, candidates: Iterator[str], scope: str, subject: bytes,
                    sealed: bytes) -> str:
        """The first of ``candidates`` the registry takes for ``subject`` (or the code
        another process registered for it meanwhile)."""
        for candidate in candidates:
            if self.registry.add_alias(scope, candidate, subject, sealed):
                return candidate
            code = self.registry.alias_for(scope, subject)  # another process won
            if code is not None:
                return code
        raise ValidationError("user_person_name", "no free code in this scope")

    def _number(self, stem: str, scope: str, subject: bytes, sealed: bytes) -> str:
        """``stem`` numbered after the highest number in use: ``"AJ"``, then ``"AJ2"``,
        ``"AJ3"``, ... One registry call per new employee (and one question for the highest
        number per stem and scope in this process), not one per number already taken: the
        next number is remembered, and asked for again only when another process took it."""
        highest = self._highest.get((scope, stem))
        if highest is None:
            highest = self.registry.highest_alias_number(scope, stem)
        for _ in range(_MAX_NUMBER_TRIES):
            number = highest + 1
            code = stem if number == 1 else f"{stem}{number}"
            if self.registry.add_alias(scope, code, subject, sealed):
                self._highest[(scope, stem)] = number
                return code
            found = self.registry.alias_for(scope, subject)  # another process won
            if found is not None:
                return found
            highest = max(number, self.registry.highest_alias_number(scope, stem))
        raise ValidationError("user_person_name", "no free code in this scope")

    def resolve(self, organisation: Organisation, code: str) -> str | None:
        """The employee id behind a code shown to a citizen, or None (see `lookup`)."""
        found = self.lookup(organisation, code).issued
        return None if found is None else found.employee_id

    def lookup(self, organisation: Organisation, text: str) -> CodeLookup:
        """What ``text`` is in ``organisation``'s registry. Accepts the shown text
        (``"Medarbejder K7Q4-9MX2"``, ``"AJ2, Hjemmeplejen Nord"``) or the bare code, in
        any case, with a hyphen, spaces or nothing between the groups, and Crockford's
        look-alikes (O for 0, I or L for 1). When no code is found, says whether the text
        was a mistyped `AlternativeId` code (its check symbol does not match) rather than
        a code no employee of this organisation has."""
        scope = self.scope(organisation)
        for candidate in readings(text):
            sealed = self.registry.resolve_alias(scope, candidate)
            if sealed is not None:
                return CodeLookup("found", self._open(scope, candidate, sealed))
        verdict = check_verdict(text)
        if verdict == "empty":
            return CodeLookup("empty")
        if verdict == "mistyped":
            return CodeLookup("mistyped")
        return CodeLookup("unknown", checked=verdict == "well-formed")

    def codes(self, organisation: Organisation) -> list[IssuedCode]:
        """Every code issued in ``organisation``, with its employee (an operator's listing:
        it holds employee ids), numbered initials in their numeric order."""
        scope = self.scope(organisation)
        issued = [self._open(scope, code, sealed)
                  for code, sealed in self.registry.list_aliases(scope)]
        return sorted(issued, key=lambda c: _natural(c.code))

    def _open(self, scope: str, code: str, sealed: bytes) -> IssuedCode:
        return unpack(code, self._unseal(sealed, scope.encode()))


def _natural(code: str) -> tuple[str, int, str]:
    """Sort key: ``"AJ"``, ``"AJ2"``, ..., ``"AJ10"`` (a number after the letters in
    numeric order)."""
    stem = code.rstrip("0123456789")
    digits = code[len(stem):]
    return stem, int(digits) if digits and len(digits) < 19 else 0, digits
