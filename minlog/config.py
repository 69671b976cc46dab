"""Transport settings from TOML, for operators (``minlog drain --config``, ``minlog.toml``).

::

    [minlog2]
    service_url = "https://.../minlog2-registration/20250312/RegisterService"
    sts_url = "https://.../sts/services/NewSecurityTokenService"
    pkcs12 = "/etc/eoj/system.p12"           # relative paths: relative to this file
    # or: pem_key = "system.key" and pem_chain = "system-chain.pem" (certificate first,
    #     then the intermediate CAs); the password (if any) is the key's
    password_env = "MINLOG_P12_PASSWORD"      # or password_file = "..."
    cvr = "29189846"
    system_name = "Cura"
    care_provider_name = "Aarhus Kommune"
    # optional: version, soap_action ("AddRegistrations_<version>", the default, or
    #           "AddRegistrations"), ca_bundle, client_certificate, digest ("sha256", the
    #           default, or "sha1"), issuer, connect_timeout, read_timeout

One implementation reads each part: `read_settings` the settings every organisation of an
installation shares (`TransportSettings`: the service, the STS, the system), and
`read_credentials` one organisation's system certificate (``pkcs12``, or ``pem_key`` +
``pem_chain``, with ``password_env`` or ``password_file``). `transport_from_toml` joins
them for one organisation; an installation of several municipalities (`minlog.tenants`)
reads the shared part from its ``[minlog2]`` table and the credentials from each
``[[tenant]]``.

Secrets never live in the file itself. Every mistake is a `ConfigurationError` naming the
key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from minlog.core.clock import SYSTEM_CLOCK, Clock
from minlog.errors import ConfigurationError
from minlog.minlog2.http import Minlog2Transport
from minlog.minlog2.idcard import SystemCredentials, load_pem, load_pkcs12

__all__ = ["CREDENTIAL_KEYS", "SETTING_KEYS", "TransportSettings", "check_table",
           "read_credentials", "read_settings", "read_toml", "transport_from_toml"]

#: The keys of the shared settings: required, then optional with their types.
_REQUIRED: Final = ("service_url", "sts_url", "system_name")
_OPTIONAL: Final[Mapping[str, type]] = {
    "version": str, "soap_action": str, "ca_bundle": str, "client_certificate": bool,
    "digest": str, "issuer": str, "connect_timeout": float, "read_timeout": float}
#: Every key `read_settings` reads.
SETTING_KEYS: Final = frozenset(_REQUIRED) | frozenset(_OPTIONAL)
#: The keys of one organisation's credentials (`read_credentials`), with their types.
_CREDENTIAL_TYPES: Final[Mapping[str, type]] = {
    "pkcs12": str, "pem_key": str, "pem_chain": str, "password_env": str,
    "password_file": str}
CREDENTIAL_KEYS: Final = frozenset(_CREDENTIAL_TYPES)


@attrs.frozen
class TransportSettings:
    """What every organisation of an installation shares to reach MinLog2: the service,
    the STS, the system's name on the ID card (``ITSystemName``) and the transport's
    options (`Minlog2Transport`'s ``version``, ``soap_action``, ``digest``, ``issuer``,
    ``connect_timeout``, ``read_timeout``, ``ca_bundle``, ``client_certificate``)."""

    service_url: str
    sts_url: str
    system_name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def transport(self, *, credentials: SystemCredentials, cvr: str, care_provider_name: str,
                  clock: Clock = SYSTEM_CLOCK) -> Minlog2Transport:
        """A `Minlog2Transport` for one organisation: its certificate, CVR and name."""
        return Minlog2Transport(
            service_url=self.service_url, sts_url=self.sts_url, credentials=credentials,
            cvr=cvr, system_name=self.system_name, care_provider_name=care_provider_name,
            clock=clock, **self.options)


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A TOML file's tables; an unreadable file is a `ConfigurationError` naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"{what} {p}: {e}") from e


def check_table(table: Mapping[str, Any], *, context: str, where: str,
                required: Collection[str] = (), optional: Mapping[str, type] | None = None,
                allowed: Collection[str] = ()) -> None:
    """Refuse unknown keys, missing required strings and values of the wrong type
    (``float`` takes an integer too). ``allowed`` are further keys checked elsewhere."""
    types: Mapping[str, type] = optional or {}
    unknown = set(table) - set(required) - set(types) - set(allowed)
    if unknown:
        raise ConfigurationError(f"{context}: {where}: unknown keys {sorted(unknown)}")
    for key in required:
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigurationError(f"{context}: {where}.{key} is required (a string)")
    for key, kind in types.items():
        if key in table and (not isinstance(table[key], kind | (int if kind is float else kind))
                             or (kind is not bool and isinstance(table[key], bool))):
            raise ConfigurationError(f"{context}: {where}.{key} must be {kind.__name__}")


def read_settings(table: Mapping[str, Any], base: Path, *, context: str,
                  where: str = "minlog2", allowed: Collection[str] = ()) -> TransportSettings:
    """The shared settings of a ``[minlog2]`` table (``allowed``: further keys the caller
    reads). Relative paths are relative to ``base``, the TOML file's folder."""
    check_table(table, context=context, where=where, required=_REQUIRED, optional=_OPTIONAL,
                allowed=allowed)
    options: dict[str, Any] = {k: table[k] for k in ("version", "soap_action",
                               "client_certificate", "digest", "issuer") if k in table}
    for k in ("connect_timeout", "read_timeout"):
        if k in table:
            options[k] = float(table[k])
    if "ca_bundle" in table:
        options["ca_bundle"] = base / table["ca_bundle"]
    return TransportSettings(table["service_url"], table["sts_url"], table["system_name"],
                             options)


