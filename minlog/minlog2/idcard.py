"""DGWS 1.0.1 system ID card (SOSI): build, sign, verify, exchange at the STS, cache.

Pure: signing and parsing need no network. The flow:

1. `load_pkcs12` (or `load_pem`: a PEM key and chain) reads the organisation's system
   (function) certificate and its intermediate CAs.
2. `build_id_card` makes the SAML 2.0 ``Assertion`` (``id="IDCard"``) of type *system*,
   authentication level 3, naming the organisation by CVR, laid out as Seal's sample and
   the authority's client lay it out (``IDCardData`` and ``SystemLog`` statements).
3. `sign` adds an enveloped XML signature (``ds:Signature id="OCESSignature"``):
   exclusive C14N, RSA-SHA256 with SHA-256 digests and a SHA-256 ``sosi:OCESCertHash``
   by default (the authority's current client), or RSA-SHA1/SHA-1 (DGWS 1.0.1, Seal);
   the certificate goes in ``KeyInfo/X509Data``.
4. `request_security_token` wraps the signed card in a WS-Trust ``RequestSecurityToken``
   for the SOSI STS; `parse_security_token_response` takes the STS-signed card back as
   the exact bytes the STS wrote (`IdCard`): a token signed by someone else is never
   parsed and written again.
5. `security_header` builds the SOAP header of each service call (bytes): ``wsse:Security``
   (timestamp + those bytes) and ``medcom:Header`` (security level, fresh FlowID and
   MessageID).
6. `CardCache` reuses a card until shortly before ``NotOnOrAfter`` (by its clock);
   `CardCache.renew` replaces a card the service refused.

`verify` is our own verifier (digest and RSA signature with cryptography); the test suite
also verifies our signatures, and the STS's as forwarded, with ``xmlsec1``, an
independent implementation.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Final
from xml.parsers import expat

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.errors import ConfigurationError, DeliveryError
from minlog.events import emit
from minlog.minlog2.wire import SOAP_NS, parse_xml

__all__ = [
    "DEFAULT_DIGEST",
    "DEFAULT_ISSUER",
    "DIGESTS",
    "NS",
    "CardCache",
    "CardRejected",
    "IdCard",
    "SystemCredentials",
    "build_id_card",
    "card_facts",
    "card_from_request",
    "cert_hash_digest",
    "check_digest",
    "check_issuer",
    "load_pem",
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
#: The two signature profiles, by their digest: (SignatureMethod, DigestMethod, hash,
#: hashlib name). SHA-256 is what the authority's current client sends (and the NSP test
#: STS accepts); SHA-1 is DGWS 1.0.1's and the Seal library's, kept for older STSs.
DIGESTS: Final = {
    "sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
               "http://www.w3.org/2001/04/xmlenc#sha256", hashes.SHA256(), "sha256"),
    "sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1",
             "http://www.w3.org/2000/09/xmldsig#sha1",
             hashes.SHA1(), "sha1"),  # noqa: S303 - DGWS 1.0.1 and Seal sign with SHA-1
}
DEFAULT_DIGEST: Final = "sha256"
#: ``saml:Issuer`` of our own card when none is given: an xs:NCName naming the library, as
#: Seal's samples name theirs (``SealJava-2.6.25-TheSOSILibrary``).
DEFAULT_ISSUER: Final = "minlog"
_EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#: An xs:NCName made of ASCII only (stricter than XML's NCName, never looser).
_NCNAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")


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


def load_pem(key: bytes, chain: bytes, password: bytes | None) -> SystemCredentials:
    """Read a PEM private key (PKCS#8 or traditional, encrypted with ``password`` or not)
    and a PEM chain: the system certificate first, then its intermediate CAs. The key must
    belong to the first certificate. Mistakes are `ConfigurationError` naming
    ``pem_key`` or ``pem_chain`` (the password is never shown)."""
    try:
        private = serialization.load_pem_private_key(key, password)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            "pem_key: cannot read the PEM private key: wrong password or not a PEM key"
        ) from e
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigurationError("pem_key: the system certificate's key must be RSA")
    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError as e:
        raise ConfigurationError("pem_chain: not PEM certificates") from e
    first = certificates[0].public_key()
    if not isinstance(first, rsa.RSAPublicKey) or first.public_numbers() != (
            private.public_key().public_numbers()):
        raise ConfigurationError(
            "pem_key: the key does not belong to the first certificate of pem_chain")
    return SystemCredentials(private, certificates[0], tuple(certificates[1:]))


def _attribute(parent: etree._Element, name: str, value: str,
               name_format: str | None = None) -> None:
    a = etree.SubElement(parent, _q("saml", "Attribute"), Name=name)
    if name_format:
        a.set("NameFormat", name_format)
    etree.SubElement(a, _q("saml", "AttributeValue")).text = value


def check_digest(digest: str) -> str:
    """``digest`` if it names a signature profile (`DIGESTS`), else `ConfigurationError`."""
    if digest not in DIGESTS:
        raise ConfigurationError(f"digest: must be one of {', '.join(DIGESTS)}")
    return digest


def check_issuer(issuer: str) -> str:
    """``issuer`` if it can be ``saml:Issuer`` (an xs:NCName in the official saml.xsd: here
    ASCII letters, digits, '.', '-', '_', starting with a letter or '_'), else
    `ConfigurationError`."""
    if not isinstance(issuer, str) or not _NCNAME.fullmatch(issuer):
        raise ConfigurationError(
            "issuer: must be an xs:NCName (ASCII letters, digits, '.', '-', '_'; no spaces; "
            "starting with a letter or '_')")
    return issuer


def _cert_hash(certificate: x509.Certificate, digest: str) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(hashlib.new(DIGESTS[digest][3], der).digest()).decode()


def build_id_card(
    credentials: SystemCredentials,
    *,
    cvr: str,
    system_name: str,
    care_provider_name: str,
    now: _dt.datetime,
    validity: _dt.timedelta = _dt.timedelta(hours=24),
    card_id: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    digest: str = DEFAULT_DIGEST,
    parent: etree._Element | None = None,
    prefixes: Mapping[str, str] | None = None,
) -> etree._Element:
    """The unsigned SOSI system ID card (SAML 2.0 Assertion ``id="IDCard"``), as DGWS 1.0.1
    and Seal's samples lay it out: the ``IDCardData`` statement (card id, version, type,
    level, ``sosi:OCESCertHash``: the certificate's ``digest`` hash) and the ``SystemLog``
    statement (IT system, care provider CVR and name).

    ``issuer`` must be an xs:NCName (`check_issuer`). ``parent``: build the card inside
    that element, using the prefixes declared on it and its ancestors (no declarations on
    the card); ``prefixes``: other prefixes for the card's own declarations (``{"saml":
    "saml2"}``). Both serve tests that need a card laid out as another STS would."""
    if not (cvr.isdigit() and len(cvr) == 8):
        raise ConfigurationError("cvr: must be 8 digits")
    check_issuer(issuer)
    check_digest(digest)
    names = dict(prefixes or {})
    nsmap = {names.get(k, k): NS[k] for k in ("saml", "ds", "medcom", "sosi", "xsi")}
    attributes = {"IssueInstant": _utc(now), "Version": "2.0", "id": "IDCard"}
    if parent is None:
        a = etree.Element(_q("saml", "Assertion"), attributes, nsmap=nsmap)
    else:
        a = etree.SubElement(parent, _q("saml", "Assertion"), attributes)
    etree.SubElement(a, _q("saml", "Issuer")).text = issuer
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
    card = etree.SubElement(a, _q("saml", "AttributeStatement"), id="IDCardData")
    _attribute(card, "sosi:IDCardID", card_id or str(uuid.uuid4()))
    _attribute(card, "sosi:IDCardVersion", "1.0.1")
    _attribute(card, "sosi:IDCardType", "system")
    _attribute(card, "sosi:AuthenticationLevel", "3")
    _attribute(card, "sosi:OCESCertHash", _cert_hash(credentials.certificate, digest))
    system = etree.SubElement(a, _q("saml", "AttributeStatement"), id="SystemLog")
    _attribute(system, "medcom:ITSystemName", system_name)
    _attribute(system, "medcom:CareProviderID", cvr, "medcom:cvrnumber")
    _attribute(system, "medcom:CareProviderName", care_provider_name)
    return a


def _c14n(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, method="c14n", exclusive=True, with_comments=False))


def _remove(node: etree._Element) -> None:
    """Remove ``node`` and nothing else: its tail text stays where it was (lxml's
    ``remove`` takes the tail along; the enveloped-signature transform does not)."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def _enveloped(element: etree._Element) -> bytes:
    """Exclusive C14N of ``element`` after the enveloped-signature transform."""
    unsigned = copy.deepcopy(element)
    for s in unsigned.findall(_q("ds", "Signature")):
        _remove(s)
    return _c14n(unsigned)


