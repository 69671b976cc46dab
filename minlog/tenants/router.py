"""`TenantRouter`: which tenant each access belongs to, by its organisation.

The rules, in order:

1. a unit a tenant lists (its ``units``, the units its identity policy lists, and the
   organisation ``(CVR, <its cvr>)``) belongs to that tenant;
2. a unit in a tenant's ``parents`` belongs to the tenant of the first listed unit found
   walking up the parent map (the SOR hierarchy), which must be that tenant;
3. anything else belongs to the ``default`` tenant when one is named (the catch-all),
   and is otherwise refused: a `ValidationError` on ``access.organisation``.

Every rule is resolved once, when the router is made, into one table (unit -> tenant):
routing an access is one dictionary lookup. Contradictions are `ConfigurationError`\\ s
naming the tenant and the key, before anything is recorded: two tenants with one CVR, a
unit of two tenants, a parent cycle, a parent chain that ends at no unit of its tenant,
a default that is no tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import attrs

from minlog.core.model import Organisation
from minlog.delivery.policy import RateLimit
from minlog.errors import ConfigurationError, ValidationError
from minlog.identity.policy import IdentityFormatter, IdentityPolicy, MunicipalityPolicy
from minlog.minlog2.transport import Transport
from minlog.tenants.tenant import Tenant, Unit, show_unit

__all__ = ["TenantRouter"]


class TenantRouter:
    """The tenants of an installation and the table that routes an organisation to one
    of them (see the module docstring). Immutable once made; thread-safe."""

    def __init__(self, tenants: Iterable[Tenant], *, default: str | None = None) -> None:
        self.tenants: tuple[Tenant, ...] = tuple(tenants)
        if not self.tenants:
            raise ConfigurationError("tenants: at least one tenant is required")
        self._by_cvr: dict[str, Tenant] = {}
        for i, t in enumerate(self.tenants):
            if not isinstance(t, Tenant):
                raise ConfigurationError(f"tenant[{i}]: must be a minlog.tenants.Tenant")
            other = self._by_cvr.get(t.cvr)
            if other is not None:
                raise ConfigurationError(
                    f"tenant[{i}] {t.label}: cvr: {t.cvr} is also the CVR of tenant "
                    f"{other.label}: one tenant per CVR")
            self._by_cvr[t.cvr] = t
        if default is not None and default not in self._by_cvr:
            raise ConfigurationError(
                "default_tenant: must be the CVR of one of the tenants")
        #: The catch-all: the tenant of organisations no tenant claims (None: refused).
        self.default: Tenant | None = None if default is None else self._by_cvr[default]
        self._owners = self._listed()
        self._inherit: dict[Unit, Unit] = {}  # unit reached by parents -> its listed unit
        self._walk_parents()

    # ------------------------------------------------------------------ building

    def _listed(self) -> dict[Unit, Tenant]:
        owners: dict[Unit, Tenant] = {}
        for i, t in enumerate(self.tenants):
            for unit in sorted(t.listed()):
                other = owners.get(unit)
                if other is not None and other is not t:
                    raise ConfigurationError(
                        f"tenant[{i}] {t.label}: units: {show_unit(unit)} is also a unit of "
                        f"tenant {other.label}: a unit belongs to one tenant")
                owners[unit] = t
        return owners

    def _walk_parents(self) -> None:
        declared: dict[Unit, tuple[int, Tenant]] = {}
        parents: dict[Unit, Unit] = {}
        for i, t in enumerate(self.tenants):
            for child, parent in t.parents.items():
                if child in declared and declared[child][1] is not t:
                    raise ConfigurationError(
                        f"tenant[{i}] {t.label}: parents: {show_unit(child)} is also in the "
                        f"parents of tenant {declared[child][1].label}")
                declared[child] = (i, t)
                parents[child] = parent
        for child, (i, t) in declared.items():
            if child in self._owners:
                if self._owners[child] is not t:
                    raise ConfigurationError(
                        f"tenant[{i}] {t.label}: parents: {show_unit(child)} is a unit of "
                        f"tenant {self._owners[child].label}")
                continue
            path = [child]
            unit = parents[child]
            while unit not in self._owners:
                if unit in path:
                    cycle = " -> ".join(show_unit(u) for u in [*path[path.index(unit):], unit])
                    raise ConfigurationError(
                        f"tenant[{i}] {t.label}: parents: a cycle: {cycle}")
                path.append(unit)
                if unit not in parents:
                    raise ConfigurationError(
                        f"tenant[{i}] {t.label}: parents: {show_unit(child)} leads up to "
                        f"{show_unit(unit)}, which is no unit of any tenant (list it under "
                        "units)")
                unit = parents[unit]
            owner = self._owners[unit]
            if owner is not t:
                raise ConfigurationError(
                    f"tenant[{i}] {t.label}: parents: {show_unit(child)} leads up to "
                    f"{show_unit(unit)}, a unit of tenant {owner.label}")
            self._inherit[child] = unit
        for child in self._inherit:
            self._owners[child] = declared[child][1]

    # ------------------------------------------------------------------ routing

    def route(self, organisation: Organisation) -> Tenant:
        """The tenant ``organisation`` belongs to. An organisation of no tenant, with no
        default tenant, is a `ValidationError` on ``access.organisation``."""
        found = self._owners.get((organisation.source, organisation.id), self.default)
        if found is None:
            raise ValidationError(
                "access.organisation",
                "belongs to no tenant of this installation: list the unit under its "
                "tenant's units (or parents), or name a default_tenant")
        return found

    def tenant(self, cvr: str) -> Tenant:
        """The tenant with this CVR (`ConfigurationError` when there is none)."""
        found = self._by_cvr.get(cvr)
        if found is None:
            raise ConfigurationError("tenant: no tenant of this installation has this CVR")
        return found

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)

    def __contains__(self, cvr: object) -> bool:
        return cvr in self._by_cvr

    def __repr__(self) -> str:
        return f"<minlog.tenants.TenantRouter {', '.join(t.label for t in self.tenants)}>"

    # ------------------------------------------------------------------ what follows

    def identity_policy(self) -> IdentityPolicy:
        """The installation's `IdentityPolicy`: each tenant's `MunicipalityPolicy` by its
        CVR, a unit reached through ``parents`` taking the override of the listed unit it
        leads up to. A tenant with no identity policy shows full names."""
        municipalities: dict[str, MunicipalityPolicy] = {}
        for t in self.tenants:
            if t.identity is None:
                continue
            units: dict[Unit, IdentityFormatter] = dict(t.identity.units)
            for child, listed in self._inherit.items():
                if self._owners[child] is t and listed in t.identity.units:
                    units.setdefault(child, t.identity.units[listed])
            municipalities[t.cvr] = MunicipalityPolicy(default=t.identity.default,
                                                       units=units)
        return IdentityPolicy(municipalities=municipalities)

    def rate_limits(self) -> dict[str, RateLimit | None]:
        """CVR -> the tenant's rate limit (None: unlimited)."""
        return {t.cvr: t.rate_limit for t in self.tenants}

    def with_transports(self, transports: Mapping[str, Transport]) -> TenantRouter:
        """The same router, each tenant named in ``transports`` (by CVR) holding that
        transport in place of its credentials."""
        tenants = [attrs.evolve(t, transport=transports[t.cvr], credentials=None)
                   if t.cvr in transports else t for t in self.tenants]
        return TenantRouter(tenants, default=None if self.default is None
                            else self.default.cvr)