def read_credentials(table: Mapping[str, Any], base: Path, *, context: str,
                     where: str) -> SystemCredentials:
    """One organisation's system certificate: exactly one of ``pkcs12`` or ``pem_key`` +
    ``pem_chain``, with its password from ``password_env`` or ``password_file`` (or
    none). Each mistake (a missing file, a wrong password) names the key."""
    check_table({k: v for k, v in table.items() if k in CREDENTIAL_KEYS}, context=context,
                where=where, optional=_CREDENTIAL_TYPES)
    given = [k for k in ("pkcs12", "pem_key", "pem_chain") if k in table]
    if "pkcs12" in given and len(given) > 1:
        raise ConfigurationError(
            f"{context}: {where}.pkcs12 or {where}.pem_key + pem_chain, not both")

    def read(key: str) -> bytes:
        try:
            return Path(base, str(table[key])).read_bytes()
        except OSError as e:
            raise ConfigurationError(f"{context}: {where}.{key}: {e}") from e

    def loaded(key: str, load: Any, *files: bytes) -> SystemCredentials:
        password = _password(table, base, context, where)
        try:
            credentials: SystemCredentials = load(*files, password)
        except ConfigurationError as e:  # load_pem's messages start with the key
            named = str(e) if str(e).startswith("pem_") else f"{key}: {e}"
            raise ConfigurationError(f"{context}: {where}.{named}") from e
        return credentials

    if "pkcs12" in given:
        return loaded("pkcs12", load_pkcs12, read("pkcs12"))
    if given:
        for key in ("pem_key", "pem_chain"):
            if key not in table:
                raise ConfigurationError(
                    f"{context}: {where}.{key} is required with the other PEM file")
        return loaded("pem_key", load_pem, read("pem_key"), read("pem_chain"))
    raise ConfigurationError(
        f"{context}: {where}.pkcs12 (or {where}.pem_key + pem_chain) is required")


def _password(table: Mapping[str, Any], base: Path, context: str, where: str) -> bytes | None:
    if "password_env" in table:
        value = os.environ.get(table["password_env"])
        if value is None:
            raise ConfigurationError(
                f"{context}: {where}.password_env: {table['password_env']} is not set")
        return value.encode()
    if "password_file" in table:
        try:
            return Path(base, str(table["password_file"])).read_bytes().strip()
        except OSError as e:
            raise ConfigurationError(f"{context}: {where}.password_file: {e}") from e
    return None


def transport_from_toml(path: str | os.PathLike[str]) -> Minlog2Transport:
    """A `Minlog2Transport` configured by the ``[minlog2]`` table of a TOML file."""
    p = Path(path)
    data = read_toml(p, "transport config")
    table = data.get("minlog2")
    if not isinstance(table, dict):
        raise ConfigurationError(f"transport config {p}: needs a [minlog2] table")
    context = "transport config"
    own = {"cvr": str, "care_provider_name": str}
    settings = read_settings(table, p.parent, context=context,
                             allowed=set(own) | CREDENTIAL_KEYS)
    check_table(table, context=context, where="minlog2", required=tuple(own),
                allowed=SETTING_KEYS | CREDENTIAL_KEYS)
    credentials = read_credentials(table, p.parent, context=context, where="minlog2")
    return settings.transport(credentials=credentials, cvr=table["cvr"],
                              care_provider_name=table["care_provider_name"])
