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
from minlog.core.rules import is_cvr
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
    "MunicipalityPolicy",
    "check_character",
    "shorten_name",
]


def _org_key(organisation: Organisation) -> tuple[str, str]:
    return organisation.source, organisation.id


@attrs.frozen
class MunicipalityPolicy:
    """One municipality's choice of how its staff are shown: ``default`` for every unit of
    the municipality, ``units`` (``(source, id)`` of a unit -> formatter) overriding it for
    the units listed. A unit not listed takes ``default``, so a unit opened tomorrow shows
    what the municipality chose, never more. ``default`` has no default value: a
    municipality states it."""

    default: IdentityFormatter
    units: Mapping[tuple[str, str], IdentityFormatter] = attrs.field(factory=dict)

    def formatter_for(self, organisation: Organisation) -> IdentityFormatter:
        """The formatter for a unit of this municipality."""
        return self.units.get(_org_key(organisation), self.default)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "identity",
                   base: str | os.PathLike[str] = ".") -> MunicipalityPolicy:
        """From a parsed TOML table (a tenant's ``identity`` table, say)::

            [default]                   # required: the form of every unit not listed
            formatter = "alternative-id"
            secret_file = "aarhus.secret"
            [[unit]]                    # or [[organisation]], the older name
            source = "SOR"              # default SOR
            id = "380000000000001"
            formatter = "full-name"

        ``where`` names the table in errors; relative ``secret_file`` paths are relative to
        ``base`` (the TOML file's folder).
        """
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"identity policy: {where} must be a table")
        unknown = set(table) - {"default", "unit", "organisation"}
        if unknown:
            raise ConfigurationError(f"identity policy: {where}: unknown keys {sorted(unknown)}")
        units = _units_from(table, where, Path(base))
        if "default" not in table:
            raise ConfigurationError(
                f"identity policy: {where}.default: required: the form every unit of the "
                "municipality not listed shows (formatter = \"full-name\" to show names)")
        default = _formatter_from(table["default"], _join(where, "default"), Path(base))
        return cls(default=default, units=units)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str], *, text: bool = False
                  ) -> MunicipalityPolicy:
        """From a TOML file holding one municipality's table (see `from_table`), or TOML
        text with ``text=True``."""
        data, base = _read_toml(source, text)
        return cls.from_table(data, where="", base=base)


@attrs.frozen
class IdentityPolicy:
    """Which formatter each organisation uses.

    For one municipality (the usual installation): ``default`` is the municipality's form
    and ``organisations`` its per-unit overrides (``(source, id)`` -> formatter).

    For several municipalities in one installation: ``municipalities`` maps each
    municipality's CVR number to its `MunicipalityPolicy`; a unit takes its
    municipality's override or default, never anything else. The municipality of an
    access is the one given to `formatter_for` (by the installation's tenant routing),
    else the one that lists the unit, else the one whose CVR is the organisation's id
    (source ``CVR``); when none says, the access is refused (failing closed: a unit of a
    municipality that hides names must not show them because it was not listed).
    ``default`` then serves only municipalities the policy does not name, and
    ``organisations`` must be empty (list units under their municipality).

    ``strict``: an organisation (or a municipality) that the policy does not name is a
    `ValidationError` instead of getting ``default``.
    """

    default: IdentityFormatter = attrs.field(factory=FullName)
    organisations: Mapping[tuple[str, str], IdentityFormatter] = attrs.field(factory=dict)
    strict: bool = False
    municipalities: Mapping[str, MunicipalityPolicy] = attrs.field(factory=dict, kw_only=True)
    #: unit ``(source, id)`` -> the CVR of the municipality that lists it
    _owners: dict[tuple[str, str], str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        owners: dict[tuple[str, str], str] = {}
        for cvr, m in self.municipalities.items():
            if not is_cvr(cvr):
                raise ConfigurationError(
                    "identity policy: municipalities are keyed by CVR number (8 digits)")
            if not isinstance(m, MunicipalityPolicy):
                raise ConfigurationError(
                    f"identity policy: municipality {cvr} must be a MunicipalityPolicy")
            for unit in m.units:
                if unit in owners:
                    raise ConfigurationError(
                        f"identity policy: unit {unit[0]} {unit[1]} is listed under "
                        f"municipalities {owners[unit]} and {cvr}")
                owners[unit] = cvr
        if self.municipalities and self.organisations:
            raise ConfigurationError(
                "identity policy: with municipalities, list each unit under its "
                "municipality (organisations must be empty)")
        object.__setattr__(self, "_owners", owners)

    def municipality_of(self, organisation: Organisation) -> str | None:
        """The CVR of the named municipality that lists ``organisation`` (or is it), if any."""
        owner = self._owners.get(_org_key(organisation))
        if owner is None and organisation.source == "CVR" and (
                organisation.id in self.municipalities):
            owner = organisation.id
        return owner

    def formatter_for(self, organisation: Organisation, municipality: str | None = None
                      ) -> IdentityFormatter:
        """The formatter for ``organisation``, a unit of ``municipality`` (its CVR) when
        the caller knows it (see the class docstring for the rules)."""
        if self.municipalities:
            owner = self.municipality_of(organisation)
            if municipality is None:
                municipality = owner
                if municipality is None:
                    raise ValidationError(
                        "access.organisation",
                        "the identity policy cannot tell which municipality this unit "
                        "belongs to: list the unit under its municipality (or route the "
                        "access to its municipality)")
            elif owner is not None and owner != municipality:
                raise ValidationError(
                    "access.organisation",
                    "the identity policy lists this unit under another municipality")
            found = self.municipalities.get(municipality)
            if found is not None:
                return found.formatter_for(organisation)
            if self.strict:
                raise ValidationError(
                    "access.organisation",
                    "the identity policy names no policy for this municipality (strict)")
            return self.default
        formatter = self.organisations.get(_org_key(organisation))
        if formatter is not None:
            return formatter
        if self.strict:
            raise ValidationError(
                "access.organisation", "no identity policy names this organisation (strict)"
            )
        return self.default

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str], *, text: bool = False) -> IdentityPolicy:
        """Load a policy from a TOML file (or TOML text with ``text=True``).

        One municipality::

            strict = false
            [default]                           # the municipality's form
            formatter = "full-name"             # full-name | alternative-id | initials

            [[unit]]                            # or [[organisation]], the older name
            source = "SOR"
            id = "380000000000001"
            formatter = "alternative-id"
            prefix = "Medarbejder"
            secret_file = "/etc/minlog/secret"  # or secret_env = "MINLOG_ALT_SECRET"

        ``[default]`` may be left out only when no unit shows another form than the full
        name (a unit not listed would otherwise show names the municipality hides).

        Several municipalities, each with its own required ``[municipality.default]``::

            [[municipality]]
            cvr = "55133018"
            name = "Aarhus Kommune"             # for the reader
              [municipality.default]
              formatter = "alternative-id"
              secret_file = "aarhus.secret"
              [[municipality.unit]]
              id = "380000000000001"
              formatter = "full-name"

        A top-level ``[default]`` then serves municipalities not named (full name when
        left out). Secrets never live in the TOML itself. Relative ``secret_file`` paths
        are relative to the TOML file.
        """
        data, base = _read_toml(source, text)
        unknown = set(data) - {"strict", "default", "organisation", "unit", "municipality"}
        if unknown:
            raise ConfigurationError(f"identity policy: unknown keys {sorted(unknown)}")
        strict = data.get("strict", False)
        if not isinstance(strict, bool):
            raise ConfigurationError("identity policy: strict must be true or false")
        units = _units_from(data, "", base)
        municipalities = _municipalities_from(data.get("municipality", []), base)
        if municipalities and units:
            raise ConfigurationError(
                "identity policy: with [[municipality]] tables, list units under their "
                "municipality ([[municipality.unit]])")
        if "default" not in data and not municipalities and any(
                type(f) is not FullName for f in units.values()):
            raise ConfigurationError(
                "identity policy: default: required when a unit shows another form than "
                "the full name (a unit not listed would show names): add [default] with "
                "the municipality's form (formatter = \"full-name\" to keep names)")
        default = _formatter_from(data.get("default", {"formatter": "full-name"}), "default", base)
        return cls(default=default, organisations=units, strict=strict,
                   municipalities=municipalities)

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


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _read_toml(source: str | os.PathLike[str], text: bool) -> tuple[dict[str, Any], Path]:
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
    return data, base


