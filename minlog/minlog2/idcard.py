"""DGWS 1.0.1 system ID card (SOSI): build, sign, verify, exchange at the STS, cache.

Pure: signing and parsing need no network. The flow:

1. `load_pkcs12` reads the organisation's system (function) certificate.
2. `build_id_card` makes the SAML 2.0 ``Assertion`` (``id="IDCard"``) of type *system*,
   authentication level 3, naming the organisation by CVR.
3. `sign` adds an enveloped XML signature (``ds:Signature id="OCESSignature"``):
   exclusive C14N, RSA-SHA1 with SHA-1 digests as in the public examples, or RSA-SHA256
   with SHA-256; the certificate goes in ``KeyInfo/X509Data``.
4. `request_security_token` wraps the signed card in a WS-Trust ``RequestSecurityToken``
   for the SOSI STS; `parse_security_token_response` takes the STS-signed card back.
5. `security_header` builds the SOAP header of each service call: ``wsse:Security``
   (timestamp + card) and ``medcom:Header`` (security level, fresh FlowID/MessageID).
6. `CardCache` reuses a card until shortly before ``NotOnOrAfter``; `invalidate` after the
   service refuses it.

`verify` is our own verifier (digest and RSA signature with cryptography); the test suite
also verifies our signatures with ``xmlsec1``, an independent implementation.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Final

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.errors import ConfigurationError, DeliveryError
from minlog.minlog2.wire import SOAP_NS, parse_xml

__all__ = [
    "NS",
    "CardCache",
    "CardRejected",
    "IdCard",
    "SystemCredentials",
    "build_id_card",
    "card_facts",
    "card_from_request",
    "load_pkcs12",
    "parse_security_token_response",
    "request_security_token",
    "security_header",
    "sign",
    "verify",
]

NS: Final = {
    "soap": SOAP_NS,
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "wst": "http://schemas.xmlsoap.org/ws/2005/02/trust",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "medcom": "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd",
    "sosi": "http://www.sosi.dk/sosi/2006/04/sosi-1.0.xsd",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
_ALGORITHMS: Final = {
    "rsa-sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                 "http://www.w3.org/2000/09/xmldsig#sha1",
                 hashes.SHA1(), "sha1"),  # noqa: S303 - the DGWS examples sign with SHA-1
    "rsa-sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                   "http://www.w3.org/2001/04/xmlenc#sha256", hashes.SHA256(), "sha256"),
}
_EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _utc(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class CardRejected(DeliveryError):
    """An ID card was refused: bad signature, untrusted signer, expired, wrong CVR."""


@attrs.frozen
class SystemCredentials:
    """The organisation's system certificate and its private key."""

    key: rsa.RSAPrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def load_pkcs12(data: bytes, password: bytes | None) -> SystemCredentials:
    """Read a PKCS#12 file (OCES3 system certificate). Bad data or password:
    `ConfigurationError` (the password is never shown)."""
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            "cannot open the PKCS#12 certificate file: wrong password or not PKCS#12"
        ) from e
    if key is None or cert is None:
        raise ConfigurationError("the PKCS#12 file must hold a certificate and its key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("the system certificate's key must be RSA (XML-DSig rsa-sha*)")
    return SystemCredentials(key, cert, tuple(chain or ()))


def _attribute(parent: etree._Element, name: str, value: str,
               name_format: str | None = None) -> None:
    a = etree.SubElement(parent, _q("saml", "Attribute"), Name=name)
    if name_format:
        a.set("NameFormat", name_format)
    etree.SubElement(a, _q("saml", "AttributeValue")).text = value


def build_id_card(
    credentials: SystemCredentials,
    *,
    cvr: str,
    system_name: str,
    care_provider_name: str,
    now: _dt.datetime,
    validity: _dt.timedelta = _dt.timedelta(hours=24),
    card_id: str | None = None,
    issuer: str | None = None,
) -> etree._Element:
    """The unsigned SOSI system ID card (SAML 2.0 Assertion ``id="IDCard"``)."""
    if not (cvr.isdigit() and len(cvr) == 8):
        raise ConfigurationError("cvr: must be 8 digits")
    nsmap = {k: NS[k] for k in ("saml", "ds", "medcom", "sosi", "xsi")}
    a = etree.Element(_q("saml", "Assertion"), nsmap=nsmap, IssueInstant=_utc(now),
                      Version="2.0", id="IDCard")
    etree.SubElement(a, _q("saml", "Issuer")).text = issuer or system_name
    subject = etree.SubElement(a, _q("saml", "Subject"))
    etree.SubElement(subject, _q("saml", "NameID"), Format="medcom:cvrnumber").text = cvr
    confirmation = etree.SubElement(subject, _q("saml", "SubjectConfirmation"))
    etree.SubElement(confirmation, _q("saml", "ConfirmationMethod")).text = (
        "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key")
    data = etree.SubElement(confirmation, _q("saml", "SubjectConfirmationData"))
    key_info = etree.SubElement(data, _q("ds", "KeyInfo"))
    etree.SubElement(key_info, _q("ds", "KeyName")).text = "OCESSignature"
    etree.SubElement(a, _q("saml", "Conditions"), NotBefore=_utc(now),
                     NotOnOrAfter=_utc(now + validity))
    statement = etree.SubElement(a, _q("saml", "AttributeStatement"), id="IDCardData")
    cert_hash = base64.b64encode(hashlib.sha1(  # noqa: S324 - DGWS defines OCESCertHash as SHA-1
        credentials.certificate.public_bytes(serialization.Encoding.DER)).digest()).decode()
    _attribute(statement, "sosi:IDCardID", card_id or str(uuid.uuid4()))
    _attribute(statement, "sosi:IDCardVersion", "1.0.1")
    _attribute(statement, "sosi:IDCardType", "system")
    _attribute(statement, "sosi:AuthenticationLevel", "3")
    _attribute(statement, "sosi:OCESCertHash", cert_hash)
    _attribute(statement, "medcom:ITSystemName", system_name)
    _attribute(statement, "medcom:CareProviderID", cvr, "medcom:cvrnumber")
    _attribute(statement, "medcom:CareProviderName", care_provider_name)
    return a


def _c14n(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, method="c14n", exclusive=True, with_comments=False))


