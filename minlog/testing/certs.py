"""Test certificates and a test STS federation, made with cryptography (never for production)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import secrets
import ssl
import tempfile
import uuid
from collections.abc import Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree

from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.minlog2 import idcard as _dgws

__all__ = ["STS_ISSUER", "TestFederation", "TestPki", "issue_card", "make_test_certificate",
           "make_test_federation", "make_test_pki"]


def _certificate(subject: x509.Name, key: rsa.RSAPrivateKey, *, issuer: x509.Name | None = None,
                 issuer_key: rsa.RSAPrivateKey | None = None, valid_days: int = 365,
                 ca: bool = False, clock: Clock = SYSTEM_CLOCK,
                 names: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
    """A certificate with the extensions strict X.509 checking wants (Python 3.13's
    default TLS contexts): key identifiers, key usage, and ``names`` as subject
    alternative names."""
    now = utc_now(clock)
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=not ca,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


def _system_subject(cvr: str, name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DK"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRDK-{cvr}"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{name} (funktionscertifikat)"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, f"UI:DK-O:G:{uuid.uuid4()}"),
    ])


def make_test_certificate(cvr: str, name: str, *, valid_days: int = 365,
                          clock: Clock = SYSTEM_CLOCK) -> tuple[bytes, bytes]:
    """A PKCS#12 file (bytes) with an RSA-2048 system certificate for organisation ``cvr``
    and its password. The subject's serialNumber follows OCES3's ``UI:DK-O:G:<uuid>``
    form; the organisation identifier carries ``NTRDK-<cvr>``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _certificate(_system_subject(cvr, name), key, valid_days=valid_days, clock=clock)
    password = secrets.token_urlsafe(16).encode()
    data = pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None, serialization.BestAvailableEncryption(password))
    return data, password


@attrs.frozen
class TestPki:
    """A small public-key infrastructure shaped like OCES3's: a root CA, an intermediate
    (issuing) CA, a system certificate issued by the intermediate, and a TLS server
    certificate for 127.0.0.1 issued by the root. A server that trusts only the root can
    verify the system certificate only when the client presents the intermediate too."""

    __test__ = False  # not a pytest test class

    root: _dgws.SystemCredentials
    intermediate: _dgws.SystemCredentials
    system: _dgws.SystemCredentials  # its chain: (intermediate,)
    server: _dgws.SystemCredentials
    password: bytes = attrs.field(repr=False)

    def pkcs12(self) -> tuple[bytes, bytes]:
        """The system certificate, its key and the intermediate as a PKCS#12 file, and
        its password."""
        data = pkcs12.serialize_key_and_certificates(
            b"system", self.system.key, self.system.certificate, list(self.system.chain),
            serialization.BestAvailableEncryption(self.password))
        return data, self.password

    def pem(self) -> tuple[bytes, bytes]:
        """The system key (PEM, encrypted with `password`) and the chain (PEM: the system
        certificate, then the intermediate)."""
        key = self.system.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.password))
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM)
                         for c in (self.system.certificate, *self.system.chain))
        return key, chain

    def root_pem(self) -> bytes:
        return self.root.certificate.public_bytes(serialization.Encoding.PEM)

    def server_context(self, *, require_client_certificate: bool = True) -> ssl.SSLContext:
        """A TLS server context for `FakeNSP` on 127.0.0.1; with
        ``require_client_certificate`` it demands a client certificate chaining to the
        root (the client must present the intermediate)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        key = self.server.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "server.pem")
            with open(path, "wb") as f:
                f.write(key + self.server.certificate.public_bytes(serialization.Encoding.PEM))
            context.load_cert_chain(path)
        if require_client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.root_pem().decode())
        return context


def make_test_pki(cvr: str, name: str, *, clock: Clock = SYSTEM_CLOCK) -> TestPki:
    """A fresh `TestPki` for organisation ``cvr`` (certificates valid from ``clock``'s now;
    TLS libraries check them against the machine's own clock)."""
    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, mid_key, system_key, server_key = key(), key(), key(), key()
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minlog test root CA")])
    mid_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minlog test issuing CA")])
    root = _certificate(root_name, root_key, ca=True, clock=clock)
    mid = _certificate(mid_name, mid_key, issuer=root_name, issuer_key=root_key, ca=True,
                       clock=clock)
    system = _certificate(_system_subject(cvr, name), system_key, issuer=mid_name,
                          issuer_key=mid_key, clock=clock)
    server = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), server_key,
        issuer=root_name, issuer_key=root_key, clock=clock,
        names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    return TestPki(
        root=_dgws.SystemCredentials(root_key, root),
        intermediate=_dgws.SystemCredentials(mid_key, mid),
        system=_dgws.SystemCredentials(system_key, system, (mid,)),
        server=_dgws.SystemCredentials(server_key, server),
        password=secrets.token_urlsafe(16).encode())