def sign(element: etree._Element, credentials: SystemCredentials, *,
         digest: str = DEFAULT_DIGEST, pretty: bool = False) -> etree._Element:
    """Sign ``element`` (its ``id`` attribute) with an enveloped XML signature
    ``ds:Signature id="OCESSignature"``: exclusive C14N, RSA with ``digest`` (`DIGESTS`),
    the certificate in ``KeyInfo/X509Data``. ``pretty``: indent the signature to match an
    indented ``element`` (as an STS that pretty-prints its answers does)."""
    sig_uri, digest_uri, hash_alg, hashlib_name = DIGESTS[check_digest(digest)]
    ref_id = element.get("id")
    if not ref_id:
        raise ConfigurationError("the element to sign needs an id attribute")
    for old in element.findall(_q("ds", "Signature")):
        _remove(old)
    signature = etree.SubElement(element, _q("ds", "Signature"), id="OCESSignature")
    signed_info = etree.SubElement(signature, _q("ds", "SignedInfo"))
    etree.SubElement(signed_info, _q("ds", "CanonicalizationMethod"), Algorithm=_EXC_C14N)
    etree.SubElement(signed_info, _q("ds", "SignatureMethod"), Algorithm=sig_uri)
    reference = etree.SubElement(signed_info, _q("ds", "Reference"), URI=f"#{ref_id}")
    transforms = etree.SubElement(reference, _q("ds", "Transforms"))
    etree.SubElement(transforms, _q("ds", "Transform"), Algorithm=_ENVELOPED)
    etree.SubElement(transforms, _q("ds", "Transform"), Algorithm=_EXC_C14N)
    etree.SubElement(reference, _q("ds", "DigestMethod"), Algorithm=digest_uri)
    digest_value = etree.SubElement(reference, _q("ds", "DigestValue"))
    signature_value = etree.SubElement(signature, _q("ds", "SignatureValue"))
    key_info = etree.SubElement(signature, _q("ds", "KeyInfo"))
    x509_data = etree.SubElement(key_info, _q("ds", "X509Data"))
    etree.SubElement(x509_data, _q("ds", "X509Certificate")).text = base64.b64encode(
        credentials.certificate.public_bytes(serialization.Encoding.DER)).decode()
    if pretty:
        depth = sum(1 for _ in element.iterancestors())
        etree.indent(signature, space="  ", level=depth + 1)
        previous = signature.getprevious()
        if previous is not None:
            signature.tail, previous.tail = previous.tail, "\n" + "  " * (depth + 1)
    digest_value.text = base64.b64encode(
        hashlib.new(hashlib_name, _enveloped(element)).digest()).decode()
    value = credentials.key.sign(_c14n(signed_info), padding.PKCS1v15(), hash_alg)
    signature_value.text = base64.b64encode(value).decode()
    return element


