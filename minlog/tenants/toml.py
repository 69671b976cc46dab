"""``minlog.toml``: one file configures an installation (docs/tenants.md is the reference).

::

    default_tenant = "55133018"              # optional: the tenant of unlisted units

    [store]
    path = "/var/lib/eoj/minlog.sqlite"      # or url = "postgresql://..."
    key_file = "/var/lib/eoj/minlog.sqlite.key"
    durability = "power"

    [minlog2]                                # shared by the tenants (`minlog.config`)
    service_url = "https://..."
    sts_url = "https://..."
    system_name = "Cura"

    [options]                                # MinLog's keyword options
    batch_size = 500

    [[tenant]]
    cvr = "55133018"
    name = "Aarhus Kommune"
    pkcs12 = "aarhus.p12"                    # or pem_key + pem_chain
    password_env = "AARHUS_P12_PASSWORD"     # or password_file
    rate_limit = { requests = 20, per = 3600 }   # or "none"; default: the guidance
    units = ["380000000000001", { source = "Kommunekode", id = "751" }]
    parents = { "380000000000011" = "380000000000001" }
      [tenant.identity]                      # `MunicipalityPolicy.from_table`
      default = { formatter = "full-name" }

Relative paths are relative to the file. Every mistake is a `ConfigurationError` naming
the key (and the tenant, by CVR and name, once its CVR is read).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from minlog.config import CREDENTIAL_KEYS, check_table, read_credentials, read_settings, read_toml
from minlog.core.rules import is_cvr
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.errors import ConfigurationError
from minlog.identity.policy import MunicipalityPolicy
from minlog.store import is_postgres_url
from minlog.store.base import durability
from minlog.tenants.installation import Installation
from minlog.tenants.tenant import Tenant, Unit

__all__ = ["installation_from_toml", "rate_limits_from_toml"]

_CONTEXT: Final = "installation config"
_TOP: Final = frozenset({"default_tenant", "store", "minlog2", "options", "tenant"})
#: The options TOML can give, with their types (`rate_limit`, `retry` and
#: `backlog_warning` are read apart; ``clock`` only in code).
_OPTION_TYPES: Final[Mapping[str, type]] = {
    "schema_version": str, "hot_days": int, "horizon_days": int, "late_days": int,
    "beyond_horizon": str, "max_future_skew": float, "batch_size": int,
    "lease_seconds": float, "retention_days": int, "poll": float, "delivery_threads": int,
    "exit_timeout": float, "start_worker": bool}
_TENANT_KEYS: Final = frozenset({"rate_limit", "units", "parents", "identity"}) | CREDENTIAL_KEYS


def installation_from_toml(source: str | os.PathLike[str], *, text: bool = False
                           ) -> Installation:
    """An `Installation` from ``minlog.toml`` (see the module docstring)."""
    if text:
        try:
            data = tomllib.loads(str(source))
        except tomllib.TOMLDecodeError as e:
            raise ConfigurationError(f"{_CONTEXT}: {e}") from e
        base = Path.cwd()
    else:
        data = read_toml(source, _CONTEXT)
        base = Path(source).parent
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigurationError(f"{_CONTEXT}: unknown keys {sorted(unknown)}")
    target, store = _store(data.get("store"), base)
    settings = None
    if "minlog2" in data:
        if not isinstance(data["minlog2"], dict):
            raise ConfigurationError(f"{_CONTEXT}: minlog2 must be a table")
        settings = read_settings(data["minlog2"], base, context=_CONTEXT)
    entries = data.get("tenant")
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(
            f"{_CONTEXT}: tenant: at least one [[tenant]] table is required")
    tenants = [_tenant(i, entry, base) for i, entry in enumerate(entries)]
    default = data.get("default_tenant")
    if default is not None and not is_cvr(default):
        raise ConfigurationError(
            f"{_CONTEXT}: default_tenant must be a tenant's CVR number (8 digits, a string)")
    options = _options(data.get("options", {}))
    return Installation(target, tenants, default_tenant=default, minlog2=settings,
                        options=options, **store)


def _store(table: Any, base: Path) -> tuple[str | Path, dict[str, Any]]:
    """The store's target and the `Installation` fields of ``[store]``."""
    if not isinstance(table, dict):
        raise ConfigurationError(f"{_CONTEXT}: a [store] table is required (path or url)")
    check_table(table, context=_CONTEXT, where="store",
                optional={"path": str, "url": str, "key_file": str, "durability": str,
                          "schema": str})
    if ("path" in table) == ("url" in table):
        raise ConfigurationError(
            f"{_CONTEXT}: store.path (a SQLite file) or store.url (postgresql://...): "
            "one of them")
    fields: dict[str, Any] = {}
    target: str | Path
    if "url" in table:
        if not is_postgres_url(table["url"]):
            raise ConfigurationError(f"{_CONTEXT}: store.url must be a postgresql:// URL")
        target = table["url"]
    else:
        target = base / table["path"]
        if "schema" in table:
            raise ConfigurationError(
                f"{_CONTEXT}: store.schema is for a PostgreSQL store (store.url)")
    if "schema" in table:
        fields["store_options"] = {"schema": table["schema"]}
    if "key_file" in table:
        fields["key"] = base / table["key_file"]
    if "durability" in table:
        try:
            fields["durability"] = durability(table["durability"])
        except ConfigurationError as e:
            raise ConfigurationError(f"{_CONTEXT}: store.{e}") from e
    return target, fields


