"""Transport settings from a TOML file, for operators (``minlog drain --config``).

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

Secrets never live in the file itself. Every mistake is a `ConfigurationError` naming the
key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from minlog.errors import ConfigurationError
from minlog.minlog2.http import Minlog2Transport
from minlog.minlog2.idcard import SystemCredentials, load_pem, load_pkcs12

__all__ = ["transport_from_toml"]

_REQUIRED = ("service_url", "sts_url", "cvr", "system_name", "care_provider_name")
_CREDENTIALS = ("pkcs12", "pem_key", "pem_chain")
_OPTIONAL = {"version": str, "soap_action": str, "ca_bundle": str, "client_certificate": bool,
             "digest": str, "issuer": str, "connect_timeout": float, "read_timeout": float,
             "password_env": str, "password_file": str, "pkcs12": str, "pem_key": str,
             "pem_chain": str}


def transport_from_toml(path: str | os.PathLike[str]) -> Minlog2Transport:
    """A `Minlog2Transport` configured by the ``[minlog2]`` table of a TOML file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"transport config {p}: {e}") from e
    table = data.get("minlog2")
    if not isinstance(table, dict):
        raise ConfigurationError(f"transport config {p}: needs a [minlog2] table")
    unknown = set(table) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise ConfigurationError(f"transport config: unknown keys {sorted(unknown)}")
    for key in _REQUIRED:
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigurationError(f"transport config: minlog2.{key} is required (a string)")
    for key, kind in _OPTIONAL.items():
        if key in table and not isinstance(table[key], kind | (int if kind is float else kind)):
            raise ConfigurationError(f"transport config: minlog2.{key} must be {kind.__name__}")
    base = p.parent
    credentials = _credentials(table, base)
    options: dict[str, Any] = {k: table[k] for k in ("version", "soap_action",
                               "client_certificate", "digest", "issuer") if k in table}
    for k in ("connect_timeout", "read_timeout"):
        if k in table:
            options[k] = float(table[k])
    if "ca_bundle" in table:
        options["ca_bundle"] = base / table["ca_bundle"]
    return Minlog2Transport(
        service_url=table["service_url"], sts_url=table["sts_url"],
        credentials=credentials, cvr=table["cvr"], system_name=table["system_name"],
        care_provider_name=table["care_provider_name"], **options)


def _read(table: dict[str, Any], base: Path, key: str) -> bytes:
    try:
        return Path(base, str(table[key])).read_bytes()
    except OSError as e:
        raise ConfigurationError(f"transport config: minlog2.{key}: {e}") from e


def _credentials(table: dict[str, Any], base: Path) -> SystemCredentials:
    """Exactly one of ``pkcs12`` or ``pem_key`` + ``pem_chain``."""
    given = [k for k in _CREDENTIALS if k in table]
    if "pkcs12" in given and len(given) > 1:
        raise ConfigurationError(
            "transport config: minlog2.pkcs12 or minlog2.pem_key + pem_chain, not both")
    if "pkcs12" in given:
        return load_pkcs12(_read(table, base, "pkcs12"), _password(table, base))
    if given:
        for key in ("pem_key", "pem_chain"):
            if key not in table:
                raise ConfigurationError(
                    f"transport config: minlog2.{key} is required with the other PEM file")
        return load_pem(_read(table, base, "pem_key"), _read(table, base, "pem_chain"),
                        _password(table, base))
    raise ConfigurationError(
        "transport config: minlog2.pkcs12 (or minlog2.pem_key + pem_chain) is required")


def _password(table: dict[str, Any], base: Path) -> bytes | None:
    if "password_env" in table:
        value = os.environ.get(table["password_env"])
        if value is None:
            raise ConfigurationError(
                f"transport config: minlog2.password_env: {table['password_env']} is not set")
        return value.encode()
    if "password_file" in table:
        try:
            return Path(base, str(table["password_file"])).read_bytes().strip()
        except OSError as e:
            raise ConfigurationError(f"transport config: minlog2.password_file: {e}") from e
    return None