def verify(element: etree._Element, *,
           trusted: Sequence[x509.Certificate] | None = None,
           digests: Sequence[str] = tuple(DIGESTS)) -> x509.Certificate:
    """Check the enveloped signature of ``element`` (as parsed from the bytes received,
    white space kept); returns the signing certificate. With ``trusted``, the signer must
    be one of those certificates (by fingerprint); ``digests``: the profiles accepted.
    Raises `CardRejected`."""
    signature = element.find(_q("ds", "Signature"))
    if signature is None:
        raise CardRejected("the ID card is not signed")
    signed_info = signature.find(_q("ds", "SignedInfo"))
    reference = signed_info.find(_q("ds", "Reference")) if signed_info is not None else None
    method = signed_info.find(_q("ds", "SignatureMethod")) if signed_info is not None else None
    c14n = (signed_info.find(_q("ds", "CanonicalizationMethod"))
            if signed_info is not None else None)
    if signed_info is None or reference is None or method is None or c14n is None:
        raise CardRejected("the signature has no SignedInfo/Reference")
    if reference.get("URI") != f"#{element.get('id')}":
        raise CardRejected("the signature does not reference this card")
    transforms = [t.get("Algorithm") for t in reference.iterfind(
        f"{_q('ds', 'Transforms')}/{_q('ds', 'Transform')}")]
    if c14n.get("Algorithm") != _EXC_C14N or transforms not in (
            [_ENVELOPED, _EXC_C14N], [_ENVELOPED]):
        raise CardRejected("unsupported canonicalisation or transforms")
    by_uri = {DIGESTS[d][0]: DIGESTS[d] for d in digests}
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
    if hashlib.new(hashlib_name, _enveloped(element)).digest() != expected_digest:
        raise CardRejected("the card was altered after signing (digest mismatch)")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise CardRejected("the signing key is not RSA")
    try:
        public.verify(value, _c14n(signed_info), padding.PKCS1v15(), hash_alg)
    except InvalidSignature:
        raise CardRejected("the signature value is wrong") from None
    return cert