def rate_limit(value: object, *, context: str, where: str) -> RateLimit | None:
    """``{ requests = n, per = seconds }``, or ``"none"`` (unlimited)."""
    if value == "none":
        return None
    if isinstance(value, dict):
        check_table(value, context=context, where=where,
                    optional={"requests": int, "per": float})
        if set(value) == {"requests", "per"}:
            try:
                return RateLimit(value["requests"], float(value["per"]))
            except ValueError as e:
                raise ConfigurationError(f"{context}: {where}: {e}") from e
    raise ConfigurationError(
        f"{context}: {where} must be {{ requests = <n>, per = <seconds> }} or \"none\" "
        "(unlimited)")


def _tenant(i: int, table: Any, base: Path) -> Tenant:
    where = f"tenant[{i}]"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{_CONTEXT}: {where} must be a table")
    check_table(table, context=_CONTEXT, where=where, required=("cvr", "name"),
                allowed=_TENANT_KEYS)
    cvr, name = table["cvr"], table["name"]
    if not is_cvr(cvr):
        raise ConfigurationError(
            f"{_CONTEXT}: {where}.cvr must be the municipality's CVR number (8 digits, as "
            "a string)")
    context = f"{_CONTEXT}, tenant {cvr} ({name})"
    credentials = read_credentials(table, base, context=context, where=where)
    limit = _tenant_limit(table, context, where)
    identity = None
    if "identity" in table:
        try:
            identity = MunicipalityPolicy.from_table(table["identity"],
                                                     where=f"{where}.identity", base=base)
        except ConfigurationError as e:
            raise ConfigurationError(f"{context}: {e}") from e
    return Tenant(cvr, name, credentials=credentials, rate_limit=limit, identity=identity,
                  units=_units(table.get("units", []), context, f"{where}.units"),
                  parents=_parents(table.get("parents", {}), context, f"{where}.parents"))


def _tenant_limit(table: Mapping[str, Any], context: str, where: str) -> RateLimit | None:
    """A tenant table's ``rate_limit``; the public guidance when it gives none."""
    if "rate_limit" not in table:
        return RateLimit.guidance()
    return rate_limit(table["rate_limit"], context=context, where=f"{where}.rate_limit")


