"""A single municipality or tenants: what each has, and which transport sends its entries.

A `MinLog` serves one municipality (one ``transport``, one identity policy, the rate
limits given) or several tenants (`minlog.tenants`: each its own transport, identity
policy and rate limit, an access routed to its tenant by its organisation). The outbox
entries carry their tenant's CVR (``""`` for a single municipality), and delivery asks
`transport_for` which transport sends them. Every tenant's transport speaks the same
schema version (`schema_version`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from minlog.delivery.policy import RateLimit
from minlog.errors import ConfigurationError, TransientDeliveryError
from minlog.identity.policy import IdentityFormatter, IdentityPolicy
from minlog.minlog2.registration import SCHEMA_VERSIONS
from minlog.minlog2.transport import Transport
from minlog.tenants.router import TenantRouter
from minlog.tenants.tenant import Tenant

__all__ = ["as_router", "distinct", "identity_policy", "rate_limits", "schema_version",
           "tenant_transports", "transport_for"]


def as_router(tenants: TenantRouter | Iterable[Tenant] | None) -> TenantRouter | None:
    """``tenants`` as a `TenantRouter` (None for a single municipality)."""
    return (tenants if tenants is None or isinstance(tenants, TenantRouter)
            else TenantRouter(tenants))


def rate_limits(tenants: TenantRouter | None,
                given: Mapping[str, RateLimit | None] | None
                ) -> Mapping[str, RateLimit | None] | None:
    """The per-tenant rate limits: with tenants, each tenant's own unless ``given``
    names it; otherwise ``given``."""
    if tenants is None:
        return given
    return {**tenants.rate_limits(), **(given or {})}


def tenant_transports(transport: Transport | None, tenants: TenantRouter | None
                      ) -> dict[str, Transport]:
    """The transports by tenant: ``""`` for a single municipality (its own CVR too, when
    the transport names one), each tenant's CVR with tenants."""
    if tenants is None:
        if transport is None:
            raise ConfigurationError("transport: required (or tenants, each with its own)")
        own = getattr(transport, "cvr", None)
        return {"": transport, **({own: transport} if isinstance(own, str) and own else {})}
    if transport is not None:
        raise ConfigurationError(
            "transport: with tenants, each tenant has its own (Tenant(transport=...), or "
            "credentials with Installation.open)")
    found: dict[str, Transport] = {}
    for t in tenants:
        if t.transport is None:
            raise ConfigurationError(
                f"tenant {t.label}: has no transport (give it one, or open the "
                "installation with Installation.open, which builds it from its credentials)")
        own = getattr(t.transport, "cvr", None)
        if isinstance(own, str) and own != t.cvr:
            raise ConfigurationError(
                f"tenant {t.label}: its transport's cvr is another CVR: the ID card would "
                "name another care provider")
        found[t.cvr] = t.transport
    return found


def schema_version(transports: Mapping[str, Transport], requested: str | None) -> str:
    """The schema version to hold accesses to: ``requested``, else the transports'
    ``version``, else the newest. The transports must agree, and agree with it."""
    versions = {v for t in transports.values()
                if isinstance(v := getattr(t, "version", None), str)}
    if len(versions) > 1:
        raise ConfigurationError(
            f"the tenants' transports have different versions ({', '.join(sorted(versions))})"
            ": give them all the same")
    transport_version = versions.pop() if versions else None
    if requested is None:
        requested = transport_version or SCHEMA_VERSIONS[0]
    if requested not in SCHEMA_VERSIONS:
        raise ConfigurationError(f"schema_version must be one of {', '.join(SCHEMA_VERSIONS)}")
    if transport_version is not None and transport_version != requested:
        raise ConfigurationError(
            f"schema_version {requested} differs from the transport's version "
            f"{transport_version}: give both the same")
    return requested


def identity_policy(identity: IdentityPolicy | IdentityFormatter | None,
                    tenants: TenantRouter | None) -> IdentityPolicy:
    """The identity policy: with tenants, each tenant's own (none may be given here);
    otherwise ``identity`` (a formatter: the policy's default), full names by default."""
    if tenants is not None:
        if identity is not None:
            raise ConfigurationError(
                "identity: with tenants, each tenant holds its own identity policy "
                "(Tenant(identity=MunicipalityPolicy(...)))")
        return tenants.identity_policy()
    if identity is None:
        return IdentityPolicy()
    if not isinstance(identity, IdentityPolicy):
        return IdentityPolicy(default=identity)
    return identity


def transport_for(transports: Mapping[str, Transport], tenant: str) -> Transport:
    """The transport that sends ``tenant``'s entries (its own ID card)."""
    found = transports.get(tenant)
    if found is None:
        raise TransientDeliveryError(
            f"no transport for the outbox entries of tenant {tenant or '(none)'}: "
            "they wait until the store is opened with that tenant (entries recorded "
            "for a single municipality: drain them with its transport)",
            code="minlog:no-transport")
    return found


def distinct(transports: Iterable[Transport]) -> list[Transport]:
    """Each transport once (tenants may share one in tests)."""
    seen: dict[int, Transport] = {}
    for t in transports:
        seen.setdefault(id(t), t)
    return list(seen.values())