def cert_hash_digest(card: etree._Element, certificate: x509.Certificate) -> str | None:
    """Which digest (`DIGESTS`) the card's ``sosi:OCESCertHash`` is of ``certificate``, or
    None when it is the hash of neither (or missing)."""
    value = next((a.findtext(_q("saml", "AttributeValue")) for a in card.iter(
        _q("saml", "Attribute")) if a.get("Name") == "sosi:OCESCertHash"), None)
    return next((d for d in DIGESTS if value == _cert_hash(certificate, d)), None)


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
    """An STS-issued ID card, exactly as the STS wrote it.

    ``assertion`` is the card's own bytes, sliced out of the STS answer (never parsed and
    written again: its signature covers its white space and layout). ``namespaces`` are
    the prefix declarations in scope where the card stood in the answer (``""`` is the
    default namespace): the card may use prefixes its ancestors declared, so the envelope
    that carries it declares them again around it.
    """

    assertion: bytes = attrs.field(repr=False)
    not_on_or_after: _dt.datetime
    namespaces: tuple[tuple[str, str], ...] = ()

    def element(self) -> etree._Element:
        """The card parsed (white space kept), with its inherited declarations."""
        wrapper = parse_xml(b"<w" + _declarations(dict(self.namespaces)) + b">"
                            + self.assertion + b"</w>", what="ID card", exact=True)
        return wrapper[0]

    def expires_soon(self, now: _dt.datetime,
                     margin: _dt.timedelta = _dt.timedelta(minutes=5)) -> bool:
        return now + margin >= self.not_on_or_after


def _declarations(namespaces: Mapping[str, str]) -> bytes:
    return b"".join(
        (f' xmlns:{prefix}="' if prefix else ' xmlns="').encode()
        + uri.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").encode()
        + b'"' for prefix, uri in sorted(namespaces.items()))


def request_security_token(signed_card: etree._Element, *, now: _dt.datetime,
                           issuer: str = DEFAULT_ISSUER) -> bytes:
    """The WS-Trust ``RequestSecurityToken`` envelope asking the SOSI STS for a card, as
    Seal's sample and the authority's client build it: a ``wsse:Security`` header with a
    timestamp only, then ``Context="www.sosi.dk"``, TokenType SAML 2.0, RequestType
    ``http://schemas.xmlsoap.org/ws/2005/02/trust/Issue``, the signed card in ``Claims``,
    and ``Issuer/Address`` (the card's issuer)."""
    check_issuer(issuer)
    nsmap = {k: NS[k] for k in ("soap", "wsse", "wsu", "wst", "wsa")}
    env = etree.Element(_q("soap", "Envelope"), nsmap=nsmap)
    header = etree.SubElement(env, _q("soap", "Header"))
    security = etree.SubElement(header, _q("wsse", "Security"))
    ts = etree.SubElement(security, _q("wsu", "Timestamp"))
    etree.SubElement(ts, _q("wsu", "Created")).text = _utc(now)
    body = etree.SubElement(env, _q("soap", "Body"))
    rst = etree.SubElement(body, _q("wst", "RequestSecurityToken"), Context="www.sosi.dk")
    etree.SubElement(rst, _q("wst", "TokenType")).text = (
        "urn:oasis:names:tc:SAML:2.0:assertion:")
    etree.SubElement(rst, _q("wst", "RequestType")).text = (
        "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue")
    claims = etree.SubElement(rst, _q("wst", "Claims"))
    claims.append(copy.deepcopy(signed_card))
    wst_issuer = etree.SubElement(rst, _q("wst", "Issuer"))
    etree.SubElement(wst_issuer, _q("wsa", "Address")).text = issuer
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def card_from_request(body: bytes) -> etree._Element:
    """The ID card (SAML Assertion) of a request: in ``wst:Claims`` for the STS, in
    ``wsse:Security`` for a service call, parsed keeping every character (its white space
    is signed). Raises `CardRejected` when there is none."""
    root = parse_xml(body, what="request", exact=True)
    for path in (f".//{_q('wst', 'Claims')}/{_q('saml', 'Assertion')}",
                 f".//{_q('wsse', 'Security')}/{_q('saml', 'Assertion')}"):
        found = root.find(path)
        if found is not None:
            return found
    raise CardRejected("the request carries no ID card")