def _units_from(table: Mapping[str, Any], where: str, base: Path
                ) -> dict[tuple[str, str], IdentityFormatter]:
    """The per-unit overrides of ``table``: its ``unit`` and ``organisation`` arrays."""
    units: dict[tuple[str, str], IdentityFormatter] = {}
    for name in ("organisation", "unit"):
        entries = table.get(name, [])
        if not isinstance(entries, list):
            raise ConfigurationError(
                f"identity policy: {_join(where, name)} must be an array of tables")
        for i, entry in enumerate(entries):
            at = f"{_join(where, name)}[{i}]"
            if not isinstance(entry, dict):
                raise ConfigurationError(f"identity policy: {at} must be a table")
            src, oid = entry.get("source", "SOR"), entry.get("id")
            if not isinstance(oid, str) or not oid or not isinstance(src, str):
                raise ConfigurationError(f"identity policy: {at}.id must be a string")
            rest = {k: v for k, v in entry.items() if k not in ("source", "id")}
            if (src, oid) in units:
                raise ConfigurationError(f"identity policy: {at} names {src} {oid} twice")
            units[(src, oid)] = _formatter_from(rest, at, base)
    return units


def _municipalities_from(entries: Any, base: Path) -> dict[str, MunicipalityPolicy]:
    if not isinstance(entries, list):
        raise ConfigurationError("identity policy: municipality must be an array of tables")
    found: dict[str, MunicipalityPolicy] = {}
    for i, entry in enumerate(entries):
        where = f"municipality[{i}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"identity policy: {where} must be a table")
        unknown = set(entry) - {"cvr", "name", "default", "unit", "organisation"}
        if unknown:
            raise ConfigurationError(f"identity policy: {where}: unknown keys {sorted(unknown)}")
        cvr = entry.get("cvr")
        if not is_cvr(cvr):
            raise ConfigurationError(
                f"identity policy: {where}.cvr must be the municipality's CVR number "
                "(8 digits, as a string)")
        assert isinstance(cvr, str)
        if cvr in found:
            raise ConfigurationError(f"identity policy: {where} names CVR {cvr} twice")
        if "name" in entry and not isinstance(entry["name"], str):
            raise ConfigurationError(f"identity policy: {where}.name must be a string")
        found[cvr] = MunicipalityPolicy.from_table(
            {k: v for k, v in entry.items() if k not in ("cvr", "name")}, where=where,
            base=base)
    return found  # a unit listed under two of them is refused by IdentityPolicy


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
