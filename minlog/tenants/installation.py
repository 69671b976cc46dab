"""`Installation`: one store serving one or more municipalities, from ``minlog.toml`` or code.

::

    installation = Installation.from_toml("/etc/eoj/minlog.toml")
    with installation.open() as log:       # a MinLog routing each access to its tenant
        log.record(access)

`Installation.open` checks every tenant before anything is opened: its system certificate
is valid now (by the installation's clock; the STS is not contacted), its transport names
its CVR, the shared transport settings are there for the tenants that need them. Each
mistake is a `ConfigurationError` naming the tenant. Then it builds each tenant's
`Minlog2Transport` (its own ID card: ``CareProviderID`` its CVR, ``CareProviderName`` its
name) and opens the store with the tenants (`MinLog.open(..., tenants=...)`).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Unpack

import attrs

from minlog.config import TransportSettings
from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.delivery.policy import RateLimit
from minlog.errors import ConfigurationError
from minlog.minlog2.idcard import SystemCredentials
from minlog.minlog2.transport import Transport
from minlog.store.base import Durability, Store
from minlog.tenants.router import TenantRouter
from minlog.tenants.tenant import Tenant

if TYPE_CHECKING:
    from minlog.client.facade import MinLog
    from minlog.client.options import Options

__all__ = ["Installation", "check_certificate"]


def check_certificate(credentials: SystemCredentials, now: _dt.datetime, where: str) -> None:
    """Refuse a system certificate that is not valid at ``now`` (a `ConfigurationError`
    naming ``where`` and the dates): the STS would refuse every card it signs."""
    certificate = credentials.certificate
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        raise ConfigurationError(
            f"{where}: the system certificate is not valid before {start:%Y-%m-%d %H:%M} UTC")
    if now >= end:
        raise ConfigurationError(
            f"{where}: the system certificate expired on {end:%Y-%m-%d %H:%M} UTC")


def _tenants(values: Iterable[Tenant]) -> tuple[Tenant, ...]:
    return tuple(values)


@attrs.frozen
class Installation:
    """One store and the municipalities (`Tenant`\\ s) it serves.

    ``store``: a SQLite file path, a ``postgresql://`` URL or a `Store`. ``tenants``: the
    municipalities; ``default_tenant``: the CVR of the tenant that takes organisations no
    tenant lists (None: they are refused). ``minlog2``: the `TransportSettings` the
    tenants share (needed by every tenant given ``credentials``). ``system_name``:
    MinLog2's ``SystemName`` (default: ``minlog2.system_name``). ``key``, ``durability``,
    ``store_options``: as `MinLog.open` takes them. ``options``: `MinLog`'s keyword
    options (`minlog.client.options.Options`).

    Made, it has checked the tenants against each other (`TenantRouter`); `open` checks
    each tenant's credentials and opens the store.
    """

    store: str | os.PathLike[str] | Store
    tenants: tuple[Tenant, ...] = attrs.field(converter=_tenants)
    default_tenant: str | None = attrs.field(default=None, kw_only=True)
    minlog2: TransportSettings | None = attrs.field(default=None, kw_only=True)
    system_name: str | None = attrs.field(default=None, kw_only=True)
    key: bytes | str | os.PathLike[str] | None = attrs.field(default=None, kw_only=True,
                                                             repr=False)
    durability: Durability | None = attrs.field(default=None, kw_only=True)
    store_options: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True)
    options: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True)
    router: TenantRouter = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        from minlog.client.options import check_options

        object.__setattr__(self, "router",
                           TenantRouter(self.tenants, default=self.default_tenant))
        check_options(self.options)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str], *, text: bool = False) -> Installation:
        """An installation from ``minlog.toml`` (or TOML text with ``text=True``; relative
        paths are then relative to the working folder). See docs/tenants.md."""
        from minlog.tenants.toml import installation_from_toml

        return installation_from_toml(source, text=text)

    def rate_limits(self) -> dict[str, RateLimit | None]:
        """CVR -> the tenant's rate limit (None: unlimited)."""
        return self.router.rate_limits()

    def open(self, *, create: bool = True, **overrides: Unpack[Options]) -> MinLog:
        """Check every tenant's credentials, build its transport, open the store and start
        delivering: a `MinLog` that routes each access to its tenant. ``overrides``
        replace `options` (``clock=``, ``start_worker=``, ...); ``create=False`` makes
        neither a store nor a key file."""
        from minlog.client.facade import MinLog
        from minlog.client.options import check_options

        options: dict[str, Any] = {**self.options, **overrides}
        check_options(options)
        clock: Clock = options.get("clock", SYSTEM_CLOCK)
        system_name = self.system_name or (self.minlog2.system_name if self.minlog2 else None)
        if not system_name:
            raise ConfigurationError(
                "system_name: required (or the shared transport settings' system_name)")
        built: dict[str, Transport] = {}
        try:
            for i, tenant in enumerate(self.router):
                transport = self._transport(i, tenant, clock)
                if transport is not None:
                    built[tenant.cvr] = transport
            return MinLog.open(
                self.store, tenants=self.router.with_transports(built),
                system_name=system_name, key=self.key, store_options=dict(self.store_options),
                create=create, durability=self.durability, **options)
        except BaseException:
            for transport in built.values():
                transport.close()
            raise

    def _transport(self, i: int, tenant: Tenant, clock: Clock) -> Transport | None:
        """The transport built for ``tenant`` from its credentials (None: it brought
        its own), each being checked first."""
        where = f"tenant[{i}] {tenant.label}"
        now = utc_now(clock)
        if tenant.transport is not None:  # `MinLog` checks that it names the tenant's CVR
            credentials = getattr(tenant.transport, "credentials", None)
            if isinstance(credentials, SystemCredentials):
                check_certificate(credentials, now, where)
            return None
        if tenant.credentials is None:
            raise ConfigurationError(
                f"{where}: credentials are required (pkcs12, or pem_key + pem_chain), or "
                "a transport")
        check_certificate(tenant.credentials, now, where)
        if self.minlog2 is None:
            raise ConfigurationError(
                f"{where}: its credentials need the shared transport settings ([minlog2]: "
                "service_url, sts_url, system_name)")
        try:
            return self.minlog2.transport(credentials=tenant.credentials, cvr=tenant.cvr,
                                          care_provider_name=tenant.name, clock=clock)
        except ConfigurationError as e:
            raise ConfigurationError(f"{where}: {e}") from e