def _span(body: bytes, path: Sequence[str]) -> tuple[int, int]:
    """Byte offsets ``(start, end)`` of the first element at the end of ``path`` (Clark
    names, each a child of the one before, anywhere in the document), as written in
    ``body``: from its ``<`` to the ``>`` of its end tag. Expat reports where each tag
    starts in the input bytes, so the slice is what the sender wrote, byte for byte."""
    parser = expat.ParserCreate(namespace_separator="}")
    stack: list[str] = []
    found: list[int] = []
    depth: list[int] = []

    def start(name: str, attributes: object) -> None:
        clark = "{" + name if "}" in name else name
        stack.append(clark)
        if not found and stack[-len(path):] == list(path):
            found.append(parser.CurrentByteIndex)
            depth.append(len(stack))

    def end(name: str) -> None:
        if found and len(found) == 1 and len(stack) == depth[0]:
            found.append(parser.CurrentByteIndex)
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(body, True)
    except expat.ExpatError as e:
        raise CardRejected(f"the STS answer cannot be read: {e}") from None
    if len(found) != 2:
        raise CardRejected("the STS answer holds no ID card")
    close = body.find(b">", found[1])
    if close < 0 or body[found[1]:found[1] + 2] != b"</":
        raise CardRejected("the ID card in the STS answer has no end tag")
    return found[0], close + 1


def _to_utf8(body: bytes, encoding: str) -> bytes:
    """An answer in another encoding, character for character in UTF-8 without its XML
    declaration (what is signed is characters, after C14N, so the signature holds)."""
    try:
        text = body.decode(encoding)
    except (LookupError, UnicodeError):
        raise CardRejected(f"the STS answer's encoding {encoding} is not supported") from None
    return re.sub(r"^\ufeff?\s*<\?xml[^>]*\?>", "", text).encode()


def parse_security_token_response(body: bytes) -> IdCard:
    """The card issued by the STS, kept as the exact bytes the STS wrote (see `IdCard`),
    or `CardRejected` (with the STS's fault text: the STS may answer a fault with HTTP
    200, as the authority's client notes)."""
    root = parse_xml(body, what="STS response", exact=True)
    fault = root.find(f".//{_q('soap', 'Fault')}")
    if fault is not None:
        code = (fault.findtext("faultcode") or "").strip()
        raise CardRejected(f"the STS refused the card: {code}: {fault.findtext('faultstring')}",
                           code=code or None)
    path = (_q("wst", "RequestedSecurityToken"), _q("saml", "Assertion"))
    card = root.find(f".//{path[0]}/{path[1]}")
    parent = card.getparent() if card is not None else None
    if card is None or parent is None:
        raise CardRejected("the STS answer holds no ID card")
    _, not_after, _ = card_facts(card)
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").lower()
    if encoding not in ("utf-8", "utf8", "us-ascii", "ascii"):
        body = _to_utf8(body, encoding)
    start, end = _span(body, path)
    assertion = body[start:end]
    namespaces = tuple(sorted((p or "", u) for p, u in parent.nsmap.items()))
    issued = IdCard(assertion, not_after, namespaces)
    if _c14n(issued.element()) != _c14n(card):  # the slice is the card, whole and alone
        raise CardRejected("the ID card could not be taken out of the STS answer intact")
    return issued