def sign(element: etree._Element, credentials: SystemCredentials, *,
         algorithm: str = "rsa-sha1") -> etree._Element:
    """Sign ``element`` (its ``id`` attribute) with an enveloped XML signature."""
    if algorithm not in _ALGORITHMS:
        raise ConfigurationError(f"algorithm must be one of {', '.join(_ALGORITHMS)}")
    sig_uri, digest_uri, hash_alg, hashlib_name = _ALGORITHMS[algorithm]
    ref_id = element.get("id")
    if not ref_id:
        raise ConfigurationError("the element to sign needs an id attribute")
    for old in element.findall(_q("ds", "Signature")):
        element.remove(old)
    digest = base64.b64encode(hashlib.new(hashlib_name, _c14n(element)).digest()).decode()
    signature = etree.SubElement(element, _q("ds", "Signature"), id="OCESSignature")
    signed_info = etree.SubElement(signature, _q("ds", "SignedInfo"))
    etree.SubElement(signed_info, _q("ds", "CanonicalizationMethod"), Algorithm=_EXC_C14N)
    etree.SubElement(signed_info, _q("ds", "SignatureMethod"), Algorithm=sig_uri)
    reference = etree.SubElement(signed_info, _q("ds", "Reference"), URI=f"#{ref_id}")
    transforms = etree.SubElement(reference, _q("ds", "Transforms"))
    etree.SubElement(transforms, _q("ds", "Transform"), Algorithm=_ENVELOPED)
    etree.SubElement(transforms, _q("ds", "Transform"), Algorithm=_EXC_C14N)
    etree.SubElement(reference, _q("ds", "DigestMethod"), Algorithm=digest_uri)
    etree.SubElement(reference, _q("ds", "DigestValue")).text = digest
    value = credentials.key.sign(_c14n(signed_info), padding.PKCS1v15(), hash_alg)
    etree.SubElement(signature, _q("ds", "SignatureValue")).text = (
        base64.b64encode(value).decode())
    key_info = etree.SubElement(signature, _q("ds", "KeyInfo"))
    x509_data = etree.SubElement(key_info, _q("ds", "X509Data"))
    etree.SubElement(x509_data, _q("ds", "X509Certificate")).text = base64.b64encode(
        credentials.certificate.public_bytes(serialization.Encoding.DER)).decode()
    return element