@attrs.frozen
class TestFederation:
    """The test STS's signing identity: it signs the ID cards it issues."""

    __test__ = False  # not a pytest test class

    credentials: _dgws.SystemCredentials

    @property
    def certificate(self) -> x509.Certificate:
        return self.credentials.certificate


def make_test_federation(*, clock: Clock = SYSTEM_CLOCK) -> TestFederation:
    """A fresh test federation (self-signed STS certificate, valid from ``clock``'s now)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minlog test STS"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "minlog test")])
    certificate = _certificate(subject, key, ca=True, clock=clock)
    return TestFederation(_dgws.SystemCredentials(key, certificate))


#: The STS's own ``saml:Issuer`` (an xs:NCName, as the official saml.xsd wants).
STS_ISSUER = "minlog-test-STS"


def issue_card(federation: TestFederation, request: bytes, *, clock: Clock = SYSTEM_CLOCK,
               validity: _dt.timedelta = _dt.timedelta(hours=8),
               digest: str = _dgws.DEFAULT_DIGEST,
               accept_digests: Sequence[str] = tuple(_dgws.DIGESTS),
               indent: bool = False, prefixes: Mapping[str, str] | None = None,
               namespaces_on_envelope: bool = False) -> bytes:
    """What a SOSI STS does: verify the client's signed card in ``request`` (its own
    certificate, an OCESCertHash of it with a digest in ``accept_digests``, valid now)
    and answer with a new card for the same CVR and system, signed by the federation
    with ``digest``. Raises `CardRejected` (the caller answers with a fault).

    How the answer is written, as STSs differ: ``indent`` pretty-prints it (the card is
    signed indented, so its white space is part of what is signed); ``prefixes`` gives
    the card's namespaces other prefixes (``{"saml": "saml2", "ds": "dsig"}``);
    ``namespaces_on_envelope`` declares them on the ``soap:Envelope`` instead of on the
    card (the card then relies on its ancestors' declarations)."""
    now = utc_now(clock)
    client_card = _dgws.card_from_request(request)
    signer = _dgws.verify(client_card, digests=accept_digests)
    not_before, not_after, cvr = _dgws.card_facts(client_card)
    if not not_before - _dt.timedelta(minutes=5) <= now < not_after:
        raise _dgws.CardRejected("the client's card is not valid now")
    attributes = {
        a.get("Name"): a.findtext(f"{{{_dgws.NS['saml']}}}AttributeValue")
        for a in client_card.iter(f"{{{_dgws.NS['saml']}}}Attribute")
    }
    if _dgws.cert_hash_digest(client_card, signer) not in accept_digests:
        raise _dgws.CardRejected("OCESCertHash does not match the signing certificate")
    if attributes.get("sosi:IDCardType") != "system":
        raise _dgws.CardRejected("only system ID cards are issued here")
    ns = _dgws.NS
    names = dict(prefixes or {})
    env_ns = {"soap": ns["soap"], "wst": ns["wst"], "wsu": ns["wsu"]}
    if namespaces_on_envelope:
        env_ns |= {names.get(k, k): ns[k] for k in ("saml", "ds", "medcom", "sosi")}
    env = etree.Element(f"{{{ns['soap']}}}Envelope", nsmap=env_ns)
    body = etree.SubElement(env, f"{{{ns['soap']}}}Body")
    rstr = etree.SubElement(body, f"{{{ns['wst']}}}RequestSecurityTokenResponse",
                            Context="www.sosi.dk")
    etree.SubElement(rstr, f"{{{ns['wst']}}}TokenType").text = (
        "urn:oasis:names:tc:SAML:2.0:assertion:")
    token = etree.SubElement(rstr, f"{{{ns['wst']}}}RequestedSecurityToken")
    card = _dgws.build_id_card(
        federation.credentials, cvr=cvr, system_name=attributes.get("medcom:ITSystemName") or "?",
        care_provider_name=attributes.get("medcom:CareProviderName") or "?", now=now,
        validity=validity, issuer=STS_ISSUER, digest=digest,
        parent=token if namespaces_on_envelope else None, prefixes=names)
    if not namespaces_on_envelope:
        token.append(card)
    life = etree.SubElement(rstr, f"{{{ns['wst']}}}Lifetime")
    etree.SubElement(life, f"{{{ns['wsu']}}}Created").text = _dgws._utc(now)
    etree.SubElement(life, f"{{{ns['wsu']}}}Expires").text = _dgws._utc(now + validity)
    if indent:
        etree.indent(env, space="  ")  # before signing: the white space is signed
    _dgws.sign(card, federation.credentials, digest=digest, pretty=indent)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))
