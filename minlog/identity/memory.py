"""An alias registry in memory: the reference behaviour of the `AliasRegistry` protocol,
for tests and for trying policies out (the stores' registries pass the same tests)."""

from __future__ import annotations

__all__ = ["MemoryAliasRegistry"]


class MemoryAliasRegistry:
    """An `AliasRegistry` in two dicts. Not thread-safe; for one process's tests."""

    def __init__(self) -> None:
        #: ``(scope, code) -> (subject, sealed)``
        self.codes: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        #: ``(scope, subject) -> code``
        self.subjects: dict[tuple[str, bytes], str] = {}

    def alias_for(self, scope: str, subject: bytes) -> str | None:
        return self.subjects.get((scope, subject))

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool:
        if (scope, code) in self.codes or (scope, subject) in self.subjects:
            return False
        self.codes[(scope, code)] = (subject, sealed)
        self.subjects[(scope, subject)] = code
        return True

    def resolve_alias(self, scope: str, code: str) -> bytes | None:
        found = self.codes.get((scope, code))
        return None if found is None else found[1]

    def list_aliases(self, scope: str) -> list[tuple[str, bytes]]:
        return sorted((code, sealed) for (s, code), (_, sealed) in self.codes.items()
                      if s == scope)

    def highest_alias_number(self, scope: str, stem: str) -> int:
        highest = 0
        for (s, code) in self.codes:
            if s != scope or not code.startswith(stem):
                continue
            rest = code[len(stem):]
            if not rest:
                highest = max(highest, 1)
            elif rest.isascii() and rest.isdigit():
                highest = max(highest, int(rest))
        return highest