def verify(element: etree._Element, *,
           trusted: Sequence[x509.Certificate] | None = None) -> x509.Certificate:
    """Check the enveloped signature of ``element``; returns the signing certificate.
    With ``trusted``, the signer must be one of those certificates (by fingerprint).
    Raises `CardRejected`."""
    signature = element.find(_q("ds", "Signature"))
    if signature is None:
        raise CardRejected("the ID card is not signed")
    signed_info = signature.find(_q("ds", "SignedInfo"))
    reference = signed_info.find(_q("ds", "Reference")) if signed_info is not None else None
    method = signed_info.find(_q("ds", "SignatureMethod")) if signed_info is not None else None
    if signed_info is None or reference is None or method is None:
        raise CardRejected("the signature has no SignedInfo/Reference")
    if reference.get("URI") != f"#{element.get('id')}":
        raise CardRejected("the signature does not reference this card")
    by_uri = {v[0]: v for v in _ALGORITHMS.values()}
    if method.get("Algorithm") not in by_uri:
        raise CardRejected("unsupported signature algorithm")
    _, digest_uri, hash_alg, hashlib_name = by_uri[method.get("Algorithm", "")]
    digest_method = reference.find(_q("ds", "DigestMethod"))
    if digest_method is None or digest_method.get("Algorithm") != digest_uri:
        raise CardRejected("unexpected digest algorithm")
    try:
        cert_text = signature.findtext(f"{_q('ds', 'KeyInfo')}/{_q('ds', 'X509Data')}/"
                                       f"{_q('ds', 'X509Certificate')}") or ""
        cert = x509.load_der_x509_certificate(base64.b64decode(cert_text))
        value = base64.b64decode(signature.findtext(_q("ds", "SignatureValue")) or "")
        expected_digest = base64.b64decode(reference.findtext(_q("ds", "DigestValue")) or "")
    except ValueError as e:
        raise CardRejected(f"the signature cannot be read: {e}") from None
    if trusted is not None:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if all(t.fingerprint(hashes.SHA256()) != fingerprint for t in trusted):
            raise CardRejected("the card is signed by an untrusted certificate")
    unsigned = copy.deepcopy(element)
    for s in unsigned.findall(_q("ds", "Signature")):
        unsigned.remove(s)
    if hashlib.new(hashlib_name, _c14n(unsigned)).digest() != expected_digest:
        raise CardRejected("the card was altered after signing (digest mismatch)")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise CardRejected("the signing key is not RSA")
    try:
        public.verify(value, _c14n(signed_info), padding.PKCS1v15(), hash_alg)
    except InvalidSignature:
        raise CardRejected("the signature value is wrong") from None
    return cert


def card_facts(card: etree._Element) -> tuple[_dt.datetime, _dt.datetime, str]:
    """``(NotBefore, NotOnOrAfter, CVR)`` of a card."""
    conditions = card.find(_q("saml", "Conditions"))
    cvr = card.findtext(f"{_q('saml', 'Subject')}/{_q('saml', 'NameID')}") or ""
    if conditions is None:
        raise CardRejected("the card has no Conditions")
    try:
        nb = _dt.datetime.fromisoformat(conditions.get("NotBefore", ""))
        na = _dt.datetime.fromisoformat(conditions.get("NotOnOrAfter", ""))
    except ValueError:
        raise CardRejected("the card's validity cannot be read") from None
    return nb, na, cvr


@attrs.frozen
class IdCard:
    """An STS-issued ID card: the serialized assertion and its expiry."""

    assertion: bytes = attrs.field(repr=False)
    not_on_or_after: _dt.datetime

    def element(self) -> etree._Element:
        return parse_xml(self.assertion, what="ID card")

    def expires_soon(self, now: _dt.datetime,
                     margin: _dt.timedelta = _dt.timedelta(minutes=5)) -> bool:
        return now + margin >= self.not_on_or_after


