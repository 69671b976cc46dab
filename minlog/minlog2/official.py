"""The authority's official MinLog2 and DGWS schemas, read from a folder you name.

The official registration schemas (20250312, 20230425) and the DGWS header schemas they
travel with (``medcom.xsd``, ``wsse.xsd``, ``wsu.xsd``, ``saml.xsd``, ``ds.xsd``) are the
authority's reference data, published in its public repository; ``minlog`` does not ship
them. Point `OfficialSchemas` at a folder holding them (file names as below) to check
requests against them: the conformance tests and `minlog.testing.FakeNSP` do.

Every ``check_*`` method returns the schema's complaints as text (empty: valid). The
official ``ds.xsd`` (DGWS 1.0.1, 2006) allows only RSA-SHA1 and SHA-1 in a signature;
the authority's current client signs with RSA-SHA256 and SHA-256, which the NSP test STS
accepts. With ``sha256=True`` (the default) the complaints about exactly those two
algorithm URIs are left out, and nothing else (docs/wire.md, "Known differences").
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any, Final

from lxml import etree

from minlog.errors import ConfigurationError

__all__ = ["FILES", "OfficialSchemas"]

#: The file each schema is read from, inside the folder.
FILES: Final = {
    "20250312": "minlog2-registration_20250312.xsd",
    "20230425": "minlog2-registration_20230425.xsd",
    "medcom": "medcom.xsd",
    "wsse": "wsse.xsd",
    "saml": "saml.xsd",
    "ds": "ds.xsd",
    "wsu": "wsu.xsd",
}
_SHA256: Final = ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                  "http://www.w3.org/2001/04/xmlenc#sha256")


def _tolerated(message: str) -> bool:
    """A complaint of the 2006 ``ds.xsd`` about the SHA-256 algorithms, and nothing else."""
    return (("SignatureMethod" in message or "DigestMethod" in message)
            and "'Algorithm'" in message and any(uri in message for uri in _SHA256))


class OfficialSchemas:
    """The official schemas in ``folder`` (see the module docstring). Thread-safe."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        missing = [name for name in FILES.values() if not (self.folder / name).is_file()]
        if missing:
            raise ConfigurationError(
                f"official schemas: {self.folder} lacks {', '.join(sorted(missing))}")
        self._schemas: dict[str, etree.XMLSchema] = {}
        self._lock = threading.Lock()

    def schema(self, name: str) -> etree.XMLSchema:
        """The compiled schema ``name`` (a key of `FILES`)."""
        if name not in FILES:
            raise ConfigurationError(f"official schemas: no schema {name!r}")
        with self._lock:
            if name not in self._schemas:
                try:
                    self._schemas[name] = etree.XMLSchema(
                        etree.parse(str(self.folder / FILES[name])))
                except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as e:
                    raise ConfigurationError(f"official schemas: {FILES[name]}: {e}") from e
            return self._schemas[name]

    def check(self, element: etree._Element, name: str, *, sha256: bool = True) -> list[str]:
        """The complaints of schema ``name`` about ``element`` (validated as a document of
        its own)."""
        schema = self.schema(name)
        document = etree.ElementTree(copy.deepcopy(element))
        with self._lock:
            valid = schema.validate(document)
            log: Any = schema.error_log  # iterable at run time; lxml-stubs do not say so
            errors = [f"{e.line}: {e.message}" for e in log]
        if valid:
            return []
        return [e for e in errors if not (sha256 and _tolerated(e))]

    def check_registration(self, element: etree._Element, version: str) -> list[str]:
        """Complaints about a ``RegistrationRequest`` or ``RegistrationResponse``."""
        return self.check(element, version)

    def check_assertion(self, assertion: etree._Element, *, sha256: bool = True) -> list[str]:
        """Complaints of ``saml.xsd`` (with ``ds.xsd``) about an ID card."""
        return self.check(assertion, "saml", sha256=sha256)

    def check_security(self, security: etree._Element, *, sha256: bool = True) -> list[str]:
        """Complaints of ``wsse.xsd`` about a ``wsse:Security`` header (and its card)."""
        return self.check(security, "wsse", sha256=sha256)

    def check_medcom_header(self, header: etree._Element) -> list[str]:
        """Complaints of ``medcom.xsd`` about a ``medcom:Header``."""
        return self.check(header, "medcom")
