"""Which formatter each organisation uses: the `IdentityPolicy`, in code or from TOML.

MinLog2 shows ``UserPersonName`` (at most 50 characters). By default that is the full
name; a municipality may instead show another *unique* identification of its staff that
it can *resolve* back to the employee. The choice is made per organisation by an
`IdentityPolicy`; `IdentityPolicy.bind` joins it to the store's alias registry
(`minlog.identity.binding`). The formatters live in `minlog.identity.formatters`; their
names are re-exported here, where they have always been imported from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from minlog.core.model import Employee, Organisation
from minlog.errors import ConfigurationError, ValidationError
from minlog.identity.binding import AliasRegistry, BoundIdentity
from minlog.identity.formatters import (
    ALPHABET,
    LIMIT,
    AlternativeId,
    FullName,
    IdentityFormatter,
    Initials,
    check_character,
    shorten_name,
)

__all__ = [
    "ALPHABET",
    "LIMIT",
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