def request_security_token(signed_card: etree._Element, *, now: _dt.datetime,
                           system_name: str = "minlog") -> bytes:
    """The WS-Trust ``RequestSecurityToken`` envelope asking the SOSI STS for a card."""
    nsmap = {k: NS[k] for k in ("soap", "wsse", "wsu", "wst", "wsa")}
    env = etree.Element(_q("soap", "Envelope"), nsmap=nsmap)
    header = etree.SubElement(env, _q("soap", "Header"))
    security = etree.SubElement(header, _q("wsse", "Security"))
    ts = etree.SubElement(security, _q("wsu", "Timestamp"))
    etree.SubElement(ts, _q("wsu", "Created")).text = _utc(now)
    etree.SubElement(header, _q("wsa", "MessageID")).text = f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, _q("wsa", "Action")).text = (
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue")
    body = etree.SubElement(env, _q("soap", "Body"))
    rst = etree.SubElement(body, _q("wst", "RequestSecurityToken"), Context="www.sosi.dk")
    etree.SubElement(rst, _q("wst", "TokenType")).text = (
        "urn:oasis:names:tc:SAML:2.0:assertion:")
    etree.SubElement(rst, _q("wst", "RequestType")).text = (
        "http://schemas.xmlsoap.org/ws/2005/02/security/trust/Issue")
    claims = etree.SubElement(rst, _q("wst", "Claims"))
    claims.append(copy.deepcopy(signed_card))
    issuer = etree.SubElement(rst, _q("wst", "Issuer"))
    etree.SubElement(issuer, _q("wsa", "Address")).text = system_name
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def card_from_request(body: bytes) -> etree._Element:
    """The ID card (SAML Assertion) of a request: in ``wst:Claims`` for the STS, in
    ``wsse:Security`` for a service call. Raises `CardRejected` when there is none."""
    root = parse_xml(body, what="request")
    for path in (f".//{_q('wst', 'Claims')}/{_q('saml', 'Assertion')}",
                 f".//{_q('wsse', 'Security')}/{_q('saml', 'Assertion')}"):
        found = root.find(path)
        if found is not None:
            return found
    raise CardRejected("the request carries no ID card")


def parse_security_token_response(body: bytes) -> IdCard:
    """The card issued by the STS, or `CardRejected` (with the STS's fault text)."""
    root = parse_xml(body, what="STS response")
    fault = root.find(f".//{_q('soap', 'Fault')}")
    if fault is not None:
        raise CardRejected(f"the STS refused the card: {fault.findtext('faultstring')}")
    card = root.find(f".//{_q('wst', 'RequestedSecurityToken')}/{_q('saml', 'Assertion')}")
    if card is None:
        raise CardRejected("the STS answer holds no ID card")
    _, not_after, _ = card_facts(card)
    return IdCard(bytes(etree.tostring(card)), not_after)


def security_header(card: IdCard, *, now: _dt.datetime, flow_id: str | None = None,
                    message_id: str | None = None) -> list[etree._Element]:
    """The SOAP header children of a service call: ``wsse:Security`` (timestamp and card)
    and ``medcom:Header`` (security level 3, fresh FlowID and MessageID, no receipt)."""
    security = etree.Element(_q("wsse", "Security"),
                             nsmap={"wsse": NS["wsse"], "wsu": NS["wsu"]})
    ts = etree.SubElement(security, _q("wsu", "Timestamp"))
    etree.SubElement(ts, _q("wsu", "Created")).text = _utc(now)
    security.append(card.element())
    medcom = etree.Element(_q("medcom", "Header"), nsmap={"medcom": NS["medcom"]})
    etree.SubElement(medcom, _q("medcom", "SecurityLevel")).text = "3"
    linking = etree.SubElement(medcom, _q("medcom", "Linking"))
    etree.SubElement(linking, _q("medcom", "FlowID")).text = flow_id or str(uuid.uuid4())
    etree.SubElement(linking, _q("medcom", "MessageID")).text = message_id or str(uuid.uuid4())
    etree.SubElement(medcom, _q("medcom", "RequireNonRepudiationReceipt")).text = "no"
    return [security, medcom]


class CardCache:
    """Holds the current card; fetches a new one when it is about to expire (by
    ``clock``) or was refused. Thread-safe."""

    def __init__(self, margin: _dt.timedelta = _dt.timedelta(minutes=5), *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.margin = margin
        self.clock = clock
        self._card: IdCard | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, fetch: Callable[[], IdCard]) -> IdCard:
        with self._lock:
            if self._card is None or self._card.expires_soon(utc_now(self.clock), self.margin):
                self._card = fetch()
                self.fetches += 1
            return self._card

    def invalidate(self) -> None:
        with self._lock:
            self._card = None
