"""`Tenant`: one municipality (a care provider) of an installation, named by its CVR.

A tenant holds what is its own: its name (the ID card's ``CareProviderName``), how it
reaches MinLog2 (a `Transport`, or the system certificate to build one with the
installation's shared settings), its rate limit, its identity policy, and the
organisations that belong to it: units listed by ``(source, id)`` and a parent map (the
SOR hierarchy: unit -> parent unit) for units reached through a listed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import attrs

from minlog.core.model import Organisation
from minlog.core.rules import is_cvr
from minlog.delivery.policy import RateLimit
from minlog.errors import ConfigurationError
from minlog.events import redact
from minlog.identity.policy import MunicipalityPolicy
from minlog.minlog2.idcard import SystemCredentials
from minlog.minlog2.transport import Transport

__all__ = ["Tenant", "Unit", "UnitLike", "show_unit", "unit_key"]

#: A unit as the router keys it: ``(source, id)``.
Unit: TypeAlias = tuple[str, str]
#: A unit as it may be given: a SOR id, a ``(source, id)`` pair, or an `Organisation`.
UnitLike: TypeAlias = str | tuple[str, str] | Organisation


def unit_key(unit: UnitLike) -> Unit:
    """``(source, id)`` of a unit given as a SOR id, a pair or an `Organisation`."""
    if isinstance(unit, Organisation):
        return unit.source, unit.id
    if isinstance(unit, str) and unit:
        return "SOR", unit
    if (isinstance(unit, tuple) and len(unit) == 2
            and all(isinstance(p, str) and p for p in unit)):
        return unit[0], unit[1]
    raise ConfigurationError(
        "tenant units: a unit is a SOR id, a (source, id) pair of strings or an Organisation")


def show_unit(unit: Unit) -> str:
    """A unit for a message (anything shaped like a CPR number masked)."""
    return redact(f"{unit[0]} {unit[1]}")


def _units(values: Iterable[UnitLike]) -> frozenset[Unit]:
    if isinstance(values, str | Organisation):
        values = [values]
    return frozenset(unit_key(v) for v in values)


def _parents(values: Mapping[Any, Any]) -> dict[Unit, Unit]:
    """Each key and value a `UnitLike` (checked)."""
    if not isinstance(values, Mapping):
        raise ConfigurationError("tenant parents: a mapping of unit -> parent unit")
    return {unit_key(k): unit_key(v) for k, v in values.items()}


@attrs.frozen
class Tenant:
    """One municipality of an installation.

    ``cvr``: its CVR number (8 digits); the ID card's ``CareProviderID`` and the key of
    everything that is per tenant. ``name``: the ID card's ``CareProviderName``.

    ``transport`` (a `Transport`) or ``credentials`` (its `SystemCredentials`, from which
    `minlog.tenants.Installation` builds a `Minlog2Transport` with the installation's
    shared settings), not both.

    ``rate_limit``: its requests per window (default `RateLimit.guidance()`, 20 an hour;
    None: explicitly unlimited). ``identity``: its `MunicipalityPolicy` (None: the full
    name, as the contract says for a municipality that chose nothing).

    ``units``: its organisations, each a SOR id, a ``(source, id)`` pair or an
    `Organisation`. ``parents``: unit -> parent unit (the SOR hierarchy); a unit not
    listed belongs to the tenant of the first listed unit found walking up, and takes
    that unit's identity override. The organisation ``(CVR, cvr)`` always belongs to the
    tenant, and the units its identity policy lists do too.
    """

    cvr: str
    name: str
    transport: Transport | None = attrs.field(default=None, kw_only=True, eq=False,
                                              repr=False)
    credentials: SystemCredentials | None = attrs.field(default=None, kw_only=True, eq=False,
                                                        repr=False)
    rate_limit: RateLimit | None = attrs.field(factory=RateLimit.guidance, kw_only=True)
    identity: MunicipalityPolicy | None = attrs.field(default=None, kw_only=True)
    units: frozenset[Unit] = attrs.field(factory=frozenset, converter=_units, kw_only=True)
    parents: Mapping[Unit, Unit] = attrs.field(factory=dict, converter=_parents, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("tenant: name is required (the municipality's name, "
                                     "shown as CareProviderName)")
        if not is_cvr(self.cvr):
            raise ConfigurationError(
                f"tenant {self.name!r}: cvr must be the municipality's CVR number (8 digits, "
                "as a string)")
        if self.transport is not None and self.credentials is not None:
            raise ConfigurationError(
                f"tenant {self.label}: a transport or credentials, not both")
        if self.credentials is not None and not isinstance(self.credentials,
                                                           SystemCredentials):
            raise ConfigurationError(
                f"tenant {self.label}: credentials must be SystemCredentials (load_pkcs12)")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigurationError(
                f"tenant {self.label}: rate_limit must be a RateLimit or None (unlimited)")
        if self.identity is not None and not isinstance(self.identity, MunicipalityPolicy):
            raise ConfigurationError(
                f"tenant {self.label}: identity must be a MunicipalityPolicy")

    @property
    def label(self) -> str:
        """``cvr (name)``, for messages."""
        return f"{self.cvr} ({self.name})"

    def listed(self) -> frozenset[Unit]:
        """The units this tenant names itself: ``units``, the units its identity policy
        lists, and ``(CVR, cvr)``."""
        own = {("CVR", self.cvr)}
        if self.identity is not None:
            own |= set(self.identity.units)
        return self.units | own
