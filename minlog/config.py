"""Transport settings from a TOML file, for operators (``minlog drain --config``).

::

    [minlog2]
    service_url = "https://.../minlog2-registration/20250312/RegisterService"
    sts_url = "https://.../sts/services/NewSecurityTokenService"
    pkcs12 = "/etc/eoj/system.p12"           # relative paths: relative to this file
    password_env = "MINLOG_P12_PASSWORD"      # or password_file = "..."
    cvr = "29189846"
    system_name = "Cura"
    care_provider_name = "Aarhus Kommune"
    # optional: version, soap_action, ca_bundle, client_certificate,
    #           digest ("sha256" or "sha1"), issuer, connect_timeout, read_timeout

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

__all__ = ["transport_from_toml"]

_REQUIRED = ("service_url", "sts_url", "pkcs12", "cvr", "system_name", "care_provider_name")
_OPTIONAL = {"version": str, "soap_action": str, "ca_bundle": str, "client_certificate": bool,
             "digest": str, "issuer": str, "connect_timeout": float, "read_timeout": float,
             "password_env": str, "password_file": str}


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
    try:
        p12 = (base / table["pkcs12"]).read_bytes()
    except OSError as e:
        raise ConfigurationError(f"transport config: minlog2.pkcs12: {e}") from e
    password = _password(table, base)
    options: dict[str, Any] = {k: table[k] for k in ("version", "soap_action",
                               "client_certificate", "digest", "issuer") if k in table}
    for k in ("connect_timeout", "read_timeout"):
        if k in table:
            options[k] = float(table[k])
    if "ca_bundle" in table:
        options["ca_bundle"] = base / table["ca_bundle"]
    return Minlog2Transport(
        service_url=table["service_url"], sts_url=table["sts_url"],
        credentials=(p12, password), cvr=table["cvr"], system_name=table["system_name"],
        care_provider_name=table["care_provider_name"], **options)


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
