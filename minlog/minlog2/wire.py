"""The MinLog2 wire format: ``RegistrationRequest`` and ``RegistrationResponse`` in SOAP 1.1.

Pure: bytes in, bytes out (lxml). Schema versions 20250312 (default) and 20230425; our
own XSD for each lives in ``minlog/schemas/``. The root elements are in the version's
namespace and every child is unqualified (``elementFormDefault="unqualified"``), in the
schema's order. Everything is checked before a request is built, so what we send
validates.

Failures: a SOAP Fault whose code is a *Client* fault (or an HTTP 4xx other than 408 and
429) is a `PermanentDeliveryError` - sending the same request again will not help. A
*Server* fault, HTTP 5xx, 408, 429, or a body that cannot be parsed is a
`TransientDeliveryError` (an unreadable answer may come from a proxy in trouble; the
batch is retried, never dropped). A DGWS fault (a ``medcom:FaultCode`` in the fault's
detail) is classified by that code alone, and the error's ``code`` is ``dgws:<code>``:
``invalid_input`` is permanent, every other code transient (the transport renews the ID
card for ``expired_idcard``, ``invalid_idcard`` and ``invalid_signature``). Incoming XML
is parsed with entities, DTDs and network access disabled.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

from lxml import etree

from minlog.core.rules import EARLIEST
from minlog.errors import PermanentDeliveryError, TransientDeliveryError, ValidationError
from minlog.minlog2.entry import DESTINATION, Batch, entry_xml, fields_of
from minlog.minlog2.registration import ORGANISATION_SOURCES, Registration, check_schema
from minlog.minlog2.transport import BatchResult, EntryFailure

__all__ = [
    "DEFAULT_VERSION",
    "DGWS_FAULT_CODES",
    "MEDCOM_NS",
    "NAMESPACES",
    "SOAP_NS",
    "check_batch",
    "decode_request",
    "decode_response",
    "encode_envelope",
    "encode_fault",
    "encode_request",
    "encode_response",
    "parse_xml",
    "validate_request",
]

DEFAULT_VERSION: Final = "20250312"
NAMESPACES: Final = {
    "20250312": "http://www.sundhedsdatastyrelsen.dk/minlog/xml.schema/2025/03/12/"
                "minlog2-registration.xsd",
    "20230425": "http://www.sundhedsdatastyrelsen.dk/minlog/xml.schema/2023/04/25/"
                "minlog2-registration.xsd",
}
SOAP_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_ENV: Final = f"{{{SOAP_NS}}}"

_BY_ELEMENT: Final = {e: (a, s) for e, a, s in DESTINATION}
_TIMES: Final = frozenset({"date_time", "from_date_time", "to_date_time"})

_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_blank_text=True)
#: The same, keeping every character: for signed content, whose white space is signed.
_EXACT_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True,
                                       load_dtd=False, huge_tree=False)
#: The namespace of DGWS's ``medcom:FaultCode`` (and ``medcom:Header``).
MEDCOM_NS: Final = "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd"
#: The DGWS fault codes (official medcom.xsd, ``medcom:FaultCode``).
DGWS_FAULT_CODES: Final = frozenset({
    "invalid_header", "missing_required_header", "security_level_failed", "invalid_idcard",
    "expired_idcard", "invalid_signature", "not_authorized", "internal_error",
    "invalid_input"})


def _version(version: str) -> str:
    if version not in NAMESPACES:
        raise ValidationError("schema_version", f"must be one of {', '.join(NAMESPACES)}")
    return NAMESPACES[version]


def parse_xml(body: bytes, *, what: str = "body", exact: bool = False) -> etree._Element:
    """Parse untrusted XML: no DTD, no entities, no network. Raises `ValidationError`.
    ``exact`` keeps white-space-only text (signed content needs it)."""
    try:
        tree = etree.fromstring(body, _EXACT_PARSER if exact else _PARSER)
    except etree.XMLSyntaxError as e:
        raise ValidationError(what, f"not well-formed XML: {e}") from None
    if getattr(tree.getroottree().docinfo, "doctype", ""):
        raise ValidationError(what, "a DOCTYPE is not allowed")
    return tree


# --------------------------------------------------------------------------- requests


def check_batch(registrations: Sequence[Registration], version: str = DEFAULT_VERSION) -> None:
    """Raise `ValidationError` for anything schema ``version`` would refuse."""
    _version(version)
    if not registrations:
        raise ValidationError("registrations", "a request holds at least one entry")
    for r in registrations:
        if not isinstance(r, Registration):
            raise ValidationError("registrations", "must be Registration objects")
        check_schema(r, version)


def _request_text(registrations: Sequence[Registration], version: str) -> str:
    """The ``RegistrationRequest`` as text. A `Batch` from the outbox is written straight
    from its stored fields (validated when accepted); other registrations are checked
    first. `minlog.minlog2.entry.entry_xml` writes every entry."""
    if isinstance(registrations, Batch):
        if not registrations:
            raise ValidationError("registrations", "a request holds at least one entry")
        body = registrations.entries_xml()
    else:
        check_batch(registrations, version)
        body = "".join(entry_xml(fields_of(r)) for r in registrations)
    return f'<ns:RegistrationRequest xmlns:ns="{_version(version)}">{body}</ns:RegistrationRequest>'


def encode_request(registrations: Sequence[Registration], *,
                   version: str = DEFAULT_VERSION) -> etree._Element:
    """The ``RegistrationRequest`` element for ``registrations``."""
    return etree.fromstring(_request_text(registrations, version).encode(), _PARSER)


def encode_envelope(registrations: Sequence[Registration], *, version: str = DEFAULT_VERSION,
                    header: bytes | Sequence[etree._Element] = ()) -> bytes:
    """A SOAP 1.1 envelope with the request as its body. ``header``: the header's children,
    as elements, or as UTF-8 bytes put in exactly as given (a signed token travels as the
    bytes its issuer wrote)."""
    head = (header if isinstance(header, bytes)
            else "".join(etree.tostring(h, encoding="unicode") for h in header).encode())
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'.encode()
        + (b"<soapenv:Header>" + head + b"</soapenv:Header>" if head else b"")
        + f"<soapenv:Body>{_request_text(registrations, version)}</soapenv:Body>"
          "</soapenv:Envelope>".encode()
    )


def _envelope(payload: etree._Element, header: Sequence[etree._Element] = ()) -> bytes:
    env = etree.Element(f"{_ENV}Envelope", nsmap={"soapenv": SOAP_NS})
    if header:
        h = etree.SubElement(env, f"{_ENV}Header")
        for child in header:
            h.append(child)
    etree.SubElement(env, f"{_ENV}Body").append(payload)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def _payload(body: bytes, name: str) -> etree._Element:
    root = parse_xml(body)
    if root.tag == f"{_ENV}Envelope":
        found = root.find(f"{_ENV}Body")
        if found is None or len(found) == 0:
            raise ValidationError("Envelope", "has no Body content")
        root = found[0]
    if etree.QName(root).localname != name:
        raise ValidationError("Body", f"expected {name}, found {etree.QName(root).localname}")
    return root


def decode_request(body: bytes, *, version: str = DEFAULT_VERSION) -> list[Registration]:
    """The registrations in an envelope (or a bare ``RegistrationRequest``), each fully
    validated."""
    return _decode(_payload(body, "RegistrationRequest"), version, trusted=False)


def _decode(root: etree._Element, version: str, *, trusted: bool) -> list[Registration]:
    if etree.QName(root).namespace != _version(version):
        raise ValidationError("RegistrationRequest", f"not in the namespace of {version}")
    out = []
    for entry in root:
        kwargs: dict[str, Any] = {}
        source = entry.find("Source")
        if source is not None:
            kwargs["source_correlation_id"] = source.findtext("CorrelationId")
            kwargs["source_system_name"] = source.findtext("SystemName")
        dest = entry.find("Destination")
        if dest is None:
            raise ValidationError("LogDataEntry", "has no Destination")
        filters = []
        for child in dest:
            tag = str(child.tag)
            if tag == "Filter":
                filters.append(child.text or "")
                continue
            if tag not in _BY_ELEMENT:
                raise ValidationError("Destination", f"unknown element {tag}")
            attribute, source_attribute = _BY_ELEMENT[tag]
            text = child.text or ""
            try:
                kwargs[attribute] = (_dt.datetime.fromisoformat(text) if attribute in _TIMES
                                     else text)
            except ValueError:
                raise ValidationError(tag, "not an xs:dateTime") from None
            if source_attribute is not None:
                kwargs[source_attribute] = child.get("source")
        kwargs["filters"] = tuple(filters)
        fields = {k: v for k, v in kwargs.items() if v is not None}
        if trusted:  # the XSD has checked every limit; convert times to UTC as __init__ does
            for name in _TIMES & fields.keys():
                if fields[name].tzinfo is not None:
                    fields[name] = fields[name].astimezone(_dt.UTC)
            out.append(Registration._trusted(fields))
        else:
            out.append(Registration(**fields))
    return out


_SCHEMA_LOCK: Final = threading.Lock()
_SCHEMAS: Final = threading.local()


def _schema(version: str) -> etree.XMLSchema:
    """Our XSD of ``version``, one instance per thread (an lxml schema object is not to be
    shared between threads), parsed under a process-wide lock (libxml2's schema parser
    is not safe to run in two threads at once)."""
    cache: dict[str, etree.XMLSchema] = getattr(_SCHEMAS, "cache", None) or {}
    _SCHEMAS.cache = cache
    if version not in cache:
        name = f"schemas/minlog2-registration-{version}.xsd"
        text = resources.files("minlog.minlog2").joinpath(name)
        with _SCHEMA_LOCK:
            cache[version] = etree.XMLSchema(etree.fromstring(text.read_bytes(), _PARSER))
    return cache[version]


def validate_request(body: bytes, *, version: str = DEFAULT_VERSION) -> list[Registration]:
    """Validate the request in ``body`` strictly against our XSD of ``version`` (and the
    minimum date, which XSD cannot say); returns its registrations."""
    _version(version)
    root = _payload(body, "RegistrationRequest")
    schema = _schema(version)
    if not schema.validate(root):
        error: Any = getattr(schema.error_log, "last_error", None)
        where = error.path.rsplit("/", 1)[-1] if error and error.path else "RegistrationRequest"
        raise ValidationError(where, f"schema {version}: {error.message if error else '?'}")
    registrations = _decode(root, version, trusted=True)
    for r in registrations:
        for when in (r.date_time, r.from_date_time, r.to_date_time):
            if when is not None and (when.tzinfo is None or when < EARLIEST):
                raise ValidationError("DateTime", "must be zoned and not before 2015-01-01Z")
        check_schema(r, version)
    return registrations


# --------------------------------------------------------------------------- responses


def encode_response(added: int, failures: Sequence[EntryFailure], *,
                    version: str = DEFAULT_VERSION, number_failed: int | None = None,
                    list_failures: bool = True) -> bytes:
    """A ``RegistrationResponse`` envelope. A failure without a sequence number is listed
    without ``SequenceNumber``; ``number_failed`` overrides the count (default: the
    failures given); ``list_failures=False`` leaves out every ``FailedLogDataEntries``."""
    root = etree.Element(f"{{{_version(version)}}}RegistrationResponse",
                         nsmap={"ns": NAMESPACES[version]})
    for f in failures if list_failures else ():
        failed = etree.SubElement(root, "FailedLogDataEntries")
        etree.SubElement(failed, "FaultCode").text = f.code
        if f.text:
            etree.SubElement(failed, "FaultText").text = f.text
        if f.sequence_number:
            etree.SubElement(failed, "SequenceNumber").text = f.sequence_number
    etree.SubElement(root, "NumberAdded").text = str(added)
    etree.SubElement(root, "NumberFailed").text = str(
        len(failures) if number_failed is None else number_failed)
    return _envelope(root)


def encode_fault(code: str, text: str, *, dgws_code: str | None = None) -> bytes:
    """A SOAP 1.1 Fault envelope (``code`` like ``soap:Client``). ``dgws_code``: a DGWS
    fault code for the ``detail`` (``medcom:FaultCode``), as DGWS services answer."""
    fault = etree.Element(f"{_ENV}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = text
    if dgws_code is not None:
        if dgws_code not in DGWS_FAULT_CODES:
            raise ValidationError("dgws_code", "is not a DGWS fault code")
        detail = etree.SubElement(fault, "detail")
        etree.SubElement(detail, f"{{{MEDCOM_NS}}}FaultCode",
                         nsmap={"medcom": MEDCOM_NS}).text = dgws_code
    return _envelope(fault)


def _fault(root: etree._Element) -> tuple[str, str, str | None] | None:
    """``(faultcode, faultstring, DGWS fault code or None)`` of a SOAP 1.1 Fault."""
    body = root.find(f"{_ENV}Body") if root.tag == f"{_ENV}Envelope" else None
    fault = body.find(f"{_ENV}Fault") if body is not None else None
    if fault is None:
        return None
    dgws = None
    detail = fault.find("detail")
    if detail is not None:  # medcom:FaultCode (DGWS 1.0's namespace, or any other medcom one)
        for element in detail.iter():
            if isinstance(element.tag, str) and etree.QName(element).localname == "FaultCode":
                dgws = (element.text or "").strip()[:64] or None
                break
    return ((fault.findtext("faultcode") or "").strip(), (fault.findtext("faultstring") or ""),
            dgws)


def decode_response(body: bytes, status: int = 200) -> BatchResult:
    """Per-entry outcomes of a response; raises for a failed request (see the module)."""
    try:
        root = parse_xml(body, what="response")
    except ValidationError:
        root = None
    fault = _fault(root) if root is not None else None
    if fault is not None:
        code, text, dgws = fault
        if dgws is not None:  # a DGWS service: its code decides, not the faultcode
            error = (PermanentDeliveryError if dgws == "invalid_input"
                     else TransientDeliveryError)
            raise error(f"SOAP fault {code} ({dgws}): {text}", code=f"dgws:{dgws}")
        if code.rsplit(":", 1)[-1].startswith("Client") and status not in (408, 429):
            raise PermanentDeliveryError(f"SOAP fault {code}: {text}", code=code)
        raise TransientDeliveryError(f"SOAP fault {code}: {text}", code=code)
    if status >= 400:
        if 400 <= status < 500 and status not in (408, 429):
            raise PermanentDeliveryError(f"HTTP {status}", code=f"http-{status}")
        raise TransientDeliveryError(f"HTTP {status}", code=f"http-{status}")
    if root is None:
        raise TransientDeliveryError("the response is not XML", code="unreadable-response")
    try:
        response = _payload(body, "RegistrationResponse")
    except ValidationError as e:
        raise TransientDeliveryError(f"unexpected response: {e}") from None
    failures = tuple(
        EntryFailure(f.findtext("SequenceNumber") or "", f.findtext("FaultCode") or "unknown",
                     f.findtext("FaultText") or "")
        for f in response.findall("FailedLogDataEntries"))
    added = response.findtext("NumberAdded")
    number_failed = response.findtext("NumberFailed")
    return BatchResult(failures, _count(added), _count(number_failed))


def _count(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


assert set(ORGANISATION_SOURCES) == set(NAMESPACES)