def _free_prefix(wanted: str, uri: str, taken: Mapping[str, str]) -> str:
    prefix, n = wanted, 0
    while taken.get(prefix, uri) != uri:
        n += 1
        prefix = f"{wanted}{n}"
    return prefix


def security_header(card: IdCard, *, now: _dt.datetime, flow_id: str | None = None,
                    message_id: str | None = None) -> bytes:
    """The SOAP header children of a service call, as bytes: ``wsse:Security`` (a
    timestamp and the card's exact bytes) and ``medcom:Header`` (security level 3, fresh
    FlowID and MessageID, no receipt).

    ``wsse:Security`` declares the namespaces the card had in scope in the STS answer, so
    the card means what it meant there and its canonical form (what is signed) is the
    same; our own prefixes give way to the card's where they clash."""
    inherited = dict(card.namespaces)
    wsse = _free_prefix("wsse", NS["wsse"], inherited)
    wsu = _free_prefix("wsu", NS["wsu"], inherited)
    declared = inherited | {wsse: NS["wsse"], wsu: NS["wsu"]}
    security = (f"<{wsse}:Security".encode() + _declarations(declared)
                + f"><{wsu}:Timestamp><{wsu}:Created>{_utc(now)}</{wsu}:Created>"
                  f"</{wsu}:Timestamp>".encode()
                + card.assertion + f"</{wsse}:Security>".encode())
    medcom = etree.Element(_q("medcom", "Header"), nsmap={"medcom": NS["medcom"]})
    etree.SubElement(medcom, _q("medcom", "SecurityLevel")).text = "3"
    linking = etree.SubElement(medcom, _q("medcom", "Linking"))
    etree.SubElement(linking, _q("medcom", "FlowID")).text = flow_id or str(uuid.uuid4())
    etree.SubElement(linking, _q("medcom", "MessageID")).text = message_id or str(uuid.uuid4())
    etree.SubElement(medcom, _q("medcom", "RequireNonRepudiationReceipt")).text = "no"
    return security + bytes(etree.tostring(medcom, encoding="UTF-8", xml_declaration=False))


class CardCache:
    """Holds the current card; fetches a new one when it is about to expire (by
    ``clock``) or was refused. Thread-safe. ``fetched`` counts the cards fetched by why
    (``first``, ``expiring``, ``refused``); each fetch is logged (event ``card_fetched``,
    with ``cvr``)."""

    def __init__(self, margin: _dt.timedelta = _dt.timedelta(minutes=5), *,
                 clock: Clock = SYSTEM_CLOCK, cvr: str = "") -> None:
        self.margin = margin
        self.clock = clock
        self.cvr = cvr
        self._card: IdCard | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        self.fetched = {"first": 0, "expiring": 0, "refused": 0}

    @property
    def expires(self) -> _dt.datetime | None:
        """When the current card stops being valid (None before the first)."""
        card = self._card
        return None if card is None else card.not_on_or_after

    def _fetch(self, fetch: Callable[[], IdCard], reason: str) -> IdCard:
        card = self._card = fetch()
        self.fetches += 1
        self.fetched[reason] += 1
        emit("card_fetched", "fetched a new ID card from the STS (%s); valid until %s", reason,
             card.not_on_or_after.isoformat(), cvr=self.cvr, reason=reason,
             expires=card.not_on_or_after.isoformat())
        return card

    def get(self, fetch: Callable[[], IdCard]) -> IdCard:
        with self._lock:
            if self._card is None:
                return self._fetch(fetch, "first")
            if self._card.expires_soon(utc_now(self.clock), self.margin):
                return self._fetch(fetch, "expiring")
            return self._card

    def renew(self, refused: IdCard, fetch: Callable[[], IdCard]) -> IdCard:
        """A new card in place of ``refused`` (unless another thread renewed it already)."""
        with self._lock:
            if self._card is None or self._card is refused:
                return self._fetch(fetch, "refused")
            return self._card

    def invalidate(self) -> None:
        with self._lock:
            self._card = None

    def after_fork(self) -> None:
        """In a forked child: a lock of its own (a thread of the parent may have held the
        parent's, fetching a card, at the moment of the fork)."""
        self._lock = threading.Lock()