def rate_limits_from_toml(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The rate limits of an installation's ``minlog.toml`` as `MinLog` options
    (``tenant_limits`` by CVR, and ``rate_limit`` when ``[options]`` gives one), read
    without its credentials: for tools that only inspect (``minlog status --config``),
    which need no certificate or password. Empty for a file without ``[[tenant]]``
    tables (one municipality's ``[minlog2]`` table)."""
    data = read_toml(source, _CONTEXT)
    entries = data.get("tenant")
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ConfigurationError(f"{_CONTEXT}: tenant must be [[tenant]] tables")
    limits: dict[str, RateLimit | None] = {}
    for i, table in enumerate(entries):
        where = f"tenant[{i}]"
        cvr = table.get("cvr") if isinstance(table, dict) else None
        if not isinstance(table, dict) or not isinstance(cvr, str) or not is_cvr(cvr):
            raise ConfigurationError(f"{_CONTEXT}: {where}.cvr must be the municipality's "
                                     "CVR number (8 digits, as a string)")
        limits[cvr] = _tenant_limit(table, f"{_CONTEXT}, tenant {cvr}", where)
    options: dict[str, Any] = {"tenant_limits": limits}
    table = data.get("options", {})
    if isinstance(table, dict) and "rate_limit" in table:
        options["rate_limit"] = rate_limit(table["rate_limit"], context=_CONTEXT,
                                           where="options.rate_limit")
    return options


def _units(value: Any, context: str, where: str) -> list[Unit]:
    """``["<SOR id>", { source = "...", id = "..." }, ...]``."""
    if not isinstance(value, list):
        raise ConfigurationError(f"{context}: {where} must be an array")
    units: list[Unit] = []
    for j, unit in enumerate(value):
        if isinstance(unit, str) and unit:
            units.append(("SOR", unit))
            continue
        if isinstance(unit, dict):
            check_table(unit, context=context, where=f"{where}[{j}]", required=("id",),
                        optional={"source": str})
            units.append((unit.get("source", "SOR"), unit["id"]))
            continue
        raise ConfigurationError(
            f"{context}: {where}[{j}] must be a SOR id or {{ source = ..., id = ... }}")
    return units


def _parents(value: Any, context: str, where: str) -> dict[Unit, Unit]:
    """``{ "<SOR id of a unit>" = "<SOR id of its parent>", ... }``."""
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{context}: {where} must be a table of SOR id = parent SOR id")
    parents: dict[Unit, Unit] = {}
    for child, parent in value.items():
        if not isinstance(parent, str) or not parent:
            raise ConfigurationError(f"{context}: {where}: each parent is a SOR id (a string)")
        parents[("SOR", child)] = ("SOR", parent)
    return parents


def _options(table: Any) -> dict[str, Any]:
    """``[options]``: `MinLog`'s keyword options, checked by name and type."""
    from minlog.client.options import check_options

    if not isinstance(table, dict):
        raise ConfigurationError(f"{_CONTEXT}: options must be a table")
    try:
        check_options(table)
    except ConfigurationError as e:
        raise ConfigurationError(f"{_CONTEXT}: options: {e}") from e
    if "clock" in table:
        raise ConfigurationError(f"{_CONTEXT}: options.clock: give it in code "
                                 "(Installation.open(clock=...))")
    check_table(table, context=_CONTEXT, where="options", optional=_OPTION_TYPES,
                allowed={"rate_limit", "retry", "backlog_warning"})
    options = dict(table)
    if "rate_limit" in table:
        options["rate_limit"] = rate_limit(table["rate_limit"], context=_CONTEXT,
                                           where="options.rate_limit")
    if "retry" in table:
        retry = table["retry"]
        if not isinstance(retry, dict):
            raise ConfigurationError(f"{_CONTEXT}: options.retry must be a table")
        kinds = dict.fromkeys(("initial", "multiplier", "maximum", "jitter"), float)
        check_table(retry, context=_CONTEXT, where="options.retry", optional=kinds)
        try:
            options["retry"] = RetryPolicy(**{k: float(v) for k, v in retry.items()})
        except ValueError as e:
            raise ConfigurationError(f"{_CONTEXT}: options.retry: {e}") from e
    if "backlog_warning" in table:
        value = table["backlog_warning"]
        if value == "none":
            options["backlog_warning"] = None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            options["backlog_warning"] = float(value)
        else:
            raise ConfigurationError(
                f"{_CONTEXT}: options.backlog_warning must be seconds or \"none\"")
    return options
